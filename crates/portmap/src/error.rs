//! Error type of the portmap library.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PortmapError {
    /// Bad plugin configuration or `runtimeConfig.portMappings` entry (CNI code 7). `field` is
    /// the JSON path of the offending value (e.g. `runtimeConfig.portMappings[1].protocol`),
    /// `msg` upstream's wording where upstream has one, so both the field and the familiar
    /// message appear in the error.
    #[error("invalid network config field {field:?}: {msg}")]
    InvalidField { field: String, msg: String },
    /// The network config does not parse (CNI code 7).
    #[error("{}", source.msg)]
    NetConf {
        #[source]
        source: cni::CniError,
    },
    /// The chosen backend's config carries the other backend's options (CNI code 7).
    #[error(
        "{chosen} backend was requested but configuration contains {other}-specific options [{}]",
        options.join(" ")
    )]
    OtherBackendOptions {
        chosen: &'static str,
        other: &'static str,
        options: Vec<String>,
    },
    /// No backend chosen and options of both backends present (CNI code 7).
    #[error("configuration contains both iptables-specific and nftables-specific options")]
    BothBackendsOptions,
    /// Neither backend's tool is installed.
    #[error("neither iptables-restore nor nft found in PATH")]
    NoBackendTool,
    /// A helper binary is not installed.
    #[error("{tool} not found in PATH")]
    ToolNotFound { tool: String },
    /// A helper binary could not be started.
    #[error("failed to run {tool}: {source}")]
    ToolStart {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    /// Waiting for a helper binary failed.
    #[error("failed to wait for {tool}: {source}")]
    ToolWait {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    /// CHECK (iptables): this attachment's DNAT rules are missing.
    #[error("could not check {family} dnat: rule of chain {chain} not found: {source}")]
    DnatMissing {
        family: String,
        chain: String,
        #[source]
        source: ToolFailure,
    },
    /// CHECK (nftables): this attachment's elements are missing.
    #[error("missing hostport elements in table {table}: {source}")]
    ElementsMissing {
        table: &'static str,
        #[source]
        source: ToolFailure,
    },
    /// A host port is already mapped by another attachment (nftables backend).
    #[error(
        "{family} host port {proto}/{port}{} is already mapped by another container",
        host_ip.map(|ip| format!(" on {ip}")).unwrap_or_default()
    )]
    HostPortTaken {
        family: String,
        proto: String,
        port: u16,
        host_ip: Option<std::net::IpAddr>,
    },
    /// iptables: the shared or per-attachment DNAT rules could not be installed.
    #[error("unable to setup DNAT: {0}")]
    SetupDnat(#[source] ToolFailure),
    /// iptables: this attachment's rules could not be removed.
    #[error("could not teardown {family} dnat: {source}")]
    TeardownDnat {
        family: String,
        #[source]
        source: ToolFailure,
    },
    /// iptables: DEL found neither family's tool working (`reasons`: one per family).
    #[error("neither iptables nor ip6tables is usable, {}", reasons.join(", "))]
    NoUsableIptables { reasons: Vec<String> },
    /// nftables: the ADD transaction failed.
    #[error("unable to set up nftables rules for port mappings: {0}")]
    NftSetup(#[source] ToolFailure),
    /// nftables: the DEL transaction failed.
    #[error("unable to remove nftables port mappings: {0}")]
    NftRemove(#[source] ToolFailure),
    /// nftables: DEL kept failing, dropping a failing element each round.
    #[error(
        "unable to remove nftables port mappings: still failing after {attempts} transactions"
    )]
    NftRemoveRetries { attempts: usize },
    /// `net.ipv4.conf.<if>.route_localnet` could not be set.
    #[error("unable to enable route_localnet: {0}")]
    RouteLocalnet(#[source] netns::Error),
}

/// What a netfilter tool (or its kernel request) reported when it failed: its stderr, with the
/// failing script line where the tool names one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stderr}")]
pub struct ToolFailure {
    pub stderr: String,
}

impl From<String> for ToolFailure {
    fn from(stderr: String) -> Self {
        ToolFailure { stderr }
    }
}

/// Config mistakes are 7 (the message names the field); failures while programming the host
/// are generic (999), as upstream reports them.
impl cni::CniCode for PortmapError {
    fn cni_code(&self) -> cni::ErrorCode {
        match self {
            PortmapError::InvalidField { .. }
            | PortmapError::NetConf { .. }
            | PortmapError::OtherBackendOptions { .. }
            | PortmapError::BothBackendsOptions => cni::ErrorCode::InvalidConfig,
            _ => cni::error::GENERIC,
        }
    }
}

impl PortmapError {
    /// An [`PortmapError::InvalidField`] for `field`.
    pub fn field(field: impl Into<String>, msg: impl Into<String>) -> PortmapError {
        PortmapError::InvalidField {
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// Prefixes the field path of an [`PortmapError::InvalidField`] with `parent` (e.g. the
    /// list index a mapping came from); other errors are returned unchanged.
    pub fn within(self, parent: &str) -> PortmapError {
        match self {
            PortmapError::InvalidField { field, msg } => PortmapError::InvalidField {
                field: if field.is_empty() {
                    parent.to_string()
                } else {
                    format!("{parent}.{field}")
                },
                msg,
            },
            other => other,
        }
    }
}

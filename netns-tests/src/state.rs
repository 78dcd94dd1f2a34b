//! Observing and shaping namespace state with the real tools (`ip -j`, `tc -j`) and /proc/sys.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::Value;

use crate::error::{HarnessError, Result};
use crate::netns::Netns;

/// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`; a key already containing `/` is
/// taken as a path below /proc/sys (needed for interface names with dots).
fn sysctl_path(key: &str) -> String {
    if key.contains('/') {
        format!("/proc/sys/{}", key.trim_start_matches('/'))
    } else {
        format!("/proc/sys/{}", key.replace('.', "/"))
    }
}

impl Netns {
    /// Reads a sysctl as seen inside this namespace (trimmed).
    pub fn sysctl(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key);
        self.run(|| std::fs::read_to_string(&path))?
            .map(|s| s.trim().to_string())
            .map_err(|e| HarnessError::io(format!("reading {path} in {}", self.name()), e))
    }

    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key);
        self.run(|| std::fs::write(&path, value))?
            .map_err(|e| HarnessError::io(format!("writing {path} in {}", self.name()), e))
    }

    /// `ip args…`, requiring success; returns stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        self.exec("ip", args)
    }

    /// `ip -j args…` parsed; an empty output is an empty array.
    pub fn ip_json(&self, args: &[&str]) -> Result<Value> {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        parse_json_output(&self.exec("ip", &full)?, "ip -j output")
    }

    /// `tc -j args…` parsed.
    pub fn tc_json(&self, args: &[&str]) -> Result<Value> {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        parse_json_output(&self.exec("tc", &full)?, "tc -j output")
    }

    /// All links (`ip -j link show`).
    pub fn links(&self) -> Result<Vec<Value>> {
        Ok(as_array(self.ip_json(&["link", "show"])?))
    }

    /// Names of the links whose name starts with `prefix` (e.g. Calico's host veths, "cali").
    pub fn link_names_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .links()?
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| n.starts_with(prefix))
            .map(str::to_string)
            .collect())
    }

    /// The link called `name`, if present.
    pub fn link(&self, name: &str) -> Result<Option<Value>> {
        Ok(self
            .links()?
            .into_iter()
            .find(|l| l.get("ifname").and_then(Value::as_str) == Some(name)))
    }

    /// Whether `name` exists and is administratively up (flag `UP`).
    pub fn link_is_up(&self, name: &str) -> Result<bool> {
        Ok(self.link(name)?.is_some_and(|l| {
            l.get("flags")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP")))
        }))
    }

    pub fn set_link_up(&self, name: &str) -> Result<()> {
        self.ip(&["link", "set", "dev", name, "up"]).map(drop)
    }

    /// Addresses (with prefix) configured on `name`; empty when the link does not exist.
    pub fn addrs(&self, name: &str) -> Result<Vec<IpNetwork>> {
        let all = as_array(self.ip_json(&["addr", "show"])?);
        let mut out = Vec::new();
        for link in all
            .iter()
            .filter(|l| l.get("ifname").and_then(Value::as_str) == Some(name))
        {
            for a in link
                .get("addr_info")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let local = a.get("local").and_then(Value::as_str);
                let prefix = a.get("prefixlen").and_then(Value::as_u64);
                if let (Some(local), Some(prefix)) = (local, prefix) {
                    let ip: IpAddr = local
                        .parse()
                        .map_err(|e| HarnessError::parse("address from ip -j", e))?;
                    let net = IpNetwork::new(ip, prefix as u8)
                        .map_err(|e| HarnessError::parse("prefix from ip -j", e))?;
                    out.push(net);
                }
            }
        }
        Ok(out)
    }

    /// Adds `cidr` (e.g. `192.0.2.1/24`) to `dev` and brings `dev` up. IPv6 addresses are added
    /// with `nodad` so they are usable at once.
    pub fn add_addr(&self, dev: &str, cidr: &str) -> Result<()> {
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(&args)?;
        self.set_link_up(dev)
    }

    /// Routes of one family (`"-4"` or `"-6"`) in table `table` (e.g. "main", "all").
    pub fn routes(&self, family: &str, table: &str) -> Result<Vec<Value>> {
        Ok(as_array(
            self.ip_json(&[family, "route", "show", "table", table])?,
        ))
    }

    /// Neighbour entries (`ip -j neigh show`).
    pub fn neighs(&self) -> Result<Vec<Value>> {
        Ok(as_array(self.ip_json(&["neigh", "show"])?))
    }

    /// Qdiscs of `dev` (`tc -j qdisc show dev <dev>`).
    pub fn qdiscs(&self, dev: &str) -> Result<Vec<Value>> {
        Ok(as_array(self.tc_json(&["qdisc", "show", "dev", dev])?))
    }
}

/// Creates a veth pair `a_if` (in `a`) ⇄ `b_if` (in `b`), both up, no addresses.
pub fn veth_pair(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    let tid = b.tid().to_string();
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &tid,
    ])?;
    a.set_link_up(a_if)?;
    b.set_link_up(b_if)
}

fn parse_json_output(text: &str, what: &str) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(text).map_err(|e| HarnessError::parse(what, format!("{e}: {text:?}")))
}

fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

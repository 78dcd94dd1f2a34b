//! The error → CNI code contract, in one table: every error type that can reach a runtime names
//! its code once (`cni::CniCode`), and this table is what a runtime can rely on. 11 means
//! "retry later can succeed", 7 "fix the config", 4 "fix the environment"; the rest is 999.
//! Needs no root.

use cni::{CniError, ErrorCode};

fn code(e: impl Into<CniError>) -> u32 {
    e.into().code.as_u32()
}

#[test]
fn every_error_type_maps_to_its_cni_code() {
    use ipam::{IpamError, StoreError};
    let table: Vec<(&str, u32, u32)> = vec![
        // datastore reachability is "try again later" wherever it surfaces
        (
            "store unavailable",
            code(StoreError::Unavailable("refused".into())),
            11,
        ),
        (
            "store conflict",
            code(StoreError::Conflict("k".into())),
            999,
        ),
        // a local store that cannot write (disk full, read-only) is an I/O error
        (
            "store storage",
            code(StoreError::Storage("disk full".into())),
            5,
        ),
        (
            "ipam: storage",
            code(IpamError::Store(StoreError::Storage("read-only".into()))),
            5,
        ),
        (
            "ipam: store unavailable",
            code(IpamError::Store(StoreError::Unavailable("x".into()))),
            11,
        ),
        ("ipam: max retries", code(IpamError::MaxRetries), 11),
        (
            "ipam: invalid argument",
            code(IpamError::InvalidArgument(ipam::InvalidArgument::Handle {
                handle: "bad".into(),
            })),
            7,
        ),
        (
            "ipam: no pools",
            code(IpamError::NoPools(ipam::NoPools::NoneEnabled)),
            999,
        ),
        (
            "ipam: invalid IPAM config",
            code(IpamError::from(ipam::InvalidArgument::from(
                ipam::model::InvalidIpamConfig::BlockLimitWithoutStrictAffinity,
            ))),
            7,
        ),
        (
            "ipam: handle not found",
            code(IpamError::HandleNotFound("h".into())),
            999,
        ),
        (
            "datastore: unreachable while opening",
            code(datastore::DatastoreError::Open {
                kind: "etcdv3",
                source: StoreError::Unavailable("refused".into()),
            }),
            11,
        ),
        (
            "datastore: other open failure",
            code(datastore::DatastoreError::Open {
                kind: "local",
                source: StoreError::Other("disk".into()),
            }),
            999,
        ),
        (
            "datastore: bad settings",
            code(datastore::DatastoreError::UnknownDatastoreType { value: "x".into() }),
            7,
        ),
        (
            "datastore: unsupported",
            code(datastore::DatastoreError::Unsupported("kubernetes".into())),
            7,
        ),
        (
            "kubernetes: unreachable",
            code(kubernetes::Error::Unavailable("x".into())),
            11,
        ),
        (
            "kubernetes: conflict",
            code(kubernetes::Error::Conflict("x".into())),
            11,
        ),
        (
            "kubernetes: bad client config",
            code(kubernetes::Error::Config("x".into())),
            7,
        ),
        (
            "kubernetes: refused",
            code(kubernetes::Error::Api {
                code: 403,
                message: "forbidden".into(),
            }),
            999,
        ),
        (
            "calico dataplane: check",
            code(calico::dataplane::Error::Check {
                mismatch: "x".into(),
            }),
            999,
        ),
        (
            "calico dataplane: host link-local",
            code(calico::dataplane::Error::HostLinkLocal {
                problem: calico::dataplane::LinkLocalProblem::Missing { name: "x".into() },
            }),
            999,
        ),
        (
            "datastore: bad endpoint",
            code(datastore::DatastoreError::InvalidEtcdEndpoint {
                list: "x".into(),
                endpoint: "x".into(),
                reason: "y",
            }),
            7,
        ),
        (
            "datastore: no kubernetes client",
            code(datastore::DatastoreError::NoKubernetesClient),
            7,
        ),
        (
            "cni: field type",
            code(
                cni::caps::CiObject::from_value(&serde_json::json!({"a": 1}))
                    .unwrap()
                    .field::<String>("a")
                    .unwrap_err(),
            ),
            7,
        ),
        (
            "calico dataplane",
            code(calico::dataplane::Error::InterfaceExists("eth0".into())),
            999,
        ),
        (
            "bandwidth: config",
            code(bandwidth::BandwidthError::InvalidLimit {
                direction: "ingress",
                reason: "x".into(),
            }),
            7,
        ),
        (
            "bandwidth: prevResult",
            code(bandwidth::BandwidthError::NoPrevResult),
            7,
        ),
        (
            "bandwidth: prevResult without the host veth",
            code(bandwidth::BandwidthError::HostVethNotInResult {
                host_veth: "x".into(),
            }),
            7,
        ),
        (
            "bandwidth: prevResult interface index",
            code(bandwidth::BandwidthError::InterfaceIndex(
                cni::result::InterfaceIndexError {
                    ip: 0,
                    index: 1,
                    interfaces: 1,
                },
            )),
            7,
        ),
        (
            "bandwidth: netns",
            code(bandwidth::BandwidthError::NoNetns),
            4,
        ),
        (
            "bandwidth: check",
            code(bandwidth::BandwidthError::NoIngressQdisc { link: "x".into() }),
            999,
        ),
        (
            "bandwidth: psched",
            code(bandwidth::BandwidthError::BadPsched {
                content: "x".into(),
            }),
            999,
        ),
        (
            "portmap: field",
            code(portmap::PortmapError::field("a.b", "bad")),
            7,
        ),
        (
            "portmap: config",
            code(portmap::PortmapError::BothBackendsOptions),
            7,
        ),
        (
            "portmap: other backend's options",
            code(portmap::PortmapError::OtherBackendOptions {
                chosen: "nftables",
                other: "iptables",
                options: vec!["x".into()],
            }),
            7,
        ),
        (
            "portmap: host port taken",
            code(portmap::PortmapError::HostPortTaken {
                family: "ip".into(),
                proto: "tcp".into(),
                port: 80,
                host_ip: None,
            }),
            999,
        ),
        (
            "portmap: setup",
            code(portmap::PortmapError::SetupDnat("x".to_string().into())),
            999,
        ),
        (
            "datastore: hostname unreadable",
            code(datastore::HostnameError(std::io::Error::other("x"))),
            5,
        ),
        (
            "calico: stored document does not decode",
            code(calico::endpoint::StoredDocError {
                what: "WorkloadEndpoint",
                source: serde_json::from_str::<u8>("x").unwrap_err(),
            }),
            999,
        ),
        (
            "host-local: bad route",
            code(host_local::Error::InvalidRoute {
                route: "x".into(),
                source: serde_json::from_str::<u8>("x").unwrap_err(),
            }),
            7,
        ),
        (
            "host-local: no ranges",
            code(host_local::Error::NoRanges),
            7,
        ),
        (
            "host-local: bad args",
            code(host_local::Error::ArgsInvalidPair("x".into())),
            4,
        ),
    ];
    let wrong: Vec<String> = table
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(what, got, want)| format!("{what}: code {got}, want {want}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn context_keeps_the_code_and_names_the_step() {
    use cni::Context;
    let e = Err::<(), _>(ipam::StoreError::Unavailable("refused".into()))
        .context("error reading WorkloadEndpoint")
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::TryAgainLater);
    assert!(
        e.msg
            .starts_with("error reading WorkloadEndpoint: datastore unavailable"),
        "{}",
        e.msg
    );
}

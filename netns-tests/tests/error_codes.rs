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
            code(IpamError::InvalidArgument("bad".into())),
            7,
        ),
        (
            "ipam: no pools",
            code(IpamError::NoPools("none".into())),
            999,
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
            code(datastore::DatastoreError::Config("x".into())),
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
            "calico dataplane",
            code(calico::dataplane::Error::InterfaceExists("eth0".into())),
            999,
        ),
        (
            "bandwidth: config",
            code(bandwidth::BandwidthError::InvalidConfig("x".into())),
            7,
        ),
        (
            "bandwidth: prevResult",
            code(bandwidth::BandwidthError::PrevResult("x".into())),
            7,
        ),
        (
            "bandwidth: netns",
            code(bandwidth::BandwidthError::Netns("x".into())),
            4,
        ),
        (
            "bandwidth: check",
            code(bandwidth::BandwidthError::CheckFailed("x".into())),
            999,
        ),
        (
            "portmap: field",
            code(portmap::PortmapError::field("a.b", "bad")),
            7,
        ),
        (
            "portmap: config",
            code(portmap::PortmapError::InvalidConfig("x".into())),
            7,
        ),
        (
            "portmap: setup",
            code(portmap::PortmapError::Setup("x".into())),
            999,
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

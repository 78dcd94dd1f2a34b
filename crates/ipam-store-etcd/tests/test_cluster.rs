//! The test-cluster helper itself: members really die and data really goes away on drop,
//! including when the owning test panics.

use std::net::TcpStream;
use std::path::Path;

use ipam_store_etcd::test_cluster::EtcdCluster;

fn addr(endpoint: &str) -> String {
    endpoint.split("://").nth(1).unwrap().to_string()
}

fn gone(endpoints: &[String], dir: &Path) {
    for ep in endpoints {
        assert!(
            TcpStream::connect(addr(ep)).is_err(),
            "{ep} still listening"
        );
    }
    assert!(!dir.exists(), "{} not removed", dir.display());
}

#[test]
fn drop_kills_members_and_removes_data() {
    let etcd = EtcdCluster::start(3).unwrap();
    let (eps, dir) = (etcd.endpoints(), etcd.data_dir().to_path_buf());
    assert_eq!(eps.len(), 3);
    assert!(dir.exists());
    for ep in &eps {
        TcpStream::connect(addr(ep)).expect("member listening");
    }
    drop(etcd);
    gone(&eps, &dir);
}

#[test]
fn panicking_test_still_cleans_up() {
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let etcd = EtcdCluster::start_tls(1).unwrap();
        seen = Some((etcd.endpoints(), etcd.data_dir().to_path_buf()));
        panic!("simulated assertion failure");
    }));
    assert!(result.is_err());
    let (eps, dir) = seen.unwrap();
    gone(&eps, &dir);
}

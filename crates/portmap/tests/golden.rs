//! Golden tests: rendered iptables-restore scripts and nft transactions are compared with
//! `testdata/portmap/`. Regenerate with `UPDATE_GOLDEN=1 cargo test -p portmap --test golden`
//! and review the diff: these files are the reviewable form of the rules we install.

use std::path::PathBuf;

use ipnetwork::IpNetwork;
use portmap::iptables::{render as ipt, save::NatState};
use portmap::nft::render as nft;
use portmap::{Attachment, Family, PortMapConf, PortMapping, Request};
use serde_json::{json, Value};

const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/portmap")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(
        expected,
        actual,
        "{} differs from the rendering (UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
}

fn mappings(v: Value) -> Vec<PortMapping> {
    PortMapping::list_from_json(Some(&v)).unwrap()
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn calico_example() -> (PortMapConf, Vec<PortMapping>) {
    (
        PortMapConf::default(),
        mappings(json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])),
    )
}

fn mixed() -> Vec<PortMapping> {
    mappings(json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 8081, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 8080, "containerPort": 81, "protocol": "udp"},
        {"hostPort": 8082, "containerPort": 82, "protocol": "udp"},
        {"hostPort": 8083, "containerPort": 83, "protocol": "tcp", "hostIP": "192.168.0.2"},
        {"hostPort": 8084, "containerPort": 84, "protocol": "tcp", "hostIP": "0.0.0.0"},
        {"hostPort": 8085, "containerPort": 85, "protocol": "tcp", "hostIP": "2001:db8:a::1"},
        {"hostPort": 8086, "containerPort": 86, "protocol": "sctp", "hostIP": "::"}
    ]))
}

fn req<'a>(conf: &'a PortMapConf, m: &'a [PortMapping]) -> Request<'a> {
    Request {
        conf,
        attachment: Attachment {
            network: "k8s-pod-network",
            container_id: CID,
        },
        mappings: m,
    }
}

#[test]
fn iptables_calico_example() {
    let (conf, m) = calico_example();
    let r = req(&conf, &m);
    let pod = net("10.244.1.5/32");
    golden("iptables-calico-add-fast.rules", &ipt::add_fast(&r, &pod));
    golden(
        "iptables-calico-add-empty-table.rules",
        &ipt::add_full(&r, &pod, &NatState::default()),
    );
    golden(
        "iptables-calico-del-fast.rules",
        &ipt::del_fast(&r, Family::V4),
    );
    golden("iptables-calico-check.rules", &ipt::check(&r, &pod));
}

#[test]
fn iptables_mixed_dual_stack() {
    let conf = PortMapConf::from_json(&json!({"markMasqBit": 5})).unwrap();
    let m = mixed();
    let r = req(&conf, &m);
    golden(
        "iptables-mixed-v4-add-fast.rules",
        &ipt::add_fast(&r, &net("10.0.0.2/24")),
    );
    golden(
        "iptables-mixed-v6-add-fast.rules",
        &ipt::add_fast(&r, &net("2001:db8::2/64")),
    );
    golden(
        "iptables-mixed-v6-del-fast.rules",
        &ipt::del_fast(&r, Family::V6),
    );
}

#[test]
fn iptables_external_mark_and_conditions() {
    let conf = PortMapConf::from_json(&json!({
        "externalSetMarkChain": "KUBE-MARK-MASQ",
        "conditionsV4": ["!", "-s", "192.0.2.0/24"]
    }))
    .unwrap();
    let (_, m) = calico_example();
    let r = req(&conf, &m);
    golden(
        "iptables-external-mark-add-fast.rules",
        &ipt::add_fast(&r, &net("10.244.1.5/32")),
    );
    let conf = PortMapConf::from_json(&json!({"snat": false})).unwrap();
    let r = req(&conf, &m);
    golden(
        "iptables-nosnat-add-fast.rules",
        &ipt::add_fast(&r, &net("10.244.1.5/32")),
    );
}

/// Repair path: shared chains exist (one jump missing) and a stale entry of this container is
/// replaced; rules of other containers are untouched.
#[test]
fn iptables_add_full_from_state() {
    let (conf, m) = calico_example();
    let r = req(&conf, &m);
    let chain = r.attachment.dnat_chain();
    let saved = format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         :CNI-HOSTPORT-DNAT - [0:0]\n:CNI-HOSTPORT-SETMARK - [0:0]\n:CNI-HOSTPORT-MASQ - [0:0]\n\
         :{chain} - [0:0]\n:CNI-DN-other - [0:0]\n\
         -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n\
         -A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ\n\
         -A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"k8s-pod-network\\\" id: \\\"{CID}\\\"\" -m multiport --dports 9999 -j {chain}\n\
         -A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"k8s-pod-network\\\" id: \\\"other\\\"\" -m multiport --dports 7777 -j CNI-DN-other\n\
         -A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000\n\
         -A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE\n\
         COMMIT\n"
    );
    let state = NatState::parse(&saved);
    golden(
        "iptables-calico-add-repair.rules",
        &ipt::add_full(&r, &net("10.244.1.5/32"), &state),
    );
    golden(
        "iptables-calico-del-from-state.rules",
        &ipt::del_full(&r, &state).unwrap(),
    );
    assert!(ipt::del_full(&r, &NatState::default()).is_none());
}

#[test]
fn nft_calico_example() {
    let (conf, m) = calico_example();
    let r = req(&conf, &m);
    let pods = [net("10.244.1.5/32")];
    golden("nft-calico-add.nft", &nft::add(&r, &pods).text());
    golden("nft-calico-del.nft", &nft::del(&r).text());
    golden("nft-calico-check.nft", &nft::check(&r, &pods).text());
}

#[test]
fn nft_mixed_dual_stack() {
    let conf = PortMapConf::from_json(&json!({
        "masqAll": true,
        "conditionsV4": ["ip", "saddr", "!=", "192.0.2.0/24"]
    }))
    .unwrap();
    let m = mixed();
    let r = req(&conf, &m);
    let pods = [net("10.0.0.2/24"), net("2001:db8::2/64")];
    golden("nft-mixed-masqall-add.nft", &nft::add(&r, &pods).text());
    let conf = PortMapConf::from_json(&json!({"snat": false})).unwrap();
    let r = req(&conf, &m);
    golden("nft-mixed-nosnat-add.nft", &nft::add(&r, &pods).text());
    golden("nft-mixed-del.nft", &nft::del(&r).text());
}

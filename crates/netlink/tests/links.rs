//! Root tests for links, in namespaces created by the test. Verified with `ip -j`.
mod common;

use common::json;
use netlink::{Handle, MacAddr, VethSpec};
use netns::testutil::{unshare_current_thread_netns, TempNetNs};
use netns::NetNs;

#[test]
fn veth_with_peer_created_in_other_netns() {
    unshare_current_thread_netns().unwrap();
    let cont = TempNetNs::new().unwrap();
    let h = Handle::new().unwrap();
    let spec = VethSpec::new("cali0123456789a", "eth0")
        .mtu(1440)
        .num_queues(2)
        .mac("ee:ee:ee:ee:ee:ee".parse().unwrap())
        .peer_mac("0a:58:0a:f4:01:05".parse().unwrap())
        .peer_netns(cont.netns());
    let host = h.create_veth(&spec).unwrap();
    assert_eq!(host.name, "cali0123456789a");
    assert_eq!(host.mtu, 1440);
    assert!(host.is_veth());
    assert!(host.link_netnsid.is_some(), "peer is in another netns");

    let shown = json("ip", &["-d", "link", "show", "cali0123456789a"]);
    assert_eq!(shown[0]["mtu"], 1440);
    assert_eq!(shown[0]["address"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(shown[0]["num_tx_queues"], 2);
    assert_eq!(shown[0]["linkinfo"]["info_kind"], "veth");

    // The peer exists only in the container netns, with its MAC and MTU.
    let peer_index = cont
        .run(|| {
            let shown = json("ip", &["link", "show", "eth0"]);
            assert_eq!(shown[0]["mtu"], 1440);
            assert_eq!(shown[0]["address"], "0a:58:0a:f4:01:05");
            shown[0]["ifindex"].as_u64().unwrap() as u32
        })
        .unwrap();
    assert!(h.link_by_name("eth0").unwrap().is_none());

    // From the container side, the peer index is the host link's index.
    let ch = Handle::in_netns(cont.netns()).unwrap();
    assert_eq!(ch.veth_peer_index("eth0").unwrap(), host.index);
    assert_eq!(host.peer_index, Some(peer_index));
}

#[test]
fn veth_created_from_container_with_peer_in_host() {
    // Calico's direction: the handle lives in the container, the peer goes to the host.
    unshare_current_thread_netns().unwrap();
    let host_ns = NetNs::current_thread().unwrap();
    let cont = TempNetNs::new().unwrap();
    let ch = Handle::in_netns(cont.netns()).unwrap();
    let eth0 = ch
        .create_veth(
            &VethSpec::new("eth0", "calihostside1")
                .mtu(1400)
                .peer_netns(&host_ns),
        )
        .unwrap();
    let h = Handle::new().unwrap();
    let hostside = h.link("calihostside1").unwrap();
    assert_eq!(hostside.mtu, 1400);
    assert_eq!(ch.veth_peer_index("eth0").unwrap(), hostside.index);
    assert_eq!(
        json("ip", &["link", "show", "calihostside1"])[0]["ifindex"],
        hostside.index
    );
    // Deleting the container end removes both.
    ch.delete_link(eth0.index).unwrap();
    assert!(h.link_by_name("calihostside1").unwrap().is_none());
    assert!(json("ip", &["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["ifname"] != "calihostside1"));
}

#[test]
fn set_up_mtu_mac_and_delete() {
    unshare_current_thread_netns().unwrap();
    let h = Handle::new().unwrap();
    let a = h.create_veth(&VethSpec::new("va", "vb")).unwrap();
    assert!(!a.up);
    h.set_link_up(a.index).unwrap();
    h.set_mtu(a.index, 1300).unwrap();
    let mac: MacAddr = "02:00:00:00:00:42".parse().unwrap();
    h.set_mac(a.index, mac).unwrap();

    let shown = json("ip", &["link", "show", "va"]);
    assert!(shown[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "UP"));
    assert_eq!(shown[0]["mtu"], 1300);
    assert_eq!(shown[0]["address"], "02:00:00:00:00:42");
    let back = h.link_by_index(a.index).unwrap().unwrap();
    assert!(back.up);
    assert_eq!(back.mac, Some(mac));
    assert_eq!(back.mtu, 1300);

    h.set_link_down(a.index).unwrap();
    let shown = json("ip", &["link", "show", "va"]);
    assert!(!shown[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "UP"));

    // Both ends listed, with each other as peers.
    let links = h.links().unwrap();
    let b = links.iter().find(|l| l.name == "vb").unwrap();
    assert_eq!(b.peer_index, Some(a.index));
    assert!(links.iter().any(|l| l.name == "lo"));

    // Existing name: EEXIST.
    let err = h.create_veth(&VethSpec::new("va", "vc")).unwrap_err();
    assert!(err.is_exists(), "{err}");

    h.delete_link_by_name("va").unwrap();
    assert!(h.link_by_name("vb").unwrap().is_none(), "peer went too");
    let err = h.delete_link(a.index).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.errno(), Some(libc::ENODEV));
    let err = h.delete_link_by_name("va").unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn ifb_and_not_a_veth() {
    unshare_current_thread_netns().unwrap();
    let h = Handle::new().unwrap();
    let ifb = h.create_ifb("bwptest0", Some(1400), 0).unwrap();
    assert_eq!(ifb.kind.as_deref(), Some("ifb"));
    assert_eq!(ifb.txqueuelen, Some(0));
    let shown = json("ip", &["-d", "link", "show", "bwptest0"]);
    assert_eq!(shown[0]["linkinfo"]["info_kind"], "ifb");
    assert_eq!(shown[0]["mtu"], 1400);
    // ip(8) omits txqlen when it is 0 (an ifb defaults to 32).
    assert!(shown[0]["txqlen"].is_null(), "{shown}");

    let err = h.veth_peer_index("bwptest0").unwrap_err();
    assert!(matches!(err, netlink::Error::NotVeth(_)), "{err}");
    let err = h.veth_peer_index("nope").unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn move_link_to_other_netns() {
    unshare_current_thread_netns().unwrap();
    let cont = TempNetNs::new().unwrap();
    let h = Handle::new().unwrap();
    let a = h.create_veth(&VethSpec::new("mv0", "mv1")).unwrap();
    h.set_link_netns(a.index, cont.netns()).unwrap();
    assert!(h.link_by_name("mv0").unwrap().is_none());
    let ch = Handle::in_netns(cont.netns()).unwrap();
    assert!(ch.link_by_name("mv0").unwrap().is_some());
}

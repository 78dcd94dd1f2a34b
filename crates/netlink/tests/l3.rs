//! Root tests for addresses, routes and neighbours (calico's container/host setup), verified
//! with `ip -j`.
mod common;

use std::net::IpAddr;

use common::json;
use netlink::{AddrOptions, Handle, IpFamily, Route, RouteFilter, Scope, VethSpec};
use netns::testutil::unshare_current_thread_netns;

fn veth(h: &Handle, a: &str, b: &str) -> u32 {
    let l = h.create_veth(&VethSpec::new(a, b)).unwrap();
    h.set_link_up(l.index).unwrap();
    let peer = h.link(b).unwrap();
    h.set_link_up(peer.index).unwrap();
    l.index
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn addresses_v4_and_v6() {
    unshare_current_thread_netns().unwrap();
    let h = Handle::new().unwrap();
    let idx = veth(&h, "a0", "a1");
    h.add_address(
        idx,
        "10.244.1.5/32".parse().unwrap(),
        AddrOptions::default(),
    )
    .unwrap();
    h.add_address(
        idx,
        "192.0.2.10/24".parse().unwrap(),
        AddrOptions::default(),
    )
    .unwrap();
    h.add_address(
        idx,
        "fd00:1::5/128".parse().unwrap(),
        AddrOptions { nodad: true },
    )
    .unwrap();

    let shown = json("ip", &["addr", "show", "dev", "a0"]);
    let infos = shown[0]["addr_info"].as_array().unwrap();
    let find = |local: &str| {
        infos
            .iter()
            .find(|a| a["local"] == local)
            .unwrap_or_else(|| panic!("{local} missing in {infos:?}"))
    };
    assert_eq!(find("10.244.1.5")["prefixlen"], 32);
    assert_eq!(find("192.0.2.10")["broadcast"], "192.0.2.255");
    let v6 = find("fd00:1::5");
    assert_eq!(v6["prefixlen"], 128);
    assert_eq!(v6["nodad"], true, "{v6}");
    assert!(
        v6["tentative"].is_null(),
        "nodad address must not be tentative: {v6}"
    );

    let listed = h.addresses(Some(idx), Some(IpFamily::V4)).unwrap();
    let mut v4: Vec<String> = listed.iter().map(|a| a.addr.to_string()).collect();
    v4.sort();
    assert_eq!(v4, ["10.244.1.5/32", "192.0.2.10/24"]);
    let v6s = h.addresses(Some(idx), Some(IpFamily::V6)).unwrap();
    assert!(v6s
        .iter()
        .any(|a| a.addr.to_string() == "fd00:1::5/128" && !a.is_tentative()));

    let err = h
        .add_address(
            idx,
            "10.244.1.5/32".parse().unwrap(),
            AddrOptions::default(),
        )
        .unwrap_err();
    assert!(err.is_exists(), "{err}");
    h.delete_address(idx, "10.244.1.5/32".parse().unwrap())
        .unwrap();
    let err = h
        .delete_address(idx, "10.244.1.5/32".parse().unwrap())
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let shown = json("ip", &["addr", "show", "dev", "a0"]);
    assert!(!shown.to_string().contains("10.244.1.5"));
}

#[test]
fn calico_style_routes() {
    unshare_current_thread_netns().unwrap();
    let h = Handle::new().unwrap();
    let idx = veth(&h, "eth0", "peer0");
    h.add_address(
        idx,
        "10.244.1.5/32".parse().unwrap(),
        AddrOptions::default(),
    )
    .unwrap();
    // 169.254.1.1/32 dev eth0 scope link; default via 169.254.1.1 dev eth0
    let gw_route = Route::new("169.254.1.1/32".parse().unwrap())
        .dev(idx)
        .scope(Scope::Link);
    h.add_route(&gw_route).unwrap();
    let default = Route::default_route(IpFamily::V4)
        .via(ip("169.254.1.1"))
        .dev(idx);
    h.add_route(&default).unwrap();

    let shown = json("ip", &["route", "show"]);
    let routes = shown.as_array().unwrap();
    let r = routes.iter().find(|r| r["dst"] == "169.254.1.1").unwrap();
    assert_eq!(r["scope"], "link");
    assert_eq!(r["dev"], "eth0");
    let d = routes.iter().find(|r| r["dst"] == "default").unwrap();
    assert_eq!(d["gateway"], "169.254.1.1");
    assert_eq!(d["dev"], "eth0");

    let ours = h
        .routes(RouteFilter {
            family: Some(IpFamily::V4),
            oif: Some(idx),
            table: Some(netlink::RT_TABLE_MAIN),
        })
        .unwrap();
    assert!(ours.contains(&gw_route), "{ours:?}");
    assert!(ours.contains(&default), "{ours:?}");

    let err = h.add_route(&gw_route).unwrap_err();
    assert!(err.is_exists(), "{err}");
    // Replace with another metric-less route to the same dst: allowed.
    h.replace_route(&gw_route).unwrap();

    h.delete_route(&default).unwrap();
    let err = h.delete_route(&default).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.errno(), Some(libc::ESRCH));
    assert!(!json("ip", &["route", "show"])
        .to_string()
        .contains("default"));
}

#[test]
fn host_side_routes_and_ipv6() {
    unshare_current_thread_netns().unwrap();
    let h = Handle::new().unwrap();
    let idx = veth(&h, "cali1", "c1");
    h.add_route(
        &Route::new("10.244.1.5/32".parse().unwrap())
            .dev(idx)
            .scope(Scope::Link),
    )
    .unwrap();
    h.add_route(
        &Route::new("fd00:1::5/128".parse().unwrap())
            .dev(idx)
            .scope(Scope::Link),
    )
    .unwrap();
    // Non-main table, IPv6 default via link-local gateway.
    h.add_route(
        &Route::default_route(IpFamily::V6)
            .via(ip("fe80::ecee:eeff:feee:eeee"))
            .dev(idx)
            .table(1000),
    )
    .unwrap();

    let v4 = json("ip", &["route", "show", "dev", "cali1"]);
    assert_eq!(v4[0]["dst"], "10.244.1.5");
    assert_eq!(v4[0]["scope"], "link");
    let v6 = json("ip", &["-6", "route", "show", "dev", "cali1"]);
    assert!(v6
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["dst"] == "fd00:1::5"));
    let t = json("ip", &["-6", "route", "show", "table", "1000"]);
    assert_eq!(t[0]["dst"], "default");
    assert_eq!(t[0]["gateway"], "fe80::ecee:eeff:feee:eeee");

    let listed = h
        .routes(RouteFilter {
            table: Some(1000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].gateway, Some(ip("fe80::ecee:eeff:feee:eeee")));
    assert_eq!(listed[0].table, 1000);
}

#[test]
fn permanent_neighbours() {
    unshare_current_thread_netns().unwrap();
    let h = Handle::new().unwrap();
    let idx = veth(&h, "n0", "n1");
    let mac = "ee:ee:ee:ee:ee:ee".parse().unwrap();
    h.add_neighbour(idx, ip("169.254.1.1"), mac).unwrap();
    h.add_neighbour(idx, ip("fd00::1"), mac).unwrap();
    let shown = json("ip", &["neigh", "show", "dev", "n0"]);
    let e = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["dst"] == "169.254.1.1")
        .unwrap();
    assert_eq!(e["lladdr"], "ee:ee:ee:ee:ee:ee");
    assert!(e["state"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "PERMANENT"));

    let err = h.add_neighbour(idx, ip("169.254.1.1"), mac).unwrap_err();
    assert!(err.is_exists(), "{err}");
    let other = "02:00:00:00:00:01".parse().unwrap();
    h.replace_neighbour(idx, ip("169.254.1.1"), other).unwrap();
    let listed = h.neighbours(Some(idx), Some(IpFamily::V4)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].mac, Some(other));
    assert!(listed[0].is_permanent());
    // Only count our entries: bringing the veth up can add kernel-learned IPv6 neighbours (NDP)
    // at any moment, which are not permanent.
    let permanent = h.neighbours(Some(idx), None).unwrap();
    let permanent: Vec<_> = permanent.iter().filter(|n| n.is_permanent()).collect();
    assert_eq!(permanent.len(), 2, "{permanent:?}");

    h.delete_neighbour(idx, ip("169.254.1.1")).unwrap();
    let err = h.delete_neighbour(idx, ip("169.254.1.1")).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

/// `route_get` answers like `ip route get`: the main table's route, a policy-routing rule's
/// table when one matches, and `None` for an unreachable destination.
#[test]
fn route_get_follows_policy_routing() {
    unshare_current_thread_netns().unwrap();
    let h = Handle::new().unwrap();
    let a = veth(&h, "g0", "g1");
    let b = veth(&h, "g2", "g3");
    h.add_route(
        &Route::new("10.244.1.5/32".parse().unwrap())
            .dev(a)
            .scope(Scope::Link),
    )
    .unwrap();
    h.add_route(&Route::new("fd00:1::5/128".parse().unwrap()).dev(a))
        .unwrap();
    let got = h.route_get(ip("10.244.1.5")).unwrap().expect("a route");
    assert_eq!(got.oif, Some(a));
    assert_eq!(got.dst.to_string(), "10.244.1.5/32");
    let got6 = h.route_get(ip("fd00:1::5")).unwrap().expect("a v6 route");
    assert_eq!(got6.oif, Some(a));
    assert_eq!(h.route_get(ip("10.244.2.1")).unwrap(), None, "no route");

    // A rule sending the address to table 100, where it leaves through the other veth.
    h.add_route(
        &Route::new("10.244.1.5/32".parse().unwrap())
            .dev(b)
            .scope(Scope::Link)
            .table(100),
    )
    .unwrap();
    common::run("ip", &["rule", "add", "to", "10.244.1.5", "lookup", "100"]);
    let got = h.route_get(ip("10.244.1.5")).unwrap().expect("a route");
    assert_eq!(got.oif, Some(b), "the rule's table wins: {got:?}");
}

//! Against the running kernel, each test in a private network namespace of its own (the test
//! thread unshares one; `nft` children inherit it). Needs root.

use std::process::Command;

use nf_tables::ElementChange::{Add, Create, Delete};
use nf_tables::{Batch, Concat, Element, Expr, Family, NewRule, NfSocket};

const F: Family = Family::Ipv4;

/// A fresh netns for this test thread with table `ip t` and chain `c`.
fn private_table() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests need root (network namespaces)"
    );
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let out = Command::new("nft")
        .args(["add table ip t; add chain ip t c"])
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn jump(chain: &str) -> NewRule {
    NewRule {
        exprs: vec![Expr::Counter, Expr::Jump(chain.into())],
        compat_proto: None,
    }
}

#[test]
fn a_large_batch_applies_whole_and_the_socket_stays_usable() {
    private_table();
    let mut sock = NfSocket::new().unwrap();
    let mut b = Batch::new();
    b.add_chain(F, "t", "target");
    for _ in 0..1500 {
        b.append_rule(F, "t", "c", &jump("target"));
    }
    sock.apply(&b).unwrap();
    assert_eq!(sock.rules(F, "t", "c").unwrap().len(), 1500);
    let target = sock.chain(F, "t", "target").unwrap().expect("created");
    assert_eq!(target.use_count, 1500, "every rule jumps to it");
}

#[test]
fn a_refused_change_fails_the_whole_batch_and_names_itself() {
    private_table();
    let mut sock = NfSocket::new().unwrap();
    let mut b = Batch::new();
    b.add_chain(F, "t", "new");
    for _ in 0..400 {
        b.append_rule(F, "t", "c", &jump("new"));
    }
    b.append_rule(F, "t", "missing", &jump("new"));
    for _ in 0..400 {
        b.append_rule(F, "t", "c", &jump("new"));
    }
    let e = sock.apply(&b).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("add rule to missing"), "{e}");
    // Nothing of it happened, and the same socket answers the next request.
    assert!(sock.chain(F, "t", "new").unwrap().is_none());
    assert!(sock.rules(F, "t", "c").unwrap().is_empty());
    let again = sock.apply(Batch::new().add_chain(F, "t", "c")).unwrap_err();
    assert!(again.is_exists(), "{again}");
}

#[test]
fn rules_are_found_by_handle_and_deleted_by_handle() {
    private_table();
    let mut sock = NfSocket::new().unwrap();
    let mut b = Batch::new();
    b.add_chain(F, "t", "x")
        .append_rule(F, "t", "c", &jump("x"));
    sock.apply(&b).unwrap();
    let x = sock.chain(F, "t", "x").unwrap().unwrap();
    // Same transaction: the rule got the handle after the chain's.
    let r = sock
        .rule(F, "t", "c", x.handle + 1)
        .unwrap()
        .expect("rule at handle + 1");
    assert_eq!(r.jump_target(), Some("x"));
    assert!(r.matches(&[Expr::Counter, Expr::Jump("x".into())]));
    assert!(sock.rule(F, "t", "c", x.handle + 2).unwrap().is_none());
    let mut d = Batch::new();
    d.delete_rule(F, "t", "c", r.handle)
        .delete_chain(F, "t", "x");
    sock.apply(&d).unwrap();
    assert!(sock.rules(F, "t", "c").unwrap().is_empty());
    assert!(sock.chain(F, "t", "x").unwrap().is_none());
}

fn nft(script: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `owner`: ifname . ipv4_addr . inet_proto . inet_service; `dnat`: inet_proto . inet_service
/// mapped to ipv4_addr . inet_service (the layouts portmap uses).
fn private_sets() {
    private_table();
    nft(
        "add set ip t owner { type ifname . ipv4_addr . inet_proto . inet_service; }\n\
         add map ip t dmap { type inet_proto . inet_service : ipv4_addr . inet_service; }",
    );
}

fn owner(token: &str, port: u16) -> Element {
    let key = Concat::new()
        .ifname(token)
        .unwrap()
        .addr("0.0.0.0".parse().unwrap())
        .inet_proto(6)
        .inet_service(port);
    Element::key(key).with_comment("net cid")
}

fn dnat(port: u16, to: &str, to_port: u16) -> Element {
    Element::mapping(
        Concat::new().inet_proto(6).inet_service(port),
        Concat::new()
            .addr(to.parse().unwrap())
            .inet_service(to_port),
    )
}

#[test]
fn elements_are_stored_as_nft_shows_them() {
    private_sets();
    let mut sock = NfSocket::new().unwrap();
    let mut b = Batch::new();
    b.element(Create, F, "t", "owner", &owner("ce0bd88d2c9cb28", 8080))
        .unwrap()
        .element(Create, F, "t", "dmap", &dnat(8080, "10.244.0.5", 80))
        .unwrap();
    sock.apply(&b).unwrap();
    let listed = nft("list set ip t owner") + &nft("list map ip t dmap");
    assert!(
        listed.contains(r#""ce0bd88d2c9cb28" . 0.0.0.0 . tcp . 8080 comment "net cid""#),
        "{listed}"
    );
    assert!(listed.contains("tcp . 8080 : 10.244.0.5 . 80"), "{listed}");
    // nft's own delete finds what we created (same key bytes).
    nft("delete element ip t dmap { tcp . 8080 }");
}

#[test]
fn every_refused_element_is_reported_and_nothing_commits() {
    private_sets();
    let mut sock = NfSocket::new().unwrap();
    nft("add element ip t dmap { tcp . 81 : 10.0.0.1 . 1 }");
    let mut b = Batch::new();
    b.element(Create, F, "t", "dmap", &dnat(80, "10.0.0.2", 2))
        .unwrap()
        .element(Create, F, "t", "dmap", &dnat(81, "10.0.0.2", 2))
        .unwrap()
        .element(Delete, F, "t", "dmap", &dnat(82, "10.0.0.2", 2))
        .unwrap()
        .element(Add, F, "t", "dmap", &dnat(83, "10.0.0.2", 2))
        .unwrap();
    let refused = sock.apply_or_refusals(&b).unwrap();
    let got: Vec<_> = refused.iter().map(|r| (r.index, r.errno)).collect();
    assert_eq!(got, [(1, libc::EEXIST), (2, libc::ENOENT)]);
    let e = sock.apply(&b).unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert!(e.to_string().contains("create element in dmap"), "{e}");
    let listed = nft("list map ip t dmap");
    assert!(listed.contains("tcp . 81 : 10.0.0.1 . 1"), "{listed}");
    assert!(
        !listed.contains(" 80 ") && !listed.contains("83"),
        "{listed}"
    );
    // Delete + create of one key in one batch replaces its datum.
    let mut r = Batch::new();
    r.element(Delete, F, "t", "dmap", &dnat(81, "0.0.0.0", 0))
        .unwrap()
        .element(Create, F, "t", "dmap", &dnat(81, "10.0.0.3", 3))
        .unwrap();
    assert!(sock.apply_or_refusals(&r).unwrap().is_empty());
    let listed = nft("list map ip t dmap");
    assert!(listed.contains("tcp . 81 : 10.0.0.3 . 3"), "{listed}");
    // `add` of a present set key is no error.
    let again = Element::key(owner("ce0bd88d2c9cb28", 1).key);
    let mut a = Batch::new();
    a.element(Add, F, "t", "owner", &again).unwrap();
    sock.apply(&a).unwrap();
    sock.apply(&a).unwrap();
    // A missing set is refused like a missing element.
    let mut m = Batch::new();
    m.element(Delete, F, "t", "nosuchset", &dnat(81, "0.0.0.0", 0))
        .unwrap();
    let refused = sock.apply_or_refusals(&m).unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].errno, libc::ENOENT);
}

#[test]
fn rule_comments_are_read_back() {
    private_table();
    nft("add rule ip t c counter comment \"portmap abc\"\nadd rule ip t c counter");
    let mut sock = NfSocket::new().unwrap();
    let rules = sock.rules(F, "t", "c").unwrap();
    let comments: Vec<_> = rules.iter().map(|r| r.comment.as_deref()).collect();
    assert_eq!(comments, [Some("portmap abc"), None]);
}

#[test]
fn thousands_of_refusals_are_all_reported() {
    private_sets();
    let mut sock = NfSocket::new().unwrap();
    let mut b = Batch::new();
    for port in 1..=5000 {
        b.element(Delete, F, "t", "dmap", &dnat(port, "0.0.0.0", 0))
            .unwrap();
    }
    let refused = sock.apply_or_refusals(&b).unwrap();
    assert_eq!(refused.len(), 5000);
    assert!(refused.iter().all(|r| r.errno == libc::ENOENT));
    assert_eq!(refused[4999].index, 4999);
}

fn in_dmap(elems: &[Element]) -> Vec<nf_tables::ElementLookup<'_>> {
    elems
        .iter()
        .map(|e| nf_tables::ElementLookup {
            family: F,
            table: "t",
            set: "dmap",
            element: e,
        })
        .collect()
}

#[test]
fn elements_are_looked_up_by_key_in_one_round_trip() {
    use nf_tables::ElementLookup;
    private_sets();
    let mut sock = NfSocket::new().unwrap();
    nft("add element ip t dmap { tcp . 81 : 10.0.0.1 . 1, tcp . 83 : 10.0.0.1 . 1 }");
    let elems: Vec<Element> = (80..85).map(|p| dnat(p, "0.0.0.0", 0)).collect();
    let mut lookups = in_dmap(&elems);
    // A missing set and a missing table count as absent.
    lookups.push(ElementLookup {
        set: "nosuchset",
        ..lookups[1]
    });
    lookups.push(ElementLookup {
        table: "nosuchtable",
        ..lookups[1]
    });
    let found = sock.elements_exist(&lookups).unwrap();
    assert_eq!(found, [false, true, false, true, false, false, false]);
    // Many at once, and the socket answers the next request.
    let many: Vec<Element> = (1..=3000).map(|p| dnat(p, "0.0.0.0", 0)).collect();
    let found = sock.elements_exist(&in_dmap(&many)).unwrap();
    assert_eq!(found.iter().filter(|f| **f).count(), 2);
    assert!(found[80] && found[82]);
    assert_eq!(sock.rules(F, "t", "c").unwrap().len(), 0);
}

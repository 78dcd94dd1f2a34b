//! Against the running kernel, each test in a private network namespace of its own (the test
//! thread unshares one; `nft` children inherit it). Needs root.

use std::process::Command;

use nf_tables::{Batch, Expr, Family, NewRule, NfSocket};

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

//! `calicoctl::execute` on an in-memory store: multi-resource input and calicoctl's
//! all-or-partial reporting (the binary-level tests live in bins/calicoctl/tests).

use calicoctl::{execute, Command, CtlError, Kind, OutputFormat};
use ipam::{Key, MemoryStore, ResourceKind, Store};

fn exec(store: &MemoryStore, cmd: Command, stdin: &str) -> (Result<i32, CtlError>, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let r = execute(&cmd, store, &mut stdin.as_bytes(), &mut out, &mut err);
    (r, String::from_utf8(out).unwrap())
}

fn pool(name: &str, cidr: &str) -> String {
    format!(
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{{"name":"{name}"}},"spec":{{"cidr":"{cidr}"}}}}"#
    )
}

fn stdin_file() -> String {
    "-".into()
}

#[test]
fn json_array_creates_every_pool() {
    let s = MemoryStore::new();
    let input = format!(
        "[{}, {}]",
        pool("a", "10.1.0.0/16"),
        pool("b", "fd00:1::/48")
    );
    let (r, out) = exec(&s, Command::Create { file: stdin_file() }, &input);
    assert_eq!(r.unwrap(), 0);
    assert_eq!(out, "Successfully created 2 'IPPool' resource(s)\n");
    for n in ["a", "b"] {
        assert!(s.get(&Key::resource(ResourceKind::IpPool, n)).is_ok());
    }
    let (r, out) = exec(
        &s,
        Command::Get {
            kind: Kind::IpPool,
            name: None,
            output: OutputFormat::Ps,
            namespace: None,
        },
        "",
    );
    assert_eq!(r.unwrap(), 0);
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn write_error_after_the_first_pool_is_a_partial_success() {
    let s = MemoryStore::new();
    // Both are valid on their own; the second overlaps the first, found only when writing.
    let input = format!(
        "{{\"kind\":\"List\",\"items\":[{}, {}]}}",
        pool("a", "10.1.0.0/16"),
        pool("b", "10.1.64.0/18")
    );
    let (r, out) = exec(&s, Command::Apply { file: stdin_file() }, &input);
    let e = r.unwrap_err().to_string();
    assert!(
        e.starts_with("Partial success: applied the first 1 out of 2 'IPPool' resources:\nHit error: error with field spec.cidr"),
        "{e}"
    );
    assert!(e.contains("overlaps with IPPool(a)"), "{e}");
    assert_eq!(out, "");
    assert!(s.get(&Key::resource(ResourceKind::IpPool, "b")).is_err());

    // A validation error anywhere: nothing is written at all.
    let input = format!("{}\n{}", pool("c", "10.2.0.0/16"), pool("d", "10.3.0.1/16"));
    let (r, _) = exec(&s, Command::Apply { file: stdin_file() }, &input);
    assert!(r
        .unwrap_err()
        .to_string()
        .contains("spec.cidr = '10.3.0.1/16'"));
    assert!(s.get(&Key::resource(ResourceKind::IpPool, "c")).is_err());
}

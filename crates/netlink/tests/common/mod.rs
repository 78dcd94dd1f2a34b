//! Shared helpers for root tests: run `ip`/`tc` in the calling thread's netns and parse `-j`.
#![allow(dead_code)]

use std::process::Command;

use serde_json::Value;

/// Runs a command (inherits the calling thread's netns) and returns stdout; panics on failure.
pub fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `prog -j args...` parsed as JSON (empty output = empty array).
pub fn json(prog: &str, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = run(prog, &full);
    if out.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("bad json from {prog} {args:?}: {e}: {out}"))
}

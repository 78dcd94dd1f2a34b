//! Structure-aware input generators for the parsers' fuzz tests (feature `proptest`): hostile
//! leaves (boundary numbers, traversal, special files, NUL, huge strings), arbitrary JSON, and
//! "a valid document with some fields replaced", which reaches the checks behind the first
//! field a purely random document would trip over.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// How many cases a fuzz test runs: `PROPTEST_CASES` when set (the long run,
/// `netns-tests/bench/fuzz.sh`), else `default` (the bounded run inside `cargo test`).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Numbers at the edges parsers get wrong: signs, widths, floats, overflow.
pub fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(-1)),
        Just(json!(255)),
        Just(json!(65_535)),
        Just(json!(65_536)),
        Just(json!(u32::MAX)),
        Just(json!(1u64 << 32)),
        Just(json!(1u64 << 44)),
        Just(json!(1u64 << 53)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1.5)),
        Just(json!(-0.0)),
        Just(json!(1e308)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
    ]
}

/// Strings that are paths, addresses, names or noise, hostile or almost valid.
pub fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("../../../etc/passwd".to_string()),
        Just("/dev/zero".to_string()),
        Just("/dev/null".to_string()),
        Just("/proc/self/ns/net".to_string()),
        Just("a\0b".to_string()),
        Just("true".to_string()),
        Just("10.0.0.0/33".to_string()),
        Just("10.0.0.1/24".to_string()),
        Just("fd00::1/64".to_string()),
        Just("::".to_string()),
        Just("127.0.0.1".to_string()),
        Just("1.0.0".to_string()),
        Just("usePodCidr".to_string()),
        Just("x".repeat(70_000)),
        Just("é€\u{202e}🙂".to_string()),
        Just("-j ACCEPT; reboot".to_string()),
        "[ -~]{0,24}",
        "[0-9./:a-f]{0,20}",
        any::<String>(),
    ]
}

/// A JSON leaf: null, bool, hostile number or string.
pub fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        hostile_number(),
        hostile_string().prop_map(Value::String),
    ]
}

/// Any JSON document, up to a few levels deep, keys drawn from `keys` or random.
pub fn any_json(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => proptest::sample::select(if keys.is_empty() { &["k"][..] } else { keys })
            .prop_map(str::to_string),
        1 => "[a-zA-Z_]{0,8}",
    ];
    leaf().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `base` with some of `fields` (JSON pointers) replaced by anything, or removed.
pub fn mutated(base: Value, fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let edit = (
        proptest::sample::select(fields),
        proptest::option::weighted(0.9, any_json(&[])),
    );
    proptest::collection::vec(edit, 1..4).prop_map(move |edits| {
        let mut v = base.clone();
        for (ptr, new) in edits {
            set_pointer(&mut v, ptr, new);
        }
        v
    })
}

/// Sets (or with `None` removes) the value at a JSON pointer, creating objects on the way;
/// a path through a non-object is left alone.
pub fn set_pointer(v: &mut Value, ptr: &str, new: Option<Value>) {
    let parts: Vec<&str> = ptr.split('/').skip(1).collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        let Value::Object(o) = cur else { return };
        cur = o.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    let Value::Object(o) = cur else { return };
    match new {
        Some(x) => {
            o.insert(last.to_string(), x);
        }
        None => {
            o.remove(*last);
        }
    }
}

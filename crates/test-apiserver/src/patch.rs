//! Patch formats: JSON merge patch (RFC 7386), strategic merge patch (the map subset), and
//! JSON patch (RFC 6902).

use serde_json::Value;

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Strategic merge patch. For maps (annotations, labels, spec fields) it is a merge patch;
/// lists are replaced, which differs from a real server only for lists that declare a patch
/// merge key (containers, conditions, ...). Directives we do not implement are rejected
/// rather than silently misapplied.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    if let Some(d) = find_directive(patch) {
        return Err(format!("unsupported strategic merge patch directive {d:?}"));
    }
    merge_patch(target, patch);
    Ok(())
}

fn find_directive(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            if k.starts_with('$') {
                Some(k.clone())
            } else {
                find_directive(v)
            }
        }),
        Value::Array(a) => a.iter().find_map(find_directive),
        _ => None,
    }
}

/// RFC 6902 (add, remove, replace, move, copy, test). All-or-nothing: works on a copy.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch.as_array().ok_or("json patch must be an array")?;
    let mut doc = target.clone();
    for op in ops {
        let field = |f: &str| -> Result<&str, String> {
            op.get(f)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("json patch operation missing {f:?}"))
        };
        let path = field("path")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or("json patch operation missing \"value\"")
        };
        match field("op")? {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                remove(&mut doc, path)?;
                add(&mut doc, path, value()?)?;
            }
            "move" => {
                let v = remove(&mut doc, field("from")?)?;
                add(&mut doc, path, v)?;
            }
            "copy" => {
                let v = doc
                    .pointer(field("from")?)
                    .cloned()
                    .ok_or("json patch: copy source missing")?;
                add(&mut doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("json patch: test failed at {path}"));
                }
            }
            other => return Err(format!("json patch: unknown op {other:?}")),
        }
    }
    *target = doc;
    Ok(())
}

fn split(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("json patch: invalid path {path:?}"))?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = v;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, v);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| format!("json patch: bad array index in {path:?}"))?
            };
            a.insert(i, v);
            Ok(())
        }
        _ => Err(format!("json patch: missing parent of {path:?}")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    let missing = || format!("json patch: path {path:?} does not exist");
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(missing),
        Some(Value::Array(a)) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_semantics() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
        assert!(strategic_merge_patch(&mut t, &json!({"l": [{"$patch": "delete"}]})).is_err());
    }

    #[test]
    fn json_patch_semantics() {
        let mut t = json!({"metadata": {"annotations": {"a/b": "1"}}, "l": [1]});
        json_patch(
            &mut t,
            &json!([
                {"op": "add", "path": "/metadata/annotations/x", "value": "y"},
                {"op": "remove", "path": "/metadata/annotations/a~1b"},
                {"op": "add", "path": "/l/-", "value": 2},
                {"op": "test", "path": "/l/1", "value": 2}
            ]),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"metadata": {"annotations": {"x": "y"}}, "l": [1, 2]})
        );
        let before = t.clone();
        assert!(json_patch(&mut t, &json!([{"op": "add", "path": "/l/-", "value": 3}, {"op": "test", "path": "/l/0", "value": 9}])).is_err());
        assert_eq!(t, before, "failed patch must not apply partially");
    }
}

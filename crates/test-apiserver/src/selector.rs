//! Label and field selectors (equality-based subset: `k=v`, `k==v`, `k!=v`, `k`, `!k`, and
//! set-based `k in (a,b)` / `k notin (a,b)`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector(Vec<Req>);

/// Split on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("invalid set {s:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl Selector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top(s)
            .into_iter()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let own = |x: &str| x.trim().to_string();
            let req = if let Some((k, v)) = part.split_once("!=") {
                Req::Ne(own(k), own(v))
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(own(k), own(v))
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(own(k), own(v))
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Req::NotIn(own(k), set(v)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                Req::In(own(k), set(v)?)
            } else if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(own(k))
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Req::Exists(own(part))
            } else {
                return Err(format!("unable to parse requirement: {part:?}"));
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    /// The `k=v` and `k in (...)` terms as (key, allowed values): an object matches only if it
    /// carries `key` with one of the values, which is what a label index can look up.
    pub fn required_values(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.0.iter().filter_map(|r| match r {
            Req::Eq(k, v) => Some((k.as_str(), vec![v.as_str()])),
            Req::In(k, vs) => Some((k.as_str(), vs.iter().map(String::as_str).collect())),
            _ => None,
        })
    }

    /// The keys of `!k` terms: an object matches only if it lacks the label.
    pub fn absent_keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|r| match r {
            Req::NotExists(k) => Some(k.as_str()),
            _ => None,
        })
    }

    /// Match against a lookup function (label map or field accessor).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
            Req::Ne(k, v) => get(k).as_deref() != Some(v.as_str()),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        })
    }
}

/// Label lookup on an object.
pub fn label(obj: &Value, key: &str) -> Option<String> {
    obj.pointer("/metadata/labels")?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

/// Field lookup for field selectors: `metadata.name`, `metadata.namespace`, `spec.nodeName`, ...
pub fn field(obj: &Value, path: &str) -> Option<String> {
    let ptr = format!("/{}", path.replace('.', "/"));
    match obj.pointer(&ptr)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        v => Some(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors() {
        let o = json!({"metadata": {"name": "n", "labels": {"a": "1", "b": "2"}}});
        let m = |s: &str| Selector::parse(s).unwrap().matches(|k| label(&o, k));
        assert!(m(""));
        assert!(m("a=1,b==2"));
        assert!(!m("a=2"));
        assert!(m("a!=2"));
        assert!(m("a,!c"));
        assert!(m("a in (1,3),b notin (3)"));
        assert!(!m("c in (1)"));
        assert!(Selector::parse("metadata.name=n")
            .unwrap()
            .matches(|k| field(&o, k)));
        assert!(Selector::parse("a b c").is_err());
    }
}

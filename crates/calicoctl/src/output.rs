//! Text renderers with calicoctl's shapes: the column list of `get` (Go `tabwriter`, min width
//! 5, padding 3, every cell padded) and the boxed tables of `ipam show` (olekukonko
//! `tablewriter`: centred upper-case headers, numeric cells right-aligned).

use serde::Serialize;

use crate::error::{CtlError, CtlResult};

fn width(s: &str) -> usize {
    s.chars().count()
}

/// `get`-style columns: each cell padded to the column's widest cell + 3 (at least 5).
pub fn columns(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(width(c));
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (c, w) in cells.iter().zip(&widths) {
            let w = (*w + 3).max(5);
            s.push_str(c);
            s.push_str(&" ".repeat(w - width(c)));
        }
        s.push('\n');
        s
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn is_numeric(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let mut parts = s.splitn(2, '.');
    let int = parts.next().unwrap_or_default();
    !int.is_empty()
        && int.chars().all(|c| c.is_ascii_digit())
        && parts
            .next()
            .is_none_or(|f| f.chars().all(|c| c.is_ascii_digit()))
}

/// Boxed table (`ipam show`).
pub fn boxed(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(width(c));
        }
    }
    let rule = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = rule.clone();
    out.push('|');
    for (h, w) in headers.iter().zip(&widths) {
        let pad = w - width(h);
        let left = pad / 2;
        out.push_str(&format!(
            " {}{}{} |",
            " ".repeat(left),
            h.to_uppercase(),
            " ".repeat(pad - left)
        ));
    }
    out.push('\n');
    out.push_str(&rule);
    for r in rows {
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            let c = r.get(i).map(String::as_str).unwrap_or_default();
            let pad = " ".repeat(w - width(c));
            if is_numeric(c) {
                out.push_str(&format!(" {pad}{c} |"));
            } else {
                out.push_str(&format!(" {c}{pad} |"));
            }
        }
        out.push('\n');
    }
    out.push_str(&rule);
    out
}

/// calicoctl `-o json`: two-space indented, trailing newline.
pub fn json<T: Serialize>(v: &T) -> CtlResult<String> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| CtlError::Render {
            format: "JSON",
            source: e.into(),
        })
}

/// calicoctl `-o yaml`. Keys come out sorted (calicoctl converts via JSON maps, so does this).
pub fn yaml<T: Serialize>(v: &T) -> CtlResult<String> {
    let v = serde_json::to_value(v).map_err(|e| CtlError::Render {
        format: "YAML",
        source: e.into(),
    })?;
    serde_norway::to_string(&v).map_err(|e| CtlError::Render {
        format: "YAML",
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_shape_matches_calicoctl() {
        let s = columns(
            &["NAME", "CIDR", "SELECTOR"],
            &[vec![
                "default-ipv4-ippool".into(),
                "192.168.0.0/16".into(),
                "all()".into(),
            ]],
        );
        assert_eq!(
            s,
            "NAME                  CIDR             SELECTOR   \n\
             default-ipv4-ippool   192.168.0.0/16   all()      \n"
        );
    }

    #[test]
    fn boxed_shape_matches_calicoctl() {
        let s = boxed(
            &["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"],
            &[vec![
                "IP Pool".into(),
                "192.168.0.0/16".into(),
                "65536".into(),
                "5 (0%)".into(),
                "65531 (100%)".into(),
            ]],
        );
        assert_eq!(
            s,
            "+----------+----------------+-----------+------------+--------------+\n\
             | GROUPING |      CIDR      | IPS TOTAL | IPS IN USE |   IPS FREE   |\n\
             +----------+----------------+-----------+------------+--------------+\n\
             | IP Pool  | 192.168.0.0/16 |     65536 | 5 (0%)     | 65531 (100%) |\n\
             +----------+----------------+-----------+------------+--------------+\n"
        );
        assert!(is_numeric("12") && is_numeric("-1.5") && !is_numeric("5 (0%)") && !is_numeric(""));
    }
}

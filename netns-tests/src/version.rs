//! CNI spec version strings: comparison and the libcni choice among `cniVersions`.

use crate::error::{HarnessError, Result};

/// The newest spec version libcni (and this runner) knows.
pub const LIBRARY_VERSION: &str = "1.1.0";

/// Parses `major.minor.patch`; libcni treats an empty version as 0.1.0.
pub fn parse(v: &str) -> Result<(u64, u64, u64)> {
    if v.is_empty() {
        return Ok((0, 1, 0));
    }
    let parts: Vec<&str> = v.split('.').collect();
    let num = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| HarnessError::Conflist(format!("invalid version {v:?}")))
    };
    match parts.as_slice() {
        [a, b, c] => Ok((num(a)?, num(b)?, num(c)?)),
        _ => Err(HarnessError::Conflist(format!("invalid version {v:?}"))),
    }
}

/// `a >= b` for version strings.
pub fn at_least(a: &str, b: &str) -> Result<bool> {
    Ok(parse(a)? >= parse(b)?)
}

/// libcni: with `cniVersions`, drop entries newer than the library and use the highest of the
/// rest (together with `cniVersion`); otherwise `cniVersion` as-is.
pub fn effective(cni_version: &str, cni_versions: Option<&[String]>) -> Result<String> {
    let Some(list) = cni_versions else {
        return Ok(cni_version.to_string());
    };
    let lib = parse(LIBRARY_VERSION)?;
    let mut best: Option<((u64, u64, u64), String)> = None;
    for v in list
        .iter()
        .map(String::as_str)
        .chain(Some(cni_version).filter(|v| !v.is_empty()))
    {
        let p = parse(v)?;
        if p <= lib && best.as_ref().is_none_or(|(b, _)| p > *b) {
            best = Some((p, v.to_string()));
        }
    }
    best.map(|(_, v)| v)
        .ok_or_else(|| HarnessError::Conflist("no supported version in cniVersions".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_and_picks() {
        assert!(at_least("0.4.0", "0.4.0").unwrap());
        assert!(!at_least("0.3.1", "0.4.0").unwrap());
        assert!(at_least("1.0.0", "0.4.0").unwrap());
        let list = vec!["0.4.0".to_string(), "1.0.0".into(), "9.9.9".into()];
        assert_eq!(effective("0.3.1", Some(&list)).unwrap(), "1.0.0");
        assert_eq!(effective("0.3.1", None).unwrap(), "0.3.1");
        assert!(parse("1.0").is_err());
    }
}

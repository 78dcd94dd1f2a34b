//! `CNI_ARGS`: `K=V;K2=V2` pairs, with typed access to the keys Kubernetes runtimes send.

use crate::error::{CniError, ErrorCode};

/// Parsed `CNI_ARGS`, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `K=V;K=V`. Empty segments are skipped; a segment without exactly one `=` is an error.
    pub fn parse(raw: &str) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for seg in raw.split(';').filter(|s| !s.is_empty()) {
            let mut kv = seg.split('=');
            match (kv.next(), kv.next(), kv.next()) {
                (Some(k), Some(v), None) if !k.is_empty() => {
                    pairs.push((k.to_string(), v.to_string()))
                }
                _ => {
                    return Err(CniError::new(
                        ErrorCode::InvalidEnvironment,
                        format!("invalid CNI_ARGS pair {seg:?}: expected KEY=VALUE"),
                    ))
                }
            }
        }
        Ok(CniArgs { pairs })
    }

    /// The value of a key (exact match, last one wins like a map).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty value of a key.
    fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// True when `IgnoreUnknown` is `1` or `true` (any case).
    pub fn ignore_unknown(&self) -> bool {
        self.get("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    /// Rejects keys outside `known` unless `IgnoreUnknown` is set (Go's `LoadArgs` rule).
    pub fn check_known(&self, known: &[&str]) -> Result<(), CniError> {
        if self.ignore_unknown() {
            return Ok(());
        }
        match self
            .pairs
            .iter()
            .find(|(k, _)| k != "IgnoreUnknown" && !known.contains(&k.as_str()))
        {
            Some((k, _)) => Err(CniError::new(
                ErrorCode::InvalidEnvironment,
                format!("unknown CNI_ARGS key {k:?} (set IgnoreUnknown=1 to allow it)"),
            )),
            None => Ok(()),
        }
    }

    pub fn k8s_pod_namespace(&self) -> Option<&str> {
        self.non_empty("K8S_POD_NAMESPACE")
    }

    pub fn k8s_pod_name(&self) -> Option<&str> {
        self.non_empty("K8S_POD_NAME")
    }

    pub fn k8s_pod_infra_container_id(&self) -> Option<&str> {
        self.non_empty("K8S_POD_INFRA_CONTAINER_ID")
    }

    pub fn k8s_pod_uid(&self) -> Option<&str> {
        self.non_empty("K8S_POD_UID")
    }

    /// Requested IPs from `IP=` (comma separated, each `ip` or `ip/prefix`).
    pub fn ips(&self) -> Result<Vec<std::net::IpAddr>, CniError> {
        let Some(raw) = self.non_empty("IP") else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .map(|s| {
                let ip = s.trim().split('/').next().unwrap_or_default();
                ip.parse().map_err(|_| {
                    CniError::new(
                        ErrorCode::InvalidEnvironment,
                        format!("invalid IP {s:?} in CNI_ARGS"),
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_args() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx-1;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1",
        )
        .unwrap();
        assert!(a.ignore_unknown());
        assert_eq!(a.k8s_pod_namespace(), Some("default"));
        assert_eq!(a.k8s_pod_name(), Some("nginx-1"));
        assert_eq!(a.k8s_pod_infra_container_id(), Some("abc"));
        assert_eq!(a.k8s_pod_uid(), Some("u-1"));
        assert!(a.check_known(&[]).is_ok());
    }

    #[test]
    fn empty_and_trailing_separators() {
        assert!(CniArgs::parse("").unwrap().pairs().is_empty());
        assert_eq!(CniArgs::parse("A=1;").unwrap().get("A"), Some("1"));
        assert_eq!(CniArgs::parse("A=").unwrap().get("A"), Some(""));
    }

    #[test]
    fn malformed_pairs_are_code_4() {
        for bad in ["A", "A=1=2", "=1", "A=1;B"] {
            let e = CniArgs::parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidEnvironment, "{bad}");
            assert!(e.msg.contains("CNI_ARGS"), "{}", e.msg);
        }
    }

    #[test]
    fn unknown_keys_need_ignore_unknown() {
        let a = CniArgs::parse("FOO=1").unwrap();
        let e = a.check_known(&["IP"]).unwrap_err();
        assert!(e.msg.contains("FOO"));
        assert!(CniArgs::parse("IgnoreUnknown=true;FOO=1")
            .unwrap()
            .check_known(&[])
            .is_ok());
        assert!(CniArgs::parse("IgnoreUnknown=0;FOO=1")
            .unwrap()
            .check_known(&[])
            .is_err());
        assert!(CniArgs::parse("IP=10.0.0.1")
            .unwrap()
            .check_known(&["IP"])
            .is_ok());
    }

    #[test]
    fn ip_values() {
        let a = CniArgs::parse("IP=10.1.2.3/24,fd00::5").unwrap();
        assert_eq!(
            a.ips().unwrap(),
            vec![
                "10.1.2.3".parse::<std::net::IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        assert!(CniArgs::parse("IP=nope").unwrap().ips().is_err());
        assert!(CniArgs::parse("K8S_POD_NAME=")
            .unwrap()
            .k8s_pod_name()
            .is_none());
    }
}

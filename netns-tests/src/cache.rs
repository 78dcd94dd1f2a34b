//! libcni-compatible result cache (`<dir>/results/<net>-<containerID>-<ifname>`, kind cniCacheV1).

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{HarnessError, Result};

/// One cached attachment as libcni stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAttachment {
    pub container_id: String,
    pub ifname: String,
    pub network_name: String,
    pub netns: String,
    pub cni_args: Vec<(String, String)>,
    pub capability_args: Map<String, Value>,
    pub result: Option<Value>,
}

/// The cache directory (normally a temp dir owned by the chain runner).
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    pub fn new(dir: &Path) -> ResultCache {
        ResultCache {
            dir: dir.to_path_buf(),
        }
    }

    fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// Path libcni would use for this attachment.
    pub fn path(&self, net: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.results_dir()
            .join(format!("{net}-{container_id}-{ifname}"))
    }

    pub fn store(&self, raw_config: &[u8], a: &CachedAttachment) -> Result<()> {
        let dir = self.results_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
        let mut doc = json!({
            "kind": "cniCacheV1",
            "containerId": a.container_id,
            "config": base64(raw_config),
            "ifName": a.ifname,
            "networkName": a.network_name,
        });
        if !a.netns.is_empty() {
            doc["netns"] = json!(a.netns);
        }
        if !a.cni_args.is_empty() {
            doc["cniArgs"] = json!(a.cni_args.iter().map(|(k, v)| [k, v]).collect::<Vec<_>>());
        }
        if !a.capability_args.is_empty() {
            doc["capabilityArgs"] = Value::Object(a.capability_args.clone());
        }
        if let Some(r) = &a.result {
            doc["result"] = r.clone();
        }
        let path = self.path(&a.network_name, &a.container_id, &a.ifname);
        std::fs::write(&path, doc.to_string())
            .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))
    }

    pub fn load(&self, net: &str, container_id: &str, ifname: &str) -> Option<CachedAttachment> {
        let text = std::fs::read(self.path(net, container_id, ifname)).ok()?;
        parse_entry(&serde_json::from_slice(&text).ok()?)
    }

    pub fn remove(&self, net: &str, container_id: &str, ifname: &str) -> Result<()> {
        let path = self.path(net, container_id, ifname);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(HarnessError::io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// All readable cache entries of network `net`.
    pub fn list(&self, net: &str) -> Vec<CachedAttachment> {
        let Ok(rd) = std::fs::read_dir(self.results_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<CachedAttachment> = rd
            .flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter_map(|v| parse_entry(&v))
            .filter(|a| a.network_name == net)
            .collect();
        out.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        out
    }
}

fn parse_entry(v: &Value) -> Option<CachedAttachment> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    if s("kind") != "cniCacheV1" {
        return None;
    }
    let cni_args = v
        .get("cniArgs")
        .and_then(Value::as_array)
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| {
                    Some((
                        p.get(0)?.as_str()?.to_string(),
                        p.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(CachedAttachment {
        container_id: s("containerId"),
        ifname: s("ifName"),
        network_name: s("networkName"),
        netns: s("netns"),
        cni_args,
        capability_args: v
            .get("capabilityArgs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        result: v.get("result").cloned(),
    })
}

/// Standard base64 with padding (Go encodes `[]byte` fields this way).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn store_load_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let c = ResultCache::new(tmp.path());
        let a = CachedAttachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            network_name: "net".into(),
            netns: "/proc/1/ns/net".into(),
            cni_args: vec![("K".into(), "V".into())],
            capability_args: Map::new(),
            result: Some(json!({"cniVersion": "1.0.0"})),
        };
        c.store(b"{}", &a).unwrap();
        assert!(tmp.path().join("results/net-c1-eth0").is_file());
        assert_eq!(c.load("net", "c1", "eth0"), Some(a.clone()));
        assert_eq!(c.list("net"), vec![a]);
        assert!(c.list("other").is_empty());
        c.remove("net", "c1", "eth0").unwrap();
        c.remove("net", "c1", "eth0").unwrap();
        assert!(c.load("net", "c1", "eth0").is_none());
    }
}

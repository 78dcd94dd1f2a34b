//! Publishing a pod's IPs on the pod (KDD mode): Calico patches `pods/<pod>/status` with the
//! `podIP`/`podIPs`/`containerID` annotations after ADD so they are visible before kubelet
//! reports the status, and clears the IPs on DEL, but only for the sandbox that set them: a
//! late DEL of an old sandbox must not wipe the IPs of its replacement.

use crate::annotations::{CONTAINER_ID, POD_IP, POD_IPS};
use crate::client::Client;
use crate::error::Error;
use ipnetwork::IpNetwork;
use serde_json::json;

/// Calico retries the guarded DEL update this many times on a conflict.
const CLEAR_ATTEMPTS: usize = 6;

/// What [`clear`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// podIP/podIPs were set to "".
    Cleared,
    /// The pod is gone; nothing to do.
    PodGone,
    /// The annotations belong to another sandbox (its id); left alone.
    OtherContainer(String),
}

/// The patch Calico sends after ADD: the first IP, all IPs (comma separated), the sandbox.
pub fn record_patch(ips: &[IpNetwork], container_id: &str) -> serde_json::Value {
    let all: Vec<String> = ips.iter().map(ToString::to_string).collect();
    json!({"metadata": {"annotations": {
        POD_IP: all.first().cloned().unwrap_or_default(),
        POD_IPS: all.join(","),
        CONTAINER_ID: container_id,
    }}})
}

/// Records the pod's IPs (CIDR form, /32 and /128) after ADD.
pub fn record(
    client: &Client,
    namespace: &str,
    pod: &str,
    container_id: &str,
    ips: &[IpNetwork],
) -> Result<(), Error> {
    client.patch_pod_status(namespace, pod, &record_patch(ips, container_id))
}

/// Clears podIP/podIPs if they belong to `container_id` (or to nobody), with resourceVersion
/// and UID preconditions so a concurrent ADD of a new sandbox wins; retried on conflict.
pub fn clear(
    client: &Client,
    namespace: &str,
    pod: &str,
    container_id: &str,
) -> Result<Cleared, Error> {
    let mut last = None;
    for _ in 0..CLEAR_ATTEMPTS {
        let current = match client.pod(namespace, pod) {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(Cleared::PodGone),
            Err(e) => return Err(e),
        };
        if let Some(owner) = current
            .annotations
            .get(CONTAINER_ID)
            .filter(|o| !o.is_empty() && o.as_str() != container_id)
        {
            return Ok(Cleared::OtherContainer(owner.clone()));
        }
        let patch = json!({"metadata": {
            "resourceVersion": current.resource_version,
            "uid": current.uid,
            "annotations": {POD_IP: "", POD_IPS: ""},
        }});
        match client.patch_pod_status(namespace, pod, &patch) {
            Ok(()) => return Ok(Cleared::Cleared),
            Err(e) if e.is_not_found() => return Ok(Cleared::PodGone),
            Err(Error::Conflict(msg)) => last = Some(msg),
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict(format!(
        "error deleting endpoint: endpoint was modified before it could be deleted ({})",
        last.unwrap_or_default()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_patch_shape() {
        let ips: Vec<IpNetwork> = vec![
            "10.244.1.5/32".parse().unwrap(),
            "fd00::5/128".parse().unwrap(),
        ];
        let p = record_patch(&ips, "cid");
        let a = &p["metadata"]["annotations"];
        assert_eq!(a[POD_IP], "10.244.1.5/32");
        assert_eq!(a[POD_IPS], "10.244.1.5/32,fd00::5/128");
        assert_eq!(a[CONTAINER_ID], "cid");
    }
}

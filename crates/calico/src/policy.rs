//! `policy_setup_timeout_seconds`: after a Kubernetes pod's ADD, wait (at most that long) until
//! Felix reports the workload's policy programmed, so the pod does not start before it.
//!
//! Felix's endpoint-status reporter writes one file per workload endpoint that is up, under
//! `<EndpointStatusPathPrefix>/endpoint-status/` (default `/var/run/calico/endpoint-status`),
//! named `<orchestrator> <namespace/pod> <endpoint>` with each field URL-path-escaped (so the
//! `/` is `%2F`) and a JSON status (`ifaceName`, `mac`, `ipv4Nets`, …) as content. As Calico's
//! CNI, we wait for the file to exist; a timeout is only a warning (the pod starts anyway).

use crate::config::CalicoConfig;
use crate::identity::Workload;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Calico's default for `endpoint_status_dir`.
pub const DEFAULT_ENDPOINT_STATUS_DIR: &str = "/var/run/calico/endpoint-status";
/// How often the file is looked for (Calico watches with inotify; a stat this often costs as
/// little and needs no watcher).
const POLL: Duration = Duration::from_millis(50);

/// Go's `url.PathEscape`: everything but unreserved characters and `$&+:=@` is `%XX`.
fn path_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+:=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The file name Felix gives the status of this workload endpoint (Kubernetes workloads only:
/// Calico waits only for those).
pub fn status_file_name(workload: &Workload, endpoint: &str) -> Option<String> {
    let Workload::Kubernetes { namespace, pod } = workload else {
        return None;
    };
    Some(
        [
            path_escape(workload.orchestrator()),
            path_escape(&format!("{namespace}/{pod}")),
            path_escape(endpoint),
        ]
        .join(" "),
    )
}

fn status_dir(conf: &CalicoConfig) -> PathBuf {
    PathBuf::from(
        conf.endpoint_status_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .unwrap_or(DEFAULT_ENDPOINT_STATUS_DIR),
    )
}

/// Waits for Felix when `policy_setup_timeout_seconds` is positive and the workload is a pod.
/// Never fails the ADD: on timeout it logs a warning and the pod starts, as in Calico.
pub fn wait_for_felix(conf: &CalicoConfig, workload: &Workload, endpoint: &str) {
    if conf.policy_setup_timeout_seconds <= 0 {
        return;
    }
    let Some(name) = status_file_name(workload, endpoint) else {
        return;
    };
    let path = status_dir(conf).join(name);
    let timeout = Duration::from_secs(conf.policy_setup_timeout_seconds as u64);
    if wait_for_file(&path, timeout) {
        log::info!("Felix reported the endpoint ready: {}", path.display());
    } else {
        log::warn!(
            "Error waiting for endpoint to become ready. Unblocking pod creation...: timed out waiting for endpoint status file '{}': file not found",
            path.display()
        );
    }
}

/// True once `path` exists (any file type), false after `timeout`.
fn wait_for_file(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match std::fs::symlink_metadata(path) {
            Ok(_) => return true,
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                log::info!("checking {}: {e}; retrying", path.display());
            }
            Err(_) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn felix_file_names() {
        let w = Workload::Kubernetes {
            namespace: "kube-system".into(),
            pod: "coredns-5d78c9869d-abcde".into(),
        };
        assert_eq!(
            status_file_name(&w, "eth0").unwrap(),
            "k8s kube-system%2Fcoredns-5d78c9869d-abcde eth0"
        );
        let odd = Workload::Kubernetes {
            namespace: "a b".into(),
            pod: "p;q,r?s@t".into(),
        };
        assert_eq!(
            status_file_name(&odd, "e").unwrap(),
            "k8s a%20b%2Fp%3Bq%2Cr%3Fs@t e"
        );
        let plain = Workload::Plain {
            container_id: "c".into(),
        };
        assert_eq!(status_file_name(&plain, "eth0"), None);
    }

    #[test]
    fn waits_for_the_file_or_times_out() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("k8s x%2Fy eth0");
        let t = Instant::now();
        assert!(!wait_for_file(&f, Duration::from_millis(200)));
        assert!(t.elapsed() >= Duration::from_millis(200));
        let writer = {
            let f = f.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                std::fs::write(f, "{}").unwrap();
            })
        };
        assert!(wait_for_file(&f, Duration::from_secs(5)));
        writer.join().unwrap();
    }
}

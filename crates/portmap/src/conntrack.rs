//! Best-effort removal of stale UDP conntrack entries for mapped host ports.
//!
//! A UDP "connection" to a host port keeps its old NAT binding (to a dead pod, or to none) as long
//! as packets keep flowing, so after installing or removing a mapping the entries whose original
//! destination port is the host port are deleted. Done with the `conntrack` tool: failures (tool
//! missing, no entries) are logged, never fatal.

use crate::exec;
use crate::mapping::Family;

/// Deletes UDP entries of `family` whose original destination port is one of `ports`.
pub fn flush_udp(family: Family, ports: &[u16]) {
    let fam = match family {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    };
    for port in ports {
        let port_s = port.to_string();
        let args = ["-D", "-f", fam, "-p", "udp", "--orig-port-dst", &port_s];
        match exec::run("conntrack", &args, None) {
            // conntrack exits 1 when nothing matched: not an error for us.
            Ok(out) if out.success || out.stderr.contains("0 flow entries") => {
                log::debug!("conntrack {fam} udp dport {port}: {}", out.stderr.trim())
            }
            Ok(out) => log::warn!(
                "could not delete {fam} udp conntrack entries for port {port}: {}",
                out.stderr.trim()
            ),
            Err(e) => log::warn!("could not delete {fam} udp conntrack entries: {e}"),
        }
    }
}

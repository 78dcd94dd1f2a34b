//! A node-like topology around a [`crate::TestEnv`] host, and an inventory of what a chain
//! left behind: used by the cnitool conformance tests and by the demo.
//!
//! * [`client`]: a "remote client" namespace wired to the host by a veth on TEST-NET-1
//!   ([`HOST_IP`] on the host, [`CLIENT_IP`] on the client), for hostPort traffic that really
//!   arrives from outside the node.
//! * [`leftovers`]: links, routes, qdiscs and firewall rules in the host that still refer to
//!   pods, described one per line; empty means the teardown was clean.

use std::net::IpAddr;

use serde_json::Value;

use crate::error::Result;
use crate::netns::Netns;
use crate::state::veth_pair;

/// The host's address on the client link (where hostPorts are reached).
pub const HOST_IP: &str = "192.0.2.1";
/// The client's address.
pub const CLIENT_IP: &str = "192.0.2.2";
/// Name of the host's end of the client link (a fixed name the leftovers check ignores).
pub const HOST_UPLINK: &str = "uplink0";

/// A client namespace wired to `host` (`HOST_IP/24` ⇄ `CLIENT_IP/24`).
pub fn client(host: &Netns, name: &str) -> Result<Netns> {
    let client = Netns::new(name)?;
    client.set_link_up("lo")?;
    veth_pair(host, HOST_UPLINK, &client, "eth0")?;
    host.add_addr(HOST_UPLINK, &format!("{HOST_IP}/24"))?;
    client.add_addr("eth0", &format!("{CLIENT_IP}/24"))?;
    Ok(client)
}

/// Addresses of a CNI result (any version: `ips[].address`), without prefix.
pub fn result_ips(result: &Value) -> Vec<IpAddr> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["address"].as_str())
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect()
}

/// The host-side interface of a result: the first interface without a sandbox.
pub fn host_interface(result: &Value) -> Option<String> {
    result["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i.get("sandbox").is_none_or(|s| s.as_str() == Some("")))
        .and_then(|i| i["name"].as_str())
        .map(str::to_string)
}

/// Links of `host` with their kind (`ip -d -j link`): (name, kind or "").
pub fn links_with_kind(host: &Netns) -> Result<Vec<(String, String)>> {
    let links = host.ip_json(&["-d", "link", "show"])?;
    Ok(links
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let name = l["ifname"].as_str().unwrap_or_default().to_string();
            let kind = l["linkinfo"]["info_kind"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (name, kind)
        })
        .collect())
}

/// The full firewall state of `host` as text (`nft list ruleset`, which includes iptables-nft
/// rules, plus `iptables-legacy-save` when that backend is installed).
pub fn ruleset(host: &Netns) -> Result<String> {
    let mut text = host.exec("nft", &["list", "ruleset"])?;
    if let Ok(out) = host.output("iptables-legacy-save", &[]) {
        if out.success() {
            text.push_str(&out.stdout_str());
        }
    }
    Ok(text)
}

/// What is left in `host` of pods with addresses `pod_ips` and of `host_ports`: pod links (veth
/// other than [`HOST_UPLINK`], ifb), routes to the pods, tbf/ingress qdiscs, firewall lines that
/// name a pod address or a hostPort. One human-readable line per item; empty = clean.
pub fn leftovers(host: &Netns, pod_ips: &[IpAddr], host_ports: &[u16]) -> Result<Vec<String>> {
    let mut left = Vec::new();
    for (name, kind) in links_with_kind(host)? {
        let pod_link = (kind == "veth" && name != HOST_UPLINK) || kind == "ifb";
        if pod_link || name.starts_with("cali") || name.starts_with("bwp") {
            left.push(format!("link {name} ({kind})"));
        }
    }
    for family in ["-4", "-6"] {
        for r in host.routes(family, "all")? {
            let dst = r["dst"].as_str().unwrap_or_default();
            let dst_ip = dst.split('/').next().and_then(|d| d.parse::<IpAddr>().ok());
            if dst_ip.is_some_and(|ip| pod_ips.contains(&ip)) {
                left.push(format!("route {r}"));
            }
        }
    }
    let qdiscs = host.tc_json(&["qdisc", "show"])?;
    for q in qdiscs.as_array().into_iter().flatten() {
        let kind = q["kind"].as_str().unwrap_or_default();
        if matches!(kind, "tbf" | "ingress" | "clsact" | "htb") {
            left.push(format!(
                "qdisc {kind} on {}",
                q["dev"].as_str().unwrap_or("?")
            ));
        }
    }
    for rule in rules_mentioning(host, pod_ips, host_ports)? {
        left.push(format!("rule {rule}"));
    }
    Ok(left)
}

/// Firewall lines of `host` (see [`ruleset`]) naming one of `ips` or matching a destination
/// port in `ports`, trimmed.
pub fn rules_mentioning(host: &Netns, ips: &[IpAddr], ports: &[u16]) -> Result<Vec<String>> {
    Ok(ruleset(host)?
        .lines()
        .filter(|line| {
            ips.iter().any(|ip| mentions_addr(line, &ip.to_string()))
                || ports.iter().any(|p| mentions_port(line, *p))
        })
        .map(|l| l.trim().to_string())
        .collect())
}

/// `line` contains `addr` as a whole token (so 10.0.0.1 does not match 10.0.0.12, but does
/// match `10.0.0.1:80`).
fn mentions_addr(line: &str, addr: &str) -> bool {
    let v6 = addr.contains(':');
    let part_of_addr = |c: char| {
        if v6 {
            c.is_ascii_hexdigit() || c == ':'
        } else {
            c.is_ascii_digit() || c == '.'
        }
    };
    line.match_indices(addr).any(|(i, _)| {
        let before = line[..i].chars().last();
        let after = line[i + addr.len()..].chars().next();
        before.is_none_or(|c| !part_of_addr(c)) && after.is_none_or(|c| !part_of_addr(c))
    })
}

/// `line` matches a destination port `port` in nft (`dport 8080`) or iptables (`--dport 8080`)
/// syntax.
fn mentions_port(line: &str, port: u16) -> bool {
    let p = port.to_string();
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .any(|w| (w[0] == "dport" || w[0] == "--dport") && w[1].trim_end_matches([',', '}']) == p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_tokens() {
        assert!(mentions_addr("ip daddr 10.0.0.1 dnat", "10.0.0.1"));
        assert!(mentions_addr("--to-destination 10.0.0.1:80", "10.0.0.1"));
        assert!(!mentions_addr("ip daddr 10.0.0.12 dnat", "10.0.0.1"));
        assert!(!mentions_addr("ip daddr 110.0.0.1", "10.0.0.1"));
        assert!(mentions_addr("ip6 daddr fd00::1 dnat", "fd00::1"));
        assert!(!mentions_addr("ip6 daddr fd00::1a", "fd00::1"));
    }

    #[test]
    fn port_tokens() {
        assert!(mentions_port("tcp dport 8080 dnat to 10.0.0.1:80", 8080));
        assert!(mentions_port(
            "-A CNI-DN-x -p tcp -m tcp --dport 8080 -j DNAT",
            8080
        ));
        assert!(!mentions_port("tcp dport 18080 dnat", 8080));
        assert!(!mentions_port("tcp sport 8080", 8080));
    }

    #[test]
    fn host_interface_and_ips_from_results() {
        let r = serde_json::json!({"interfaces":[{"name":"calia"},{"name":"eth0","sandbox":"/x"}],
            "ips":[{"address":"10.0.0.5/32","interface":1},{"address":"fd00::5/128"}]});
        assert_eq!(host_interface(&r).as_deref(), Some("calia"));
        let ips = result_ips(&r);
        assert_eq!(ips.len(), 2);
        assert_eq!(ips[0].to_string(), "10.0.0.5");
    }
}

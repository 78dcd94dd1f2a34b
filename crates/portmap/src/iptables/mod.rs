//! iptables backend: upstream's chains, applied with one `iptables-restore --noflush -w` per
//! family and operation; `iptables-save -t nat` is read only when the optimistic script fails.

pub mod render;
pub mod save;

use ipnetwork::IpNetwork;

use crate::error::PortmapError;
use crate::exec;
use crate::mapping::Family;
use crate::Request;
use save::NatState;

fn restore_tool(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables-restore",
        Family::V6 => "ip6tables-restore",
    }
}

fn iptables_tool(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    }
}

fn save_tool(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables-save",
        Family::V6 => "ip6tables-save",
    }
}

/// Applies a restore script; the error names the failing line when the tool reports it.
fn restore(family: Family, script: &str) -> Result<(), String> {
    // -w: queue behind other xtables users (kube-proxy) instead of failing.
    let out = exec::run(restore_tool(family), &["--noflush", "-w"], Some(script))
        .map_err(|e| e.to_string())?;
    if out.success {
        return Ok(());
    }
    let stderr = out.stderr.trim();
    let failed_line = parse_failed_line(stderr).and_then(|n| render::Script::line_of(script, n));
    Err(match failed_line {
        Some(l) => format!("{stderr} (at {l:?})"),
        None => stderr.to_string(),
    })
}

/// Extracts N from "line N failed" / "Error occurred at line: N".
fn parse_failed_line(stderr: &str) -> Option<usize> {
    for (i, _) in stderr.match_indices("line") {
        let rest = stderr[i + 4..].trim_start_matches([':', ' ']);
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(n) = digits.parse() {
            return Some(n);
        }
    }
    None
}

fn read_state(family: Family) -> Result<NatState, String> {
    let out = exec::run(save_tool(family), &["-t", "nat"], None).map_err(|e| e.to_string())?;
    if !out.success {
        return Err(format!(
            "{} failed: {}",
            save_tool(family),
            out.stderr.trim()
        ));
    }
    Ok(NatState::parse(&out.stdout))
}

/// Whether `chain` exists in the nat table. Listing one (small) chain is cheap with iptables-nft,
/// unlike `iptables-save`, which reads the whole table (kube-proxy's included).
fn chain_exists(family: Family, chain: &str) -> Result<bool, String> {
    let out = exec::run(
        iptables_tool(family),
        &["-w", "-t", "nat", "-S", chain],
        None,
    )
    .map_err(|e| e.to_string())?;
    if out.success {
        return Ok(true);
    }
    // iptables-legacy says "No chain/target/match", iptables-nft 1.8.9 calls a missing chain
    // "incompatible". Any other failure (tool unusable) is left to the save that follows.
    let missing = ["No chain", "does not exist", "incompatible"];
    Ok(!missing.iter().any(|m| out.stderr.contains(m)))
}

/// Installs the rules for one container address.
pub fn add(req: &Request, addr: &IpNetwork) -> Result<(), PortmapError> {
    let family = Family::of(&addr.ip());
    let fast = render::add_fast(req, addr);
    match restore(family, &fast) {
        Ok(()) => return Ok(()),
        Err(e) => log::debug!("{family} fast ADD path not applicable: {e}"),
    }
    let state = read_state(family)
        .map_err(|e| PortmapError::Setup(format!("unable to setup DNAT: {e}")))?;
    let full = render::add_full(req, addr, &state);
    restore(family, &full).map_err(|e| PortmapError::Setup(format!("unable to setup DNAT: {e}")))
}

/// Removes everything of this attachment in both families.
pub fn del(req: &Request) -> Result<(), PortmapError> {
    let mut unusable = Vec::new();
    for family in Family::BOTH {
        match restore(family, &render::del_fast(req, family)) {
            Ok(()) => continue,
            Err(e) => log::debug!("{family} fast DEL path not applicable: {e}"),
        }
        // Usually nothing is there (second DEL, or no address of this family): check that
        // cheaply before reading the whole table. (The pre-2017 CNI-SN chain is only looked for
        // when the CNI-DN chain exists.)
        if let Ok(false) = chain_exists(family, &req.attachment.dnat_chain()) {
            continue;
        }
        let state = match read_state(family) {
            Ok(s) => s,
            Err(e) => {
                // A family whose tools do not work cannot hold rules of ours.
                log::info!("skipping {family} teardown: {e}");
                unusable.push(format!("({}) {e}", save_tool(family)));
                continue;
            }
        };
        if let Some(script) = render::del_full(req, &state) {
            restore(family, &script).map_err(|e| {
                PortmapError::Setup(format!("could not teardown {family} dnat: {e}"))
            })?;
        }
    }
    if unusable.len() == Family::BOTH.len() {
        return Err(PortmapError::Setup(format!(
            "neither iptables nor ip6tables is usable, {}",
            unusable.join(", ")
        )));
    }
    Ok(())
}

/// Verifies the rules of one container address with a `-C`-only script (changes nothing).
pub fn check(req: &Request, addr: &IpNetwork) -> Result<(), PortmapError> {
    let family = Family::of(&addr.ip());
    restore(family, &render::check(req, addr)).map_err(|e| {
        PortmapError::CheckFailed(format!(
            "could not check {family} dnat: rule of chain {} not found: {e}",
            req.attachment.dnat_chain()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_line_parsing() {
        assert_eq!(
            parse_failed_line("iptables-restore: line 3 failed: Bad rule"),
            Some(3)
        );
        assert_eq!(
            parse_failed_line("Chain 'X' does not exist\nError occurred at line: 5\nTry"),
            Some(5)
        );
        assert_eq!(parse_failed_line("something else"), None);
    }
}

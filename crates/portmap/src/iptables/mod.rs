//! iptables backend: upstream's chains. A pod's rules go over nf_tables netlink, and nothing is
//! exec'd, when the node's iptables is the nft variant and the shared rules are in place (read
//! over netlink too, [`direct`]); otherwise one
//! `iptables-restore --noflush -w` per family and operation; `iptables-save -t nat` is read only
//! when the optimistic script fails (first ADD on a node, repeated ADD, DEL of rules whose shape
//! differs from ours).

pub mod direct;
pub mod render;
pub mod save;

use ipnetwork::IpNetwork;

use crate::error::{PortmapError, ToolFailure};
use crate::exec;
use crate::mapping::Family;
use crate::Request;
use save::{NatState, SavedRule};

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
fn restore(family: Family, script: &str) -> Result<(), ToolFailure> {
    // -w: queue behind other xtables users (kube-proxy) instead of failing.
    let out = exec::run(restore_tool(family), &["--noflush", "-w"], Some(script))
        .map_err(|e| ToolFailure::from(e.to_string()))?;
    if out.success {
        return Ok(());
    }
    let stderr = out.stderr.trim();
    let failed_line = parse_failed_line(stderr).and_then(|n| render::Script::line_of(script, n));
    Err(ToolFailure::from(match failed_line {
        Some(l) => format!("{stderr} (at {l:?})"),
        None => stderr.to_string(),
    }))
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

fn read_state(family: Family) -> Result<NatState, ToolFailure> {
    let out = exec::run(save_tool(family), &["-t", "nat"], None)
        .map_err(|e| ToolFailure::from(e.to_string()))?;
    if !out.success {
        return Err(ToolFailure::from(format!(
            "{} failed: {}",
            save_tool(family),
            out.stderr.trim()
        )));
    }
    Ok(NatState::parse(&out.stdout))
}

/// Lists one chain with `iptables -S <chain>`: `None` when it does not exist. With iptables-nft
/// this loads only that chain, unlike `iptables-save` (or a `-C`/`-D` in a restore script), which
/// loads every rule of the table, kube-proxy's included.
fn list_chain(family: Family, chain: &str) -> Result<Option<Vec<SavedRule>>, ToolFailure> {
    let tool = iptables_tool(family);
    let out = exec::run(tool, &["-w", "-t", "nat", "-S", chain], None)
        .map_err(|e| ToolFailure::from(e.to_string()))?;
    if out.success {
        return Ok(Some(NatState::parse_listing(&out.stdout)));
    }
    // iptables-legacy says "No chain/target/match", iptables-nft 1.8.9 calls a missing chain
    // "incompatible"; anything else means the tool itself does not work.
    let missing = ["No chain", "does not exist", "incompatible"];
    if missing.iter().any(|m| out.stderr.contains(m)) {
        Ok(None)
    } else {
        Err(ToolFailure::from(format!(
            "{tool} -S {chain} failed: {}",
            out.stderr.trim()
        )))
    }
}

/// The nat-table state restricted to `chains` (listed concurrently): the ones that exist, with
/// their rules. Enough for rendering as long as our rules sit where upstream puts them.
fn read_chains(family: Family, chains: &[&str]) -> Result<NatState, ToolFailure> {
    let listings: Vec<Result<Option<Vec<SavedRule>>, ToolFailure>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = chains
            .iter()
            .map(|c| scope.spawn(move || list_chain(family, c)))
            .collect();
        jobs.into_iter()
            .map(|j| {
                j.join().unwrap_or_else(|_| {
                    Err(ToolFailure::from(
                        "chain listing thread panicked".to_string(),
                    ))
                })
            })
            .collect()
    });
    let mut state = NatState::default();
    for (chain, listing) in chains.iter().zip(listings) {
        if let Some(rules) = listing? {
            state.chains.insert(chain.to_string());
            state.rules.extend(rules);
        }
    }
    Ok(state)
}

/// The chains whose listing shows whether the shared rules are in place.
fn shared_rule_chains(req: &Request) -> Vec<&'static str> {
    render::shared_rules_by_chain(req)
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

/// Applies `script` rendered from a partial state; when that fails (rules of ours in unexpected
/// places), renders again from the whole table (`iptables-save`) as a last resort.
fn restore_with_fallback(
    family: Family,
    script: Option<String>,
    render_full: impl FnOnce(&NatState) -> Option<String>,
) -> Result<(), ToolFailure> {
    let first = match script {
        Some(s) => restore(family, &s),
        None => return Ok(()),
    };
    let Err(e) = first else { return Ok(()) };
    log::debug!("{family} script from chain listings failed, reading the whole table: {e}");
    let state = read_state(family)?;
    match render_full(&state) {
        Some(s) => restore(family, &s),
        None => Ok(()),
    }
}

/// Installs the rules for one container address: on iptables-nft nodes whose shared rules are
/// in place (read over netlink) one netlink transaction, nothing exec'd; otherwise, if the
/// listings of the shared chains show the shared rules, one restore creating the container
/// chain; otherwise (first ADD on the node, repeated ADD) one restore rendered from those
/// listings. `iptables-save` only as a last resort.
pub fn add(req: &Request, addr: &IpNetwork) -> Result<(), PortmapError> {
    let family = Family::of(&addr.ip());
    match direct::add(req, addr) {
        direct::Outcome::Done(how) => {
            log::debug!("{family} ADD over nf_tables netlink: {how}");
            return Ok(());
        }
        direct::Outcome::Fallback(why) => log::debug!("{family} netlink ADD not used: {why}"),
    }
    let setup_err = PortmapError::SetupDnat;
    let mut chains = shared_rule_chains(req);
    let shared = read_chains(family, &chains).map_err(setup_err)?;
    let present = render::shared_rules(req)
        .iter()
        .all(|sh| shared.has_rule(sh.chain, &sh.rule));
    if present {
        match restore(family, &render::add_fast(req, addr)) {
            Ok(()) => return Ok(()),
            Err(e) => log::debug!("{family} fast ADD path not applicable: {e}"),
        }
    }
    for c in render::shared_chains(req) {
        if !chains.contains(&c) {
            chains.push(c);
        }
    }
    let state = read_chains(family, &chains).map_err(setup_err)?;
    let script = render::add_full(req, addr, &state);
    restore_with_fallback(family, Some(script), |full| {
        Some(render::add_full(req, addr, full))
    })
    .map_err(setup_err)
}

/// Removes everything of this attachment in both families: one restore with the entry rules as
/// this configuration renders them; if that does not apply, and the container chain exists, one
/// restore rendered from the listings of the chains upstream's rules live in.
pub fn del(req: &Request) -> Result<(), PortmapError> {
    let mut unusable = Vec::new();
    let dn = req.attachment.dnat_chain();
    let sn = req.attachment.old_snat_chain();
    for family in Family::BOTH {
        match direct::del(req, family) {
            direct::Outcome::Done(how) => {
                log::debug!("{family} DEL over nf_tables netlink: {how}");
                continue;
            }
            direct::Outcome::Fallback(why) => log::debug!("{family} netlink DEL not used: {why}"),
        }
        match restore(family, &render::del_fast(req, family)) {
            Ok(()) => continue,
            Err(e) => log::debug!("{family} fast DEL path not applicable: {e}"),
        }
        // Usually nothing is there (second DEL, or no address of this family): one small
        // listing says so. (The pre-2017 CNI-SN chain is only looked for when CNI-DN exists.)
        match list_chain(family, &dn) {
            Ok(None) => continue,
            Ok(Some(_)) => {}
            Err(e) => {
                // A family whose tools do not work cannot hold rules of ours.
                log::info!("skipping {family} teardown: {e}");
                unusable.push(format!("({}) {e}", iptables_tool(family)));
                continue;
            }
        }
        let parents = [
            render::TOP_DNAT_CHAIN,
            render::OLD_SNAT_CHAIN,
            dn.as_str(),
            sn.as_str(),
        ];
        let teardown_err = |source: ToolFailure| PortmapError::TeardownDnat {
            family: family.to_string(),
            source,
        };
        let state = read_chains(family, &parents).map_err(teardown_err)?;
        restore_with_fallback(family, render::del_full(req, &state), |full| {
            render::del_full(req, full)
        })
        .map_err(teardown_err)?;
    }
    if unusable.len() == Family::BOTH.len() {
        return Err(PortmapError::NoUsableIptables { reasons: unusable });
    }
    Ok(())
}

/// Verifies the rules of one container address with a `-C`-only script (changes nothing).
pub fn check(req: &Request, addr: &IpNetwork) -> Result<(), PortmapError> {
    let family = Family::of(&addr.ip());
    restore(family, &render::check(req, addr)).map_err(|e| PortmapError::DnatMissing {
        family: family.to_string(),
        chain: req.attachment.dnat_chain().to_string(),
        source: e,
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

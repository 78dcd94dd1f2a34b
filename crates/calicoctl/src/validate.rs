//! IPPool validation and defaulting, following libcalico-go's v3 validators and the
//! defaults its client applies on write. Every error names the offending field.

use ipam::model::IpPool;
use ipam::selector::Selector;
use ipnetwork::IpNetwork;

use crate::error::{CtlError, CtlResult};

const MODES: &[&str] = &["Never", "Always", "CrossSubnet"];
const USES: &[&str] = &["Workload", "Tunnel", "LoadBalancer"];

/// A Kubernetes-style resource name (DNS subdomain: lower-case alphanumerics, `-` and `.`,
/// starting and ending alphanumeric, at most 253 characters).
fn valid_name(n: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !n.is_empty()
        && n.len() <= 253
        && n.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && n.starts_with(alnum)
        && n.ends_with(alnum)
}

fn check_name(name: &str) -> CtlResult<()> {
    if valid_name(name) {
        return Ok(());
    }
    Err(CtlError::field(
        "metadata.name",
        name,
        "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
    ))
}

/// Validate an IPReservation: a valid name and every `reservedCIDRs` entry an address or CIDR.
pub fn reservation(r: &ipam::model::IpReservation) -> CtlResult<()> {
    check_name(&r.metadata.name)?;
    for (i, c) in r.spec.reserved_cidrs.iter().enumerate() {
        if ipam::reserved::parse_reserved(c).is_none() {
            return Err(CtlError::field(
                &format!("spec.reservedCIDRs[{i}]"),
                c,
                "must be an IP address or CIDR",
            ));
        }
    }
    Ok(())
}

/// Validate a pool as given by the user (before defaults).
pub fn pool(p: &IpPool) -> CtlResult<()> {
    check_name(&p.metadata.name)?;
    let s = &p.spec;
    if s.cidr.is_empty() {
        return Err(CtlError::field("spec.cidr", "", "is required"));
    }
    let cidr: IpNetwork = s
        .cidr
        .parse()
        .map_err(|e| CtlError::field("spec.cidr", &s.cidr, format!("invalid CIDR: {e}")))?;
    if cidr.network() != cidr.ip() {
        return Err(CtlError::field(
            "spec.cidr",
            &s.cidr,
            format!(
                "IP pool CIDR must be a network address, e.g. {}/{}",
                cidr.network(),
                cidr.prefix()
            ),
        ));
    }
    let link_local: IpNetwork = if cidr.is_ipv4() {
        IpNetwork::V4("169.254.0.0/16".parse().expect("static CIDR"))
    } else {
        IpNetwork::V6("fe80::/10".parse().expect("static CIDR"))
    };
    if link_local.contains(cidr.network()) || cidr.contains(link_local.network()) {
        return Err(CtlError::field(
            "spec.cidr",
            &s.cidr,
            format!("IP pool range overlaps with link-local range {link_local}"),
        ));
    }
    if let Some(b) = s.block_size {
        let range = if cidr.is_ipv4() { 20..=32 } else { 116..=128 };
        if !range.contains(&b) {
            return Err(CtlError::field(
                "spec.blockSize",
                b,
                format!(
                    "must be between {} and {} for an IPv{} pool",
                    range.start(),
                    range.end(),
                    if cidr.is_ipv4() { 4 } else { 6 }
                ),
            ));
        }
        if b < cidr.prefix() {
            return Err(CtlError::field(
                "spec.blockSize",
                b,
                format!(
                    "block size must not be smaller than the pool's prefix length {}",
                    cidr.prefix()
                ),
            ));
        }
    }
    for (field, v) in [
        ("spec.ipipMode", &s.ipip_mode),
        ("spec.vxlanMode", &s.vxlan_mode),
    ] {
        if let Some(m) = v.as_deref().filter(|m| !m.is_empty()) {
            if !MODES.contains(&m) {
                return Err(CtlError::field(
                    field,
                    m,
                    "must be one of Never, Always, CrossSubnet",
                ));
            }
        }
    }
    let on = |m: &Option<String>| m.as_deref().is_some_and(|m| !m.is_empty() && m != "Never");
    if cidr.is_ipv6() && on(&s.ipip_mode) {
        return Err(CtlError::field(
            "spec.ipipMode",
            s.ipip_mode.as_deref().unwrap_or_default(),
            "IPIP is not supported on an IPv6 IP pool",
        ));
    }
    if on(&s.ipip_mode) && on(&s.vxlan_mode) {
        return Err(CtlError::field(
            "spec.vxlanMode",
            s.vxlan_mode.as_deref().unwrap_or_default(),
            "cannot enable both IPIP and VXLAN on the same IP pool",
        ));
    }
    if let Some(sel) = &s.node_selector {
        Selector::parse(sel)
            .map_err(|e| CtlError::field("spec.nodeSelector", sel, e.reason.to_string()))?;
    }
    match s.extra.get("namespaceSelector") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(sel)) if sel.is_empty() => {}
        Some(serde_json::Value::String(sel)) => {
            Selector::parse(sel).map_err(|e| {
                CtlError::field("spec.namespaceSelector", sel, e.reason.to_string())
            })?;
        }
        Some(v) => {
            return Err(CtlError::field(
                "spec.namespaceSelector",
                v,
                "must be a string",
            ))
        }
    }
    if let Some(uses) = &s.allowed_uses {
        for u in uses {
            if !USES.contains(&u.as_str()) {
                return Err(CtlError::field(
                    "spec.allowedUses",
                    u,
                    "must be one of Workload, Tunnel, LoadBalancer",
                ));
            }
        }
        if uses.iter().any(|u| u == "LoadBalancer") && uses.len() > 1 {
            return Err(CtlError::field(
                "spec.allowedUses",
                uses.join(","),
                "LoadBalancer cannot be combined with other uses",
            ));
        }
    }
    if let Some(m) = s.assignment_mode.as_deref().filter(|m| !m.is_empty()) {
        if m != "Automatic" && m != "Manual" {
            return Err(CtlError::field(
                "spec.assignmentMode",
                m,
                "must be Automatic or Manual",
            ));
        }
    }
    Ok(())
}

/// Fill in the defaults libcalico-go's client stores explicitly (block size 26/122,
/// `nodeSelector: all()`, modes `Never`, `allowedUses: [Workload, Tunnel]`,
/// `assignmentMode: Automatic`). Call after [`pool`] succeeded.
pub fn apply_defaults(p: &mut IpPool) {
    let v6 = p.spec.cidr.contains(':');
    let s = &mut p.spec;
    s.block_size.get_or_insert(if v6 { 122 } else { 26 });
    let empty_to = |v: &mut Option<String>, d: &str| {
        if v.as_deref().is_none_or(str::is_empty) {
            *v = Some(d.to_string());
        }
    };
    empty_to(&mut s.node_selector, "all()");
    empty_to(&mut s.ipip_mode, "Never");
    empty_to(&mut s.vxlan_mode, "Never");
    empty_to(&mut s.assignment_mode, "Automatic");
    if s.allowed_uses.as_ref().is_none_or(Vec::is_empty) {
        s.allowed_uses = Some(vec!["Workload".into(), "Tunnel".into()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam::model::IpPoolSpec;

    fn mk(name: &str, f: impl FnOnce(&mut IpPoolSpec)) -> IpPool {
        let mut spec = IpPoolSpec {
            cidr: "10.5.0.0/16".into(),
            ..Default::default()
        };
        f(&mut spec);
        IpPool::new("IPPool", name, spec)
    }

    fn err(p: &IpPool) -> String {
        pool(p).unwrap_err().to_string()
    }

    #[test]
    fn accepts_and_defaults() {
        let mut p = mk("ok-pool.1", |_| {});
        pool(&p).unwrap();
        apply_defaults(&mut p);
        assert_eq!(p.spec.block_size, Some(26));
        assert_eq!(p.spec.node_selector.as_deref(), Some("all()"));
        assert_eq!(p.spec.ipip_mode.as_deref(), Some("Never"));
        assert_eq!(p.spec.allowed_uses.as_ref().unwrap().len(), 2);
        let mut p6 = mk("v6", |s| s.cidr = "fd00:5::/48".into());
        pool(&p6).unwrap();
        apply_defaults(&mut p6);
        assert_eq!(p6.spec.block_size, Some(122));
    }

    #[test]
    fn rejects_with_field_names() {
        assert!(err(&mk("Bad_Name", |_| {})).contains("metadata.name"));
        assert!(err(&mk("p", |s| s.cidr = "".into())).contains("spec.cidr"));
        assert!(err(&mk("p", |s| s.cidr = "10.5.0.0/33".into())).contains("spec.cidr"));
        assert!(err(&mk("p", |s| s.cidr = "169.254.0.0/16".into())).contains("link-local"));
        assert!(err(&mk("p", |s| s.block_size = Some(19))).contains("spec.blockSize"));
        let e = err(&mk("p", |s| {
            s.cidr = "10.0.0.0/24".into();
            s.block_size = Some(20)
        }));
        assert!(e.contains("prefix length 24"), "{e}");
        assert!(err(&mk("p", |s| s.ipip_mode = Some("Sometimes".into()))).contains("spec.ipipMode"));
        let both = mk("p", |s| {
            s.ipip_mode = Some("Always".into());
            s.vxlan_mode = Some("CrossSubnet".into())
        });
        assert!(err(&both).contains("spec.vxlanMode"));
        let v6ipip = mk("p", |s| {
            s.cidr = "fd00::/48".into();
            s.ipip_mode = Some("Always".into())
        });
        assert!(err(&v6ipip).contains("IPv6"));
        assert!(
            err(&mk("p", |s| s.node_selector = Some("has(".into()))).contains("spec.nodeSelector")
        );
        assert!(
            err(&mk("p", |s| s.allowed_uses = Some(vec!["Pods".into()])))
                .contains("spec.allowedUses")
        );
        assert!(err(&mk("p", |s| s.allowed_uses =
            Some(vec!["LoadBalancer".into(), "Workload".into()])))
        .contains("LoadBalancer"));
        assert!(
            err(&mk("p", |s| s.assignment_mode = Some("Sometimes".into())))
                .contains("spec.assignmentMode")
        );
    }
}

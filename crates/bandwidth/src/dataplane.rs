//! The tc objects of one attachment: create (with rollback of what this call created), verify
//! for CHECK, remove for DEL. Everything goes through the host netns' netlink [`Handle`].

use netlink::tc::{HANDLE_INGRESS, HANDLE_ROOT};
use netlink::{Handle, Link, Tbf};

use crate::config::{Limit, Shaping};
use crate::error::BandwidthError;
use crate::tbf::{self, TickFactor};

/// tbf parameters for one direction, logging when a value had to saturate.
pub fn tbf_for(direction: &str, limit: Limit, tick: TickFactor) -> Tbf {
    let p = tbf::params(limit, tick);
    if p.buffer_clamped {
        log::warn!(
            "{direction}: burst of {} bits lasts longer than tbf can express at {} bit/s; \
             bucket clamped to {} ticks (≈274.9 s at the rate)",
            limit.burst,
            limit.rate,
            u32::MAX
        );
    }
    if p.limit_clamped {
        log::warn!("{direction}: queue limit clamped to {} bytes", u32::MAX);
    }
    p.tbf
}

/// Objects created so far, undone in reverse order when a later step fails (best effort: the
/// runtime's DEL and the main plugin's veth removal clean up anything left).
enum Undo {
    RootQdisc(u32),
    IngressQdisc(u32),
    Link(u32),
}

fn rollback(host: &Handle, done: Vec<Undo>) {
    for step in done.into_iter().rev() {
        let r = match step {
            Undo::RootQdisc(i) => host.delete_root_qdisc(i),
            Undo::IngressQdisc(i) => host.delete_ingress_qdisc(i),
            Undo::Link(i) => host.delete_link(i),
        };
        if let Err(e) = r {
            log::warn!("rollback: {e}");
        }
    }
}

/// Installs the shaping on `host_veth`; returns the ifb when egress is shaped.
pub fn setup(
    host: &Handle,
    host_veth: &Link,
    ifb_name: &str,
    shaping: &Shaping,
    tick: TickFactor,
) -> Result<Option<Link>, BandwidthError> {
    let mut done = Vec::new();
    let r = setup_steps(host, host_veth, ifb_name, shaping, tick, &mut done);
    if r.is_err() {
        rollback(host, done);
    }
    r
}

fn setup_steps(
    host: &Handle,
    veth: &Link,
    ifb_name: &str,
    shaping: &Shaping,
    tick: TickFactor,
    done: &mut Vec<Undo>,
) -> Result<Option<Link>, BandwidthError> {
    if let Some(limit) = shaping.ingress {
        host.add_root_tbf(veth.index, &tbf_for("ingress", limit, tick))
            .map_err(BandwidthError::netlink(format!(
                "create qdisc on {}",
                veth.name
            )))?;
        done.push(Undo::RootQdisc(veth.index));
    }
    let Some(limit) = shaping.egress else {
        return Ok(None);
    };
    let ifb = host.create_ifb(ifb_name, Some(veth.mtu), 0).map_err(|e| {
        let hint = match e.errno() {
            Some(libc::EOPNOTSUPP | libc::EINVAL) => " (does the kernel have ifb?)",
            _ => "",
        };
        BandwidthError::netlink(format!("adding link {ifb_name}{hint}"))(e)
    })?;
    done.push(Undo::Link(ifb.index));
    // Shape the ifb before it is up and before anything is redirected into it, so no packet
    // ever passes unshaped.
    host.add_root_tbf(ifb.index, &tbf_for("egress", limit, tick))
        .map_err(BandwidthError::netlink(format!(
            "create ifb qdisc on {ifb_name}"
        )))?;
    host.set_link_up(ifb.index)
        .map_err(BandwidthError::netlink(format!("set {ifb_name} up")))?;
    host.add_ingress_qdisc(veth.index)
        .map_err(BandwidthError::netlink(format!(
            "create ingress qdisc on {}",
            veth.name
        )))?;
    done.push(Undo::IngressQdisc(veth.index));
    host.add_redirect_filter(veth.index, ifb.index)
        .map_err(BandwidthError::netlink(format!(
            "add filter redirecting {} to {ifb_name}",
            veth.name
        )))?;
    // Re-read for the MAC the kernel assigned and the final flags.
    let ifb = host
        .link_by_index(ifb.index)
        .map_err(BandwidthError::netlink(format!("get {ifb_name}")))?
        .unwrap_or(ifb);
    Ok(Some(ifb))
}

/// Removes the ifb (its qdisc goes with it). Missing is fine: DEL may run twice or after a
/// failed ADD. The host veth's qdiscs are left to the main plugin, which deletes the veth.
pub fn teardown(host: &Handle, ifb_name: &str) -> Result<(), BandwidthError> {
    match host.delete_link_by_name(ifb_name) {
        Err(e) if !e.is_not_found() => Err(BandwidthError::netlink(format!(
            "delete link {ifb_name}"
        ))(e)),
        _ => Ok(()),
    }
}

/// CHECK: the installed tbfs equal what this config produces (upstream compares rate, limit
/// and buffer), and the egress redirect is in place.
pub fn verify(
    host: &Handle,
    veth: &Link,
    ifb_name: &str,
    shaping: &Shaping,
    tick: TickFactor,
) -> Result<(), BandwidthError> {
    if let Some(limit) = shaping.ingress {
        compare_root_tbf(host, veth, &tbf_for("ingress", limit, tick))?;
    }
    let Some(limit) = shaping.egress else {
        return Ok(());
    };
    let ifb = host
        .link_by_name(ifb_name)
        .map_err(BandwidthError::netlink(format!(
            "get ifb device {ifb_name}"
        )))?
        .ok_or_else(|| BandwidthError::IfbMissing {
            ifb: ifb_name.to_string(),
        })?;
    compare_root_tbf(host, &ifb, &tbf_for("egress", limit, tick))?;
    let has_ingress = host
        .qdiscs(Some(veth.index))
        .map_err(BandwidthError::netlink("list qdiscs"))?
        .iter()
        .any(|q| q.kind == "ingress" && q.handle == HANDLE_INGRESS);
    if !has_ingress {
        return Err(BandwidthError::NoIngressQdisc {
            link: veth.name.clone(),
        });
    }
    let redirected = host
        .filters(veth.index, HANDLE_INGRESS)
        .map_err(BandwidthError::netlink("list filters"))?
        .iter()
        .any(|f| f.redirect_to == Some(ifb.index));
    if !redirected {
        return Err(BandwidthError::NoRedirect {
            link: veth.name.clone(),
            ifb: ifb_name.to_string(),
        });
    }
    Ok(())
}

fn compare_root_tbf(host: &Handle, link: &Link, want: &Tbf) -> Result<(), BandwidthError> {
    let qdiscs = host
        .qdiscs(Some(link.index))
        .map_err(BandwidthError::netlink(format!(
            "list qdiscs of {}",
            link.name
        )))?;
    let root = qdiscs.iter().find(|q| q.parent == HANDLE_ROOT);
    let Some(got) = root.and_then(|q| q.tbf.as_ref()) else {
        return Err(BandwidthError::NoRootTbf {
            link: link.name.clone(),
            found: root.map(|q| q.kind.clone()),
        });
    };
    mismatch(got, want).map_or(Ok(()), |m| {
        Err(BandwidthError::TbfMismatch {
            link: link.name.clone(),
            mismatch: m.to_string(),
        })
    })
}

/// Upstream's messages, in upstream's order.
fn mismatch(got: &Tbf, want: &Tbf) -> Option<String> {
    if got.rate != want.rate {
        return Some(format!("Rate doesn't match: {} != {}", got.rate, want.rate));
    }
    if got.limit != want.limit {
        return Some(format!(
            "Limit doesn't match: {} != {}",
            got.limit, want.limit
        ));
    }
    if got.buffer != want.buffer {
        return Some(format!(
            "Buffer doesn't match: {} != {}",
            got.buffer, want.buffer
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_names_the_first_differing_field() {
        let a = Tbf {
            rate: 1,
            buffer: 2,
            limit: 3,
        };
        assert_eq!(mismatch(&a, &a), None);
        let m = mismatch(
            &Tbf {
                rate: 9,
                limit: 9,
                ..a
            },
            &a,
        )
        .unwrap();
        assert!(m.starts_with("Rate doesn't match"), "{m}");
        let m = mismatch(&Tbf { limit: 9, ..a }, &a).unwrap();
        assert!(m.starts_with("Limit doesn't match"), "{m}");
        let m = mismatch(&Tbf { buffer: 9, ..a }, &a).unwrap();
        assert_eq!(m, "Buffer doesn't match: 9 != 2");
    }
}

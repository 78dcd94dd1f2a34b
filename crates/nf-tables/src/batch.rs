//! [`Batch`]: the chain, rule and element changes of one nf_tables transaction, and their wire
//! form.

use crate::attr;
use crate::expr;
use crate::set::{NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_TABLE};
use crate::wire::*;
use crate::{Element, Family, NewRule, Result};

/// One change of a batch.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    /// NFT_MSG_* message type.
    pub(crate) kind: u16,
    /// NLM_F_* flags beyond NLM_F_REQUEST.
    pub(crate) flags: u16,
    /// NFPROTO_* of the table.
    pub(crate) nfproto: u8,
    pub(crate) attrs: attr::Writer,
    /// What the change does, for the error when the kernel refuses it.
    pub(crate) describe: String,
}

/// The attributes naming one element of `set` (by key alone with `key_only`).
pub(crate) fn element_attrs(
    table: &str,
    set: &str,
    elem: &Element,
    key_only: bool,
) -> Result<attr::Writer> {
    let mut a = attr::Writer::default();
    a.str(NFTA_SET_ELEM_LIST_TABLE, table)
        .str(NFTA_SET_ELEM_LIST_SET, set);
    elem.write_list(&mut a, key_only)?;
    Ok(a)
}

/// What [`Batch::element`] does with an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementChange {
    /// Add it; the change fails (EEXIST) if its key is present (`nft create element`).
    Create,
    /// Add it; a present key is no error (`nft add element`; for maps only with the same
    /// datum).
    Add,
    /// Delete the element with its key; the change fails (ENOENT) if there is none.
    Delete,
}

/// The changes of one transaction, applied all or nothing by [`NfSocket::apply`].
///
/// [`NfSocket::apply`]: crate::NfSocket::apply
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub(crate) ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Creates a regular chain; fails (EEXIST) if it exists.
    pub fn add_chain(&mut self, family: Family, table: &str, chain: &str) -> &mut Self {
        let mut a = attr::Writer::default();
        a.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, chain);
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.push(
            NFT_MSG_NEWCHAIN,
            flags,
            family,
            a,
            format!("add chain {chain}"),
        )
    }

    /// Appends a rule at the end of `chain`.
    pub fn append_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        rule: &NewRule,
    ) -> &mut Self {
        let mut a = attr::Writer::default();
        a.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
        expr::write_list(&mut a, NFTA_RULE_EXPRESSIONS, &rule.exprs);
        if let Some(proto) = rule.compat_proto {
            a.nested(NFTA_RULE_COMPAT, |c| {
                c.be32(NFTA_RULE_COMPAT_PROTO, proto.into())
                    .be32(NFTA_RULE_COMPAT_FLAGS, 0);
            });
        }
        let flags = NLM_F_CREATE | NLM_F_APPEND;
        self.push(
            NFT_MSG_NEWRULE,
            flags,
            family,
            a,
            format!("add rule to {chain}"),
        )
    }

    /// Deletes the rule `handle` of `chain`.
    pub fn delete_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> &mut Self {
        let mut a = attr::Writer::default();
        a.str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain)
            .be64(NFTA_RULE_HANDLE, handle);
        let op = format!("delete rule {handle} of {chain}");
        self.push(NFT_MSG_DELRULE, 0, family, a, op)
    }

    /// Deletes every rule of `chain`.
    pub fn flush_chain(&mut self, family: Family, table: &str, chain: &str) -> &mut Self {
        let mut a = attr::Writer::default();
        a.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
        self.push(
            NFT_MSG_DELRULE,
            0,
            family,
            a,
            format!("flush chain {chain}"),
        )
    }

    /// Deletes an empty, unreferenced chain.
    pub fn delete_chain(&mut self, family: Family, table: &str, chain: &str) -> &mut Self {
        let mut a = attr::Writer::default();
        a.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, chain);
        self.push(
            NFT_MSG_DELCHAIN,
            0,
            family,
            a,
            format!("delete chain {chain}"),
        )
    }

    /// Changes one element of set or map `set` (one element per change, so a refusal names
    /// the element).
    pub fn element(
        &mut self,
        change: ElementChange,
        family: Family,
        table: &str,
        set: &str,
        elem: &Element,
    ) -> Result<&mut Self> {
        let (kind, flags, describe) = match change {
            ElementChange::Create => (
                NFT_MSG_NEWSETELEM,
                NLM_F_CREATE | NLM_F_EXCL,
                format!("create element in {set}"),
            ),
            ElementChange::Add => (
                NFT_MSG_NEWSETELEM,
                NLM_F_CREATE,
                format!("add element to {set}"),
            ),
            ElementChange::Delete => (NFT_MSG_DELSETELEM, 0, format!("delete element of {set}")),
        };
        let a = element_attrs(table, set, elem, change == ElementChange::Delete)?;
        Ok(self.push(kind, flags, family, a, describe))
    }

    /// The number of changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// What change `index` does (as named in errors).
    pub fn describe(&self, index: usize) -> Option<&str> {
        self.ops.get(index).map(|o| o.describe.as_str())
    }

    fn push(
        &mut self,
        kind: u16,
        flags: u16,
        family: Family,
        attrs: attr::Writer,
        describe: String,
    ) -> &mut Self {
        self.ops.push(Op {
            kind,
            flags,
            nfproto: family.nfproto(),
            attrs,
            describe,
        });
        self
    }

    /// The wire form: BATCH_BEGIN, every change, BATCH_END. Message `i` of the batch has
    /// sequence number `first_seq + 1 + i`. Only the last change asks for an acknowledgement:
    /// the kernel reports every failing change anyway, and one ack per change would overrun
    /// the socket's receive buffer for batches of a few hundred changes.
    pub(crate) fn encode(&self, first_seq: u32) -> Vec<u8> {
        let none = attr::Writer::default();
        let unspec = libc::AF_UNSPEC as u8;
        let mut buf = message(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            first_seq,
            unspec,
            &none,
        );
        let last = self.ops.len().saturating_sub(1);
        for (i, op) in self.ops.iter().enumerate() {
            let seq = first_seq.wrapping_add(1 + i as u32);
            let ack = if i == last { NLM_F_ACK } else { 0 };
            let flags = op.flags | NLM_F_REQUEST | ack;
            buf.extend_from_slice(&message(op.kind, flags, seq, op.nfproto, &op.attrs));
        }
        let end_seq = first_seq.wrapping_add(1 + self.ops.len() as u32);
        buf.extend_from_slice(&message(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end_seq,
            unspec,
            &none,
        ));
        buf
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::Expr;

    #[test]
    fn batch_frames_changes_with_consecutive_sequence_numbers() {
        // Only the last change asks for an acknowledgement (failures are reported anyway).
        let mut b = Batch::new();
        b.add_chain(Family::Ipv4, "nat", "CNI-DN-x")
            .delete_chain(Family::Ipv4, "nat", "CNI-DN-x");
        let wire = b.encode(100);
        let msgs: Vec<_> = replies(&wire).map(|r| (r.kind, r.flags, r.seq)).collect();
        assert_eq!(
            msgs,
            [
                (NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 100),
                (
                    (10 << 8) | NFT_MSG_NEWCHAIN,
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
                    101
                ),
                ((10 << 8) | NFT_MSG_DELCHAIN, NLM_F_REQUEST | NLM_F_ACK, 102),
                (NFNL_MSG_BATCH_END, NLM_F_REQUEST, 103),
            ]
        );
        // The batch frame names the nftables subsystem (big-endian res_id).
        assert_eq!(&wire[16..20], [0, 0, 0, 10]);
        // Changes carry the table family (NFPROTO_IPV4 = 2).
        assert_eq!(wire[36], 2);
    }

    #[test]
    fn append_rule_carries_compat_protocol() {
        let mut b = Batch::new();
        let rule = NewRule {
            exprs: vec![Expr::Counter],
            compat_proto: Some(6),
        };
        b.append_rule(Family::Ipv6, "nat", "CNI-HOSTPORT-DNAT", &rule);
        let wire = b.encode(1);
        let msg = replies(&wire).nth(1).unwrap();
        assert_eq!(msg.body[0], libc::NFPROTO_IPV6 as u8);
        let compat = attr::find(attrs_of(msg.body), NFTA_RULE_COMPAT).unwrap();
        assert_eq!(
            attr::as_be32(attr::find(compat, NFTA_RULE_COMPAT_PROTO).unwrap()),
            Some(6)
        );
        assert!(msg.flags & NLM_F_APPEND != 0);
    }

    #[test]
    fn element_changes_name_table_and_set_with_create_semantics() {
        use crate::{Concat, Element};
        let e = Element::mapping(
            Concat::new().inet_proto(6).inet_service(8080),
            Concat::new()
                .addr("10.244.0.5".parse().unwrap())
                .inet_service(80),
        );
        let mut b = Batch::new();
        let t = "cni_hostport";
        b.element(ElementChange::Create, Family::Ipv4, t, "hostport_dnat", &e)
            .unwrap()
            .element(ElementChange::Add, Family::Ipv4, t, "hostport_masq", &e)
            .unwrap()
            .element(ElementChange::Delete, Family::Ipv6, t, "hostport_dnat", &e)
            .unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b.describe(2), Some("delete element of hostport_dnat"));
        let wire = b.encode(1);
        let msgs: Vec<_> = replies(&wire).collect();
        let sub = NFNL_SUBSYS_NFTABLES << 8;
        assert_eq!(msgs[1].kind, sub | NFT_MSG_NEWSETELEM);
        assert_eq!(
            msgs[1].flags,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
            "create = fail if present"
        );
        assert_eq!(msgs[2].flags, NLM_F_REQUEST | NLM_F_CREATE);
        assert_eq!(msgs[3].kind, sub | NFT_MSG_DELSETELEM);
        assert_eq!(msgs[3].body[0], libc::NFPROTO_IPV6 as u8);
        let a = attrs_of(msgs[1].body);
        let table = attr::find(a, NFTA_SET_ELEM_LIST_TABLE).and_then(attr::as_str);
        let set = attr::find(a, NFTA_SET_ELEM_LIST_SET).and_then(attr::as_str);
        assert_eq!((table, set), (Some("cni_hostport"), Some("hostport_dnat")));
    }
}

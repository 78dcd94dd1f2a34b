//! [`Batch`]: the chain and rule changes of one nf_tables transaction, and their wire form.

use crate::attr;
use crate::expr;
use crate::wire::*;
use crate::{Family, NewRule};

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
}

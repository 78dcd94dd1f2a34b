//! The nf_tables expressions a rule is built from, encoded as the kernel expects them, and the
//! decoded form of dumped rules.

use crate::attr::{self, Writer};

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;

const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_BITWISE_OP: u16 = 6;
/// `NFT_BITWISE_MASK_XOR` (formerly `NFT_BITWISE_BOOL`): `(reg & mask) ^ xor`.
const NFT_BITWISE_MASK_XOR: u32 = 0;
const NFTA_XT_NAME: u16 = 1;
const NFTA_XT_REV: u16 = 2;
const NFTA_XT_INFO: u16 = 3;

const NFT_REG_VERDICT: u32 = 0;
const NFT_CMP_EQ: u32 = 0;
const NFT_JUMP: u32 = -3i32 as u32;
const NFT_GOTO: u32 = -4i32 as u32;

/// `meta` keys used here.
pub const NFT_META_L4PROTO: u32 = 16;
pub const NFT_META_MARK: u32 = 3;

/// Where a `payload` load starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    Network = 1,
    Transport = 2,
}

/// One expression. Registers are the 128-bit `NFT_REG_1..4` numbering iptables-nft uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: u32,
        dreg: u32,
    },
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// `cmp eq`: register `sreg` equals `data`.
    CmpEq {
        sreg: u32,
        data: Vec<u8>,
    },
    /// `bitwise`: register `reg` = (`reg` & `mask`) ^ `xor` (`mask` and `xor` of equal length).
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// A counter starting at zero.
    Counter,
    /// `immediate` verdict `jump <chain>`.
    Jump(String),
    /// An x_tables match run through nft_compat (`info` is the match's kernel struct).
    Match {
        name: String,
        rev: u32,
        info: Vec<u8>,
    },
    /// An x_tables target run through nft_compat.
    Target {
        name: String,
        rev: u32,
        info: Vec<u8>,
    },
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::CmpEq { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Counter => "counter",
            Expr::Jump(_) => "immediate",
            Expr::Match { .. } => "match",
            Expr::Target { .. } => "target",
        }
    }

    /// The expression's NFTA_EXPR_DATA payload.
    pub(crate) fn data(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            // Attributes in the order the kernel dumps them, so dumped rules compare bytewise.
            Expr::Meta { key, dreg } => {
                w.be32(NFTA_META_KEY, *key).be32(NFTA_META_DREG, *dreg);
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                w.be32(NFTA_PAYLOAD_DREG, *dreg)
                    .be32(NFTA_PAYLOAD_BASE, *base as u32)
                    .be32(NFTA_PAYLOAD_OFFSET, *offset)
                    .be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::CmpEq { sreg, data } => {
                w.be32(NFTA_CMP_SREG, *sreg)
                    .be32(NFTA_CMP_OP, NFT_CMP_EQ)
                    .nested(NFTA_CMP_DATA, |d| {
                        d.bytes(NFTA_DATA_VALUE, data);
                    });
            }
            Expr::Bitwise { reg, mask, xor } => {
                w.be32(NFTA_BITWISE_SREG, *reg)
                    .be32(NFTA_BITWISE_DREG, *reg)
                    .be32(NFTA_BITWISE_LEN, mask.len() as u32)
                    .be32(NFTA_BITWISE_OP, NFT_BITWISE_MASK_XOR)
                    .nested(NFTA_BITWISE_MASK, |d| {
                        d.bytes(NFTA_DATA_VALUE, mask);
                    })
                    .nested(NFTA_BITWISE_XOR, |d| {
                        d.bytes(NFTA_DATA_VALUE, xor);
                    });
            }
            Expr::Counter => {
                w.be64(NFTA_COUNTER_BYTES, 0).be64(NFTA_COUNTER_PACKETS, 0);
            }
            Expr::Jump(chain) => {
                w.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT)
                    .nested(NFTA_IMMEDIATE_DATA, |d| {
                        d.nested(NFTA_DATA_VERDICT, |v| {
                            v.be32(NFTA_VERDICT_CODE, NFT_JUMP)
                                .str(NFTA_VERDICT_CHAIN, chain);
                        });
                    });
            }
            Expr::Match { name, rev, info } | Expr::Target { name, rev, info } => {
                w.str(NFTA_XT_NAME, name)
                    .be32(NFTA_XT_REV, *rev)
                    .bytes(NFTA_XT_INFO, info);
            }
        }
        w.buf
    }
}

/// Writes `exprs` as an NFTA_RULE_EXPRESSIONS list.
pub(crate) fn write_list(w: &mut Writer, kind: u16, exprs: &[Expr]) {
    w.nested(kind, |list| {
        for e in exprs {
            list.nested(NFTA_LIST_ELEM, |elem| {
                elem.str(NFTA_EXPR_NAME, e.name())
                    .nested(NFTA_EXPR_DATA, |d| d.buf.extend_from_slice(&e.data()));
            });
        }
    });
}

/// An expression as the kernel reports it: its name and raw NFTA_EXPR_DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawExpr {
    pub name: String,
    pub data: Vec<u8>,
}

impl RawExpr {
    /// The same expression as a rule would carry it on the wire, for exact comparisons.
    pub fn of(e: &Expr) -> RawExpr {
        RawExpr {
            name: e.name().to_string(),
            data: e.data(),
        }
    }

    /// Whether both are the same expression, however nested attributes are flagged.
    pub fn same_as(&self, other: &RawExpr) -> bool {
        self.name == other.name
            && attr::without_nested_flags(&self.data) == attr::without_nested_flags(&other.data)
    }

    /// The chain a `jump`/`goto` verdict names.
    pub fn verdict_chain(&self) -> Option<&str> {
        if self.name != "immediate" {
            return None;
        }
        let data = attr::find(&self.data, NFTA_IMMEDIATE_DATA)?;
        let verdict = attr::find(data, NFTA_DATA_VERDICT)?;
        let code = attr::as_be32(attr::find(verdict, NFTA_VERDICT_CODE)?)?;
        if code != NFT_JUMP && code != NFT_GOTO {
            return None;
        }
        attr::as_str(attr::find(verdict, NFTA_VERDICT_CHAIN)?)
    }

    /// Whether this is a counter (whose values differ between otherwise equal rules).
    pub fn is_counter(&self) -> bool {
        self.name == "counter"
    }
}

pub(crate) fn read_list(buf: &[u8]) -> Vec<RawExpr> {
    attr::iter(buf)
        .filter(|(k, _)| *k == NFTA_LIST_ELEM)
        .filter_map(|(_, elem)| {
            let name = attr::as_str(attr::find(elem, NFTA_EXPR_NAME)?)?.to_string();
            let data = attr::find(elem, NFTA_EXPR_DATA)
                .unwrap_or_default()
                .to_vec();
            Some(RawExpr { name, data })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_round_trips_through_the_list_encoding() {
        let exprs = [
            Expr::Meta {
                key: NFT_META_L4PROTO,
                dreg: 1,
            },
            Expr::CmpEq {
                sreg: 1,
                data: vec![6],
            },
            Expr::Counter,
            Expr::Jump("CNI-DN-abc".into()),
        ];
        let mut w = Writer::default();
        write_list(&mut w, 4, &exprs);
        let (kind, list) = attr::iter(&w.buf).next().unwrap();
        assert_eq!(kind, 4);
        let raw = read_list(list);
        let names: Vec<&str> = raw.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["meta", "cmp", "counter", "immediate"]);
        assert_eq!(raw[3].verdict_chain(), Some("CNI-DN-abc"));
        assert_eq!(raw[0].verdict_chain(), None);
        assert!(raw[2].is_counter());
        assert_eq!(raw[1], RawExpr::of(&exprs[1]));
    }

    #[test]
    fn bitwise_carries_mask_and_xor_after_the_op() {
        let d = Expr::Bitwise {
            reg: 1,
            mask: vec![0, 0, 0x20, 0],
            xor: vec![0; 4],
        }
        .data();
        let attrs: Vec<u16> = attr::iter(&d).map(|(k, _)| k).collect();
        assert_eq!(
            attrs,
            [
                NFTA_BITWISE_SREG,
                NFTA_BITWISE_DREG,
                NFTA_BITWISE_LEN,
                NFTA_BITWISE_OP,
                NFTA_BITWISE_MASK,
                NFTA_BITWISE_XOR
            ]
        );
        let mask = attr::find(&d, NFTA_BITWISE_MASK).unwrap();
        assert_eq!(
            attr::find(mask, NFTA_DATA_VALUE),
            Some(&[0, 0, 0x20, 0][..])
        );
    }

    #[test]
    fn cmp_data_is_nested_value() {
        let d = Expr::CmpEq {
            sreg: 1,
            data: vec![0x1f, 0x90],
        }
        .data();
        // sreg (8) + op (8) + nested data header (4) + value header (4) + 2 bytes padded to 4.
        assert_eq!(d.len(), 8 + 8 + 4 + 4 + 4);
        assert_eq!(&d[d.len() - 4..], [0x1f, 0x90, 0, 0]);
    }
}

//! The tbf qdisc's netlink options, which netlink-packet-route does not model: TCA_TBF_PARMS
//! (`struct tc_tbf_qopt`) and TCA_TBF_RATE64, built and parsed by hand.

use netlink_packet_core::{DefaultNla, Nla, NlasIterator, NLA_TYPE_MASK};
use netlink_packet_route::tc::TcOption;

pub const TCA_OPTIONS: u16 = 2;
pub const TCA_TBF_PARMS: u16 = 1;
pub const TCA_TBF_RATE64: u16 = 4;
/// `sizeof(struct tc_tbf_qopt)`: two 12-byte `tc_ratespec`s, then limit, buffer, mtu.
pub const TC_TBF_QOPT_LEN: usize = 36;

/// tbf parameters in kernel units, as sent and as dumped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// Bytes per second.
    pub rate: u64,
    /// Bucket size as transmit time, in psched ticks.
    pub buffer: u32,
    /// Queue limit in bytes.
    pub limit: u32,
}

/// The TCA_OPTIONS content for a tbf without peak rate (what the Go bandwidth plugin sends:
/// no rate tables, no TCA_TBF_BURST, linklayer left unset).
pub fn encode(tbf: &Tbf) -> Vec<TcOption> {
    let mut opts = vec![TcOption::Other(DefaultNla::new(
        TCA_TBF_PARMS,
        qopt_bytes(tbf).to_vec(),
    ))];
    if tbf.rate >= 1 << 32 {
        opts.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            tbf.rate.to_ne_bytes().to_vec(),
        )));
    }
    opts
}

/// `struct tc_tbf_qopt` in native byte order. The 32-bit rate saturates when the real rate
/// travels in TCA_TBF_RATE64 (the kernel uses the larger of the two).
pub fn qopt_bytes(tbf: &Tbf) -> [u8; TC_TBF_QOPT_LEN] {
    let mut b = [0u8; TC_TBF_QOPT_LEN];
    // rate: cell_log u8, linklayer u8, overhead u16, cell_align i16, mpu u16, rate u32
    let rate32 = u32::try_from(tbf.rate).unwrap_or(u32::MAX);
    b[8..12].copy_from_slice(&rate32.to_ne_bytes());
    // peakrate (bytes 12..24) stays zero.
    b[24..28].copy_from_slice(&tbf.limit.to_ne_bytes());
    b[28..32].copy_from_slice(&tbf.buffer.to_ne_bytes());
    // mtu (32..36) is only used with a peak rate.
    b
}

/// Reads tbf parameters back from a dumped qdisc's options. netlink-packet-route hands unknown
/// qdisc kinds over as one opaque TCA_OPTIONS attribute; already-unpacked attributes work too.
pub fn decode(options: &[TcOption]) -> Option<Tbf> {
    let mut parms: Option<Vec<u8>> = None;
    let mut rate64: Option<u64> = None;
    let mut visit = |kind: u16, value: &[u8]| match kind & NLA_TYPE_MASK {
        TCA_TBF_PARMS => parms = Some(value.to_vec()),
        TCA_TBF_RATE64 => rate64 = value.try_into().ok().map(u64::from_ne_bytes),
        _ => {}
    };
    for opt in options {
        let TcOption::Other(nla) = opt else { continue };
        let mut value = vec![0u8; nla.value_len()];
        nla.emit_value(&mut value);
        if nla.kind() & NLA_TYPE_MASK == TCA_OPTIONS {
            for inner in NlasIterator::new(&value[..]).flatten() {
                visit(inner.kind(), inner.value());
            }
        } else {
            visit(nla.kind(), &value);
        }
    }
    let p = parms?;
    if p.len() < TC_TBF_QOPT_LEN {
        return None;
    }
    let u32_at = |o: usize| u32::from_ne_bytes(p[o..o + 4].try_into().expect("4 bytes"));
    Some(Tbf {
        rate: rate64.unwrap_or(u64::from(u32_at(8))),
        limit: u32_at(24),
        buffer: u32_at(28),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use netlink_packet_route::tc::TcAttribute;

    #[test]
    fn qopt_layout_matches_struct_tc_tbf_qopt() {
        let b = qopt_bytes(&Tbf {
            rate: 1_000_000,
            buffer: 156_250,
            limit: 35_000,
        });
        assert_eq!(
            &b[0..8],
            &[0; 8],
            "cell_log, linklayer, overhead, cell_align, mpu"
        );
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 1_000_000);
        assert_eq!(&b[12..24], &[0; 12], "no peakrate");
        assert_eq!(u32::from_ne_bytes(b[24..28].try_into().unwrap()), 35_000);
        assert_eq!(u32::from_ne_bytes(b[28..32].try_into().unwrap()), 156_250);
        assert_eq!(&b[32..36], &[0; 4]);
    }

    #[test]
    fn rate64_only_above_u32() {
        let small = encode(&Tbf {
            rate: u64::from(u32::MAX),
            buffer: 1,
            limit: 1,
        });
        assert_eq!(small.len(), 1);
        let big = encode(&Tbf {
            rate: 1 << 33,
            buffer: 1,
            limit: 1,
        });
        assert_eq!(big.len(), 2);
        assert_eq!(
            big[1],
            TcOption::Other(DefaultNla::new(
                TCA_TBF_RATE64,
                (1u64 << 33).to_ne_bytes().to_vec()
            ))
        );
        let parms = qopt_bytes(&Tbf {
            rate: 1 << 33,
            buffer: 1,
            limit: 1,
        });
        assert_eq!(
            u32::from_ne_bytes(parms[8..12].try_into().unwrap()),
            u32::MAX
        );
    }

    #[test]
    fn options_are_nested_inside_tca_options() {
        let attr = TcAttribute::Options(encode(&Tbf {
            rate: 1000,
            buffer: 2000,
            limit: 35,
        }));
        let mut b = vec![0u8; attr.buffer_len()];
        attr.emit(&mut b);
        // TCA_OPTIONS header (len 4+4+36, type 2), then TCA_TBF_PARMS (len 40, type 1).
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), 44);
        assert_eq!(
            u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK,
            TCA_OPTIONS
        );
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 40);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), TCA_TBF_PARMS);
    }

    #[test]
    fn decodes_opaque_dump_and_plain_options() {
        for tbf in [
            Tbf {
                rate: 1_000_000,
                buffer: 156_250,
                limit: 35_000,
            },
            Tbf {
                rate: 10_000_000_000,
                buffer: 7,
                limit: 9,
            },
        ] {
            // Plain, as we send it.
            assert_eq!(decode(&encode(&tbf)), Some(tbf));
            // Opaque, as netlink-packet-route parses an unknown kind from a dump.
            let mut nested = Vec::new();
            for opt in encode(&tbf) {
                let mut b = vec![0u8; opt.buffer_len()];
                opt.emit(&mut b);
                nested.extend(b);
            }
            let opaque = TcOption::Other(DefaultNla::new(TCA_OPTIONS | 0x8000, nested));
            assert_eq!(decode(&[opaque]), Some(tbf));
        }
        assert_eq!(decode(&[]), None);
    }
}

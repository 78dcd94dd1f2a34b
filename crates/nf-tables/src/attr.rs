//! Netlink attribute (TLV) writing and reading: 4-byte aligned, nested attributes marked with
//! NLA_F_NESTED, big-endian integers as nf_tables expects them.

const NLA_HDR_LEN: usize = 4;
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A growing buffer of attributes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn bytes(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = NLA_HDR_LEN + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// A NUL-terminated string, as the kernel's NLA_STRING policy for names expects.
    pub(crate) fn str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.bytes(kind, &v)
    }

    pub(crate) fn be32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    pub(crate) fn be64(&mut self, kind: u16, value: u64) -> &mut Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    pub(crate) fn nested(&mut self, kind: u16, inner: impl FnOnce(&mut Writer)) -> &mut Self {
        let mut w = Writer::default();
        inner(&mut w);
        self.bytes(kind | NLA_F_NESTED, &w.buf)
    }
}

/// Iterates the attributes of `buf` as (type without flags, value); stops at a malformed one.
pub(crate) fn iter(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < NLA_HDR_LEN {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDR_LEN || len > rest.len() {
            return None;
        }
        let value = &rest[NLA_HDR_LEN..len];
        rest = &rest[align4(len).min(rest.len())..];
        Some((kind, value))
    })
}

/// `buf` with the NLA_F_NESTED flag cleared at every level. We set the flag on what we send;
/// the kernel dumps nested attributes without it, so comparisons go through this.
pub(crate) fn without_nested_flags(buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len());
    let mut rest = buf;
    while rest.len() >= NLA_HDR_LEN {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]);
        if len < NLA_HDR_LEN || len > rest.len() {
            break;
        }
        let value = &rest[NLA_HDR_LEN..len];
        let end = align4(len).min(rest.len());
        out.extend_from_slice(&rest[..2]);
        out.extend_from_slice(&(kind & !NLA_F_NESTED).to_ne_bytes());
        if kind & NLA_F_NESTED != 0 {
            out.extend_from_slice(&without_nested_flags(value));
        } else {
            out.extend_from_slice(value);
        }
        out.extend_from_slice(&rest[len..end]);
        rest = &rest[end..];
    }
    out.extend_from_slice(rest);
    out
}

pub(crate) fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    iter(buf).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

pub(crate) fn as_be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

pub(crate) fn as_be64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

pub(crate) fn as_str(v: &[u8]) -> Option<&str> {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    std::str::from_utf8(&v[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_nul_terminated_and_padded() {
        let mut w = Writer::default();
        w.str(3, "nat");
        assert_eq!(w.buf, [8, 0, 3, 0, b'n', b'a', b't', 0]);
        w.str(1, "ab");
        assert_eq!(&w.buf[8..], [7, 0, 1, 0, b'a', b'b', 0, 0]);
    }

    #[test]
    fn nested_round_trip() {
        let mut w = Writer::default();
        w.nested(2, |n| {
            n.be32(1, 0xfffffffd).str(2, "CNI-DN-x");
        })
        .be64(3, 42);
        let attrs: Vec<_> = iter(&w.buf).collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].0, 2, "the nested flag is masked off");
        assert_eq!(as_be32(find(attrs[0].1, 1).unwrap()), Some(0xfffffffd));
        assert_eq!(as_str(find(attrs[0].1, 2).unwrap()), Some("CNI-DN-x"));
        assert_eq!(as_be64(attrs[1].1), Some(42));
    }

    #[test]
    fn nested_flags_are_cleared_recursively() {
        let mut flagged = Writer::default();
        flagged.nested(2, |n| {
            n.nested(1, |m| {
                m.be32(1, 7);
            });
        });
        let plain: Vec<u8> = [16u16, 2, 12, 1, 8, 1]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .chain([0, 0, 0, 7])
            .collect();
        assert_eq!(without_nested_flags(&flagged.buf), plain);
        assert_eq!(without_nested_flags(&plain), plain);
    }

    #[test]
    fn malformed_input_ends_iteration() {
        assert_eq!(iter(&[200, 0, 1, 0, 1]).count(), 0);
        assert_eq!(iter(&[2, 0]).count(), 0);
    }
}

//! Set and map elements: keys and data laid out as the kernel stores them, and the userdata
//! carrying an element's comment.

use std::net::IpAddr;

use crate::attr::{self, Writer};
use crate::{Error, Result};

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
pub(crate) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(crate) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(crate) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_USERDATA: u16 = 6;

/// Type of the comment TLV in element and rule userdata (the first type nft defines for both).
pub(crate) const UDATA_COMMENT: u8 = 0;
/// IFNAMSIZ: an `ifname` field is this long, NUL-padded.
const IFNAME_LEN: usize = 16;

/// A key or map datum of one or more fields. Every field starts on a 4-byte boundary, zero
/// padded (the kernel's registers are 32-bit units, and concatenations such as
/// `inet_proto . inet_service` occupy one register per field).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Concat {
    bytes: Vec<u8>,
}

impl Concat {
    pub fn new() -> Concat {
        Concat::default()
    }

    /// A field of raw bytes (network order where the type has one).
    pub fn raw(mut self, field: &[u8]) -> Concat {
        self.bytes.extend_from_slice(field);
        self.bytes.resize(attr::align4(self.bytes.len()), 0);
        self
    }

    /// An `ifname` field: the name NUL-padded to 16 bytes. Names of 16 bytes or more do not
    /// fit (they would lose the terminating NUL the kernel's string match relies on).
    pub fn ifname(self, name: &str) -> Result<Concat> {
        if name.len() >= IFNAME_LEN || name.contains('\0') {
            return Err(Error::Value(format!(
                "ifname {name:?} must be at most {} bytes without NUL",
                IFNAME_LEN - 1
            )));
        }
        let mut field = [0u8; IFNAME_LEN];
        field[..name.len()].copy_from_slice(name.as_bytes());
        Ok(self.raw(&field))
    }

    /// An `ipv4_addr` or `ipv6_addr` field.
    pub fn addr(self, addr: IpAddr) -> Concat {
        match addr {
            IpAddr::V4(a) => self.raw(&a.octets()),
            IpAddr::V6(a) => self.raw(&a.octets()),
        }
    }

    /// An `inet_proto` field (one byte, IPPROTO_*).
    pub fn inet_proto(self, proto: u8) -> Concat {
        self.raw(&[proto])
    }

    /// An `inet_service` field (a port, big-endian).
    pub fn inet_service(self, port: u16) -> Concat {
        self.raw(&port.to_be_bytes())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// One element: its key, for maps its datum, and an optional comment (shown by `nft list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub key: Concat,
    pub data: Option<Concat>,
    pub comment: Option<String>,
}

impl Element {
    /// A set element.
    pub fn key(key: Concat) -> Element {
        Element {
            key,
            data: None,
            comment: None,
        }
    }

    /// A map element.
    pub fn mapping(key: Concat, data: Concat) -> Element {
        Element {
            key,
            data: Some(data),
            comment: None,
        }
    }

    pub fn with_comment(mut self, comment: &str) -> Element {
        self.comment = Some(comment.to_string());
        self
    }

    /// The NFTA_SET_ELEM_LIST_ELEMENTS list holding this one element; with `key_only` (for a
    /// delete, which finds the element by key) without datum and comment.
    pub(crate) fn write_list(&self, w: &mut Writer, key_only: bool) -> Result<()> {
        let comment = match &self.comment {
            Some(c) if !key_only => Some(comment_udata(c)?),
            _ => None,
        };
        w.nested(NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
            list.nested(NFTA_LIST_ELEM, |e| {
                e.nested(NFTA_SET_ELEM_KEY, |k| {
                    k.bytes(NFTA_DATA_VALUE, self.key.as_bytes());
                });
                if let Some(data) = self.data.as_ref().filter(|_| !key_only) {
                    e.nested(NFTA_SET_ELEM_DATA, |d| {
                        d.bytes(NFTA_DATA_VALUE, data.as_bytes());
                    });
                }
                if let Some(udata) = &comment {
                    e.bytes(NFTA_SET_ELEM_USERDATA, udata);
                }
            });
        });
        Ok(())
    }
}

/// The userdata TLV nft reads a comment from: type, length (with the NUL), the string and NUL.
fn comment_udata(comment: &str) -> Result<Vec<u8>> {
    let len = comment.len() + 1;
    if len > u8::MAX as usize || comment.contains('\0') {
        return Err(Error::Value(format!(
            "comment of {} bytes: at most {} without NUL",
            comment.len(),
            u8::MAX - 1
        )));
    }
    let mut v = vec![UDATA_COMMENT, len as u8];
    v.extend_from_slice(comment.as_bytes());
    v.push(0);
    Ok(v)
}

/// The comment in rule or element userdata, if there is one.
pub(crate) fn udata_comment(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], udata[1] as usize);
        let value = udata.get(2..2 + len)?;
        if kind == UDATA_COMMENT {
            return attr::as_str(value).map(str::to_string);
        }
        udata = &udata[2 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_padded_to_four_bytes() {
        // `ifname . ipv4_addr . inet_proto . inet_service` as nft 1.0.6 sends it for
        // "ce0bd88d2c9cb28" . 0.0.0.0 . tcp . 8080.
        let key = Concat::new()
            .ifname("ce0bd88d2c9cb28")
            .unwrap()
            .addr("0.0.0.0".parse().unwrap())
            .inet_proto(6)
            .inet_service(8080);
        let mut want = b"ce0bd88d2c9cb28\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 0, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(key.as_bytes(), want);
        let v6 = Concat::new()
            .addr("2001:db8::1".parse().unwrap())
            .inet_service(80);
        assert_eq!(v6.as_bytes().len(), 20);
        assert_eq!(&v6.as_bytes()[16..], [0, 80, 0, 0]);
    }

    #[test]
    fn overlong_names_and_comments_are_refused() {
        assert!(Concat::new().ifname("0123456789abcdef").is_err());
        assert!(Concat::new().ifname("a\0b").is_err());
        let e = Element::key(Concat::new().inet_proto(6)).with_comment(&"x".repeat(255));
        assert!(e.write_list(&mut Writer::default(), false).is_err());
    }

    #[test]
    fn element_list_matches_nft() {
        // The NFTA_SET_ELEM_LIST_ELEMENTS nft 1.0.6 sends for
        // `create element ip t hostport_owner { "ce0bd88d2c9cb28" . 0.0.0.0 . tcp . 8081
        // comment "net cid" }` (captured with strace).
        let key = Concat::new()
            .ifname("ce0bd88d2c9cb28")
            .unwrap()
            .addr("0.0.0.0".parse().unwrap())
            .inet_proto(6)
            .inet_service(8081);
        let mut w = Writer::default();
        Element::key(key)
            .with_comment("net cid")
            .write_list(&mut w, false)
            .unwrap();
        let mut want: Vec<u8> = vec![
            60, 0, 3, 0x80, 0x38, 0, 1, 0x80, 0x24, 0, 1, 0x80, 0x20, 0, 1, 0,
        ];
        want.extend_from_slice(b"ce0bd88d2c9cb28\0");
        want.extend_from_slice(&[0, 0, 0, 0, 6, 0, 0, 0, 0x1f, 0x91, 0, 0]);
        want.extend_from_slice(&[0x0e, 0, 6, 0, 0, 8]);
        want.extend_from_slice(b"net cid\0");
        want.extend_from_slice(&[0, 0]);
        assert_eq!(w.buf, want);
        assert_eq!(
            udata_comment(&want[want.len() - 12..]),
            Some("net cid".into())
        );
    }

    #[test]
    fn map_elements_carry_their_datum() {
        let e = Element::mapping(
            Concat::new().inet_proto(6).inet_service(8080),
            Concat::new()
                .addr("10.244.0.5".parse().unwrap())
                .inet_service(80),
        );
        let mut w = Writer::default();
        e.write_list(&mut w, false).unwrap();
        let list = attr::find(&w.buf, NFTA_SET_ELEM_LIST_ELEMENTS).unwrap();
        let elem = attr::find(list, NFTA_LIST_ELEM).unwrap();
        let data = attr::find(elem, NFTA_SET_ELEM_DATA).unwrap();
        assert_eq!(
            attr::find(data, NFTA_DATA_VALUE).unwrap(),
            [10, 244, 0, 5, 0, 80, 0, 0]
        );
        assert!(attr::find(elem, NFTA_SET_ELEM_USERDATA).is_none());
        let mut k = Writer::default();
        e.with_comment("c").write_list(&mut k, true).unwrap();
        let list = attr::find(&k.buf, NFTA_SET_ELEM_LIST_ELEMENTS).unwrap();
        let elem = attr::find(list, NFTA_LIST_ELEM).unwrap();
        let kinds: Vec<u16> = attr::iter(elem).map(|(t, _)| t).collect();
        assert_eq!(kinds, [NFTA_SET_ELEM_KEY], "a delete names the key only");
    }
}

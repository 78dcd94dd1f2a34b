use std::fmt;
use std::str::FromStr;

/// A 6-byte Ethernet address, printed as `ee:ee:ee:ee:ee:ee` (lowercase, like Go's `net.HardwareAddr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// From a netlink attribute; None unless it is exactly 6 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid MAC address {0:?}")]
pub struct ParseMacError(String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    /// Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(err());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m: MacAddr = "EE:ee:ee:ee:ee:0A".parse().unwrap();
        assert_eq!(m.0, [0xee, 0xee, 0xee, 0xee, 0xee, 0x0a]);
        assert_eq!(m.to_string(), "ee:ee:ee:ee:ee:0a");
        assert_eq!(
            "01-02-03-04-05-06".parse::<MacAddr>().unwrap().0,
            [1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "ee:ee",
            "ee:ee:ee:ee:ee:ee:ee",
            "gg:ee:ee:ee:ee:ee",
            "e:ee:ee:ee:ee:eee",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(MacAddr::from_slice(&[1, 2, 3]).is_none());
    }
}

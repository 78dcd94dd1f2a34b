//! Small helpers: RFC 3339 timestamps and random identifiers without extra crates.

use std::io::Read;
use std::time::SystemTime;

/// `2026-08-01T10:00:00Z` for now (the IPAM crate's formatter: one civil-date implementation
/// in the tree).
pub fn now_rfc3339() -> String {
    ipam::clock::rfc3339(SystemTime::now())
}

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random lowercase hex string of `2 * n` chars.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    random_bytes(n).map(|b| hex(&b))
}

/// A version-4 UUID string.
pub fn uuid() -> std::io::Result<String> {
    let mut b = random_bytes(16)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Percent-decoding of a query component (`+` is a space in form encoding).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hexval = |c: u8| (c as char).to_digit(16);
                match (hexval(b[i + 1]), hexval(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert!(now_rfc3339().ends_with('Z'), "{}", now_rfc3339());
        assert_eq!(percent_decode("a%3Db%2Cc+d%"), "a=b,c d%");
        assert_eq!(uuid().unwrap().len(), 36);
    }
}

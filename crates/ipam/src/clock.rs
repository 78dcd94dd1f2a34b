//! Time formatting in the two shapes Calico stores: RFC 3339 (`affinity_claim_time`,
//! `creationTimestamp`) and Go's `time.Time.String()` in UTC (the allocation `timestamp`
//! attribute, e.g. `2026-08-01 10:00:01.123456789 +0000 UTC`).
//!
//! Hand-written (civil-date arithmetic, ~60 lines) instead of a date crate: we need exactly these
//! two UTC formats and one lenient RFC 3339 parser, and every plugin binary links this crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

struct Parts {
    y: i64,
    mo: u32,
    d: u32,
    h: u64,
    mi: u64,
    s: u64,
    nanos: u32,
}

fn parts(t: SystemTime) -> Parts {
    // Times before 1970 do not occur here; clamp rather than panic.
    let dur = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = dur.as_secs();
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    Parts {
        y,
        mo,
        d,
        h: rem / 3600,
        mi: rem % 3600 / 60,
        s: rem % 60,
        nanos: dur.subsec_nanos(),
    }
}

/// `2026-08-01T10:00:00Z` (seconds precision, like a marshalled `metav1.Time`).
pub fn rfc3339(t: SystemTime) -> String {
    let p = parts(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        p.y, p.mo, p.d, p.h, p.mi, p.s
    )
}

/// Go `time.Now().UTC().String()`: `2026-08-01 10:00:01.123456789 +0000 UTC`
/// (fraction with trailing zeros trimmed, omitted when zero).
pub fn go_utc_string(t: SystemTime) -> String {
    let p = parts(t);
    let mut frac = String::new();
    if p.nanos != 0 {
        frac = format!(".{:09}", p.nanos);
        while frac.ends_with('0') {
            frac.pop();
        }
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac} +0000 UTC",
        p.y, p.mo, p.d, p.h, p.mi, p.s
    )
}

/// Parse RFC 3339 (`Z` or `±hh:mm` offset, optional fraction). `None` if malformed.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        let mut padded = digits.chars().take(9).collect::<String>();
        while padded.len() < 9 {
            padded.push('0');
        }
        nanos = padded.parse().ok()?;
    }
    let offset: i64 = match s.get(i..)? {
        "Z" | "z" => 0,
        off if off.len() == 6 && (off.starts_with('+') || off.starts_with('-')) => {
            let oh = num(i + 1..i + 3)? as i64;
            let om = num(i + 4..i + 6)? as i64;
            let v = oh * 3600 + om * 60;
            if off.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y as i64, mo, d);
    let secs = days * 86_400 + (h * 3600 + mi * 60 + sec) as i64 - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Nanoseconds since the epoch (initial block `sequenceNumber`, as Calico).
pub fn unix_nanos(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instant() {
        // 2026-08-01T10:00:01.1234567Z
        let t = UNIX_EPOCH + Duration::new(1_785_578_401, 123_456_700);
        assert_eq!(rfc3339(t), "2026-08-01T10:00:01Z");
        assert_eq!(go_utc_string(t), "2026-08-01 10:00:01.1234567 +0000 UTC");
        let whole = UNIX_EPOCH + Duration::from_secs(1_785_578_401);
        assert_eq!(go_utc_string(whole), "2026-08-01 10:00:01 +0000 UTC");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn parses_rfc3339_variants() {
        let t = UNIX_EPOCH + Duration::from_secs(1_785_578_401);
        assert_eq!(parse_rfc3339("2026-08-01T10:00:01Z"), Some(t));
        assert_eq!(parse_rfc3339("2026-08-01T12:00:01+02:00"), Some(t));
        assert_eq!(
            parse_rfc3339("2026-08-01T10:00:01.5Z"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z")
                .map(rfc3339)
                .as_deref(),
            Some("2024-02-29T00:00:00Z")
        );
        for bad in [
            "",
            "2026-08-01",
            "2026-13-01T00:00:00Z",
            "2026-08-01T10:00:01",
            "x026-08-01T10:00:01Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips_many_days() {
        for day in (0..40_000).step_by(37) {
            let t = UNIX_EPOCH + Duration::from_secs(day * 86_400 + 3_723);
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
    }
}

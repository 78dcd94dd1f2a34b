//! UTC timestamps without a date-time dependency (civil-from-days, Howard Hinnant's algorithm).

use std::time::{SystemTime, UNIX_EPOCH};

/// (year, month, day, hour, minute, second, millisecond) for seconds+millis since the epoch.
pub fn civil(secs: u64, millis: u32) -> (i64, u32, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        millis,
    )
}

fn now_parts() -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    civil(d.as_secs(), d.subsec_millis())
}

/// `2006-01-02 15:04:05.000` (the log line prefix).
pub fn now_utc() -> String {
    let (y, mo, d, h, mi, s, ms) = now_parts();
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03}")
}

/// `2006-01-02T15-04-05.000`, lumberjack's backup-name timestamp.
pub fn backup_stamp() -> String {
    let (y, mo, d, h, mi, s, ms) = now_parts();
    format!("{y:04}-{mo:02}-{d:02}T{h:02}-{mi:02}-{s:02}.{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil(0, 0), (1970, 1, 1, 0, 0, 0, 0));
        // 2000-02-29T12:34:56Z = 951827696
        assert_eq!(civil(951_827_696, 7), (2000, 2, 29, 12, 34, 56, 7));
        // 2026-11-23T00:00:00Z = 1795392000
        assert_eq!(civil(1_795_392_000, 0), (2026, 11, 23, 0, 0, 0, 0));
    }
}

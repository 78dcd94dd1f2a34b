//! tbf parameters computed exactly like upstream (which goes through float64, then truncates to
//! 32 bits), except that values which do not fit 32 bits saturate instead of wrapping.
//!
//! * rate_B = rate / 8, burst_B = burst / 8 (integer division);
//! * buffer = ticks(burst_B × 10^6 / rate_B µs), ticks per µs from `/proc/net/psched`;
//! * limit = rate_B × 25 ms + burst_B (bytes); no peak rate.

use crate::config::Limit;
use crate::error::BandwidthError;

/// Upstream's fixed tbf latency.
pub const LATENCY_MS: f64 = 25.0;
const TIME_UNITS_PER_SEC: f64 = 1_000_000.0;
use crate::error::PSCHED;

/// psched ticks per microsecond (15.625 on every current kernel: one tick = 64 ns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickFactor(pub f64);

impl TickFactor {
    /// Reads `/proc/net/psched`.
    pub fn from_system() -> Result<TickFactor, BandwidthError> {
        let text = std::fs::read_to_string(PSCHED).map_err(BandwidthError::ReadPsched)?;
        TickFactor::parse(&text)
    }

    /// Parses the four hex fields `t2us us2t clock_res hz`, with iproute2's and upstream's
    /// compatibility rule (a 1 GHz clock resolution means t2us = us2t).
    pub fn parse(text: &str) -> Result<TickFactor, BandwidthError> {
        let bad = || BandwidthError::BadPsched {
            content: text.to_string(),
        };
        let v: Vec<u64> = text
            .split_whitespace()
            .map(|f| u64::from_str_radix(f, 16).map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let [mut t2us, us2t, clock_res, ..] = v[..] else {
            return Err(bad());
        };
        if us2t == 0 || clock_res == 0 {
            return Err(bad());
        }
        if clock_res == 1_000_000_000 {
            t2us = us2t;
        }
        let clock_factor = clock_res as f64 / TIME_UNITS_PER_SEC;
        Ok(TickFactor(t2us as f64 / us2t as f64 * clock_factor))
    }
}

/// The result of the arithmetic: kernel parameters and which fields had to saturate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub tbf: netlink::Tbf,
    /// The burst lasts longer than 2^32 ticks (≈274.9 s) at the rate; buffer is `u32::MAX`.
    pub buffer_clamped: bool,
    /// rate × 25 ms + burst exceeds 4 GiB; limit is `u32::MAX`.
    pub limit_clamped: bool,
}

/// Float → u32 truncation; Rust's `as` saturates (and maps NaN to 0) where Go's wraps.
fn to_u32(x: f64) -> (u32, bool) {
    (x as u32, !(0.0..=u32::MAX as f64).contains(&x.trunc()))
}

/// Computes the tbf for one direction. `limit` comes validated ([`crate::config`]): rate ≥ 8,
/// 8 ≤ burst, burst / 8 < 2^32 − 1.
pub fn params(limit: Limit, tick: TickFactor) -> Params {
    let rate_b = limit.rate / 8;
    let burst_b = limit.burst / 8;
    // upstream: time2Tick(uint32(float64(burst) * TIME_UNITS_PER_SEC / float64(rate)))
    let (usecs, usecs_clamped) = to_u32(burst_b as f64 * TIME_UNITS_PER_SEC / rate_b as f64);
    let (buffer, ticks_clamped) = to_u32(f64::from(usecs) * tick.0);
    // upstream: uint32(float64(rate) * latency / TIME_UNITS_PER_SEC) + uint32(burst)
    let latency_us = TIME_UNITS_PER_SEC * (LATENCY_MS / 1000.0);
    let (queue, queue_clamped) = to_u32(rate_b as f64 * latency_us / TIME_UNITS_PER_SEC);
    let burst32 = u32::try_from(burst_b).unwrap_or(u32::MAX);
    let (limit_bytes, sum_overflow) = queue.overflowing_add(burst32);
    Params {
        tbf: netlink::Tbf {
            rate: rate_b,
            buffer: if usecs_clamped { u32::MAX } else { buffer },
            limit: if sum_overflow { u32::MAX } else { limit_bytes },
        },
        buffer_clamped: usecs_clamped || ticks_clamped,
        limit_clamped: queue_clamped || sum_overflow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODERN: &str = "000003e8 00000040 000f4240 3b9aca00\n";

    fn p(rate: u64, burst: u64) -> Params {
        params(Limit { rate, burst }, TickFactor::parse(MODERN).unwrap())
    }

    #[test]
    fn psched_parsing() {
        assert_eq!(TickFactor::parse(MODERN).unwrap(), TickFactor(15.625));
        // A 1 GHz clock resolution: t2us is replaced by us2t, then scaled by 1000.
        assert_eq!(
            TickFactor::parse("000003e8 00000040 3b9aca00 3b9aca00").unwrap(),
            TickFactor(1000.0)
        );
        for bad in ["", "1 2", "zz 1 1 1", "000003e8 00000000 000f4240 3b9aca00"] {
            assert!(TickFactor::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reference_examples() {
        // rate 8 Mbit/s, burst 80,000 bits: tc's `rate 8Mbit burst 10000b lat 25ms`.
        let x = p(8_000_000, 80_000);
        assert_eq!(
            x.tbf,
            netlink::Tbf {
                rate: 1_000_000,
                buffer: 156_250,
                limit: 35_000
            }
        );
        assert!(!x.buffer_clamped && !x.limit_clamped);
        // Upstream's unit tests: ingress 8000/80, egress 16/8.
        let i = p(8000, 80);
        assert_eq!((i.tbf.rate, i.tbf.limit, i.tbf.buffer), (1000, 35, 156_250));
        let e = p(16, 8);
        assert_eq!((e.tbf.rate, e.tbf.limit, e.tbf.buffer), (2, 1, 7_812_500));
    }

    #[test]
    fn integer_division_of_bits_like_upstream() {
        // 8_000_007 bits/s → 1_000_000 B/s; 80_007 bits → 10_000 B.
        assert_eq!(p(8_000_007, 80_007).tbf, p(8_000_000, 80_000).tbf);
    }

    #[test]
    fn containerd_default_burst_is_clamped_not_wrapped() {
        // 2^32-1 bits = 536,870,911 B. At 8 Mbit/s that is 536.87 s > 274.9 s: upstream wraps the
        // buffer to 4,093,640,688 ticks ("burst 261993004b lat 275s"); we saturate.
        let x = p(8_000_000, 4_294_967_295);
        assert!(x.buffer_clamped);
        assert_eq!(x.tbf.buffer, u32::MAX);
        assert_eq!(x.tbf.limit, 25_000 + 536_870_911);
        assert!(!x.limit_clamped);
        // Above ≈15.6 Mbit/s the same burst fits and equals upstream's value exactly.
        let y = p(20_000_000, 4_294_967_295);
        assert!(!y.buffer_clamped);
        assert_eq!(
            y.tbf.buffer,
            (536_870_911u64 * 1_000_000 / 2_500_000 * 15625 / 1000) as u32
        );
    }

    #[test]
    fn boundary_of_buffer_overflow() {
        // buffer = usecs × 15.625 fits while usecs ≤ 274,877,906 (2^32 / 15.625 = 274,877,906.9).
        // rate 1 B/s (8 bit/s), burst 274 B → 274 s → 4,281,250,000 ticks: fits.
        let x = p(8, 274 * 8);
        assert_eq!(x.tbf.buffer, 4_281_250_000);
        assert!(!x.buffer_clamped);
        // 275 s does not.
        let y = p(8, 275 * 8);
        assert_eq!(y.tbf.buffer, u32::MAX);
        assert!(y.buffer_clamped);
        // Inner µs overflow (burst/rate > 2^32 µs ≈ 71.6 min) clamps as well.
        let z = p(8, 34_359_738_359);
        assert!(z.buffer_clamped);
        assert_eq!(z.tbf.buffer, u32::MAX);
    }

    #[test]
    fn huge_rates_use_64_bits_and_clamp_limit() {
        // 100 Gbit/s: rate_B needs TCA_TBF_RATE64 (netlink::Tbf keeps u64).
        let x = p(100_000_000_000, 8_000_000);
        assert_eq!(x.tbf.rate, 12_500_000_000);
        assert_eq!(x.tbf.limit, 312_500_000 + 1_000_000);
        assert!(!x.limit_clamped);
        // rate_B × 25 ms alone beyond 4 GiB (≈1.4 Tbit/s): saturates instead of wrapping.
        let y = p(2_000_000_000_000, 8_000_000);
        assert_eq!(y.tbf.limit, u32::MAX);
        assert!(y.limit_clamped);
        // The sum overflowing: 30 Gbit/s × 25 ms = 93.75 MB, plus a 4 GB burst.
        let z = p(30_000_000_000, 34_359_738_359);
        assert_eq!(z.tbf.limit, u32::MAX);
        assert!(z.limit_clamped);
        assert!(!z.buffer_clamped);
    }
}

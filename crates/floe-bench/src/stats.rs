//! Pure statistics over latency samples: nearest-rank percentiles, rates, formatting.

use std::time::Duration;

use serde::Serialize;

pub use floe_testkit::percentile;

/// Latency distribution of one case, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Slowest sample.
    pub max_us: f64,
}

impl Latency {
    /// Summarize `samples` (sorted in place); `None` if there are none.
    pub fn from_samples(samples: &mut [Duration]) -> Option<Self> {
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let total: f64 = samples.iter().map(|d| us(*d)).sum();
        Some(Self {
            p50_us: us(percentile(samples, 0.5)?),
            p99_us: us(percentile(samples, 0.99)?),
            p999_us: us(percentile(samples, 0.999)?),
            mean_us: total / samples.len() as f64,
            max_us: us(*samples.last()?),
        })
    }
}

/// `a / b`, or `None` when `b` is zero or either is not finite.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// A duration given in microseconds, with a readable unit: `81.2 µs`, `1.60 ms`, `1.23 s`.
pub fn fmt_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// An integer with thousands separators: `12,345`.
pub fn fmt_int(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let n = v.round().abs() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 && n != 0 {
        out.insert(0, '-');
    }
    out
}

/// A byte count with a binary unit: `312 B`, `1.5 KiB`, `20.3 MiB`.
pub fn fmt_bytes(b: f64) -> String {
    if b.abs() < 1024.0 {
        format!("{b:.0} B")
    } else if b.abs() < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b.abs() < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn latency_summary_sorts_first() {
        let mut v = vec![us(30), us(10), us(20), us(40)];
        let l = Latency::from_samples(&mut v).expect("samples");
        assert_eq!(l.p50_us, 20.0);
        assert_eq!(l.p99_us, 40.0);
        assert_eq!(l.max_us, 40.0);
        assert_eq!(l.mean_us, 25.0);
        assert!(Latency::from_samples(&mut []).is_none());
    }

    #[test]
    fn ratios_and_formatting() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(fmt_int(1_234_567.4), "1,234,567");
        assert_eq!(fmt_int(999.0), "999");
        assert_eq!(fmt_int(-1234.0), "-1,234");
        assert_eq!(fmt_us(81.24), "81.2 µs");
        assert_eq!(fmt_us(1_600.0), "1.60 ms");
        assert_eq!(fmt_us(1_230_000.0), "1.23 s");
        assert_eq!(fmt_bytes(312.0), "312 B");
        assert_eq!(fmt_bytes(1536.0), "1.5 KiB");
    }
}

//! Percentiles of latency samples.

use std::time::Duration;

/// Nearest-rank percentile of **sorted** samples: the smallest sample such that at least a
/// fraction `p` of all samples are at or below it. `None` for no samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=1000).map(us).collect();
        assert_eq!(percentile(&v, 0.5), Some(us(500)));
        assert_eq!(percentile(&v, 0.99), Some(us(990)));
        assert_eq!(percentile(&v, 0.999), Some(us(999)));
        assert_eq!(percentile(&v, 1.0), Some(us(1000)));
        assert_eq!(percentile(&v, 0.0), Some(us(1)));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[us(7)], 0.999), Some(us(7)));
        // Ten samples: p99 and p999 are the slowest one.
        let ten: Vec<Duration> = (1..=10).map(us).collect();
        assert_eq!(percentile(&ten, 0.5), Some(us(5)));
        assert_eq!(percentile(&ten, 0.99), Some(us(10)));
    }
}

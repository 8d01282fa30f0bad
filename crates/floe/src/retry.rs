//! The one retry policy of the call path (client, runtime, proposer): wait, doubling from a
//! floor up to a ceiling, and never past the call's deadline. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// Exponential backoff bounded by a deadline.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Start at `min`, double up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min.min(max),
            max,
        }
    }

    /// How long to wait before the next try, at `now`, for a call due by `deadline`: the
    /// current step, cut at the deadline (zero once it passed). The step then doubles.
    pub fn next(&mut self, deadline: Instant, now: Instant) -> Duration {
        let wait = self.next.min(deadline.saturating_duration_since(now));
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_ceiling() {
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        let mut b = Backoff::new(5 * MS, 30 * MS);
        let waits: Vec<Duration> = (0..5).map(|_| b.next(far, now)).collect();
        assert_eq!(waits, vec![5 * MS, 10 * MS, 20 * MS, 30 * MS, 30 * MS]);
    }

    #[test]
    fn never_waits_past_the_deadline() {
        let now = Instant::now();
        let mut b = Backoff::new(50 * MS, 500 * MS);
        assert_eq!(b.next(now + 20 * MS, now), 20 * MS);
        assert_eq!(b.next(now, now), Duration::ZERO);
        assert_eq!(b.next(now, now + MS), Duration::ZERO);
    }
}

//! The caller's side of exactly-once: which request numbers of a session are still in play.
//!
//! A caller (the client, or a node calling its own actors) numbers its calls within a session
//! opened through the log. Every call it sends says how far the session is *acknowledged*: every
//! call numbered below that has finished for the caller and will never be sent again, so the
//! state machine may forget its outcome. [`SessionTracker`] decides that number. It is pure: time
//! is passed in.
//!
//! A call that ended with a definite answer is acknowledged at once. A call whose outcome is
//! unknown stays unacknowledged for [`SessionTracker::retry_window`], so that the application
//! can retry it with the same request id and learn what happened; after that window (or when
//! more than [`SessionTracker::max_span`] calls have been numbered since it) it is let go, and a
//! later retry gets [`crate::CallFailure::Expired`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use floe_proto::RequestId;

/// Default time an unknown outcome stays retrievable by a retry with the same request id.
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(300);

/// Default number of call numbers between the oldest unacknowledged call and the newest; kept
/// below the state machine's per-session outcome limit.
pub const DEFAULT_MAX_SPAN: u64 = 32_768;

/// The request numbers of one session in play: in flight, and ended with an unknown outcome.
#[derive(Debug, Clone)]
pub struct SessionTracker {
    session: u64,
    next: u64,
    in_flight: BTreeSet<u64>,
    /// Sequence number → when (ms, caller's clock) its call ended with an unknown outcome.
    unknown: BTreeMap<u64, u64>,
    retry_window_ms: u64,
    max_span: u64,
}

impl SessionTracker {
    /// A tracker for the newly opened `session`.
    pub fn new(session: u64, retry_window: Duration, max_span: u64) -> Self {
        Self {
            session,
            next: 1,
            in_flight: BTreeSet::new(),
            unknown: BTreeMap::new(),
            retry_window_ms: retry_window.as_millis().min(u64::MAX as u128) as u64,
            max_span: max_span.max(1),
        }
    }

    /// The session id.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// How long an unknown outcome stays retrievable.
    pub fn retry_window(&self) -> Duration {
        Duration::from_millis(self.retry_window_ms)
    }

    /// How many call numbers may separate the oldest unacknowledged call from the newest.
    pub fn max_span(&self) -> u64 {
        self.max_span
    }

    /// Number a new call; it is in flight until [`SessionTracker::finish`].
    pub fn begin(&mut self) -> RequestId {
        let seq = self.next;
        self.next += 1;
        self.in_flight.insert(seq);
        RequestId::new(self.session, seq)
    }

    /// A call of this session (begun here, or retried by the application with its id) is
    /// being sent again.
    pub fn resume(&mut self, req: RequestId) {
        if req.session == self.session && req.sub == 0 && req.seq < self.next {
            self.unknown.remove(&req.seq);
            self.in_flight.insert(req.seq);
        }
    }

    /// The call `req` ended: with a definite answer (`known`), or with its outcome unknown.
    pub fn finish(&mut self, req: RequestId, known: bool, now_ms: u64) {
        if req.session != self.session || req.sub != 0 {
            return;
        }
        self.in_flight.remove(&req.seq);
        if known {
            self.unknown.remove(&req.seq);
        } else {
            self.unknown.insert(req.seq, now_ms);
        }
    }

    /// Every call numbered below the result has finished and will not be sent again. Lets go of
    /// unknown outcomes older than the retry window or further back than the span allows.
    pub fn acked(&mut self, now_ms: u64) -> u64 {
        let window = self.retry_window_ms;
        self.unknown
            .retain(|_, ended| now_ms.saturating_sub(*ended) < window);
        let oldest_allowed = self.next.saturating_sub(self.max_span);
        while let Some((&seq, _)) = self.unknown.first_key_value() {
            if seq >= oldest_allowed {
                break;
            }
            self.unknown.remove(&seq);
        }
        let in_flight = self.in_flight.first().copied().unwrap_or(self.next);
        let unknown = self.unknown.keys().next().copied().unwrap_or(self.next);
        in_flight.min(unknown)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_oldest_call_still_in_play() {
        let mut t = SessionTracker::new(7, Duration::from_millis(100), 1000);
        let a = t.begin();
        let b = t.begin();
        let c = t.begin();
        assert_eq!((a.seq, b.seq, c.seq), (1, 2, 3));
        assert_eq!(t.acked(0), 1);
        t.finish(b, true, 0);
        assert_eq!(t.acked(0), 1, "call 1 is still in flight");
        t.finish(a, true, 0);
        assert_eq!(t.acked(0), 3);
        t.finish(c, true, 0);
        assert_eq!(t.acked(0), 4);
    }

    #[test]
    fn an_unknown_outcome_is_kept_for_the_retry_window() {
        let mut t = SessionTracker::new(7, Duration::from_millis(100), 1000);
        let a = t.begin();
        let b = t.begin();
        t.finish(a, false, 10);
        t.finish(b, true, 10);
        assert_eq!(t.acked(50), 1, "call 1 may be retried");
        // The application retries it: in flight again, then known.
        t.resume(a);
        assert_eq!(t.acked(500), 1, "in flight again");
        t.finish(a, true, 500);
        assert_eq!(t.acked(500), 3);
        let c = t.begin();
        t.finish(c, false, 600);
        assert_eq!(t.acked(699), 3);
        assert_eq!(t.acked(700), 4, "let go after the window");
    }

    #[test]
    fn unknown_outcomes_beyond_the_span_are_let_go() {
        let mut t = SessionTracker::new(1, Duration::from_secs(3600), 4);
        let first = t.begin();
        t.finish(first, false, 0);
        for _ in 0..3 {
            let r = t.begin();
            t.finish(r, true, 0);
        }
        assert_eq!(t.acked(0), 1);
        let r = t.begin();
        t.finish(r, true, 0);
        assert_eq!(t.acked(0), 6, "the span of 4 let call 1 go");
    }

    #[test]
    fn ids_of_other_sessions_and_nested_calls_are_ignored() {
        let mut t = SessionTracker::new(1, Duration::from_secs(1), 10);
        let a = t.begin();
        t.finish(RequestId::new(2, a.seq), true, 0);
        t.finish(
            RequestId {
                session: 1,
                seq: a.seq,
                sub: 9,
            },
            true,
            0,
        );
        assert_eq!(t.acked(0), 1);
    }
}

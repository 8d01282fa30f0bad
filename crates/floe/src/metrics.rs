//! The node's metrics, rendered in the Prometheus/OpenMetrics text format.

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::CallFailure;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Outcome {
    outcome: &'static str,
}

/// Counters and gauges of one node.
pub(crate) struct Metrics {
    registry: Registry,
    calls: Family<Outcome, Counter>,
    latency: Histogram,
    pub(crate) commits: Counter,
    pub(crate) fenced: Counter,
    pub(crate) activations: Gauge,
    pub(crate) placements: Gauge,
    pub(crate) raft_term: Gauge,
    pub(crate) raft_last_log: Gauge,
    pub(crate) raft_committed: Gauge,
    pub(crate) raft_applied: Gauge,
    pub(crate) raft_leader: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

const OUTCOMES: [&str; 12] = [
    "ok",
    "rejected",
    "panicked",
    "activation_failed",
    "call_cycle",
    "not_owner",
    "unavailable",
    "timeout",
    "expired",
    "too_large",
    "bad_request",
    "shutdown",
];

fn outcome(r: &Result<(), &CallFailure>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(CallFailure::Rejected { .. }) => "rejected",
        Err(CallFailure::Panicked(_)) => "panicked",
        Err(CallFailure::ActivationFailed(_)) => "activation_failed",
        Err(CallFailure::CallCycle(_)) => "call_cycle",
        Err(CallFailure::NotOwner(_)) => "not_owner",
        Err(CallFailure::Unavailable(_)) => "unavailable",
        Err(CallFailure::Timeout) => "timeout",
        Err(CallFailure::Expired) => "expired",
        Err(CallFailure::TooLarge(_)) => "too_large",
        Err(CallFailure::BadRequest(_)) => "bad_request",
        Err(CallFailure::Shutdown) => "shutdown",
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("floe");
        let calls = Family::<Outcome, Counter>::default();
        registry.register(
            "calls",
            "Calls handled by this node, by outcome",
            calls.clone(),
        );
        // 50 µs .. ~1.6 s
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.000_05, 2.0, 16,
        ));
        registry.register(
            "call_seconds",
            "Latency of calls handled by this node",
            latency.clone(),
        );
        let m = Self {
            calls,
            latency,
            commits: Counter::default(),
            fenced: Counter::default(),
            activations: Gauge::default(),
            placements: Gauge::default(),
            raft_term: Gauge::default(),
            raft_last_log: Gauge::default(),
            raft_committed: Gauge::default(),
            raft_applied: Gauge::default(),
            raft_leader: Gauge::default(),
            registry,
        };
        let mut r = m.registry;
        r.register(
            "commits",
            "State commits made by activations on this node",
            m.commits.clone(),
        );
        r.register(
            "fencing_rejections",
            "Writes or reads refused because the activation's epoch was no longer current",
            m.fenced.clone(),
        );
        r.register(
            "activations",
            "Live activations on this node",
            m.activations.clone(),
        );
        r.register(
            "placements",
            "Actors placed on this node in its current incarnation",
            m.placements.clone(),
        );
        r.register("raft_term", "Current Raft term", m.raft_term.clone());
        r.register(
            "raft_last_log_index",
            "Last Raft log index on this node",
            m.raft_last_log.clone(),
        );
        r.register(
            "raft_committed_index",
            "Committed Raft log index known to this node",
            m.raft_committed.clone(),
        );
        r.register(
            "raft_applied_index",
            "Last Raft log index applied on this node",
            m.raft_applied.clone(),
        );
        r.register(
            "raft_is_leader",
            "1 if this node is the Raft leader",
            m.raft_leader.clone(),
        );
        // Every outcome is exported from the start (at zero), so dashboards and alerts see the
        // series before the first call of each kind.
        for outcome in OUTCOMES {
            let _ = m.calls.get_or_create(&Outcome { outcome });
        }
        Self { registry: r, ..m }
    }

    pub(crate) fn call(&self, result: Result<(), &CallFailure>, seconds: f64) {
        self.calls
            .get_or_create(&Outcome {
                outcome: outcome(&result),
            })
            .inc();
        self.latency.observe(seconds);
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

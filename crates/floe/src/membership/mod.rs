//! Membership: joining a cluster, the membership changes a node serves ([`admin`]), the
//! leader's failure detector and self-fencing. The decisions are in [`detector`]; this module
//! drives them with Raft metrics, the directory and the proposer.

pub(crate) mod admin;
mod detector;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Weak;
use std::time::{Duration, Instant};

use floe_net::{RpcError, Target, Transport};
use floe_proto::{AddNode, ErrorKind, WireError};
use raft_store::types::openraft::ServerState;
use raft_store::types::{NodeId, WatchReceiver};
use raft_store::{Command, NodeDownResult};

use crate::proposer::BACKGROUND_DEADLINE;
use crate::runtime::Runtime;
use detector::{Detector, Observation};

/// Why joining a cluster failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinError {
    /// The cluster refused the request (for example a node id that was used before): fix it.
    #[error("refused: {0}")]
    Refused(String),
    /// No seed admitted the node before the deadline: check the seeds and retry.
    #[error("no answer before the deadline; last error: {0}")]
    NoAnswer(String),
}

/// Ask `seeds` (following leader hints) to add `me`; retries until `deadline`.
pub(crate) async fn join(
    transport: &Transport,
    seeds: &[SocketAddr],
    me: NodeId,
    addr: &str,
    voter: bool,
    deadline: Instant,
) -> Result<(), JoinError> {
    let mut last = String::from("no seed answered");
    let mut targets: Vec<Target> = seeds.iter().map(|s| Target::any_node(*s)).collect();
    while Instant::now() < deadline {
        for t in targets.clone() {
            let req = AddNode {
                node: me,
                addr: addr.to_string(),
                voter,
            };
            match transport.request(&t, req, Duration::from_secs(30)).await {
                Ok(_) => return Ok(()),
                Err(RpcError::Remote(WireError {
                    kind: ErrorKind::NotLeader { leader: Some(h) },
                    ..
                })) => {
                    if let Ok(a) = h.addr.parse() {
                        targets.insert(0, Target::node(h.node, a));
                    }
                }
                Err(RpcError::Remote(
                    e @ WireError {
                        kind: ErrorKind::BadRequest,
                        ..
                    },
                )) => {
                    return Err(JoinError::Refused(e.to_string()));
                }
                Err(e) => last = e.to_string(),
            }
        }
        targets.truncate(seeds.len() + 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(JoinError::NoAnswer(last))
}

/// The failure detector's driver: every `timeout / 8` (10–50 ms) it observes the Raft metrics
/// and, when [`Detector::wants_nodes`], the directory's node records, and proposes `NodeDown`
/// for what the detector declares.
pub(crate) async fn failure_detector(rt: Weak<Runtime>, timeout: Duration) {
    let period = (timeout / 8).clamp(Duration::from_millis(10), Duration::from_millis(50));
    let election_silence = rt.upgrade().map_or(Duration::ZERO, |rt| {
        let c = rt.raft.config();
        Duration::from_millis(
            c.election_timeout_min
                .saturating_add(c.election_timeout_max),
        )
    });
    let mut detector = Detector::new(timeout, election_silence);
    loop {
        tokio::time::sleep(period).await;
        let Some(rt) = rt.upgrade() else { return };
        if rt.is_shutting_down() {
            return;
        }
        let m = rt.raft.metrics().borrow_watched().clone();
        let leader = m.state == ServerState::Leader;
        let applied = m.last_applied.map(|l| l.index);
        let nodes = if detector.wants_nodes(leader, applied) {
            rt.view.nodes().await.ok()
        } else {
            None
        };
        let members: BTreeSet<NodeId> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let acks: BTreeMap<NodeId, Duration> = m
            .heartbeat
            .iter()
            .flat_map(|h| h.iter())
            .filter_map(|(id, at)| Some((*id, openraft_elapsed(at.as_ref()?))))
            .collect();
        let declared = detector.observe(Observation {
            now: Instant::now(),
            me: m.id,
            leader,
            current_leader: m.current_leader,
            term: m.current_term,
            applied,
            nodes,
            members,
            acks,
        });
        for d in declared {
            tracing::warn!(
                node = d.node,
                incarnation = d.incarnation,
                silent = ?d.silent,
                "declaring node down"
            );
            let cmd = Command::NodeDown {
                node: d.node,
                incarnation: d.incarnation,
            };
            if let Err(e) = rt
                .proposer
                .propose::<NodeDownResult>(cmd, Instant::now() + BACKGROUND_DEADLINE)
                .await
            {
                tracing::warn!(node = d.node, error = %e, "NodeDown not committed; will retry");
                detector.not_committed(&d);
            }
        }
    }
}

pub(crate) fn openraft_elapsed(
    at: &raft_store::types::openraft::metrics::SerdeInstant<
        raft_store::types::openraft::TokioInstant,
    >,
) -> Duration {
    use raft_store::types::openraft::Instant as _;
    (**at).elapsed()
}

/// Watches this node's own directory record: if it was declared down while it is alive, it
/// drops every activation and registers again with a new incarnation.
pub(crate) async fn self_fence(rt: Weak<Runtime>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(rt) = rt.upgrade() else { return };
        if rt.is_shutting_down() {
            return;
        }
        let inc = rt.incarnation();
        let Ok(rec) = rt.view.node(rt.node).await else {
            continue;
        };
        match fence_step(rec.as_ref(), inc) {
            FenceStep::Rejoin => {
                tracing::warn!(
                    node = rt.node,
                    incarnation = inc,
                    "declared down while alive: dropping activations and rejoining"
                );
                match rt.rejoin().await {
                    Ok(()) => {}
                    // Nothing written to this disk can be believed any more.
                    Err(e @ crate::runtime::RegisterError::Incarnation(_)) => {
                        rt.fatal(e.to_string()).await;
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "rejoin failed; will retry"),
                }
            }
            FenceStep::Register => {
                tracing::info!(
                    node = rt.node,
                    incarnation = inc,
                    "registration not in the directory yet: registering again"
                );
                if let Err(e) = rt.register().await {
                    tracing::warn!(error = %e, "registration failed; will retry");
                }
            }
            FenceStep::Nothing => {}
        }
    }
}

/// What self-fencing does after reading this node's own directory record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FenceStep {
    /// Declared down in the incarnation it runs: its placements are void. Drop every
    /// activation and register again with a new incarnation.
    Rejoin,
    /// A rejoin whose registration did not land (no leader, connection lost): the directory
    /// still has the older incarnation, down. Register again.
    Register,
    /// Alive in the directory (or not registered yet, or already superseded): nothing to do.
    Nothing,
}

/// Decide the self-fencing step from this node's record (`None`: not registered) and the
/// incarnation it runs.
fn fence_step(rec: Option<&raft_store::NodeRecord>, incarnation: u64) -> FenceStep {
    match rec {
        Some(r) if !r.alive && r.incarnation == incarnation => FenceStep::Rejoin,
        Some(r) if !r.alive && r.incarnation < incarnation => FenceStep::Register,
        _ => FenceStep::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(incarnation: u64, alive: bool) -> raft_store::NodeRecord {
        raft_store::NodeRecord {
            node: 1,
            incarnation,
            alive,
            addr: String::new(),
            actor_types: Vec::new(),
            placements: 0,
        }
    }

    #[test]
    fn a_node_declared_down_in_its_own_incarnation_rejoins() {
        assert_eq!(fence_step(Some(&rec(3, false)), 3), FenceStep::Rejoin);
    }

    #[test]
    fn a_rejoin_that_did_not_land_registers_again() {
        assert_eq!(fence_step(Some(&rec(3, false)), 4), FenceStep::Register);
    }

    #[test]
    fn an_alive_unknown_or_newer_record_leaves_the_node_alone() {
        assert_eq!(fence_step(Some(&rec(3, true)), 3), FenceStep::Nothing);
        assert_eq!(fence_step(None, 3), FenceStep::Nothing);
        // A newer incarnation than the one running: another process took over the id.
        assert_eq!(fence_step(Some(&rec(5, false)), 4), FenceStep::Nothing);
    }
}

//! The Raft client: group commit of proposals, the leader protocol (proposals and read points
//! that followers forward to the leader, both sides of it), and linearizable reads.
//!
//! Group commit: commands from many activations are proposed together as one `Batch` entry.
//!
//! Activations queue their command and wait; a single task takes everything queued (up to
//! `max_batch` commands and `max_batch_bytes` of payload) whenever one of `max_inflight`
//! proposal slots is free, so batches grow under load and a lone command goes out at once. A
//! command larger than `max_batch_bytes` goes alone; the runtime bounds single commands (state
//! and message size limits), so every entry stays small enough to replicate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_net::{RpcError, Transport};
use floe_proto::{
    Answer, ErrorKind, LeaderRequest, NodeHint, Propose, Proposed, ReadIndex, ReadPoint, Rpc,
    WireError,
};
use raft_store::types::openraft::ReadPolicy;
use raft_store::types::openraft::error::ForwardToLeader;
use raft_store::types::{NodeId, Raft, TypeConfig, WatchReceiver};
use raft_store::{Command, CommandOutput, CommandResult};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::CallFailure;

/// Why a proposal has no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// No leader took the command before the deadline (the leader, if one is known); the
    /// command was not appended.
    #[error("not appended before the deadline (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    /// Raft failed or is shutting down; the command may or may not be committed.
    #[error("proposal outcome unknown: {0}")]
    Unknown(String),
    /// The directory refused the command as malformed and did not apply it: do not retry it.
    #[error("command refused: {0}")]
    Invalid(String),
}

/// Who waits for a command's result, and until when.
type Waiter = (
    Instant,
    oneshot::Sender<Result<CommandResult, ProposeError>>,
);

/// How long a proposal made for no caller (membership, sessions, releases) may wait for a
/// leader.
pub(crate) const BACKGROUND_DEADLINE: Duration = Duration::from_secs(10);

/// Handle to the proposer task; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Proposer {
    tx: mpsc::Sender<(Command, Waiter)>,
}

impl Proposer {
    /// Start the proposer task. With a transport, proposals made while this node is not the
    /// leader are forwarded to the leader, and the result is returned once this node applied it.
    pub(crate) fn start(
        raft: Raft,
        forward: Option<Transport>,
        max_batch: usize,
        max_batch_bytes: usize,
        max_inflight: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 4);
        let limits = BatchLimits {
            commands: max_batch.max(1),
            bytes: max_batch_bytes.max(1),
        };
        tokio::spawn(run(raft, forward, rx, limits, max_inflight.max(1)));
        Self { tx }
    }

    /// Propose `cmd` and wait until it is committed and applied (on this node too), at most
    /// until `deadline`: the leader is looked for and the result awaited within it. `R` is the
    /// result type of `cmd`'s kind (`ActivateResult` for `Command::Activate`).
    pub(crate) async fn propose<R: CommandOutput>(
        &self,
        cmd: Command,
        deadline: Instant,
    ) -> Result<R, ProposeError> {
        typed(self.propose_any(cmd, deadline).await)
    }

    async fn propose_any(
        &self,
        cmd: Command,
        deadline: Instant,
    ) -> Result<CommandResult, ProposeError> {
        let (tx, rx) = oneshot::channel();
        match tokio::time::timeout_at(deadline.into(), self.tx.send((cmd, (deadline, tx)))).await {
            Err(_) => return Err(ProposeError::NotLeader(None)),
            Ok(Err(_)) => return Err(ProposeError::Unknown("proposer stopped".into())),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Err(_) => Err(ProposeError::Unknown(
                "no outcome before the deadline".into(),
            )),
            Ok(Err(_)) => Err(ProposeError::Unknown("proposer dropped the command".into())),
            Ok(Ok(r)) => r,
        }
    }
}

/// The result of one command as the type its kind gives. A result of another kind means the
/// entry applied as something else than the caller knows, so its outcome is unknown.
fn typed<R: CommandOutput>(result: Result<CommandResult, ProposeError>) -> Result<R, ProposeError> {
    match result? {
        CommandResult::Invalid(why) => Err(ProposeError::Invalid(why)),
        other => R::take(other).map_err(|other| {
            ProposeError::Unknown(format!(
                "the directory answered {other:?}, which is not a result of this command"
            ))
        }),
    }
}

/// How much one batch may hold.
#[derive(Debug, Clone, Copy)]
struct BatchLimits {
    commands: usize,
    bytes: usize,
}

/// A batch, and the command that starts the next one.
type Filled<T> = (Vec<(Command, T)>, Option<(Command, T)>);

/// Take queued commands into a batch after `first` while the limits allow; returns the batch
/// and the first command that did not fit (it starts the next batch).
fn fill<T>(
    first: (Command, T),
    limits: BatchLimits,
    mut next: impl FnMut() -> Option<(Command, T)>,
) -> Filled<T> {
    let mut bytes = first.0.payload_bytes();
    let mut batch = vec![first];
    while batch.len() < limits.commands {
        let Some(p) = next() else { break };
        let b = p.0.payload_bytes();
        if bytes + b > limits.bytes {
            return (batch, Some(p));
        }
        bytes += b;
        batch.push(p);
    }
    (batch, None)
}

async fn run(
    raft: Raft,
    forward: Option<Transport>,
    mut rx: mpsc::Receiver<(Command, Waiter)>,
    limits: BatchLimits,
    max_inflight: usize,
) {
    let slots = Arc::new(Semaphore::new(max_inflight));
    let mut held: Option<(Command, Waiter)> = None;
    loop {
        let first = match held.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // While we waited for a slot, more commands queued: take what fits.
        let (batch, rest) = fill(first, limits, || rx.try_recv().ok());
        held = rest;
        let raft = raft.clone();
        let forward = forward.clone();
        tokio::spawn(async move {
            let _slot = slot;
            propose_batch(&raft, forward.as_ref(), batch).await;
        });
    }
}

type WriteError = raft_store::types::openraft::error::RaftError<
    raft_store::types::TypeConfig,
    raft_store::types::openraft::error::ClientWriteError<raft_store::types::TypeConfig>,
>;

/// How often the leader is looked for again while there is none.
const NO_LEADER_PAUSE: Duration = Duration::from_millis(20);

/// Propose one command (possibly a `Batch`) locally if this node leads, else at the leader,
/// looking for a leader until `deadline`.
async fn submit(
    raft: &Raft,
    forward: Option<&Transport>,
    cmd: Command,
    deadline: Instant,
) -> Result<CommandResult, ProposeError> {
    loop {
        let (me, mut leader) = {
            let m = raft.metrics().borrow_watched().clone();
            (m.id, m.current_leader)
        };
        let Some(transport) = forward else {
            return raft
                .client_write(cmd)
                .await
                .map(|r| r.data)
                .map_err(|e| error_of(&e));
        };
        if leader == Some(me) {
            match raft.client_write(cmd.clone()).await {
                Ok(r) => return Ok(r.data),
                Err(e) => match e.forward_to_leader() {
                    // Not appended: safe to send to the new leader.
                    Some(f) => leader = f.leader_id,
                    None => return Err(error_of(&e)),
                },
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ProposeError::NotLeader(leader));
        }
        let target = leader
            .filter(|l| *l != me)
            .and_then(|l| crate::link::target(raft, l));
        let Some(target) = target else {
            tokio::time::sleep(NO_LEADER_PAUSE.min(remaining)).await;
            continue;
        };
        match transport
            .request(&target, Propose(cmd.clone()), remaining)
            .await
        {
            Ok(Proposed { result, index }) => {
                // Reads on this node must see what it proposed.
                raft.wait(Some(deadline.saturating_duration_since(Instant::now())))
                    .applied_index_at_least(Some(index), "forwarded proposal applied")
                    .await
                    .map_err(|e| {
                        ProposeError::Unknown(format!("applying forwarded proposal: {e}"))
                    })?;
                return Ok(result);
            }
            Err(RpcError::Remote(WireError {
                kind: ErrorKind::NotLeader { .. },
                ..
            }))
            | Err(RpcError::Unreachable(_))
            | Err(RpcError::Refused(_)) => {
                // Not appended anywhere: retry once a leader is known.
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(NO_LEADER_PAUSE.min(left)).await;
            }
            Err(e) => return Err(ProposeError::Unknown(format!("forwarded proposal: {e}"))),
        }
    }
}

/// Serve the leader protocol: a proposal or a read point asked by another node.
pub(crate) async fn serve(raft: &Raft, req: LeaderRequest) -> Answer {
    match req {
        LeaderRequest::Propose(p) => {
            let reply = match raft.client_write(p.0).await {
                Ok(resp) => {
                    // The proposer waits until it applied this entry itself: tell the followers
                    // the new commit index now rather than at the next heartbeat.
                    let _ = raft.trigger().heartbeat().await;
                    Ok(Proposed {
                        result: resp.data,
                        index: resp.log_id.index,
                    })
                }
                Err(e) => Err(match e.forward_to_leader() {
                    Some(f) => not_leader(f),
                    None => WireError::new(ErrorKind::Unavailable, e.to_string()),
                }),
            };
            Answer::of::<Propose>(reply)
        }
        LeaderRequest::ReadIndex(q) => {
            let reply = match raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
                Ok(lin) => {
                    // Likewise, the reader waits until it applied up to the read index.
                    let _ = raft.trigger().heartbeat().await;
                    Ok(ReadPoint {
                        index: lin.read_log_id().index(),
                    })
                }
                Err(e) => Err(match e.forward_to_leader() {
                    Some(f) => not_leader(f),
                    None => WireError::new(ErrorKind::Unavailable, e.to_string()),
                }),
            };
            q.answer(reply)
        }
    }
}

fn not_leader(f: &ForwardToLeader<TypeConfig>) -> WireError {
    let leader = match (f.leader_id, &f.leader_node) {
        (Some(node), Some(info)) => Some(NodeHint {
            node,
            addr: info.addr.clone(),
        }),
        _ => None,
    };
    WireError::new(ErrorKind::NotLeader { leader }, "not the leader")
}

/// Wait until this node has applied everything committed before the call: on the leader,
/// openraft's read index; on a follower, the leader's read point (asked with at most `timeout`)
/// and then the local apply up to it. Without a reachable quorum it fails.
pub(crate) async fn linearize(
    raft: &Raft,
    forward: Option<&Transport>,
    timeout: Duration,
) -> Result<(), CallFailure> {
    let (me, leader) = {
        let m = raft.metrics().borrow_watched().clone();
        (m.id, m.current_leader)
    };
    let unavailable =
        |e: &dyn std::fmt::Display| CallFailure::Unavailable(format!("no linearizable read: {e}"));
    match (forward, leader) {
        (None, _) => {}
        (Some(_), Some(l)) if l == me => {}
        (Some(transport), Some(l)) => {
            let target = crate::link::target(raft, l)
                .ok_or_else(|| CallFailure::Unavailable(format!("leader {l} has no address")))?;
            let ReadPoint { index } = transport
                .request(&target, ReadIndex, timeout)
                .await
                .map_err(|e| unavailable(&e))?;
            return raft
                .wait(Some(timeout))
                .applied_index_at_least(Some(index), "read index applied")
                .await
                .map(|_| ())
                .map_err(|e| unavailable(&e));
        }
        (Some(_), None) => return Err(CallFailure::Unavailable("no leader".into())),
    }
    raft.ensure_linearizable(ReadPolicy::ReadIndex)
        .await
        .map(|_| ())
        .map_err(|e| unavailable(&e))
}

fn error_of(e: &WriteError) -> ProposeError {
    match e.forward_to_leader() {
        Some(f) => ProposeError::NotLeader(f.leader_id),
        None => ProposeError::Unknown(e.to_string()),
    }
}

async fn propose_batch(
    raft: &Raft,
    forward: Option<&Transport>,
    mut batch: Vec<(Command, Waiter)>,
) {
    if batch.len() == 1 {
        if let Some((cmd, (deadline, reply))) = batch.pop() {
            let _ = reply.send(submit(raft, forward, cmd, deadline).await);
        }
        return;
    }
    let (cmds, waiters): (Vec<Command>, Vec<Waiter>) = batch.into_iter().unzip();
    // The batch looks for a leader as long as its most patient member waits; the others stop
    // waiting at their own deadlines.
    let deadline = waiters
        .iter()
        .map(|(d, _)| *d)
        .max()
        .unwrap_or_else(|| Instant::now() + BACKGROUND_DEADLINE);
    let replies: Vec<_> = waiters.into_iter().map(|(_, r)| r).collect();
    let n = cmds.len();
    match typed::<Vec<CommandResult>>(submit(raft, forward, Command::Batch(cmds), deadline).await) {
        Ok(results) if results.len() == n => {
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(r));
            }
        }
        Ok(results) => {
            let e = ProposeError::Unknown(format!(
                "a batch of {n} commands gave {} results",
                results.len()
            ));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_store::{ActivateResult, ActorId, CommitResult, Outcome, ReleaseResult};

    #[test]
    fn a_result_of_another_kind_is_an_unknown_outcome_and_invalid_is_not_applied() {
        let released = Ok(CommandResult::Release(ReleaseResult::Released));
        assert_eq!(
            typed::<ReleaseResult>(released.clone()),
            Ok(ReleaseResult::Released)
        );
        assert!(matches!(
            typed::<CommitResult>(released),
            Err(ProposeError::Unknown(_))
        ));
        assert_eq!(
            typed::<ActivateResult>(Ok(CommandResult::Invalid("nested".into()))),
            Err(ProposeError::Invalid("nested".into()))
        );
        assert_eq!(
            typed::<CommitResult>(Err(ProposeError::NotLeader(Some(2)))),
            Err(ProposeError::NotLeader(Some(2)))
        );
    }

    fn commit(bytes: usize) -> (Command, ()) {
        let cmd = Command::Commit {
            actor: ActorId::new("T", "k"),
            epoch: 1,
            state: Some(vec![0; bytes]),
            base: None,
            request: None,
            acked: 0,
            outcome: Outcome::Reply(vec![]),
        };
        (cmd, ())
    }

    #[test]
    fn batches_are_bounded_by_bytes_and_count() {
        let limits = BatchLimits {
            commands: 10,
            bytes: 1000,
        };
        let mut queue: std::collections::VecDeque<_> =
            [300, 300, 300, 300, 5].map(commit).into_iter().collect();
        let first = queue.pop_front().expect("first");
        let (batch, rest) = fill(first, limits, || queue.pop_front());
        assert_eq!(
            batch.len(),
            2,
            "a third 300-byte state would pass 1,000 bytes"
        );
        let rest = rest.expect("the third starts the next batch");
        assert_eq!(rest.0.payload_bytes(), batch[0].0.payload_bytes());
        // A command above the byte limit goes alone.
        let (batch, rest) = fill(commit(5000), limits, || Some(commit(1)));
        assert_eq!(batch.len(), 1);
        assert!(rest.is_some());
        // The count limit holds too.
        let limits = BatchLimits {
            commands: 3,
            bytes: usize::MAX,
        };
        let (batch, rest) = fill(commit(1), limits, || Some(commit(1)));
        assert_eq!(batch.len(), 3);
        assert!(rest.is_none());
    }
}

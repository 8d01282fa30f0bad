//! Group commit: commands from many activations are proposed together as one `Batch` entry.
//!
//! Activations queue their command and wait; a single task takes everything queued (up to
//! `max_batch`) whenever one of `max_inflight` proposal slots is free, so batches grow under
//! load and a lone command goes out at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_net::{RpcError, Transport};
use floe_proto::{ErrorKind, Reply, Request, WireError};
use raft_store::types::{NodeId, Raft, WatchReceiver};
use raft_store::{Command, CommandResult};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Why a proposal has no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader; the command was not appended.
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    /// Raft failed or is shutting down; the command may or may not be committed.
    #[error("proposal outcome unknown: {0}")]
    Unknown(String),
}

type Waiter = oneshot::Sender<Result<CommandResult, ProposeError>>;

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
        max_inflight: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 4);
        tokio::spawn(run(
            raft,
            forward,
            rx,
            max_batch.max(1),
            max_inflight.max(1),
        ));
        Self { tx }
    }

    /// Propose `cmd` and wait until it is committed and applied (on this node too).
    pub(crate) async fn propose(&self, cmd: Command) -> Result<CommandResult, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((cmd, tx))
            .await
            .map_err(|_| ProposeError::Unknown("proposer stopped".into()))?;
        rx.await
            .map_err(|_| ProposeError::Unknown("proposer dropped the command".into()))?
    }
}

async fn run(
    raft: Raft,
    forward: Option<Transport>,
    mut rx: mpsc::Receiver<(Command, Waiter)>,
    max_batch: usize,
    max_inflight: usize,
) {
    let slots = Arc::new(Semaphore::new(max_inflight));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // While we waited for a slot, more commands queued: take them all.
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
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

/// How long a proposal may wait for a leader.
const PROPOSE_DEADLINE: Duration = Duration::from_secs(10);

/// Propose one command (possibly a `Batch`) locally if this node leads, else at the leader.
async fn submit(
    raft: &Raft,
    forward: Option<&Transport>,
    cmd: Command,
) -> Result<CommandResult, ProposeError> {
    let deadline = Instant::now() + PROPOSE_DEADLINE;
    let mut cmd = Some(cmd);
    loop {
        let (me, mut leader) = {
            let m = raft.metrics().borrow_watched().clone();
            (m.id, m.current_leader)
        };
        let Some(c) = cmd.take() else {
            return Err(ProposeError::Unknown("command consumed".into()));
        };
        let Some(transport) = forward else {
            return raft
                .client_write(c)
                .await
                .map(|r| r.data)
                .map_err(|e| error_of(&e));
        };
        if leader == Some(me) {
            match raft.client_write(c.clone()).await {
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
            .and_then(|l| crate::cluster::target(raft, l));
        let Some(target) = target else {
            cmd = Some(c);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        match transport
            .request(&target, Request::Propose(c.clone()), remaining)
            .await
        {
            Ok(Reply::Proposed { result, index }) => {
                // Reads on this node must see what it proposed.
                raft.wait(Some(deadline.saturating_duration_since(Instant::now())))
                    .applied_index_at_least(Some(index), "forwarded proposal applied")
                    .await
                    .map_err(|e| {
                        ProposeError::Unknown(format!("applying forwarded proposal: {e}"))
                    })?;
                return Ok(result);
            }
            Ok(other) => return Err(ProposeError::Unknown(format!("unexpected reply {other:?}"))),
            Err(RpcError::Remote(WireError {
                kind: ErrorKind::NotLeader { .. },
                ..
            }))
            | Err(RpcError::Unreachable(_))
            | Err(RpcError::Refused(_)) => {
                // Not appended anywhere: retry once a leader is known.
                cmd = Some(c);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(ProposeError::Unknown(format!("forwarded proposal: {e}"))),
        }
    }
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
        if let Some((cmd, reply)) = batch.pop() {
            let _ = reply.send(submit(raft, forward, cmd).await);
        }
        return;
    }
    let (cmds, replies): (Vec<Command>, Vec<Waiter>) = batch.into_iter().unzip();
    let n = cmds.len();
    match submit(raft, forward, Command::Batch(cmds)).await {
        Ok(CommandResult::Batch(results)) if results.len() == n => {
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(r));
            }
        }
        Ok(other) => {
            let e = ProposeError::Unknown(format!("batch of {n} answered with {other:?}"));
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

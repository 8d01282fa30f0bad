//! Group commit: commands from many activations are proposed together as one `Batch` entry.
//!
//! Activations queue their command and wait; a single task takes everything queued (up to
//! `max_batch`) whenever one of `max_inflight` proposal slots is free, so batches grow under
//! load and a lone command goes out at once.

use std::sync::Arc;

use raft_store::types::{NodeId, Raft};
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

type Reply = oneshot::Sender<Result<CommandResult, ProposeError>>;

/// Handle to the proposer task; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Proposer {
    tx: mpsc::Sender<(Command, Reply)>,
}

impl Proposer {
    pub(crate) fn start(raft: Raft, max_batch: usize, max_inflight: usize) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 4);
        tokio::spawn(run(raft, rx, max_batch.max(1), max_inflight.max(1)));
        Self { tx }
    }

    /// Propose `cmd` and wait until it is committed and applied on the leader.
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
    mut rx: mpsc::Receiver<(Command, Reply)>,
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
        tokio::spawn(async move {
            let _slot = slot;
            propose_batch(&raft, batch).await;
        });
    }
}

type WriteError = raft_store::types::openraft::error::RaftError<
    raft_store::types::TypeConfig,
    raft_store::types::openraft::error::ClientWriteError<raft_store::types::TypeConfig>,
>;

fn error_of(e: &WriteError) -> ProposeError {
    match e.forward_to_leader() {
        Some(f) => ProposeError::NotLeader(f.leader_id),
        None => ProposeError::Unknown(e.to_string()),
    }
}

async fn propose_batch(raft: &Raft, mut batch: Vec<(Command, Reply)>) {
    if batch.len() == 1 {
        if let Some((cmd, reply)) = batch.pop() {
            let r = raft
                .client_write(cmd)
                .await
                .map(|resp| resp.data)
                .map_err(|e| error_of(&e));
            let _ = reply.send(r);
        }
        return;
    }
    let (cmds, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    let n = cmds.len();
    match raft.client_write(Command::Batch(cmds)).await {
        Ok(resp) => match resp.data {
            CommandResult::Batch(results) if results.len() == n => {
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            other => {
                let e = ProposeError::Unknown(format!("batch of {n} answered with {other:?}"));
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        },
        Err(e) => {
            let e = error_of(&e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

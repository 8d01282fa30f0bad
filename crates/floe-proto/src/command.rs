//! The commands the replicated state machine applies, and their results.
//!
//! These are the data (`D`) and response (`R`) types of Floe's Raft log, and the identities that
//! calls and the directory share (actors, nodes, request ids). Their semantics live in the
//! store crate's directory module, as pure code over a table abstraction; here they are plain
//! data, so that the wire and the client need no storage code.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifier of a Floe node. Never reused within a cluster.
pub type NodeId = u64;

/// An actor's address: its type name and its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId {
    /// The stable type name of the actor (for example `"bank.Account"`).
    pub kind: String,
    /// The key of this instance within its type.
    pub key: String,
}

impl ActorId {
    /// The actor `key` of type `kind`.
    pub fn new(kind: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            key: key.into(),
        }
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.key)
    }
}

/// Identifies one call across retries.
///
/// `session` is a client session opened through the log ([`Command::OpenSession`]); `seq` numbers
/// the session's calls; `sub` is 0 for a call the session's owner made itself and names a call
/// made on its behalf otherwise (a nested call of the handler that runs request `seq`, derived
/// the same way on every node that runs it). Outcomes are remembered per `(session, seq, sub)`
/// until the session acknowledges `seq` or expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// The session the call belongs to.
    pub session: u64,
    /// Sequence number of the call within its session.
    pub seq: u64,
    /// 0 for the session's own call; a derived id for a call made on its behalf.
    pub sub: u64,
}

impl RequestId {
    /// The session's own call number `seq`.
    pub fn new(session: u64, seq: u64) -> Self {
        Self {
            session,
            seq,
            sub: 0,
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.session, self.seq)?;
        if self.sub != 0 {
            write!(f, ":{:x}", self.sub)?;
        }
        Ok(())
    }
}

/// What a call answered: recorded with its request id so that a retry gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The handler's serialized reply.
    Reply(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The handler's serialized error (the state was not changed).
    Rejected {
        /// The serialized error.
        #[serde(with = "serde_bytes")]
        error: Vec<u8>,
        /// Its display text.
        display: String,
    },
}

/// A fenced ownership record: the actor is activated on `node` (in its `incarnation`) under
/// `epoch`. Epochs of one actor only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The owning node.
    pub node: NodeId,
    /// The owner's incarnation when it was placed; a restart invalidates the placement.
    pub incarnation: u64,
    /// The activation epoch every state write must carry.
    pub epoch: u64,
}

/// What the directory knows about a node that registered with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id.
    pub node: NodeId,
    /// Incremented by the node on every restart.
    pub incarnation: u64,
    /// False once the node was declared down in this incarnation.
    pub alive: bool,
    /// The node's QUIC address.
    pub addr: String,
    /// Actor types this node can host (placement candidates).
    pub actor_types: Vec<String>,
    /// Valid placements on this node in its current incarnation (for least-loaded placement).
    pub placements: u64,
}

/// The durable state of one actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorState {
    /// Incremented by every committed write; 0 means never written.
    pub version: u64,
    /// The actor's serialized state.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

/// A command of the replicated state machine. Its result is a [`CommandResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A node (re)joins with an incarnation; placements made under older incarnations die.
    RegisterNode {
        /// The node.
        node: NodeId,
        /// Its incarnation, greater than any it registered before.
        incarnation: u64,
        /// Its QUIC address.
        addr: String,
        /// Actor types it hosts.
        actor_types: Vec<String>,
    },
    /// The leader's failure detector declares `node` in `incarnation` down.
    NodeDown {
        /// The node.
        node: NodeId,
        /// The incarnation that was observed to fail.
        incarnation: u64,
    },
    /// Place `actor`, preferably on `preferred`; the current live owner wins if there is one.
    Activate {
        /// The actor to place.
        actor: ActorId,
        /// The node that should own it if it has no live owner.
        preferred: NodeId,
    },
    /// Write an actor's new state under its activation epoch, and record the outcome of the
    /// request it answers.
    Commit {
        /// The actor.
        actor: ActorId,
        /// The epoch the writer was activated under.
        epoch: u64,
        /// The full new state, or `None` to record `outcome` only (a retried call whose answer
        /// changed nothing must still be fixed in the log: its first attempt may be in flight).
        #[serde(with = "serde_bytes")]
        state: Option<Vec<u8>>,
        /// The version of the state the writer computed from: the write is refused with
        /// [`CommitResult::Conflict`] unless the actor is still at this version. `None` skips the
        /// check. Two writers of one epoch (an activation dropped while its commit was in flight,
        /// and its successor) can then never both apply.
        base: Option<u64>,
        /// The call this write answers, for exactly-once retries.
        request: Option<RequestId>,
        /// Every call of `request`'s session numbered below this has finished for its client and
        /// will not be retried: their outcomes can be forgotten. 0 says nothing.
        acked: u64,
        /// The answer to remember for `request`, returned to a retry.
        outcome: Outcome,
    },
    /// Open a client session; its id is the result.
    OpenSession {
        /// Who opened it (the authenticated caller); only it may use the session.
        owner: String,
    },
    /// The leader's clock: advance the state machine's time to `now_ms` (it never goes back) and
    /// expire every session idle for longer than `idle_ms`, forgetting its outcomes.
    ExpireSessions {
        /// Leader wall-clock time, in milliseconds since the Unix epoch.
        now_ms: u64,
        /// Idle time after which a session expires.
        idle_ms: u64,
    },
    /// Give up ownership of an actor (its record, and its epoch, stay).
    Release {
        /// The actor.
        actor: ActorId,
        /// The epoch of the activation being released.
        epoch: u64,
    },
    /// Several commands in one log entry (group commit); one result per command.
    Batch(Vec<Command>),
}

impl Outcome {
    /// Bytes of the serialized reply or error it holds.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Outcome::Reply(r) => r.len(),
            Outcome::Rejected { error, display } => error.len() + display.len(),
        }
    }
}

impl Command {
    /// An upper estimate of the command's encoded size: its variable-length fields plus a fixed
    /// allowance per command for the rest. Batches and replication payloads are bounded by it.
    pub fn payload_bytes(&self) -> usize {
        const FIXED: usize = 64;
        let id = |a: &ActorId| a.kind.len() + a.key.len();
        FIXED
            + match self {
                Command::RegisterNode {
                    addr, actor_types, ..
                } => addr.len() + actor_types.iter().map(|t| t.len() + 8).sum::<usize>(),
                Command::NodeDown { .. } | Command::ExpireSessions { .. } => 0,
                Command::Activate { actor, .. } | Command::Release { actor, .. } => id(actor),
                Command::Commit {
                    actor,
                    state,
                    outcome,
                    ..
                } => id(actor) + state.as_ref().map_or(0, Vec::len) + outcome.payload_bytes(),
                Command::OpenSession { owner } => owner.len(),
                Command::Batch(cmds) => cmds.iter().map(Command::payload_bytes).sum(),
            }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::RegisterNode {
                node, incarnation, ..
            } => write!(f, "RegisterNode({node}, inc {incarnation})"),
            Command::NodeDown { node, incarnation } => {
                write!(f, "NodeDown({node}, inc {incarnation})")
            }
            Command::Activate { actor, preferred } => write!(f, "Activate({actor} -> {preferred})"),
            Command::Commit {
                actor,
                epoch,
                request,
                state,
                ..
            } => {
                match state {
                    Some(s) => write!(f, "Commit({actor}, epoch {epoch}, {} bytes", s.len())?,
                    None => write!(f, "Commit({actor}, epoch {epoch}, outcome only")?,
                }
                if let Some(r) = request {
                    write!(f, ", req {r}")?;
                }
                f.write_str(")")
            }
            Command::Release { actor, epoch } => write!(f, "Release({actor}, epoch {epoch})"),
            Command::OpenSession { owner } => write!(f, "OpenSession({owner})"),
            Command::ExpireSessions { now_ms, idle_ms } => {
                write!(f, "ExpireSessions(now {now_ms} ms, idle {idle_ms} ms)")
            }
            Command::Batch(cmds) => write!(f, "Batch({} commands)", cmds.len()),
        }
    }
}

/// Result of [`Command::RegisterNode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterResult {
    /// The node is registered and alive in this incarnation.
    Registered,
    /// A newer incarnation (or this one, already declared down) is known: restart with a higher one.
    StaleIncarnation {
        /// The incarnation the directory knows.
        current: u64,
    },
}

/// Result of [`Command::NodeDown`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeDownResult {
    /// The node's incarnation is now down; its placements are invalid.
    MarkedDown,
    /// Nothing changed: unknown node, already down, or another incarnation.
    Ignored,
}

/// Result of [`Command::Activate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivateResult {
    /// The actor's owner. `fresh` is true if this command created the placement.
    Placed {
        /// The owner and epoch.
        placement: Placement,
        /// Whether this command made the placement (with a new epoch).
        fresh: bool,
    },
    /// The preferred node is not registered or not alive: choose another node.
    NodeUnavailable {
        /// The node that cannot take the actor.
        node: NodeId,
    },
}

/// Result of [`Command::Commit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitResult {
    /// The state was written; the actor is now at `version`.
    Committed {
        /// The new version.
        version: u64,
    },
    /// The actor is no longer at the writer's base version (another write of the same epoch
    /// applied first). Nothing was written; reload and run the call again.
    Conflict {
        /// The actor's current version.
        version: u64,
    },
    /// The request's session expired (or was never opened), or its client acknowledged the
    /// request already: it may have been applied before and its outcome is forgotten. Nothing
    /// was written; the outcome is unknown.
    Expired,
    /// The session holds the maximum number of unacknowledged outcomes: nothing was written;
    /// back off until earlier calls are acknowledged.
    SessionFull,
    /// This request id was already applied: here is its original outcome. Nothing was written.
    Duplicate {
        /// The version the actor was at after the original write.
        version: u64,
        /// The answer recorded with the original write.
        outcome: Outcome,
    },
    /// The writer's epoch is not current (or its node is down): the writer must deactivate.
    StaleEpoch {
        /// The current valid owner, if any, to re-route to.
        current: Option<Placement>,
    },
}

/// Result of [`Command::OpenSession`]: the new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSession {
    /// The session id (never reused).
    pub session: u64,
}

/// Result of [`Command::ExpireSessions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsExpired {
    /// How many sessions expired.
    pub count: u64,
}

/// Result of [`Command::Release`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseResult {
    /// The actor has no owner now.
    Released,
    /// The epoch was not current; nothing changed.
    StaleEpoch,
}

/// The result of applying one log entry (or one command of a batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// A blank or membership entry: nothing to report.
    Empty,
    /// See [`RegisterResult`].
    Register(RegisterResult),
    /// See [`NodeDownResult`].
    NodeDown(NodeDownResult),
    /// See [`ActivateResult`].
    Activate(ActivateResult),
    /// See [`CommitResult`].
    Commit(CommitResult),
    /// See [`ReleaseResult`].
    Release(ReleaseResult),
    /// See [`NewSession`].
    NewSession(NewSession),
    /// See [`SessionsExpired`].
    SessionsExpired(SessionsExpired),
    /// One result per command of a [`Command::Batch`], in order.
    Batch(Vec<CommandResult>),
    /// The command is malformed (for example a nested batch) and was not applied.
    Invalid(String),
}

/// The result type of one kind of command, taken out of the [`CommandResult`] its entry gave.
///
/// A proposer names the type it expects (`ActivateResult` for [`Command::Activate`]) and gets
/// either that or the whole [`CommandResult`] back, so the one place that can meet a result of
/// another kind is the generic conversion, not every caller.
pub trait CommandOutput: Sized {
    /// `Ok` with the result if `result` is of this kind; otherwise `result` itself.
    ///
    /// # Errors
    /// The result unchanged when it is of another kind.
    fn take(result: CommandResult) -> Result<Self, CommandResult>;
}

macro_rules! command_output {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(
            impl CommandOutput for $ty {
                fn take(result: CommandResult) -> Result<Self, CommandResult> {
                    match result {
                        CommandResult::$variant(r) => Ok(r),
                        other => Err(other),
                    }
                }
            }
        )*
    };
}

command_output!(
    Register(RegisterResult),
    NodeDown(NodeDownResult),
    Activate(ActivateResult),
    Commit(CommitResult),
    Release(ReleaseResult),
    NewSession(NewSession),
    SessionsExpired(SessionsExpired),
    Batch(Vec<CommandResult>),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_comes_out_as_its_own_kind_only() {
        let opened = CommandResult::NewSession(NewSession { session: 7 });
        assert_eq!(
            NewSession::take(opened.clone()),
            Ok(NewSession { session: 7 })
        );
        assert_eq!(SessionsExpired::take(opened.clone()), Err(opened));
        let released = CommandResult::Release(ReleaseResult::Released);
        assert_eq!(ReleaseResult::take(released), Ok(ReleaseResult::Released));
        let invalid = CommandResult::Invalid("nested batch".into());
        assert_eq!(CommitResult::take(invalid.clone()), Err(invalid));
    }
}

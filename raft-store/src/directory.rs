//! The semantics of the directory's commands, as pure code.
//!
//! [`apply_command`] reads and writes through the [`Tables`] trait only. The sled state machine
//! implements `Tables` over an in-memory overlay persisted with a redo record; [`MemTables`]
//! implements it over `BTreeMap`s for unit tests. No IO, no clock, no randomness: the same
//! commands give the same results.
//!
//! # Exactly-once: client sessions
//! Every request id names a session opened through the log ([`Command::OpenSession`]; ids are
//! handed out in order and never reused). A commit records the request's outcome; a retry of the
//! same id gets that outcome back ([`CommitResult::Duplicate`]) instead of applying again. An
//! outcome is kept until one of two things forgets it, both decided in the log:
//! - the client acknowledges it: each commit carries `acked`, below which every call of the
//!   session has finished for its client and will not be retried;
//! - the session expires: the leader's clock reaches the state machine through
//!   [`Command::ExpireSessions`], and a session without a commit for `idle_ms` is dropped with
//!   its outcomes.
//!
//! A request whose outcome may have been forgotten (its session is gone, or it is below the
//! session's floor) is refused with [`CommitResult::Expired`]: outcome unknown, never applied a
//! second time. Nothing is forgotten by count: a session that holds
//! [`Limits::max_session_outcomes`] unacknowledged outcomes gets [`CommitResult::SessionFull`]
//! (back off) instead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{
    ActivateResult, ActorId, ActorState, Command, CommandResult, CommitResult, NewSession,
    NodeDownResult, NodeRecord, Outcome, Placement, RegisterResult, ReleaseResult, RequestId,
    SessionsExpired,
};
use crate::types::NodeId;

/// Default bound on the unacknowledged outcomes one session keeps.
pub const DEFAULT_MAX_SESSION_OUTCOMES: u64 = 65_536;

/// Default bound on the sessions open at once.
pub const DEFAULT_MAX_SESSIONS: u64 = 1_000_000;

/// Bounds the state machine enforces. Every voter must use the same values: they decide what a
/// command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Outcomes one session may hold unacknowledged; a commit beyond it is refused with
    /// [`CommitResult::SessionFull`] (never silently forgotten).
    pub max_session_outcomes: u64,
    /// Sessions open at once; an [`Command::OpenSession`] beyond it is refused.
    pub max_sessions: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_session_outcomes: DEFAULT_MAX_SESSION_OUTCOMES,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// The placement record of an actor: its owner if any, and the last epoch it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRecord {
    /// The owner, or `None` after a release.
    pub owner: Option<Owner>,
    /// The last epoch assigned; the next activation gets a greater one.
    pub epoch: u64,
}

/// The owner part of a [`PlacementRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The owning node.
    pub node: NodeId,
    /// Its incarnation at placement time.
    pub incarnation: u64,
}

/// An actor's stored state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoredActor {
    /// Incremented by every committed write.
    pub version: u64,
    /// The serialized state.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

impl StoredActor {
    /// The public view of the state.
    pub fn view(&self) -> ActorState {
        ActorState {
            version: self.version,
            state: self.state.clone(),
        }
    }
}

/// The remembered outcome of a request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOutcome {
    /// The actor the request was for.
    pub actor: ActorId,
    /// The actor's version after the request.
    pub version: u64,
    /// The answer sent for it.
    pub outcome: Outcome,
}

/// One open client session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Who opened it.
    pub owner: String,
    /// Every call numbered below this was acknowledged by the client: a request below it is
    /// refused with [`CommitResult::Expired`].
    pub floor: u64,
    /// State-machine time of the session's last commit (or its opening).
    pub last_active_ms: u64,
    /// Outcomes the session holds.
    pub outcomes: u64,
}

/// The state machine's clock and session counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionClock {
    /// The latest leader time seen, in milliseconds since the Unix epoch; never goes back.
    pub now_ms: u64,
    /// The id the next session gets; every id below it was handed out once.
    pub next_session: u64,
    /// Sessions open now.
    pub open: u64,
}

/// The reads of the directory's tables: what a read-only view (and the decisions that only
/// read) needs.
pub trait ReadTables {
    /// Storage or decoding failure; aborts the whole entry.
    type Error;
    /// The node record of `node`.
    fn node(&self, node: NodeId) -> Result<Option<NodeRecord>, Self::Error>;
    /// The placement record of `actor`.
    fn placement(&self, actor: &ActorId) -> Result<Option<PlacementRecord>, Self::Error>;
    /// The stored state of `actor`.
    fn actor(&self, actor: &ActorId) -> Result<Option<StoredActor>, Self::Error>;
    /// The remembered outcome of `req`.
    fn outcome(&self, req: RequestId) -> Result<Option<RequestOutcome>, Self::Error>;
    /// The ids of the outcomes `session` holds for calls numbered below `below`, in order;
    /// `u64::MAX` means all of them.
    fn outcomes_below(&self, session: u64, below: u64) -> Result<Vec<RequestId>, Self::Error>;
    /// The record of session `id`.
    fn session(&self, id: u64) -> Result<Option<SessionRecord>, Self::Error>;
    /// Every session whose last activity is before `before_ms`.
    fn idle_sessions(&self, before_ms: u64) -> Result<Vec<u64>, Self::Error>;
    /// The clock and session counter.
    fn clock(&self) -> Result<SessionClock, Self::Error>;
}

/// Storage the command logic runs against: the reads and the writes. All writes of one command
/// (or one log entry) must be applied atomically by the implementation.
pub trait Tables: ReadTables {
    /// Store a node record.
    fn put_node(&mut self, rec: &NodeRecord) -> Result<(), Self::Error>;
    /// Store a placement record.
    fn put_placement(&mut self, actor: &ActorId, rec: &PlacementRecord) -> Result<(), Self::Error>;
    /// Store an actor's state.
    fn put_actor(&mut self, actor: &ActorId, rec: &StoredActor) -> Result<(), Self::Error>;
    /// Remember an outcome.
    fn put_outcome(&mut self, req: RequestId, outcome: &RequestOutcome) -> Result<(), Self::Error>;
    /// Forget an outcome.
    fn remove_outcome(&mut self, req: RequestId) -> Result<(), Self::Error>;
    /// Store a session record.
    fn put_session(&mut self, id: u64, rec: &SessionRecord) -> Result<(), Self::Error>;
    /// Delete a session record.
    fn remove_session(&mut self, id: u64) -> Result<(), Self::Error>;
    /// Store the clock and session counter.
    fn put_clock(&mut self, clock: &SessionClock) -> Result<(), Self::Error>;
}

/// The owner of a placement record if it is still valid: its node is registered, alive, and in
/// the incarnation the placement was made for.
pub fn live_owner<T: ReadTables>(
    tables: &T,
    rec: &PlacementRecord,
) -> Result<Option<Placement>, T::Error> {
    let Some(owner) = rec.owner else {
        return Ok(None);
    };
    let valid = match tables.node(owner.node)? {
        Some(n) => n.alive && n.incarnation == owner.incarnation,
        None => false,
    };
    Ok(valid.then_some(Placement {
        node: owner.node,
        incarnation: owner.incarnation,
        epoch: rec.epoch,
    }))
}

/// Where a request id stands, as the state machine sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStatus {
    /// Applied: its recorded outcome.
    Done(RequestOutcome),
    /// Not applied (yet): it may still be.
    Open,
    /// Its session expired or acknowledged it: whether it applied cannot be told.
    Forgotten,
}

/// The status of `req` (see [`RequestStatus`]).
pub fn request_status<T: ReadTables>(
    tables: &T,
    req: RequestId,
) -> Result<RequestStatus, T::Error> {
    if let Some(o) = tables.outcome(req)? {
        return Ok(RequestStatus::Done(o));
    }
    Ok(match tables.session(req.session)? {
        Some(s) if req.seq >= s.floor => RequestStatus::Open,
        _ => RequestStatus::Forgotten,
    })
}

/// Apply one command under `limits`.
pub fn apply_command<T: Tables>(
    tables: &mut T,
    cmd: &Command,
    limits: &Limits,
) -> Result<CommandResult, T::Error> {
    match cmd {
        Command::Batch(cmds) => {
            let mut out = Vec::with_capacity(cmds.len());
            for c in cmds {
                if matches!(c, Command::Batch(_)) {
                    out.push(CommandResult::Invalid("nested batch".into()));
                } else {
                    out.push(apply_command(tables, c, limits)?);
                }
            }
            Ok(CommandResult::Batch(out))
        }
        Command::RegisterNode {
            node,
            incarnation,
            addr,
            actor_types,
        } => register(tables, *node, *incarnation, addr, actor_types).map(CommandResult::Register),
        Command::NodeDown { node, incarnation } => {
            node_down(tables, *node, *incarnation).map(CommandResult::NodeDown)
        }
        Command::Activate { actor, preferred } => {
            activate(tables, actor, *preferred).map(CommandResult::Activate)
        }
        Command::Commit {
            actor,
            epoch,
            state,
            base,
            request,
            acked,
            outcome,
        } => commit(
            tables,
            actor,
            *epoch,
            state.as_deref(),
            *base,
            *request,
            *acked,
            outcome,
            limits,
        ),
        Command::Release { actor, epoch } => {
            release(tables, actor, *epoch).map(CommandResult::Release)
        }
        Command::OpenSession { owner } => open_session(tables, owner, limits),
        Command::ExpireSessions { now_ms, idle_ms } => {
            expire_sessions(tables, *now_ms, *idle_ms).map(CommandResult::SessionsExpired)
        }
    }
}

fn register<T: Tables>(
    tables: &mut T,
    node: NodeId,
    incarnation: u64,
    addr: &str,
    actor_types: &[String],
) -> Result<RegisterResult, T::Error> {
    if let Some(cur) = tables.node(node)? {
        // A down incarnation may not come back: its old placements would revive.
        let stale = cur.incarnation > incarnation || (cur.incarnation == incarnation && !cur.alive);
        if stale {
            return Ok(RegisterResult::StaleIncarnation {
                current: cur.incarnation,
            });
        }
    }
    // Same incarnation re-registering keeps its count; a new one starts with no placements.
    let placements = match tables.node(node)? {
        Some(cur) if cur.incarnation == incarnation => cur.placements,
        _ => 0,
    };
    tables.put_node(&NodeRecord {
        node,
        incarnation,
        alive: true,
        addr: addr.to_owned(),
        actor_types: actor_types.to_vec(),
        placements,
    })?;
    Ok(RegisterResult::Registered)
}

fn node_down<T: Tables>(
    tables: &mut T,
    node: NodeId,
    incarnation: u64,
) -> Result<NodeDownResult, T::Error> {
    match tables.node(node)? {
        Some(mut rec) if rec.alive && rec.incarnation == incarnation => {
            rec.alive = false;
            tables.put_node(&rec)?;
            Ok(NodeDownResult::MarkedDown)
        }
        _ => Ok(NodeDownResult::Ignored),
    }
}

fn activate<T: Tables>(
    tables: &mut T,
    actor: &ActorId,
    preferred: NodeId,
) -> Result<ActivateResult, T::Error> {
    let rec = tables.placement(actor)?;
    if let Some(rec) = &rec
        && let Some(placement) = live_owner(tables, rec)?
    {
        return Ok(ActivateResult::Placed {
            placement,
            fresh: false,
        });
    }
    let Some(mut node) = tables.node(preferred)?.filter(|n| n.alive) else {
        return Ok(ActivateResult::NodeUnavailable { node: preferred });
    };
    if let Some(old) = rec.and_then(|r| r.owner) {
        uncount(tables, old)?;
    }
    node.placements += 1;
    tables.put_node(&node)?;
    let epoch = rec.map_or(0, |r| r.epoch) + 1;
    let owner = Owner {
        node: node.node,
        incarnation: node.incarnation,
    };
    tables.put_placement(
        actor,
        &PlacementRecord {
            owner: Some(owner),
            epoch,
        },
    )?;
    Ok(ActivateResult::Placed {
        placement: Placement {
            node: owner.node,
            incarnation: owner.incarnation,
            epoch,
        },
        fresh: true,
    })
}

#[allow(clippy::too_many_arguments)]
fn commit<T: Tables>(
    tables: &mut T,
    actor: &ActorId,
    epoch: u64,
    state: Option<&[u8]>,
    base: Option<u64>,
    request: Option<RequestId>,
    acked: u64,
    outcome: &Outcome,
    limits: &Limits,
) -> Result<CommandResult, T::Error> {
    // A request that was applied before keeps its original outcome, whoever owns the actor now.
    let mut session = None;
    if let Some(req) = request {
        let status = request_status(tables, req)?;
        // Self-test build: a remembered outcome is ignored, so a retry applies again.
        #[cfg(feature = "unsafe-self-test-duplicates")]
        let status = match status {
            RequestStatus::Done(_) => RequestStatus::Open,
            other => other,
        };
        match status {
            RequestStatus::Done(o) if &o.actor == actor => {
                return Ok(CommandResult::Commit(CommitResult::Duplicate {
                    version: o.version,
                    outcome: o.outcome,
                }));
            }
            RequestStatus::Done(o) => {
                return Ok(CommandResult::Invalid(format!(
                    "request {req} was used for {} before, not {actor}",
                    o.actor
                )));
            }
            // Delayed past its session or acknowledged: it may have applied already.
            RequestStatus::Forgotten => return Ok(CommandResult::Commit(CommitResult::Expired)),
            RequestStatus::Open => session = tables.session(req.session)?,
        }
    }
    let current = match tables.placement(actor)? {
        Some(rec) => live_owner(tables, &rec)?,
        None => None,
    };
    if current.map(|p| p.epoch) != Some(epoch) {
        return Ok(CommandResult::Commit(CommitResult::StaleEpoch { current }));
    }
    let mut rec = tables.actor(actor)?.unwrap_or_default();
    if let Some(b) = base
        && b != rec.version
    {
        return Ok(CommandResult::Commit(CommitResult::Conflict {
            version: rec.version,
        }));
    }
    if let (Some(req), Some(mut s)) = (request, session) {
        forget_acknowledged(tables, req.session, &mut s, acked)?;
        if s.outcomes >= limits.max_session_outcomes {
            tables.put_session(req.session, &s)?;
            return Ok(CommandResult::Commit(CommitResult::SessionFull));
        }
        s.outcomes += 1;
        s.last_active_ms = tables.clock()?.now_ms;
        tables.put_session(req.session, &s)?;
    }
    if let Some(state) = state {
        rec.version += 1;
        rec.state = state.to_vec();
        tables.put_actor(actor, &rec)?;
    }
    if let Some(req) = request {
        tables.put_outcome(
            req,
            &RequestOutcome {
                actor: actor.clone(),
                version: rec.version,
                outcome: outcome.clone(),
            },
        )?;
    }
    Ok(CommandResult::Commit(CommitResult::Committed {
        version: rec.version,
    }))
}

/// Raise the session's floor to `acked` and forget the outcomes below it.
fn forget_acknowledged<T: Tables>(
    tables: &mut T,
    id: u64,
    s: &mut SessionRecord,
    acked: u64,
) -> Result<(), T::Error> {
    if acked <= s.floor {
        return Ok(());
    }
    for req in tables.outcomes_below(id, acked)? {
        tables.remove_outcome(req)?;
        s.outcomes = s.outcomes.saturating_sub(1);
    }
    s.floor = acked;
    Ok(())
}

fn open_session<T: Tables>(
    tables: &mut T,
    owner: &str,
    limits: &Limits,
) -> Result<CommandResult, T::Error> {
    let mut clock = tables.clock()?;
    if clock.open >= limits.max_sessions {
        return Ok(CommandResult::Invalid(format!(
            "{} sessions are open, the most allowed; try again after idle ones expire",
            clock.open
        )));
    }
    // Ids start at 1: 0 is never a session.
    let id = clock.next_session.max(1);
    clock.next_session = id + 1;
    clock.open += 1;
    tables.put_clock(&clock)?;
    tables.put_session(
        id,
        &SessionRecord {
            owner: owner.to_owned(),
            floor: 0,
            last_active_ms: clock.now_ms,
            outcomes: 0,
        },
    )?;
    Ok(CommandResult::NewSession(NewSession { session: id }))
}

fn expire_sessions<T: Tables>(
    tables: &mut T,
    now_ms: u64,
    idle_ms: u64,
) -> Result<SessionsExpired, T::Error> {
    let mut clock = tables.clock()?;
    let first_tick = clock.now_ms == 0 && now_ms > 0;
    clock.now_ms = clock.now_ms.max(now_ms);
    if first_tick {
        // Sessions opened or used before the clock was first set carry no time (0): they were
        // active no earlier than now, not at the epoch.
        for id in tables.idle_sessions(1)? {
            if let Some(mut s) = tables.session(id)? {
                s.last_active_ms = clock.now_ms;
                tables.put_session(id, &s)?;
            }
        }
    }
    let idle = tables.idle_sessions(clock.now_ms.saturating_sub(idle_ms))?;
    for id in &idle {
        for req in tables.outcomes_below(*id, u64::MAX)? {
            tables.remove_outcome(req)?;
        }
        tables.remove_session(*id)?;
        clock.open = clock.open.saturating_sub(1);
    }
    tables.put_clock(&clock)?;
    Ok(SessionsExpired {
        count: idle.len() as u64,
    })
}

fn release<T: Tables>(
    tables: &mut T,
    actor: &ActorId,
    epoch: u64,
) -> Result<ReleaseResult, T::Error> {
    match tables.placement(actor)? {
        Some(mut rec) if rec.owner.is_some() && rec.epoch == epoch => {
            if let Some(old) = rec.owner.take() {
                uncount(tables, old)?;
            }
            tables.put_placement(actor, &rec)?;
            Ok(ReleaseResult::Released)
        }
        _ => Ok(ReleaseResult::StaleEpoch),
    }
}

/// A placement of `owner` ends: count it off its node if it was made in the current incarnation.
fn uncount<T: Tables>(tables: &mut T, owner: Owner) -> Result<(), T::Error> {
    if let Some(mut n) = tables.node(owner.node)?
        && n.incarnation == owner.incarnation
    {
        n.placements = n.placements.saturating_sub(1);
        tables.put_node(&n)?;
    }
    Ok(())
}

/// In-memory [`Tables`] over `BTreeMap`s, for tests and tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemTables {
    /// Node records.
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// Placement records.
    pub placements: BTreeMap<ActorId, PlacementRecord>,
    /// Actor states.
    pub actors: BTreeMap<ActorId, StoredActor>,
    /// Request outcomes.
    pub outcomes: BTreeMap<RequestId, RequestOutcome>,
    /// Sessions.
    pub sessions: BTreeMap<u64, SessionRecord>,
    /// The clock.
    pub clock: SessionClock,
}

impl ReadTables for MemTables {
    type Error = std::convert::Infallible;

    fn node(&self, node: NodeId) -> Result<Option<NodeRecord>, Self::Error> {
        Ok(self.nodes.get(&node).cloned())
    }
    fn placement(&self, actor: &ActorId) -> Result<Option<PlacementRecord>, Self::Error> {
        Ok(self.placements.get(actor).copied())
    }
    fn actor(&self, actor: &ActorId) -> Result<Option<StoredActor>, Self::Error> {
        Ok(self.actors.get(actor).cloned())
    }
    fn outcome(&self, req: RequestId) -> Result<Option<RequestOutcome>, Self::Error> {
        Ok(self.outcomes.get(&req).cloned())
    }
    fn outcomes_below(&self, session: u64, below: u64) -> Result<Vec<RequestId>, Self::Error> {
        let end = match below {
            u64::MAX => std::ops::Bound::Included(RequestId {
                session,
                seq: u64::MAX,
                sub: u64::MAX,
            }),
            b => std::ops::Bound::Excluded(RequestId::new(session, b)),
        };
        Ok(self
            .outcomes
            .range((std::ops::Bound::Included(RequestId::new(session, 0)), end))
            .map(|(k, _)| *k)
            .collect())
    }
    fn session(&self, id: u64) -> Result<Option<SessionRecord>, Self::Error> {
        Ok(self.sessions.get(&id).cloned())
    }
    fn idle_sessions(&self, before_ms: u64) -> Result<Vec<u64>, Self::Error> {
        Ok(self
            .sessions
            .iter()
            .filter(|(_, s)| s.last_active_ms < before_ms)
            .map(|(id, _)| *id)
            .collect())
    }
    fn clock(&self) -> Result<SessionClock, Self::Error> {
        Ok(self.clock)
    }
}

impl Tables for MemTables {
    fn put_node(&mut self, rec: &NodeRecord) -> Result<(), Self::Error> {
        self.nodes.insert(rec.node, rec.clone());
        Ok(())
    }
    fn put_placement(&mut self, actor: &ActorId, rec: &PlacementRecord) -> Result<(), Self::Error> {
        self.placements.insert(actor.clone(), *rec);
        Ok(())
    }
    fn put_actor(&mut self, actor: &ActorId, rec: &StoredActor) -> Result<(), Self::Error> {
        self.actors.insert(actor.clone(), rec.clone());
        Ok(())
    }
    fn put_outcome(&mut self, req: RequestId, outcome: &RequestOutcome) -> Result<(), Self::Error> {
        self.outcomes.insert(req, outcome.clone());
        Ok(())
    }
    fn remove_outcome(&mut self, req: RequestId) -> Result<(), Self::Error> {
        self.outcomes.remove(&req);
        Ok(())
    }
    fn put_session(&mut self, id: u64, rec: &SessionRecord) -> Result<(), Self::Error> {
        self.sessions.insert(id, rec.clone());
        Ok(())
    }
    fn remove_session(&mut self, id: u64) -> Result<(), Self::Error> {
        self.sessions.remove(&id);
        Ok(())
    }
    fn put_clock(&mut self, clock: &SessionClock) -> Result<(), Self::Error> {
        self.clock = *clock;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut MemTables, cmd: Command) -> CommandResult {
        match apply_command(t, &cmd, &Limits::default()) {
            Ok(r) => r,
            Err(e) => match e {},
        }
    }

    fn open(t: &mut MemTables) -> u64 {
        match run(
            t,
            Command::OpenSession {
                owner: "test".into(),
            },
        ) {
            CommandResult::NewSession(NewSession { session }) => session,
            other => panic!("open session: {other:?}"),
        }
    }

    fn reg(node: NodeId, incarnation: u64) -> Command {
        Command::RegisterNode {
            node,
            incarnation,
            addr: format!("127.0.0.1:{}", 7000 + node),
            actor_types: vec!["A".into()],
        }
    }

    fn act(key: &str, preferred: NodeId) -> Command {
        Command::Activate {
            actor: ActorId::new("A", key),
            preferred,
        }
    }

    fn commit(key: &str, epoch: u64, state: &[u8], req: Option<(u64, u64)>) -> Command {
        Command::Commit {
            actor: ActorId::new("A", key),
            epoch,
            state: Some(state.to_vec()),
            base: None,
            request: req.map(|(session, seq)| RequestId::new(session, seq)),
            acked: 0,
            outcome: Outcome::Reply(format!("reply-{state:?}").into_bytes()),
        }
    }

    fn acking(cmd: Command, ack: u64) -> Command {
        match cmd {
            Command::Commit {
                actor,
                epoch,
                state,
                base,
                request,
                outcome,
                ..
            } => Command::Commit {
                actor,
                epoch,
                state,
                base,
                request,
                acked: ack,
                outcome,
            },
            other => other,
        }
    }

    fn placed(node: NodeId, incarnation: u64, epoch: u64, fresh: bool) -> CommandResult {
        CommandResult::Activate(ActivateResult::Placed {
            placement: Placement {
                node,
                incarnation,
                epoch,
            },
            fresh,
        })
    }

    #[test]
    fn first_activation_wins_and_epochs_grow() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, reg(2, 1));
        assert_eq!(run(&mut t, act("x", 1)), placed(1, 1, 1, true));
        // A racing activation preferring node 2 gets the existing owner.
        assert_eq!(run(&mut t, act("x", 2)), placed(1, 1, 1, false));
        // Node 1 dies: the next activation moves the actor with a higher epoch.
        assert_eq!(
            run(
                &mut t,
                Command::NodeDown {
                    node: 1,
                    incarnation: 1
                }
            ),
            CommandResult::NodeDown(NodeDownResult::MarkedDown)
        );
        assert_eq!(run(&mut t, act("x", 2)), placed(2, 1, 2, true));
    }

    #[test]
    fn activation_on_unknown_or_dead_node_is_refused() {
        let mut t = MemTables::default();
        assert_eq!(
            run(&mut t, act("x", 9)),
            CommandResult::Activate(ActivateResult::NodeUnavailable { node: 9 })
        );
        run(&mut t, reg(1, 1));
        run(
            &mut t,
            Command::NodeDown {
                node: 1,
                incarnation: 1,
            },
        );
        assert_eq!(
            run(&mut t, act("x", 1)),
            CommandResult::Activate(ActivateResult::NodeUnavailable { node: 1 })
        );
    }

    #[test]
    fn commit_is_fenced_by_epoch_and_liveness() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, reg(2, 1));
        run(&mut t, act("x", 1));
        assert_eq!(
            run(&mut t, commit("x", 1, b"a", None)),
            CommandResult::Commit(CommitResult::Committed { version: 1 })
        );
        assert_eq!(
            run(&mut t, commit("x", 2, b"b", None)),
            CommandResult::Commit(CommitResult::StaleEpoch {
                current: Some(Placement {
                    node: 1,
                    incarnation: 1,
                    epoch: 1
                })
            })
        );
        // Declared down: even the current epoch can no longer write.
        run(
            &mut t,
            Command::NodeDown {
                node: 1,
                incarnation: 1,
            },
        );
        assert_eq!(
            run(&mut t, commit("x", 1, b"c", None)),
            CommandResult::Commit(CommitResult::StaleEpoch { current: None })
        );
        run(&mut t, act("x", 2));
        assert_eq!(
            run(&mut t, commit("x", 1, b"d", None)),
            CommandResult::Commit(CommitResult::StaleEpoch {
                current: Some(Placement {
                    node: 2,
                    incarnation: 1,
                    epoch: 2
                })
            })
        );
        assert_eq!(
            run(&mut t, commit("x", 2, b"e", None)),
            CommandResult::Commit(CommitResult::Committed { version: 2 })
        );
        assert_eq!(t.actors[&ActorId::new("A", "x")].state, b"e");
    }

    #[test]
    fn restarted_node_invalidates_its_old_placements() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, act("x", 1));
        run(&mut t, reg(1, 2));
        assert_eq!(
            run(&mut t, commit("x", 1, b"a", None)),
            CommandResult::Commit(CommitResult::StaleEpoch { current: None })
        );
        assert_eq!(run(&mut t, act("x", 1)), placed(1, 2, 2, true));
    }

    #[test]
    fn stale_incarnations_cannot_register_or_be_declared_down() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 5));
        assert_eq!(
            run(&mut t, reg(1, 4)),
            CommandResult::Register(RegisterResult::StaleIncarnation { current: 5 })
        );
        assert_eq!(
            run(
                &mut t,
                Command::NodeDown {
                    node: 1,
                    incarnation: 4
                }
            ),
            CommandResult::NodeDown(NodeDownResult::Ignored)
        );
        run(
            &mut t,
            Command::NodeDown {
                node: 1,
                incarnation: 5,
            },
        );
        assert_eq!(
            run(&mut t, reg(1, 5)),
            CommandResult::Register(RegisterResult::StaleIncarnation { current: 5 })
        );
        assert_eq!(
            run(&mut t, reg(1, 6)),
            CommandResult::Register(RegisterResult::Registered)
        );
    }

    #[test]
    fn duplicate_request_returns_original_outcome_until_acknowledged() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, act("x", 1));
        let s = open(&mut t);
        let first = run(&mut t, commit("x", 1, b"a", Some((s, 1))));
        assert_eq!(
            first,
            CommandResult::Commit(CommitResult::Committed { version: 1 })
        );
        let dup = CommandResult::Commit(CommitResult::Duplicate {
            version: 1,
            outcome: Outcome::Reply(format!("reply-{:?}", b"a").into_bytes()),
        });
        assert_eq!(run(&mut t, commit("x", 1, b"zzz", Some((s, 1)))), dup);
        assert_eq!(t.actors[&ActorId::new("A", "x")].state, b"a");
        // Any number of other commits, from this session and others, forget nothing.
        for i in 2..200 {
            let other = open(&mut t);
            run(&mut t, commit("x", 1, b"b", Some((other, 1))));
            run(&mut t, commit("x", 1, b"c", Some((s, i))));
        }
        assert_eq!(run(&mut t, commit("x", 1, b"zzz", Some((s, 1)))), dup);
        // Acknowledged: forgotten, and a late copy is refused, never applied a second time.
        run(&mut t, acking(commit("x", 1, b"d", Some((s, 200))), 2));
        assert!(!t.outcomes.contains_key(&RequestId::new(s, 1)));
        assert_eq!(t.sessions[&s].outcomes, 199);
        let before = t.actors[&ActorId::new("A", "x")].clone();
        assert_eq!(
            run(&mut t, commit("x", 1, b"e", Some((s, 1)))),
            CommandResult::Commit(CommitResult::Expired)
        );
        assert_eq!(t.actors[&ActorId::new("A", "x")], before);
        // Requests above the floor are still remembered.
        assert!(matches!(
            run(&mut t, commit("x", 1, b"e", Some((s, 2)))),
            CommandResult::Commit(CommitResult::Duplicate { .. })
        ));
    }

    #[test]
    fn a_request_of_an_unknown_or_expired_session_is_refused() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, act("x", 1));
        // Never opened.
        assert_eq!(
            run(&mut t, commit("x", 1, b"a", Some((5, 1)))),
            CommandResult::Commit(CommitResult::Expired)
        );
        run(
            &mut t,
            Command::ExpireSessions {
                now_ms: 1_000,
                idle_ms: 500,
            },
        );
        let s = open(&mut t);
        assert_eq!(
            run(&mut t, commit("x", 1, b"a", Some((s, 1)))),
            CommandResult::Commit(CommitResult::Committed { version: 1 })
        );
        // Still active at 1,400; idle past 500 ms at 1,600: expired with its outcomes.
        let tick = |now_ms| Command::ExpireSessions {
            now_ms,
            idle_ms: 500,
        };
        assert_eq!(
            run(&mut t, tick(1_400)),
            CommandResult::SessionsExpired(SessionsExpired { count: 0 })
        );
        // The clock never goes back.
        run(&mut t, tick(10));
        assert_eq!(t.clock.now_ms, 1_400);
        assert_eq!(
            run(&mut t, tick(1_600)),
            CommandResult::SessionsExpired(SessionsExpired { count: 1 })
        );
        assert!(t.outcomes.is_empty());
        assert_eq!(t.clock.open, 0);
        assert_eq!(
            run(&mut t, commit("x", 1, b"b", Some((s, 1)))),
            CommandResult::Commit(CommitResult::Expired)
        );
        assert_eq!(
            run(&mut t, commit("x", 1, b"b", Some((s, 2)))),
            CommandResult::Commit(CommitResult::Expired)
        );
        // Session ids are never handed out twice.
        assert!(open(&mut t) > s);
    }

    /// A cluster's clock is first set by the leader's first tick, some time after it started:
    /// sessions opened and used before it count as active at that tick, not at time 0 (which
    /// expired every early session at the first tick, 30 s into the life of a cluster).
    #[test]
    fn sessions_used_before_the_first_tick_are_not_idle_at_it() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, act("x", 1));
        let s = open(&mut t);
        assert_eq!(
            run(&mut t, commit("x", 1, b"a", Some((s, 1)))),
            CommandResult::Commit(CommitResult::Committed { version: 1 })
        );
        let hour = 3_600_000;
        let now = 1_796_000_000_000;
        let tick = |now_ms| Command::ExpireSessions {
            now_ms,
            idle_ms: hour,
        };
        assert_eq!(
            run(&mut t, tick(now)),
            CommandResult::SessionsExpired(SessionsExpired { count: 0 })
        );
        // Its outcome is still there for a retry.
        assert!(matches!(
            run(&mut t, commit("x", 1, b"a", Some((s, 1)))),
            CommandResult::Commit(CommitResult::Duplicate { version: 1, .. })
        ));
        // Idle for an hour after that tick: expired.
        assert_eq!(
            run(&mut t, tick(now + hour - 1)),
            CommandResult::SessionsExpired(SessionsExpired { count: 0 })
        );
        assert_eq!(
            run(&mut t, tick(now + hour + 1)),
            CommandResult::SessionsExpired(SessionsExpired { count: 1 })
        );
    }

    #[test]
    fn a_full_session_is_refused_not_forgotten() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, act("x", 1));
        let s = open(&mut t);
        let limits = Limits {
            max_session_outcomes: 3,
            ..Limits::default()
        };
        let mut go = |cmd: Command| match apply_command(&mut t, &cmd, &limits) {
            Ok(r) => r,
            Err(e) => match e {},
        };
        for seq in 1..=3 {
            assert!(matches!(
                go(commit("x", 1, b"a", Some((s, seq)))),
                CommandResult::Commit(CommitResult::Committed { .. })
            ));
        }
        assert_eq!(
            go(commit("x", 1, b"a", Some((s, 4)))),
            CommandResult::Commit(CommitResult::SessionFull)
        );
        // Acknowledging frees room.
        assert!(matches!(
            go(acking(commit("x", 1, b"a", Some((s, 4))), 3)),
            CommandResult::Commit(CommitResult::Committed { .. })
        ));
        assert_eq!(t.sessions[&s].outcomes, 2);
    }

    #[test]
    fn an_outcome_only_commit_fixes_the_answer_without_a_new_version() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, act("x", 1));
        let s = open(&mut t);
        run(&mut t, commit("x", 1, b"a", Some((s, 1))));
        let record = Command::Commit {
            actor: ActorId::new("A", "x"),
            epoch: 1,
            state: None,
            base: Some(1),
            request: Some(RequestId::new(s, 2)),
            acked: 0,
            outcome: Outcome::Rejected {
                error: vec![1],
                display: "no".into(),
            },
        };
        assert_eq!(
            run(&mut t, record.clone()),
            CommandResult::Commit(CommitResult::Committed { version: 1 })
        );
        // The first attempt of request 2, computed from version 1, arrives late: it is a
        // duplicate and does not write.
        let late = Command::Commit {
            actor: ActorId::new("A", "x"),
            epoch: 1,
            state: Some(b"z".to_vec()),
            base: Some(1),
            request: Some(RequestId::new(s, 2)),
            acked: 0,
            outcome: Outcome::Reply(vec![]),
        };
        assert!(matches!(
            run(&mut t, late),
            CommandResult::Commit(CommitResult::Duplicate {
                outcome: Outcome::Rejected { .. },
                ..
            })
        ));
        assert_eq!(t.actors[&ActorId::new("A", "x")].state, b"a");
    }

    #[test]
    fn a_commit_from_an_old_version_is_refused() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, act("k", 1));
        let s = open(&mut t);
        let at = |base, state: &[u8], seq| {
            let Command::Commit {
                actor,
                epoch,
                state,
                request,
                outcome,
                ..
            } = commit("k", 1, state, Some((s, seq)))
            else {
                unreachable!("commit() builds a commit")
            };
            Command::Commit {
                actor,
                epoch,
                state,
                base,
                request,
                acked: 0,
                outcome,
            }
        };
        assert_eq!(
            run(&mut t, at(Some(0), b"a", 1)),
            CommandResult::Commit(CommitResult::Committed { version: 1 })
        );
        // A second writer of the same epoch, computed from version 0: refused, nothing written.
        assert_eq!(
            run(&mut t, at(Some(0), b"b", 2)),
            CommandResult::Commit(CommitResult::Conflict { version: 1 })
        );
        assert_eq!(
            t.actor(&ActorId::new("A", "k"))
                .ok()
                .flatten()
                .map(|r| r.state),
            Some(b"a".to_vec())
        );
        assert_eq!(
            run(&mut t, at(Some(1), b"c", 3)),
            CommandResult::Commit(CommitResult::Committed { version: 2 })
        );
    }

    #[test]
    fn release_keeps_the_epoch_growing() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, act("x", 1));
        let rel = |e| Command::Release {
            actor: ActorId::new("A", "x"),
            epoch: e,
        };
        assert_eq!(
            run(&mut t, rel(2)),
            CommandResult::Release(ReleaseResult::StaleEpoch)
        );
        assert_eq!(
            run(&mut t, rel(1)),
            CommandResult::Release(ReleaseResult::Released)
        );
        assert_eq!(
            run(&mut t, rel(1)),
            CommandResult::Release(ReleaseResult::StaleEpoch)
        );
        assert_eq!(
            run(&mut t, commit("x", 1, b"a", None)),
            CommandResult::Commit(CommitResult::StaleEpoch { current: None })
        );
        assert_eq!(run(&mut t, act("x", 1)), placed(1, 1, 2, true));
    }

    #[test]
    fn batch_gives_one_result_per_command_and_refuses_nesting() {
        let mut t = MemTables::default();
        let out = run(
            &mut t,
            Command::Batch(vec![
                reg(1, 1),
                act("x", 1),
                act("x", 1),
                Command::Batch(vec![]),
            ]),
        );
        assert_eq!(
            out,
            CommandResult::Batch(vec![
                CommandResult::Register(RegisterResult::Registered),
                placed(1, 1, 1, true),
                placed(1, 1, 1, false),
                CommandResult::Invalid("nested batch".into()),
            ])
        );
    }
}

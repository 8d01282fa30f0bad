//! The semantics of the directory's commands, as pure code.
//!
//! [`apply_command`] reads and writes through the [`Tables`] trait only. The sled state machine
//! implements `Tables` over one transaction; [`MemTables`] implements it over `BTreeMap`s for
//! unit tests. No IO, no clock, no randomness: the same commands give the same results.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::{
    ActivateResult, ActorId, ActorState, Command, CommandResult, CommitResult, NodeDownResult,
    NodeRecord, Placement, RegisterResult, ReleaseResult, RequestId,
};
use crate::types::NodeId;

/// Default number of request outcomes remembered per actor.
pub const DEFAULT_REQUEST_HISTORY: usize = 64;

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

/// An actor's stored state plus the ids of its most recent requests (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoredActor {
    /// Version and bytes.
    pub version: u64,
    /// The serialized state.
    pub state: Vec<u8>,
    /// Request ids whose outcomes are remembered, oldest first.
    pub recent: VecDeque<RequestId>,
    /// Per client, the highest request sequence number whose outcome was forgotten (most
    /// recently updated last, at most [`MAX_FLOORS`]). A request at or below its client's floor
    /// that is not remembered may have been applied already: it is refused, never re-applied.
    pub floors: VecDeque<RequestId>,
}

/// Clients whose forgotten-request floor is kept per actor.
pub const MAX_FLOORS: usize = 256;

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
    /// The version the write produced.
    pub version: u64,
    /// The reply sent for it.
    pub reply: Vec<u8>,
}

/// Storage the command logic runs against. All writes of one command (or one log entry) must be
/// applied atomically by the implementation.
pub trait Tables {
    /// Storage or decoding failure; aborts the whole entry.
    type Error;
    /// The node record of `node`.
    fn node(&self, node: NodeId) -> Result<Option<NodeRecord>, Self::Error>;
    /// Store a node record.
    fn put_node(&mut self, rec: &NodeRecord) -> Result<(), Self::Error>;
    /// The placement record of `actor`.
    fn placement(&self, actor: &ActorId) -> Result<Option<PlacementRecord>, Self::Error>;
    /// Store a placement record.
    fn put_placement(&mut self, actor: &ActorId, rec: &PlacementRecord) -> Result<(), Self::Error>;
    /// The stored state of `actor`.
    fn actor(&self, actor: &ActorId) -> Result<Option<StoredActor>, Self::Error>;
    /// Store an actor's state.
    fn put_actor(&mut self, actor: &ActorId, rec: &StoredActor) -> Result<(), Self::Error>;
    /// The remembered outcome of `req` on `actor`.
    fn outcome(
        &self,
        actor: &ActorId,
        req: RequestId,
    ) -> Result<Option<RequestOutcome>, Self::Error>;
    /// Remember an outcome.
    fn put_outcome(
        &mut self,
        actor: &ActorId,
        req: RequestId,
        outcome: &RequestOutcome,
    ) -> Result<(), Self::Error>;
    /// Forget an outcome.
    fn remove_outcome(&mut self, actor: &ActorId, req: RequestId) -> Result<(), Self::Error>;
}

/// The owner of a placement record if it is still valid: its node is registered, alive, and in
/// the incarnation the placement was made for.
pub fn live_owner<T: Tables>(
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

/// Apply one command. `history` bounds the request outcomes remembered per actor (at least 1).
pub fn apply_command<T: Tables>(
    tables: &mut T,
    cmd: &Command,
    history: usize,
) -> Result<CommandResult, T::Error> {
    match cmd {
        Command::Batch(cmds) => {
            let mut out = Vec::with_capacity(cmds.len());
            for c in cmds {
                if matches!(c, Command::Batch(_)) {
                    out.push(CommandResult::Invalid("nested batch".into()));
                } else {
                    out.push(apply_command(tables, c, history)?);
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
            reply,
        } => commit(
            tables, actor, *epoch, state, *base, *request, reply, history,
        )
        .map(CommandResult::Commit),
        Command::Release { actor, epoch } => {
            release(tables, actor, *epoch).map(CommandResult::Release)
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
    state: &[u8],
    base: Option<u64>,
    request: Option<RequestId>,
    reply: &[u8],
    history: usize,
) -> Result<CommitResult, T::Error> {
    let mut rec = tables.actor(actor)?.unwrap_or_default();
    // A request that was applied before keeps its original outcome, whoever owns the actor now.
    // Its outcome is stored exactly while its id is in `recent`, so most commits skip the lookup.
    if let Some(req) = request
        && rec.recent.contains(&req)
        && let Some(o) = tables.outcome(actor, req)?
    {
        return Ok(CommitResult::Duplicate {
            version: o.version,
            reply: o.reply,
        });
    }
    let current = match tables.placement(actor)? {
        Some(rec) => live_owner(tables, &rec)?,
        None => None,
    };
    if current.map(|p| p.epoch) != Some(epoch) {
        return Ok(CommitResult::StaleEpoch { current });
    }
    // A request older than one whose outcome was forgotten (delayed in a paused process or a
    // slow network for longer than the outcome history lasts) may be a duplicate: refuse it.
    if let Some(req) = request
        && rec
            .floors
            .iter()
            .any(|f| f.client == req.client && req.seq <= f.seq)
    {
        return Ok(CommitResult::Expired);
    }
    if let Some(b) = base
        && b != rec.version
    {
        return Ok(CommitResult::Conflict {
            version: rec.version,
        });
    }
    rec.version += 1;
    rec.state = state.to_vec();
    if let Some(req) = request {
        tables.put_outcome(
            actor,
            req,
            &RequestOutcome {
                version: rec.version,
                reply: reply.to_vec(),
            },
        )?;
        rec.recent.push_back(req);
        while rec.recent.len() > history.max(1) {
            if let Some(old) = rec.recent.pop_front() {
                tables.remove_outcome(actor, old)?;
                let floor = match rec.floors.iter().position(|f| f.client == old.client) {
                    Some(i) => rec
                        .floors
                        .remove(i)
                        .map_or(old, |f| if f.seq > old.seq { f } else { old }),
                    None => old,
                };
                rec.floors.push_back(floor);
                while rec.floors.len() > MAX_FLOORS {
                    rec.floors.pop_front();
                }
            }
        }
    }
    tables.put_actor(actor, &rec)?;
    Ok(CommitResult::Committed {
        version: rec.version,
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
    pub outcomes: BTreeMap<(ActorId, RequestId), RequestOutcome>,
}

impl Tables for MemTables {
    type Error = std::convert::Infallible;

    fn node(&self, node: NodeId) -> Result<Option<NodeRecord>, Self::Error> {
        Ok(self.nodes.get(&node).cloned())
    }
    fn put_node(&mut self, rec: &NodeRecord) -> Result<(), Self::Error> {
        self.nodes.insert(rec.node, rec.clone());
        Ok(())
    }
    fn placement(&self, actor: &ActorId) -> Result<Option<PlacementRecord>, Self::Error> {
        Ok(self.placements.get(actor).copied())
    }
    fn put_placement(&mut self, actor: &ActorId, rec: &PlacementRecord) -> Result<(), Self::Error> {
        self.placements.insert(actor.clone(), *rec);
        Ok(())
    }
    fn actor(&self, actor: &ActorId) -> Result<Option<StoredActor>, Self::Error> {
        Ok(self.actors.get(actor).cloned())
    }
    fn put_actor(&mut self, actor: &ActorId, rec: &StoredActor) -> Result<(), Self::Error> {
        self.actors.insert(actor.clone(), rec.clone());
        Ok(())
    }
    fn outcome(
        &self,
        actor: &ActorId,
        req: RequestId,
    ) -> Result<Option<RequestOutcome>, Self::Error> {
        Ok(self.outcomes.get(&(actor.clone(), req)).cloned())
    }
    fn put_outcome(
        &mut self,
        actor: &ActorId,
        req: RequestId,
        outcome: &RequestOutcome,
    ) -> Result<(), Self::Error> {
        self.outcomes.insert((actor.clone(), req), outcome.clone());
        Ok(())
    }
    fn remove_outcome(&mut self, actor: &ActorId, req: RequestId) -> Result<(), Self::Error> {
        self.outcomes.remove(&(actor.clone(), req));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut MemTables, cmd: Command) -> CommandResult {
        match apply_command(t, &cmd, 2) {
            Ok(r) => r,
            Err(e) => match e {},
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
            state: state.to_vec(),
            base: None,
            request: req.map(|(client, seq)| RequestId { client, seq }),
            reply: format!("reply-{state:?}").into_bytes(),
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
    fn duplicate_request_returns_original_outcome_and_history_is_bounded() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, act("x", 1));
        let first = run(&mut t, commit("x", 1, b"a", Some((7, 1))));
        assert_eq!(
            first,
            CommandResult::Commit(CommitResult::Committed { version: 1 })
        );
        assert_eq!(
            run(&mut t, commit("x", 1, b"zzz", Some((7, 1)))),
            CommandResult::Commit(CommitResult::Duplicate {
                version: 1,
                reply: format!("reply-{:?}", b"a").into_bytes()
            })
        );
        assert_eq!(t.actors[&ActorId::new("A", "x")].state, b"a");
        // History 2: after two more requests the first one is forgotten.
        run(&mut t, commit("x", 1, b"b", Some((7, 2))));
        run(&mut t, commit("x", 1, b"c", Some((7, 3))));
        assert_eq!(t.outcomes.len(), 2);
        // A late copy of the forgotten request is refused, never applied a second time.
        assert_eq!(
            run(&mut t, commit("x", 1, b"d", Some((7, 1)))),
            CommandResult::Commit(CommitResult::Expired)
        );
        assert_eq!(t.actors[&ActorId::new("A", "x")].state, b"c");
        // Newer requests of that client, and other clients, still commit.
        assert_eq!(
            run(&mut t, commit("x", 1, b"e", Some((7, 4)))),
            CommandResult::Commit(CommitResult::Committed { version: 4 })
        );
        assert_eq!(
            run(&mut t, commit("x", 1, b"f", Some((8, 1)))),
            CommandResult::Commit(CommitResult::Committed { version: 5 })
        );
    }

    #[test]
    fn a_commit_from_an_old_version_is_refused() {
        let mut t = MemTables::default();
        run(&mut t, reg(1, 1));
        run(&mut t, act("k", 1));
        let at = |base, state: &[u8], seq| {
            let Command::Commit {
                actor,
                epoch,
                state,
                request,
                reply,
                ..
            } = commit("k", 1, state, Some((1, seq)))
            else {
                unreachable!("commit() builds a commit")
            };
            Command::Commit {
                actor,
                epoch,
                state,
                base,
                request,
                reply,
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

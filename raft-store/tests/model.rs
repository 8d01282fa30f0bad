//! Property test: the sled state machine against a plain in-memory model of the command
//! semantics, over random command sequences with stale epochs, racing activations, duplicate
//! request ids, sessions opened, acknowledged, filled and expired, node restarts and node-down,
//! applied as single entries and as batches. The state is also compared after closing and
//! reopening the store.

use std::collections::BTreeMap;

use proptest::prelude::*;
use raft_store::types::{Entry, EntryPayload, TypeConfig};
use raft_store::{
    ActivateResult, ActorId, ActorState, Command, CommandResult, CommitResult, NewSession,
    NodeDownResult, Outcome, Placement, RegisterResult, ReleaseResult, RequestId, SessionsExpired,
    StoreConfig, open,
};

const MAX_OUTCOMES: u64 = 3;
const KEYS: [&str; 4] = ["a", "b", "c", "d"];

/// The model: what a reader of the design would write, independent of `raft_store::directory`.
#[derive(Default, Debug)]
struct Model {
    /// node -> (incarnation, alive)
    nodes: BTreeMap<u64, (u64, bool)>,
    /// node -> valid placements made in its current incarnation
    counts: BTreeMap<u64, u64>,
    /// key -> (owner (node, incarnation), last epoch)
    placements: BTreeMap<String, (Option<(u64, u64)>, u64)>,
    /// key -> (version, state)
    states: BTreeMap<String, (u64, Vec<u8>)>,
    /// request -> (key, version, outcome)
    outcomes: BTreeMap<RequestId, (String, u64, Outcome)>,
    /// open session -> (floor, last active)
    sessions: BTreeMap<u64, (u64, u64)>,
    /// the next session id (ids start at 1)
    next_session: u64,
    /// the state machine's time
    now: u64,
}

impl Model {
    /// A placement of `(node, incarnation)` ends.
    fn uncount(&mut self, (node, inc): (u64, u64)) {
        if self.nodes.get(&node).map(|n| n.0) == Some(inc) {
            let c = self.counts.entry(node).or_default();
            *c = c.saturating_sub(1);
        }
    }

    fn owner(&self, key: &str) -> Option<Placement> {
        let (owner, epoch) = self.placements.get(key)?;
        let (node, inc) = (*owner)?;
        let (cur_inc, alive) = self.nodes.get(&node)?;
        (*alive && *cur_inc == inc).then_some(Placement {
            node,
            incarnation: inc,
            epoch: *epoch,
        })
    }

    fn apply(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::Batch(cmds) => {
                CommandResult::Batch(cmds.iter().map(|c| self.apply(c)).collect())
            }
            Command::RegisterNode {
                node, incarnation, ..
            } => {
                if let Some((cur, alive)) = self.nodes.get(node)
                    && (*cur > *incarnation || (*cur == *incarnation && !*alive))
                {
                    return CommandResult::Register(RegisterResult::StaleIncarnation {
                        current: *cur,
                    });
                }
                if self.nodes.get(node).map(|n| n.0) != Some(*incarnation) {
                    self.counts.insert(*node, 0);
                }
                self.nodes.insert(*node, (*incarnation, true));
                CommandResult::Register(RegisterResult::Registered)
            }
            Command::NodeDown { node, incarnation } => match self.nodes.get_mut(node) {
                Some((inc, alive)) if *alive && inc == incarnation => {
                    *alive = false;
                    CommandResult::NodeDown(NodeDownResult::MarkedDown)
                }
                _ => CommandResult::NodeDown(NodeDownResult::Ignored),
            },
            Command::Activate { actor, preferred } => {
                if let Some(p) = self.owner(&actor.key) {
                    return CommandResult::Activate(ActivateResult::Placed {
                        placement: p,
                        fresh: false,
                    });
                }
                match self.nodes.get(preferred) {
                    Some((inc, true)) => {
                        let inc = *inc;
                        if let Some((Some(old), _)) = self.placements.get(&actor.key).copied() {
                            self.uncount(old);
                        }
                        *self.counts.entry(*preferred).or_default() += 1;
                        let epoch = self.placements.get(&actor.key).map_or(0, |p| p.1) + 1;
                        self.placements
                            .insert(actor.key.clone(), (Some((*preferred, inc)), epoch));
                        CommandResult::Activate(ActivateResult::Placed {
                            placement: Placement {
                                node: *preferred,
                                incarnation: inc,
                                epoch,
                            },
                            fresh: true,
                        })
                    }
                    _ => CommandResult::Activate(ActivateResult::NodeUnavailable {
                        node: *preferred,
                    }),
                }
            }
            Command::Commit {
                actor,
                epoch,
                state,
                base,
                request,
                acked,
                outcome,
            } => {
                if let Some(req) = request {
                    if let Some((key, v, o)) = self.outcomes.get(req) {
                        if *key != actor.key {
                            return CommandResult::Invalid(format!(
                                "request {req} was used for T/{key} before, not {actor}"
                            ));
                        }
                        return CommandResult::Commit(CommitResult::Duplicate {
                            version: *v,
                            outcome: o.clone(),
                        });
                    }
                    match self.sessions.get(&req.session) {
                        Some((floor, _)) if req.seq >= *floor => {}
                        _ => return CommandResult::Commit(CommitResult::Expired),
                    }
                }
                let current = self.owner(&actor.key);
                if current.map(|p| p.epoch) != Some(*epoch) {
                    return CommandResult::Commit(CommitResult::StaleEpoch { current });
                }
                let have = self.states.get(&actor.key).map_or(0, |s| s.0);
                if base.is_some_and(|b| b != have) {
                    return CommandResult::Commit(CommitResult::Conflict { version: have });
                }
                if let Some(req) = request {
                    let now = self.now;
                    let (floor, last) = self.sessions.get_mut(&req.session).expect("checked");
                    if *acked > *floor {
                        *floor = *acked;
                        let below = *acked;
                        self.outcomes
                            .retain(|r, _| r.session != req.session || r.seq >= below);
                    }
                    let held = self
                        .outcomes
                        .keys()
                        .filter(|r| r.session == req.session)
                        .count() as u64;
                    if held >= MAX_OUTCOMES {
                        return CommandResult::Commit(CommitResult::SessionFull);
                    }
                    *last = now;
                }
                let version = match state {
                    Some(state) => {
                        let st = self.states.entry(actor.key.clone()).or_insert((0, vec![]));
                        st.0 += 1;
                        st.1 = state.clone();
                        st.0
                    }
                    None => have,
                };
                if let Some(req) = request {
                    self.outcomes
                        .insert(*req, (actor.key.clone(), version, outcome.clone()));
                }
                CommandResult::Commit(CommitResult::Committed { version })
            }
            Command::OpenSession { .. } => {
                let id = self.next_session.max(1);
                self.next_session = id + 1;
                self.sessions.insert(id, (0, self.now));
                CommandResult::NewSession(NewSession { session: id })
            }
            Command::ExpireSessions { now_ms, idle_ms } => {
                // Activity before the clock was ever set counts as activity at its first value.
                if self.now == 0 && *now_ms > 0 {
                    for (_, last) in self.sessions.values_mut() {
                        *last = (*last).max(*now_ms);
                    }
                }
                self.now = self.now.max(*now_ms);
                let cutoff = self.now.saturating_sub(*idle_ms);
                let idle: Vec<u64> = self
                    .sessions
                    .iter()
                    .filter(|(_, (_, last))| *last < cutoff)
                    .map(|(id, _)| *id)
                    .collect();
                for id in &idle {
                    self.sessions.remove(id);
                    self.outcomes.retain(|r, _| r.session != *id);
                }
                CommandResult::SessionsExpired(SessionsExpired {
                    count: idle.len() as u64,
                })
            }
            Command::Release { actor, epoch } => match self.placements.get_mut(&actor.key) {
                Some((owner @ Some(_), e)) if e == epoch => {
                    let old = owner.take();
                    if let Some(old) = old {
                        self.uncount(old);
                    }
                    CommandResult::Release(ReleaseResult::Released)
                }
                _ => CommandResult::Release(ReleaseResult::StaleEpoch),
            },
        }
    }
}

fn actor(k: usize) -> ActorId {
    ActorId::new("T", KEYS[k])
}

fn simple_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (1..=3u64, 1..=3u64).prop_map(|(node, incarnation)| Command::RegisterNode {
            node,
            incarnation,
            addr: format!("n{node}"),
            actor_types: vec!["T".into()],
        }),
        (1..=3u64, 1..=3u64)
            .prop_map(|(node, incarnation)| Command::NodeDown { node, incarnation }),
        (0..KEYS.len(), 1..=3u64).prop_map(|(k, preferred)| Command::Activate {
            actor: actor(k),
            preferred
        }),
        (
            0..KEYS.len(),
            0..=4u64,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4)),
            proptest::option::of((1..=2u64, 0..=5u64, 0..=1u64)),
            proptest::option::of(0..=3u64),
            prop_oneof![3 => Just(0u64), 1 => 1..=5u64],
            any::<bool>(),
        )
            .prop_map(
                |(k, epoch, state, req, base, acked, rejected)| Command::Commit {
                    actor: actor(k),
                    epoch,
                    outcome: if rejected {
                        Outcome::Rejected {
                            error: vec![k as u8],
                            display: "no".into(),
                        }
                    } else {
                        Outcome::Reply(state.iter().flatten().rev().copied().collect())
                    },
                    state,
                    base,
                    request: req.map(|(session, seq, sub)| RequestId { session, seq, sub }),
                    acked,
                }
            ),
        Just(Command::OpenSession {
            owner: "model".into()
        }),
        (0..=60u64, 0..=30u64)
            .prop_map(|(now_ms, idle_ms)| Command::ExpireSessions { now_ms, idle_ms }),
        (0..KEYS.len(), 0..=4u64).prop_map(|(k, epoch)| Command::Release {
            actor: actor(k),
            epoch
        }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => simple_command(),
        1 => proptest::collection::vec(simple_command(), 0..6).prop_map(Command::Batch),
    ]
}

async fn compare_state(view: &raft_store::StateView, model: &Model) {
    for (k, key) in KEYS.iter().enumerate() {
        let a = actor(k);
        assert_eq!(
            view.owner(&a).await.expect("owner"),
            model.owner(key),
            "owner of {a}"
        );
        let expect = model
            .states
            .get(KEYS[k])
            .map(|(version, state)| ActorState {
                version: *version,
                state: state.clone(),
            });
        assert_eq!(
            view.actor_state(&a).await.expect("state"),
            expect,
            "state of {a}"
        );
        let _ = key;
    }
    for session in 1..=4 {
        for seq in 0..=6 {
            for sub in 0..=2 {
                let id = RequestId { session, seq, sub };
                let got = match view.request_status(id).await.expect("status") {
                    raft_store::directory::RequestStatus::Done(o) => {
                        Some(Some((o.actor.key, o.version, o.outcome)))
                    }
                    raft_store::directory::RequestStatus::Open => Some(None),
                    raft_store::directory::RequestStatus::Forgotten => None,
                };
                let want = match model.outcomes.get(&id) {
                    Some(o) => Some(Some(o.clone())),
                    None => match model.sessions.get(&session) {
                        Some((floor, _)) if seq >= *floor => Some(None),
                        _ => None,
                    },
                };
                assert_eq!(got, want, "status of {id}");
            }
        }
    }
    let nodes: Vec<(u64, u64, bool, u64)> = view
        .nodes()
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| (n.node, n.incarnation, n.alive, n.placements))
        .collect();
    let want: Vec<(u64, u64, bool, u64)> = model
        .nodes
        .iter()
        .map(|(n, (i, a))| (*n, *i, *a, model.counts.get(n).copied().unwrap_or(0)))
        .collect();
    assert_eq!(nodes, want);
}

fn run_case(commands: Vec<Command>, group: Vec<usize>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig::default().max_session_outcomes(MAX_OUTCOMES);
        let mut model = Model::default();
        {
            let (_log, sm) = open(dir.path(), &config).expect("open");
            // Group consecutive commands into entries applied by one call.
            let mut index = 0;
            let mut cmds = commands.iter();
            for g in group.iter().cycle() {
                let chunk: Vec<&Command> = cmds.by_ref().take(*g).collect();
                if chunk.is_empty() {
                    break;
                }
                let entries: Vec<Entry> = chunk
                    .iter()
                    .map(|c| {
                        index += 1;
                        Entry {
                            log_id: openraft::testing::log_id::<TypeConfig>(1, 1, index),
                            payload: EntryPayload::Normal((*c).clone()),
                        }
                    })
                    .collect();
                let got = sm.apply_entries(&entries).await.expect("apply");
                let want: Vec<CommandResult> = chunk.iter().map(|c| model.apply(c)).collect();
                assert_eq!(got, want, "results of {chunk:?}");
            }
            compare_state(&sm.view(), &model).await;
        }
        let (_log, sm) = open(dir.path(), &config).expect("reopen");
        compare_state(&sm.view(), &model).await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn state_machine_matches_model(
        commands in proptest::collection::vec(command(), 1..80),
        group in proptest::collection::vec(1..5usize, 1..4),
    ) {
        run_case(commands, group);
    }
}

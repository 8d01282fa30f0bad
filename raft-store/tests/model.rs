//! Property test: the sled state machine against a plain in-memory model of the command
//! semantics, over random command sequences with stale epochs, racing activations, duplicate
//! request ids, node restarts and node-down, applied as single entries and as batches. The state
//! is also compared after closing and reopening the store.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use raft_store::types::{Entry, EntryPayload, TypeConfig};
use raft_store::{
    ActivateResult, ActorId, ActorState, Command, CommandResult, CommitResult, NodeDownResult,
    Placement, RegisterResult, ReleaseResult, RequestId, StoreConfig, open,
};

const HISTORY: usize = 3;
const KEYS: [&str; 4] = ["a", "b", "c", "d"];

/// The model: what a reader of the design would write, independent of `raft_store::logic`.
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
    /// key -> remembered requests, oldest first: (id, version, reply)
    requests: BTreeMap<String, VecDeque<(RequestId, u64, Vec<u8>)>>,
    /// (key, client) -> highest forgotten request sequence number
    forgotten: BTreeMap<(String, u64), u64>,
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
                reply,
            } => {
                let reqs = self.requests.entry(actor.key.clone()).or_default();
                if let Some(req) = request
                    && let Some((_, v, r)) = reqs.iter().find(|(id, _, _)| id == req)
                {
                    return CommandResult::Commit(CommitResult::Duplicate {
                        version: *v,
                        reply: r.clone(),
                    });
                }
                let current = self.owner(&actor.key);
                if current.map(|p| p.epoch) != Some(*epoch) {
                    return CommandResult::Commit(CommitResult::StaleEpoch { current });
                }
                if let Some(req) = request
                    && self
                        .forgotten
                        .get(&(actor.key.clone(), req.client))
                        .is_some_and(|f| req.seq <= *f)
                {
                    return CommandResult::Commit(CommitResult::Expired);
                }
                let have = self.states.get(&actor.key).map_or(0, |s| s.0);
                if base.is_some_and(|b| b != have) {
                    return CommandResult::Commit(CommitResult::Conflict { version: have });
                }
                let st = self.states.entry(actor.key.clone()).or_insert((0, vec![]));
                st.0 += 1;
                st.1 = state.clone();
                let version = st.0;
                if let Some(req) = request {
                    let reqs = self.requests.entry(actor.key.clone()).or_default();
                    reqs.push_back((*req, version, reply.clone()));
                    if reqs.len() > HISTORY
                        && let Some((old, _, _)) = reqs.pop_front()
                    {
                        let f = self
                            .forgotten
                            .entry((actor.key.clone(), old.client))
                            .or_insert(old.seq);
                        *f = (*f).max(old.seq);
                    }
                }
                CommandResult::Commit(CommitResult::Committed { version })
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
            proptest::collection::vec(any::<u8>(), 0..4),
            proptest::option::of((1..=2u64, 1..=4u64)),
            proptest::option::of(0..=3u64)
        )
            .prop_map(|(k, epoch, state, req, base)| Command::Commit {
                actor: actor(k),
                epoch,
                reply: state.iter().rev().copied().collect(),
                state,
                base,
                request: req.map(|(client, seq)| RequestId { client, seq }),
            }),
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
        for client in 1..=2 {
            for seq in 1..=4 {
                let id = RequestId { client, seq };
                let got = view
                    .request_outcome(&a, id)
                    .await
                    .expect("outcome")
                    .map(|o| (o.version, o.reply));
                let want = model
                    .requests
                    .get(KEYS[k])
                    .and_then(|r| r.iter().find(|(i, _, _)| *i == id))
                    .map(|(_, v, r)| (*v, r.clone()));
                assert_eq!(got, want, "outcome of {id} on {a}");
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
        let config = StoreConfig {
            request_history: HISTORY,
            ..StoreConfig::default()
        };
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
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn state_machine_matches_model(
        commands in proptest::collection::vec(command(), 1..80),
        group in proptest::collection::vec(1..5usize, 1..4),
    ) {
        run_case(commands, group);
    }
}

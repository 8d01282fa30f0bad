//! Cluster mode: the QUIC link between nodes, placement strategies, the node's network service,
//! the leader's failure detector, self-fencing, and the cluster view.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use floe_net::raft::RaftService;
use floe_net::{
    Peer, RpcError, Service, SnapshotBody, Target, TlsMaterial, Transport, TransportConfig,
};
use floe_proto::{
    AppendEntriesRequest, CallRequest, ErrorKind, MemberInfo, NodeHint, Reply, Request, Response,
    SnapshotHeader, SnapshotResponse, StreamAppendResult, WireError,
};
use futures::stream::BoxStream;
use raft_store::types::openraft::{ChangeMembers, ServerState};
use raft_store::types::{NodeId, NodeInfo, NodeRole, Raft, WatchReceiver};
use raft_store::{ActorId, Command, NodeRecord, StateView};

use crate::error::CallFailure;
use crate::runtime::Runtime;

/// Chooses the node a new actor is placed on.
pub trait PlacementStrategy: Send + Sync + 'static {
    /// Pick one of `candidates` (alive nodes that registered the actor's type) for `actor`;
    /// `local` is the node asking. `None` refuses the placement.
    fn choose(&self, actor: &ActorId, local: NodeId, candidates: &[NodeRecord]) -> Option<NodeId>;
}

/// Placement strategies.
#[derive(Clone, Default)]
pub enum Placement {
    /// The node that received the first call, if it hosts the type; otherwise a random one.
    #[default]
    PreferLocal,
    /// A uniformly random candidate.
    Random,
    /// The candidate with the fewest placements (ties broken at random).
    LeastLoaded,
    /// A strategy of your own.
    Custom(Arc<dyn PlacementStrategy>),
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Placement::PreferLocal => "PreferLocal",
            Placement::Random => "Random",
            Placement::LeastLoaded => "LeastLoaded",
            Placement::Custom(_) => "Custom",
        })
    }
}

fn pick_random(c: &[NodeRecord]) -> Option<NodeId> {
    if c.is_empty() {
        return None;
    }
    Some(c[rand::random_range(0..c.len())].node)
}

impl Placement {
    pub(crate) fn choose(
        &self,
        actor: &ActorId,
        local: NodeId,
        c: &[NodeRecord],
    ) -> Option<NodeId> {
        match self {
            Placement::PreferLocal => {
                if c.iter().any(|n| n.node == local) {
                    Some(local)
                } else {
                    pick_random(c)
                }
            }
            Placement::Random => pick_random(c),
            Placement::LeastLoaded => {
                let min = c.iter().map(|n| n.placements).min()?;
                let least: Vec<NodeRecord> =
                    c.iter().filter(|n| n.placements == min).cloned().collect();
                pick_random(&least)
            }
            Placement::Custom(s) => s.choose(actor, local, c),
        }
    }
}

/// How a node takes part in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// QUIC address to bind.
    pub listen: SocketAddr,
    /// Address other nodes and clients use to reach this node (default: the bound address).
    pub advertise: Option<String>,
    /// This node's certificate (it must be for this node's id), key and the cluster CA.
    pub tls: TlsMaterial,
    /// Transport settings (the listen address is taken from `listen`).
    pub transport: TransportConfig,
    /// Initial voters `(id, address)`, identical on every node that bootstraps; used only when
    /// the data directory is new. Empty for a node that joins. An empty address for this node
    /// stands for its advertised address.
    pub bootstrap: Vec<(NodeId, String)>,
    /// Nodes of a running cluster to ask for admission (when not bootstrapping).
    pub join: Vec<SocketAddr>,
    /// Join as a voter (after catching up) rather than as a learner.
    pub join_as_voter: bool,
    /// The leader declares a node down when its heartbeat acknowledgements stop this long.
    /// It also sets the Raft election timeout, to between 1/3 and 2/3 of it (at most 400–800 ms):
    /// a leader is replaced after a silence of 1–1.33 times the node timeout.
    pub node_timeout: Duration,
    /// Where new actors go.
    pub placement: Placement,
    /// How long startup waits for a leader and for this node's membership (bootstrap, join, or
    /// `floe init` run by an operator).
    pub startup_timeout: Duration,
}

impl ClusterConfig {
    /// A node listening on `listen` with `tls`, other settings default.
    pub fn new(listen: SocketAddr, tls: TlsMaterial) -> Self {
        Self {
            listen,
            advertise: None,
            tls,
            transport: TransportConfig::default(),
            bootstrap: Vec::new(),
            join: Vec::new(),
            join_as_voter: false,
            node_timeout: Duration::from_millis(600),
            placement: Placement::default(),
            startup_timeout: Duration::from_secs(60),
        }
    }
}

/// The runtime's connection to the rest of the cluster.
pub(crate) struct Link {
    pub(crate) transport: Transport,
    pub(crate) advertise: String,
    pub(crate) node_timeout: Duration,
    pub(crate) placement: Placement,
}

/// Address of `node` from the Raft membership.
pub(crate) fn node_addr(raft: &Raft, node: NodeId) -> Option<String> {
    let m = raft.metrics().borrow_watched().membership_config.clone();
    m.membership()
        .nodes()
        .find(|(id, _)| **id == node)
        .map(|(_, info)| info.addr.clone())
}

pub(crate) fn target(raft: &Raft, node: NodeId) -> Option<Target> {
    let addr = node_addr(raft, node)?;
    addr.parse().ok().map(|a| Target::node(node, a))
}

pub(crate) fn hint(raft: &Raft, node: NodeId) -> Option<NodeHint> {
    node_addr(raft, node).map(|addr| NodeHint { node, addr })
}

/// A runtime failure as the wire carries it.
pub(crate) fn to_wire(raft: &Raft, f: CallFailure) -> WireError {
    let msg = f.to_string();
    let kind = match f {
        CallFailure::Rejected { error, .. } => ErrorKind::Rejected(error),
        CallFailure::Panicked(_) => ErrorKind::Panicked,
        CallFailure::ActivationFailed(_) => ErrorKind::ActivationFailed,
        CallFailure::CallCycle(c) => ErrorKind::CallCycle(c),
        CallFailure::NotOwner(n) => ErrorKind::NotOwner {
            hint: n.and_then(|n| hint(raft, n)),
        },
        CallFailure::Unavailable(_) | CallFailure::Shutdown => ErrorKind::Unavailable,
        CallFailure::Timeout => ErrorKind::Timeout,
        CallFailure::Expired => ErrorKind::Expired,
        CallFailure::TooLarge(_) => ErrorKind::TooLarge,
        CallFailure::BadRequest(_) => ErrorKind::BadRequest,
    };
    WireError::new(kind, msg)
}

/// A wire error as a runtime failure.
pub fn from_wire(e: WireError) -> CallFailure {
    match e.kind {
        ErrorKind::Rejected(error) => CallFailure::Rejected {
            error,
            display: e.message,
        },
        ErrorKind::Panicked => CallFailure::Panicked(e.message),
        ErrorKind::ActivationFailed => CallFailure::ActivationFailed(e.message),
        ErrorKind::CallCycle(c) => CallFailure::CallCycle(c),
        ErrorKind::NotOwner { hint } => CallFailure::NotOwner(hint.map(|h| h.node)),
        ErrorKind::Timeout => CallFailure::Timeout,
        ErrorKind::Expired => CallFailure::Expired,
        ErrorKind::TooLarge => CallFailure::TooLarge(e.message),
        ErrorKind::BadRequest | ErrorKind::Forbidden => CallFailure::BadRequest(e.message),
        ErrorKind::NotLeader { .. } | ErrorKind::Unavailable | ErrorKind::Internal => {
            CallFailure::Unavailable(e.message)
        }
    }
}

/// What a node serves to peers and clients.
pub(crate) struct NodeService {
    pub(crate) raft_service: RaftService,
    pub(crate) rt: Weak<Runtime>,
    pub(crate) membership: tokio::sync::Mutex<()>,
}

fn wire(kind: ErrorKind, msg: impl Into<String>) -> WireError {
    WireError::new(kind, msg)
}

impl NodeService {
    fn rt(&self) -> Result<Arc<Runtime>, WireError> {
        self.rt
            .upgrade()
            .ok_or_else(|| wire(ErrorKind::Unavailable, "node is shutting down"))
    }

    fn leader_only(&self, raft: &Raft) -> Result<(), WireError> {
        let (me, leader) = {
            let m = raft.metrics().borrow_watched().clone();
            (m.id, m.current_leader)
        };
        if leader == Some(me) {
            return Ok(());
        }
        Err(wire(
            ErrorKind::NotLeader {
                leader: leader.and_then(|l| hint(raft, l)),
            },
            "membership changes are served by the leader",
        ))
    }

    async fn members(&self) -> Response {
        let rt = self.rt()?;
        let m = rt.raft.metrics().borrow_watched().clone();
        let dir: BTreeMap<NodeId, NodeRecord> = rt
            .view
            .nodes()
            .await
            .map_err(|e| wire(ErrorKind::Internal, e.to_string()))?
            .into_iter()
            .map(|n| (n.node, n))
            .collect();
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        let members = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, info)| MemberInfo {
                node: *id,
                addr: info.addr.clone(),
                voter: voters.contains(id),
                alive: dir.get(id).is_some_and(|r| r.alive),
                leader: m.current_leader == Some(*id),
            })
            .collect();
        Ok(Reply::Members(members))
    }

    async fn add_node(&self, node: NodeId, addr: String, voter: bool) -> Response {
        let rt = self.rt()?;
        let raft = &rt.raft;
        self.leader_only(raft)?;
        // Never two membership changes at once.
        let _one = self.membership.lock().await;
        let err = |e: &dyn std::fmt::Display| wire(ErrorKind::Unavailable, e.to_string());
        let m = raft.metrics().borrow_watched().membership_config.clone();
        let member = m.membership().nodes().any(|(id, _)| *id == node);
        if !member {
            if let Ok(Some(rec)) = rt.view.node(node).await
                && !rec.alive
            {
                return Err(wire(
                    ErrorKind::BadRequest,
                    format!("node id {node} was used before and left; node ids are never reused"),
                ));
            }
            let role = if voter {
                NodeRole::Voter
            } else {
                NodeRole::Learner
            };
            raft.add_learner(node, NodeInfo::new(addr, role), true)
                .await
                .map_err(|e| err(&e))?;
        }
        let is_voter = raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == node);
        if voter && !is_voter {
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node])), false)
                .await
                .map_err(|e| err(&e))?;
        }
        tracing::info!(node, voter, "node added");
        Ok(Reply::Pong)
    }

    async fn initialize(&self, voters: Vec<(NodeId, String)>) -> Response {
        let rt = self.rt()?;
        let raft = &rt.raft;
        let _one = self.membership.lock().await;
        if raft
            .is_initialized()
            .await
            .map_err(|e| wire(ErrorKind::Internal, e.to_string()))?
        {
            return Err(wire(
                ErrorKind::BadRequest,
                "this node is already part of an initialized cluster",
            ));
        }
        if !voters.iter().any(|(id, _)| *id == rt.node) {
            return Err(wire(
                ErrorKind::BadRequest,
                format!("the voters must include node {}", rt.node),
            ));
        }
        let members: BTreeMap<NodeId, NodeInfo> = voters
            .into_iter()
            .map(|(id, addr)| (id, NodeInfo::new(addr, NodeRole::Voter)))
            .collect();
        raft.initialize(members)
            .await
            .map_err(|e| wire(ErrorKind::BadRequest, e.to_string()))?;
        tracing::info!(node = rt.node, "cluster initialized");
        Ok(Reply::Pong)
    }

    async fn remove_node(&self, node: NodeId) -> Response {
        let rt = self.rt()?;
        let raft = &rt.raft;
        self.leader_only(raft)?;
        let _one = self.membership.lock().await;
        let err = |e: &dyn std::fmt::Display| wire(ErrorKind::Unavailable, e.to_string());
        let m = raft.metrics().borrow_watched().membership_config.clone();
        let is_voter = m.membership().voter_ids().any(|v| v == node);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([node]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node]))
        };
        if m.membership().nodes().any(|(id, _)| *id == node) {
            raft.change_membership(change, false)
                .await
                .map_err(|e| err(&e))?;
        }
        // Its actors move on their next call.
        if let Ok(Some(rec)) = rt.view.node(node).await
            && rec.alive
        {
            let _ = rt
                .proposer
                .propose(Command::NodeDown {
                    node,
                    incarnation: rec.incarnation,
                })
                .await;
        }
        tracing::info!(node, "node removed");
        Ok(Reply::Pong)
    }
}

impl Service for NodeService {
    async fn handle(&self, _peer: Peer, req: Request) -> Response {
        match req {
            Request::Call(c) => {
                let rt = self.rt()?;
                match rt.serve_remote(c).await {
                    Ok((payload, owner)) => Ok(Reply::Call {
                        payload,
                        owner: hint(&rt.raft, owner).unwrap_or(NodeHint {
                            node: owner,
                            addr: String::new(),
                        }),
                    }),
                    Err(f) => Err(to_wire(&rt.raft, f)),
                }
            }
            Request::Members => self.members().await,
            Request::OpenSession => {
                let rt = self.rt()?;
                rt.open_session("client")
                    .await
                    .map(|id| Reply::Session { id })
                    .map_err(|f| to_wire(&rt.raft, f))
            }
            Request::AddNode { node, addr, voter } => self.add_node(node, addr, voter).await,
            Request::RemoveNode { node } => self.remove_node(node).await,
            Request::Initialize { voters } => self.initialize(voters).await,
            Request::Status => {
                let rt = self.rt()?;
                let v = cluster_view(&rt.raft, &rt.view).await;
                Ok(Reply::Status(floe_proto::StatusReport {
                    node: v.this,
                    state: v.state,
                    leader: v.leader,
                    term: v.term,
                    last_applied: v.last_applied,
                    members: v
                        .members
                        .into_iter()
                        .map(|m| floe_proto::MemberStatus {
                            node: m.node,
                            addr: m.addr,
                            voter: m.voter,
                            alive: m.alive,
                            incarnation: m.incarnation,
                            actors: m.placements,
                            last_ack_ms: m.last_ack_ms,
                        })
                        .collect(),
                }))
            }
            other => match self.raft_service.handle_raft(other).await {
                Some(r) => r,
                None => Err(wire(ErrorKind::BadRequest, "unsupported request")),
            },
        }
    }

    fn append_stream(
        &self,
        peer: Peer,
        input: BoxStream<'static, AppendEntriesRequest>,
    ) -> BoxStream<'static, Result<StreamAppendResult, WireError>> {
        self.raft_service.append_stream(peer, input)
    }

    async fn install_snapshot(
        &self,
        peer: Peer,
        header: SnapshotHeader,
        body: SnapshotBody,
    ) -> Result<SnapshotResponse, WireError> {
        self.raft_service.install_snapshot(peer, header, body).await
    }
}

/// Build the remote form of a call.
pub(crate) fn call_request(call: &crate::runtime::RawCall) -> CallRequest {
    CallRequest {
        actor: call.actor.clone(),
        message: call.message.clone(),
        payload: call.payload.clone(),
        request: call.request,
        timeout_ms: call
            .deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .min(u32::MAX as u128) as u32,
        chain: call.chain.to_vec(),
        hops: call.hops.saturating_add(1),
        acked: call.acked,
        retry: call.retry,
    }
}

/// Ask `seeds` (following leader hints) to add `me`; retries until `deadline`.
pub(crate) async fn join(
    transport: &Transport,
    seeds: &[SocketAddr],
    me: NodeId,
    addr: &str,
    voter: bool,
    deadline: Instant,
) -> Result<(), String> {
    let mut last = String::from("no seed answered");
    let mut targets: Vec<Target> = seeds.iter().map(|s| Target::any_node(*s)).collect();
    while Instant::now() < deadline {
        for t in targets.clone() {
            let req = Request::AddNode {
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
                    return Err(e.to_string());
                }
                Err(e) => last = e.to_string(),
            }
        }
        targets.truncate(seeds.len() + 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

/// The leader's failure detector: declares a node down when its heartbeat acknowledgements
/// stop for the node timeout, or when it is registered but no longer a member.
///
/// It runs on every node, not only on the leader: a follower remembers when it first saw each
/// registered incarnation and which leader it followed, so that when it becomes leader it can
/// tell a node it has long known alive (whose silence may have started before this leadership)
/// from one that has just registered (see [`silence`]).
pub(crate) async fn failure_detector(rt: Weak<Runtime>, timeout: Duration) {
    let period = (timeout / 8).clamp(Duration::from_millis(10), Duration::from_millis(50));
    let mut leader_since: Option<Instant> = None;
    // The leader this node followed last, with its term; and, while this node leads, the leader
    // its election deposed (if the inference of [`deposed_leader`] holds).
    let mut followed: Option<(NodeId, u64)> = None;
    let mut deposed: Option<NodeId> = None;
    let mut declared: BTreeSet<(NodeId, u64)> = BTreeSet::new();
    // When each (node, incarnation) was first seen here, whatever this node's role: a freshly
    // registered incarnation is not judged by the acknowledgements of the process it replaced.
    let mut first_seen: BTreeMap<(NodeId, u64), Instant> = BTreeMap::new();
    // The applied index `first_seen` was last brought up to date at (records change only by
    // applying entries).
    let mut seen_at: Option<u64> = None;
    // Least heartbeat silence from the leader before this node can start an election: openraft
    // waits for the leader lease (`election_timeout_max` in the pinned version) and then for a
    // sampled election timeout of at least `election_timeout_min`.
    let election_silence = {
        let c = rt.upgrade().map(|rt| rt.raft.config().clone());
        c.map_or(Duration::ZERO, |c| {
            Duration::from_millis(
                c.election_timeout_min
                    .saturating_add(c.election_timeout_max),
            )
        })
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(rt) = rt.upgrade() else { return };
        if rt.is_shutting_down() {
            return;
        }
        let m = rt.raft.metrics().borrow_watched().clone();
        let applied = m.last_applied.map(|l| l.index);
        if m.state != ServerState::Leader {
            leader_since = None;
            deposed = None;
            if let Some(l) = m.current_leader.filter(|l| *l != m.id) {
                followed = Some((l, m.current_term));
            }
            if seen_at != applied
                && let Ok(nodes) = rt.view.nodes().await
            {
                note_seen(&mut first_seen, &nodes, Instant::now());
                seen_at = applied;
            }
            continue;
        }
        if leader_since.is_none() {
            deposed = deposed_leader(followed, m.id, m.current_term);
        }
        let since = *leader_since.get_or_insert_with(Instant::now);
        let Ok(nodes) = rt.view.nodes().await else {
            continue;
        };
        let now = Instant::now();
        note_seen(&mut first_seen, &nodes, now);
        seen_at = applied;
        // A declaration is remembered until the directory shows it applied (or the node moved
        // on to another incarnation); only then can it not be proposed twice.
        declared.retain(|k| first_seen.contains_key(k));
        let members: BTreeSet<NodeId> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let acks = m.heartbeat.clone().unwrap_or_default();
        for rec in nodes.into_iter().filter(|r| r.alive && r.node != m.id) {
            let seen = first_seen
                .get(&(rec.node, rec.incarnation))
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(*t));
            let silent = silence(Silence {
                member: members.contains(&rec.node),
                ack: match acks.get(&rec.node) {
                    Some(Some(at)) => Some(openraft_elapsed(at)),
                    _ => None,
                },
                leading: now.saturating_duration_since(since),
                seen,
                known_silent: if deposed == Some(rec.node) {
                    election_silence
                } else {
                    timeout / 2
                },
            });
            if silent < timeout || !declared.insert((rec.node, rec.incarnation)) {
                continue;
            }
            tracing::warn!(
                node = rec.node,
                incarnation = rec.incarnation,
                ?silent,
                "declaring node down"
            );
            let cmd = Command::NodeDown {
                node: rec.node,
                incarnation: rec.incarnation,
            };
            if let Err(e) = rt.proposer.propose(cmd).await {
                tracing::warn!(node = rec.node, error = %e, "NodeDown not committed; will retry");
                declared.remove(&(rec.node, rec.incarnation));
            }
        }
    }
}

/// Record when each alive (node, incarnation) of `nodes` was first seen; forget the others (an
/// incarnation that is down never comes back: a restarted or rejoining node registers a new one).
fn note_seen(
    first_seen: &mut BTreeMap<(NodeId, u64), Instant>,
    nodes: &[NodeRecord],
    now: Instant,
) {
    let alive: BTreeSet<(NodeId, u64)> = nodes
        .iter()
        .filter(|r| r.alive)
        .map(|r| (r.node, r.incarnation))
        .collect();
    first_seen.retain(|k, _| alive.contains(k));
    for k in alive {
        first_seen.entry(k).or_insert(now);
    }
}

/// The leader that this node's election (won at `term`) deposed: the one it followed, if that
/// one led the term right before.
///
/// Floe never transfers leadership, so this node won `term` through its election timer, which
/// fires only once it has not heard from the leader it followed for the whole leader lease plus
/// an election timeout (openraft renews a follower's lease only on that leader's messages, and
/// does not let a voter grant a vote while the lease runs). The deposed leader has thus been
/// silent towards this node for at least `election_timeout_min + election_timeout_max` before
/// this leadership started. With a gap in the terms (a split vote, or a leader this node never
/// saw) nothing is inferred.
fn deposed_leader(followed: Option<(NodeId, u64)>, me: NodeId, term: u64) -> Option<NodeId> {
    followed
        .filter(|(l, t)| *l != me && t.checked_add(1) == Some(term))
        .map(|(l, _)| l)
}

/// What the leader knows of one registered node.
#[derive(Debug, Clone, Copy)]
struct Silence {
    /// Whether it is in the Raft membership.
    member: bool,
    /// Time since it last acknowledged this leader's heartbeats, if it has.
    ack: Option<Duration>,
    /// Time since this node became leader.
    leading: Duration,
    /// Time since this node first saw its current incarnation registered.
    seen: Duration,
    /// How long it had been silent already when this leadership started, at least: for the
    /// leader this node's election deposed, the election silence ([`deposed_leader`]); for any
    /// other node, a grace of half the node timeout (live nodes answer a new leader's first
    /// heartbeats within a heartbeat interval).
    known_silent: Duration,
}

/// How long a node has been silent, as far as the leader can tell: since its last
/// acknowledgement, or, before it acknowledged this leader, since the leadership started plus
/// what was known before. Never longer than its incarnation has been seen: a freshly registered
/// incarnation gets a whole node timeout, however old the acknowledgements of the process it
/// replaced are.
fn silence(s: Silence) -> Duration {
    if !s.member {
        return Duration::MAX;
    }
    let heard = s
        .ack
        .unwrap_or_else(|| s.leading.saturating_add(s.known_silent));
    heard.min(s.seen)
}

fn openraft_elapsed(
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
        match rt.view.node(rt.node).await {
            Ok(Some(rec)) if rec.incarnation == inc && !rec.alive => {
                tracing::warn!(
                    node = rt.node,
                    incarnation = inc,
                    "declared down while alive: dropping activations and rejoining"
                );
                if let Err(e) = rt.rejoin().await {
                    tracing::warn!(error = %e, "rejoin failed; will retry");
                }
            }
            // A rejoin whose registration did not land (no leader, connection lost): the
            // directory still has the older incarnation, down. Register again.
            Ok(Some(rec)) if rec.incarnation < inc && !rec.alive => {
                tracing::info!(
                    node = rt.node,
                    incarnation = inc,
                    "registration not in the directory yet: registering again"
                );
                if let Err(e) = rt.register().await {
                    tracing::warn!(error = %e, "registration failed; will retry");
                }
            }
            _ => {}
        }
    }
}

/// What an application sees of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterView {
    /// This node.
    pub this: NodeId,
    /// This node's Raft state (`Leader`, `Follower`, `Learner`, `Candidate`, ...).
    pub state: String,
    /// The current leader, if known.
    pub leader: Option<NodeId>,
    /// The current Raft term.
    pub term: u64,
    /// The last log index applied here.
    pub last_applied: Option<u64>,
    /// Every member of the Raft membership.
    pub members: Vec<MemberView>,
}

/// One member in a [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberView {
    /// The node.
    pub node: NodeId,
    /// Its address.
    pub addr: String,
    /// Whether it votes.
    pub voter: bool,
    /// Whether the directory considers it alive.
    pub alive: bool,
    /// Its incarnation, if registered.
    pub incarnation: Option<u64>,
    /// Actors placed on it in its current incarnation.
    pub placements: u64,
    /// Milliseconds since the leader last heard from it (known on the leader only).
    pub last_ack_ms: Option<u64>,
}

pub(crate) async fn cluster_view(raft: &Raft, view: &StateView) -> ClusterView {
    let m = raft.metrics().borrow_watched().clone();
    let dir: BTreeMap<NodeId, NodeRecord> = view
        .nodes()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|n| (n.node, n))
        .collect();
    let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
    let acks = m.heartbeat.clone().unwrap_or_default();
    let members = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, info)| {
            let rec = dir.get(id);
            MemberView {
                node: *id,
                addr: info.addr.clone(),
                voter: voters.contains(id),
                alive: rec.is_some_and(|r| r.alive),
                incarnation: rec.map(|r| r.incarnation),
                placements: rec.map_or(0, |r| r.placements),
                last_ack_ms: if *id == m.id {
                    Some(0)
                } else {
                    acks.get(id)
                        .and_then(|a| a.as_ref())
                        .map(|a| openraft_elapsed(a).as_millis() as u64)
                },
            }
        })
        .collect();
    ClusterView {
        this: m.id,
        state: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_applied: m.last_applied.map(|l| l.index),
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(600);
    // The election silence of the default timing (200 + 400 ms).
    const ELECTION: Duration = Duration::from_millis(600);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn known(ack: Option<u64>, leading: u64, seen: u64, known_silent: Duration) -> Duration {
        silence(Silence {
            member: true,
            ack: ack.map(ms),
            leading: ms(leading),
            seen: ms(seen),
            known_silent,
        })
    }

    #[test]
    fn a_node_that_left_the_membership_is_down_at_once() {
        let s = Silence {
            member: false,
            ack: Some(ms(1)),
            leading: ms(0),
            seen: ms(0),
            known_silent: TIMEOUT / 2,
        };
        assert_eq!(silence(s), Duration::MAX);
    }

    #[test]
    fn acknowledgements_decide_once_there_are_some() {
        assert_eq!(known(Some(40), 5_000, 60_000, TIMEOUT / 2), ms(40));
        assert_eq!(known(Some(700), 5_000, 60_000, TIMEOUT / 2), ms(700));
        // The deposed leader answers us after all: it is judged by its answers.
        assert_eq!(known(Some(30), 10, 60_000, ELECTION), ms(30));
    }

    #[test]
    fn a_long_known_node_gets_half_a_timeout_of_grace_from_a_new_leader() {
        // Seen long ago (as a follower): before it answers, its silence is the time since the
        // leadership started plus half the timeout, not the time since it was "first seen".
        assert!(known(None, 0, 60_000, TIMEOUT / 2) < TIMEOUT);
        assert!(known(None, 290, 60_000, TIMEOUT / 2) < TIMEOUT);
        assert!(known(None, 300, 60_000, TIMEOUT / 2) >= TIMEOUT);
    }

    #[test]
    fn the_deposed_leader_is_down_as_soon_as_the_election_is_won() {
        assert!(known(None, 0, 60_000, ELECTION) >= TIMEOUT);
    }

    #[test]
    fn a_fresh_incarnation_gets_a_whole_timeout() {
        // Old acknowledgements are those of the process it replaced.
        assert_eq!(known(Some(5_000), 60_000, 100, TIMEOUT / 2), ms(100));
        assert!(known(Some(5_000), 60_000, 599, TIMEOUT / 2) < TIMEOUT);
        assert!(known(None, 0, 0, ELECTION) < TIMEOUT);
        assert!(known(None, 1_000, 599, ELECTION) < TIMEOUT);
        assert!(known(None, 1_000, 600, ELECTION) >= TIMEOUT);
    }

    #[test]
    fn only_the_leader_of_the_previous_term_counts_as_deposed() {
        assert_eq!(deposed_leader(Some((3, 7)), 1, 8), Some(3));
        // A term in between (a split vote, or a leader this node never saw): nothing inferred.
        assert_eq!(deposed_leader(Some((3, 7)), 1, 9), None);
        assert_eq!(deposed_leader(Some((3, 8)), 1, 8), None);
        assert_eq!(deposed_leader(Some((1, 7)), 1, 8), None);
        assert_eq!(deposed_leader(None, 1, 8), None);
        assert_eq!(deposed_leader(Some((3, u64::MAX)), 1, 0), None);
    }

    fn rec(node: NodeId, incarnation: u64, alive: bool) -> NodeRecord {
        NodeRecord {
            node,
            incarnation,
            alive,
            addr: String::new(),
            actor_types: Vec::new(),
            placements: 0,
        }
    }

    #[test]
    fn first_seen_keeps_the_first_sighting_of_each_alive_incarnation() {
        let t0 = Instant::now();
        let t1 = t0 + ms(500);
        let mut seen = BTreeMap::new();
        note_seen(&mut seen, &[rec(1, 1, true), rec(2, 1, true)], t0);
        // Node 2 restarted: incarnation 1 is down, incarnation 2 registered.
        note_seen(
            &mut seen,
            &[rec(1, 1, true), rec(2, 1, false), rec(2, 2, true)],
            t1,
        );
        assert_eq!(seen.get(&(1, 1)), Some(&t0));
        assert_eq!(seen.get(&(2, 1)), None);
        assert_eq!(seen.get(&(2, 2)), Some(&t1));
        assert_eq!(seen.len(), 2);
    }
}

//! An embedded Floe node: `Node::builder()` … `.build().await`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raft_store::StoreConfig;
use raft_store::types::WatchReceiver;
use raft_store::types::openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError,
};
use raft_store::types::openraft::network::{RPCOption, RaftNetworkFactory};
use raft_store::types::openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use raft_store::types::openraft::{RaftNetworkV2, ServerState};
use raft_store::types::{NodeId, NodeInfo, NodeRole, Raft, RaftConfig, Snapshot, TypeConfig, Vote};

use floe_net::raft::{QuicRaftNetwork, RaftService};
use floe_net::{Role, Transport};

use crate::actor::Actor;
use crate::actor::ActorRef;
use crate::app_data::AppData;
use crate::call::Caller;
use crate::cluster::{ClusterConfig, ClusterView};
use crate::config::{ConfigError, RuntimeConfig};
use crate::link::Link;
use crate::membership::admin::Admin;
use crate::runtime::{Factory, RegisterError, Runtime, TypedFactory};
use crate::service::NodeService;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting is invalid: fix the one it names.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Two registered actor types share a name.
    #[error("actor name {0:?} is registered twice")]
    DuplicateActor(&'static str),
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The Raft store could not be opened.
    #[error(transparent)]
    Store(#[from] raft_store::OpenError),
    /// Raft failed to start or to elect this node.
    #[error("raft: {0}")]
    Raft(String),
    /// The node could not register itself in the directory.
    #[error("registering the node: {0}")]
    Register(String),
}

/// Why a node did not stop cleanly. Committed state is durable either way: restart the node.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// The Raft core did not stop cleanly (it may have failed before).
    #[error("stopping raft: {0}")]
    Raft(String),
}

/// Builds a [`Node`].
pub struct NodeBuilder {
    id: NodeId,
    data_dir: Option<PathBuf>,
    runtime: RuntimeConfig,
    store: StoreConfig,
    registry: HashMap<&'static str, Arc<dyn Factory>>,
    app_data: AppData,
    duplicate: Option<&'static str>,
    cluster: Option<ClusterConfig>,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("id", &self.id)
            .field("data_dir", &self.data_dir)
            .field("actors", &self.registry.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl NodeBuilder {
    /// The node's id (default 1). Never reuse an id within a cluster.
    pub fn id(mut self, id: NodeId) -> Self {
        self.id = id;
        self
    }

    /// Where the node keeps its Raft log, state machine and incarnation (required).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Share `value` with every actor on this node: a handler or hook reads it with
    /// [`crate::Context::app_data`]. One value per type; a later one of the same type replaces
    /// the earlier.
    pub fn app_data<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.app_data = self.app_data.with(value);
        self
    }

    /// Like [`Self::app_data`], for a value the application keeps a handle to as well; actors
    /// read it as `T`.
    pub fn app_data_arc<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.app_data = self.app_data.with_arc(value);
        self
    }

    /// Runtime settings.
    pub fn runtime(mut self, config: RuntimeConfig) -> Self {
        self.runtime = config;
        self
    }

    /// Store settings (durability, request history).
    pub fn store(mut self, config: StoreConfig) -> Self {
        self.store = config;
        self
    }

    /// Run as a member of a cluster (QUIC with mutual TLS) instead of a lone embedded node.
    pub fn cluster(mut self, config: ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }

    /// Host the built-in register, counter, echo, account and teller actors ([`crate::builtin`]).
    pub fn register_builtins(self) -> Self {
        self.register::<crate::builtin::Register>()
            .register::<crate::builtin::Counter>()
            .register::<crate::builtin::Echo>()
            .register::<crate::builtin::Account>()
            .register::<crate::builtin::Teller>()
    }

    /// Host actors of type `A` on this node.
    pub fn register<A: Actor>(mut self) -> Self {
        if self
            .registry
            .insert(A::NAME, Arc::new(TypedFactory::<A>::new()))
            .is_some()
        {
            self.duplicate = Some(A::NAME);
        }
        self
    }

    /// Open the data directory, start Raft (a single-voter cluster, initialized on first start),
    /// register this node with a new incarnation and start the runtime.
    ///
    /// # Errors
    /// [`BuildError`] says which part failed.
    pub async fn build(mut self) -> Result<Node, BuildError> {
        self.runtime = self.runtime.validate()?;
        self.store = self.store.validate()?;
        self.cluster = self.cluster.map(ClusterConfig::validate).transpose()?;
        if let Some(name) = self.duplicate {
            return Err(BuildError::DuplicateActor(name));
        }
        let dir = self
            .data_dir
            .ok_or_else(|| BuildError::Config(ConfigError::new("data_dir", "is required")))?;
        let io = |source| BuildError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let raft_err = |e: &dyn std::fmt::Display| BuildError::Raft(e.to_string());

        // The transport first: a bad certificate or a busy port fails before any state changes.
        let link = match &self.cluster {
            None => None,
            Some(c) => {
                if c.tls.role != Role::Node(self.id) {
                    return Err(BuildError::Config(ConfigError::new(
                        "tls",
                        format!(
                            "the certificate is for {}, not for node {}",
                            c.tls.role, self.id
                        ),
                    )));
                }
                let transport = Transport::bind(c.transport.clone(), &c.tls)
                    .map_err(|e| BuildError::Config(ConfigError::new("listen", e.to_string())))?;
                let bound = transport.local_addr().map_err(io)?;
                Some(Link {
                    transport,
                    advertise: c.advertise.clone().unwrap_or_else(|| bound.to_string()),
                    node_timeout: c.node_timeout,
                    placement: c.placement.clone(),
                })
            }
        };
        let incarnation = crate::incarnation::next(&dir).map_err(io)?;
        let (log, sm) = raft_store::open(dir.join("raft"), &self.store)?;
        let view = sm.view();
        // Local mode has one voter, which elects itself at once: the timing does not matter.
        let timing = RaftTiming::for_node_timeout(
            self.cluster
                .as_ref()
                .map_or(Duration::from_secs(1), |c| c.node_timeout),
        );
        let config = RaftConfig {
            cluster_name: "floe".into(),
            heartbeat_interval: timing.heartbeat_ms,
            election_timeout_min: timing.election_min_ms,
            election_timeout_max: timing.election_max_ms,
            enable_pre_vote: Some(true),
            // A restarted leader must win a new election before it leads again. openraft can
            // instead resume the term it led before the restart, but our leader replicates
            // entries that are not yet durable on its own disk: after a crash of every node its
            // log may end before entries its followers hold, and in the old term it would write
            // new entries under those same log ids, which the followers take for the ones they
            // have, and the logs diverge. One voter alone has no followers to diverge from.
            enable_leader_restore: Some(link.is_none()),
            snapshot_policy: raft_store::types::openraft::SnapshotPolicy::LogsSinceLast(10_000),
            max_in_snapshot_log_to_keep: 1_000,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| raft_err(&e))?);
        let raft = match &link {
            None => Raft::new(self.id, config, LocalOnly, log, sm).await,
            Some(l) => {
                let net = QuicRaftNetwork::new(self.id, l.transport.clone());
                Raft::new(self.id, config, net, log, sm).await
            }
        }
        .map_err(|e| raft_err(&e))?;
        let initialized = raft.is_initialized().await.map_err(|e| raft_err(&e))?;
        match (&self.cluster, &link) {
            (None, _) => {
                if !initialized {
                    let members =
                        BTreeMap::from([(self.id, NodeInfo::new("local", NodeRole::Voter))]);
                    raft.initialize(members).await.map_err(|e| raft_err(&e))?;
                }
            }
            (Some(c), Some(l)) => {
                if !initialized && !c.bootstrap.is_empty() {
                    if !c.bootstrap.iter().any(|(id, _)| *id == self.id) {
                        return Err(BuildError::Config(ConfigError::new(
                            "bootstrap",
                            format!("the voters do not include this node ({})", self.id),
                        )));
                    }
                    let members: BTreeMap<NodeId, NodeInfo> = c
                        .bootstrap
                        .iter()
                        .map(|(id, addr)| {
                            // An empty address for this node means "the address I advertise".
                            let addr = if addr.is_empty() && *id == self.id {
                                l.advertise.clone()
                            } else {
                                addr.clone()
                            };
                            (*id, NodeInfo::new(addr, NodeRole::Voter))
                        })
                        .collect();
                    raft.initialize(members).await.map_err(|e| raft_err(&e))?;
                }
            }
            (Some(_), None) => {
                return Err(BuildError::Config(ConfigError::new(
                    "cluster",
                    "cluster mode without a transport",
                )));
            }
        }
        let rt = Runtime::new(
            self.id,
            incarnation,
            dir.clone(),
            raft.clone(),
            view,
            self.registry,
            self.app_data,
            self.runtime,
            link,
        );
        if let (Some(c), Some(l)) = (&self.cluster, &rt.link) {
            let service = NodeService {
                raft_service: RaftService::new(raft.clone(), dir.join("incoming")).map_err(io)?,
                rt: Arc::downgrade(&rt),
                admin: Admin::default(),
            };
            l.transport.serve(Arc::new(service));
            let me = self.id;
            let member =
                |m: &raft_store::types::openraft::RaftMetrics<raft_store::types::TypeConfig>| {
                    m.current_leader.is_some()
                        && m.membership_config
                            .membership()
                            .nodes()
                            .any(|(id, _)| *id == me)
                };
            if !member(&raft.metrics().borrow_watched()) && !c.join.is_empty() {
                let deadline = std::time::Instant::now() + c.startup_timeout;
                crate::membership::join(
                    &l.transport,
                    &c.join,
                    me,
                    &l.advertise,
                    c.join_as_voter,
                    deadline,
                )
                .await
                .map_err(|e| BuildError::Register(format!("joining through {:?}: {e}", c.join)))?;
            }
            raft.wait(Some(c.startup_timeout))
                .metrics(member, "a leader and membership")
                .await
                .map_err(|e| raft_err(&e))?;
            tokio::spawn(crate::membership::failure_detector(
                Arc::downgrade(&rt),
                l.node_timeout,
            ));
            tokio::spawn(crate::membership::self_fence(
                Arc::downgrade(&rt),
                l.node_timeout / 2,
            ));
        } else {
            raft.wait(Some(Duration::from_secs(30)))
                .state(ServerState::Leader, "single node elects itself")
                .await
                .map_err(|e| raft_err(&e))?;
        }
        // The registration may meet a leader change or a lost connection (right after a
        // restart, under faults): it is idempotent, so try again until the startup timeout.
        let startup = self
            .cluster
            .as_ref()
            .map_or(Duration::from_secs(30), |c| c.startup_timeout);
        let deadline = std::time::Instant::now() + startup;
        let mut backoff = Duration::from_millis(20);
        loop {
            match rt.register().await {
                Ok(()) => break,
                Err(RegisterError::Refused(e)) => return Err(BuildError::Register(e)),
                Err(e @ RegisterError::Incarnation(_)) => {
                    return Err(BuildError::Register(e.to_string()));
                }
                Err(RegisterError::Transient(e)) if std::time::Instant::now() >= deadline => {
                    return Err(BuildError::Register(e));
                }
                Err(RegisterError::Transient(e)) => {
                    tracing::info!(error = %e, "registering the node failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
        tokio::spawn(crate::runtime::session_clock(Arc::downgrade(&rt)));
        tokio::spawn(fail_stop(Arc::downgrade(&rt)));
        tracing::info!(node = self.id, incarnation, dir = %dir.display(), "node started");
        Ok(Node { rt, raft })
    }
}

/// Raft timing derived from the node timeout.
///
/// openraft (pinned version) gives a follower's leader a lease of `election_timeout_max`; a
/// follower starts an election (Pre-Vote first) only after that lease *and* its sampled election
/// timeout have passed without a message from the leader, and a voter grants no vote while its
/// own lease runs. A dead leader is therefore replaced after a silence of `max + [min, max)`, not
/// `[min, max)`; the lease cannot be configured apart from `max`. With `max` = 2/3 of the node
/// timeout and `min` = `max` / 2 (both rounded up), that silence is 1–1.33 node timeouts (the
/// default 600 ms gives 200–400 ms, i.e. 600–800 ms of silence, down from 1200–1600 ms with the
/// fixed 400–800 ms used before): a dead leader is replaced about when its death is declared, and
/// (below the cap) a leader is never deposed by a shorter silence than the one that gets a
/// follower declared down. Pre-Vote and the lease still keep one starved follower from disturbing
/// a live leader: a quorum must have stopped hearing from it. `max` is capped at 800 ms, the
/// timing used before, so a long node timeout chosen for a loaded machine keeps elections exactly
/// as tolerant as they were. The heartbeat stays at 100 ms unless the election timeout needs a
/// shorter one.
///
/// Linearizability does not depend on this timing: Floe's reads go through a read index
/// (`ReadPolicy::ReadIndex`: a quorum acknowledgement of a heartbeat sent after the read
/// started), never through the leader lease (`LeaseRead`). The lease only bounds how long such a
/// read waits for that acknowledgement before failing as unavailable (clients retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RaftTiming {
    pub(crate) heartbeat_ms: u64,
    pub(crate) election_min_ms: u64,
    pub(crate) election_max_ms: u64,
}

impl RaftTiming {
    pub(crate) fn for_node_timeout(node_timeout: Duration) -> Self {
        let max = (node_timeout.as_millis() * 2).div_ceil(3).clamp(40, 800) as u64;
        let min = max.div_ceil(2);
        Self {
            heartbeat_ms: (min / 2).clamp(1, 100),
            election_min_ms: min,
            election_max_ms: max,
        }
    }
}

/// A running Floe node with its actor runtime.
pub struct Node {
    rt: Arc<Runtime>,
    raft: Raft,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.rt.node)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Start building a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder {
            id: 1,
            data_dir: None,
            runtime: RuntimeConfig::default(),
            store: StoreConfig::default(),
            registry: HashMap::new(),
            app_data: AppData::new(),
            duplicate: None,
            cluster: None,
        }
    }

    /// A reference to actor `key` of type `A`.
    pub fn actor<A: Actor>(&self, key: impl Into<String>) -> ActorRef<A> {
        let caller: Arc<dyn Caller> = self.rt.clone();
        ActorRef::new(Arc::downgrade(&caller), key.into())
    }
    /// A fresh request id of this node's own session, to pass to
    /// [`ActorRef::with_request_id`] (and to keep, to retry the call later). Its outcome stays
    /// retrievable for [`RuntimeConfig::retry_window`] after the last call made with it.
    ///
    /// # Errors
    /// [`crate::CallFailure::Unavailable`] if the session cannot be opened (no quorum).
    ///
    /// # Cancel safety
    /// Cancel safe: at worst a session is opened and left to expire.
    pub async fn new_request_id(&self) -> Result<raft_store::RequestId, crate::CallFailure> {
        let (id, _) = self.rt.begin_own().await?;
        self.rt.end_own(id, false);
        Ok(id)
    }

    /// Resolves with the reason once this node stopped on a fatal error (see
    /// [`RuntimeConfig::exit_on_fatal`]); pending forever while it is healthy.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn failed(&self) -> String {
        let mut rx = self.rt.failed.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return "the node is gone".into();
            }
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.rt.node
    }

    /// This node's incarnation (incremented at every start, and when it rejoins after being
    /// declared down).
    pub fn incarnation(&self) -> u64 {
        self.rt.incarnation()
    }

    /// The address other nodes and clients reach this node at (cluster mode).
    pub fn addr(&self) -> Option<String> {
        self.rt.link.as_ref().map(|l| l.advertise.clone())
    }

    /// The cluster as this node sees it: leader, term, members with roles and health.
    pub async fn cluster(&self) -> ClusterView {
        crate::cluster::cluster_view(&self.raft, &self.rt.view).await
    }

    /// Whether this node can serve: Raft has a leader and the directory has this node alive in
    /// its current incarnation.
    pub async fn ready(&self) -> bool {
        if self.rt.failure().is_some() {
            return false;
        }
        let leader = self
            .raft
            .metrics()
            .borrow_watched()
            .current_leader
            .is_some();
        let me = self.rt.view.node(self.rt.node).await.ok().flatten();
        leader && me.is_some_and(|r| r.alive && r.incarnation == self.rt.incarnation())
    }

    /// The node's metrics in the Prometheus/OpenMetrics text format: calls by outcome and their
    /// latency, commits, fencing rejections, activations, placements, Raft term and indexes.
    pub async fn metrics_text(&self) -> String {
        let m = self.raft.metrics().borrow_watched().clone();
        let g = &self.rt.metrics;
        let as_i64 = |v: Option<u64>| v.map_or(0, |v| v as i64);
        g.raft_term.set(m.current_term as i64);
        g.raft_last_log.set(as_i64(m.last_log_index));
        g.raft_committed
            .set(as_i64(m.local_committed.map(|c| c.index)));
        g.raft_applied.set(as_i64(m.last_applied.map(|a| a.index)));
        g.raft_leader.set(i64::from(m.current_leader == Some(m.id)));
        g.activations.set(self.rt.activations() as i64);
        let placed = self
            .rt
            .view
            .node(self.rt.node)
            .await
            .ok()
            .flatten()
            .map_or(0, |r| r.placements);
        g.placements.set(placed as i64);
        g.render()
    }

    /// A receiver of the cluster view, updated whenever Raft's metrics change.
    pub fn watch_cluster(&self) -> tokio::sync::watch::Receiver<ClusterView> {
        let raft = self.raft.clone();
        let view = self.rt.view.clone();
        let initial = ClusterView {
            this: self.rt.node,
            state: String::new(),
            leader: None,
            term: 0,
            last_applied: None,
            members: Vec::new(),
        };
        let (tx, rx) = tokio::sync::watch::channel(initial);
        tokio::spawn(async move {
            let mut metrics = raft.metrics();
            loop {
                let v = crate::cluster::cluster_view(&raft, &view).await;
                tx.send_if_modified(|cur| {
                    let changed = *cur != v;
                    *cur = v;
                    changed
                });
                tokio::select! {
                    r = metrics.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        rx
    }

    /// Number of live activations on this node.
    pub fn activations(&self) -> usize {
        self.rt.activations()
    }

    /// The node's Raft instance (metrics, advanced use).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Deactivate every actor (running their hooks) and stop Raft. Committed state is durable.
    ///
    /// # Errors
    /// [`ShutdownError`] if Raft did not stop cleanly; the node has stopped serving either way.
    ///
    /// # Cancel safety
    /// Not cancel safe: a dropped shutdown may leave Raft or the endpoint running; drop the
    /// process instead.
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        self.rt.shutdown().await;
        // Raft first (its replication would spin against a closed endpoint), then the endpoint.
        let stopped = self
            .raft
            .shutdown()
            .await
            .map_err(|e| ShutdownError::Raft(e.to_string()));
        if let Some(l) = &self.rt.link {
            l.transport.shutdown(Duration::from_millis(200)).await;
        }
        stopped
    }
}

/// The Raft network of a single-voter node: it has no peers, so every RPC is refused.
#[derive(Debug, Clone, Copy)]
struct LocalOnly;

#[derive(Debug, thiserror::Error)]
#[error("single-node mode has no network (target {0})")]
struct NoNetwork(NodeId);

impl RaftNetworkFactory<TypeConfig> for LocalOnly {
    type Network = NoPeer;
    async fn new_client(&mut self, target: NodeId, _node: &NodeInfo) -> NoPeer {
        NoPeer(target)
    }
}

struct NoPeer(NodeId);

impl NoPeer {
    fn err(&self) -> NetworkError<TypeConfig> {
        NetworkError::new(&NoNetwork(self.0))
    }
}

impl RaftNetworkV2<TypeConfig> for NoPeer {
    type SnapshotData = tokio::fs::File;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Network(self.err()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Network(self.err()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Network(self.err()))
    }
}

/// Watch the Raft core: once it stops on a fatal error, stop serving, and exit the process if so
/// configured. After a failed fsync nothing may be retried or believed: the data on disk may be
/// missing writes that were reported durable, so only a restart (which recovers from what is on
/// disk and catches up from the others) is safe.
async fn fail_stop(rt: std::sync::Weak<Runtime>) {
    use raft_store::types::openraft::error::Fatal;
    let mut metrics = match rt.upgrade() {
        Some(rt) => rt.raft.metrics(),
        None => return,
    };
    loop {
        let fatal = match &metrics.borrow_watched().running_state {
            // A normal stop (shutdown) is not a failure.
            Ok(()) | Err(Fatal::Stopped) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = fatal {
            let Some(rt) = rt.upgrade() else { return };
            rt.fatal(format!("fatal Raft error: {why}")).await;
            return;
        }
        if metrics.changed().await.is_err() {
            // The core is gone; what it reported last was read above.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_timing_follows_the_node_timeout() {
        let t = |ms| RaftTiming::for_node_timeout(Duration::from_millis(ms));
        // The default node timeout.
        assert_eq!(
            t(600),
            RaftTiming {
                heartbeat_ms: 100,
                election_min_ms: 200,
                election_max_ms: 400,
            }
        );
        // Long node timeouts keep the timing used before.
        for ms in [1_200, 2_000, 10_000, u64::MAX] {
            assert_eq!(
                t(ms),
                RaftTiming {
                    heartbeat_ms: 100,
                    election_min_ms: 400,
                    election_max_ms: 800,
                }
            );
        }
        for ms in [
            0, 1, 10, 50, 100, 299, 300, 301, 599, 600, 601, 1_199, 1_200, 10_000,
        ] {
            let timing = t(ms);
            // openraft accepts it.
            RaftConfig {
                heartbeat_interval: timing.heartbeat_ms,
                election_timeout_min: timing.election_min_ms,
                election_timeout_max: timing.election_max_ms,
                ..Default::default()
            }
            .validate()
            .unwrap_or_else(|e| panic!("node timeout {ms} ms: {e}"));
            // A leader is deposed only after a silence at least the node timeout (below the
            // cap), and the lease (max) spans at least three heartbeats.
            let silence = timing.election_min_ms + timing.election_max_ms;
            assert!(silence >= ms.min(1_200), "{ms}: {timing:?}");
            assert!(
                timing.election_max_ms >= 3 * timing.heartbeat_ms,
                "{ms}: {timing:?}"
            );
        }
    }
}

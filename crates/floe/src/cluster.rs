//! Cluster mode: the node's network service (what peers and clients may ask a node) and the
//! cluster view.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use floe_net::raft::RaftService;
use floe_net::{Peer, Service, SnapshotBody, TlsMaterial, TransportConfig};
use floe_proto::{
    AppendEntriesRequest, ErrorKind, MemberInfo, Reply, Request, Response, SnapshotHeader,
    SnapshotResponse, StreamAppendResult, WireError,
};
use futures::stream::BoxStream;
use raft_store::types::openraft::ChangeMembers;
use raft_store::types::{NodeId, NodeInfo, NodeRole, Raft, WatchReceiver};
use raft_store::{Command, NodeRecord, StateView};

use crate::link::hint;
use crate::placement::Placement;
use crate::runtime::Runtime;
use crate::wire::to_wire;

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
                        owner,
                        owner_addr: crate::link::node_addr(&rt.raft, owner),
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
                        .map(|a| crate::membership::openraft_elapsed(a).as_millis() as u64)
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

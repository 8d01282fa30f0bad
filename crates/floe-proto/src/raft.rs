//! The openraft type configuration and Raft's messages on the wire (the `raft` feature).
//!
//! The one module that names openraft's types: everything else uses the aliases defined here,
//! so that an upgrade of the pinned openraft alpha touches this file and the store's trait
//! impls only. Clients build without this feature and never compile openraft.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResult, NodeId};
use crate::rpc::{Request, Rpc, rpc};

pub use openraft;

/// Whether a node takes part in Raft votes or only hosts actors.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum NodeRole {
    /// A member of the Raft quorum (3 or 5 per cluster).
    #[default]
    Voter,
    /// A non-voting member that receives the log and hosts actors.
    Learner,
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRole::Voter => f.write_str("voter"),
            NodeRole::Learner => f.write_str("learner"),
        }
    }
}

/// What the Raft membership records about a node: where to reach it and its role.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's QUIC address, `host:port`.
    pub addr: String,
    /// The role the node was added with.
    pub role: NodeRole,
}

impl NodeInfo {
    /// A node reachable at `addr` with `role`.
    pub fn new(addr: impl Into<String>, role: NodeRole) -> Self {
        Self {
            addr: addr.into(),
            role,
        }
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.role, self.addr)
    }
}

openraft::declare_raft_types!(
    /// Floe's openraft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = NodeInfo,
);

/// A Raft log id (leader id and index).
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A Raft log entry.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// The persisted vote.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// Membership plus the log id it was committed at.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Metadata of a state machine snapshot.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// Raft membership configuration.
pub type Membership = openraft::Membership<NodeId, NodeInfo>;
/// Payload of a log entry.
pub type EntryPayload = openraft::EntryPayload<Command, NodeId, NodeInfo>;
/// A snapshot as openraft hands it around.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, tokio::fs::File>;
/// openraft's storage error.
pub type StorageError = openraft::StorageError<TypeConfig>;
/// openraft's configuration struct.
pub type RaftConfig = openraft::Config;
/// Callback that a log append reports its durability to.
pub type IOFlushed = openraft::storage::IOFlushed<TypeConfig>;
/// Log storage state (last purged, last log id).
pub type LogState = openraft::storage::LogState<TypeConfig>;
/// Trait giving `borrow_watched()` on openraft's metrics receivers.
pub use openraft::async_runtime::watch::WatchReceiver;

/// openraft's AppendEntries request.
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
/// openraft's AppendEntries response.
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
/// openraft's Vote request.
pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
/// openraft's Vote response.
pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
/// openraft's snapshot response.
pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
/// One reply of a pipelined append stream.
pub type StreamAppendResult = openraft::raft::StreamAppendResult<TypeConfig>;

/// openraft's RPCs between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RaftRequest {
    /// AppendEntries (also heartbeats); answered with [`AppendEntriesResponse`].
    AppendEntries(AppendEntriesRequest),
    /// RequestVote; answered with [`VoteResponse`].
    Vote(VoteRequest),
    /// Pre-vote; answered with [`VoteResponse`].
    PreVote(PreVote),
}

impl RaftRequest {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            RaftRequest::AppendEntries(_) => "append_entries",
            RaftRequest::Vote(_) => "vote",
            RaftRequest::PreVote(_) => "pre_vote",
        }
    }
}

/// A pre-vote: a [`VoteRequest`] that does not change the receiver's vote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVote(pub VoteRequest);

rpc!(AppendEntriesRequest => AppendEntriesResponse, |r| Request::Raft(RaftRequest::AppendEntries(r)));
rpc!(VoteRequest => VoteResponse, |r| Request::Raft(RaftRequest::Vote(r)));
rpc!(PreVote => VoteResponse, |r| Request::Raft(RaftRequest::PreVote(r)));

/// Describes a snapshot being sent on an [`crate::Open::Snapshot`] stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The sender's vote.
    pub vote: Vote,
    /// The snapshot's metadata.
    pub meta: SnapshotMeta,
    /// Size of the snapshot file in bytes.
    pub size: u64,
}

//! The envelopes exchanged between nodes and clients, and typed errors.
//!
//! Every bidirectional QUIC stream starts with one [`Open`] frame that says what the stream is:
//! a single request answered by one [`Response`] frame, a pipelined Raft append stream, or a
//! snapshot transfer.

use std::fmt;

use raft_store::types::{NodeId, SnapshotMeta, TypeConfig, Vote};
use raft_store::{ActorId, Command, CommandResult, RequestId};
use serde::{Deserialize, Serialize};

/// ALPN protocol id of Floe's QUIC connections.
pub const ALPN: &[u8] = b"floe/1";

/// openraft's AppendEntries request.
pub type AppendEntriesRequest = openraft_types::AppendEntriesRequest<TypeConfig>;
/// openraft's AppendEntries response.
pub type AppendEntriesResponse = openraft_types::AppendEntriesResponse<TypeConfig>;
/// openraft's Vote request.
pub type VoteRequest = openraft_types::VoteRequest<TypeConfig>;
/// openraft's Vote response.
pub type VoteResponse = openraft_types::VoteResponse<TypeConfig>;
/// openraft's snapshot response.
pub type SnapshotResponse = openraft_types::SnapshotResponse<TypeConfig>;
/// One reply of a pipelined append stream.
pub type StreamAppendResult = openraft_types::StreamAppendResult<TypeConfig>;

mod openraft_types {
    pub use raft_store::types::openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
        VoteRequest, VoteResponse,
    };
}

/// The first frame of every stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Open {
    /// One request; the server answers with one [`Response`] frame and finishes the stream.
    Request(Request),
    /// A pipelined Raft append stream: [`AppendEntriesRequest`] frames follow; the server answers
    /// each with a [`StreamAppendResult`] frame, in order. Node certificates only.
    AppendStream,
    /// A full snapshot transfer: `size` raw bytes of the snapshot file follow, then the server
    /// answers with one `Result<SnapshotResponse, WireError>` frame. Node certificates only.
    Snapshot(SnapshotHeader),
}

/// Describes a snapshot being sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The sender's vote.
    pub vote: Vote,
    /// The snapshot's metadata.
    pub meta: SnapshotMeta,
    /// Size of the snapshot file in bytes.
    pub size: u64,
}

/// A request on its own stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Raft AppendEntries (also heartbeats). Node certificates only.
    AppendEntries(AppendEntriesRequest),
    /// Raft RequestVote. Node certificates only.
    Vote(VoteRequest),
    /// Raft pre-vote. Node certificates only.
    PreVote(VoteRequest),
    /// A command forwarded to the leader for proposal. Node certificates only.
    Propose(Command),
    /// Ask the leader for a linearizable read point. Node certificates only.
    ReadIndex,
    /// An actor call, from a client or a gateway node.
    Call(CallRequest),
    /// Liveness probe; answered with [`Reply::Pong`].
    Ping,
    /// The nodes of the cluster and their addresses (for clients and joining nodes).
    Members,
    /// Add a node to the Raft membership (as learner, then voter if asked). Node and admin
    /// certificates; served by the leader.
    AddNode {
        /// The node to add.
        node: NodeId,
        /// Its QUIC address.
        addr: String,
        /// Make it a voter once it caught up.
        voter: bool,
    },
    /// Remove a node from the Raft membership. Node and admin certificates; served by the
    /// leader.
    RemoveNode {
        /// The node to remove.
        node: NodeId,
    },
    /// Bootstrap a new cluster with these first voters (id → address). Served by a pristine
    /// node that is one of them. Node or admin certificates only.
    Initialize {
        /// The first voters.
        voters: Vec<(NodeId, String)>,
    },
    /// This node's view of the cluster.
    Status,
    /// Open a client session (committed through the log); answered with [`Reply::Session`].
    OpenSession,
}

/// What [`Request::Status`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The answering node.
    pub node: NodeId,
    /// Its Raft state (`Leader`, `Follower`, `Learner`, ...).
    pub state: String,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// The last log index it applied.
    pub last_applied: Option<u64>,
    /// Every member.
    pub members: Vec<MemberStatus>,
}

/// One member in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
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
    /// Actors placed on it.
    pub actors: u64,
    /// Milliseconds since the leader heard from it (reported by the leader only).
    pub last_ack_ms: Option<u64>,
}

/// One node as [`Request::Members`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The node.
    pub node: NodeId,
    /// Its QUIC address.
    pub addr: String,
    /// Whether it votes.
    pub voter: bool,
    /// Whether the directory considers it alive.
    pub alive: bool,
    /// Whether it is the current leader.
    pub leader: bool,
}

impl Request {
    /// Who may send this request.
    pub fn access(&self) -> Access {
        match self {
            Request::Call(_)
            | Request::Ping
            | Request::Members
            | Request::Status
            | Request::OpenSession => Access::Any,
            Request::AddNode { .. } | Request::RemoveNode { .. } | Request::Initialize { .. } => {
                Access::Admin
            }
            _ => Access::Node,
        }
    }

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::AppendEntries(_) => "append_entries",
            Request::Vote(_) => "vote",
            Request::PreVote(_) => "pre_vote",
            Request::Propose(_) => "propose",
            Request::ReadIndex => "read_index",
            Request::Call(_) => "call",
            Request::Ping => "ping",
            Request::Members => "members",
            Request::AddNode { .. } => "add_node",
            Request::RemoveNode { .. } => "remove_node",
            Request::Initialize { .. } => "initialize",
            Request::Status => "status",
            Request::OpenSession => "open_session",
        }
    }
}

/// Which certificate roles may send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Clients, admins and nodes.
    Any,
    /// Admins and nodes (membership changes).
    Admin,
    /// Nodes only (Raft and node-to-node requests).
    Node,
}

/// An actor call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRequest {
    /// The actor called.
    pub actor: ActorId,
    /// The stable type name of the message.
    pub message: String,
    /// The serialized message.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Identifies the call across retries.
    pub request: RequestId,
    /// Time the caller still waits, in milliseconds; the server gives up after it.
    pub timeout_ms: u32,
    /// Actors waiting on this call (for the call-cycle rule), outermost first.
    pub chain: Vec<ActorId>,
    /// Nodes this call already crossed; a node forwards a call at most once.
    pub hops: u8,
    /// Every call of the request's session numbered below this has finished for its client:
    /// their outcomes may be forgotten. 0 says nothing.
    pub acked: u64,
    /// This request id may have been sent before (a retry, a hedge, a re-run): its answer must
    /// be fixed in the log, never computed afresh.
    pub retry: bool,
}

/// A successful answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to [`Request::AppendEntries`].
    AppendEntries(AppendEntriesResponse),
    /// Answer to [`Request::Vote`] and [`Request::PreVote`].
    Vote(VoteResponse),
    /// Answer to [`Request::Propose`]: the command's result once applied on the leader, and
    /// the log index to wait for before reading it locally.
    Proposed {
        /// The command's result.
        result: CommandResult,
        /// Index of the entry that carried it.
        index: u64,
    },
    /// Answer to [`Request::ReadIndex`]: the log index a linearizable read must wait for.
    ReadIndex {
        /// Apply at least up to this index before reading.
        index: u64,
    },
    /// Answer to [`Request::Call`]: the serialized reply, and the node that owns the actor
    /// (callers cache it and go there directly).
    Call {
        /// The handler's serialized reply.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        /// The node that ran the call.
        owner: NodeId,
        /// Its address, if the answering node knows it (clients then go to it directly).
        owner_addr: Option<String>,
    },
    /// Answer to [`Request::Members`].
    Members(Vec<MemberInfo>),
    /// Answer to [`Request::Status`].
    Status(StatusReport),
    /// Answer to [`Request::Ping`].
    Pong,
    /// Answer to [`Request::OpenSession`].
    Session {
        /// The new session's id, for [`RequestId::session`].
        id: u64,
    },
}

/// The answer frame of a [`Open::Request`] stream.
pub type Response = Result<Reply, WireError>;

/// Where a caller should go instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHint {
    /// The node's id.
    pub node: NodeId,
    /// Its QUIC address.
    pub addr: String,
}

/// What went wrong, named by what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The actor lives elsewhere: re-route (to `hint` if given).
    NotOwner {
        /// The owner, if known.
        hint: Option<NodeHint>,
    },
    /// Only the leader can do this: re-route to `leader` if given.
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeHint>,
    },
    /// The server cannot serve now (no quorum, shutting down, overloaded): back off and retry.
    Unavailable,
    /// The deadline passed; the outcome is unknown: retry with the same request id.
    Timeout,
    /// The actor's handler returned an error (its serialized form): give up and report it.
    Rejected(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The request is malformed or names something unknown: give up and fix the request.
    BadRequest,
    /// The peer's certificate does not allow this request: give up.
    Forbidden,
    /// A server-side failure (storage, bug): back off; retry with the same request id.
    Internal,
    /// The handler panicked; the actor's state was rolled back: give up.
    Panicked,
    /// The actor's activate hook failed: give up (or retry later).
    ActivationFailed,
    /// The call would wait on an actor that waits on the caller: give up.
    CallCycle(Vec<ActorId>),
    /// A message, reply or state exceeds the node's size limit; nothing was applied. Give up.
    TooLarge,
    /// The request's outcome is no longer remembered (its session expired, or its client
    /// acknowledged it): it may or may not have been applied, and retrying cannot tell. Give up
    /// and report the outcome as unknown.
    Expired,
}

/// The caller's next move for an [`ErrorKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the same request elsewhere.
    Reroute,
    /// Wait, then retry (with the same request id).
    BackOff,
    /// The outcome is unknown: retry with the same request id.
    RetrySameId,
    /// Retrying will not help.
    GiveUp,
}

impl ErrorKind {
    /// What the caller should do next.
    pub fn action(&self) -> Action {
        match self {
            ErrorKind::NotOwner { .. } | ErrorKind::NotLeader { .. } => Action::Reroute,
            ErrorKind::Unavailable | ErrorKind::Internal => Action::BackOff,
            ErrorKind::Timeout => Action::RetrySameId,
            ErrorKind::Rejected(_)
            | ErrorKind::BadRequest
            | ErrorKind::Forbidden
            | ErrorKind::Panicked
            | ErrorKind::ActivationFailed
            | ErrorKind::CallCycle(_)
            | ErrorKind::Expired
            | ErrorKind::TooLarge => Action::GiveUp,
        }
    }
}

/// A typed error sent over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Human-readable detail.
    pub message: String,
}

impl WireError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for WireError {}

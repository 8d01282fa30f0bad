//! The requests nodes and clients exchange, grouped in sub-protocols, each request with the type
//! of its answer.
//!
//! Every bidirectional QUIC stream starts with one [`Open`] frame that says what the stream is.
//! A [`Request`] is answered by one frame holding `Result<R::Reply, WireError>` for the request
//! type `R` that was sent (see [`Rpc`]): the caller decodes exactly the type it asked for, and
//! the server can only build an [`Answer`] of the right type, so neither side ever handles a
//! reply that does not belong to its request.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::codec::{self, FrameError};
use crate::command::{ActorId, Command, CommandResult, NodeId, RequestId};
use crate::error::WireError;

/// ALPN protocol id of Floe's QUIC connections.
pub const ALPN: &[u8] = b"floe/1";

/// A request of the wire protocol, and the type its answer carries.
pub trait Rpc: Into<Request> + Clone + std::fmt::Debug + Send + 'static {
    /// What a successful answer carries.
    type Reply: Serialize + DeserializeOwned + std::fmt::Debug + Send + 'static;

    /// The encoded answer to this request: `reply` is the result for exactly this request type.
    fn answer(&self, reply: Result<Self::Reply, WireError>) -> Answer {
        Answer::of::<Self>(reply)
    }
}

/// An encoded answer frame (length prefix and body): `Result<R::Reply, WireError>` for the
/// request `R` it answers. Built by [`Rpc::answer`], [`Answer::of`] or [`Answer::error`], so it
/// always matches its request; sent as it is, in one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer(bytes::Bytes);

/// The frame of a value, with no limit but the length prefix's own.
fn frame<T: Serialize>(value: &T) -> Result<bytes::Bytes, FrameError> {
    codec::encode_frame(value, u32::MAX as usize)
}

impl Answer {
    /// The answer to a request of type `R` (for when the request was moved into its handler).
    pub fn of<R: Rpc>(reply: Result<R::Reply, WireError>) -> Self {
        match frame(&reply) {
            Ok(f) => Self(f),
            Err(e) => Self::error(WireError::new(
                crate::ErrorKind::Internal,
                format!("cannot encode the answer: {e}"),
            )),
        }
    }

    /// An error answer, valid for any request: an `Err` encodes the same whatever the reply
    /// type is.
    pub fn error(e: WireError) -> Self {
        let reply: Result<(), WireError> = Err(e);
        let plain: Result<(), WireError> =
            Err(WireError::new(crate::ErrorKind::Internal, String::new()));
        // Only a message beyond the encoder's limit fails to encode; then the kind is kept apart
        // from it, and an empty body (which the caller reads as malformed) is the last resort.
        let f = frame(&reply)
            .or_else(|_| frame(&plain))
            .unwrap_or_else(|_| bytes::Bytes::from_static(&[0; codec::LEN_BYTES]));
        Self(f)
    }

    /// The whole frame: length prefix and body.
    pub fn frame(&self) -> &[u8] {
        &self.0
    }

    /// The frame body.
    pub fn body(&self) -> &[u8] {
        &self.0[codec::LEN_BYTES..]
    }

    /// Decode as the answer to request type `R`.
    ///
    /// # Errors
    /// [`FrameError::Malformed`] if the body is not a `Result<R::Reply, WireError>`.
    pub fn decode<R: Rpc>(&self) -> Result<Result<R::Reply, WireError>, FrameError> {
        codec::decode_body(self.body())
    }
}

/// The first frame of every stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Open {
    /// One request; the server answers with one [`Answer`] frame and finishes the stream.
    Request(Request),
    /// A pipelined Raft append stream: `AppendEntriesRequest` frames follow; the server answers
    /// each with a `Result<StreamAppendResult, WireError>` frame, in order. Node certificates
    /// only.
    #[cfg(feature = "raft")]
    AppendStream,
    /// A full snapshot transfer: `size` raw bytes of the snapshot file follow, then the server
    /// answers with one `Result<SnapshotResponse, WireError>` frame. Node certificates only.
    #[cfg(feature = "raft")]
    Snapshot(crate::raft::SnapshotHeader),
}

/// A request on its own stream, by sub-protocol. Each sub-protocol has one dispatch on the
/// server.
///
/// The variants that exist only with the `raft` feature come last, so that the encoding of the
/// others is the same with and without it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Actor calls and client sessions, from clients and from nodes.
    Actor(ActorRequest),
    /// Cluster membership and status, from clients, admins and nodes.
    Admin(AdminRequest),
    /// Proposals and read points, from a node to the leader. Node certificates only.
    Leader(LeaderRequest),
    /// openraft's RPCs between nodes. Node certificates only.
    #[cfg(feature = "raft")]
    Raft(crate::raft::RaftRequest),
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

impl Request {
    /// Who may send this request.
    pub fn access(&self) -> Access {
        match self {
            Request::Actor(_) => Access::Any,
            Request::Admin(a) => match a {
                AdminRequest::Ping(_) | AdminRequest::Members(_) | AdminRequest::Status(_) => {
                    Access::Any
                }
                AdminRequest::AddNode(_)
                | AdminRequest::RemoveNode(_)
                | AdminRequest::Initialize(_) => Access::Admin,
            },
            Request::Leader(_) => Access::Node,
            #[cfg(feature = "raft")]
            Request::Raft(_) => Access::Node,
        }
    }

    /// How long the sender waits for the answer, when the request says so (a call does): the
    /// server may take that long instead of its default request deadline.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        match self {
            Request::Actor(ActorRequest::Call(c)) => {
                Some(std::time::Duration::from_millis(u64::from(c.timeout_ms)))
            }
            _ => None,
        }
    }

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Actor(ActorRequest::Call(_)) => "call",
            Request::Actor(ActorRequest::OpenSession(_)) => "open_session",
            Request::Admin(a) => match a {
                AdminRequest::Ping(_) => "ping",
                AdminRequest::Members(_) => "members",
                AdminRequest::Status(_) => "status",
                AdminRequest::AddNode(_) => "add_node",
                AdminRequest::RemoveNode(_) => "remove_node",
                AdminRequest::Initialize(_) => "initialize",
            },
            Request::Leader(LeaderRequest::Propose(_)) => "propose",
            Request::Leader(LeaderRequest::ReadIndex(_)) => "read_index",
            #[cfg(feature = "raft")]
            Request::Raft(r) => r.name(),
        }
    }
}

/// Declares that `$req` is answered with `$reply`, and how it is wrapped in a [`Request`].
macro_rules! rpc {
    ($req:ty => $reply:ty, $wrap:expr) => {
        impl Rpc for $req {
            type Reply = $reply;
        }
        impl From<$req> for Request {
            fn from(r: $req) -> Self {
                $wrap(r)
            }
        }
    };
}
#[cfg(feature = "raft")]
pub(crate) use rpc;

// ---- The actor protocol ----

/// Actor calls and client sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ActorRequest {
    /// An actor call; answered with [`CallReply`].
    Call(CallRequest),
    /// Open a client session; answered with [`SessionOpened`].
    OpenSession(OpenSession),
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

/// The answer to a [`CallRequest`]: the handler's serialized reply, and the node that owns the
/// actor (callers cache it and go there directly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallReply {
    /// The handler's serialized reply.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The node that ran the call.
    pub owner: NodeId,
    /// Its address, if the answering node knows it (clients then go to it directly).
    pub owner_addr: Option<String>,
}

rpc!(CallRequest => CallReply, |r| Request::Actor(ActorRequest::Call(r)));

/// Open a client session (committed through the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSession;

/// The answer to [`OpenSession`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOpened {
    /// The new session's id, for [`RequestId::session`].
    pub id: u64,
}

rpc!(OpenSession => SessionOpened, |r| Request::Actor(ActorRequest::OpenSession(r)));

// ---- The admin protocol ----

/// Cluster membership and status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Liveness probe.
    Ping(Ping),
    /// The nodes of the cluster and their addresses (for clients and joining nodes).
    Members(Members),
    /// The answering node's view of the cluster.
    Status(Status),
    /// Add a node to the Raft membership. Served by the leader.
    AddNode(AddNode),
    /// Remove a node from the Raft membership. Served by the leader.
    RemoveNode(RemoveNode),
    /// Bootstrap a new cluster. Served by a pristine node that is one of the first voters.
    Initialize(Initialize),
}

/// Liveness probe; answered with `()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping;

rpc!(Ping => (), |r| Request::Admin(AdminRequest::Ping(r)));

/// The nodes of the cluster and their addresses; answered with every [`MemberInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members;

rpc!(Members => Vec<MemberInfo>, |r| Request::Admin(AdminRequest::Members(r)));

/// One node as [`Members`] reports it.
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

/// The answering node's view of the cluster; answered with a [`StatusReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status;

rpc!(Status => StatusReport, |r| Request::Admin(AdminRequest::Status(r)));

/// What [`Status`] reports.
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

/// Add a node to the Raft membership (as learner, then voter if asked); answered with `()` once
/// the membership change is committed. Node and admin certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddNode {
    /// The node to add.
    pub node: NodeId,
    /// Its QUIC address.
    pub addr: String,
    /// Make it a voter once it caught up.
    pub voter: bool,
}

rpc!(AddNode => (), |r| Request::Admin(AdminRequest::AddNode(r)));

/// Remove a node from the Raft membership; answered with `()` once committed. Node and admin
/// certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveNode {
    /// The node to remove.
    pub node: NodeId,
}

rpc!(RemoveNode => (), |r| Request::Admin(AdminRequest::RemoveNode(r)));

/// Bootstrap a new cluster with these first voters (id → address); answered with `()`. Node or
/// admin certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Initialize {
    /// The first voters.
    pub voters: Vec<(NodeId, String)>,
}

rpc!(Initialize => (), |r| Request::Admin(AdminRequest::Initialize(r)));

// ---- The leader protocol ----

/// What a node asks of the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderRequest {
    /// Propose a command; answered with [`Proposed`].
    Propose(Propose),
    /// Ask for a linearizable read point; answered with [`ReadPoint`].
    ReadIndex(ReadIndex),
}

/// A command forwarded to the leader for proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Propose(pub Command);

/// The answer to [`Propose`]: the command's result once applied on the leader, and the log
/// index to wait for before reading it locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposed {
    /// The command's result.
    pub result: CommandResult,
    /// Index of the entry that carried it.
    pub index: u64,
}

rpc!(Propose => Proposed, |r| Request::Leader(LeaderRequest::Propose(r)));

/// Ask the leader for a linearizable read point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadIndex;

/// The answer to [`ReadIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPoint {
    /// Apply at least up to this index before reading.
    pub index: u64,
}

rpc!(ReadIndex => ReadPoint, |r| Request::Leader(LeaderRequest::ReadIndex(r)));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn an_error_answer_decodes_as_the_answer_to_any_request() {
        let e = WireError::new(ErrorKind::Unavailable, "no quorum");
        let a = Answer::error(e.clone());
        assert_eq!(a.decode::<Status>(), Ok(Err(e.clone())));
        assert_eq!(a.decode::<CallRequest>(), Ok(Err(e.clone())));
        assert_eq!(a.decode::<Ping>(), Ok(Err(e)));
    }

    #[test]
    fn an_answer_decodes_as_its_own_request_type() {
        let reply = SessionOpened { id: 7 };
        let a = OpenSession.answer(Ok(reply));
        assert_eq!(a.decode::<OpenSession>(), Ok(Ok(reply)));
        let members = Members.answer(Ok(vec![]));
        assert_eq!(members.decode::<Members>(), Ok(Ok(vec![])));
    }

    #[test]
    fn sub_protocol_tags_do_not_depend_on_the_raft_feature() {
        // The first byte of a request is its sub-protocol: clients built without the `raft`
        // feature must encode the same tags as nodes built with it.
        let tag = |r: Request| codec::encode_body(&r).map(|b| b[0]);
        assert_eq!(tag(OpenSession.into()), Ok(0));
        assert_eq!(tag(Status.into()), Ok(1));
        assert_eq!(tag(ReadIndex.into()), Ok(2));
        let open = codec::encode_body(&Open::Request(Ping.into())).map(|b| b[0]);
        assert_eq!(open, Ok(0));
    }

    #[test]
    fn access_follows_the_sub_protocol() {
        assert_eq!(Request::from(Status).access(), Access::Any);
        assert_eq!(
            Request::from(RemoveNode { node: 1 }).access(),
            Access::Admin
        );
        assert_eq!(Request::from(ReadIndex).access(), Access::Node);
    }
}

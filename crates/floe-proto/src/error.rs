//! Typed errors of the wire, named by what the caller should do next.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::{ActorId, NodeId};

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

//! Errors of actor calls.

use floe_proto::ActorId;
use floe_proto::NodeId;

/// Why a call failed, without the handler's error type (the runtime's view).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The handler returned an error (serialized); the actor's state was rolled back.
    #[error("rejected by the handler: {display}")]
    Rejected {
        /// The serialized error.
        error: Vec<u8>,
        /// Its display text.
        display: String,
    },
    /// The handler panicked; the actor's state was rolled back.
    #[error("handler panicked: {0}")]
    Panicked(String),
    /// The actor's activate hook failed; no activation was kept.
    #[error("activation failed: {0}")]
    ActivationFailed(String),
    /// The call would wait on an actor that is waiting on the caller (A→B→A): refused.
    #[error("call cycle: {0:?}")]
    CallCycle(Vec<ActorId>),
    /// The actor is owned by another node.
    #[error("not the owner (owner: {0:?})")]
    NotOwner(Option<NodeId>),
    /// The node cannot serve the call now (no quorum, mailbox full, shutting down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The deadline passed; the call may or may not have taken effect. Retry with the same
    /// request id to find out.
    #[error("timed out; the outcome is unknown")]
    Timeout,
    /// The call's outcome is no longer remembered (its session expired, or the retry came after
    /// the caller had let the request go): it may or may not have taken effect, and no retry can
    /// tell. It was not applied a second time.
    #[error("the request expired; the outcome is unknown")]
    Expired,
    /// A message, reply or state is larger than the node's limit; nothing was applied.
    #[error("too large: {0}")]
    TooLarge(String),
    /// Unknown actor type or message, or an undecodable payload.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Shutdown,
}

impl CallFailure {
    /// Whether the caller knows the call had no effect (retrying is always safe with the same
    /// request id; this says whether a retry is needed to find out).
    pub fn outcome_known(&self) -> bool {
        !matches!(
            self,
            CallFailure::Timeout | CallFailure::Expired | CallFailure::Unavailable(_)
        )
    }
}

/// Why a typed call failed. `E` is the handler's error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError<E> {
    /// The handler returned `E`; the actor's state was rolled back. Do not retry blindly.
    #[error("rejected: {0}")]
    Rejected(E),
    /// Any other failure; see [`CallFailure`] for what to do.
    #[error(transparent)]
    Failed(#[from] CallFailure),
}

impl<E> CallError<E> {
    /// The handler's error, if that is what failed the call.
    pub fn rejected(&self) -> Option<&E> {
        match self {
            CallError::Rejected(e) => Some(e),
            CallError::Failed(_) => None,
        }
    }

    /// The runtime failure, if it was not the handler's error.
    pub fn failure(&self) -> Option<&CallFailure> {
        match self {
            CallError::Rejected(_) => None,
            CallError::Failed(f) => Some(f),
        }
    }
}

/// The durable state of an actor could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("actor state: {0}")]
pub struct StateError(pub String);

//! The wire forms of a call for the node and the client: the one mapping between a runtime
//! failure and the error the wire carries, and the encoding of messages and replies. Not a
//! public API.

use floe_proto::{ErrorKind, WireError};
use raft_store::types::Raft;

use crate::error::{CallError, CallFailure};

/// A runtime failure as the wire carries it.
pub(crate) fn to_wire(raft: &Raft, f: CallFailure) -> WireError {
    let msg = f.to_string();
    let kind = match f {
        CallFailure::Rejected { error, .. } => ErrorKind::Rejected(error),
        CallFailure::Panicked(_) => ErrorKind::Panicked,
        CallFailure::ActivationFailed(_) => ErrorKind::ActivationFailed,
        CallFailure::CallCycle(c) => ErrorKind::CallCycle(c),
        CallFailure::NotOwner(n) => ErrorKind::NotOwner {
            hint: n.and_then(|n| crate::link::hint(raft, n)),
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

/// Encode a message for a call; an unencodable message is a bad request.
pub fn encode_message<M: serde::Serialize>(name: &str, msg: &M) -> Result<Vec<u8>, CallFailure> {
    floe_proto::codec::encode_body(msg)
        .map_err(|e| CallFailure::BadRequest(format!("encoding {name}: {e}")))
}

/// Turn the raw outcome of a call into its typed form: decode the reply, or the handler's error
/// from a rejection.
pub fn typed_outcome<R, E>(raw: Result<Vec<u8>, CallFailure>) -> Result<R, CallError<E>>
where
    R: serde::de::DeserializeOwned,
    E: serde::de::DeserializeOwned,
{
    match raw {
        Ok(bytes) => floe_proto::codec::decode_body(&bytes).map_err(|e| {
            CallError::Failed(CallFailure::BadRequest(format!("decoding the reply: {e}")))
        }),
        Err(CallFailure::Rejected { error, display }) => {
            match floe_proto::codec::decode_body(&error) {
                Ok(e) => Err(CallError::Rejected(e)),
                Err(_) => Err(CallError::Failed(CallFailure::BadRequest(format!(
                    "undecodable handler error: {display}"
                )))),
            }
        }
        Err(other) => Err(CallError::Failed(other)),
    }
}

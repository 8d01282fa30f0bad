//! The wire forms of a call for the client and the node: the mapping from the error the wire
//! carries to a runtime failure, and the encoding of messages and replies. Not a public API.
//! (The other direction needs peers' addresses and lives with them in the node's link.)

use floe_proto::{ErrorKind, WireError};

use crate::error::{CallError, CallFailure};

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
    crate::codec::encode_body(msg)
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
        Ok(bytes) => crate::codec::decode_body(&bytes).map_err(|e| {
            CallError::Failed(CallFailure::BadRequest(format!("decoding the reply: {e}")))
        }),
        Err(CallFailure::Rejected { error, display }) => match crate::codec::decode_body(&error) {
            Ok(e) => Err(CallError::Rejected(e)),
            Err(_) => Err(CallError::Failed(CallFailure::BadRequest(format!(
                "undecodable handler error: {display}"
            )))),
        },
        Err(other) => Err(CallError::Failed(other)),
    }
}

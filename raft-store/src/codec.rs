//! Encoding of stored values and keys. The one place that chooses the on-disk format.

use serde::{Serialize, de::DeserializeOwned};

use crate::command::{ActorId, RequestId};
use crate::error::StoreError;

/// Largest value the decoder accepts; a corrupt length cannot make it allocate more.
pub const MAX_VALUE_BYTES: usize = 256 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_VALUE_BYTES>()
}

/// Encode a value for storage.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| StoreError::Encode(e.to_string()))
}

/// Decode a stored value; `what` names it in the error. Trailing bytes are corruption too.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, StoreError> {
    match bincode::serde::decode_from_slice::<T, _>(bytes, config()) {
        Ok((v, used)) if used == bytes.len() => Ok(v),
        Ok((_, used)) => Err(StoreError::Corrupt {
            what,
            reason: format!("{} trailing bytes", bytes.len() - used),
        }),
        Err(e) => Err(StoreError::Corrupt {
            what,
            reason: e.to_string(),
        }),
    }
}

/// Key of a log entry: its index, big endian, so sled orders keys by index.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Index of a log key.
pub fn log_index(key: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = key.try_into().map_err(|_| StoreError::Corrupt {
        what: "log key",
        reason: format!("{} bytes, expected 8", key.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// Key of an actor: both parts length-prefixed, so keys never collide.
pub fn actor_key(actor: &ActorId) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + actor.kind.len() + actor.key.len());
    push_part(&mut k, actor.kind.as_bytes());
    push_part(&mut k, actor.key.as_bytes());
    k
}

fn push_part(k: &mut Vec<u8>, part: &[u8]) {
    // Actor names are bounded far below 4 GiB by the wire protocol's frame limit.
    k.extend_from_slice(&(part.len() as u32).to_be_bytes());
    k.extend_from_slice(part);
}

/// Key of a request outcome: session, sequence number and sub-id, big-endian, so that the
/// outcomes of one session sort by sequence number.
pub fn request_key(req: RequestId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&req.session.to_be_bytes());
    k[8..16].copy_from_slice(&req.seq.to_be_bytes());
    k[16..].copy_from_slice(&req.sub.to_be_bytes());
    k
}

/// The request id of an outcome key.
pub fn request_of_key(key: &[u8]) -> Result<RequestId, StoreError> {
    let part = |i: usize| -> Result<u64, StoreError> {
        key.get(i * 8..i * 8 + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StoreError::Corrupt {
                what: "request key",
                reason: format!("{} bytes, expected 24", key.len()),
            })
    };
    if key.len() != 24 {
        return Err(StoreError::Corrupt {
            what: "request key",
            reason: format!("{} bytes, expected 24", key.len()),
        });
    }
    Ok(RequestId {
        session: part(0)?,
        seq: part(1)?,
        sub: part(2)?,
    })
}

/// Key of a session record.
pub fn session_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Key of the session clock, in the sessions tree (shorter than every session key).
pub const CLOCK_KEY: &[u8] = b"";

/// Key of a node record.
pub fn node_key(node: u64) -> [u8; 8] {
    node.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_keys_are_unambiguous() {
        assert_ne!(
            actor_key(&ActorId::new("ab", "c")),
            actor_key(&ActorId::new("a", "bc"))
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_corruption() {
        let ok = encode(&(1u64, String::from("x"))).expect("encode");
        assert!(decode::<(u64, String)>(&ok, "t").is_ok());
        let mut long = ok.clone();
        long.push(0);
        assert!(matches!(
            decode::<(u64, String)>(&long, "t"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<(u64, String)>(&ok[..ok.len() - 1], "t"),
            Err(StoreError::Corrupt { .. })
        ));
        // A length prefix announcing a huge string is refused without allocating it.
        let huge = [0u8, 0xfc, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<(u64, String)>(&huge, "t").is_err());
    }
}

//! How Floe encodes what an application defines: message bodies, replies, handler errors and
//! actor state.
//!
//! These are stored in the log and read back by later versions of the same code, so the
//! encoding describes itself: MessagePack with field names for structs and variant names for
//! enums. An added field with `#[serde(default)]` (or an `Option`), a removed field, and a renamed
//! field with `#[serde(alias = "old")]` all read what the previous version wrote. For a change
//! that is not additive, an actor declares a new state version and a migration function
//! (`#[actor(version = 2, migrate = path)]`), which is given the [`StoredState`] of the older
//! version.
//!
//! A stored state is a one-byte format tag (`1`: MessagePack), the state version as a 4-byte
//! little-endian integer, and the MessagePack body. Floe's own protocol (Raft, node-to-node and
//! client frames) is bincode and does not change with applications.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StateError;

/// The format tag of a stored state encoded as MessagePack.
const MESSAGEPACK: u8 = 1;

/// Bytes before the body of a stored state: the format tag and the version.
const HEADER: usize = 5;

/// A body could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(String);

/// Encode a message, a reply or a handler error.
///
/// # Errors
/// [`BodyError`] when the value's `Serialize` fails (a map with non-string keys is fine; a
/// custom `Serialize` that errors is not).
pub fn encode_body<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BodyError> {
    rmp_serde::to_vec_named(value).map_err(|e| BodyError(e.to_string()))
}

/// Decode a message, a reply or a handler error.
///
/// # Errors
/// [`BodyError`] when `bytes` is not MessagePack of a value `T` accepts (a required field
/// missing, a value of another type).
pub fn decode_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    rmp_serde::from_slice(bytes).map_err(|e| BodyError(e.to_string()))
}

/// Encode an actor's state as version `version`.
///
/// # Errors
/// [`StateError`] when the state's `Serialize` fails.
pub fn encode_state<T: Serialize + ?Sized>(version: u32, state: &T) -> Result<Vec<u8>, StateError> {
    let mut out = Vec::with_capacity(64);
    out.push(MESSAGEPACK);
    out.extend_from_slice(&version.to_le_bytes());
    rmp_serde::encode::write_named(&mut out, state)
        .map_err(|e| StateError(format!("encoding the state: {e}")))?;
    Ok(out)
}

/// A committed state as stored: its version and its body, not decoded yet. A migration
/// function receives it when the version is older than the actor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredState<'a> {
    version: u32,
    body: &'a [u8],
}

impl<'a> StoredState<'a> {
    /// Read the header of a stored state.
    ///
    /// # Errors
    /// [`StateError`] when the bytes are too short or of a format this code does not know.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, StateError> {
        let (header, body) = bytes.split_at_checked(HEADER).ok_or_else(|| {
            StateError(format!(
                "a stored state of {} bytes has no header",
                bytes.len()
            ))
        })?;
        let (format, version) = header.split_at(1);
        if format[0] != MESSAGEPACK {
            return Err(StateError(format!(
                "stored state format {} is unknown to this code",
                format[0]
            )));
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(version);
        Ok(Self {
            version: u32::from_le_bytes(v),
            body,
        })
    }

    /// The version the state was written as.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Decode the body as `T` (the type of the state at [`Self::version`]).
    ///
    /// # Errors
    /// [`StateError`] when the body is not a `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, StateError> {
        rmp_serde::from_slice(self.body)
            .map_err(|e| StateError(format!("decoding a state of version {}: {e}", self.version)))
    }
}

/// A function that reads a state stored at an older version.
pub type Migrate<A> = fn(StoredState<'_>) -> Result<A, StateError>;

/// Read a committed state for an actor whose state is at `version`: the same version decodes
/// directly, an older one goes through `migrate`, a newer one is refused (this code is older
/// than the code that wrote it).
///
/// # Errors
/// [`StateError`] saying which of these failed.
pub fn decode_state<A: DeserializeOwned>(
    bytes: &[u8],
    version: u32,
    migrate: Option<Migrate<A>>,
) -> Result<A, StateError> {
    let stored = StoredState::parse(bytes)?;
    match stored.version.cmp(&version) {
        std::cmp::Ordering::Equal => stored.decode(),
        std::cmp::Ordering::Greater => Err(StateError(format!(
            "the state is at version {}, newer than this code's {version}: run the newer code",
            stored.version
        ))),
        std::cmp::Ordering::Less => match migrate {
            Some(migrate) => migrate(stored),
            None => Err(StateError(format!(
                "the state is at version {} and this code's is {version}, with no migration: \
                 add #[actor(migrate = ...)]",
                stored.version
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        balance: i64,
        owner: String,
        note: String,
    }

    /// `owner` renamed to `holder`, `note` removed, `limit` added.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1Compatible {
        balance: i64,
        #[serde(alias = "owner")]
        holder: String,
        #[serde(default)]
        limit: u32,
        history: Option<Vec<i64>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V2 {
        cents: i128,
        holder: String,
    }

    fn v1() -> V1 {
        V1 {
            balance: 12,
            owner: "ada".into(),
            note: "gone".into(),
        }
    }

    fn from_v1(old: StoredState<'_>) -> Result<V2, StateError> {
        assert_eq!(old.version(), 1);
        let v: V1 = old.decode()?;
        Ok(V2 {
            cents: i128::from(v.balance) * 100,
            holder: v.owner,
        })
    }

    #[test]
    fn additive_changes_read_the_previous_state() {
        let stored = encode_state(1, &v1()).expect("encode");
        let read: V1Compatible = decode_state(&stored, 1, None).expect("compatible");
        assert_eq!(
            read,
            V1Compatible {
                balance: 12,
                holder: "ada".into(),
                limit: 0,
                history: None,
            }
        );
    }

    #[test]
    fn an_older_version_goes_through_the_migration_and_a_newer_is_refused() {
        let stored = encode_state(1, &v1()).expect("encode");
        let read = decode_state(&stored, 2, Some(from_v1 as Migrate<V2>)).expect("migrated");
        assert_eq!(
            read,
            V2 {
                cents: 1200,
                holder: "ada".into()
            }
        );
        let e = decode_state::<V2>(&stored, 2, None).expect_err("no migration");
        assert!(e.0.contains("no migration"), "{e}");
        let newer = encode_state(3, &v1()).expect("encode");
        let e = decode_state::<V1>(&newer, 1, None).expect_err("newer");
        assert!(e.0.contains("newer than this code"), "{e}");
    }

    #[test]
    fn malformed_states_are_errors_not_panics() {
        for bytes in [
            &b""[..],
            &[1, 0, 0][..],
            &[9, 1, 0, 0, 0, 0x80][..],
            &[1, 1, 0, 0, 0, 0xc1][..],
        ] {
            assert!(decode_state::<V1>(bytes, 1, None).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn enums_are_written_by_variant_name() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum Old {
            A,
            B(u8),
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum New {
            Z,
            B(u8),
            A,
        }
        let b = encode_body(&(Old::A, Old::B(3))).expect("encode");
        assert_eq!(decode_body::<(New, New)>(&b), Ok((New::A, New::B(3))));
    }
}

//! Errors of the store.

use std::io;
use std::path::PathBuf;

/// A failure of the sled store while serving Raft or the read API.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error (IO or its own corruption): the node should stop and be inspected.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value does not decode: the data directory is damaged.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// Which kind of value.
        what: &'static str,
        /// Why it does not decode.
        reason: String,
    },
    /// A value could not be encoded (a bug: all stored types are encodable).
    #[error("encode: {0}")]
    Encode(String),
    /// File IO failed (snapshots, fsync).
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The background flusher is gone: the store was shut down.
    #[error("the store is shut down")]
    Closed,
}

impl From<StoreError> for io::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io(e) => e,
            StoreError::Corrupt { .. } => io::Error::new(io::ErrorKind::InvalidData, e),
            other => io::Error::other(other),
        }
    }
}

/// Why [`crate::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is invalid; fix it.
    #[error(transparent)]
    Config(#[from] floe_proto::ConfigError),
    /// The data directory could not be created or read.
    #[error("data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
    /// sled could not open the database (in use by another process, or damaged).
    #[error("opening the database in {path}: {source}")]
    Sled {
        /// The database directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// Stored data does not decode, or recovery of an interrupted snapshot install failed.
    #[error("recovering the store: {0}")]
    Recover(#[from] StoreError),
}

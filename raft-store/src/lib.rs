//! Floe's replicated state: the openraft type configuration, the sled-backed Raft log, and the
//! state machine that holds membership, the placement directory and actor state.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use raft_store::{open, StoreConfig};
//! let (log_store, state_machine) = open("/var/lib/floe/raft", &StoreConfig::default())?;
//! let view = state_machine.view();
//! // hand log_store and state_machine to openraft::Raft::new(...), read through `view`.
//! # Ok(()) }
//! ```
//!
//! # Durability
//! `save_vote` returns and appends report completion only after the data is flushed to the
//! configured [`Durability`]. The state machine applies each batch of entries atomically with its
//! applied log id; it is flushed together with the log and on every snapshot.

pub mod codec;
pub mod directory;
mod error;
mod log_store;
mod overlay;
mod snapshot;
mod state_machine;
#[doc(hidden)]
pub mod testing;
mod trees;
pub mod types;
mod view;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

pub use error::{OpenError, StoreError};
pub use floe_proto::command::{self, *};
pub use log_store::{Durability, LogReader, LogStore};
pub use state_machine::{SnapshotBuilder, StateMachine};
pub use view::StateView;

/// Settings of the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// What a reported-durable write has survived.
    pub durability: Durability,
    /// Outcomes one client session may hold unacknowledged (exactly-once retries); every voter
    /// must use the same value.
    pub max_session_outcomes: u64,
    /// Client sessions open at once; every voter must use the same value.
    pub max_sessions: u64,
    /// sled's page cache size in bytes.
    pub cache_bytes: u64,
}

floe_proto::setters!(StoreConfig {
    durability: Durability,
    max_session_outcomes: u64,
    max_sessions: u64,
    cache_bytes: u64,
});

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Fsync,
            max_session_outcomes: directory::DEFAULT_MAX_SESSION_OUTCOMES,
            max_sessions: directory::DEFAULT_MAX_SESSIONS,
            cache_bytes: 256 << 20,
        }
    }
}

impl StoreConfig {
    /// Check the settings and hand them back.
    ///
    /// # Errors
    /// [`floe_proto::ConfigError`] names the first setting that is wrong.
    pub fn validate(self) -> Result<Self, floe_proto::ConfigError> {
        let check = floe_proto::ConfigError::check;
        check(
            self.max_session_outcomes > 0,
            "max_session_outcomes",
            "must be at least 1",
        )?;
        check(self.max_sessions > 0, "max_sessions", "must be at least 1")?;
        check(
            self.cache_bytes >= 1 << 20,
            "cache_bytes",
            "must be at least 1 MiB",
        )?;
        Ok(self)
    }
}

/// How long `open` waits for another handle of the same database to let go of its file lock
/// (sled releases it from a background thread after the last handle is dropped, so a store
/// reopened right after closing, or a process restarted while its predecessor exits, can see it
/// briefly held).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn open_db(path: &Path, cache_bytes: u64) -> Result<sled::Db, OpenError> {
    let started = std::time::Instant::now();
    loop {
        let res = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open();
        match res {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(source) => {
                return Err(OpenError::Sled {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// Open (or create) the store in `dir`: the log storage and the state machine for openraft.
///
/// # Errors
/// [`OpenError`] if the config is invalid, the directory cannot be used, the database is locked
/// by another process, or the stored data cannot be recovered.
pub fn open(
    dir: impl AsRef<Path>,
    config: &StoreConfig,
) -> Result<(LogStore, StateMachine), OpenError> {
    let config = config.clone().validate()?;
    let dir = dir.as_ref();
    let dir_err = |source| OpenError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    let snapshots = dir.join("snapshots");
    std::fs::create_dir_all(&snapshots).map_err(dir_err)?;
    let sled_dir = dir.join("sled");
    let db = open_db(&sled_dir, config.cache_bytes)?;
    let blobs = match config.durability {
        Durability::Fsync => Some(Arc::new(log_store::BlobSyncer::new(&sled_dir))),
        Durability::SledFlush => None,
    };
    let syncer = || -> Result<log_store::Syncer, OpenError> {
        let file = match config.durability {
            Durability::Fsync => Some(File::open(sled_dir.join("db")).map_err(dir_err)?),
            Durability::SledFlush => None,
        };
        Ok(log_store::Syncer::new(db.clone(), file, blobs.clone()))
    };
    let log = LogStore::new(&db, syncer()?)?;
    let limits = directory::Limits {
        max_session_outcomes: config.max_session_outcomes,
        max_sessions: config.max_sessions,
    };
    let sm = StateMachine::open(&db, snapshots, syncer()?, limits)?;
    Ok((log, sm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_refuses_a_wrong_setting_and_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = StoreConfig::default().cache_bytes(1024);
        match open(dir.path(), &small) {
            Err(OpenError::Config(e)) => assert_eq!(e.setting, "cache_bytes"),
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("a 1 KiB cache was accepted"),
        }
        let none = StoreConfig::default().max_sessions(0);
        assert_eq!(none.validate().map_err(|e| e.setting), Err("max_sessions"));
    }
}

//! openraft's storage conformance suite against the sled store.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb};
use raft_store::types::{StorageError, TypeConfig};
use raft_store::{LogStore, StateMachine, StoreConfig, open};

fn io_err(e: std::io::Error) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, e)
}

/// Each store gets a fresh directory, kept alive by the guard the suite holds.
struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(io_err)?;
        let (log, sm) = open(dir.path(), &StoreConfig::default())
            .map_err(|e| io_err(std::io::Error::other(e)))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder).await
}

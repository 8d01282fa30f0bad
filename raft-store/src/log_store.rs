//! The Raft log and vote on sled.
//!
//! Vote and log live in one `sled::Db`, so sled's ordered log keeps a vote write ordered with the
//! entries written before it. Appends return as soon as the entries are readable; their
//! completion is reported by a flusher thread that groups every append queued while it was
//! flushing into one `flush()` (plus, under [`Durability::Fsync`], an fsync of the blob files sled
//! wrote since the last flush and one `fdatasync` of the database file), and reports completions
//! in order.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Debug;
use std::fs::{self, File};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use openraft::OptionalSend;
use openraft::storage::{RaftLogReader, RaftLogStorage};

use crate::codec::{decode, encode, log_index, log_key};
use crate::error::StoreError;
use crate::types::{Entry, IOFlushed, LogId, LogState, TypeConfig, Vote};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";
/// Appends of at least this many entries go through one sled batch; smaller ones are plain
/// inserts (see `append`).
const BATCH_FROM: usize = 32;

/// How far a write must get before the store reports it durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Durability {
    /// sled's `flush()`, then an fsync of the blob files it wrote for large values (and of their
    /// directory), then `fdatasync` of the database file, which also flushes the device write
    /// cache. Survives power loss on hardware that honours flushes.
    #[default]
    Fsync,
    /// sled's `flush()` only: on Linux this is `sync_file_range`, which survives a process crash
    /// but not necessarily a power loss.
    SledFlush,
}

/// Flushes the database to the configured durability.
#[derive(Debug)]
pub(crate) struct Syncer {
    db: sled::Db,
    file: Option<File>,
    blobs: Option<Arc<BlobSyncer>>,
}

impl Syncer {
    /// `file` (the database file) and `blobs` are given under [`Durability::Fsync`] only.
    pub(crate) fn new(db: sled::Db, file: Option<File>, blobs: Option<Arc<BlobSyncer>>) -> Self {
        Self { db, file, blobs }
    }

    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        #[cfg(feature = "fault-injection")]
        fault::check()?;
        self.db.flush()?;
        if let Some(b) = &self.blobs {
            b.sync()?;
        }
        if let Some(f) = &self.file {
            f.sync_data()?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn blobs(&self) -> Option<Arc<BlobSyncer>> {
        self.blobs.clone()
    }
}

/// The storage fault hook of test-only builds: while the file named by `FLOE_FAULT_FSYNC`
/// exists, every flush fails as an `fdatasync` failing with EIO would.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::io;

    use crate::error::StoreError;

    pub(super) fn check() -> Result<(), StoreError> {
        let Some(path) = std::env::var_os("FLOE_FAULT_FSYNC") else {
            return Ok(());
        };
        if std::path::Path::new(&path).exists() {
            return Err(StoreError::Io(io::Error::from_raw_os_error(5)));
        }
        Ok(())
    }
}

/// Makes sled's blob files durable.
///
/// sled 0.34 writes any log item whose serialized size plus a 32-byte header exceeds
/// `segment_size / 4 - 20` bytes (131,052 with the default 512 KiB segments) to a file of its
/// own, `blobs/<lsn>`, with a plain `write_all`; neither the file nor the directory is ever
/// fsynced, and the log keeps only a pointer to it. Recovery skips a pointer whose blob is
/// missing, so after a power cut such a write could vanish from the middle of the log even though
/// the database file was fsynced. Log entries carrying actor states of a few MiB always take
/// this path.
///
/// Two ways out: split large values into chunks below the threshold, or fsync what sled wrote.
/// Chunking cannot guarantee anything: the threshold applies to each serialized page, and a
/// consolidated leaf holds up to 17 items, so a leaf of 10 KiB chunks is itself written as a
/// blob; a chunk small enough for every leaf to stay inline (about 7 KiB) would turn a 4 MiB
/// entry into some 600 keys and inserts and change the stored format of the log and of the
/// state machine. Fsyncing covers whatever sled decides to put in `blobs/`, costs nothing when
/// no blob was written (one directory read per flush), and leaves the formats alone. So each
/// flush fsyncs every blob file that is new or has grown since it was last synced, then the
/// directory if it gained entries, before the database file's `fdatasync` completes the flush.
#[derive(Debug)]
pub(crate) struct BlobSyncer {
    dir: PathBuf,
    state: Mutex<BlobState>,
}

#[derive(Debug, Default)]
pub(crate) struct BlobState {
    /// Length of each blob file when it was last fsynced. A file seen while sled was still
    /// writing it has grown since, and is synced again by a later flush (the one reporting the
    /// write that created it starts after the write finished).
    pub(crate) synced: HashMap<OsString, u64>,
    /// Fsyncs of the directory, for tests.
    pub(crate) dir_syncs: u64,
}

impl BlobSyncer {
    /// For the sled database in `sled_dir`.
    pub(crate) fn new(sled_dir: &Path) -> Self {
        Self {
            dir: sled_dir.join("blobs"),
            state: Mutex::new(BlobState::default()),
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        // Held across the fsyncs: the log's flusher and the state machine may sync at once, and
        // neither may record a file as synced before its fsync returned.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut present = HashMap::new();
        let mut new_names = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            // Read the length before the fsync: bytes written after it are caught next time.
            let len = match entry.metadata() {
                Ok(m) => m.len(),
                // Removed by sled's cleaner since the directory was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            if st.synced.get(&name) != Some(&len) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data()?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                }
                new_names |= !st.synced.contains_key(&name);
            }
            present.insert(name, len);
        }
        if new_names {
            File::open(&self.dir)?.sync_all()?;
            st.dir_syncs += 1;
        }
        st.synced = present;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, BlobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

enum Job {
    Append(IOFlushed),
    Wait(tokio::sync::oneshot::Sender<Result<(), io::Error>>),
}

fn copy_err(e: &StoreError) -> io::Error {
    io::Error::other(e.to_string())
}

fn flusher(syncer: Syncer, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let res = syncer.sync();
        if let Err(e) = &res {
            tracing::error!(error = %e, "log flush failed");
        }
        for job in jobs {
            let r = res.as_ref().map(|_| ()).map_err(copy_err);
            match job {
                Job::Append(cb) => cb.io_completed(r),
                Job::Wait(tx) => {
                    let _ = tx.send(r);
                }
            }
        }
    }
}

/// The Raft log storage: vote, entries, committed id, purge point.
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    #[cfg(test)]
    blobs: Option<Arc<BlobSyncer>>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    pub(crate) fn new(db: &sled::Db, syncer: Syncer) -> Result<Self, StoreError> {
        let log = db.open_tree("raft.log")?;
        let meta = db.open_tree("raft.meta")?;
        #[cfg(test)]
        let blobs = syncer.blobs();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("floe-log-flush".into())
            .spawn(move || flusher(syncer, rx))?;
        Ok(Self {
            log,
            meta,
            tx: Some(tx),
            thread: Some(thread),
            #[cfg(test)]
            blobs,
        })
    }

    fn reader(&self) -> LogReader {
        LogReader {
            log: self.log.clone(),
            meta: self.meta.clone(),
        }
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        match &self.tx {
            Some(tx) => tx.send(job).map_err(|_| StoreError::Closed),
            None => Err(StoreError::Closed),
        }
    }

    /// Wait until everything written so far is durable.
    async fn sync(&self) -> Result<(), io::Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Wait(tx))?;
        rx.await.map_err(|_| io::Error::from(StoreError::Closed))?
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        read_meta(&self.meta, key, what)
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        // Closing the channel stops the flusher after it reported every queued append.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_meta<T: serde::de::DeserializeOwned>(
    meta: &sled::Tree,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    match meta.get(key)? {
        Some(v) => Ok(Some(decode(&v, what)?)),
        None => Ok(None),
    }
}

/// Reads log entries and the vote; cheap to clone.
#[derive(Debug, Clone)]
pub struct LogReader {
    log: sled::Tree,
    meta: sled::Tree,
}

fn bound_key(b: Bound<&u64>) -> Bound<[u8; 8]> {
    match b {
        Bound::Included(i) => Bound::Included(log_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(log_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl LogReader {
    fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry>, StoreError> {
        let r = (bound_key(range.start_bound()), bound_key(range.end_bound()));
        let mut out = Vec::new();
        for kv in self.log.range(r) {
            let (k, v) = kv?;
            let idx = log_index(&k)?;
            let entry: Entry = decode(&v, "log entry")?;
            if entry.log_id.index != idx {
                return Err(StoreError::Corrupt {
                    what: "log entry",
                    reason: format!("key {idx} holds entry {}", entry.log_id),
                });
            }
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.entries(range)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(read_meta(&self.meta, VOTE, "vote")?)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.reader().entries(range)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.read_meta(VOTE, "vote")?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState, io::Error> {
        let last_purged: Option<LogId> = self.read_meta(LAST_PURGED, "last purged log id")?;
        let last = match self.log.last().map_err(StoreError::from)? {
            Some((_, v)) => Some(decode::<Entry>(&v, "log entry")?.log_id),
            None => last_purged,
        };
        // Entries up to the purge point count as gone. A purge interrupted by a crash leaves
        // some behind, and one that follows a snapshot install may reach past the end of the
        // log: then the log ends at the purge point.
        let last = match (last, last_purged) {
            (Some(l), Some(p)) if l.index <= p.index => Some(p),
            (l, _) => l,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.meta
            .insert(VOTE, encode(vote)?)
            .map_err(StoreError::from)?;
        self.sync().await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not flushed: losing it only means re-applying fewer entries at startup.
        self.meta
            .insert(COMMITTED, encode(&committed)?)
            .map_err(StoreError::from)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self
            .read_meta::<Option<LogId>>(COMMITTED, "committed log id")?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Few entries: plain inserts in index order. sled recovers a prefix of its log, so a crash
        // keeps a prefix of them (the rest were never reported durable), and a sled batch pins
        // the log at the cost of extra buffer writes, which dominates small appends. Many entries:
        // one batch, whose fixed cost is spread over them and which sled writes more compactly.
        let mut kvs = Vec::new();
        for e in entries {
            kvs.push((log_key(e.log_id.index), encode(&e)?));
        }
        if kvs.len() >= BATCH_FROM {
            let mut batch = sled::Batch::default();
            for (k, v) in kvs {
                batch.insert(&k, v);
            }
            self.log.apply_batch(batch).map_err(StoreError::from)?;
        } else {
            for (k, v) in kvs {
                self.log.insert(k, v).map_err(StoreError::from)?;
            }
        }
        self.send(Job::Append(callback))?;
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index + 1);
        // From the end backwards: a crash part way leaves a log without holes.
        for k in self.log.range(log_key(from)..).keys().rev() {
            self.log
                .remove(k.map_err(StoreError::from)?)
                .map_err(StoreError::from)?;
        }
        self.sync().await
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        // The purge point is written first so that a crash never leaves a hole before it.
        self.meta
            .insert(LAST_PURGED, encode(&upto)?)
            .map_err(StoreError::from)?;
        // From the start forwards: a crash part way leaves a log without holes after the point.
        for k in self.log.range(..=log_key(upto.index)).keys() {
            self.log
                .remove(k.map_err(StoreError::from)?)
                .map_err(StoreError::from)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::type_config::TypeConfigExt;

    use super::*;
    use crate::command::{ActorId, Command};
    use crate::types::EntryPayload;
    use crate::{StoreConfig, open};

    const STATE: usize = 3 << 20;

    /// A purge past the end of the log (after a snapshot install) interrupted by a crash leaves
    /// the purge point written and older entries still there: the log then ends at the purge
    /// point, which openraft requires (a last log id below the last purged one is refused as
    /// corruption, and the node could not start).
    #[tokio::test]
    async fn an_interrupted_purge_past_the_end_leaves_the_log_at_the_purge_point() {
        use openraft::storage::RaftLogStorage;
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _sm) = open(dir.path(), &StoreConfig::default()).expect("open");
        let entries: Vec<Entry> = (1..=5)
            .map(|i| Entry {
                log_id: openraft::testing::log_id::<TypeConfig>(1, 1, i),
                payload: EntryPayload::Blank,
            })
            .collect();
        let (tx, rx) = TypeConfig::oneshot();
        log.append(entries, IOFlushed::signal(tx))
            .await
            .expect("append");
        rx.await.expect("reported").expect("durable");
        // What a crash part way through `purge(T1-N1.10)` leaves: the point, and entries 3..=5.
        let upto = openraft::testing::log_id::<TypeConfig>(1, 1, 10);
        log.meta
            .insert(LAST_PURGED, encode(&upto).expect("encode"))
            .expect("insert");
        for i in 1..=2 {
            log.log.remove(log_key(i)).expect("remove");
        }
        let st = log.get_log_state().await.expect("log state");
        assert_eq!(st.last_purged_log_id, Some(upto));
        assert_eq!(st.last_log_id, Some(upto));
    }

    /// An entry far above sled's blob threshold is reported durable only after the blob file
    /// holding it, at its full length, and the blobs directory were fsynced.
    #[tokio::test]
    async fn a_large_entry_is_fsynced_in_its_blob_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _sm) = open(dir.path(), &StoreConfig::default()).expect("open");
        let entry = Entry {
            log_id: openraft::testing::log_id::<TypeConfig>(1, 1, 1),
            payload: EntryPayload::Normal(Command::Commit {
                actor: ActorId::new("T", "k"),
                epoch: 1,
                state: Some(vec![7u8; STATE]),
                base: None,
                request: None,
                acked: 0,
                outcome: crate::command::Outcome::Reply(vec![]),
            }),
        };
        let (tx, rx) = TypeConfig::oneshot();
        log.append([entry], IOFlushed::signal(tx))
            .await
            .expect("append");
        rx.await.expect("reported").expect("durable");

        let blobs_dir = dir.path().join("sled").join("blobs");
        let large: Vec<(OsString, u64)> = fs::read_dir(&blobs_dir)
            .expect("blobs dir")
            .map(|e| {
                let e = e.expect("entry");
                (e.file_name(), e.metadata().expect("metadata").len())
            })
            .filter(|(_, len)| *len >= STATE as u64)
            .collect();
        assert!(!large.is_empty(), "sled kept the entry inline");
        let blobs = log.blobs.as_ref().expect("fsync durability syncs blobs");
        let st = blobs.state();
        for (name, len) in &large {
            assert_eq!(
                st.synced.get(name),
                Some(len),
                "blob {name:?} not fsynced at its full length"
            );
        }
        assert!(st.dir_syncs >= 1, "the blobs directory was not fsynced");
    }
}

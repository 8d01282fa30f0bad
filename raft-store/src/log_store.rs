//! The Raft log and vote on sled.
//!
//! Vote and log live in one `sled::Db`, so sled's ordered log keeps a vote write ordered with the
//! entries written before it. Appends return as soon as the entries are readable; their
//! completion is reported by a flusher thread that groups every append queued while it was
//! flushing into one `flush()` (plus one `fdatasync` of the database file under
//! [`Durability::Fsync`]), and reports completions in order.

use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
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
    /// sled's `flush()` and then `fdatasync` of the database file, which also flushes the device
    /// write cache. Survives power loss on hardware that honours flushes.
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
}

impl Syncer {
    pub(crate) fn new(db: sled::Db, file: Option<File>) -> Self {
        Self { db, file }
    }

    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        if let Some(f) = &self.file {
            f.sync_data()?;
        }
        Ok(())
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
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("floe-log-flush".into())
            .spawn(move || flusher(syncer, rx))?;
        Ok(Self {
            log,
            meta,
            tx: Some(tx),
            thread: Some(thread),
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

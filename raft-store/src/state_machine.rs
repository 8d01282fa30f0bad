//! The replicated state machine on sled: nodes, placements, actor states and request outcomes.
//!
//! A batch of log entries is applied in memory first (an overlay over the trees), then persisted
//! as one redo record (every key it changes, with the applied log id and the last membership)
//! followed by the plain writes themselves. sled recovers a prefix of its log, so after a crash
//! either the redo record is lost with everything after it, or it is there and [`StateMachine`]
//! writes it again when it opens: the state is always at an entry boundary. Plain writes avoid
//! sled's transactions and write batches, whose log pinning costs several extra buffer writes
//! per call (see BENCHMARKS.md). The trees of one "generation" hold the whole state; installing a
//! snapshot loads a new generation and switches to it with one write of the generation number.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{FutureExt, Stream, StreamExt};
use openraft::OptionalSend;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::codec::encode;
use crate::command::CommandResult;
use crate::directory::{Limits, apply_command};
use crate::error::StoreError;
use crate::log_store::Syncer;
use crate::overlay::Overlay;
use crate::snapshot::{SnapshotReader, SnapshotWriter};
use crate::trees::{
    APPLIED, CURRENT_SNAPSHOT, GENERATION, MEMBERSHIP, SmTrees, TAG_ACTORS, TAG_NODES,
    TAG_PLACEMENTS, TAG_REQUESTS, TAG_SESSIONS, drop_generation,
};
use crate::types::{
    Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::view::StateView;

/// Entries applied per batch at most.
const APPLY_CHUNK: usize = 256;

/// Bytes of changes after which an apply batch is persisted before the next entry, so that a
/// redo record stays inline in sled's log (far below its blob threshold).
const REDO_BYTES: usize = 32 << 10;

#[derive(Debug)]
pub(crate) struct Shared {
    db: sled::Db,
    /// Generation pointer and current snapshot; outside every generation.
    global: sled::Tree,
    pub(crate) trees: Arc<RwLock<SmTrees>>,
    snapshot_dir: PathBuf,
    /// Serializes writers of snapshot files and of the current-snapshot pointer.
    snapshot_files: Mutex<()>,
    syncer: Syncer,
    limits: Limits,
}

/// The state machine openraft drives. Obtain one from [`crate::open`].
#[derive(Debug)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// Builds snapshots of the state machine.
#[derive(Debug)]
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Io(io::Error::other(format!("blocking task failed: {e}")))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl StateMachine {
    pub(crate) fn open(
        db: &sled::Db,
        snapshot_dir: PathBuf,
        syncer: Syncer,
        limits: Limits,
    ) -> Result<Self, StoreError> {
        let global = db.open_tree("sm.global")?;
        let generation = SmTrees::get::<u64>(&global, GENERATION, "generation")?.unwrap_or(0);
        // Drop the trees of any other generation: leftovers of an interrupted snapshot install.
        for name in db.tree_names() {
            if let Some(rest) = name.strip_prefix(b"sm.") {
                let prefix = format!("{generation}.");
                if rest != b"global" && !rest.starts_with(prefix.as_bytes()) {
                    db.drop_tree(&name)?;
                }
            }
        }
        let current: Option<(SnapshotMeta, String)> =
            SmTrees::get(&global, CURRENT_SNAPSHOT, "current snapshot")?;
        for f in fs::read_dir(&snapshot_dir)? {
            let f = f?;
            let keep = current
                .as_ref()
                .is_some_and(|(_, n)| f.file_name() == n.as_str());
            if !keep {
                fs::remove_file(f.path())?;
            }
        }
        let trees = SmTrees::open(db, generation)?;
        trees.replay_redo()?;
        let shared = Shared {
            db: db.clone(),
            global,
            trees: Arc::new(RwLock::new(trees)),
            snapshot_dir,
            snapshot_files: Mutex::new(()),
            syncer,
            limits,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// A read handle over the applied state.
    pub fn view(&self) -> StateView {
        StateView {
            shared: self.shared.clone(),
        }
    }

    /// Apply entries and return one result per entry. They are persisted in batches of at most
    /// [`REDO_BYTES`] of changes, each with the log id of its last entry; an error leaves the
    /// entries of the failing batch unapplied.
    ///
    /// This is what [`RaftStateMachine::apply`] runs; it is public so that tests and tools can
    /// observe the results directly.
    pub async fn apply_entries(&self, entries: &[Entry]) -> Result<Vec<CommandResult>, StoreError> {
        let trees = self.shared.trees.write().await;
        let limits = self.shared.limits;
        let mut overlay = Overlay::new(&trees);
        let mut results = Vec::with_capacity(entries.len());
        let mut membership = None;
        for (i, e) in entries.iter().enumerate() {
            match &e.payload {
                EntryPayload::Blank => results.push(CommandResult::Empty),
                EntryPayload::Normal(cmd) => {
                    results.push(apply_command(&mut overlay, cmd, &limits)?)
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(e.log_id), m.clone()));
                    results.push(CommandResult::Empty);
                }
            }
            if overlay.bytes >= REDO_BYTES || i + 1 == entries.len() {
                overlay.persist(Some(e.log_id), membership.take())?;
            }
        }
        Ok(results)
    }

    async fn apply_chunk(
        &self,
        chunk: &mut Vec<(Entry, Option<openraft::storage::ApplyResponder<TypeConfig>>)>,
    ) -> Result<(), StoreError> {
        let entries: Vec<Entry> = chunk.iter().map(|(e, _)| e.clone()).collect();
        let results = self.apply_entries(&entries).await?;
        for ((_, responder), result) in chunk.drain(..).zip(results) {
            if let Some(r) = responder {
                r.send(result);
            }
        }
        Ok(())
    }
}

impl Shared {
    fn snapshot_path(&self, name: &str) -> PathBuf {
        self.snapshot_dir.join(name)
    }

    fn new_snapshot_name(&self) -> Result<String, StoreError> {
        Ok(format!("snapshot-{:020}.snap", self.db.generate_id()?))
    }

    /// Point the store at a new current snapshot file, durably, and delete the previous one.
    fn set_current_snapshot(
        &self,
        batch: &mut sled::Batch,
        meta: &SnapshotMeta,
        name: &str,
    ) -> Result<(), StoreError> {
        let previous: Option<(SnapshotMeta, String)> =
            SmTrees::get(&self.global, CURRENT_SNAPSHOT, "current snapshot")?;
        batch.insert(CURRENT_SNAPSHOT, encode(&(meta, name))?);
        self.global.apply_batch(std::mem::take(batch))?;
        self.syncer.sync()?;
        if let Some((_, old)) = previous
            && old != name
        {
            let _ = fs::remove_file(self.snapshot_path(&old));
        }
        Ok(())
    }

    /// Write a snapshot of `trees` (held for reading, so apply waits) to a new file, and return
    /// it opened for reading: opened under the lock, before another build or an install can
    /// replace and delete it.
    fn build_snapshot(&self, trees: &SmTrees) -> Result<(SnapshotMeta, File), StoreError> {
        let _files = self
            .snapshot_files
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (last_log_id, last_membership) = trees.applied_state()?;
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
        };
        let name = self.new_snapshot_name()?;
        let path = self.snapshot_path(&name);
        let tmp = path.with_extension("tmp");
        let file = File::create(&tmp)?;
        let mut w = SnapshotWriter::new(BufWriter::with_capacity(1 << 20, file), &meta)?;
        for (tag, tree) in trees.data_trees() {
            for kv in tree.iter() {
                let (k, v) = kv?;
                w.record(tag, &k, &v)?;
            }
        }
        let file = w
            .finish()?
            .into_inner()
            .map_err(|e| StoreError::Io(e.into_error()))?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&self.snapshot_dir)?;
        // The state the snapshot covers is flushed with the pointer, so after a restart the
        // applied state is never behind the snapshot.
        self.set_current_snapshot(&mut sled::Batch::default(), &meta, &name)?;
        let file = File::open(&path)?;
        Ok((meta, file))
    }

    fn install_snapshot(
        &self,
        trees: &mut SmTrees,
        meta: &SnapshotMeta,
        mut src: File,
    ) -> Result<(), StoreError> {
        let _files = self
            .snapshot_files
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // 1. Keep a durable copy: it becomes our current snapshot.
        let name = self.new_snapshot_name()?;
        let path = self.snapshot_path(&name);
        let tmp = path.with_extension("tmp");
        src.seek(SeekFrom::Start(0))?;
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        io::copy(&mut src, &mut out)?;
        let out = out
            .into_inner()
            .map_err(|e| StoreError::Io(e.into_error()))?;
        out.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&self.snapshot_dir)?;

        // 2. Load it into the trees of a new generation.
        let generation = trees.generation + 1;
        let loaded = (|| {
            drop_generation(&self.db, generation)?;
            let new = SmTrees::open(&self.db, generation)?;
            load_snapshot(&new, meta, File::open(&path)?)?;
            self.syncer.sync()?;
            Ok::<_, StoreError>(new)
        })();
        let new = match loaded {
            Ok(new) => new,
            Err(e) => {
                let _ = drop_generation(&self.db, generation);
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };

        // 3. Switch: one durable write of the generation pointer (with the snapshot pointer).
        let mut batch = sled::Batch::default();
        batch.insert(GENERATION, encode(&generation)?);
        self.set_current_snapshot(&mut batch, meta, &name)?;
        let old = std::mem::replace(trees, new);
        drop_generation(&self.db, old.generation)?;
        Ok(())
    }

    fn current_snapshot(&self) -> Result<Option<(SnapshotMeta, String)>, StoreError> {
        SmTrees::get(&self.global, CURRENT_SNAPSHOT, "current snapshot")
    }

    /// Open the current snapshot file without waiting for a build in progress.
    ///
    /// A file is deleted only after the pointer has moved on to its successor, so a file that
    /// vanished between reading the pointer and opening it means the pointer has changed: read
    /// it again. NotFound with an unchanged pointer is a real loss and is reported. Once open,
    /// the file stays readable after a later build unlinks it.
    async fn open_current_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let mut cur = self.current_snapshot()?;
        loop {
            let Some((meta, name)) = cur else {
                return Ok(None);
            };
            match tokio::fs::File::open(self.snapshot_path(&name)).await {
                Ok(snapshot) => return Ok(Some(Snapshot { meta, snapshot })),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let now = self.current_snapshot()?;
                    if now.as_ref().map(|(_, n)| n) == Some(&name) {
                        return Err(e.into());
                    }
                    cur = now;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn load_snapshot(trees: &SmTrees, meta: &SnapshotMeta, file: File) -> Result<(), StoreError> {
    let mut r = SnapshotReader::new(BufReader::with_capacity(1 << 20, file))?;
    if r.meta().last_log_id != meta.last_log_id {
        return Err(StoreError::Corrupt {
            what: "snapshot",
            reason: format!(
                "file covers {:?}, expected {:?}",
                r.meta().last_log_id,
                meta.last_log_id
            ),
        });
    }
    let mut batches: [sled::Batch; 5] = Default::default();
    let mut pending = 0usize;
    let flush = |batches: &mut [sled::Batch; 5]| -> Result<(), StoreError> {
        for ((_, tree), b) in trees.data_trees().into_iter().zip(batches.iter_mut()) {
            tree.apply_batch(std::mem::take(b))?;
        }
        Ok(())
    };
    while let Some(rec) = r.next_record()? {
        let slot = match rec.tag {
            TAG_NODES => 0,
            TAG_PLACEMENTS => 1,
            TAG_ACTORS => 2,
            TAG_REQUESTS => 3,
            TAG_SESSIONS => 4,
            t => {
                return Err(StoreError::Corrupt {
                    what: "snapshot",
                    reason: format!("unknown tree tag {t}"),
                });
            }
        };
        batches[slot].insert(rec.key, rec.value);
        pending += 1;
        if pending == 4096 {
            flush(&mut batches)?;
            pending = 0;
        }
    }
    flush(&mut batches)?;
    trees.meta.insert(APPLIED, encode(&meta.last_log_id)?)?;
    trees
        .meta
        .insert(MEMBERSHIP, encode(&meta.last_membership)?)?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = tokio::fs::File;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let trees: OwnedRwLockReadGuard<SmTrees> = self.shared.trees.clone().read_owned().await;
        let shared = self.shared.clone();
        let (meta, file) = tokio::task::spawn_blocking(move || shared.build_snapshot(&trees))
            .await
            .map_err(join_err)??;
        let snapshot = tokio::fs::File::from_std(file);
        tracing::info!(last = ?meta.last_log_id, "built snapshot");
        Ok(Snapshot { meta, snapshot })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = tokio::fs::File;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok(self.shared.trees.read().await.applied_state()?)
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut chunk = Vec::new();
        loop {
            // Take what is ready into one transaction; apply it before waiting for more.
            let next = if chunk.is_empty() {
                entries.next().await
            } else {
                match entries.next().now_or_never() {
                    Some(n) => n,
                    None => {
                        self.apply_chunk(&mut chunk).await?;
                        continue;
                    }
                }
            };
            match next {
                Some(Ok(item)) => {
                    chunk.push(item);
                    if chunk.len() >= APPLY_CHUNK {
                        self.apply_chunk(&mut chunk).await?;
                    }
                }
                Some(Err(e)) => {
                    self.apply_chunk(&mut chunk).await?;
                    return Err(e);
                }
                None => break,
            }
        }
        self.apply_chunk(&mut chunk).await?;
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: tokio::fs::File,
    ) -> Result<(), io::Error> {
        let mut trees: OwnedRwLockWriteGuard<SmTrees> =
            self.shared.trees.clone().write_owned().await;
        let shared = self.shared.clone();
        let meta = meta.clone();
        let src = snapshot.into_std().await;
        tokio::task::spawn_blocking(move || shared.install_snapshot(&mut trees, &meta, src))
            .await
            .map_err(join_err)??;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self.shared.open_current_snapshot().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::overlay::{Change, Redo};
    use crate::trees::REDO;
    use crate::{StoreConfig, open};

    use crate::testing::{entry, register};

    /// A crash after the redo record of a batch reached the log, before (some of) its changes
    /// did: reopening finishes the batch.
    #[tokio::test]
    async fn an_interrupted_batch_is_finished_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let interrupted = entry(3, register(3));
        {
            let (_log, sm) = open(dir.path(), &StoreConfig::default()).expect("open");
            sm.apply_entries(&[entry(1, register(1)), entry(2, register(2))])
                .await
                .expect("apply");
            // What apply would persist for entry 3, computed but only its redo record written.
            let trees = sm.shared.trees.write().await;
            let mut overlay = Overlay::new(&trees);
            let EntryPayload::Normal(cmd) = &interrupted.payload else {
                unreachable!("a normal entry");
            };
            apply_command(&mut overlay, cmd, &Limits::default()).expect("apply in memory");
            let redo = Redo {
                applied: Some(interrupted.log_id),
                membership: None,
                changes: overlay
                    .changes
                    .into_iter()
                    .map(|((tag, key), value)| Change { tag, key, value })
                    .collect(),
            };
            assert!(!redo.changes.is_empty());
            trees
                .meta
                .insert(REDO, encode(&redo).expect("encode"))
                .expect("insert");
            sm.shared.syncer.sync().expect("sync");
            let (applied, _) = trees.applied_state().expect("applied");
            assert_eq!(applied.map(|l| l.index), Some(2), "not yet applied");
        }
        let (log, sm) = open(dir.path(), &StoreConfig::default()).expect("reopen");
        let view = sm.view();
        let (applied, _) = view.applied().await.expect("applied");
        assert_eq!(applied, Some(interrupted.log_id));
        let nodes: Vec<u64> = view
            .nodes()
            .await
            .expect("nodes")
            .iter()
            .map(|n| n.node)
            .collect();
        assert_eq!(nodes, vec![1, 2, 3]);
        // Replaying again (another crash right after) changes nothing.
        drop((log, sm, view));
        let (_log, sm) = open(dir.path(), &StoreConfig::default()).expect("reopen twice");
        assert_eq!(sm.view().nodes().await.expect("nodes").len(), 3);
    }

    /// Read a whole snapshot stream, checking every record and the trailer.
    fn check_snapshot(file: File, meta: &SnapshotMeta) -> usize {
        let mut r = SnapshotReader::new(BufReader::new(file)).expect("snapshot header");
        assert_eq!(r.meta(), meta, "file and pointer disagree");
        let mut n = 0;
        while r.next_record().expect("snapshot record").is_some() {
            n += 1;
        }
        n
    }

    /// A snapshot fetched while another is being built (which deletes the file it replaces)
    /// always opens and reads whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn snapshot_fetched_during_a_build_never_vanishes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig {
            durability: crate::Durability::SledFlush,
            ..StoreConfig::default()
        };
        let (_log, mut sm) = open(dir.path(), &config).expect("open");
        let entries: Vec<Entry> = (1..=50).map(|i| entry(i, register(i))).collect();
        sm.apply_entries(&entries).await.expect("apply");
        let mut builder = sm.get_snapshot_builder().await;
        builder.build_snapshot().await.expect("first build");

        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fetchers: Vec<_> = (0..3)
            .map(|_| {
                let mut sm = StateMachine {
                    shared: sm.shared.clone(),
                };
                let done = done.clone();
                tokio::spawn(async move {
                    let mut fetched = 0u64;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let snap = sm
                            .get_current_snapshot()
                            .await
                            .expect("fetch during a build")
                            .expect("a snapshot exists");
                        let file = snap.snapshot.into_std().await;
                        let meta = snap.meta;
                        let n = tokio::task::spawn_blocking(move || check_snapshot(file, &meta))
                            .await
                            .expect("check");
                        assert_eq!(n, 50);
                        fetched += 1;
                    }
                    fetched
                })
            })
            .collect();
        let built = tokio::spawn(async move {
            for _ in 0..300 {
                let snap = builder.build_snapshot().await.expect("build");
                let meta = snap.meta;
                let file = snap.snapshot.into_std().await;
                tokio::task::spawn_blocking(move || check_snapshot(file, &meta))
                    .await
                    .expect("check");
            }
        })
        .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut fetched = 0;
        for f in fetchers {
            fetched += f.await.expect("fetcher");
        }
        built.expect("builder");
        assert!(fetched > 0);
        sm.get_current_snapshot()
            .await
            .expect("fetch")
            .expect("snapshot");
        // Only the current snapshot file is kept.
        assert_eq!(
            fs::read_dir(dir.path().join("snapshots"))
                .expect("dir")
                .count(),
            1
        );
    }

    /// Large batches are cut so that every redo record stays small.
    #[tokio::test]
    async fn large_batches_are_persisted_in_bounded_pieces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, sm) = open(dir.path(), &StoreConfig::default()).expect("open");
        let entries: Vec<Entry> = (1..=256)
            .map(|i| {
                entry(
                    i,
                    Command::RegisterNode {
                        node: i,
                        incarnation: 1,
                        addr: "a".repeat(1000),
                        actor_types: vec![],
                    },
                )
            })
            .collect();
        let results = sm.apply_entries(&entries).await.expect("apply");
        assert_eq!(results.len(), 256);
        let trees = sm.shared.trees.read().await;
        let redo: Redo = SmTrees::get(&trees.meta, REDO, "redo")
            .expect("read")
            .expect("present");
        assert_eq!(redo.applied.map(|l| l.index), Some(256));
        let bytes = encode(&redo).expect("encode").len();
        assert!(bytes < 2 * REDO_BYTES, "redo record of {bytes} bytes");
        assert!(redo.changes.len() < 256, "the batch was cut");
        assert_eq!(trees.nodes.len(), 256);
    }
}

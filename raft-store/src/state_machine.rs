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

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{FutureExt, Stream, StreamExt};
use openraft::OptionalSend;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::codec::{
    CLOCK_KEY, actor_key, decode, encode, node_key, request_key, request_of_key, session_key,
};
use crate::command::{ActorId, ActorState, CommandResult, NodeRecord, Placement, RequestId};
use crate::directory::{
    Limits, PlacementRecord, RequestOutcome, RequestStatus, SessionClock, SessionRecord,
    StoredActor, Tables, apply_command, live_owner, request_status,
};
use crate::error::StoreError;
use crate::log_store::Syncer;
use crate::snapshot::{SnapshotReader, SnapshotWriter};
use crate::types::{
    Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};

const APPLIED: &[u8] = b"applied";
const MEMBERSHIP: &[u8] = b"membership";
const GENERATION: &[u8] = b"generation";
const CURRENT_SNAPSHOT: &[u8] = b"snapshot";
/// The last persisted apply batch, replayed when the store opens.
const REDO: &[u8] = b"redo";

const TAG_NODES: u8 = 1;
const TAG_PLACEMENTS: u8 = 2;
const TAG_ACTORS: u8 = 3;
const TAG_REQUESTS: u8 = 4;
const TAG_SESSIONS: u8 = 5;

/// Entries applied per batch at most.
const APPLY_CHUNK: usize = 256;

/// Bytes of changes after which an apply batch is persisted before the next entry, so that a
/// redo record stays inline in sled's log (far below its blob threshold).
const REDO_BYTES: usize = 32 << 10;

/// The trees of one generation of the state machine.
#[derive(Debug)]
pub(crate) struct SmTrees {
    generation: u64,
    meta: sled::Tree,
    nodes: sled::Tree,
    placements: sled::Tree,
    actors: sled::Tree,
    requests: sled::Tree,
    sessions: sled::Tree,
}

fn tree_names(generation: u64) -> [String; 6] {
    [
        "meta",
        "nodes",
        "placements",
        "actors",
        "requests",
        "sessions",
    ]
    .map(|t| format!("sm.{generation}.{t}"))
}

impl SmTrees {
    fn open(db: &sled::Db, generation: u64) -> Result<Self, StoreError> {
        let [m, n, p, a, r, s] = tree_names(generation);
        Ok(Self {
            generation,
            meta: db.open_tree(m)?,
            nodes: db.open_tree(n)?,
            placements: db.open_tree(p)?,
            actors: db.open_tree(a)?,
            requests: db.open_tree(r)?,
            sessions: db.open_tree(s)?,
        })
    }

    fn data_trees(&self) -> [(u8, &sled::Tree); 5] {
        [
            (TAG_NODES, &self.nodes),
            (TAG_PLACEMENTS, &self.placements),
            (TAG_ACTORS, &self.actors),
            (TAG_REQUESTS, &self.requests),
            (TAG_SESSIONS, &self.sessions),
        ]
    }

    fn get<T: serde::de::DeserializeOwned>(
        tree: &sled::Tree,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        tree.get(key)?.map(|v| decode(&v, what)).transpose()
    }

    /// The data tree with `tag`.
    fn tree(&self, tag: u8) -> Result<&sled::Tree, StoreError> {
        self.data_trees()
            .into_iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, tree)| tree)
            .ok_or_else(|| StoreError::Corrupt {
                what: "state machine change",
                reason: format!("unknown tree tag {tag}"),
            })
    }

    /// Write what `redo` records: each change, then the applied log id and membership.
    fn write_redo(&self, redo: &Redo) -> Result<(), StoreError> {
        for Change { tag, key, value } in &redo.changes {
            let tree = self.tree(*tag)?;
            match value {
                Some(v) => tree.insert(key.as_slice(), v.as_slice())?,
                None => tree.remove(key.as_slice())?,
            };
        }
        if let Some(m) = &redo.membership {
            self.meta.insert(MEMBERSHIP, encode(m)?)?;
        }
        self.meta.insert(APPLIED, encode(&redo.applied)?)?;
        Ok(())
    }

    /// Finish the last persisted apply batch if a crash interrupted it. Idempotent: the record
    /// holds final values, and it is always the newest batch.
    fn replay_redo(&self) -> Result<(), StoreError> {
        if let Some(redo) = Self::get::<Redo>(&self.meta, REDO, "redo record")? {
            self.write_redo(&redo)?;
        }
        Ok(())
    }

    fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let applied = Self::get::<Option<LogId>>(&self.meta, APPLIED, "applied log id")?.flatten();
        let membership = Self::get(&self.meta, MEMBERSHIP, "membership")?.unwrap_or_default();
        Ok((applied, membership))
    }
}

fn drop_generation(db: &sled::Db, generation: u64) -> Result<(), StoreError> {
    for name in tree_names(generation) {
        db.drop_tree(name)?;
    }
    Ok(())
}

/// A key and its value.
type KeyValue = (Vec<u8>, Vec<u8>);

/// One changed key of an apply batch: the tree's tag, the key, and the new value (`None`:
/// removed).
#[derive(serde::Serialize, serde::Deserialize)]
struct Change {
    tag: u8,
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    value: Option<Vec<u8>>,
}

/// What one persisted apply batch changed; stored under [`REDO`] before the changes themselves.
#[derive(serde::Serialize, serde::Deserialize)]
struct Redo {
    applied: Option<LogId>,
    membership: Option<StoredMembership>,
    changes: Vec<Change>,
}

/// [`Tables`] over the committed trees plus the changes of the batch being applied, which stay
/// in memory until [`Overlay::persist`].
struct Overlay<'a> {
    trees: &'a SmTrees,
    changes: BTreeMap<(u8, Vec<u8>), Option<Vec<u8>>>,
    bytes: usize,
}

impl<'a> Overlay<'a> {
    fn new(trees: &'a SmTrees) -> Self {
        Self {
            trees,
            changes: BTreeMap::new(),
            bytes: 0,
        }
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        tag: u8,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        // Looked up by an owned key: the map is keyed by (tag, key).
        match self.changes.get(&(tag, key.to_vec())) {
            Some(Some(v)) => decode(v, what).map(Some),
            Some(None) => Ok(None),
            None => SmTrees::get(self.trees.tree(tag)?, key, what),
        }
    }

    /// The keys and values of tree `tag` in `[start, end)` as this batch sees them, in order.
    fn scan(&self, tag: u8, start: &[u8], end: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut out: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for kv in self.trees.tree(tag)?.range(start..end) {
            let (k, v) = kv?;
            out.insert(k.to_vec(), v.to_vec());
        }
        for ((_, k), v) in self
            .changes
            .range((tag, start.to_vec())..(tag, end.to_vec()))
        {
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        Ok(out.into_iter().collect())
    }

    fn set(&mut self, tag: u8, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.bytes += key.len() + value.as_ref().map_or(0, Vec::len) + 8;
        self.changes.insert((tag, key), value);
    }

    fn put<T: serde::Serialize>(&mut self, tag: u8, key: Vec<u8>, v: &T) -> Result<(), StoreError> {
        self.set(tag, key, Some(encode(v)?));
        Ok(())
    }

    /// Persist the changes with `applied` (and `membership`, if the batch changed it): the redo
    /// record first, then each change, then the applied log id. Leaves the overlay empty.
    fn persist(
        &mut self,
        applied: Option<LogId>,
        membership: Option<StoredMembership>,
    ) -> Result<(), StoreError> {
        let changes: Vec<Change> = std::mem::take(&mut self.changes)
            .into_iter()
            .map(|((tag, key), value)| Change { tag, key, value })
            .collect();
        self.bytes = 0;
        let redo = Redo {
            applied,
            membership,
            changes,
        };
        self.trees.meta.insert(REDO, encode(&redo)?)?;
        self.trees.write_redo(&redo)
    }
}

impl Tables for Overlay<'_> {
    type Error = StoreError;

    fn node(&self, node: u64) -> Result<Option<NodeRecord>, StoreError> {
        self.get(TAG_NODES, &node_key(node), "node record")
    }
    fn put_node(&mut self, rec: &NodeRecord) -> Result<(), StoreError> {
        self.put(TAG_NODES, node_key(rec.node).to_vec(), rec)
    }
    fn placement(&self, actor: &ActorId) -> Result<Option<PlacementRecord>, StoreError> {
        self.get(TAG_PLACEMENTS, &actor_key(actor), "placement")
    }
    fn put_placement(&mut self, actor: &ActorId, rec: &PlacementRecord) -> Result<(), StoreError> {
        self.put(TAG_PLACEMENTS, actor_key(actor), rec)
    }
    fn actor(&self, actor: &ActorId) -> Result<Option<StoredActor>, StoreError> {
        self.get(TAG_ACTORS, &actor_key(actor), "actor state")
    }
    fn put_actor(&mut self, actor: &ActorId, rec: &StoredActor) -> Result<(), StoreError> {
        self.put(TAG_ACTORS, actor_key(actor), rec)
    }
    fn outcome(&self, req: RequestId) -> Result<Option<RequestOutcome>, StoreError> {
        self.get(TAG_REQUESTS, &request_key(req), "request outcome")
    }
    fn put_outcome(&mut self, req: RequestId, outcome: &RequestOutcome) -> Result<(), StoreError> {
        self.put(TAG_REQUESTS, request_key(req).to_vec(), outcome)
    }
    fn remove_outcome(&mut self, req: RequestId) -> Result<(), StoreError> {
        self.set(TAG_REQUESTS, request_key(req).to_vec(), None);
        Ok(())
    }
    fn outcomes_below(&self, session: u64, below: u64) -> Result<Vec<RequestId>, StoreError> {
        let (start, end) = outcome_range(session, below);
        self.scan(TAG_REQUESTS, &start, &end)?
            .iter()
            .map(|(k, _)| request_of_key(k))
            .collect()
    }
    fn session(&self, id: u64) -> Result<Option<SessionRecord>, StoreError> {
        self.get(TAG_SESSIONS, &session_key(id), "session")
    }
    fn put_session(&mut self, id: u64, rec: &SessionRecord) -> Result<(), StoreError> {
        self.put(TAG_SESSIONS, session_key(id).to_vec(), rec)
    }
    fn remove_session(&mut self, id: u64) -> Result<(), StoreError> {
        self.set(TAG_SESSIONS, session_key(id).to_vec(), None);
        Ok(())
    }
    fn idle_sessions(&self, before_ms: u64) -> Result<Vec<u64>, StoreError> {
        let mut idle = Vec::new();
        for (k, v) in self.scan(TAG_SESSIONS, &session_key(0), &[0xff; 9])? {
            let rec: SessionRecord = decode(&v, "session")?;
            if rec.last_active_ms < before_ms {
                idle.push(session_of_key(&k)?);
            }
        }
        Ok(idle)
    }
    fn clock(&self) -> Result<SessionClock, StoreError> {
        Ok(self
            .get(TAG_SESSIONS, CLOCK_KEY, "session clock")?
            .unwrap_or_default())
    }
    fn put_clock(&mut self, clock: &SessionClock) -> Result<(), StoreError> {
        self.put(TAG_SESSIONS, CLOCK_KEY.to_vec(), clock)
    }
}

/// The key range of the outcomes of `session` numbered below `below` (all of them for
/// `u64::MAX`).
fn outcome_range(session: u64, below: u64) -> ([u8; 24], [u8; 24]) {
    let start = request_key(RequestId::new(session, 0));
    let end = match below {
        u64::MAX => match session.checked_add(1) {
            Some(next) => request_key(RequestId::new(next, 0)),
            None => [0xff; 24],
        },
        b => request_key(RequestId::new(session, b)),
    };
    (start, end)
}

fn session_of_key(key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            what: "session key",
            reason: format!("{} bytes, expected 8", key.len()),
        })
}

/// Reads of the committed trees, for the read API.
struct ReadTables<'a>(&'a SmTrees);

impl ReadTables<'_> {
    fn placement(&self, actor: &ActorId) -> Result<Option<PlacementRecord>, StoreError> {
        SmTrees::get(&self.0.placements, &actor_key(actor), "placement")
    }
    fn actor(&self, actor: &ActorId) -> Result<Option<StoredActor>, StoreError> {
        SmTrees::get(&self.0.actors, &actor_key(actor), "actor state")
    }
    fn node(&self, node: u64) -> Result<Option<NodeRecord>, StoreError> {
        SmTrees::get(&self.0.nodes, &node_key(node), "node record")
    }
}

#[derive(Debug)]
struct Shared {
    db: sled::Db,
    /// Generation pointer and current snapshot; outside every generation.
    global: sled::Tree,
    trees: Arc<RwLock<SmTrees>>,
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

/// Read access to the applied state, for the runtime; cheap to clone.
///
/// Reads see the state as applied on this node. They are linearizable only after the caller has
/// waited for a Raft read index to be applied (see the runtime).
#[derive(Debug, Clone)]
pub struct StateView {
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

impl StateView {
    /// The valid owner of `actor`: placed, and its node alive in the placement's incarnation.
    pub async fn owner(&self, actor: &ActorId) -> Result<Option<Placement>, StoreError> {
        let trees = self.shared.trees.read().await;
        let t = Overlay::new(&trees);
        match ReadTables(&trees).placement(actor)? {
            Some(rec) => live_owner(&t, &rec),
            None => Ok(None),
        }
    }

    /// The committed state of `actor`, if it was ever written.
    pub async fn actor_state(&self, actor: &ActorId) -> Result<Option<ActorState>, StoreError> {
        let trees = self.shared.trees.read().await;
        Ok(ReadTables(&trees).actor(actor)?.map(|a| a.view()))
    }

    /// Where request `req` stands: applied (with its outcome), open, or forgotten.
    pub async fn request_status(&self, req: RequestId) -> Result<RequestStatus, StoreError> {
        let trees = self.shared.trees.read().await;
        request_status(&Overlay::new(&trees), req)
    }

    /// The session `id`, if it is open.
    pub async fn session(&self, id: u64) -> Result<Option<SessionRecord>, StoreError> {
        let trees = self.shared.trees.read().await;
        Overlay::new(&trees).session(id)
    }

    /// The record of one node.
    pub async fn node(&self, node: u64) -> Result<Option<NodeRecord>, StoreError> {
        let trees = self.shared.trees.read().await;
        ReadTables(&trees).node(node)
    }

    /// Every registered node, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let trees = self.shared.trees.read().await;
        trees
            .nodes
            .iter()
            .values()
            .map(|v| decode(&v?, "node record"))
            .collect()
    }

    /// The last applied log id and membership.
    pub async fn applied(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        self.shared.trees.read().await.applied_state()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::{StoreConfig, open};

    fn entry(index: u64, cmd: Command) -> Entry {
        Entry {
            log_id: openraft::testing::log_id::<TypeConfig>(1, 1, index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn register(node: u64) -> Command {
        Command::RegisterNode {
            node,
            incarnation: 1,
            addr: format!("n{node}"),
            actor_types: vec![],
        }
    }

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

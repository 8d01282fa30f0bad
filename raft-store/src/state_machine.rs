//! The replicated state machine on sled: nodes, placements, actor states and request outcomes.
//!
//! Every batch of log entries is applied in one sled transaction across the state machine's
//! trees, together with the applied log id and the last membership, so a crash leaves the state
//! at an entry boundary. The trees of one "generation" hold the whole state; installing a
//! snapshot loads a new generation and switches to it with one write of the generation number.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{FutureExt, Stream, StreamExt};
use openraft::OptionalSend;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::codec::{actor_key, decode, encode, node_key, request_key};
use crate::command::{ActorId, ActorState, CommandResult, NodeRecord, Placement, RequestId};
use crate::error::StoreError;
use crate::log_store::Syncer;
use crate::logic::{
    PlacementRecord, RequestOutcome, StoredActor, Tables, apply_command, live_owner,
};
use crate::snapshot::{SnapshotReader, SnapshotWriter};
use crate::types::{
    Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};

const APPLIED: &[u8] = b"applied";
const MEMBERSHIP: &[u8] = b"membership";
const GENERATION: &[u8] = b"generation";
const CURRENT_SNAPSHOT: &[u8] = b"snapshot";

const TAG_NODES: u8 = 1;
const TAG_PLACEMENTS: u8 = 2;
const TAG_ACTORS: u8 = 3;
const TAG_REQUESTS: u8 = 4;

/// Entries applied per transaction at most.
const APPLY_CHUNK: usize = 256;

/// The trees of one generation of the state machine.
#[derive(Debug)]
pub(crate) struct SmTrees {
    generation: u64,
    meta: sled::Tree,
    nodes: sled::Tree,
    placements: sled::Tree,
    actors: sled::Tree,
    requests: sled::Tree,
}

fn tree_names(generation: u64) -> [String; 5] {
    ["meta", "nodes", "placements", "actors", "requests"].map(|t| format!("sm.{generation}.{t}"))
}

impl SmTrees {
    fn open(db: &sled::Db, generation: u64) -> Result<Self, StoreError> {
        let [m, n, p, a, r] = tree_names(generation);
        Ok(Self {
            generation,
            meta: db.open_tree(m)?,
            nodes: db.open_tree(n)?,
            placements: db.open_tree(p)?,
            actors: db.open_tree(a)?,
            requests: db.open_tree(r)?,
        })
    }

    fn data_trees(&self) -> [(u8, &sled::Tree); 4] {
        [
            (TAG_NODES, &self.nodes),
            (TAG_PLACEMENTS, &self.placements),
            (TAG_ACTORS, &self.actors),
            (TAG_REQUESTS, &self.requests),
        ]
    }

    fn get<T: serde::de::DeserializeOwned>(
        tree: &sled::Tree,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        tree.get(key)?.map(|v| decode(&v, what)).transpose()
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

/// [`Tables`] over the trees of one sled transaction.
struct TxTables<'a> {
    nodes: &'a TransactionalTree,
    placements: &'a TransactionalTree,
    actors: &'a TransactionalTree,
    requests: &'a TransactionalTree,
}

type TxError = ConflictableTransactionError<StoreError>;

fn tx_get<T: serde::de::DeserializeOwned>(
    tree: &TransactionalTree,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>, TxError> {
    match tree.get(key)? {
        Some(v) => decode(&v, what).map(Some).map_err(TxError::Abort),
        None => Ok(None),
    }
}

fn tx_put<T: serde::Serialize>(tree: &TransactionalTree, key: &[u8], v: &T) -> Result<(), TxError> {
    tree.insert(key, encode(v).map_err(TxError::Abort)?)?;
    Ok(())
}

impl Tables for TxTables<'_> {
    type Error = TxError;

    fn node(&self, node: u64) -> Result<Option<NodeRecord>, TxError> {
        tx_get(self.nodes, &node_key(node), "node record")
    }
    fn put_node(&mut self, rec: &NodeRecord) -> Result<(), TxError> {
        tx_put(self.nodes, &node_key(rec.node), rec)
    }
    fn placement(&self, actor: &ActorId) -> Result<Option<PlacementRecord>, TxError> {
        tx_get(self.placements, &actor_key(actor), "placement")
    }
    fn put_placement(&mut self, actor: &ActorId, rec: &PlacementRecord) -> Result<(), TxError> {
        tx_put(self.placements, &actor_key(actor), rec)
    }
    fn actor(&self, actor: &ActorId) -> Result<Option<StoredActor>, TxError> {
        tx_get(self.actors, &actor_key(actor), "actor state")
    }
    fn put_actor(&mut self, actor: &ActorId, rec: &StoredActor) -> Result<(), TxError> {
        tx_put(self.actors, &actor_key(actor), rec)
    }
    fn outcome(&self, actor: &ActorId, req: RequestId) -> Result<Option<RequestOutcome>, TxError> {
        tx_get(self.requests, &request_key(actor, req), "request outcome")
    }
    fn put_outcome(
        &mut self,
        actor: &ActorId,
        req: RequestId,
        outcome: &RequestOutcome,
    ) -> Result<(), TxError> {
        tx_put(self.requests, &request_key(actor, req), outcome)
    }
    fn remove_outcome(&mut self, actor: &ActorId, req: RequestId) -> Result<(), TxError> {
        self.requests.remove(request_key(actor, req))?;
        Ok(())
    }
}

/// [`Tables`] over the committed trees, read-only, for the read API.
struct ReadTables<'a>(&'a SmTrees);

impl Tables for ReadTables<'_> {
    type Error = StoreError;

    fn node(&self, node: u64) -> Result<Option<NodeRecord>, StoreError> {
        SmTrees::get(&self.0.nodes, &node_key(node), "node record")
    }
    fn put_node(&mut self, _: &NodeRecord) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn placement(&self, actor: &ActorId) -> Result<Option<PlacementRecord>, StoreError> {
        SmTrees::get(&self.0.placements, &actor_key(actor), "placement")
    }
    fn put_placement(&mut self, _: &ActorId, _: &PlacementRecord) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn actor(&self, actor: &ActorId) -> Result<Option<StoredActor>, StoreError> {
        SmTrees::get(&self.0.actors, &actor_key(actor), "actor state")
    }
    fn put_actor(&mut self, _: &ActorId, _: &StoredActor) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn outcome(
        &self,
        actor: &ActorId,
        req: RequestId,
    ) -> Result<Option<RequestOutcome>, StoreError> {
        SmTrees::get(
            &self.0.requests,
            &request_key(actor, req),
            "request outcome",
        )
    }
    fn put_outcome(
        &mut self,
        _: &ActorId,
        _: RequestId,
        _: &RequestOutcome,
    ) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn remove_outcome(&mut self, _: &ActorId, _: RequestId) -> Result<(), StoreError> {
        Err(read_only())
    }
}

fn read_only() -> StoreError {
    StoreError::Encode("the read API cannot write".into())
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
    history: usize,
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
        history: usize,
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
        let shared = Shared {
            db: db.clone(),
            global,
            trees: Arc::new(RwLock::new(SmTrees::open(db, generation)?)),
            snapshot_dir,
            snapshot_files: Mutex::new(()),
            syncer,
            history,
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

    /// Apply entries in one transaction and return one result per entry.
    ///
    /// This is what [`RaftStateMachine::apply`] runs; it is public so that tests and tools can
    /// observe the results directly.
    pub async fn apply_entries(&self, entries: &[Entry]) -> Result<Vec<CommandResult>, StoreError> {
        let Some(last) = entries.last() else {
            return Ok(Vec::new());
        };
        let trees = self.shared.trees.write().await;
        let history = self.shared.history;
        let res = (
            &trees.meta,
            &trees.nodes,
            &trees.placements,
            &trees.actors,
            &trees.requests,
        )
            .transaction(|(meta, nodes, placements, actors, requests)| {
                let mut t = TxTables {
                    nodes,
                    placements,
                    actors,
                    requests,
                };
                let mut results = Vec::with_capacity(entries.len());
                let mut membership = None;
                for e in entries {
                    match &e.payload {
                        EntryPayload::Blank => results.push(CommandResult::Empty),
                        EntryPayload::Normal(cmd) => {
                            results.push(apply_command(&mut t, cmd, history)?)
                        }
                        EntryPayload::Membership(m) => {
                            membership = Some(StoredMembership::new(Some(e.log_id), m.clone()));
                            results.push(CommandResult::Empty);
                        }
                    }
                }
                tx_put(meta, APPLIED, &Some(last.log_id))?;
                if let Some(m) = &membership {
                    tx_put(meta, MEMBERSHIP, m)?;
                }
                Ok(results)
            });
        match res {
            Ok(r) => Ok(r),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
        }
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

    /// Write a snapshot of `trees` (held for reading, so apply waits) to a new file.
    fn build_snapshot(&self, trees: &SmTrees) -> Result<(SnapshotMeta, PathBuf), StoreError> {
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
        Ok((meta, path))
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

    fn current_snapshot(&self) -> Result<Option<(SnapshotMeta, PathBuf)>, StoreError> {
        let cur: Option<(SnapshotMeta, String)> =
            SmTrees::get(&self.global, CURRENT_SNAPSHOT, "current snapshot")?;
        Ok(cur.map(|(m, n)| (m, self.snapshot_path(&n))))
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
    let mut batches: [sled::Batch; 4] = Default::default();
    let mut pending = 0usize;
    let flush = |batches: &mut [sled::Batch; 4]| -> Result<(), StoreError> {
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
        let (meta, path) = tokio::task::spawn_blocking(move || shared.build_snapshot(&trees))
            .await
            .map_err(join_err)??;
        let snapshot = tokio::fs::File::open(path).await?;
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
        let Some((meta, path)) = self.shared.current_snapshot()? else {
            return Ok(None);
        };
        let snapshot = tokio::fs::File::open(&path).await?;
        Ok(Some(Snapshot { meta, snapshot }))
    }
}

impl StateView {
    /// The valid owner of `actor`: placed, and its node alive in the placement's incarnation.
    pub async fn owner(&self, actor: &ActorId) -> Result<Option<Placement>, StoreError> {
        let trees = self.shared.trees.read().await;
        let t = ReadTables(&trees);
        match t.placement(actor)? {
            Some(rec) => live_owner(&t, &rec),
            None => Ok(None),
        }
    }

    /// The committed state of `actor`, if it was ever written.
    pub async fn actor_state(&self, actor: &ActorId) -> Result<Option<ActorState>, StoreError> {
        let trees = self.shared.trees.read().await;
        Ok(ReadTables(&trees).actor(actor)?.map(|a| a.view()))
    }

    /// The remembered outcome of request `req` on `actor`, if it is still remembered.
    pub async fn request_outcome(
        &self,
        actor: &ActorId,
        req: RequestId,
    ) -> Result<Option<RequestOutcome>, StoreError> {
        let trees = self.shared.trees.read().await;
        ReadTables(&trees).outcome(actor, req)
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

//! The sled trees of one generation of the state machine, the keys of its metadata, and the
//! replay of the last persisted apply batch.

use crate::codec::{decode, encode};
use crate::error::StoreError;
use crate::overlay::{Change, Redo};
use crate::types::{LogId, StoredMembership};

pub(crate) const APPLIED: &[u8] = b"applied";
pub(crate) const MEMBERSHIP: &[u8] = b"membership";
pub(crate) const GENERATION: &[u8] = b"generation";
pub(crate) const CURRENT_SNAPSHOT: &[u8] = b"snapshot";
/// The last persisted apply batch, replayed when the store opens.
pub(crate) const REDO: &[u8] = b"redo";
pub(crate) const TAG_NODES: u8 = 1;
pub(crate) const TAG_PLACEMENTS: u8 = 2;
pub(crate) const TAG_ACTORS: u8 = 3;
pub(crate) const TAG_REQUESTS: u8 = 4;
pub(crate) const TAG_SESSIONS: u8 = 5;
/// The trees of one generation of the state machine.
#[derive(Debug)]
pub(crate) struct SmTrees {
    pub(crate) generation: u64,
    pub(crate) meta: sled::Tree,
    pub(crate) nodes: sled::Tree,
    pub(crate) placements: sled::Tree,
    pub(crate) actors: sled::Tree,
    pub(crate) requests: sled::Tree,
    pub(crate) sessions: sled::Tree,
}
pub(crate) fn tree_names(generation: u64) -> [String; 6] {
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
    pub(crate) fn open(db: &sled::Db, generation: u64) -> Result<Self, StoreError> {
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

    pub(crate) fn data_trees(&self) -> [(u8, &sled::Tree); 5] {
        [
            (TAG_NODES, &self.nodes),
            (TAG_PLACEMENTS, &self.placements),
            (TAG_ACTORS, &self.actors),
            (TAG_REQUESTS, &self.requests),
            (TAG_SESSIONS, &self.sessions),
        ]
    }

    pub(crate) fn get<T: serde::de::DeserializeOwned>(
        tree: &sled::Tree,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        tree.get(key)?.map(|v| decode(&v, what)).transpose()
    }

    /// The data tree with `tag`.
    pub(crate) fn tree(&self, tag: u8) -> Result<&sled::Tree, StoreError> {
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
    pub(crate) fn write_redo(&self, redo: &Redo) -> Result<(), StoreError> {
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
    pub(crate) fn replay_redo(&self) -> Result<(), StoreError> {
        if let Some(redo) = Self::get::<Redo>(&self.meta, REDO, "redo record")? {
            self.write_redo(&redo)?;
        }
        Ok(())
    }

    pub(crate) fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let applied = Self::get::<Option<LogId>>(&self.meta, APPLIED, "applied log id")?.flatten();
        let membership = Self::get(&self.meta, MEMBERSHIP, "membership")?.unwrap_or_default();
        Ok((applied, membership))
    }
}
pub(crate) fn drop_generation(db: &sled::Db, generation: u64) -> Result<(), StoreError> {
    for name in tree_names(generation) {
        db.drop_tree(name)?;
    }
    Ok(())
}

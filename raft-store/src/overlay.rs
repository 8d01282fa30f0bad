//! An apply batch in memory: the directory's tables over the committed trees plus the batch's
//! changes, persisted as one redo record followed by the plain writes.

use std::collections::BTreeMap;

use crate::codec::{
    CLOCK_KEY, actor_key, decode, encode, node_key, request_key, request_of_key, session_key,
};
use crate::command::{ActorId, NodeRecord, RequestId};
use crate::directory::{
    PlacementRecord, ReadTables, RequestOutcome, SessionClock, SessionRecord, StoredActor, Tables,
};
use crate::error::StoreError;
use crate::trees::{
    REDO, SmTrees, TAG_ACTORS, TAG_NODES, TAG_PLACEMENTS, TAG_REQUESTS, TAG_SESSIONS,
};
use crate::types::{LogId, StoredMembership};

/// A key and its value.
pub(crate) type KeyValue = (Vec<u8>, Vec<u8>);

/// One changed key of an apply batch: the tree's tag, the key, and the new value (`None`:
/// removed).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Change {
    pub(crate) tag: u8,
    #[serde(with = "serde_bytes")]
    pub(crate) key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub(crate) value: Option<Vec<u8>>,
}

/// What one persisted apply batch changed; stored under [`REDO`] before the changes themselves.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Redo {
    pub(crate) applied: Option<LogId>,
    pub(crate) membership: Option<StoredMembership>,
    pub(crate) changes: Vec<Change>,
}

/// [`Tables`] over the committed trees plus the changes of the batch being applied, which stay
/// in memory until [`Overlay::persist`].
pub(crate) struct Overlay<'a> {
    pub(crate) trees: &'a SmTrees,
    pub(crate) changes: BTreeMap<(u8, Vec<u8>), Option<Vec<u8>>>,
    pub(crate) bytes: usize,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(trees: &'a SmTrees) -> Self {
        Self {
            trees,
            changes: BTreeMap::new(),
            bytes: 0,
        }
    }

    pub(crate) fn get<T: serde::de::DeserializeOwned>(
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
    pub(crate) fn scan(
        &self,
        tag: u8,
        start: &[u8],
        end: &[u8],
    ) -> Result<Vec<KeyValue>, StoreError> {
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

    pub(crate) fn set(&mut self, tag: u8, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.bytes += key.len() + value.as_ref().map_or(0, Vec::len) + 8;
        self.changes.insert((tag, key), value);
    }

    pub(crate) fn put<T: serde::Serialize>(
        &mut self,
        tag: u8,
        key: Vec<u8>,
        v: &T,
    ) -> Result<(), StoreError> {
        self.set(tag, key, Some(encode(v)?));
        Ok(())
    }

    /// Persist the changes with `applied` (and `membership`, if the batch changed it): the redo
    /// record first, then each change, then the applied log id. Leaves the overlay empty.
    pub(crate) fn persist(
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

impl ReadTables for Overlay<'_> {
    type Error = StoreError;

    fn node(&self, node: u64) -> Result<Option<NodeRecord>, StoreError> {
        self.get(TAG_NODES, &node_key(node), "node record")
    }
    fn placement(&self, actor: &ActorId) -> Result<Option<PlacementRecord>, StoreError> {
        self.get(TAG_PLACEMENTS, &actor_key(actor), "placement")
    }
    fn actor(&self, actor: &ActorId) -> Result<Option<StoredActor>, StoreError> {
        self.get(TAG_ACTORS, &actor_key(actor), "actor state")
    }
    fn outcome(&self, req: RequestId) -> Result<Option<RequestOutcome>, StoreError> {
        self.get(TAG_REQUESTS, &request_key(req), "request outcome")
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
}

impl Tables for Overlay<'_> {
    fn put_node(&mut self, rec: &NodeRecord) -> Result<(), StoreError> {
        self.put(TAG_NODES, node_key(rec.node).to_vec(), rec)
    }
    fn put_placement(&mut self, actor: &ActorId, rec: &PlacementRecord) -> Result<(), StoreError> {
        self.put(TAG_PLACEMENTS, actor_key(actor), rec)
    }
    fn put_actor(&mut self, actor: &ActorId, rec: &StoredActor) -> Result<(), StoreError> {
        self.put(TAG_ACTORS, actor_key(actor), rec)
    }
    fn put_outcome(&mut self, req: RequestId, outcome: &RequestOutcome) -> Result<(), StoreError> {
        self.put(TAG_REQUESTS, request_key(req).to_vec(), outcome)
    }
    fn remove_outcome(&mut self, req: RequestId) -> Result<(), StoreError> {
        self.set(TAG_REQUESTS, request_key(req).to_vec(), None);
        Ok(())
    }
    fn put_session(&mut self, id: u64, rec: &SessionRecord) -> Result<(), StoreError> {
        self.put(TAG_SESSIONS, session_key(id).to_vec(), rec)
    }
    fn remove_session(&mut self, id: u64) -> Result<(), StoreError> {
        self.set(TAG_SESSIONS, session_key(id).to_vec(), None);
        Ok(())
    }
    fn put_clock(&mut self, clock: &SessionClock) -> Result<(), StoreError> {
        self.put(TAG_SESSIONS, CLOCK_KEY.to_vec(), clock)
    }
}

/// The key range of the outcomes of `session` numbered below `below` (all of them for
/// `u64::MAX`).
pub(crate) fn outcome_range(session: u64, below: u64) -> ([u8; 24], [u8; 24]) {
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

pub(crate) fn session_of_key(key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            what: "session key",
            reason: format!("{} bytes, expected 8", key.len()),
        })
}

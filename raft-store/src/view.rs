//! Read access to the applied state, through the directory's read-only tables.

use std::sync::Arc;

use crate::codec::decode;
use crate::command::{ActorId, ActorState, NodeRecord, Placement, RequestId};
use crate::directory::{ReadTables, RequestStatus, SessionRecord, live_owner, request_status};
use crate::error::StoreError;
use crate::overlay::Overlay;
use crate::state_machine::Shared;
use crate::types::{LogId, StoredMembership};

/// Read access to the applied state, for the runtime; cheap to clone.
///
/// Reads see the state as applied on this node. They are linearizable only after the caller has
/// waited for a Raft read index to be applied (see the runtime).
#[derive(Debug, Clone)]
pub struct StateView {
    pub(crate) shared: Arc<Shared>,
}

impl StateView {
    /// The valid owner of `actor`: placed, and its node alive in the placement's incarnation.
    pub async fn owner(&self, actor: &ActorId) -> Result<Option<Placement>, StoreError> {
        let trees = self.shared.trees.read().await;
        let t = Overlay::new(&trees);
        match t.placement(actor)? {
            Some(rec) => live_owner(&t, &rec),
            None => Ok(None),
        }
    }

    /// The committed state of `actor`, if it was ever written.
    pub async fn actor_state(&self, actor: &ActorId) -> Result<Option<ActorState>, StoreError> {
        let trees = self.shared.trees.read().await;
        Ok(Overlay::new(&trees).actor(actor)?.map(|a| a.view()))
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
        Overlay::new(&trees).node(node)
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

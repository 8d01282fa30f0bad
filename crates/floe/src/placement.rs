//! Where a new actor goes: the placement strategies, pure choices among the live nodes that
//! host the actor's type.

use std::sync::Arc;

use raft_store::types::NodeId;
use raft_store::{ActorId, NodeRecord};

/// Chooses the node a new actor is placed on.
pub trait PlacementStrategy: Send + Sync + 'static {
    /// Pick one of `candidates` (alive nodes that registered the actor's type) for `actor`;
    /// `local` is the node asking. `None` refuses the placement.
    fn choose(&self, actor: &ActorId, local: NodeId, candidates: &[NodeRecord]) -> Option<NodeId>;
}

/// Placement strategies.
#[derive(Clone, Default)]
pub enum Placement {
    /// The node that received the first call, if it hosts the type; otherwise a random one.
    #[default]
    PreferLocal,
    /// A uniformly random candidate.
    Random,
    /// The candidate with the fewest placements (ties broken at random).
    LeastLoaded,
    /// A strategy of your own.
    Custom(Arc<dyn PlacementStrategy>),
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Placement::PreferLocal => "PreferLocal",
            Placement::Random => "Random",
            Placement::LeastLoaded => "LeastLoaded",
            Placement::Custom(_) => "Custom",
        })
    }
}

fn pick_random(c: &[NodeRecord]) -> Option<NodeId> {
    if c.is_empty() {
        return None;
    }
    Some(c[rand::random_range(0..c.len())].node)
}

impl Placement {
    pub(crate) fn choose(
        &self,
        actor: &ActorId,
        local: NodeId,
        c: &[NodeRecord],
    ) -> Option<NodeId> {
        match self {
            Placement::PreferLocal => {
                if c.iter().any(|n| n.node == local) {
                    Some(local)
                } else {
                    pick_random(c)
                }
            }
            Placement::Random => pick_random(c),
            Placement::LeastLoaded => {
                let min = c.iter().map(|n| n.placements).min()?;
                let least: Vec<NodeRecord> =
                    c.iter().filter(|n| n.placements == min).cloned().collect();
                pick_random(&least)
            }
            Placement::Custom(s) => s.choose(actor, local, c),
        }
    }
}

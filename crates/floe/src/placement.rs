//! Where a new actor goes: the placement strategies, pure choices among the live nodes that
//! host the actor's type.

use std::sync::Arc;

use raft_store::types::NodeId;
use raft_store::{ActorId, NodeRecord};
use rand::{Rng, RngExt};

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

fn pick_random(c: &[NodeRecord], rng: &mut impl Rng) -> Option<NodeId> {
    if c.is_empty() {
        return None;
    }
    Some(c[rng.random_range(0..c.len())].node)
}

impl Placement {
    /// Choose a node among `c` (the live nodes hosting the actor's type) for `actor`, asked by
    /// `local`; the randomness comes from `rng`.
    pub(crate) fn choose(
        &self,
        actor: &ActorId,
        local: NodeId,
        c: &[NodeRecord],
        rng: &mut impl Rng,
    ) -> Option<NodeId> {
        match self {
            Placement::PreferLocal => {
                if c.iter().any(|n| n.node == local) {
                    Some(local)
                } else {
                    pick_random(c, rng)
                }
            }
            Placement::Random => pick_random(c, rng),
            Placement::LeastLoaded => {
                let min = c.iter().map(|n| n.placements).min()?;
                let least: Vec<NodeRecord> =
                    c.iter().filter(|n| n.placements == min).cloned().collect();
                pick_random(&least, rng)
            }
            Placement::Custom(s) => s.choose(actor, local, c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn node(id: NodeId, placements: u64) -> NodeRecord {
        NodeRecord {
            node: id,
            incarnation: 1,
            alive: true,
            addr: String::new(),
            actor_types: Vec::new(),
            placements,
        }
    }

    fn actor() -> ActorId {
        ActorId::new("t", "k")
    }

    #[test]
    fn prefer_local_takes_the_asking_node_when_it_hosts_the_type() {
        let mut rng = StdRng::seed_from_u64(1);
        let c = [node(1, 0), node(2, 0), node(3, 0)];
        assert_eq!(
            Placement::PreferLocal.choose(&actor(), 2, &c, &mut rng),
            Some(2)
        );
        // A gateway without the type places on one that has it.
        let got = Placement::PreferLocal.choose(&actor(), 9, &c, &mut rng);
        assert!(got.is_some_and(|n| (1..=3).contains(&n)), "{got:?}");
    }

    #[test]
    fn least_loaded_picks_among_the_least_loaded_only() {
        let mut rng = StdRng::seed_from_u64(2);
        let c = [node(1, 5), node(2, 1), node(3, 1)];
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..64 {
            seen.extend(Placement::LeastLoaded.choose(&actor(), 1, &c, &mut rng));
        }
        assert_eq!(seen, [2, 3].into_iter().collect());
    }

    #[test]
    fn random_reaches_every_candidate_and_nothing_is_chosen_from_nothing() {
        let mut rng = StdRng::seed_from_u64(3);
        let c = [node(1, 0), node(2, 0), node(3, 0)];
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..64 {
            seen.extend(Placement::Random.choose(&actor(), 1, &c, &mut rng));
        }
        assert_eq!(seen, [1, 2, 3].into_iter().collect());
        for p in [
            Placement::PreferLocal,
            Placement::Random,
            Placement::LeastLoaded,
        ] {
            assert_eq!(p.choose(&actor(), 1, &[], &mut rng), None);
        }
    }
}

//! The failure detector's decisions: which registered nodes the leader declares down, from what
//! it observes. No clock, no I/O: the driver in [`super`] feeds it observations and proposes
//! what it returns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use raft_store::NodeRecord;
use raft_store::types::NodeId;

/// One look at this node's Raft state and the directory, taken at `now`.
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    /// When it was taken.
    pub now: Instant,
    /// This node.
    pub me: NodeId,
    /// Whether this node is the Raft leader.
    pub leader: bool,
    /// The leader this node knows of, if any.
    pub current_leader: Option<NodeId>,
    /// The current Raft term.
    pub term: u64,
    /// The last log index applied here.
    pub applied: Option<u64>,
    /// The directory's node records, if they were read (see [`Detector::wants_nodes`]).
    pub nodes: Option<Vec<NodeRecord>>,
    /// The Raft membership's nodes.
    pub members: BTreeSet<NodeId>,
    /// For each node that acknowledged this leader's heartbeats, the time since it last did.
    pub acks: BTreeMap<NodeId, Duration>,
}

/// A node the leader declares down: propose `NodeDown` for this incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Declare {
    /// The node.
    pub node: NodeId,
    /// Its incarnation.
    pub incarnation: u64,
    /// How long it has been silent, as far as the leader can tell.
    pub silent: Duration,
}

/// The detector's memory between observations.
///
/// It runs on every node, not only on the leader: a follower remembers when it first saw each
/// registered incarnation and which leader it followed, so that when it becomes leader it can
/// tell a node it has long known alive (whose silence may have started before this leadership)
/// from one that has just registered (see [`silence`]).
#[derive(Debug)]
pub(crate) struct Detector {
    timeout: Duration,
    /// Least heartbeat silence from the leader before this node can start an election.
    election_silence: Duration,
    leader_since: Option<Instant>,
    /// The leader this node followed last, with its term.
    followed: Option<(NodeId, u64)>,
    /// While this node leads: the leader its election deposed (if [`deposed_leader`] holds).
    deposed: Option<NodeId>,
    /// Declarations not yet seen applied in the directory: none is proposed twice.
    declared: BTreeSet<(NodeId, u64)>,
    /// When each alive (node, incarnation) was first seen here, whatever this node's role: a
    /// freshly registered incarnation is not judged by the acknowledgements of the process it
    /// replaced.
    first_seen: BTreeMap<(NodeId, u64), Instant>,
    /// The applied index `first_seen` was last brought up to date at (records change only by
    /// applying entries).
    seen_at: Option<u64>,
}

impl Detector {
    /// A detector that declares a node down after `timeout` of silence. `election_silence` is
    /// the least time a follower hears nothing from its leader before it can start an election
    /// (with openraft: the leader lease, `election_timeout_max` in the pinned version, plus at
    /// least `election_timeout_min`).
    pub(crate) fn new(timeout: Duration, election_silence: Duration) -> Self {
        Self {
            timeout,
            election_silence,
            leader_since: None,
            followed: None,
            deposed: None,
            declared: BTreeSet::new(),
            first_seen: BTreeMap::new(),
            seen_at: None,
        }
    }

    /// Whether the next observation needs the directory's node records: always while leading,
    /// otherwise only when entries were applied since they were last read.
    pub(crate) fn wants_nodes(&self, leader: bool, applied: Option<u64>) -> bool {
        leader || self.seen_at != applied
    }

    /// Take in one observation; returns the nodes to declare down now.
    pub(crate) fn observe(&mut self, o: Observation) -> Vec<Declare> {
        if !o.leader {
            self.leader_since = None;
            self.deposed = None;
            if let Some(l) = o.current_leader.filter(|l| *l != o.me) {
                self.followed = Some((l, o.term));
            }
            if let Some(nodes) = &o.nodes {
                self.note_seen(nodes, o.now);
                self.seen_at = o.applied;
            }
            return Vec::new();
        }
        if self.leader_since.is_none() {
            self.deposed = deposed_leader(self.followed, o.me, o.term);
        }
        let since = *self.leader_since.get_or_insert(o.now);
        let Some(nodes) = o.nodes else {
            return Vec::new();
        };
        self.note_seen(&nodes, o.now);
        self.seen_at = o.applied;
        // A declaration is remembered until the directory shows it applied (or the node moved
        // on to another incarnation); only then can it not be proposed twice.
        let first_seen = &self.first_seen;
        self.declared.retain(|k| first_seen.contains_key(k));
        let mut out = Vec::new();
        for rec in nodes.iter().filter(|r| r.alive && r.node != o.me) {
            let seen = self
                .first_seen
                .get(&(rec.node, rec.incarnation))
                .map_or(Duration::ZERO, |t| o.now.saturating_duration_since(*t));
            let silent = silence(Silence {
                member: o.members.contains(&rec.node),
                ack: o.acks.get(&rec.node).copied(),
                leading: o.now.saturating_duration_since(since),
                seen,
                known_silent: if self.deposed == Some(rec.node) {
                    self.election_silence
                } else {
                    self.timeout / 2
                },
            });
            if silent >= self.timeout && self.declared.insert((rec.node, rec.incarnation)) {
                out.push(Declare {
                    node: rec.node,
                    incarnation: rec.incarnation,
                    silent,
                });
            }
        }
        out
    }

    /// A declaration's `NodeDown` was not committed: it may be declared again.
    pub(crate) fn not_committed(&mut self, d: &Declare) {
        self.declared.remove(&(d.node, d.incarnation));
    }

    /// Record when each alive (node, incarnation) of `nodes` was first seen; forget the others
    /// (an incarnation that is down never comes back: a restarted or rejoining node registers a
    /// new one).
    fn note_seen(&mut self, nodes: &[NodeRecord], now: Instant) {
        let alive: BTreeSet<(NodeId, u64)> = nodes
            .iter()
            .filter(|r| r.alive)
            .map(|r| (r.node, r.incarnation))
            .collect();
        self.first_seen.retain(|k, _| alive.contains(k));
        for k in alive {
            self.first_seen.entry(k).or_insert(now);
        }
    }
}

/// The leader that this node's election (won at `term`) deposed: the one it followed, if that
/// one led the term right before.
///
/// Floe never transfers leadership, so this node won `term` through its election timer, which
/// fires only once it has not heard from the leader it followed for the whole leader lease plus
/// an election timeout (openraft renews a follower's lease only on that leader's messages, and
/// does not let a voter grant a vote while the lease runs). The deposed leader has thus been
/// silent towards this node for at least the election silence before this leadership started.
/// With a gap in the terms (a split vote, or a leader this node never saw) nothing is inferred.
fn deposed_leader(followed: Option<(NodeId, u64)>, me: NodeId, term: u64) -> Option<NodeId> {
    followed
        .filter(|(l, t)| *l != me && t.checked_add(1) == Some(term))
        .map(|(l, _)| l)
}

/// What the leader knows of one registered node.
#[derive(Debug, Clone, Copy)]
struct Silence {
    /// Whether it is in the Raft membership.
    member: bool,
    /// Time since it last acknowledged this leader's heartbeats, if it has.
    ack: Option<Duration>,
    /// Time since this node became leader.
    leading: Duration,
    /// Time since this node first saw its current incarnation registered.
    seen: Duration,
    /// How long it had been silent already when this leadership started, at least: for the
    /// leader this node's election deposed, the election silence ([`deposed_leader`]); for any
    /// other node, a grace of half the node timeout (live nodes answer a new leader's first
    /// heartbeats within a heartbeat interval).
    known_silent: Duration,
}

/// How long a node has been silent, as far as the leader can tell: since its last
/// acknowledgement, or, before it acknowledged this leader, since the leadership started plus
/// what was known before. Never longer than its incarnation has been seen: a freshly registered
/// incarnation gets a whole node timeout, however old the acknowledgements of the process it
/// replaced are.
fn silence(s: Silence) -> Duration {
    if !s.member {
        return Duration::MAX;
    }
    let heard = s
        .ack
        .unwrap_or_else(|| s.leading.saturating_add(s.known_silent));
    heard.min(s.seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(600);
    // The election silence of the default timing (200 + 400 ms).
    const ELECTION: Duration = Duration::from_millis(600);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn known(ack: Option<u64>, leading: u64, seen: u64, known_silent: Duration) -> Duration {
        silence(Silence {
            member: true,
            ack: ack.map(ms),
            leading: ms(leading),
            seen: ms(seen),
            known_silent,
        })
    }

    #[test]
    fn a_node_that_left_the_membership_is_down_at_once() {
        let s = Silence {
            member: false,
            ack: Some(ms(1)),
            leading: ms(0),
            seen: ms(0),
            known_silent: TIMEOUT / 2,
        };
        assert_eq!(silence(s), Duration::MAX);
    }

    #[test]
    fn acknowledgements_decide_once_there_are_some() {
        assert_eq!(known(Some(40), 5_000, 60_000, TIMEOUT / 2), ms(40));
        assert_eq!(known(Some(700), 5_000, 60_000, TIMEOUT / 2), ms(700));
        // The deposed leader answers us after all: it is judged by its answers.
        assert_eq!(known(Some(30), 10, 60_000, ELECTION), ms(30));
    }

    #[test]
    fn a_long_known_node_gets_half_a_timeout_of_grace_from_a_new_leader() {
        // Seen long ago (as a follower): before it answers, its silence is the time since the
        // leadership started plus half the timeout, not the time since it was "first seen".
        assert!(known(None, 0, 60_000, TIMEOUT / 2) < TIMEOUT);
        assert!(known(None, 290, 60_000, TIMEOUT / 2) < TIMEOUT);
        assert!(known(None, 300, 60_000, TIMEOUT / 2) >= TIMEOUT);
    }

    #[test]
    fn the_deposed_leader_is_down_as_soon_as_the_election_is_won() {
        assert!(known(None, 0, 60_000, ELECTION) >= TIMEOUT);
    }

    #[test]
    fn a_fresh_incarnation_gets_a_whole_timeout() {
        // Old acknowledgements are those of the process it replaced.
        assert_eq!(known(Some(5_000), 60_000, 100, TIMEOUT / 2), ms(100));
        assert!(known(Some(5_000), 60_000, 599, TIMEOUT / 2) < TIMEOUT);
        assert!(known(None, 0, 0, ELECTION) < TIMEOUT);
        assert!(known(None, 1_000, 599, ELECTION) < TIMEOUT);
        assert!(known(None, 1_000, 600, ELECTION) >= TIMEOUT);
    }

    #[test]
    fn only_the_leader_of_the_previous_term_counts_as_deposed() {
        assert_eq!(deposed_leader(Some((3, 7)), 1, 8), Some(3));
        // A term in between (a split vote, or a leader this node never saw): nothing inferred.
        assert_eq!(deposed_leader(Some((3, 7)), 1, 9), None);
        assert_eq!(deposed_leader(Some((3, 8)), 1, 8), None);
        assert_eq!(deposed_leader(Some((1, 7)), 1, 8), None);
        assert_eq!(deposed_leader(None, 1, 8), None);
        assert_eq!(deposed_leader(Some((3, u64::MAX)), 1, 0), None);
    }

    fn rec(node: NodeId, incarnation: u64, alive: bool) -> NodeRecord {
        NodeRecord {
            node,
            incarnation,
            alive,
            addr: String::new(),
            actor_types: Vec::new(),
            placements: 0,
        }
    }

    /// An observation by node 1 at `t`, of nodes 1–3 (all members) with their incarnations.
    fn look(t: Instant, leader: bool, term: u64, nodes: &[NodeRecord]) -> Observation {
        Observation {
            now: t,
            me: 1,
            leader,
            current_leader: if leader { Some(1) } else { Some(3) },
            term,
            applied: Some(10),
            nodes: Some(nodes.to_vec()),
            members: [1, 2, 3].into_iter().collect(),
            acks: BTreeMap::new(),
        }
    }

    #[test]
    fn first_seen_keeps_the_first_sighting_of_each_alive_incarnation() {
        let t0 = Instant::now();
        let t1 = t0 + ms(500);
        let mut d = Detector::new(TIMEOUT, ELECTION);
        d.note_seen(&[rec(1, 1, true), rec(2, 1, true)], t0);
        // Node 2 restarted: incarnation 1 is down, incarnation 2 registered.
        d.note_seen(&[rec(1, 1, true), rec(2, 1, false), rec(2, 2, true)], t1);
        assert_eq!(d.first_seen.get(&(1, 1)), Some(&t0));
        assert_eq!(d.first_seen.get(&(2, 1)), None);
        assert_eq!(d.first_seen.get(&(2, 2)), Some(&t1));
        assert_eq!(d.first_seen.len(), 2);
    }

    #[test]
    fn a_follower_declares_nothing_and_reads_the_directory_only_after_applying() {
        let t0 = Instant::now();
        let nodes = [rec(1, 1, true), rec(2, 1, true), rec(3, 1, true)];
        let mut d = Detector::new(TIMEOUT, ELECTION);
        assert!(d.wants_nodes(false, Some(10)));
        assert!(
            d.observe(look(t0 + ms(60_000), false, 4, &nodes))
                .is_empty()
        );
        assert!(!d.wants_nodes(false, Some(10)));
        assert!(d.wants_nodes(false, Some(11)));
        assert!(d.wants_nodes(true, Some(10)));
    }

    #[test]
    fn a_silent_member_is_declared_once_until_its_declaration_fails() {
        let t0 = Instant::now();
        let nodes = [rec(1, 1, true), rec(2, 1, true), rec(3, 4, true)];
        let mut d = Detector::new(TIMEOUT, ELECTION);
        // Known long before this leadership, as a follower of node 3 in term 4.
        d.observe(look(t0, false, 4, &nodes));
        let mut o = look(t0 + ms(10_000), true, 6, &nodes);
        o.acks = [(2, ms(20)), (3, ms(599))].into_iter().collect();
        assert!(d.observe(o.clone()).is_empty());
        o.now += ms(1);
        o.acks.insert(3, ms(600));
        let down = d.observe(o.clone());
        assert_eq!(
            down,
            vec![Declare {
                node: 3,
                incarnation: 4,
                silent: ms(600)
            }]
        );
        // Proposed and not yet applied: not declared again.
        o.now += ms(50);
        o.acks.insert(3, ms(650));
        assert!(d.observe(o.clone()).is_empty());
        // The proposal failed: declared again at the next look.
        d.not_committed(&down[0]);
        assert_eq!(d.observe(o.clone()).len(), 1);
        // Applied: the record is down, nothing more to declare; a new incarnation is judged
        // afresh, not by the old process's silence.
        let after = [
            rec(1, 1, true),
            rec(2, 1, true),
            rec(3, 4, false),
            rec(3, 5, true),
        ];
        o.nodes = Some(after.to_vec());
        o.now += ms(10);
        assert!(d.observe(o.clone()).is_empty());
        o.now += ms(599);
        assert!(d.observe(o.clone()).is_empty());
        o.now += ms(1);
        let again = d.observe(o);
        assert_eq!((again.len(), again[0].incarnation), (1, 5));
    }

    #[test]
    fn a_new_leader_declares_the_leader_it_deposed_at_once_and_others_after_grace() {
        let t0 = Instant::now();
        let nodes = [rec(1, 1, true), rec(2, 1, true), rec(3, 1, true)];
        let mut d = Detector::new(TIMEOUT, ELECTION);
        // Node 1 followed node 3 in term 4 and won term 5: node 3 has been silent towards it for
        // the election silence already.
        d.observe(look(t0, false, 4, &nodes));
        let down = d.observe(look(t0 + ms(5_000), true, 5, &nodes));
        assert_eq!(down.iter().map(|x| x.node).collect::<Vec<_>>(), vec![3]);
        // Node 2 has not answered yet either; it gets half a timeout of grace from the start of
        // this leadership.
        assert!(d.observe(look(t0 + ms(5_299), true, 5, &nodes)).is_empty());
        let later = d.observe(look(t0 + ms(5_300), true, 5, &nodes));
        assert_eq!(later.iter().map(|x| x.node).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_registered_node_outside_the_membership_is_declared_at_once_but_never_the_leader_itself() {
        let t0 = Instant::now();
        let nodes = [rec(1, 1, true), rec(4, 1, true)];
        let mut d = Detector::new(TIMEOUT, ELECTION);
        let mut o = look(t0, true, 2, &nodes);
        o.members = [1].into_iter().collect();
        let down = d.observe(o);
        assert_eq!(down.iter().map(|x| x.node).collect::<Vec<_>>(), vec![4]);
        assert_eq!(down[0].silent, Duration::MAX);
    }
}

//! Cluster mode: how a node takes part in a cluster (its settings) and what it sees of it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use floe_net::{TlsMaterial, TransportConfig};
use raft_store::types::{NodeId, Raft, WatchReceiver};
use raft_store::{NodeRecord, StateView};

use crate::config::ConfigError;
use crate::placement::Placement;

/// How a node takes part in a cluster: [`ClusterConfig::new`] and the setters of the same names
/// as the fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// Address other nodes and clients use to reach this node (default: the bound address).
    pub advertise: Option<String>,
    /// This node's certificate (it must be for this node's id), key and the cluster CA.
    pub tls: TlsMaterial,
    /// Transport settings, the QUIC address to bind among them (`transport.listen`).
    pub transport: TransportConfig,
    /// Initial voters `(id, address)`, identical on every node that bootstraps; used only when
    /// the data directory is new. Empty for a node that joins. An empty address for this node
    /// stands for its advertised address.
    pub bootstrap: Vec<(NodeId, String)>,
    /// Nodes of a running cluster to ask for admission (when not bootstrapping).
    pub join: Vec<SocketAddr>,
    /// Join as a voter (after catching up) rather than as a learner.
    pub join_as_voter: bool,
    /// The leader declares a node down when its heartbeat acknowledgements stop this long.
    /// It also sets the Raft election timeout, to between 1/3 and 2/3 of it (at most 400–800 ms):
    /// a leader is replaced after a silence of 1–1.33 times the node timeout.
    pub node_timeout: Duration,
    /// Where new actors go.
    pub placement: Placement,
    /// How long startup waits for a leader and for this node's membership (bootstrap, join, or
    /// `floe init` run by an operator).
    pub startup_timeout: Duration,
}

floe_proto::setters!(ClusterConfig {
    advertise: Option<String>,
    tls: TlsMaterial,
    transport: TransportConfig,
    bootstrap: Vec<(NodeId, String)>,
    join: Vec<SocketAddr>,
    join_as_voter: bool,
    node_timeout: Duration,
    placement: Placement,
    startup_timeout: Duration,
});

impl ClusterConfig {
    /// A node listening on `listen` with `tls`, other settings default.
    pub fn new(listen: SocketAddr, tls: TlsMaterial) -> Self {
        Self {
            advertise: None,
            tls,
            transport: TransportConfig::default().listen(listen),
            bootstrap: Vec::new(),
            join: Vec::new(),
            join_as_voter: false,
            node_timeout: Duration::from_millis(600),
            placement: Placement::default(),
            startup_timeout: Duration::from_secs(60),
        }
    }

    /// Check the settings and hand them back.
    ///
    /// # Errors
    /// [`ConfigError`] names the first setting that is wrong; a wrong transport setting is
    /// named as the transport names it.
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        let check = ConfigError::check;
        self.transport = self.transport.validate()?;
        check(
            self.node_timeout >= Duration::from_millis(10),
            "node_timeout",
            "must be at least 10 ms",
        )?;
        check(
            !self.startup_timeout.is_zero(),
            "startup_timeout",
            "must be positive",
        )?;
        let ids: BTreeSet<NodeId> = self.bootstrap.iter().map(|(id, _)| *id).collect();
        check(
            ids.len() == self.bootstrap.len(),
            "bootstrap",
            "names a node id twice",
        )?;
        Ok(self)
    }
}

/// What an application sees of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterView {
    /// This node.
    pub this: NodeId,
    /// This node's Raft state (`Leader`, `Follower`, `Learner`, `Candidate`, ...).
    pub state: String,
    /// The current leader, if known.
    pub leader: Option<NodeId>,
    /// The current Raft term.
    pub term: u64,
    /// The last log index applied here.
    pub last_applied: Option<u64>,
    /// Every member of the Raft membership.
    pub members: Vec<MemberView>,
}

/// One member in a [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberView {
    /// The node.
    pub node: NodeId,
    /// Its address.
    pub addr: String,
    /// Whether it votes.
    pub voter: bool,
    /// Whether the directory considers it alive.
    pub alive: bool,
    /// Its incarnation, if registered.
    pub incarnation: Option<u64>,
    /// Actors placed on it in its current incarnation.
    pub placements: u64,
    /// Milliseconds since the leader last heard from it (known on the leader only).
    pub last_ack_ms: Option<u64>,
}

pub(crate) async fn cluster_view(raft: &Raft, view: &StateView) -> ClusterView {
    let m = raft.metrics().borrow_watched().clone();
    let dir: BTreeMap<NodeId, NodeRecord> = view
        .nodes()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|n| (n.node, n))
        .collect();
    let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
    let acks = m.heartbeat.clone().unwrap_or_default();
    let members = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, info)| {
            let rec = dir.get(id);
            MemberView {
                node: *id,
                addr: info.addr.clone(),
                voter: voters.contains(id),
                alive: rec.is_some_and(|r| r.alive),
                incarnation: rec.map(|r| r.incarnation),
                placements: rec.map_or(0, |r| r.placements),
                last_ack_ms: if *id == m.id {
                    Some(0)
                } else {
                    acks.get(id)
                        .and_then(|a| a.as_ref())
                        .map(|a| crate::membership::openraft_elapsed(a).as_millis() as u64)
                },
            }
        })
        .collect();
    ClusterView {
        this: m.id,
        state: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_applied: m.last_applied.map(|l| l.index),
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_net::certs::CertificateAuthority;

    fn config() -> ClusterConfig {
        let ca = CertificateAuthority::create("t").expect("ca");
        let node = ca.issue_node(1, &[]).expect("node");
        let tls = TlsMaterial::from_pem(
            ca.cert_pem().as_bytes(),
            node.cert_pem.as_bytes(),
            node.key_pem.as_bytes(),
        )
        .expect("material");
        ClusterConfig::new("127.0.0.1:0".parse().expect("addr"), tls)
    }

    fn wrong(c: ClusterConfig) -> &'static str {
        c.validate().expect_err("a setting is wrong").setting
    }

    #[test]
    fn validate_names_the_wrong_setting_of_the_cluster_or_its_transport() {
        assert!(config().validate().is_ok());
        assert_eq!(wrong(config().node_timeout(Duration::ZERO)), "node_timeout");
        assert_eq!(
            wrong(config().startup_timeout(Duration::ZERO)),
            "startup_timeout"
        );
        let twice = vec![(1, String::new()), (2, "b:1".into()), (1, "c:1".into())];
        assert_eq!(wrong(config().bootstrap(twice)), "bootstrap");
        let transport = TransportConfig::default().max_streams(0);
        assert_eq!(wrong(config().transport(transport)), "max_streams");
    }
}

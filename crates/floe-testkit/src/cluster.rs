//! In-process clusters: real nodes (QUIC on loopback, sled in a directory of the test's) in the
//! test's own process, and clients of them.

use std::net::SocketAddr;
use std::path::Path;

use floe::{ClusterConfig, Node, NodeBuilder, Placement, RuntimeConfig};
use floe_client::{Client, ClientConfig};

use crate::Pki;

/// What a node registers: its actor types (for example `|b| b.register::<MyActor>()`).
pub type Register = fn(NodeBuilder) -> NodeBuilder;

/// How to start one node.
#[derive(Clone)]
pub struct NodeSpec {
    /// The node's id.
    pub id: u64,
    /// Where it listens (port 0 for a fresh port on loopback).
    pub listen: SocketAddr,
    /// Nodes to join through; empty: bootstrap a cluster of this node alone.
    pub seeds: Vec<SocketAddr>,
    /// Join as a voter rather than as a learner.
    pub voter: bool,
    /// Where new actors go.
    pub placement: Placement,
    /// Runtime settings.
    pub runtime: RuntimeConfig,
    /// The actor types it hosts.
    pub register: Register,
}

impl NodeSpec {
    /// Node `id` on a fresh loopback port, bootstrapping alone, hosting what `register` adds.
    pub fn new(id: u64, register: Register) -> Self {
        Self {
            id,
            listen: loopback(),
            seeds: Vec::new(),
            voter: true,
            placement: Placement::default(),
            runtime: RuntimeConfig::default(),
            register,
        }
    }

    /// Join through `seeds` instead of bootstrapping.
    pub fn join(mut self, seeds: &[SocketAddr], voter: bool) -> Self {
        self.seeds = seeds.to_vec();
        self.voter = voter;
        self
    }

    /// Listen on `listen`.
    pub fn listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Place new actors with `placement`.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Use runtime settings `runtime`.
    pub fn runtime(mut self, runtime: RuntimeConfig) -> Self {
        self.runtime = runtime;
        self
    }
}

/// A fresh port on loopback.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Start the node `spec` describes, with its data in `root/n{id}`.
pub async fn start_node(pki: &Pki, root: &Path, spec: NodeSpec) -> Node {
    let id = spec.id;
    let mut cfg = ClusterConfig::new(spec.listen, pki.node(id));
    if spec.seeds.is_empty() {
        cfg.bootstrap = vec![(id, String::new())];
    }
    cfg.join = spec.seeds;
    cfg.join_as_voter = spec.voter;
    cfg.placement = spec.placement;
    let builder = Node::builder()
        .id(id)
        .data_dir(root.join(format!("n{id}")))
        .cluster(cfg)
        .runtime(spec.runtime);
    (spec.register)(builder)
        .build()
        .await
        .unwrap_or_else(|e| panic!("node {id} starts: {e}"))
}

/// A cluster of `n` voters hosting what `register` adds: node 1 bootstraps, the others join.
pub async fn start_cluster(pki: &Pki, root: &Path, n: u64, register: Register) -> Vec<Node> {
    start_cluster_with(pki, root, n, NodeSpec::new(1, register)).await
}

/// A cluster of `n` voters like `template` (its id, seeds and voter flag are replaced): node 1
/// bootstraps, the others join through it.
pub async fn start_cluster_with(pki: &Pki, root: &Path, n: u64, template: NodeSpec) -> Vec<Node> {
    let first = NodeSpec {
        id: 1,
        seeds: Vec::new(),
        voter: true,
        ..template.clone()
    };
    let first = start_node(pki, root, first).await;
    let seed = addr(&first);
    let mut nodes = vec![first];
    for id in 2..=n {
        let spec = NodeSpec {
            id,
            ..template.clone()
        }
        .join(&[seed], true);
        nodes.push(start_node(pki, root, spec).await);
    }
    nodes
}

/// The QUIC address of a cluster node.
pub fn addr(n: &Node) -> SocketAddr {
    n.addr()
        .expect("a cluster node has an address")
        .parse()
        .expect("a node address is a socket address")
}

/// A client of the nodes at `seeds`, with a client certificate of `pki`.
pub async fn client(pki: &Pki, seeds: Vec<SocketAddr>) -> Client {
    Client::connect(ClientConfig::new(seeds, pki.client("tester")))
        .await
        .expect("client connects")
}

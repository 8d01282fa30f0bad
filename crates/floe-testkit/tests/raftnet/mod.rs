//! Raft nodes without the actor runtime, over real QUIC and real sled in temp dirs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_net::raft::{QuicRaftNetwork, RaftService};
use floe_net::{Transport, TransportConfig};
use openraft::SnapshotPolicy;
use raft_store::types::{NodeId, NodeInfo, NodeRole, Raft, RaftConfig, WatchReceiver};
use raft_store::{Command, StateView, StoreConfig};

pub use floe_testkit::{Pki, init_tracing};

pub fn raft_config() -> Arc<RaftConfig> {
    let c = RaftConfig {
        cluster_name: "test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
        max_in_snapshot_log_to_keep: 100,
        enable_pre_vote: Some(true),
        ..Default::default()
    };
    Arc::new(c.validate().expect("raft config"))
}

pub struct TestNode {
    pub id: NodeId,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    pub raft: Raft,
    pub transport: Transport,
    pub view: StateView,
    pub server: tokio::task::JoinHandle<()>,
}

impl TestNode {
    pub fn info(&self) -> NodeInfo {
        NodeInfo::new(self.addr.to_string(), NodeRole::Voter)
    }

    /// Stop Raft and the endpoint, releasing the data directory and the port.
    pub async fn stop(self) {
        self.transport.shutdown(Duration::from_millis(200)).await;
        self.raft.shutdown().await.expect("raft shutdown");
        self.server.abort();
    }
}

/// Start node `id` on `addr` (port 0 for a fresh one) with its data in `dir`.
pub async fn start_node(pki: &Pki, id: NodeId, dir: &Path, addr: SocketAddr) -> TestNode {
    start_node_with(pki, id, dir, addr, TransportConfig::default()).await
}

/// [`start_node`] with transport settings `base` (its `listen` is replaced by `addr`).
pub async fn start_node_with(
    pki: &Pki,
    id: NodeId,
    dir: &Path,
    addr: SocketAddr,
    base: TransportConfig,
) -> TestNode {
    let tls = pki.node(id);
    // A restarted node rebinds its old port, which the previous endpoint may hold briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let transport = loop {
        let config = base.clone().listen(addr);
        match Transport::bind(config, &tls) {
            Ok(t) => break t,
            Err(e) if Instant::now() < deadline => {
                tracing::info!("rebinding {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    };
    let addr = transport.local_addr().expect("local addr");
    let (log, sm) =
        raft_store::open(dir.join("raft"), &StoreConfig::default()).expect("open store");
    let view = sm.view();
    let network = QuicRaftNetwork::new(id, transport.clone());
    let raft = Raft::new(id, raft_config(), network, log, sm)
        .await
        .expect("raft");
    let service = RaftService::new(raft.clone(), dir.join("incoming")).expect("service");
    let server = transport.serve(Arc::new(service));
    TestNode {
        id,
        dir: dir.to_path_buf(),
        addr,
        raft,
        transport,
        view,
        server,
    }
}

pub async fn start_cluster(pki: &Pki, root: &Path, n: u64) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        let dir = root.join(format!("n{id}"));
        nodes.push(start_node(pki, id, &dir, "127.0.0.1:0".parse().expect("addr")).await);
    }
    let members: BTreeMap<NodeId, NodeInfo> = nodes.iter().map(|n| (n.id, n.info())).collect();
    nodes[0].raft.initialize(members).await.expect("initialize");
    nodes
}

/// Wait until some node of `nodes` other than `not` is leader, seen by all of `nodes`.
pub async fn wait_leader(nodes: &[&Raft], not: Option<NodeId>) -> NodeId {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leaders: Vec<Option<NodeId>> = nodes
            .iter()
            .map(|r| r.metrics().borrow_watched().current_leader)
            .collect();
        if let Some(Some(l)) = leaders.first()
            && leaders.iter().all(|x| *x == Some(*l))
            && Some(*l) != not
        {
            return *l;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Write `cmds` with 64 in flight through `raft`, following the leader if it changes (a
/// legitimate event under load); panics on any other error or after 30 s.
pub async fn write_all(raft: &Raft, cmds: impl Iterator<Item = Command>) -> u64 {
    write_all_to(std::slice::from_ref(raft), cmds).await
}

/// [`write_all`] over several nodes: a command refused with `ForwardToLeader` is retried on the
/// node it names.
pub async fn write_all_to(rafts: &[Raft], cmds: impl Iterator<Item = Command>) -> u64 {
    use futures::StreamExt;
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = |hint: Option<NodeId>| -> Raft {
        let pick = hint.or_else(|| rafts[0].metrics().borrow_watched().current_leader);
        rafts
            .iter()
            .find(|r| Some(r.metrics().borrow_watched().id) == pick)
            .unwrap_or(&rafts[0])
            .clone()
    };
    let results: Vec<u64> = futures::stream::iter(cmds)
        .map(|c| {
            let mut target = leader(None);
            async move {
                loop {
                    match target.client_write(c.clone()).await {
                        Ok(r) => return r.log_id.index,
                        Err(e) if Instant::now() < deadline => {
                            let hint = e.forward_to_leader().and_then(|f| f.leader_id);
                            tracing::warn!(error = %e, ?hint, "write refused; following the leader");
                            assert!(rafts.len() > 1 || hint.is_none(), "write failed: {e}");
                            if hint.is_none() {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            target = leader(hint);
                        }
                        Err(e) => panic!("write failed for 30 s: {e}"),
                    }
                }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().max().unwrap_or(0)
}

pub async fn wait_applied(raft: &Raft, index: u64, what: &str) {
    raft.wait(Some(Duration::from_secs(30)))
        .applied_index_at_least(Some(index), what)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// A service that answers pings and read points (the transport has already applied its role
/// rules), and refuses everything else.
pub struct PongService;

impl floe_net::Service for PongService {
    async fn handle(&self, _peer: floe_net::Peer, req: floe_proto::Request) -> floe_proto::Answer {
        use floe_proto::{AdminRequest, LeaderRequest, ReadPoint, Request, Rpc};
        match req {
            Request::Admin(AdminRequest::Ping(p)) => p.answer(Ok(())),
            Request::Leader(LeaderRequest::ReadIndex(r)) => r.answer(Ok(ReadPoint { index: 7 })),
            _ => floe_proto::Answer::error(floe_proto::WireError::new(
                floe_proto::ErrorKind::BadRequest,
                "not served by the pong service",
            )),
        }
    }
}

/// A node endpoint serving [`PongService`].
pub fn pong_node(pki: &Pki, id: NodeId) -> Transport {
    let t = Transport::bind(TransportConfig::default(), &pki.node(id)).expect("bind");
    t.serve(Arc::new(PongService));
    t
}

/// A raw QUIC connection to `addr` (node 1) with node `id`'s certificate and Floe's ALPN, for
/// sending what the real transport never would.
pub async fn raw_node_connection(pki: &Pki, addr: SocketAddr, id: NodeId) -> quinn::Connection {
    let cert = pki.ca.issue_node(id, &[]).expect("cert");
    let raw = raw_client(
        pki.ca.cert_pem(),
        Some((&cert.cert_pem, &cert.key_pem)),
        floe_proto::ALPN,
    );
    raw.connect(addr, "node-1.floe")
        .expect("connect")
        .await
        .expect("handshake")
}

/// A raw quinn client endpoint with full control over its TLS settings, for attacks the real
/// transport refuses to make.
pub fn raw_client(ca_pem: &str, cert: Option<(&str, &str)>, alpn: &[u8]) -> quinn::Endpoint {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).expect("quic crypto");
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep
}

/// Ping through the real transport and expect `Pong`.
pub async fn assert_serves(client: &Transport, server: &Transport, what: &str) {
    let target = floe_net::Target::node(1, server.local_addr().expect("addr"));
    let r = client
        .request(&target, floe_proto::Ping, Duration::from_secs(5))
        .await;
    assert!(r.is_ok(), "{what}: legitimate peer not served: {r:?}");
}

//! In-process clusters over real QUIC and sled, and the actors the tests call.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use floe::certs::CertificateAuthority;
use floe::prelude::*;
use floe::{ClusterConfig, Placement, RuntimeConfig, TlsMaterial};
use floe_client::{Client, ClientConfig};
use serde::{Deserialize, Serialize};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG")
                .unwrap_or_else(|_| "warn,openraft=error".into()),
        )
        .with_test_writer()
        .try_init();
}

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "test.Counter", handles(Add, Get))]
pub struct Counter {
    pub value: u64,
}

#[derive(Message, Serialize, Deserialize)]
#[message(reply = u64)]
pub struct Add(pub u64);

#[derive(Message, Serialize, Deserialize)]
#[message(reply = u64)]
pub struct Get;

impl Handler<Add> for Counter {
    type Error = Never;
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> Result<u64, Never> {
        self.value += n;
        Ok(self.value)
    }
}

impl Handler<Get> for Counter {
    type Error = Never;
    async fn handle(&mut self, _: Get, _: &mut Context<Self>) -> Result<u64, Never> {
        Ok(self.value)
    }
}

/// Adds to another counter (an actor→actor call, usually across nodes) and reports its node.
#[derive(Actor, Default)]
#[actor(name = "test.Relay", stateless, handles(Forward))]
pub struct Relay;

#[derive(Message, Serialize, Deserialize)]
#[message(reply = (u64, u64))]
pub struct Forward {
    pub to: String,
    pub n: u64,
}

impl Handler<Forward> for Relay {
    type Error = String;
    async fn handle(&mut self, f: Forward, ctx: &mut Context<Self>) -> Result<(u64, u64), String> {
        let v = ctx
            .actor::<Counter>(f.to)
            .call(Add(f.n))
            .await
            .map_err(|e| e.to_string())?;
        Ok((v, ctx.node()))
    }
}

pub struct Pki {
    pub ca: CertificateAuthority,
}

impl Pki {
    pub fn new() -> Self {
        Self {
            ca: CertificateAuthority::create("test").expect("CA"),
        }
    }
    fn material(&self, c: floe::certs::CertifiedKeyPem) -> TlsMaterial {
        TlsMaterial::from_pem(
            self.ca.cert_pem().as_bytes(),
            c.cert_pem.as_bytes(),
            c.key_pem.as_bytes(),
        )
        .expect("tls")
    }
    pub fn node(&self, id: u64) -> TlsMaterial {
        self.material(self.ca.issue_node(id, &[]).expect("node cert"))
    }
    pub fn client(&self, name: &str) -> TlsMaterial {
        self.material(self.ca.issue_client(name).expect("client cert"))
    }
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

/// Start node `id`: bootstrap alone if `seeds` is empty, else join through them as a voter.
pub async fn start(
    pki: &Pki,
    root: &Path,
    id: u64,
    seeds: &[SocketAddr],
    voter: bool,
    placement: Placement,
) -> Node {
    start_at(pki, root, id, loopback(), seeds, voter, placement).await
}

pub async fn start_at(
    pki: &Pki,
    root: &Path,
    id: u64,
    listen: SocketAddr,
    seeds: &[SocketAddr],
    voter: bool,
    placement: Placement,
) -> Node {
    start_with(
        pki,
        root,
        id,
        listen,
        seeds,
        voter,
        placement,
        RuntimeConfig::default(),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
pub async fn start_with(
    pki: &Pki,
    root: &Path,
    id: u64,
    listen: SocketAddr,
    seeds: &[SocketAddr],
    voter: bool,
    placement: Placement,
    runtime: RuntimeConfig,
) -> Node {
    let mut cfg = ClusterConfig::new(listen, pki.node(id));
    if seeds.is_empty() {
        cfg.bootstrap = vec![(id, String::new())];
    }
    cfg.join = seeds.to_vec();
    cfg.join_as_voter = voter;
    cfg.placement = placement;
    Node::builder()
        .id(id)
        .data_dir(root.join(format!("n{id}")))
        .cluster(cfg)
        .runtime(runtime)
        .register::<Counter>()
        .register::<Relay>()
        .register::<Account>()
        .register::<Slow>()
        .register::<Blob>()
        .register::<WhoAmI>()
        .register_builtins()
        .build()
        .await
        .unwrap_or_else(|e| panic!("node {id} starts: {e}"))
}

/// Start node `id` hosting only the actor types `register` adds.
pub async fn start_hosting(
    pki: &Pki,
    root: &Path,
    id: u64,
    seeds: &[SocketAddr],
    register: fn(floe::NodeBuilder) -> floe::NodeBuilder,
) -> Node {
    let mut cfg = ClusterConfig::new(loopback(), pki.node(id));
    if seeds.is_empty() {
        cfg.bootstrap = vec![(id, String::new())];
    }
    cfg.join = seeds.to_vec();
    cfg.join_as_voter = true;
    register(
        Node::builder()
            .id(id)
            .data_dir(root.join(format!("n{id}")))
            .cluster(cfg),
    )
    .build()
    .await
    .unwrap_or_else(|e| panic!("node {id} starts: {e}"))
}

pub fn addr(n: &Node) -> SocketAddr {
    n.addr()
        .expect("cluster node")
        .parse()
        .expect("socket addr")
}

/// A cluster of `n` voters: node 1 bootstraps, the others join.
pub async fn cluster(pki: &Pki, root: &Path, n: u64, placement: Placement) -> Vec<Node> {
    cluster_with(pki, root, n, placement, RuntimeConfig::default()).await
}

/// [`cluster`] with runtime settings.
pub async fn cluster_with(
    pki: &Pki,
    root: &Path,
    n: u64,
    placement: Placement,
    runtime: RuntimeConfig,
) -> Vec<Node> {
    let l = loopback();
    let first = start_with(
        pki,
        root,
        1,
        l,
        &[],
        true,
        placement.clone(),
        runtime.clone(),
    )
    .await;
    let seed = addr(&first);
    let mut nodes = vec![first];
    for id in 2..=n {
        let node = start_with(
            pki,
            root,
            id,
            l,
            &[seed],
            true,
            placement.clone(),
            runtime.clone(),
        )
        .await;
        nodes.push(node);
    }
    nodes
}

/// A bank account that refuses to go negative.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "test.Account", handles(Credit, Debit))]
pub struct Account {
    pub balance: i64,
}

#[derive(Message, Serialize, Deserialize)]
#[message(reply = i64)]
pub struct Credit(pub i64);

#[derive(Message, Serialize, Deserialize)]
#[message(reply = i64)]
pub struct Debit(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("insufficient funds: {0}")]
pub struct Insufficient(pub i64);

impl Handler<Credit> for Account {
    type Error = Never;
    async fn handle(&mut self, Credit(n): Credit, _: &mut Context<Self>) -> Result<i64, Never> {
        self.balance += n;
        Ok(self.balance)
    }
}

impl Handler<Debit> for Account {
    type Error = Insufficient;
    async fn handle(
        &mut self,
        Debit(n): Debit,
        _: &mut Context<Self>,
    ) -> Result<i64, Insufficient> {
        if self.balance < n {
            return Err(Insufficient(self.balance));
        }
        self.balance -= n;
        Ok(self.balance)
    }
}

/// A counter whose additions take `delay_ms` before they commit.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "test.Slow", handles(SlowAdd))]
pub struct Slow {
    pub value: u64,
}

#[derive(Message, Serialize, Deserialize)]
#[message(reply = u64)]
pub struct SlowAdd {
    pub n: u64,
    pub delay_ms: u64,
}

impl Handler<SlowAdd> for Slow {
    type Error = Never;
    async fn handle(&mut self, a: SlowAdd, _: &mut Context<Self>) -> Result<u64, Never> {
        tokio::time::sleep(Duration::from_millis(a.delay_ms)).await;
        self.value += a.n;
        Ok(self.value)
    }
}

pub async fn client(pki: &Pki, seeds: Vec<SocketAddr>) -> Client {
    Client::connect(ClientConfig::new(seeds, pki.client("tester")))
        .await
        .expect("client connects")
}

pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An actor whose state is as large as asked.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "test.Blob", handles(Fill, Size))]
pub struct Blob {
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Make the state `len` bytes of `byte`; answers the new length.
#[derive(Message, Serialize, Deserialize)]
#[message(reply = usize)]
pub struct Fill {
    pub len: usize,
    pub byte: u8,
}

/// The state's length and first byte.
#[derive(Message, Serialize, Deserialize)]
#[message(reply = (usize, Option<u8>))]
pub struct Size;

impl Handler<Fill> for Blob {
    type Error = Never;
    async fn handle(&mut self, f: Fill, _: &mut Context<Self>) -> Result<usize, Never> {
        self.data = vec![f.byte; f.len];
        Ok(self.data.len())
    }
}

impl Handler<Size> for Blob {
    type Error = Never;
    async fn handle(
        &mut self,
        _: Size,
        _: &mut Context<Self>,
    ) -> Result<(usize, Option<u8>), Never> {
        Ok((self.data.len(), self.data.first().copied()))
    }
}

/// A stateless actor that says which node and epoch answered.
#[derive(Actor, Default)]
#[actor(name = "test.WhoAmI", stateless, handles(Who))]
pub struct WhoAmI;

#[derive(Message, Serialize, Deserialize)]
#[message(reply = (u64, u64))]
pub struct Who;

impl Handler<Who> for WhoAmI {
    type Error = Never;
    async fn handle(&mut self, _: Who, ctx: &mut Context<Self>) -> Result<(u64, u64), Never> {
        Ok((ctx.node(), ctx.epoch()))
    }
}

//! The actors the integration tests call, and the nodes that host them (through the test kit).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use floe::prelude::*;
use floe::{Placement, RuntimeConfig};
use floe_testkit::cluster::{NodeSpec, Register, start_cluster_with};
use serde::{Deserialize, Serialize};

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "test.Counter", handles(Add, Get))]
pub struct Counter {
    pub value: u64,
}

#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Add", reply = u64)]
pub struct Add(pub u64);

#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Get", reply = u64)]
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
#[message(name = "test.Forward", reply = (u64, u64))]
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

#[allow(unused_imports)]
pub use floe_testkit::cluster::{addr, client, loopback, start_node};
#[allow(unused_imports)]
pub use floe_testkit::{Pki, init_tracing, wait_until};

/// Every test actor and the built-in ones.
pub fn register_all(b: floe::NodeBuilder) -> floe::NodeBuilder {
    b.register::<Counter>()
        .register::<Relay>()
        .register::<Account>()
        .register::<Slow>()
        .register::<Blob>()
        .register::<WhoAmI>()
        .register_builtins()
}

/// Node `id` hosting every test actor: bootstrap alone if `seeds` is empty, else join.
pub fn spec(id: u64, seeds: &[SocketAddr], voter: bool, placement: Placement) -> NodeSpec {
    NodeSpec::new(id, register_all)
        .join(seeds, voter)
        .placement(placement)
}

/// Start node `id` (see [`spec`]).
pub async fn start(
    pki: &Pki,
    root: &Path,
    id: u64,
    seeds: &[SocketAddr],
    voter: bool,
    placement: Placement,
) -> Node {
    start_node(pki, root, spec(id, seeds, voter, placement)).await
}

/// Start node `id` hosting only the actor types `register` adds.
pub async fn start_hosting(
    pki: &Pki,
    root: &Path,
    id: u64,
    seeds: &[SocketAddr],
    register: Register,
) -> Node {
    start_node(pki, root, NodeSpec::new(id, register).join(seeds, true)).await
}

/// A cluster of `n` voters hosting every test actor.
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
    let template = NodeSpec::new(1, register_all)
        .placement(placement)
        .runtime(runtime);
    start_cluster_with(pki, root, n, template).await
}

/// A bank account that refuses to go negative.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "test.Account", handles(Credit, Debit))]
pub struct Account {
    pub balance: i64,
}

#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Credit", reply = i64)]
pub struct Credit(pub i64);

#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Debit", reply = i64)]
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
#[message(name = "test.SlowAdd", reply = u64)]
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

/// An actor whose state is as large as asked.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "test.Blob", handles(Fill, Size))]
pub struct Blob {
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Make the state `len` bytes of `byte`; answers the new length.
#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Fill", reply = usize)]
pub struct Fill {
    pub len: usize,
    pub byte: u8,
}

/// The state's length and first byte.
#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Size", reply = (usize, Option<u8>))]
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
#[message(name = "test.Who", reply = (u64, u64))]
pub struct Who;

impl Handler<Who> for WhoAmI {
    type Error = Never;
    async fn handle(&mut self, _: Who, ctx: &mut Context<Self>) -> Result<(u64, u64), Never> {
        Ok((ctx.node(), ctx.epoch()))
    }
}

//! A bank whose accounts survive the loss of a node: three nodes, deposits through the client,
//! the node holding the account is stopped, and the balance is still there, answered by
//! another node.
//!
//! `cargo run -p floe-examples --example bank`

use std::time::Instant;

use floe::prelude::*;
use floe::{ActorId, Placement};
use floe_client::{Client, ClientConfig};
use floe_examples::{DevCa, addrs, local_cluster};
use serde::{Deserialize, Serialize};

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "bank.Account", handles(Deposit, Balance))]
struct Account {
    balance: u64,
}

#[derive(Message, Serialize, Deserialize)]
#[message(name = "bank.Deposit", reply = u64)]
struct Deposit(u64);

#[derive(Message, Serialize, Deserialize)]
#[message(name = "bank.Balance", reply = u64)]
struct Balance;

impl Handler<Deposit> for Account {
    type Error = Never;
    async fn handle(&mut self, Deposit(n): Deposit, _: &mut Context<Self>) -> Result<u64, Never> {
        self.balance += n;
        Ok(self.balance)
    }
}

impl Handler<Balance> for Account {
    type Error = Never;
    async fn handle(&mut self, _: Balance, _: &mut Context<Self>) -> Result<u64, Never> {
        Ok(self.balance)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ca = DevCa::new()?;
    let mut nodes = local_cluster(&ca, dir.path(), 3, Placement::Random, |b| {
        b.register::<Account>()
    })
    .await?;
    let client = Client::connect(ClientConfig::new(addrs(&nodes), ca.client("teller")?)).await?;

    let alice = client.actor::<Account>("alice");
    for amount in [100, 50, 25] {
        println!(
            "deposit {amount:>3} -> balance {}",
            alice.call(Deposit(amount)).await?
        );
    }
    let owner = client
        .cached_owner(&ActorId::new("bank.Account", "alice"))
        .ok_or("owner unknown")?;
    println!("alice's account lives on node {owner}; stopping that node");
    let i = nodes
        .iter()
        .position(|n| n.id() == owner)
        .ok_or("no such node")?;
    nodes.remove(i).shutdown().await?;

    let survivors = Client::connect(ClientConfig::new(addrs(&nodes), ca.client("teller")?)).await?;
    let t = Instant::now();
    let balance = survivors.actor::<Account>("alice").call(Balance).await?;
    let now_on = survivors.cached_owner(&ActorId::new("bank.Account", "alice"));
    println!(
        "balance {balance}, answered by node {now_on:?} {:?} after the loss",
        t.elapsed()
    );
    assert_eq!(balance, 175);
    for n in nodes {
        n.shutdown().await?;
    }
    Ok(())
}

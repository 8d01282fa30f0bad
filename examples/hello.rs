//! Hello, Floe: embed a node, define an actor with durable state, call it, restart the node and
//! find the state again.
//!
//! `cargo run -p floe-examples --example hello [data-dir]`

use floe::prelude::*;
use serde::{Deserialize, Serialize};

/// A bank account: its fields are its durable state.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "bank.Account", handles(Deposit, Withdraw, Balance))]
struct Account {
    balance: u64,
}

#[derive(Message, Serialize, Deserialize)]
#[message(name = "bank.Deposit", reply = u64)]
struct Deposit(u64);

#[derive(Message, Serialize, Deserialize)]
#[message(name = "bank.Withdraw", reply = u64)]
struct Withdraw(u64);

#[derive(Message, Serialize, Deserialize)]
#[message(name = "bank.Balance", reply = u64)]
struct Balance;

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("insufficient funds: balance {balance}, asked {asked}")]
struct Insufficient {
    balance: u64,
    asked: u64,
}

impl Handler<Deposit> for Account {
    type Error = Never;
    async fn handle(&mut self, Deposit(n): Deposit, _: &mut Context<Self>) -> Result<u64, Never> {
        self.balance += n;
        Ok(self.balance)
    }
}

impl Handler<Withdraw> for Account {
    type Error = Insufficient;
    async fn handle(
        &mut self,
        Withdraw(n): Withdraw,
        _: &mut Context<Self>,
    ) -> Result<u64, Insufficient> {
        if n > self.balance {
            return Err(Insufficient {
                balance: self.balance,
                asked: n,
            });
        }
        self.balance -= n;
        Ok(self.balance)
    }
}

impl Handler<Balance> for Account {
    type Error = Never;
    async fn handle(&mut self, _: Balance, _: &mut Context<Self>) -> Result<u64, Never> {
        Ok(self.balance)
    }
}

async fn start(dir: &std::path::Path) -> Result<Node, floe::BuildError> {
    Node::builder()
        .data_dir(dir)
        .register::<Account>()
        .build()
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());

    let node = start(&dir).await?;
    let alice = node.actor::<Account>("alice");
    println!(
        "deposit 100  -> balance {}",
        alice.call(Deposit(100)).await?
    );
    println!(
        "withdraw 30  -> balance {}",
        alice.call(Withdraw(30)).await?
    );
    match alice.call(Withdraw(500)).await {
        Err(CallError::Rejected(e)) => println!("withdraw 500 -> refused: {e}"),
        other => println!("withdraw 500 -> unexpected: {other:?}"),
    }
    node.shutdown().await?;

    let node = start(&dir).await?;
    println!(
        "after a restart (incarnation {}): balance {}",
        node.incarnation(),
        node.actor::<Account>("alice").call(Balance).await?
    );
    node.shutdown().await?;
    Ok(())
}

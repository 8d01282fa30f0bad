//! Actor→actor calls across nodes: a `Teller` actor moves money between `Account` actors that
//! random placement spreads over three nodes.
//!
//! `cargo run -p floe-examples --example transfer`

use floe::prelude::*;
use floe::{ActorId, Placement};
use floe_client::{Client, ClientConfig};
use floe_examples::{DevCa, addrs, local_cluster};
use serde::{Deserialize, Serialize};

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "bank.Account", handles(Credit, Debit))]
struct Account {
    balance: i64,
}

#[derive(Message, Serialize, Deserialize)]
#[message(name = "bank.Credit", reply = i64)]
struct Credit(i64);

#[derive(Message, Serialize, Deserialize)]
#[message(name = "bank.Debit", reply = i64)]
struct Debit(i64);

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("insufficient funds: {0}")]
struct Insufficient(i64);

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

/// Moves money: debit one account, credit another — each an actor call, possibly on other nodes.
#[derive(Actor, Default)]
#[actor(name = "bank.Teller", stateless, handles(Transfer))]
struct Teller;

#[derive(Message, Serialize, Deserialize)]
#[message(name = "bank.Transfer", reply = u64)]
struct Transfer {
    from: String,
    to: String,
    amount: i64,
}

impl Handler<Transfer> for Teller {
    type Error = String;
    async fn handle(&mut self, t: Transfer, ctx: &mut Context<Self>) -> Result<u64, String> {
        ctx.actor::<Account>(&t.from)
            .call(Debit(t.amount))
            .await
            .map_err(|e| e.to_string())?;
        ctx.actor::<Account>(&t.to)
            .call(Credit(t.amount))
            .await
            .map_err(|e| e.to_string())?;
        Ok(ctx.node())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ca = DevCa::new()?;
    let nodes = local_cluster(&ca, dir.path(), 3, Placement::Random, |b| {
        b.register::<Account>().register::<Teller>()
    })
    .await?;
    let client = Client::connect(ClientConfig::new(addrs(&nodes), ca.client("app")?)).await?;
    for who in ["ann", "bob", "cid"] {
        client.actor::<Account>(who).call(Credit(100)).await?;
        let node = client.cached_owner(&ActorId::new("bank.Account", who));
        println!("{who}: 100 on node {node:?}");
    }
    for (from, to, amount) in [("ann", "bob", 30), ("bob", "cid", 80), ("cid", "ann", 5)] {
        let teller = client.actor::<Teller>(format!("{from}->{to}"));
        let at = teller
            .call(Transfer {
                from: from.into(),
                to: to.into(),
                amount,
            })
            .await?;
        println!("{from} -> {to}: {amount} (teller on node {at})");
    }
    match client
        .actor::<Teller>("overdraft")
        .call(Transfer {
            from: "ann".into(),
            to: "bob".into(),
            amount: 1000,
        })
        .await
    {
        Err(CallError::Rejected(e)) => println!("ann -> bob: 1000 refused: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    let mut total = 0;
    for who in ["ann", "bob", "cid"] {
        let b = client.actor::<Account>(who).call(Credit(0)).await?;
        println!("{who}: {b}");
        total += b;
    }
    assert_eq!(total, 300, "money was created or lost");
    for n in nodes {
        n.shutdown().await?;
    }
    Ok(())
}

use floe::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Message, Serialize, Deserialize)]
#[message(name = "t.Ping")]
struct Ping;

/// Durable state must be serializable; mark it `stateless` otherwise.
#[derive(Actor, Default)]
#[actor(name = "t.Forgetful", handles(Ping))]
struct Forgetful {
    seen: u32,
}

impl Handler<Ping> for Forgetful {
    type Error = Never;
    async fn handle(&mut self, _: Ping, _ctx: &mut Context<Self>) -> Result<(), Never> {
        self.seen += 1;
        Ok(())
    }
}

fn main() {}

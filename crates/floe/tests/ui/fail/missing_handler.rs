use floe::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Message, Serialize, Deserialize)]
#[message(name = "t.Ping")]
struct Ping;

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "t.Lonely", handles(Ping))]
struct Lonely;

fn main() {}

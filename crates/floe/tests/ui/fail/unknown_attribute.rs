use floe::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Message, Serialize, Deserialize)]
#[message(name = "t.Ping", reply = u8, priority = 3)]
struct Ping;

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "t.Painter", handles(Ping), colour = "red")]
struct Painter;

fn main() {}

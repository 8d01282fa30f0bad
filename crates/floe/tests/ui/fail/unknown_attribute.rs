use floe::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Message, Serialize, Deserialize)]
#[message(reply = u8, priority = 3)]
struct Ping;

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(handles(Ping), colour = "red")]
struct Painter;

fn main() {}

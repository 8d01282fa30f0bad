use floe::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Message, Serialize, Deserialize)]
struct Ping;

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(handles(Ping))]
struct Lonely;

fn main() {}

use floe::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Message, Serialize, Deserialize)]
#[message(name = "t.Ping")]
struct Ping;

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "t.Generic", handles(Ping))]
struct Generic<T> {
    t: T,
}

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "t.Twice", handles(Ping, Ping))]
struct Twice;

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "has space", handles(Ping))]
struct BadName;

fn main() {}

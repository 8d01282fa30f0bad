use floe::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Message, Serialize, Deserialize)]
struct Ping;

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(handles(Ping))]
struct Generic<T> {
    t: T,
}

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(handles(Ping, Ping))]
struct Twice;

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "has space", handles(Ping))]
struct BadName;

fn main() {}

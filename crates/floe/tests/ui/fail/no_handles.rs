use floe::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "t.Quiet")]
struct Quiet;

fn main() {}

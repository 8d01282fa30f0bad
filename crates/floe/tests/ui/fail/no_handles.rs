use floe::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Actor, Default, Serialize, Deserialize)]
struct Quiet;

fn main() {}

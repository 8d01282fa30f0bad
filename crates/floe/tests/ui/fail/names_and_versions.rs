use floe::prelude::*;
use serde::{Deserialize, Serialize};

/// A message without a wire name.
#[derive(Message, Serialize, Deserialize)]
#[message(reply = u8)]
struct Unnamed;

#[derive(Message, Serialize, Deserialize)]
#[message(name = "t.Ping")]
struct Ping;

/// An actor without a type name.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(handles(Ping))]
struct Anonymous;

/// A migration with nothing older to migrate from.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "t.Early", migrate = Early::upgrade, handles(Ping))]
struct Early;

/// Versions start at 1.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "t.Zero", version = 0, handles(Ping))]
struct Zero;

/// Nothing stored, nothing to version.
#[derive(Actor, Default)]
#[actor(name = "t.Versionless", stateless, version = 2, handles(Ping))]
struct Versionless;

fn main() {}

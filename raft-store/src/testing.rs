//! Small builders for the store's tests (and tests of crates above it). Not a public API.

use crate::command::Command;
use crate::types::{Entry, EntryPayload, TypeConfig};

/// A normal entry at `index` (term 1, leader 1) carrying `cmd`.
pub fn entry(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: openraft::testing::log_id::<TypeConfig>(1, 1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

/// Node `node` registering in incarnation 1, hosting no actor type.
pub fn register(node: u64) -> Command {
    Command::RegisterNode {
        node,
        incarnation: 1,
        addr: format!("n{node}"),
        actor_types: vec![],
    }
}

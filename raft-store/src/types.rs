//! The openraft type configuration (defined with the wire types) and the aliases that need the
//! store: a running Raft over this crate's state machine.

pub use floe_proto::NodeId;
pub use floe_proto::raft::*;

/// A running Raft instance over Floe's state machine.
pub type Raft = openraft::Raft<TypeConfig, crate::StateMachine>;

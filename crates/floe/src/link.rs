//! The runtime's link to the rest of the cluster: its transport and settings, peers' addresses
//! from the Raft membership, and the remote form of a call.

use std::time::{Duration, Instant};

use floe_net::{Target, Transport};
use floe_proto::{CallRequest, NodeHint};
use raft_store::types::{NodeId, Raft, WatchReceiver};

use crate::placement::Placement;

/// The runtime's connection to the rest of the cluster.
pub(crate) struct Link {
    pub(crate) transport: Transport,
    pub(crate) advertise: String,
    pub(crate) node_timeout: Duration,
    pub(crate) placement: Placement,
}

/// Address of `node` from the Raft membership.
pub(crate) fn node_addr(raft: &Raft, node: NodeId) -> Option<String> {
    let m = raft.metrics().borrow_watched().membership_config.clone();
    m.membership()
        .nodes()
        .find(|(id, _)| **id == node)
        .map(|(_, info)| info.addr.clone())
}

pub(crate) fn target(raft: &Raft, node: NodeId) -> Option<Target> {
    let addr = node_addr(raft, node)?;
    addr.parse().ok().map(|a| Target::node(node, a))
}

pub(crate) fn hint(raft: &Raft, node: NodeId) -> Option<NodeHint> {
    node_addr(raft, node).map(|addr| NodeHint { node, addr })
}

/// Build the remote form of a call.
pub(crate) fn call_request(call: &crate::call::RawCall) -> CallRequest {
    CallRequest {
        actor: call.actor.clone(),
        message: call.message.clone(),
        payload: call.payload.clone(),
        request: call.request,
        timeout_ms: call
            .deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .min(u32::MAX as u128) as u32,
        chain: call.chain.to_vec(),
        hops: call.hops.saturating_add(1),
        acked: call.acked,
        retry: call.retry,
    }
}

//! The runtime's link to the rest of the cluster: its transport and settings, peers' addresses
//! from the Raft membership, and the remote forms of a call and of its failure.

use std::time::{Duration, Instant};

use floe_net::{Target, Transport};
use floe_proto::{CallRequest, ErrorKind, NodeHint, WireError};
use raft_store::types::{NodeId, Raft, WatchReceiver};

use crate::error::CallFailure;
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

/// A runtime failure as the wire carries it.
pub(crate) fn to_wire(raft: &Raft, f: CallFailure) -> WireError {
    let msg = f.to_string();
    let kind = match f {
        CallFailure::Rejected { error, .. } => ErrorKind::Rejected(error),
        CallFailure::Panicked(_) => ErrorKind::Panicked,
        CallFailure::ActivationFailed(_) => ErrorKind::ActivationFailed,
        CallFailure::CallCycle(c) => ErrorKind::CallCycle(c),
        CallFailure::NotOwner(n) => ErrorKind::NotOwner {
            hint: n.and_then(|n| hint(raft, n)),
        },
        CallFailure::Unavailable(_) | CallFailure::Shutdown => ErrorKind::Unavailable,
        CallFailure::Timeout => ErrorKind::Timeout,
        CallFailure::Expired => ErrorKind::Expired,
        CallFailure::TooLarge(_) => ErrorKind::TooLarge,
        CallFailure::BadRequest(_) => ErrorKind::BadRequest,
    };
    WireError::new(kind, msg)
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

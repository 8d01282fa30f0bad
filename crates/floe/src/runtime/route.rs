//! Where a call goes after a try: answer the caller, forward to the owner, or route again. Pure
//! decisions; the call loop in the parent module acts on them.

use floe_net::RpcError;
use floe_proto::{CallReply, NodeId};

use crate::error::CallFailure;

/// What to do after running (or failing to run) a call on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// The outcome is final: give it to the caller.
    Answer,
    /// The actor is owned by `owner`: forward the call there.
    Forward(NodeId),
    /// The owner is unknown or is this node in a view that has moved on: look again after a
    /// pause.
    Again,
}

/// The route after a try here that ended in `outcome`. Only a call that has not crossed a node
/// yet (`hops == 0`) is forwarded, and only in a cluster (`clustered`); `me` is this node.
pub(crate) fn after_try<T>(
    outcome: &Result<T, CallFailure>,
    clustered: bool,
    hops: u8,
    me: NodeId,
) -> Route {
    match outcome {
        Err(CallFailure::NotOwner(owner)) if clustered && hops == 0 => {
            match owner.filter(|o| *o != me) {
                Some(o) => Route::Forward(o),
                None => Route::Again,
            }
        }
        _ => Route::Answer,
    }
}

/// What a forward came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Forwarded {
    /// The owner answered.
    Reply(Vec<u8>, NodeId),
    /// A final failure for the caller.
    Failed(CallFailure),
    /// Not served there (it moved, or it is not reachable): route again. The request may have
    /// reached the owner, so from now on its answer must be fixed in the log.
    Reroute,
}

/// Classify the answer of a forward to `owner`.
pub(crate) fn after_forward(owner: NodeId, sent: Result<CallReply, RpcError>) -> Forwarded {
    match sent {
        Ok(CallReply { payload, owner, .. }) => Forwarded::Reply(payload, owner),
        Err(RpcError::Remote(e)) => match crate::wire::from_wire(e) {
            CallFailure::NotOwner(_) | CallFailure::Unavailable(_) => Forwarded::Reroute,
            f => Forwarded::Failed(f),
        },
        // Not sent: the owner may be down; the failure detector will move its actors.
        Err(RpcError::Unreachable(_)) | Err(RpcError::Refused(_)) => Forwarded::Reroute,
        Err(RpcError::Timeout(_)) => Forwarded::Failed(CallFailure::Timeout),
        // Sent, answer lost: the outcome is unknown.
        Err(e) => Forwarded::Failed(CallFailure::Unavailable(format!(
            "forwarding to node {owner}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use floe_proto::{ErrorKind, NodeHint, WireError};

    use super::*;

    fn not_owner(o: Option<NodeId>) -> Result<(), CallFailure> {
        Err(CallFailure::NotOwner(o))
    }

    #[test]
    fn a_call_that_is_not_ours_goes_to_the_owner_once() {
        assert_eq!(
            after_try(&not_owner(Some(2)), true, 0, 1),
            Route::Forward(2)
        );
        // Already forwarded once: the caller hears NotOwner and routes itself.
        assert_eq!(after_try(&not_owner(Some(2)), true, 1, 1), Route::Answer);
        // A lone node has nobody to forward to.
        assert_eq!(after_try(&not_owner(Some(2)), false, 0, 1), Route::Answer);
    }

    #[test]
    fn an_unknown_owner_or_ourselves_means_look_again() {
        assert_eq!(after_try(&not_owner(None), true, 0, 1), Route::Again);
        assert_eq!(after_try(&not_owner(Some(1)), true, 0, 1), Route::Again);
    }

    #[test]
    fn every_other_outcome_is_the_answer() {
        assert_eq!(after_try(&Ok::<u8, _>(7), true, 0, 1), Route::Answer);
        for f in [
            CallFailure::Timeout,
            CallFailure::Unavailable("no quorum".into()),
            CallFailure::Expired,
            CallFailure::Panicked("boom".into()),
        ] {
            assert_eq!(after_try(&Err::<(), _>(f), true, 0, 1), Route::Answer);
        }
    }

    #[test]
    fn a_forward_is_rerouted_only_when_the_owner_did_not_serve_it() {
        let reply = CallReply {
            payload: vec![1],
            owner: 3,
            owner_addr: None,
        };
        assert_eq!(after_forward(3, Ok(reply)), Forwarded::Reply(vec![1], 3));
        let moved = WireError::new(
            ErrorKind::NotOwner {
                hint: Some(NodeHint {
                    node: 4,
                    addr: "a".into(),
                }),
            },
            "moved",
        );
        assert_eq!(
            after_forward(3, Err(RpcError::Remote(moved))),
            Forwarded::Reroute
        );
        let busy = WireError::new(ErrorKind::Unavailable, "no quorum");
        assert_eq!(
            after_forward(3, Err(RpcError::Remote(busy))),
            Forwarded::Reroute
        );
        assert_eq!(
            after_forward(3, Err(RpcError::Unreachable("down".into()))),
            Forwarded::Reroute
        );
        let rejected = WireError::new(ErrorKind::Rejected(vec![9]), "no funds");
        assert!(matches!(
            after_forward(3, Err(RpcError::Remote(rejected))),
            Forwarded::Failed(CallFailure::Rejected { .. })
        ));
    }

    #[test]
    fn a_forward_whose_answer_was_lost_is_of_unknown_outcome() {
        assert_eq!(
            after_forward(3, Err(RpcError::Timeout(Duration::from_secs(1)))),
            Forwarded::Failed(CallFailure::Timeout)
        );
        let lost = after_forward(3, Err(RpcError::ConnectionLost("reset".into())));
        assert!(
            matches!(&lost, Forwarded::Failed(f) if !f.outcome_known()),
            "{lost:?}"
        );
    }
}

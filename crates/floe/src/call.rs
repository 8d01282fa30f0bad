//! One call as the runtime sees it, and what the actor API needs from whatever runs calls:
//! [`Caller`], which [`crate::Context`] and [`crate::ActorRef`] hold instead of the runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_proto::NodeId;
use floe_proto::{ActorId, RequestId};
use futures::future::BoxFuture;

use crate::app_data::AppData;
use crate::error::CallFailure;

/// One call as the runtime sees it.
#[derive(Debug, Clone)]
pub(crate) struct RawCall {
    pub actor: ActorId,
    pub message: String,
    pub payload: Vec<u8>,
    pub request: RequestId,
    pub deadline: Instant,
    pub chain: Arc<[ActorId]>,
    /// Nodes this call crossed; a node forwards a call only if it arrived directly.
    pub hops: u8,
    /// The caller's acknowledgement floor for the request's session (see [`crate::session`]).
    pub acked: u64,
    /// This request id may have been sent before: its answer must be fixed in the log.
    pub retry: bool,
}

/// Runs calls for the actor API.
pub(crate) trait Caller: Send + Sync {
    /// The node this runs on.
    fn node_id(&self) -> NodeId;
    /// The deadline of a call that sets none.
    fn call_timeout(&self) -> Duration;
    /// What the application shares with its actors.
    fn app_data(&self) -> &AppData;
    /// Run `call` wherever its actor lives; the reply and the node that answered.
    fn call_raw(
        self: Arc<Self>,
        call: RawCall,
    ) -> BoxFuture<'static, Result<(Vec<u8>, NodeId), CallFailure>>;
    /// A request id of this node's own session for a call with no id of its own, and the
    /// session's acknowledgement floor.
    fn begin_own(&self) -> BoxFuture<'_, Result<(RequestId, u64), CallFailure>>;
    /// The own-session request `req` ended, with a known outcome if `known`.
    fn end_own(&self, req: RequestId, known: bool);
}

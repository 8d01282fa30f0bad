//! What a handler sees of the runtime: its own id, typed calls to other actors, deactivation and
//! tasks bound to the activation.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use floe_proto::NodeId;
use floe_proto::{ActorId, RequestId};

use super::{Actor, Handler, Message};
use crate::app_data::MissingAppData;
use crate::call::{Caller, RawCall};
use crate::error::{CallError, CallFailure};

/// The context of one message being handled by an activation of `A`.
pub struct Context<A> {
    pub(crate) rt: Arc<dyn Caller>,
    pub(crate) id: ActorId,
    /// Request ids of calls made from this context derive from the current call's id, so a
    /// handler that runs again for a retried call repeats them and nothing applies twice.
    pub(crate) nested: Option<Nested>,
    pub(crate) epoch: u64,
    pub(crate) chain: Arc<[ActorId]>,
    pub(crate) deadline: Instant,
    pub(crate) deactivate: bool,
    pub(crate) tasks: Option<tokio::task::JoinSet<()>>,
    _actor: PhantomData<fn() -> A>,
}

impl<A> Context<A> {
    pub(crate) fn new(
        rt: Arc<dyn Caller>,
        id: ActorId,
        epoch: u64,
        chain: Arc<[ActorId]>,
        deadline: Instant,
        tasks: Option<tokio::task::JoinSet<()>>,
    ) -> Self {
        Self {
            rt,
            id,
            nested: None,
            epoch,
            chain,
            deadline,
            deactivate: false,
            tasks,
            _actor: PhantomData,
        }
    }

    /// This actor's id.
    pub fn id(&self) -> &ActorId {
        &self.id
    }

    /// This actor's key.
    pub fn key(&self) -> &str {
        &self.id.key
    }

    /// The epoch this activation holds; every state write carries it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The node this activation runs on.
    pub fn node(&self) -> NodeId {
        self.rt.node_id()
    }

    /// The value of type `T` the application shared with the node
    /// ([`crate::NodeBuilder::app_data`]): a pool, a client, settings. Hold it in a field marked
    /// `#[serde(skip)]`, set in [`crate::Lifecycle::on_activate`], or ask for it per call.
    ///
    /// # Errors
    /// [`MissingAppData`] when the node was given none of that type; it converts into
    /// [`crate::ActorError`], so `on_activate` can use `?`.
    pub fn app_data<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, MissingAppData> {
        self.rt.app_data().get::<T>()
    }

    /// Time left before the current call's deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// A reference to actor `key` of type `B`. Calls made through it inherit this call's
    /// deadline, and a call back to an actor already waiting in this call chain fails with
    /// [`CallFailure::CallCycle`] instead of deadlocking.
    pub fn actor<B: Actor>(&self, key: impl Into<String>) -> ActorRef<B> {
        ActorRef {
            rt: Arc::downgrade(&self.rt),
            id: ActorId::new(B::NAME, key),
            chain: self.chain.clone(),
            deadline: Some(self.deadline),
            request: None,
            nested: self.nested.clone(),
            _actor: PhantomData,
        }
    }

    /// Deactivate this activation after the current message (its state stays committed).
    pub fn deactivate(&mut self) {
        self.deactivate = true;
    }

    /// Run `task` for as long as this activation lives; it is aborted at deactivation.
    pub fn spawn<F>(&mut self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .get_or_insert_with(tokio::task::JoinSet::new)
            .spawn(task);
    }
}

/// Derives the request ids of the calls a handler makes from the id of the call it handles.
///
/// A nested call belongs to the session and sequence number of the outermost request and gets
/// a sub-id hashed from its parent's and its position among the parent's calls. The handler of
/// a retried request, run again on any node, makes the same calls with the same ids, so none
/// applies twice; they are forgotten with the outermost request, so nesting mints no sessions.
#[derive(Debug, Clone)]
pub(crate) struct Nested {
    parent: RequestId,
    retry: bool,
    next: Arc<std::sync::atomic::AtomicU64>,
    /// The first failure with an unknown outcome among the calls made.
    unknown: Arc<std::sync::Mutex<Option<CallFailure>>>,
}

/// splitmix64: a fixed, well-mixed 64-bit hash (the same on every node and build).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Nested {
    pub(crate) fn from(parent: RequestId, retry: bool) -> Self {
        Self {
            parent,
            retry,
            next: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            unknown: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    fn next(&self) -> RequestId {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Never 0: that is the session's own call.
        let sub = mix(self.parent.sub ^ mix(i.wrapping_add(1))).max(1);
        RequestId {
            session: self.parent.session,
            seq: self.parent.seq,
            sub,
        }
    }

    fn note(&self, f: &CallFailure) {
        if !f.outcome_known() {
            let mut u = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
            if u.is_none() {
                *u = Some(f.clone());
            }
        }
    }

    /// The first failure with an unknown outcome among the calls made, if any.
    pub(crate) fn unknown(&self) -> Option<CallFailure> {
        self.unknown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A typed reference to an actor; cheap to clone. Obtained from [`crate::Node::actor`] or
/// [`Context::actor`].
pub struct ActorRef<A> {
    /// Weak: a reference must not keep a shut-down node (and its database) alive.
    pub(crate) rt: Weak<dyn Caller>,
    pub(crate) nested: Option<Nested>,
    pub(crate) id: ActorId,
    pub(crate) chain: Arc<[ActorId]>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) request: Option<RequestId>,
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        Self {
            rt: self.rt.clone(),
            id: self.id.clone(),
            chain: self.chain.clone(),
            deadline: self.deadline,
            request: self.request,
            nested: self.nested.clone(),
            _actor: PhantomData,
        }
    }
}

impl<A: Actor> ActorRef<A> {
    pub(crate) fn new(rt: Weak<dyn Caller>, key: String) -> Self {
        Self {
            rt,
            id: ActorId::new(A::NAME, key),
            chain: Arc::from(Vec::new()),
            deadline: None,
            request: None,
            nested: None,
            _actor: PhantomData,
        }
    }

    /// The actor's id.
    pub fn id(&self) -> &ActorId {
        &self.id
    }

    /// Give up after `timeout` (default: the node's call timeout).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        let d = Instant::now() + timeout;
        self.deadline = Some(self.deadline.map_or(d, |old| old.min(d)));
        self
    }

    /// Use `request` as the call's request id: a call retried with the same id is applied at
    /// most once and returns the original reply.
    pub fn with_request_id(mut self, request: RequestId) -> Self {
        self.request = Some(request);
        self
    }

    /// Send `msg` and wait for the reply.
    ///
    /// # Errors
    /// [`CallError::Rejected`] with the handler's error, or [`CallError::Failed`]; a
    /// [`CallFailure::Timeout`] leaves the outcome unknown (retry with the same request id).
    ///
    /// # Cancel safety
    /// Dropping the future does not cancel the handler: the call may still take effect.
    pub async fn call<M>(&self, msg: M) -> Result<M::Reply, CallError<<A as Handler<M>>::Error>>
    where
        M: Message,
        A: Handler<M>,
    {
        let rt = self.rt.upgrade().ok_or(CallFailure::Shutdown)?;
        let payload = crate::wire::encode_message(M::NAME, &msg)?;
        let deadline = self
            .deadline
            .unwrap_or_else(|| Instant::now() + rt.call_timeout());
        let raw = |request: RequestId, acked: u64, retry: bool| RawCall {
            actor: self.id.clone(),
            message: M::NAME.to_string(),
            payload: payload.clone(),
            request,
            deadline,
            chain: self.chain.clone(),
            hops: 0,
            acked,
            retry,
        };
        let result = match (self.request, &self.nested) {
            // The caller says this id may have been used before.
            (Some(request), _) => rt.clone().call_raw(raw(request, 0, true)).await,
            (None, Some(nested)) => {
                let r = rt
                    .clone()
                    .call_raw(raw(nested.next(), 0, nested.retry))
                    .await;
                if let Err(f) = &r {
                    nested.note(f);
                }
                r
            }
            (None, None) => {
                let (request, acked) = rt.begin_own().await?;
                let r = rt.clone().call_raw(raw(request, acked, false)).await;
                rt.end_own(
                    request,
                    r.as_ref().map_or_else(|f| f.outcome_known(), |_| true),
                );
                r
            }
        };
        drop(rt);
        crate::wire::typed_outcome(result.map(|(bytes, _owner)| bytes))
    }
}

//! The activation table, turn-based execution, durable commits and idle deactivation.
//!
//! One activation per actor on this node, created on the first call (single flight) after the
//! placement directory says this node owns the actor. Calls are admitted through a bounded
//! mailbox (a semaphore: callers wait for a slot until their deadline) and run one at a time
//! under the activation's lock, in a task of their own so that a caller giving up never cancels
//! a handler half-way. After the handler: an error or panic restores the state from its
//! serialized form taken before the call; a changed state is committed through Raft with the
//! activation's epoch before the reply is released; an unchanged state is confirmed current
//! through a Raft read index.
//!
//! **Call cycles.** Every call carries the chain of activations waiting on it. A call to an actor
//! already in the chain (A→B→A, or A→A) fails at once with [`CallFailure::CallCycle`]: turn-based
//! actors cannot re-enter, and this turns a certain deadlock into a clear error.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use raft_store::directory::RequestStatus;
use raft_store::types::{NodeId, Raft, WatchReceiver};
use raft_store::{
    ActivateResult, ActorId, Command, NewSession, Outcome, RegisterResult, ReleaseResult,
    RequestId, SessionsExpired, StateView,
};
use tokio::sync::{OnceCell, Semaphore};

use crate::actor::Context;
use crate::actor::{Actor, DispatchError};
use crate::app_data::AppData;
use crate::call::{Caller, RawCall};
use crate::config::RuntimeConfig;
use crate::error::CallFailure;
use crate::proposer::{BACKGROUND_DEADLINE, ProposeError, Proposer};
use crate::retry::Backoff;

/// The activation disappeared before running the call; route it again.
pub(crate) struct Gone;

/// The deadline of a proposal no caller waits on.
fn background() -> Instant {
    Instant::now() + BACKGROUND_DEADLINE
}

mod outcome;
mod route;

use outcome::{CallResult, Settlement, answer};
use route::{Forwarded, Route};

pub(crate) trait AnyActivation: Send + Sync {
    fn admit(&self, deadline: Instant) -> BoxFuture<'_, Result<(), CallFailure>>;
    /// Run `call`. `confirmed`: this call made the activation, whose placement was committed or
    /// confirmed by a read index after the call arrived, so it needs no read index of its own.
    fn run(
        self: Arc<Self>,
        rt: Arc<Runtime>,
        call: Arc<RawCall>,
        confirmed: bool,
    ) -> BoxFuture<'static, Result<CallResult, Gone>>;
    fn idle_ms(&self, now_ms: u64) -> u64;
    /// Which activation this is: unique among the activations this runtime ever made.
    fn serial(&self) -> u64;
    fn deactivate(self: Arc<Self>, rt: Arc<Runtime>, only_if_idle: bool) -> BoxFuture<'static, ()>;
}

pub(crate) trait Factory: Send + Sync {
    fn activate(
        &self,
        rt: Arc<Runtime>,
        id: ActorId,
        epoch: u64,
        state: Option<(u64, Vec<u8>)>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Arc<dyn AnyActivation>, CallFailure>>;
}

pub(crate) struct TypedFactory<A>(PhantomData<fn() -> A>);

impl<A> TypedFactory<A> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

/// Whether the self-test's broken read path is on: only in a build with the
/// `unsafe-self-test-reads` feature, and only when the configuration asks for it.
fn unsafe_reads(config: &RuntimeConfig) -> bool {
    cfg!(feature = "unsafe-self-test-reads") && config.unsafe_unconfirmed_reads
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

impl<A: Actor> Factory for TypedFactory<A> {
    fn activate(
        &self,
        rt: Arc<Runtime>,
        id: ActorId,
        epoch: u64,
        state: Option<(u64, Vec<u8>)>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Arc<dyn AnyActivation>, CallFailure>> {
        Box::pin(async move {
            let version = state.as_ref().map_or(0, |s| s.0);
            let mut actor = A::create(&id.key, state.as_ref().map(|s| s.1.as_slice()))
                .map_err(|e| CallFailure::ActivationFailed(e.to_string()))?;
            let chain: Arc<[ActorId]> = Arc::from(vec![id.clone()]);
            let mut ctx = Context::new(rt.clone(), id.clone(), epoch, chain, deadline, None);
            match AssertUnwindSafe(actor.on_activate(&mut ctx))
                .catch_unwind()
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(CallFailure::ActivationFailed(e.0)),
                Err(p) => {
                    return Err(CallFailure::ActivationFailed(format!(
                        "activate hook panicked: {}",
                        panic_message(&*p)
                    )));
                }
            }
            let cap = rt.config.mailbox_capacity;
            let act = Activation::<A> {
                serial: rt.next_serial.fetch_add(1, Ordering::Relaxed),
                id,
                epoch,
                cap,
                mailbox: Semaphore::new(cap),
                last_used: AtomicU64::new(rt.now_ms()),
                inner: tokio::sync::Mutex::new(Inner {
                    actor,
                    version,
                    alive: true,
                    tasks: ctx.tasks.take(),
                }),
            };
            Ok(Arc::new(act) as Arc<dyn AnyActivation>)
        })
    }
}

struct Inner<A> {
    actor: A,
    /// The committed version `actor` holds; commits are conditional on it.
    version: u64,
    alive: bool,
    tasks: Option<tokio::task::JoinSet<()>>,
}

struct Activation<A> {
    serial: u64,
    id: ActorId,
    epoch: u64,
    cap: usize,
    mailbox: Semaphore,
    last_used: AtomicU64,
    inner: tokio::sync::Mutex<Inner<A>>,
}

impl<A: Actor> Activation<A> {
    fn restore(&self, inner: &mut Inner<A>, before: Option<&[u8]>) -> Result<(), CallFailure> {
        inner.actor = A::create(&self.id.key, before)
            .map_err(|e| CallFailure::Unavailable(format!("restoring state: {e}")))?;
        Ok(())
    }

    async fn process(
        &self,
        rt: &Arc<Runtime>,
        inner: &mut Inner<A>,
        call: &RawCall,
        confirmed: bool,
    ) -> CallResult {
        let before = inner
            .actor
            .save()
            .map_err(|e| CallFailure::BadRequest(e.to_string()))?;
        let stateful = before.is_some();
        if stateful {
            // A retried request that was already applied returns its original answer. Only a
            // hit is final here: this node's view may lag, so a miss is settled by the commit.
            let status = rt
                .view
                .request_status(call.request)
                .await
                .map_err(|e| CallFailure::Unavailable(e.to_string()))?;
            if let RequestStatus::Done(o) = status
                && !cfg!(feature = "unsafe-self-test-duplicates")
            {
                return answer(o.outcome);
            }
        }
        let mut chain = call.chain.to_vec();
        chain.push(self.id.clone());
        let mut ctx = Context::<A>::new(
            rt.clone(),
            self.id.clone(),
            self.epoch,
            Arc::from(chain),
            call.deadline,
            inner.tasks.take(),
        );
        ctx.nested = Some(crate::actor::Nested::from(call.request, call.retry));
        let res = AssertUnwindSafe(inner.actor.dispatch(&call.message, &call.payload, &mut ctx))
            .catch_unwind()
            .await;
        inner.tasks = ctx.tasks.take();
        let deactivate = ctx.deactivate;
        let nested_unknown = ctx.nested.as_ref().and_then(|n| n.unknown());
        let out = match res {
            Err(p) => {
                let msg = panic_message(&*p);
                tracing::warn!(actor = %self.id, message = %call.message, panic = %msg, "handler panicked; state rolled back");
                self.restore(inner, before.as_deref())?;
                Err(CallFailure::Panicked(msg))
            }
            Ok(Err(e)) => {
                self.restore(inner, before.as_deref())?;
                match e {
                    // A call the handler made has an unknown outcome and the handler failed:
                    // its failure may stem from that call, so this outcome is unknown too.
                    _ if let Some(f) = nested_unknown => Err(f),
                    DispatchError::Rejected { error, display } => {
                        let rejected = Outcome::Rejected { error, display };
                        if stateful && call.retry {
                            self.write(rt, inner, call, before, None, rejected).await
                        } else {
                            answer(rejected)
                        }
                    }
                    other => Err(CallFailure::BadRequest(other.to_string())),
                }
            }
            Ok(Ok(reply)) => self.finish(rt, inner, call, before, reply, confirmed).await,
        };
        if deactivate {
            inner.alive = false;
        }
        out
    }

    /// Commit a changed state, or confirm an unchanged one is still ours, then release `reply`.
    async fn finish(
        &self,
        rt: &Arc<Runtime>,
        inner: &mut Inner<A>,
        call: &RawCall,
        before: Option<Vec<u8>>,
        reply: Vec<u8>,
        confirmed: bool,
    ) -> CallResult {
        let after = match inner.actor.save() {
            Ok(a) => a,
            Err(e) => {
                self.restore(inner, before.as_deref())?;
                return Err(CallFailure::BadRequest(e.to_string()));
            }
        };
        let Some(after) = after else {
            // Stateless: nothing to commit, but fenced like any actor: it answers only while its
            // placement is current, so a partitioned or deposed node cannot keep answering while
            // another activation runs elsewhere. The calls it made carry ids derived from this
            // one, so a retry repeats them without applying them twice.
            if !confirmed && !unsafe_reads(&rt.config) {
                rt.confirm_owner(&self.id, self.epoch)
                    .await
                    .inspect_err(|_| {
                        inner.alive = false;
                    })?;
            }
            return Ok(reply);
        };
        if Some(&after) == before.as_ref() {
            if call.retry {
                // An earlier attempt of this request may still commit (its proposal in flight
                // when its activation was dropped): fix this answer in the log first, so that
                // one of the two wins and the other gets it back as a duplicate.
                return self
                    .write(rt, inner, call, before, None, Outcome::Reply(reply))
                    .await;
            }
            if unsafe_reads(&rt.config) {
                return Ok(reply);
            }
            if confirmed {
                // The activation's placement was committed (or confirmed by a read index) after
                // this call arrived, and its state was loaded after that: a valid linearization
                // point for this read. Any call processed by this activation since then only
                // moved the state forward through commits of its own.
                return Ok(reply);
            }
            rt.confirm_owner(&self.id, self.epoch)
                .await
                .inspect_err(|_| {
                    inner.alive = false;
                })?;
            // The read index also brought every committed write of this actor here: the
            // memory must hold the latest one. It may not if a predecessor activation's commit
            // (outcome unknown when it was dropped) applied after this one loaded its state.
            let committed = rt
                .view
                .actor_state(&self.id)
                .await
                .map_err(|e| CallFailure::Unavailable(e.to_string()))?
                .map_or(0, |s| s.version);
            if committed != inner.version {
                inner.alive = false;
                tracing::info!(actor = %self.id, have = inner.version, committed, "activation behind the committed state: reloading");
                return Err(CallFailure::Unavailable(
                    "the activation was behind the committed state; retry".into(),
                ));
            }
            return Ok(reply);
        }
        self.write(rt, inner, call, before, Some(after), Outcome::Reply(reply))
            .await
    }

    /// Commit `state` (or, with `None`, only the outcome) for `call`, conditional on the version
    /// the memory holds, and answer what the log decided.
    async fn write(
        &self,
        rt: &Arc<Runtime>,
        inner: &mut Inner<A>,
        call: &RawCall,
        before: Option<Vec<u8>>,
        state: Option<Vec<u8>>,
        outcome: Outcome,
    ) -> CallResult {
        let changes = state.is_some();
        let limits = &rt.config;
        let too_large = match (&state, outcome.payload_bytes()) {
            (Some(s), _) if s.len() > limits.max_state_bytes => Some(format!(
                "a state of {} bytes; the limit is {}",
                s.len(),
                limits.max_state_bytes
            )),
            (_, r) if r > limits.max_message_bytes => Some(format!(
                "a reply of {r} bytes; the limit is {}",
                limits.max_message_bytes
            )),
            _ => None,
        };
        if let Some(why) = too_large {
            if changes {
                self.restore(inner, before.as_deref())?;
            }
            return Err(CallFailure::TooLarge(why));
        }
        let cmd = Command::Commit {
            actor: self.id.clone(),
            epoch: self.epoch,
            state,
            base: Some(inner.version),
            request: Some(call.request),
            acked: call.acked,
            outcome: outcome.clone(),
        };
        // Whatever did not commit leaves the memory ahead of the log: put it back.
        let undo = |this: &Self, inner: &mut Inner<A>| -> Result<(), CallFailure> {
            if changes {
                this.restore(inner, before.as_deref())?;
            }
            Ok(())
        };
        match outcome::settle(rt.proposer.propose(cmd, call.deadline).await, outcome) {
            Settlement::Committed { version, answer } => {
                if changes {
                    rt.metrics.commits.inc();
                }
                inner.version = version;
                answer
            }
            Settlement::Undo(failure) => {
                if matches!(failure, CallFailure::Expired) {
                    tracing::warn!(actor = %self.id, request = %call.request, "request expired: outcome unknown");
                }
                undo(self, inner)?;
                Err(failure)
            }
            Settlement::Reload(original) => {
                let st = rt
                    .view
                    .actor_state(&self.id)
                    .await
                    .map_err(|e| CallFailure::Unavailable(e.to_string()))?;
                self.restore(inner, st.as_ref().map(|s| s.state.as_slice()))?;
                inner.version = st.as_ref().map_or(0, |s| s.version);
                original
            }
            Settlement::Drop { failure, fenced } => {
                if fenced {
                    rt.metrics.fenced.inc();
                }
                tracing::info!(actor = %self.id, epoch = self.epoch, base = inner.version, error = %failure, "commit not applied here: dropping the activation");
                inner.alive = false;
                Err(failure)
            }
        }
    }

    async fn deactivate_locked(&self, rt: &Arc<Runtime>, inner: &mut Inner<A>) {
        inner.alive = false;
        let chain: Arc<[ActorId]> = Arc::from(vec![self.id.clone()]);
        let deadline = Instant::now() + rt.config.call_timeout;
        let mut ctx = Context::<A>::new(
            rt.clone(),
            self.id.clone(),
            self.epoch,
            chain,
            deadline,
            None,
        );
        if let Err(p) = AssertUnwindSafe(inner.actor.on_deactivate(&mut ctx))
            .catch_unwind()
            .await
        {
            tracing::warn!(actor = %self.id, panic = %panic_message(&*p), "deactivate hook panicked");
        }
        // Dropping the JoinSets aborts the activation's tasks.
        drop(ctx);
        inner.tasks = None;
        rt.remove(&self.id, self.serial);
        tracing::debug!(actor = %self.id, "deactivated");
    }
}

impl<A: Actor> AnyActivation for Activation<A> {
    fn admit(&self, deadline: Instant) -> BoxFuture<'_, Result<(), CallFailure>> {
        Box::pin(async move {
            match tokio::time::timeout_at(deadline.into(), self.mailbox.acquire()).await {
                Ok(Ok(permit)) => {
                    // Returned by the call's task once it holds the activation.
                    permit.forget();
                    Ok(())
                }
                Ok(Err(_)) => Err(CallFailure::Shutdown),
                Err(_) => Err(CallFailure::Unavailable(format!(
                    "mailbox of {} full until the deadline",
                    self.id
                ))),
            }
        })
    }

    fn run(
        self: Arc<Self>,
        rt: Arc<Runtime>,
        call: Arc<RawCall>,
        confirmed: bool,
    ) -> BoxFuture<'static, Result<CallResult, Gone>> {
        Box::pin(async move {
            let mut inner = self.inner.lock().await;
            self.mailbox.add_permits(1);
            if !inner.alive {
                return Err(Gone);
            }
            self.last_used.store(rt.now_ms(), Ordering::Relaxed);
            let out = self.process(&rt, &mut inner, &call, confirmed).await;
            if !inner.alive {
                self.deactivate_locked(&rt, &mut inner).await;
            }
            self.last_used.store(rt.now_ms(), Ordering::Relaxed);
            Ok(out)
        })
    }

    fn idle_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_used.load(Ordering::Relaxed))
    }

    fn serial(&self) -> u64 {
        self.serial
    }

    fn deactivate(self: Arc<Self>, rt: Arc<Runtime>, only_if_idle: bool) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut inner = if only_if_idle {
                match self.inner.try_lock() {
                    Ok(g) => g,
                    Err(_) => return,
                }
            } else {
                self.inner.lock().await
            };
            let idle = self.mailbox.available_permits() == self.cap
                && self.idle_ms(rt.now_ms()) >= rt.config.idle_timeout.as_millis() as u64;
            if inner.alive && (idle || !only_if_idle) {
                self.deactivate_locked(&rt, &mut inner).await;
            }
        })
    }
}

type Cell = OnceCell<Arc<dyn AnyActivation>>;

/// The runtime of one node.
pub(crate) struct Runtime {
    pub(crate) node: NodeId,
    incarnation: AtomicU64,
    dir: std::path::PathBuf,
    pub(crate) link: Option<crate::link::Link>,
    pub(crate) raft: Raft,
    pub(crate) view: StateView,
    pub(crate) registry: HashMap<&'static str, Arc<dyn Factory>>,
    app_data: AppData,
    pub(crate) config: RuntimeConfig,
    pub(crate) proposer: Proposer,
    pub(crate) metrics: crate::metrics::Metrics,
    table: Mutex<HashMap<ActorId, Arc<Cell>>>,
    /// The serial of the next activation.
    next_serial: AtomicU64,
    /// The session of the calls this node makes on its own behalf (not nested in a handler).
    own: Mutex<Option<(crate::session::SessionTracker, u64)>>,
    /// Serializes opening `own`.
    opening: tokio::sync::Mutex<()>,
    started: Instant,
    shutting_down: AtomicBool,
    /// Why the node stopped on a fatal error, once it did.
    pub(crate) failed: tokio::sync::watch::Sender<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The table stays consistent if a holder panicked: every critical section is one map call.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runtime {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        node: NodeId,
        incarnation: u64,
        dir: std::path::PathBuf,
        raft: Raft,
        view: StateView,
        registry: HashMap<&'static str, Arc<dyn Factory>>,
        app_data: AppData,
        config: RuntimeConfig,
        link: Option<crate::link::Link>,
    ) -> Arc<Self> {
        let proposer = Proposer::start(
            raft.clone(),
            link.as_ref().map(|l| l.transport.clone()),
            config.max_batch,
            config.max_batch_bytes,
            config.max_inflight_batches,
        );
        let rt = Arc::new(Self {
            node,
            incarnation: AtomicU64::new(incarnation),
            dir,
            link,
            raft,
            view,
            registry,
            app_data,
            config,
            proposer,
            metrics: crate::metrics::Metrics::new(),
            table: Mutex::new(HashMap::new()),
            next_serial: AtomicU64::new(1),
            own: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
            failed: tokio::sync::watch::Sender::new(None),
        });
        tokio::spawn(sweep(Arc::downgrade(&rt)));
        rt
    }

    /// This node's current incarnation (it changes when the node rejoins after being fenced).
    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::SeqCst)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    fn owned_here(&self, p: &raft_store::Placement) -> bool {
        p.node == self.node && p.incarnation == self.incarnation()
    }

    /// Open a client session in the log for `owner`.
    pub(crate) async fn open_session(&self, owner: &str) -> Result<u64, CallFailure> {
        let cmd = Command::OpenSession {
            owner: owner.to_owned(),
        };
        match self.proposer.propose(cmd, background()).await {
            Ok(NewSession { session }) => Ok(session),
            Err(e) => Err(CallFailure::Unavailable(e.to_string())),
        }
    }

    /// Number a call this node makes on its own behalf: its request id and the session's
    /// acknowledgement floor. Opens the node's session first if it has none, or if it went
    /// unused for half the session idle timeout (it may have expired: a call sent in it would
    /// be refused, and could not be told apart from one applied before).
    pub(crate) async fn begin_own(&self) -> Result<(RequestId, u64), CallFailure> {
        let now = self.now_ms();
        let stale_after = (self.config.session_idle_timeout / 2).as_millis() as u64;
        let take = |own: &mut Option<(crate::session::SessionTracker, u64)>| match own {
            Some((t, used)) if now.saturating_sub(*used) < stale_after => {
                *used = now;
                Some((t.begin(), t.acked(now)))
            }
            _ => None,
        };
        if let Some(r) = take(&mut lock(&self.own)) {
            return Ok(r);
        }
        let _opening = self.opening.lock().await;
        if let Some(r) = take(&mut lock(&self.own)) {
            return Ok(r);
        }
        let id = self.open_session(&format!("node-{}", self.node)).await?;
        let mut t = crate::session::SessionTracker::new(
            id,
            self.config.retry_window,
            crate::session::DEFAULT_MAX_SPAN,
        );
        let r = (t.begin(), t.acked(now));
        *lock(&self.own) = Some((t, now));
        Ok(r)
    }

    /// A call numbered by [`Runtime::begin_own`] ended (`known`: with a definite answer).
    pub(crate) fn end_own(&self, req: RequestId, known: bool) {
        let now = self.now_ms();
        if let Some((t, _)) = lock(&self.own).as_mut() {
            t.finish(req, known, now);
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Number of live activations.
    pub(crate) fn activations(&self) -> usize {
        lock(&self.table)
            .values()
            .filter(|c| c.initialized())
            .count()
    }

    /// Run one call: find or create the activation, wait for a mailbox slot, run it.
    ///
    /// Boxed: handlers call other actors through it, and an unboxed future would nest the
    /// whole runtime's state into every handler's future.
    pub(crate) fn call_raw(
        self: &Arc<Self>,
        call: RawCall,
    ) -> BoxFuture<'static, Result<(Vec<u8>, NodeId), CallFailure>> {
        let rt = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let r = rt.clone().call_inner(call).await;
            rt.metrics
                .call(r.as_ref().map(|_| ()), started.elapsed().as_secs_f64());
            r
        })
    }

    /// A call that arrived over the network (from a client or a gateway node).
    pub(crate) async fn serve_remote(
        self: &Arc<Self>,
        c: floe_proto::CallRequest,
    ) -> Result<(Vec<u8>, NodeId), CallFailure> {
        let timeout =
            Duration::from_millis(u64::from(c.timeout_ms)).min(self.config.call_timeout * 6);
        let call = RawCall {
            actor: c.actor,
            message: c.message,
            payload: c.payload,
            request: c.request,
            deadline: Instant::now() + timeout,
            chain: Arc::from(c.chain),
            hops: c.hops,
            acked: c.acked,
            retry: c.retry,
        };
        self.call_raw(call).await
    }

    async fn call_inner(self: Arc<Self>, call: RawCall) -> Result<(Vec<u8>, NodeId), CallFailure> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(CallFailure::Shutdown);
        }
        if call.payload.len() > self.config.max_message_bytes {
            return Err(CallFailure::TooLarge(format!(
                "a message of {} bytes; the limit is {}",
                call.payload.len(),
                self.config.max_message_bytes
            )));
        }
        if call.chain.contains(&call.actor) {
            let mut cycle = call.chain.to_vec();
            cycle.push(call.actor.clone());
            return Err(CallFailure::CallCycle(cycle));
        }
        let mut call = Arc::new(call);
        let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(100));
        loop {
            if Instant::now() >= call.deadline {
                return Err(CallFailure::Timeout);
            }
            let hosted = self.registry.contains_key(call.actor.kind.as_str());
            let here = if !hosted && self.link.is_some() {
                // This node does not host the type: find (or make) its owner elsewhere.
                Err(CallFailure::NotOwner(Some(
                    self.locate(&call.actor, call.deadline).await?,
                )))
            } else {
                self.activation(&call.actor, call.deadline).await
            };
            let outcome = match here {
                Ok((act, made)) => {
                    act.admit(call.deadline).await?;
                    let task = tokio::spawn(act.run(self.clone(), call.clone(), made));
                    match tokio::time::timeout_at(call.deadline.into(), task).await {
                        Err(_) => return Err(CallFailure::Timeout),
                        Ok(Err(e)) => {
                            return Err(CallFailure::Unavailable(format!("call task: {e}")));
                        }
                        Ok(Ok(Ok(Ok(reply)))) if reply.len() > self.config.max_message_bytes => {
                            Err(CallFailure::TooLarge(format!(
                                "a reply of {} bytes; the limit is {}",
                                reply.len(),
                                self.config.max_message_bytes
                            )))
                        }
                        Ok(Ok(Ok(r))) => r.map(|p| (p, self.node)),
                        Ok(Ok(Err(Gone))) => continue,
                    }
                }
                Err(e) => Err(e),
            };
            // The actor lives (or moved) elsewhere: forward it there, once, within the deadline.
            match route::after_try(&outcome, self.link.is_some(), call.hops, self.node) {
                Route::Answer => return outcome,
                Route::Forward(owner) => match self.forward(owner, &call).await {
                    Forwarded::Reply(payload, owner) => return Ok((payload, owner)),
                    Forwarded::Failed(f) => return Err(f),
                    Forwarded::Reroute => {
                        if !call.retry {
                            call = Arc::new(RawCall {
                                retry: true,
                                ..(*call).clone()
                            });
                        }
                    }
                },
                Route::Again => {}
            }
            tokio::time::sleep(backoff.next(call.deadline, Instant::now())).await;
        }
    }

    /// Resolves once the directory no longer has `owner` alive in the incarnation it has now.
    async fn owner_down(&self, owner: NodeId) {
        let current = match self.view.node(owner).await {
            Ok(Some(r)) if r.alive => r.incarnation,
            _ => return,
        };
        // Most forwards finish well before the first check.
        tokio::time::sleep(Duration::from_millis(100)).await;
        loop {
            match self.view.node(owner).await {
                Ok(Some(r)) if r.alive && r.incarnation == current => {}
                _ => return,
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Forward `call` to `owner`.
    async fn forward(&self, owner: NodeId, call: &RawCall) -> Forwarded {
        let Some(link) = &self.link else {
            return Forwarded::Reroute;
        };
        let Some(target) = crate::link::target(&self.raft, owner) else {
            return Forwarded::Reroute;
        };
        let remaining = call.deadline.saturating_duration_since(Instant::now());
        let req = crate::link::call_request(call);
        // A killed owner leaves its connection open and silent: stop waiting once the directory
        // declares it down and route again. The retry carries the same request id, so a call the
        // old owner did commit is not applied twice.
        let sent = tokio::select! {
            r = link.transport.request(&target, req, remaining) => r,
            () = self.owner_down(owner) => return Forwarded::Reroute,
        };
        route::after_forward(owner, sent)
    }

    /// The node that owns `id`, placing it on a node that hosts its type if it has no owner.
    /// For actor types this node does not host.
    async fn locate(&self, id: &ActorId, deadline: Instant) -> Result<NodeId, CallFailure> {
        let unavailable = |e: &dyn std::fmt::Display| CallFailure::Unavailable(e.to_string());
        if let Some(p) = self.view.owner(id).await.map_err(|e| unavailable(&e))? {
            return Ok(p.node);
        }
        let nodes = self.view.nodes().await.map_err(|e| unavailable(&e))?;
        let hosts: Vec<raft_store::NodeRecord> = nodes
            .into_iter()
            .filter(|n| n.actor_types.contains(&id.kind))
            .collect();
        let live: Vec<raft_store::NodeRecord> = hosts.iter().filter(|n| n.alive).cloned().collect();
        let preferred = match &self.link {
            Some(link) => link
                .placement
                .choose(id, self.node, &live, &mut rand::rng()),
            None => None,
        };
        let Some(preferred) = preferred else {
            return Err(if hosts.is_empty() {
                CallFailure::BadRequest(format!("no node hosts actor type {}", id.kind))
            } else {
                CallFailure::Unavailable(format!("no live node hosts actor type {} now", id.kind))
            });
        };
        let cmd = Command::Activate {
            actor: id.clone(),
            preferred,
        };
        match self.proposer.propose(cmd, deadline).await {
            Ok(ActivateResult::Placed { placement, .. }) => Ok(placement.node),
            Ok(ActivateResult::NodeUnavailable { node }) => Err(CallFailure::Unavailable(format!(
                "node {node} is not alive in the directory"
            ))),
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// The activation of `id` here, made if there is none; true if this caller made it.
    async fn activation(
        self: &Arc<Self>,
        id: &ActorId,
        deadline: Instant,
    ) -> Result<(Arc<dyn AnyActivation>, bool), CallFailure> {
        let cell = lock(&self.table).entry(id.clone()).or_default().clone();
        if let Some(a) = cell.get() {
            return Ok((a.clone(), false));
        }
        let made = std::sync::atomic::AtomicBool::new(false);
        let init = cell.get_or_try_init(|| {
            made.store(true, Ordering::Relaxed);
            self.clone().activate(id.clone(), deadline)
        });
        let res = match tokio::time::timeout_at(deadline.into(), init).await {
            Ok(r) => r.cloned().map(|a| (a, made.load(Ordering::Relaxed))),
            Err(_) => Err(CallFailure::Timeout),
        };
        if res.is_err() {
            // Leave nothing half-alive behind.
            let mut table = lock(&self.table);
            if table
                .get(id)
                .is_some_and(|c| Arc::ptr_eq(c, &cell) && !c.initialized())
            {
                table.remove(id);
            }
        }
        res
    }

    async fn activate(
        self: Arc<Self>,
        id: ActorId,
        deadline: Instant,
    ) -> Result<Arc<dyn AnyActivation>, CallFailure> {
        let factory = self
            .registry
            .get(id.kind.as_str())
            .cloned()
            .ok_or_else(|| {
                CallFailure::BadRequest(format!(
                    "actor type {} is not registered on this node",
                    id.kind
                ))
            })?;
        let epoch = self.place(&id, deadline).await?;
        let state = self
            .view
            .actor_state(&id)
            .await
            .map_err(|e| CallFailure::Unavailable(e.to_string()))?
            .map(|s| (s.version, s.state));
        tracing::debug!(actor = %id, epoch, "activating");
        factory
            .activate(self.clone(), id, epoch, state, deadline)
            .await
    }

    /// Make sure this node owns `id` and return the epoch: reuse a sticky placement, or commit a
    /// new one.
    ///
    /// The local view is only a hint. A placement here is reused after a read index confirms
    /// it is still current; an owner elsewhere is a routing hint (that node corrects us if it
    /// moved); no owner means proposing `Activate`, whose committed result is authoritative
    /// (first writer wins), so it needs no read index before it.
    async fn place(&self, id: &ActorId, deadline: Instant) -> Result<u64, CallFailure> {
        let owner = |view: &StateView| {
            let view = view.clone();
            let id = id.clone();
            async move {
                view.owner(&id)
                    .await
                    .map_err(|e| CallFailure::Unavailable(e.to_string()))
            }
        };
        match owner(&self.view).await? {
            Some(p) if self.owned_here(&p) => {
                if unsafe_reads(&self.config) {
                    return Ok(p.epoch);
                }
                self.linearize().await?;
                match owner(&self.view).await? {
                    Some(p) if self.owned_here(&p) => return Ok(p.epoch),
                    Some(p) => return Err(CallFailure::NotOwner(Some(p.node))),
                    None => {}
                }
            }
            Some(p) if unsafe_reads(&self.config) => {
                // Self-test mode: last-writer-wins placement, as in systems without fencing.
                let release = Command::Release {
                    actor: id.clone(),
                    epoch: p.epoch,
                };
                let _ = self
                    .proposer
                    .propose::<ReleaseResult>(release, deadline)
                    .await;
            }
            Some(p) => return Err(CallFailure::NotOwner(Some(p.node))),
            None => {}
        }
        let preferred = match &self.link {
            Some(_) if unsafe_reads(&self.config) => self.node,
            None => self.node,
            Some(link) => {
                let candidates: Vec<raft_store::NodeRecord> = self
                    .view
                    .nodes()
                    .await
                    .map_err(|e| CallFailure::Unavailable(e.to_string()))?
                    .into_iter()
                    .filter(|n| n.alive && n.actor_types.contains(&id.kind))
                    .collect();
                link.placement
                    .choose(id, self.node, &candidates, &mut rand::rng())
                    .ok_or_else(|| {
                        CallFailure::Unavailable(format!(
                            "no live node hosts actor type {}",
                            id.kind
                        ))
                    })?
            }
        };
        let cmd = Command::Activate {
            actor: id.clone(),
            preferred,
        };
        match self.proposer.propose(cmd, deadline).await {
            Ok(ActivateResult::Placed { placement: p, .. }) => {
                if self.owned_here(&p) {
                    Ok(p.epoch)
                } else {
                    Err(CallFailure::NotOwner(Some(p.node)))
                }
            }
            Ok(ActivateResult::NodeUnavailable { node }) => Err(CallFailure::Unavailable(format!(
                "node {node} is not alive in the directory"
            ))),
            Err(e) => Err(CallFailure::Unavailable(e.to_string())),
        }
    }

    /// Wait for a Raft read index: everything committed before now is applied locally.
    ///
    /// On the leader this is openraft's read index; a follower asks the leader for the read index
    /// and waits until it applied that far. Without a reachable quorum it fails.
    async fn linearize(&self) -> Result<(), CallFailure> {
        // A dead leader must not hold the call: fail fast, the caller retries.
        let timeout = self.config.call_timeout.min(Duration::from_millis(500));
        let transport = self.link.as_ref().map(|l| &l.transport);
        crate::proposer::linearize(&self.raft, transport, timeout).await
    }

    /// Confirm through a read index that `epoch` is still the current placement of `id` here.
    async fn confirm_owner(&self, id: &ActorId, epoch: u64) -> Result<(), CallFailure> {
        self.linearize().await?;
        match self.view.owner(id).await {
            Ok(Some(p)) if self.owned_here(&p) && p.epoch == epoch => Ok(()),
            Ok(p) => {
                self.metrics.fenced.inc();
                Err(CallFailure::NotOwner(p.map(|p| p.node)))
            }
            Err(e) => Err(CallFailure::Unavailable(e.to_string())),
        }
    }

    /// Remove activation `serial` of `id` from the table, unless another has replaced it.
    fn remove(&self, id: &ActorId, serial: u64) {
        let mut table = lock(&self.table);
        let same = table
            .get(id)
            .is_some_and(|c| c.get().is_some_and(|a| a.serial() == serial));
        if same {
            table.remove(id);
        }
    }

    async fn deactivate_all(self: &Arc<Self>) {
        let all: Vec<Arc<dyn AnyActivation>> = lock(&self.table)
            .values()
            .filter_map(|c| c.get().cloned())
            .collect();
        for a in all {
            a.deactivate(self.clone(), false).await;
        }
    }

    /// The reason this node stopped on a fatal error, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    /// The node's storage or Raft core failed: serve nothing from now on. Activations are
    /// dropped without their deactivate hooks (they could not commit anything), and the
    /// endpoint is closed so that peers and clients go elsewhere at once.
    pub(crate) async fn fail(&self, why: String) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.failed.send_replace(Some(why));
        lock(&self.table).clear();
        if let Some(link) = &self.link {
            link.transport.shutdown(Duration::from_millis(100)).await;
        }
    }

    /// A fault this node cannot recover from (its Raft core or its storage failed): log why,
    /// serve nothing from now on ([`Runtime::fail`]), and with `exit_on_fatal` exit the process
    /// with status 70 so that its supervisor restarts it.
    pub(crate) async fn fatal(&self, why: String) {
        tracing::error!(node = self.node, error = %why, "fatal: the node stops serving");
        self.fail(why.clone()).await;
        if self.config.exit_on_fatal {
            eprintln!("floe: fatal: node {} stopped: {why}", self.node);
            std::process::exit(70);
        }
    }

    /// Stop accepting calls and deactivate every activation (running their hooks).
    pub(crate) async fn shutdown(self: &Arc<Self>) {
        self.shutting_down.store(true, Ordering::Relaxed);
        self.deactivate_all().await;
    }

    /// This node was declared down while alive: its placements are void. Drop every
    /// activation, take a new incarnation and register again.
    pub(crate) async fn rejoin(self: &Arc<Self>) -> Result<(), RegisterError> {
        let next = crate::incarnation::next(&self.dir).map_err(RegisterError::Incarnation)?;
        self.incarnation.store(next, Ordering::SeqCst);
        self.deactivate_all().await;
        self.register().await
    }

    /// Register this node (its current incarnation and actor types) in the directory.
    pub(crate) async fn register(&self) -> Result<(), RegisterError> {
        let mut actor_types: Vec<String> = self.registry.keys().map(|k| k.to_string()).collect();
        actor_types.sort();
        let addr = self
            .link
            .as_ref()
            .map_or_else(|| "local".to_string(), |l| l.advertise.clone());
        let cmd = Command::RegisterNode {
            node: self.node,
            incarnation: self.incarnation(),
            addr,
            actor_types,
        };
        match self.proposer.propose(cmd, background()).await {
            Ok(RegisterResult::Registered) => Ok(()),
            Ok(RegisterResult::StaleIncarnation { current }) => Err(RegisterError::Refused(
                format!("the directory knows incarnation {current} of this node"),
            )),
            Err(ProposeError::Invalid(why)) => Err(RegisterError::Refused(why)),
            Err(e) => Err(RegisterError::Transient(e.to_string())),
        }
    }
}

/// Why a registration did not land.
#[derive(Debug)]
pub(crate) enum RegisterError {
    /// The directory refused it (a newer incarnation is known): do not retry.
    Refused(String),
    /// No leader, or the outcome is unknown: registering again is safe.
    Transient(String),
    /// The incarnation file could not be written: a storage fault, nothing registered.
    Incarnation(std::io::Error),
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterError::Refused(e) | RegisterError::Transient(e) => f.write_str(e),
            RegisterError::Incarnation(e) => write!(f, "storing the incarnation: {e}"),
        }
    }
}

async fn sweep(rt: Weak<Runtime>) {
    let period = match rt.upgrade() {
        Some(rt) => (rt.config.idle_timeout / 4).max(Duration::from_millis(5)),
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(rt) = rt.upgrade() else { return };
        if rt.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        let now = rt.now_ms();
        let limit = rt.config.idle_timeout.as_millis() as u64;
        let idle: Vec<Arc<dyn AnyActivation>> = lock(&rt.table)
            .values()
            .filter_map(|c| c.get())
            .filter(|a| a.idle_ms(now) >= limit)
            .cloned()
            .collect();
        for a in idle {
            a.deactivate(rt.clone(), true).await;
        }
    }
}

/// While this node leads, carry its clock into the log so that idle sessions expire.
pub(crate) async fn session_clock(rt: Weak<Runtime>) {
    let period = match rt.upgrade() {
        Some(rt) => (rt.config.session_idle_timeout / 16)
            .clamp(Duration::from_millis(100), Duration::from_secs(30)),
        None => return,
    };
    // Leadership is checked more often than the clock is carried, so that a new leader sets
    // the clock soon after it is elected (a new cluster's clock starts then).
    let check = period.min(Duration::from_millis(500));
    let mut last_tick: Option<Instant> = None;
    loop {
        tokio::time::sleep(check).await;
        let Some(rt) = rt.upgrade() else { return };
        if rt.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        let leads = {
            let m = rt.raft.metrics().borrow_watched().clone();
            m.current_leader == Some(m.id)
        };
        if !leads {
            last_tick = None;
            continue;
        }
        if last_tick.is_some_and(|t| t.elapsed() < period) {
            continue;
        }
        last_tick = Some(Instant::now());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64);
        let cmd = Command::ExpireSessions {
            now_ms,
            idle_ms: rt
                .config
                .session_idle_timeout
                .as_millis()
                .min(u64::MAX as u128) as u64,
        };
        match rt.proposer.propose(cmd, background()).await {
            Ok(SessionsExpired { count: 0 }) => {}
            Ok(SessionsExpired { count }) => tracing::info!(count, "client sessions expired"),
            Err(e) => tracing::debug!(error = %e, "session clock not carried"),
        }
    }
}

impl Caller for Runtime {
    fn node_id(&self) -> NodeId {
        self.node
    }

    fn call_timeout(&self) -> Duration {
        self.config.call_timeout
    }

    fn app_data(&self) -> &AppData {
        &self.app_data
    }

    fn call_raw(
        self: Arc<Self>,
        call: RawCall,
    ) -> BoxFuture<'static, Result<(Vec<u8>, NodeId), CallFailure>> {
        Runtime::call_raw(&self, call)
    }

    fn begin_own(&self) -> BoxFuture<'_, Result<(RequestId, u64), CallFailure>> {
        Box::pin(Runtime::begin_own(self))
    }

    fn end_own(&self, req: RequestId, known: bool) {
        Runtime::end_own(self, req, known);
    }
}

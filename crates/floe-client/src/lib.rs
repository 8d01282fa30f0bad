//! The Floe client: typed actor calls to a cluster over QUIC with mutual TLS.
//!
//! A [`Client`] is cheap to clone and shared by many concurrent calls (no lock is held across
//! an await). It starts from seed addresses, learns each actor's owner from the replies and goes
//! to it directly afterwards. Timeouts and unavailability are retried with the **same request
//! id** (so the call is applied at most once), with exponential backoff, inside one overall
//! deadline; the error says whether the outcome is known.
//!
//! # Exactly-once
//! The client opens a session in the cluster's log on its first call and numbers its calls in
//! it. A call's outcome stays in the log until the client acknowledges it: at once when the call
//! returned a definite answer, or [`ClientConfig::retry_window`] after it returned with its
//! outcome unknown ([`CallFailure::outcome_known`] false), so that the application can retry it
//! with [`ClientActorRef::with_request_id`] and get its original answer. The session expires
//! when it made no commit for the cluster's session idle timeout (an hour by default); a retry
//! after that gets [`CallFailure::Expired`]: the outcome is unknown, and it was not applied
//! twice. Once an attempt of a call may have reached the cluster, no later attempt's failure is
//! reported as definite.

pub mod admin;

pub use floe_proto::{MemberInfo, MemberStatus, StatusReport};

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe::retry::Backoff;
use floe::session::SessionTracker;
use floe::{Actor, ActorId, CallError, CallFailure, Handler, Message, NodeId, RequestId};
use floe_net::{ConfigError, RpcError, Target, TlsMaterial, Transport, TransportConfig};
use floe_proto::{Action, CallReply, CallRequest, Members, NodeHint, OpenSession};

/// Settings of a [`Client`]: [`ClientConfig::new`] and the setters of the same names as the
/// fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Addresses of some cluster nodes.
    pub seeds: Vec<SocketAddr>,
    /// The client certificate, its key and the cluster CA.
    pub tls: TlsMaterial,
    /// Overall deadline of a call, retries included.
    pub call_timeout: Duration,
    /// Deadline of one attempt.
    pub attempt_timeout: Duration,
    /// First wait before a retry; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
    /// If the cached owner has not answered after this long, send the same request (same
    /// request id) through a seed as well and take the first answer: a killed owner leaves a
    /// silent connection behind.
    pub hedge_after: Duration,
    /// How long a call that ended with its outcome unknown can be retried with its request id
    /// and still get its original answer (must stay below the cluster's session idle timeout).
    pub retry_window: Duration,
    /// Transport settings (the listen address should stay an ephemeral port).
    pub transport: TransportConfig,
}

floe_proto::setters!(ClientConfig {
    seeds: Vec<SocketAddr>,
    call_timeout: Duration,
    attempt_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    hedge_after: Duration,
    retry_window: Duration,
    transport: TransportConfig,
});

impl ClientConfig {
    /// Connect to `seeds` with `tls`; other settings default.
    pub fn new(seeds: Vec<SocketAddr>, tls: TlsMaterial) -> Self {
        Self {
            seeds,
            tls,
            call_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(500),
            hedge_after: Duration::from_millis(250),
            retry_window: floe::session::DEFAULT_RETRY_WINDOW,
            transport: TransportConfig::default(),
        }
    }

    /// Check the settings and hand them back.
    ///
    /// # Errors
    /// [`ConfigError`] names the first setting that is wrong.
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        let check = ConfigError::check;
        check(
            !self.seeds.is_empty(),
            "seeds",
            "needs at least one address",
        )?;
        check(
            !self.call_timeout.is_zero(),
            "call_timeout",
            "must be positive",
        )?;
        check(
            !self.attempt_timeout.is_zero(),
            "attempt_timeout",
            "must be positive",
        )?;
        check(
            !self.backoff_min.is_zero(),
            "backoff_min",
            "must be positive",
        )?;
        check(
            self.backoff_min <= self.backoff_max,
            "backoff_max",
            "must be at least backoff_min",
        )?;
        check(
            !self.hedge_after.is_zero(),
            "hedge_after",
            "must be positive",
        )?;
        check(
            !self.retry_window.is_zero(),
            "retry_window",
            "must be positive",
        )?;
        self.transport = self.transport.validate()?;
        Ok(self)
    }
}

/// Why a client could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A setting is wrong (no seeds, a zero timeout): fix the one named.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local endpoint could not be created (bad TLS material, socket).
    #[error(transparent)]
    Bind(#[from] floe_net::BindError),
    /// No seed answered; the last error is given.
    #[error("no seed reachable: {0}")]
    Unreachable(String),
}

struct Inner {
    transport: Transport,
    config: ClientConfig,
    owners: Mutex<HashMap<ActorId, NodeHint>>,
    next_seed: AtomicUsize,
    /// The session, once opened.
    session: Mutex<Option<SessionTracker>>,
    /// Serializes opening the session.
    opening: tokio::sync::Mutex<()>,
    started: Instant,
}

/// A connection to a Floe cluster; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("seeds", &self.inner.config.seeds)
            .field("session", &self.session_id())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// Create the client and check that a seed answers.
    ///
    /// # Errors
    /// [`ConnectError`]: a wrong setting, unusable TLS material, or no seed reachable.
    pub async fn connect(config: ClientConfig) -> Result<Self, ConnectError> {
        let config = config.validate()?;
        let mut tc = config.transport.clone();
        if tc.listen.port() != 0 {
            tc.listen.set_port(0);
        }
        let transport = Transport::bind(tc, &config.tls)?;
        let client = Self {
            inner: Arc::new(Inner {
                transport,
                owners: Mutex::new(HashMap::new()),
                next_seed: AtomicUsize::new(rand::random_range(0..config.seeds.len())),
                session: Mutex::new(None),
                opening: tokio::sync::Mutex::new(()),
                started: Instant::now(),
                config,
            }),
        };
        client
            .members()
            .await
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        Ok(client)
    }

    /// A reference to actor `key` of type `A`.
    pub fn actor<A: Actor>(&self, key: impl Into<String>) -> ClientActorRef<A> {
        ClientActorRef {
            client: self.clone(),
            id: ActorId::new(A::NAME, key),
            timeout: self.inner.config.call_timeout,
            request: None,
            _actor: PhantomData,
        }
    }

    /// The cluster's members, as a seed reports them.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, RpcError> {
        let mut last = RpcError::Unreachable("no seeds".into());
        for _ in 0..self.inner.config.seeds.len() {
            let t = self.seed();
            match self
                .inner
                .transport
                .request(&t, Members, self.inner.config.attempt_timeout)
                .await
            {
                Ok(m) => return Ok(m),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The node this client believes owns `actor` (learned from replies).
    pub fn cached_owner(&self, actor: &ActorId) -> Option<NodeId> {
        lock(&self.inner.owners).get(actor).map(|h| h.node)
    }

    /// This client's session id (the first part of its request ids), once it opened one.
    pub fn session_id(&self) -> Option<u64> {
        lock(&self.inner.session).as_ref().map(|t| t.session())
    }

    /// A fresh request id of this client's session, to pass to
    /// [`ClientActorRef::with_request_id`] (and to keep, to retry the call later, from this
    /// process or another).
    ///
    /// # Errors
    /// [`CallFailure::Unavailable`] if the session cannot be opened (no seed reachable, no
    /// quorum).
    ///
    /// # Cancel safety
    /// Cancel safe: at worst a session is opened and left to expire.
    pub async fn new_request_id(&self) -> Result<RequestId, CallFailure> {
        let (id, _) = self.begin().await?;
        self.end(id, false);
        Ok(id)
    }

    fn now_ms(&self) -> u64 {
        self.inner
            .started
            .elapsed()
            .as_millis()
            .min(u64::MAX as u128) as u64
    }

    /// Number a new call (opening the session first if needed); its id and the session's
    /// acknowledgement floor.
    async fn begin(&self) -> Result<(RequestId, u64), CallFailure> {
        let now = self.now_ms();
        if let Some(t) = lock(&self.inner.session).as_mut() {
            return Ok((t.begin(), t.acked(now)));
        }
        let _opening = self.inner.opening.lock().await;
        if lock(&self.inner.session).is_none() {
            let id = self.open_session().await?;
            *lock(&self.inner.session) = Some(SessionTracker::new(
                id,
                self.inner.config.retry_window,
                floe::session::DEFAULT_MAX_SPAN,
            ));
        }
        let mut session = lock(&self.inner.session);
        let t = session
            .as_mut()
            .ok_or_else(|| CallFailure::Unavailable("no session".into()))?;
        Ok((t.begin(), t.acked(now)))
    }

    /// The call `id` ended, with a definite answer if `known`.
    fn end(&self, id: RequestId, known: bool) {
        let now = self.now_ms();
        if let Some(t) = lock(&self.inner.session).as_mut() {
            t.finish(id, known, now);
        }
    }

    /// The call `id` (of this session, or not) is sent again by the application; returns the
    /// acknowledgement floor to send with it (0 for another session's id: this client cannot
    /// speak for it).
    fn resume(&self, id: RequestId) -> u64 {
        let now = self.now_ms();
        match lock(&self.inner.session).as_mut() {
            Some(t) if t.session() == id.session => {
                t.resume(id);
                t.acked(now)
            }
            _ => 0,
        }
    }

    /// The cluster no longer knows `session`: open a new one on the next call.
    fn drop_session(&self, session: u64) {
        let mut s = lock(&self.inner.session);
        if s.as_ref().is_some_and(|t| t.session() == session) {
            *s = None;
        }
    }

    /// Open a session through some seed, within the call timeout.
    async fn open_session(&self) -> Result<u64, CallFailure> {
        let cfg = &self.inner.config;
        let deadline = Instant::now() + cfg.call_timeout;
        let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(CallFailure::Unavailable(
                    "no session could be opened before the deadline".into(),
                ));
            }
            let attempt = remaining.min(cfg.attempt_timeout);
            match self
                .inner
                .transport
                .request(&self.seed(), OpenSession, attempt)
                .await
            {
                Ok(opened) => return Ok(opened.id),
                Err(RpcError::Refused(m)) => {
                    return Err(CallFailure::BadRequest(format!("refused: {m}")));
                }
                Err(e) => tracing::debug!(error = %e, "opening a session failed; retrying"),
            }
            tokio::time::sleep(backoff.next(deadline, Instant::now())).await;
        }
    }

    fn seed(&self) -> Target {
        let seeds = &self.inner.config.seeds;
        let i = self.inner.next_seed.fetch_add(1, Ordering::Relaxed) % seeds.len();
        Target::any_node(seeds[i])
    }

    /// The cached owner of `actor`, if any.
    fn cached_target(&self, actor: &ActorId) -> Option<Target> {
        let cached = lock(&self.inner.owners).get(actor).cloned();
        cached.and_then(|h| h.addr.parse().ok().map(|a| Target::node(h.node, a)))
    }

    /// Send one attempt: to the cached owner (hedged through a seed if it is slow), or to a seed.
    /// `hedged` is set once a second copy was sent.
    async fn attempt(
        &self,
        actor: &ActorId,
        call: CallRequest,
        timeout: Duration,
        hedged: &mut bool,
    ) -> Result<CallReply, RpcError> {
        let t = &self.inner.transport;
        let Some(owner) = self.cached_target(actor) else {
            return t.request(&self.seed(), call, timeout).await;
        };
        let first_fixed = call.retry;
        let direct = t.request(&owner, call.clone(), timeout);
        tokio::pin!(direct);
        let hedge = self.inner.config.hedge_after.min(timeout);
        tokio::select! {
            r = &mut direct => return r,
            () = tokio::time::sleep(hedge) => {}
        }
        *hedged = true;
        let seed = self.seed();
        let copy = CallRequest {
            retry: true,
            ..call
        };
        let via_seed = t.request(&seed, copy, timeout.saturating_sub(hedge));
        if !first_fixed {
            // The first copy may answer afresh (a read, a rejection) while this one commits:
            // only the copy whose answer the log fixes may be taken.
            return via_seed.await;
        }
        tokio::pin!(via_seed);
        // First success wins; if one fails, wait for the other.
        tokio::select! {
            r = &mut direct => match r {
                Ok(v) => Ok(v),
                Err(_) => via_seed.await,
            },
            r = &mut via_seed => match r {
                Ok(v) => Ok(v),
                Err(_) => direct.await,
            },
        }
    }

    fn learn(&self, actor: &ActorId, owner: Option<NodeHint>) {
        let mut owners = lock(&self.inner.owners);
        match owner {
            Some(h) => {
                owners.insert(actor.clone(), h);
            }
            None => {
                owners.remove(actor);
            }
        }
    }

    /// Run one call with retries; returns the serialized reply, and whether some attempt may
    /// have taken effect. `sent_before`: the request id may have been used already (its answer
    /// must come from the log).
    #[allow(clippy::too_many_arguments)]
    async fn call_raw(
        &self,
        actor: &ActorId,
        message: &'static str,
        payload: Vec<u8>,
        request: RequestId,
        acked: u64,
        sent_before: bool,
        timeout: Duration,
    ) -> (Result<Vec<u8>, CallFailure>, bool) {
        let mut ambiguous = sent_before;
        let r = self
            .attempts(
                actor,
                message,
                payload,
                request,
                acked,
                timeout,
                &mut ambiguous,
            )
            .await;
        (r, ambiguous)
    }

    /// The retry loop of [`Client::call_raw`]; sets `ambiguous` once an attempt may have taken
    /// effect.
    #[allow(clippy::too_many_arguments)]
    async fn attempts(
        &self,
        actor: &ActorId,
        message: &'static str,
        payload: Vec<u8>,
        request: RequestId,
        acked: u64,
        timeout: Duration,
        ambiguous: &mut bool,
    ) -> Result<Vec<u8>, CallFailure> {
        let cfg = &self.inner.config;
        let deadline = Instant::now() + timeout;
        let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
        let mut hedged = false;
        let unknown = settle;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(CallFailure::Timeout);
            }
            let call = CallRequest {
                actor: actor.clone(),
                message: message.to_string(),
                payload: payload.clone(),
                request,
                timeout_ms: remaining.as_millis().min(u32::MAX as u128) as u32,
                chain: Vec::new(),
                hops: 0,
                acked,
                retry: *ambiguous || hedged,
            };
            let attempt = remaining.min(cfg.attempt_timeout);
            let result = self.attempt(actor, call, attempt, &mut hedged).await;
            if hedged {
                *ambiguous = true;
            }
            let retry = match result {
                Ok(CallReply {
                    payload,
                    owner,
                    owner_addr,
                }) => {
                    self.learn(actor, owner_addr.map(|addr| NodeHint { node: owner, addr }));
                    return Ok(payload);
                }
                Err(RpcError::Remote(e)) => match e.kind.action() {
                    Action::Reroute => {
                        let hint = match &e.kind {
                            floe_proto::ErrorKind::NotOwner { hint } => hint.clone(),
                            _ => None,
                        };
                        let immediate = hint.is_some();
                        self.learn(actor, hint);
                        !immediate
                    }
                    Action::BackOff | Action::RetrySameId => {
                        *ambiguous = true;
                        self.learn(actor, None);
                        true
                    }
                    Action::GiveUp => return Err(unknown(*ambiguous, floe::wire::from_wire(e))),
                },
                // Our certificate or theirs is refused: retrying will not help.
                Err(RpcError::Refused(m)) => {
                    return Err(unknown(
                        *ambiguous,
                        CallFailure::BadRequest(format!("refused: {m}")),
                    ));
                }
                Err(RpcError::Shutdown) => return Err(unknown(*ambiguous, CallFailure::Shutdown)),
                // Not sent: nothing could have taken effect.
                Err(RpcError::Unreachable(e)) => {
                    tracing::debug!(actor = %actor, error = %e, "call attempt not sent; retrying");
                    self.learn(actor, None);
                    true
                }
                // Lost or timed out: the same request id keeps a retry safe.
                Err(e) => {
                    tracing::debug!(actor = %actor, error = %e, "call attempt failed; retrying");
                    *ambiguous = true;
                    self.learn(actor, None);
                    true
                }
            };
            if retry {
                tokio::time::sleep(backoff.next(deadline, Instant::now())).await;
            }
        }
    }

    /// Close the client's endpoint.
    pub async fn close(&self) {
        self.inner
            .transport
            .shutdown(Duration::from_millis(100))
            .await;
    }
}

/// What to report for a call whose last attempt failed with `f`. Once an earlier attempt may have
/// taken effect (`ambiguous`), a failure that only says the last attempt did nothing (refused,
/// bad request, shut down...) says nothing about the call: its outcome is unknown. A rejection
/// stands: the handler's error for a retried request is fixed in the log like a reply.
fn settle(ambiguous: bool, f: CallFailure) -> CallFailure {
    if ambiguous && f.outcome_known() && !matches!(f, CallFailure::Rejected { .. }) {
        CallFailure::Timeout
    } else {
        f
    }
}

/// A typed reference to an actor through a [`Client`]; cheap to clone.
pub struct ClientActorRef<A> {
    client: Client,
    id: ActorId,
    timeout: Duration,
    request: Option<RequestId>,
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for ClientActorRef<A> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            id: self.id.clone(),
            timeout: self.timeout,
            request: self.request,
            _actor: PhantomData,
        }
    }
}

impl<A: Actor> ClientActorRef<A> {
    /// The actor's id.
    pub fn id(&self) -> &ActorId {
        &self.id
    }

    /// Overall deadline of the call, retries included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Use this request id: retry a call made earlier (from this process or another, for as
    /// long as the call's session lives), with an id from [`Client::new_request_id`] or one
    /// that an earlier call failed with. Its answer then comes from the log: the original
    /// outcome if the call was applied, [`CallFailure::Expired`] if that can no longer be told.
    pub fn with_request_id(mut self, request: RequestId) -> Self {
        self.request = Some(request);
        self
    }

    /// Send `msg` and wait for the reply, retrying with the same request id.
    ///
    /// # Errors
    /// [`CallError::Rejected`] with the handler's error, or [`CallError::Failed`];
    /// [`CallFailure::Timeout`] means the outcome is unknown (retry with the same request id to
    /// find out).
    ///
    /// # Cancel safety
    /// Dropping the future may leave the call applied; retry with the same request id.
    pub async fn call<M>(&self, msg: M) -> Result<M::Reply, CallError<<A as Handler<M>>::Error>>
    where
        M: Message,
        A: Handler<M>,
    {
        let payload = floe::wire::encode_message(M::NAME, &msg)?;
        let client = &self.client;
        if let Some(request) = self.request {
            let acked = client.resume(request);
            let (raw, _) = client
                .call_raw(
                    &self.id,
                    M::NAME,
                    payload,
                    request,
                    acked,
                    true,
                    self.timeout,
                )
                .await;
            client.end(
                request,
                raw.as_ref().map_or_else(|f| f.outcome_known(), |_| true),
            );
            return floe::wire::typed_outcome(raw);
        }
        let mut reopened = false;
        loop {
            let (request, acked) = client.begin().await?;
            let (raw, ambiguous) = client
                .call_raw(
                    &self.id,
                    M::NAME,
                    payload.clone(),
                    request,
                    acked,
                    false,
                    self.timeout,
                )
                .await;
            client.end(
                request,
                raw.as_ref().map_or_else(|f| f.outcome_known(), |_| true),
            );
            match raw {
                // Refused as expired while no attempt can have taken effect: the session is
                // gone (idle), and the call was not applied. Send it anew in a new session.
                Err(CallFailure::Expired) if !reopened && !ambiguous => {
                    client.drop_session(request.session);
                    reopened = true;
                }
                other => return floe::wire::typed_outcome(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_wrong_setting() {
        let ca = floe_net::certs::CertificateAuthority::create("t").expect("ca");
        let me = ca.issue_client("app").expect("client");
        let tls = TlsMaterial::from_pem(
            ca.cert_pem().as_bytes(),
            me.cert_pem.as_bytes(),
            me.key_pem.as_bytes(),
        )
        .expect("material");
        let seed: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let ok = ClientConfig::new(vec![seed], tls.clone());
        assert!(ok.clone().validate().is_ok());
        let wrong = |c: ClientConfig| c.validate().expect_err("a setting is wrong").setting;
        assert_eq!(wrong(ClientConfig::new(vec![], tls)), "seeds");
        assert_eq!(
            wrong(ok.clone().attempt_timeout(Duration::ZERO)),
            "attempt_timeout"
        );
        assert_eq!(
            wrong(ok.clone().backoff_min(Duration::from_secs(2))),
            "backoff_max"
        );
        let transport = TransportConfig::default().keep_alive(Duration::from_secs(3600));
        assert_eq!(wrong(ok.transport(transport)), "keep_alive");
    }

    #[test]
    fn after_an_ambiguous_attempt_no_failure_is_definite() {
        let refused = CallFailure::BadRequest("refused: handshake".into());
        assert_eq!(settle(false, refused.clone()), refused);
        for f in [
            refused,
            CallFailure::Shutdown,
            CallFailure::Panicked("boom".into()),
            CallFailure::CallCycle(vec![]),
            CallFailure::ActivationFailed("no".into()),
        ] {
            let s = settle(true, f);
            assert!(!s.outcome_known(), "{s:?}");
        }
        assert_eq!(settle(true, CallFailure::Expired), CallFailure::Expired);
        let rejected = CallFailure::Rejected {
            error: vec![1],
            display: "insufficient".into(),
        };
        assert_eq!(settle(true, rejected.clone()), rejected);
    }
}

//! The Floe client: typed actor calls to a cluster over QUIC with mutual TLS.
//!
//! A [`Client`] is cheap to clone and shared by many concurrent calls (no lock is held across
//! an await). It starts from seed addresses, learns each actor's owner from the replies and goes
//! to it directly afterwards. Timeouts and unavailability are retried with the **same request
//! id** (so the call is applied at most once), with exponential backoff, inside one overall
//! deadline; the error says whether the outcome is known.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe::{Actor, ActorId, CallError, CallFailure, Handler, Message, NodeId, RequestId};
use floe_net::{RpcError, Target, TlsMaterial, Transport, TransportConfig};
use floe_proto::{Action, CallRequest, MemberInfo, NodeHint, Reply, Request};

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
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
    /// Transport settings (the listen address should stay an ephemeral port).
    pub transport: TransportConfig,
}

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
            transport: TransportConfig::default(),
        }
    }
}

/// Why a client could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No seed address was given.
    #[error("no seed addresses")]
    NoSeeds,
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
    client_id: u64,
    seq: AtomicU64,
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
            .field("client_id", &self.inner.client_id)
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
    /// [`ConnectError`]: no seeds, unusable TLS material, or no seed reachable.
    pub async fn connect(config: ClientConfig) -> Result<Self, ConnectError> {
        if config.seeds.is_empty() {
            return Err(ConnectError::NoSeeds);
        }
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
                client_id: rand::random(),
                seq: AtomicU64::new(1),
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
                .request(&t, Request::Members, self.inner.config.attempt_timeout)
                .await
            {
                Ok(Reply::Members(m)) => return Ok(m),
                Ok(other) => {
                    last = RpcError::Remote(floe_proto::WireError::new(
                        floe_proto::ErrorKind::Internal,
                        format!("unexpected reply {other:?}"),
                    ))
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The node this client believes owns `actor` (learned from replies).
    pub fn cached_owner(&self, actor: &ActorId) -> Option<NodeId> {
        lock(&self.inner.owners).get(actor).map(|h| h.node)
    }

    /// This client's id (the first half of its request ids).
    pub fn id(&self) -> u64 {
        self.inner.client_id
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
    async fn attempt(
        &self,
        actor: &ActorId,
        req: Request,
        timeout: Duration,
    ) -> Result<Reply, RpcError> {
        let t = &self.inner.transport;
        let Some(owner) = self.cached_target(actor) else {
            return t.request(&self.seed(), req, timeout).await;
        };
        let direct = t.request(&owner, req.clone(), timeout);
        tokio::pin!(direct);
        let hedge = self.inner.config.hedge_after.min(timeout);
        tokio::select! {
            r = &mut direct => return r,
            () = tokio::time::sleep(hedge) => {}
        }
        let seed = self.seed();
        let via_seed = t.request(&seed, req, timeout.saturating_sub(hedge));
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
        match owner.filter(|h| !h.addr.is_empty()) {
            Some(h) => {
                owners.insert(actor.clone(), h);
            }
            None => {
                owners.remove(actor);
            }
        }
    }

    /// Run one call with retries; returns the serialized reply.
    async fn call_raw(
        &self,
        actor: &ActorId,
        message: &'static str,
        payload: Vec<u8>,
        request: RequestId,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallFailure> {
        let cfg = &self.inner.config;
        let deadline = Instant::now() + timeout;
        let mut backoff = cfg.backoff_min;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(CallFailure::Timeout);
            }
            let req = Request::Call(CallRequest {
                actor: actor.clone(),
                message: message.to_string(),
                payload: payload.clone(),
                request,
                timeout_ms: remaining.as_millis().min(u32::MAX as u128) as u32,
                chain: Vec::new(),
                hops: 0,
            });
            let attempt = remaining.min(cfg.attempt_timeout);
            let retry = match self.attempt(actor, req, attempt).await {
                Ok(Reply::Call { payload, owner }) => {
                    self.learn(actor, Some(owner));
                    return Ok(payload);
                }
                Ok(other) => {
                    return Err(CallFailure::Unavailable(format!(
                        "unexpected reply {other:?}"
                    )));
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
                        self.learn(actor, None);
                        true
                    }
                    Action::GiveUp => return Err(floe::from_wire(e)),
                },
                // Our certificate or theirs is refused: retrying will not help.
                Err(RpcError::Refused(m)) => {
                    return Err(CallFailure::BadRequest(format!("refused: {m}")));
                }
                Err(RpcError::Shutdown) => return Err(CallFailure::Shutdown),
                // Unreachable, lost or timed out: the same request id keeps a retry safe.
                Err(e) => {
                    tracing::debug!(actor = %actor, error = %e, "call attempt failed; retrying");
                    self.learn(actor, None);
                    true
                }
            };
            if retry {
                let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(cfg.backoff_max);
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

    /// Use this request id (to retry a call made earlier, across client restarts).
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
        let payload = floe::encode_message(&msg)?;
        let request = self.request.unwrap_or_else(|| RequestId {
            client: self.client.inner.client_id,
            seq: self.client.inner.seq.fetch_add(1, Ordering::Relaxed),
        });
        let raw = self
            .client
            .call_raw(&self.id, M::NAME, payload, request, self.timeout)
            .await;
        floe::typed_outcome(raw)
    }
}

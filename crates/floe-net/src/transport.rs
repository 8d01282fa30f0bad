//! The QUIC endpoint and its client side: mutual TLS, a connection pool with reconnect and
//! backoff, request/response with one bidirectional stream per request and a deadline on every
//! request, and long-lived streams. The server side is in [`crate::server`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe_proto::{FrameError, Open, Rpc, WireError};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{AsyncUdpSocket, Connection, ConnectionError, Runtime, VarInt};
use tokio::sync::Semaphore;

use crate::config::TransportConfig;
use crate::error::{BindError, RpcError, lost};
use crate::frame::{Budget, FrameStream};
use crate::tls::{Role, TlsError, TlsMaterial, client_config, server_config};

/// QUIC application error codes used when closing.
pub mod codes {
    use quinn::VarInt;
    /// Graceful shutdown.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(0);
    /// The peer's certificate carries no valid role.
    pub const NO_ROLE: VarInt = VarInt::from_u32(1);
    /// The peer sent too many malformed frames.
    pub const PROTOCOL: VarInt = VarInt::from_u32(2);
    /// The peer negotiated no or another application protocol.
    pub const ALPN: VarInt = VarInt::from_u32(3);
    /// A stream was refused (role or malformed first frame).
    pub const STREAM_REFUSED: VarInt = VarInt::from_u32(4);
}

/// Who is on the other end of a connection (authenticated by its certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The role in its certificate.
    pub role: Role,
    /// Its UDP address.
    pub addr: SocketAddr,
}

/// Where to send a request: an address and the TLS name the server must prove.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// UDP address.
    pub addr: SocketAddr,
    /// Name the server certificate must carry.
    pub server_name: String,
}

impl Target {
    /// Node `id` at `addr`: the server must hold node `id`'s certificate.
    pub fn node(id: floe_proto::NodeId, addr: SocketAddr) -> Self {
        Self {
            addr,
            server_name: crate::certs::node_server_name(id),
        }
    }

    /// Any node of the cluster at `addr` (a seed whose id is not known yet).
    pub fn any_node(addr: SocketAddr) -> Self {
        Self {
            addr,
            server_name: crate::certs::ANY_NODE_NAME.to_string(),
        }
    }
}
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<RpcError>,
}

type PoolKey = (SocketAddr, String);

/// A pooled outgoing connection and the budget of the frames received on it.
#[derive(Debug, Clone)]
struct Pooled {
    conn: Connection,
    budget: Budget,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) config: TransportConfig,
    role: Role,
    conns: Mutex<HashMap<PoolKey, Pooled>>,
    /// [`TransportConfig::node_buffer_bytes`], shared by every connection's [`Budget`].
    node_budget: Arc<Semaphore>,
    slots: Mutex<HashMap<PoolKey, Arc<tokio::sync::Mutex<Backoff>>>>,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
}

/// A QUIC endpoint with mutual TLS; cheap to clone.
#[derive(Debug, Clone)]
pub struct Transport {
    pub(crate) inner: Arc<Inner>,
}

fn quic_transport(config: &TransportConfig) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let idle = VarInt::from_u64(config.idle_timeout.as_millis() as u64).unwrap_or(VarInt::MAX);
    t.max_idle_timeout(Some(idle.into()));
    t.keep_alive_interval(Some(config.keep_alive));
    t.max_concurrent_bidi_streams(VarInt::from_u32(config.max_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    // Without these quinn lets a peer queue 1.25 MB per stream with no connection-wide limit:
    // over a gigabyte per connection at 1,024 streams, before any frame budget applies.
    t.stream_receive_window(VarInt::from_u32(config.stream_receive_window));
    t.receive_window(VarInt::from_u32(config.conn_receive_window));
    Arc::new(t)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The protected maps stay consistent even if a holder panicked.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Transport {
    /// Bind a UDP socket on `config.listen` with tokio. Nodes accept connections; a client
    /// certificate gives a connect-only endpoint.
    pub fn bind(config: TransportConfig, tls: &TlsMaterial) -> Result<Self, BindError> {
        let runtime: Arc<dyn Runtime> = Arc::new(quinn::TokioRuntime);
        let bind_err = |source| BindError::Bind {
            addr: config.listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(config.listen).map_err(bind_err)?;
        let socket = runtime.wrap_udp_socket(socket).map_err(bind_err)?;
        Self::with_socket(config, tls, socket, runtime)
    }

    /// Build on an injected socket and runtime (a simulated network, for instance).
    pub fn with_socket(
        config: TransportConfig,
        tls: &TlsMaterial,
        socket: Arc<dyn AsyncUdpSocket>,
        runtime: Arc<dyn Runtime>,
    ) -> Result<Self, BindError> {
        let config = config.validate()?;
        let transport = quic_transport(&config);
        let server = if tls.role.is_node() {
            let crypto = QuicServerConfig::try_from(server_config(tls)?)
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            let mut s = quinn::ServerConfig::with_crypto(Arc::new(crypto));
            s.transport_config(transport.clone());
            Some(s)
        } else {
            None
        };
        let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::new(Arc::new(tls.reset_key())),
            server,
            socket,
            runtime,
        )
        .map_err(|source| BindError::Bind {
            addr: config.listen,
            source,
        })?;
        let crypto = QuicClientConfig::try_from(client_config(tls)?)
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(transport);
        endpoint.set_default_client_config(client);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let node_budget = Arc::new(Semaphore::new(config.node_buffer_bytes));
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                node_budget,
                config,
                role: tls.role.clone(),
                conns: Mutex::new(HashMap::new()),
                slots: Mutex::new(HashMap::new()),
                shutdown,
            }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// Our role.
    pub fn role(&self) -> &Role {
        &self.inner.role
    }

    /// The settings in force.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    fn is_shut_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    fn cached(&self, key: &PoolKey) -> Option<Pooled> {
        lock(&self.inner.conns)
            .get(key)
            .filter(|p| p.conn.close_reason().is_none())
            .cloned()
    }

    pub(crate) fn budget(&self) -> Budget {
        Budget::new(self.inner.config.conn_buffer_bytes, &self.inner.node_budget)
    }

    async fn connection(&self, target: &Target) -> Result<Pooled, RpcError> {
        if self.is_shut_down() {
            return Err(RpcError::Shutdown);
        }
        let key = (target.addr, target.server_name.clone());
        if let Some(c) = self.cached(&key) {
            return Ok(c);
        }
        let slot = lock(&self.inner.slots)
            .entry(key.clone())
            .or_default()
            .clone();
        // One connection attempt per peer at a time; others wait for its outcome.
        let mut st = slot.lock().await;
        if let Some(c) = self.cached(&key) {
            return Ok(c);
        }
        if let Some(at) = st.retry_at
            && Instant::now() < at
        {
            let last = st
                .last_error
                .clone()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Err(RpcError::Unreachable(format!("backing off ({last})")));
        }
        let res = self.connect(target).await.map(|conn| Pooled {
            conn,
            budget: self.budget(),
        });
        match &res {
            Ok(pooled) => {
                *st = Backoff::default();
                lock(&self.inner.conns).insert(key, pooled.clone());
            }
            Err(e) => {
                let cfg = &self.inner.config;
                let wait = cfg
                    .backoff_min
                    .saturating_mul(1u32 << st.failures.min(16))
                    .min(cfg.backoff_max);
                st.failures += 1;
                st.retry_at = Some(Instant::now() + wait);
                st.last_error = Some(e.clone());
                tracing::debug!(peer = %target.addr, error = %e, ?wait, "connect failed");
            }
        }
        res
    }

    async fn connect(&self, target: &Target) -> Result<Connection, RpcError> {
        let connecting = self
            .inner
            .endpoint
            .connect(target.addr, &target.server_name)
            .map_err(|e| RpcError::Unreachable(e.to_string()))?;
        let timeout = self.inner.config.connect_timeout;
        match tokio::time::timeout(timeout, connecting).await {
            Err(_) => Err(RpcError::Unreachable(format!(
                "handshake with {} timed out after {timeout:?}",
                target.addr
            ))),
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(classify_connect_error(e)),
        }
    }

    /// Open a stream to `target` and send `open` as its first frame.
    pub async fn open_stream(&self, target: &Target, open: &Open) -> Result<FrameStream, RpcError> {
        let Pooled { conn, budget } = self.connection(target).await?;
        let (send, recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => {
                self.forget(target, &conn);
                return Err(lost(e));
            }
        };
        let mut s = FrameStream {
            send,
            recv,
            max_frame: self.inner.config.max_frame,
            budget,
        };
        s.send_frame(open).await?;
        Ok(s)
    }

    fn forget(&self, target: &Target, conn: &Connection) {
        let key = (target.addr, target.server_name.clone());
        let mut conns = lock(&self.inner.conns);
        if conns
            .get(&key)
            .is_some_and(|p| p.conn.stable_id() == conn.stable_id())
        {
            conns.remove(&key);
        }
    }

    /// Send `req` to `target` on a new stream and wait for the answer, at most `timeout`.
    ///
    /// # Errors
    /// See [`RpcError`]: `Timeout` and `ConnectionLost` leave the outcome unknown.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the stream; the server may still execute the request.
    pub async fn request<R: Rpc>(
        &self,
        target: &Target,
        req: R,
        timeout: Duration,
    ) -> Result<R::Reply, RpcError> {
        let fut = async {
            let mut s = self.open_stream(target, &Open::Request(req.into())).await?;
            s.send.finish().map_err(lost)?;
            match s.recv_frame::<Result<R::Reply, WireError>>().await? {
                Some(Ok(reply)) => Ok(reply),
                Some(Err(e)) => Err(RpcError::Remote(e)),
                None => Err(FrameError::Truncated("no response").into()),
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Timeout(timeout)),
        }
    }

    /// Stop accepting, close every connection and wait (at most `grace`) for peers to be told.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.send_replace(true);
        self.inner.endpoint.close(codes::SHUTDOWN, b"shutdown");
        lock(&self.inner.conns).clear();
        let _ = tokio::time::timeout(grace, self.inner.endpoint.wait_idle()).await;
    }
}

fn classify_connect_error(e: ConnectionError) -> RpcError {
    match &e {
        ConnectionError::TransportError(t) if t.code.to_string().contains("crypto") => {
            RpcError::Refused(e.to_string())
        }
        ConnectionError::ConnectionClosed(c) if c.error_code.to_string().contains("crypto") => {
            RpcError::Refused(e.to_string())
        }
        ConnectionError::ApplicationClosed(_) => RpcError::Refused(e.to_string()),
        _ => RpcError::Unreachable(e.to_string()),
    }
}

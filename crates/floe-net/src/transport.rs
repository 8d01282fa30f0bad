//! The QUIC endpoint: mutual TLS, a connection pool with reconnect and backoff, request/response
//! with one bidirectional stream per request and a deadline on every request, long-lived
//! streams, and the server loop that hands requests to a [`Service`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe_proto::codec::{LEN_BYTES, check_len, decode_body, encode_frame};
#[cfg(feature = "raft")]
use floe_proto::raft::{
    AppendEntriesRequest, SnapshotHeader, SnapshotResponse, StreamAppendResult,
};
use floe_proto::{Answer, ErrorKind, FrameError, Open, Request, Rpc, WireError};
#[cfg(feature = "raft")]
use futures::stream::BoxStream;
#[cfg(feature = "raft")]
use futures::{StreamExt, stream};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{AsyncUdpSocket, Connection, ConnectionError, Runtime, VarInt};
use serde::{Serialize, de::DeserializeOwned};
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{ConfigError, TransportConfig};
use crate::tls::{Role, TlsError, TlsMaterial, client_config, role_of, server_config};

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

/// Why a request did not produce an answer from the peer's service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No connection could be made (or we are backing off after failures). The request was not
    /// sent: try another peer or later.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer refused the TLS handshake or our certificate, or we refused its certificate.
    /// Retrying will not help until the certificates are fixed.
    #[error("refused: {0}")]
    Refused(String),
    /// The deadline passed. The request may or may not have been executed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke during the request. The request may or may not have been executed.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The peer sent something that is not a valid frame. Outcome unknown.
    #[error("protocol error: {0}")]
    Protocol(#[from] FrameError),
    /// The peer's service answered with an error.
    #[error("remote error: {0}")]
    Remote(WireError),
    /// This transport is shut down.
    #[error("transport is shut down")]
    Shutdown,
}

/// Why a transport could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound (address in use, permission).
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A peer announced a snapshot larger than [`TransportConfig::max_snapshot_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot of {size} bytes exceeds the maximum of {max}")]
pub struct SnapshotTooLarge {
    /// The announced size.
    pub size: u64,
    /// The limit in force.
    pub max: u64,
}

/// Refuse an announced snapshot size above `max`.
pub fn check_snapshot_size(size: u64, max: u64) -> Result<(), SnapshotTooLarge> {
    if size > max {
        return Err(SnapshotTooLarge { size, max });
    }
    Ok(())
}

/// The body of an incoming snapshot: exactly `size` bytes of the stream.
#[derive(Debug)]
#[cfg_attr(not(feature = "raft"), allow(dead_code))]
pub struct SnapshotBody {
    recv: quinn::RecvStream,
    remaining: u64,
}

impl SnapshotBody {
    /// Copy the body into `out`; fails if the stream ends early or the peer stalls past the
    /// transfer deadline (enforced by the caller's timeout).
    pub async fn copy_to<W: tokio::io::AsyncWrite + Unpin>(
        mut self,
        out: &mut W,
    ) -> std::io::Result<u64> {
        let total = self.remaining;
        let mut buf = vec![0u8; 256 << 10];
        while self.remaining > 0 {
            let want = buf.len().min(self.remaining as usize);
            match self.recv.read(&mut buf[..want]).await {
                Ok(Some(n)) => {
                    out.write_all(&buf[..n]).await?;
                    self.remaining -= n as u64;
                }
                Ok(None) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("snapshot ended {} bytes early", self.remaining),
                    ));
                }
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        out.flush().await?;
        Ok(total)
    }
}

/// What a node serves: the node's network service implements it (Raft requests, calls,
/// membership and status).
pub trait Service: Send + Sync + 'static {
    /// Answer one request, with the [`Answer`] its request type builds ([`Rpc::answer`]). The
    /// transport enforces the request deadline around it and has already refused requests the
    /// peer's role may not send.
    fn handle(&self, peer: Peer, req: Request) -> impl Future<Output = Answer> + Send;

    /// Serve a pipelined Raft append stream from a node.
    #[cfg(feature = "raft")]
    fn append_stream(
        &self,
        peer: Peer,
        input: BoxStream<'static, AppendEntriesRequest>,
    ) -> BoxStream<'static, Result<StreamAppendResult, WireError>> {
        let _ = (peer, input);
        stream::once(async {
            Err(WireError::new(
                ErrorKind::BadRequest,
                "append streams are not served here",
            ))
        })
        .boxed()
    }

    /// Receive a full snapshot from a node.
    #[cfg(feature = "raft")]
    fn install_snapshot(
        &self,
        peer: Peer,
        header: SnapshotHeader,
        body: SnapshotBody,
    ) -> impl Future<Output = Result<SnapshotResponse, WireError>> + Send {
        let _ = (peer, header, body);
        async {
            Err(WireError::new(
                ErrorKind::BadRequest,
                "snapshots are not served here",
            ))
        }
    }
}

/// Bytes of frame bodies being received, per connection and per endpoint: a frame reserves its
/// announced length from both before its body is read, and releases it once decoded.
///
/// Reserving the whole frame at once (rather than as its bytes arrive) means a frame that holds
/// a reservation can always complete, so frames never deadlock waiting on each other's partial
/// reservations; the body buffer itself still grows only with the bytes that arrived.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    conn: Arc<Semaphore>,
    node: Arc<Semaphore>,
}

impl Budget {
    fn new(conn_bytes: usize, node: &Arc<Semaphore>) -> Self {
        Self {
            conn: Arc::new(Semaphore::new(conn_bytes)),
            node: node.clone(),
        }
    }

    /// Reserve `bytes` (at most `max_frame`, which config validation keeps within both budgets),
    /// waiting until enough is released. Connection first, then endpoint, always in that order.
    async fn reserve(&self, bytes: usize) -> Result<[OwnedSemaphorePermit; 2], RpcError> {
        let n = u32::try_from(bytes).map_err(|_| FrameError::TooLarge {
            len: bytes,
            max: u32::MAX as usize,
        })?;
        let conn = self.conn.clone().acquire_many_owned(n).await;
        let node = self.node.clone().acquire_many_owned(n).await;
        // The semaphores are never closed.
        match (conn, node) {
            (Ok(c), Ok(n)) => Ok([c, n]),
            _ => Err(RpcError::Shutdown),
        }
    }
}

/// A bidirectional stream carrying frames.
#[derive(Debug)]
pub struct FrameStream {
    /// Sending half.
    pub send: quinn::SendStream,
    /// Receiving half.
    pub recv: quinn::RecvStream,
    max_frame: usize,
    budget: Budget,
}

impl FrameStream {
    /// Send one frame.
    pub async fn send_frame<T: Serialize>(&mut self, msg: &T) -> Result<(), RpcError> {
        write_frame(&mut self.send, msg, self.max_frame).await
    }

    /// Receive one frame; `None` if the peer finished the stream at a frame boundary.
    pub async fn recv_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, RpcError> {
        read_frame(&mut self.recv, self.max_frame, &self.budget).await
    }

    /// Send an answer as one frame; one beyond the frame limit is replaced by a `TooLarge`
    /// error, so the caller learns that nothing it can use came back.
    async fn send_answer(&mut self, answer: &Answer) -> Result<(), RpcError> {
        let too_large;
        let mut body = answer.body();
        if body.len() > self.max_frame {
            too_large = Answer::error(WireError::new(
                ErrorKind::TooLarge,
                format!(
                    "the answer of {} bytes exceeds the frame limit of {}",
                    body.len(),
                    self.max_frame
                ),
            ));
            body = too_large.body();
        }
        let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
            len: body.len(),
            max: self.max_frame,
        })?;
        self.send
            .write_all(&len.to_be_bytes())
            .await
            .map_err(lost)?;
        self.send.write_all(body).await.map_err(lost)
    }

    /// Split into halves.
    pub fn split(self) -> (FrameSender, FrameReceiver) {
        (
            FrameSender {
                send: self.send,
                max_frame: self.max_frame,
            },
            FrameReceiver {
                recv: self.recv,
                max_frame: self.max_frame,
                budget: self.budget,
            },
        )
    }
}

/// Sending half of a [`FrameStream`].
#[derive(Debug)]
pub struct FrameSender {
    /// The QUIC stream.
    pub send: quinn::SendStream,
    max_frame: usize,
}

impl FrameSender {
    /// Send one frame.
    pub async fn send_frame<T: Serialize>(&mut self, msg: &T) -> Result<(), RpcError> {
        write_frame(&mut self.send, msg, self.max_frame).await
    }
}

/// Receiving half of a [`FrameStream`].
#[derive(Debug)]
pub struct FrameReceiver {
    /// The QUIC stream.
    pub recv: quinn::RecvStream,
    max_frame: usize,
    budget: Budget,
}

impl FrameReceiver {
    /// Receive one frame; `None` at a clean end of stream.
    pub async fn recv_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, RpcError> {
        read_frame(&mut self.recv, self.max_frame, &self.budget).await
    }
}

fn lost(e: impl std::fmt::Display) -> RpcError {
    RpcError::ConnectionLost(e.to_string())
}

/// Write one frame.
pub async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
    max: usize,
) -> Result<(), RpcError> {
    let frame = encode_frame(msg, max)?;
    send.write_all(&frame).await.map_err(lost)
}

/// Read one frame: check its announced length against `max`, reserve it from `budget`, then read
/// the body as it arrives. `None` if the stream ended cleanly before a new frame.
async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
    budget: &Budget,
) -> Result<Option<T>, RpcError> {
    let mut prefix = [0u8; LEN_BYTES];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(_)) => {
            return Err(FrameError::Truncated("length prefix").into());
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(lost(e)),
    }
    let len = check_len(prefix, max)?;
    let _reserved = budget.reserve(len).await?;
    let body = read_body(recv, len).await?;
    Ok(Some(decode_body(&body)?))
}

/// First allocation for a frame body; larger bodies grow as their bytes arrive.
const FIRST_BODY_ALLOC: usize = 64 << 10;

/// Read exactly `len` bytes. The buffer doubles as data arrives, never beyond `len`, so a peer
/// that announces a large frame and sends little of it costs little memory.
async fn read_body(recv: &mut quinn::RecvStream, len: usize) -> Result<Vec<u8>, RpcError> {
    let mut body = Vec::with_capacity(len.min(FIRST_BODY_ALLOC));
    while body.len() < len {
        match recv.read_chunk(len - body.len(), true).await {
            Ok(Some(chunk)) => {
                let need = body.len() + chunk.bytes.len();
                if need > body.capacity() {
                    let grown = (body.capacity() * 2).clamp(need, len);
                    body.reserve_exact(grown - body.len());
                }
                body.extend_from_slice(&chunk.bytes);
            }
            Ok(None) => return Err(FrameError::Truncated("body").into()),
            Err(e) => return Err(lost(e)),
        }
    }
    Ok(body)
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
struct Inner {
    endpoint: quinn::Endpoint,
    config: TransportConfig,
    role: Role,
    conns: Mutex<HashMap<PoolKey, Pooled>>,
    /// [`TransportConfig::node_buffer_bytes`], shared by every connection's [`Budget`].
    node_budget: Arc<Semaphore>,
    slots: Mutex<HashMap<PoolKey, Arc<tokio::sync::Mutex<Backoff>>>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// A QUIC endpoint with mutual TLS; cheap to clone.
#[derive(Debug, Clone)]
pub struct Transport {
    inner: Arc<Inner>,
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
        config.validate()?;
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

    fn budget(&self) -> Budget {
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

    /// Accept connections and hand their streams to `service`, until [`Transport::shutdown`].
    pub fn serve<S: Service>(&self, service: Arc<S>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut shutdown = this.inner.shutdown.subscribe();
            loop {
                let incoming = tokio::select! {
                    i = this.inner.endpoint.accept() => i,
                    _ = shutdown.wait_for(|s| *s) => None,
                };
                let Some(incoming) = incoming else { break };
                let this = this.clone();
                let service = service.clone();
                tokio::spawn(async move { this.serve_connection(incoming, service).await });
            }
        })
    }

    async fn serve_connection<S: Service>(&self, incoming: quinn::Incoming, service: Arc<S>) {
        let remote = incoming.remote_address();
        let conn = match tokio::time::timeout(self.inner.config.connect_timeout, incoming).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(peer = %remote, error = %e, "refused connection");
                return;
            }
            Err(_) => {
                tracing::warn!(peer = %remote, "handshake timed out");
                return;
            }
        };
        let alpn = conn
            .handshake_data()
            .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|h| h.protocol);
        if alpn.as_deref() != Some(floe_proto::ALPN) {
            tracing::warn!(peer = %remote, "refused connection: wrong ALPN");
            conn.close(codes::ALPN, b"ALPN floe/1 required");
            return;
        }
        let role = conn
            .peer_identity()
            .and_then(|id| {
                id.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .and_then(|chain| chain.first().and_then(role_of));
        let Some(role) = role else {
            tracing::warn!(peer = %remote, "refused connection: certificate has no floe role");
            conn.close(codes::NO_ROLE, b"certificate has no floe:// role");
            return;
        };
        let peer = Peer { role, addr: remote };
        tracing::debug!(peer = %peer.role, addr = %remote, "accepted connection");
        let errors = Arc::new(AtomicU32::new(0));
        let budget = self.budget();
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            let stream = tokio::select! {
                s = conn.accept_bi() => s,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let (send, recv) = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(peer = %peer.role, error = %e, "connection ended");
                    break;
                }
            };
            let this = self.clone();
            let service = service.clone();
            let peer = peer.clone();
            let errors = errors.clone();
            let conn = conn.clone();
            let budget = budget.clone();
            tokio::spawn(async move {
                let s = FrameStream {
                    send,
                    recv,
                    max_frame: this.inner.config.max_frame,
                    budget,
                };
                if let Err(e) = this.serve_stream(s, &peer, &*service).await {
                    tracing::debug!(peer = %peer.role, error = %e, "stream failed");
                    if matches!(e, RpcError::Protocol(_))
                        && errors.fetch_add(1, Ordering::Relaxed) + 1
                            >= this.inner.config.max_protocol_errors
                    {
                        tracing::warn!(peer = %peer.role, "closing connection: malformed frames");
                        conn.close(codes::PROTOCOL, b"too many malformed frames");
                    }
                }
            });
        }
    }

    async fn serve_stream<S: Service>(
        &self,
        mut s: FrameStream,
        peer: &Peer,
        service: &S,
    ) -> Result<(), RpcError> {
        let cfg = &self.inner.config;
        let first = tokio::time::timeout(cfg.request_timeout, s.recv_frame::<Open>()).await;
        let open = match first {
            Err(_) => {
                let _ = s.recv.stop(codes::STREAM_REFUSED);
                return Err(RpcError::Timeout(cfg.request_timeout));
            }
            Ok(Err(e)) => {
                // Tell the peer why, then close both directions.
                let reply = Answer::error(WireError::new(ErrorKind::BadRequest, e.to_string()));
                let _ = s.send_answer(&reply).await;
                let _ = s.send.finish();
                let _ = s.recv.stop(codes::STREAM_REFUSED);
                return Err(e);
            }
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(open))) => open,
        };
        // Without this crate's `raft` feature, the wire crate may still have its Raft streams
        // (another crate enabled them): they are node-only, and refused below.
        #[allow(unreachable_patterns)]
        let access = match &open {
            Open::Request(r) => r.access(),
            _ => floe_proto::Access::Node,
        };
        if !peer.role.allows(access) {
            tracing::warn!(peer = %peer.role, ?access, "refused a request the peer's role does not allow");
            let reply = Answer::error(WireError::new(
                ErrorKind::Forbidden,
                format!("a {} certificate may not send this request", peer.role),
            ));
            s.send_answer(&reply).await?;
            let _ = s.send.finish();
            let _ = s.recv.stop(codes::STREAM_REFUSED);
            return Ok(());
        }
        match open {
            Open::Request(req) => {
                let reply = match tokio::time::timeout(
                    cfg.request_timeout,
                    service.handle(peer.clone(), req),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => {
                        Answer::error(WireError::new(ErrorKind::Timeout, "server deadline passed"))
                    }
                };
                s.send_answer(&reply).await?;
                let _ = s.send.finish();
                Ok(())
            }
            #[cfg(feature = "raft")]
            Open::AppendStream => self.serve_append_stream(s, peer, service).await,
            #[cfg(not(feature = "raft"))]
            #[allow(unreachable_patterns)]
            _ => {
                let reply = Answer::error(WireError::new(
                    ErrorKind::BadRequest,
                    "Raft streams are not served here",
                ));
                s.send_answer(&reply).await?;
                let _ = s.send.finish();
                let _ = s.recv.stop(codes::STREAM_REFUSED);
                Ok(())
            }
            #[cfg(feature = "raft")]
            Open::Snapshot(header) => {
                let size = header.size;
                if let Err(e) = check_snapshot_size(size, cfg.max_snapshot_bytes) {
                    tracing::warn!(peer = %peer.role, error = %e, "refused a snapshot");
                    let reply: Result<SnapshotResponse, WireError> =
                        Err(WireError::new(ErrorKind::BadRequest, e.to_string()));
                    s.send_frame(&reply).await?;
                    let _ = s.send.finish();
                    let _ = s.recv.stop(codes::STREAM_REFUSED);
                    return Ok(());
                }
                let FrameStream {
                    mut send,
                    recv,
                    max_frame,
                    budget: _,
                } = s;
                let body = SnapshotBody {
                    recv,
                    remaining: size,
                };
                let fut = service.install_snapshot(peer.clone(), header, body);
                let reply = match tokio::time::timeout(cfg.snapshot_timeout, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(WireError::new(
                        ErrorKind::Timeout,
                        "snapshot deadline passed",
                    )),
                };
                write_frame(&mut send, &reply, max_frame).await?;
                let _ = send.finish();
                Ok(())
            }
        }
    }

    #[cfg(feature = "raft")]
    async fn serve_append_stream<S: Service>(
        &self,
        s: FrameStream,
        peer: &Peer,
        service: &S,
    ) -> Result<(), RpcError> {
        let (mut tx, rx) = s.split();
        let (err_tx, mut err_rx) = tokio::sync::mpsc::channel::<RpcError>(1);
        let input = stream::unfold((rx, err_tx), |(mut rx, err_tx)| async move {
            match rx.recv_frame::<AppendEntriesRequest>().await {
                Ok(Some(req)) => Some((req, (rx, err_tx))),
                Ok(None) => None,
                Err(e) => {
                    let _ = err_tx.try_send(e);
                    None
                }
            }
        })
        .boxed();
        let mut output = service.append_stream(peer.clone(), input);
        while let Some(item) = output.next().await {
            tx.send_frame(&item).await?;
        }
        let _ = tx.send.finish();
        match err_rx.try_recv() {
            Ok(e) => Err(e),
            Err(_) => Ok(()),
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

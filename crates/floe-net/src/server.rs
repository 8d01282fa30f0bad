//! The server side of an endpoint: the [`Service`] a node implements, and the loops that accept
//! connections and streams, check the peer's role, and hand each stream to the service under
//! its deadline.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[cfg(feature = "raft")]
use floe_proto::raft::{
    AppendEntriesRequest, SnapshotHeader, SnapshotResponse, StreamAppendResult,
};
use floe_proto::{Answer, ErrorKind, Open, Request, WireError};
#[cfg(feature = "raft")]
use futures::stream::BoxStream;
#[cfg(feature = "raft")]
use futures::{StreamExt, stream};
use tokio::io::AsyncWriteExt;

use crate::error::RpcError;
use crate::frame::FrameStream;
#[cfg(feature = "raft")]
use crate::frame::write_frame;
use crate::tls::role_of;
use crate::transport::{Peer, Transport, codes};

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

/// Time an answer may take beyond the caller's own deadline to travel back.
const ANSWER_GRACE: Duration = Duration::from_millis(500);

/// How long the server gives a request: its own deadline when it carries one (a call, which the
/// service bounds itself), else the transport's `request_timeout`; never less than the latter.
fn request_limit(req: &Request, request_timeout: Duration) -> Duration {
    req.timeout()
        .map_or(request_timeout, |t| request_timeout.max(t + ANSWER_GRACE))
}

impl Transport {
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
                let limit = request_limit(&req, cfg.request_timeout);
                let reply = match tokio::time::timeout(limit, service.handle(peer.clone(), req))
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
}

#[cfg(test)]
mod tests {
    use floe_proto::{ActorId, CallRequest, RequestId, Status};

    use super::*;

    fn call(timeout_ms: u32) -> Request {
        CallRequest {
            actor: ActorId::new("T", "k"),
            message: "M".into(),
            payload: vec![],
            request: RequestId::new(1, 1),
            timeout_ms,
            chain: vec![],
            hops: 0,
            acked: 0,
            retry: false,
        }
        .into()
    }

    #[test]
    fn a_call_gets_its_own_deadline_and_other_requests_the_default() {
        let d = Duration::from_secs(5);
        assert_eq!(
            request_limit(&call(30_000), d),
            Duration::from_millis(30_500)
        );
        assert_eq!(request_limit(&call(100), d), d);
        assert_eq!(request_limit(&Status.into(), d), d);
    }
}

//! openraft over floe-net: the client side (`RaftNetworkV2` and its factory) and the server side
//! ([`RaftService`], which hands Raft's own RPCs to the local Raft). Proposals and read points
//! forwarded to the leader are another protocol, served and called by the node.
//!
//! AppendEntries and votes travel as one request per stream; `stream_append` pipelines appends
//! on one long-lived stream; a full snapshot is streamed on a stream of its own, straight from
//! the sender's snapshot file into a file on the receiver.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use floe_proto::raft::{
    AppendEntriesRequest, AppendEntriesResponse, PreVote, RaftRequest, SnapshotHeader,
    SnapshotResponse, StreamAppendResult, VoteRequest, VoteResponse,
};
use floe_proto::{AdminRequest, Answer, ErrorKind, Open, Request, Rpc, WireError};
use futures::stream::BoxStream as FBoxStream;
use futures::{Stream, StreamExt, stream};
use openraft::RaftNetworkV2;
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory};
use raft_store::types::{NodeId, NodeInfo, Raft, Snapshot, TypeConfig, Vote};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::RpcError;
use crate::server::{Service, SnapshotBody};
use crate::transport::{Peer, Target, Transport};

type RpcErr = RPCError<TypeConfig>;

/// Longest wait for the next reply on an append stream while appends are outstanding.
const STREAM_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Most entry payload bytes sent in one AppendEntries frame: half the frame limit, so that the
/// estimate of [`entry_bytes`] has room to spare. openraft sizes its requests by entry count;
/// larger ones are split here.
pub const APPEND_CHUNK_BYTES: usize = floe_proto::codec::DEFAULT_MAX_FRAME / 2;

/// Largest payload one Raft entry may carry (what a node proposes in one entry must stay below
/// it): such an entry alone always fits in an AppendEntries frame.
pub const MAX_ENTRY_BYTES: usize = APPEND_CHUNK_BYTES - (64 << 10);

/// An upper estimate of the encoded size of `entry`.
fn entry_bytes(entry: &raft_store::types::Entry) -> usize {
    use raft_store::types::EntryPayload;
    64 + match &entry.payload {
        EntryPayload::Blank => 0,
        EntryPayload::Normal(cmd) => cmd.payload_bytes(),
        // A membership config lists every node with its address.
        EntryPayload::Membership(m) => 256 * (m.nodes().count() + 1),
    }
}

/// Split `req` into consecutive requests of at most [`APPEND_CHUNK_BYTES`] of entries each (at
/// least one entry each): any entry that was accepted into the log can then be replicated,
/// whatever openraft put in one request. Each part is a valid AppendEntries on its own: it
/// starts where the previous part ended, and a follower commits at most what it has.
fn split_append(mut req: AppendEntriesRequest) -> Vec<AppendEntriesRequest> {
    let total: usize = req.entries.iter().map(entry_bytes).sum();
    if total <= APPEND_CHUNK_BYTES {
        return vec![req];
    }
    let entries = std::mem::take(&mut req.entries);
    let mut parts = Vec::new();
    let mut prev = req.prev_log_id;
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let b = entry_bytes(&e);
        if !chunk.is_empty() && bytes + b > APPEND_CHUNK_BYTES {
            let last = chunk.last().map(|e: &raft_store::types::Entry| e.log_id);
            parts.push(AppendEntriesRequest {
                vote: req.vote,
                prev_log_id: prev,
                entries: std::mem::take(&mut chunk),
                leader_commit: req.leader_commit,
            });
            prev = last;
            bytes = 0;
        }
        bytes += b;
        chunk.push(e);
    }
    parts.push(AppendEntriesRequest {
        vote: req.vote,
        prev_log_id: prev,
        entries: chunk,
        leader_commit: req.leader_commit,
    });
    parts
}

/// Creates [`RaftPeer`]s for openraft; one per node of this process.
#[derive(Debug, Clone)]
pub struct QuicRaftNetwork {
    transport: Transport,
    me: NodeId,
}

impl QuicRaftNetwork {
    /// The network of node `me` over `transport`.
    pub fn new(me: NodeId, transport: Transport) -> Self {
        Self { transport, me }
    }
}

impl RaftNetworkFactory<TypeConfig> for QuicRaftNetwork {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> RaftPeer {
        // Connections are made lazily, on the first RPC.
        RaftPeer {
            transport: self.transport.clone(),
            me: self.me,
            target,
            addr: node.addr.clone(),
        }
    }
}

/// The connection of one node to one Raft peer.
#[derive(Debug)]
pub struct RaftPeer {
    transport: Transport,
    me: NodeId,
    target: NodeId,
    addr: String,
}

async fn resolve(addr: &str) -> Result<SocketAddr, RpcError> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| RpcError::Unreachable(format!("resolving {addr}: {e}")))?
        .next()
        .ok_or_else(|| RpcError::Unreachable(format!("{addr} resolves to nothing")))
}

impl RaftPeer {
    async fn target(&self) -> Result<Target, RpcError> {
        Ok(Target::node(self.target, resolve(&self.addr).await?))
    }

    fn rpc_error(&self, e: RpcError, action: RPCTypes, timeout: Duration) -> RpcErr {
        match e {
            RpcError::Timeout(_) => RPCError::Timeout(Timeout {
                action,
                id: self.me,
                target: self.target,
                timeout,
            }),
            RpcError::Unreachable(_) | RpcError::Refused(_) | RpcError::Shutdown => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            RpcError::ConnectionLost(_) | RpcError::Protocol(_) | RpcError::Remote(_) => {
                RPCError::Network(NetworkError::new(&e))
            }
        }
    }

    async fn call<R: Rpc>(
        &self,
        req: R,
        action: RPCTypes,
        ttl: Duration,
    ) -> Result<R::Reply, RpcErr> {
        let target = self
            .target()
            .await
            .map_err(|e| self.rpc_error(e, action, ttl))?;
        self.transport
            .request(&target, req, ttl)
            .await
            .map_err(|e| self.rpc_error(e, action, ttl))
    }

    async fn send_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
    ) -> Result<SnapshotResponse, RpcError> {
        let io = |e: std::io::Error| RpcError::Unreachable(format!("reading snapshot: {e}"));
        let mut file = snapshot.snapshot;
        let size = file.metadata().await.map_err(io)?.len();
        file.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
        let header = SnapshotHeader {
            vote,
            meta: snapshot.meta,
            size,
        };
        let target = self.target().await?;
        let mut s = self
            .transport
            .open_stream(&target, &Open::Snapshot(header))
            .await?;
        let sent = tokio::io::copy(&mut (&mut file).take(size), &mut s.send)
            .await
            .map_err(|e| RpcError::ConnectionLost(e.to_string()))?;
        if sent != size {
            return Err(RpcError::Unreachable(format!(
                "snapshot file shrank: sent {sent} of {size} bytes"
            )));
        }
        s.send
            .finish()
            .map_err(|e| RpcError::ConnectionLost(e.to_string()))?;
        match s
            .recv_frame::<Result<SnapshotResponse, WireError>>()
            .await?
        {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(RpcError::Remote(e)),
            None => Err(floe_proto::FrameError::Truncated("no snapshot response").into()),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for RaftPeer {
    type SnapshotData = tokio::fs::File;

    /// After an unreachable peer, wait 20 ms, doubling up to 500 ms, instead of spinning.
    fn backoff(&self) -> Option<openraft::network::Backoff> {
        let steps = std::iter::successors(Some(Duration::from_millis(20)), |d| {
            Some((*d * 2).min(Duration::from_millis(500)))
        });
        Some(openraft::network::Backoff::new(steps))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcErr> {
        // Too large for one frame: send the first part; the follower's success then covers only
        // that part, which openraft is told as a partial success.
        let mut parts = split_append(rpc);
        let whole = parts.len() == 1;
        let part = parts.swap_remove(0);
        let last = part.entries.last().map(|e| e.log_id).or(part.prev_log_id);
        match self
            .call(part, RPCTypes::AppendEntries, option.soft_ttl())
            .await?
        {
            AppendEntriesResponse::Success if !whole => {
                Ok(AppendEntriesResponse::PartialSuccess(last))
            }
            r => Ok(r),
        }
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult, RpcErr>>, RpcErr>>
    where
        S: Stream<Item = AppendEntriesRequest> + Send + Unpin + 'static,
    {
        Box::pin(async move {
            let ttl = option.soft_ttl();
            let action = RPCTypes::AppendEntries;
            // Take the first request before connecting: openraft applies its backoff while it
            // produces requests, so a peer that is down is retried at the backoff's pace instead
            // of in a tight loop.
            let mut input = input;
            let Some(first) = input.next().await else {
                let empty: BoxStream<'s, Result<StreamAppendResult, RpcErr>> =
                    Box::pin(stream::empty());
                return Ok(empty);
            };
            let target = self
                .target()
                .await
                .map_err(|e| self.rpc_error(e, action, ttl))?;
            let opened = tokio::time::timeout(
                ttl,
                self.transport.open_stream(&target, &Open::AppendStream),
            )
            .await
            .map_err(|_| RpcError::Timeout(ttl))
            .and_then(|r| r)
            .map_err(|e| self.rpc_error(e, action, ttl))?;
            let (mut tx, mut rx) = opened.split();
            let sent = Arc::new(AtomicU64::new(0));
            let received = Arc::new(AtomicU64::new(0));
            {
                let sent = sent.clone();
                tokio::spawn(async move {
                    let mut input = stream::iter(Some(first)).chain(input);
                    while let Some(req) = input.next().await {
                        // Each part is answered with the log id it matched: openraft takes
                        // every answer as progress, so the parts need no regrouping.
                        for part in split_append(req) {
                            sent.fetch_add(1, Ordering::SeqCst);
                            if tx.send_frame(&part).await.is_err() {
                                return;
                            }
                        }
                    }
                    let _ = tx.send.finish();
                });
            }
            // Reads run in their own task (quinn reads are not cancel safe); the stream below
            // waits on the channel and reports a timeout only while replies are outstanding.
            let (item_tx, item_rx) = tokio::sync::mpsc::channel::<
                Result<Option<Result<StreamAppendResult, WireError>>, RpcError>,
            >(64);
            tokio::spawn(async move {
                loop {
                    let item = rx.recv_frame().await;
                    let end = !matches!(item, Ok(Some(Ok(_))));
                    if item_tx.send(item).await.is_err() || end {
                        return;
                    }
                }
            });
            // A reply to a pipelined append waits for the follower's fsync: under load that is
            // far beyond the RPC's soft TTL, which is sized for heartbeats. Restarting the stream
            // on every slow fsync would only add work; a dead peer is still noticed here within
            // `STREAM_REPLY_TIMEOUT` and by the heartbeats.
            let reply_timeout = ttl.max(STREAM_REPLY_TIMEOUT);
            let me = (self.me, self.target);
            let peer_err = move |e: RpcError| match e {
                RpcError::Timeout(_) => RPCError::Timeout(Timeout {
                    action,
                    id: me.0,
                    target: me.1,
                    timeout: ttl,
                }),
                other => RPCError::Network(NetworkError::new(&other)),
            };
            let out = stream::unfold(Some(item_rx), move |state| {
                let sent = sent.clone();
                let received = received.clone();
                async move {
                    let mut rx = state?;
                    loop {
                        match tokio::time::timeout(reply_timeout, rx.recv()).await {
                            Ok(Some(Ok(Some(Ok(r))))) => {
                                received.fetch_add(1, Ordering::SeqCst);
                                return Some((Ok(r), Some(rx)));
                            }
                            Ok(Some(Ok(Some(Err(e))))) => {
                                return Some((Err(peer_err(RpcError::Remote(e))), None));
                            }
                            Ok(Some(Err(e))) => return Some((Err(peer_err(e)), None)),
                            Ok(Some(Ok(None))) | Ok(None) => return None,
                            Err(_) => {
                                if sent.load(Ordering::SeqCst) > received.load(Ordering::SeqCst) {
                                    let e = RpcError::Timeout(reply_timeout);
                                    return Some((Err(peer_err(e)), None));
                                }
                            }
                        }
                    }
                }
            });
            let out: BoxStream<'s, Result<StreamAppendResult, RpcErr>> = Box::pin(out);
            Ok(out)
        })
    }

    async fn vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RpcErr> {
        self.call(rpc, RPCTypes::Vote, option.soft_ttl()).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcErr> {
        self.call(PreVote(rpc), RPCTypes::Vote, option.soft_ttl())
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig>> {
        let limit = self.transport.config().snapshot_timeout;
        let action = RPCTypes::InstallSnapshot;
        tokio::select! {
            r = tokio::time::timeout(limit, self.send_snapshot(vote, snapshot)) => {
                let r = r.map_err(|_| RpcError::Timeout(limit)).and_then(|r| r);
                r.map_err(|e| match self.rpc_error(e, action, limit) {
                    RPCError::Timeout(t) => StreamingError::Timeout(t),
                    RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                    RPCError::Network(n) => StreamingError::Network(n),
                    RPCError::RemoteError(r) => StreamingError::Network(NetworkError::new(&r)),
                })
            }
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}

/// Serves Raft's RPCs, append streams and snapshots to the local Raft.
pub struct RaftService {
    raft: Raft,
    incoming: PathBuf,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService").finish_non_exhaustive()
    }
}

fn internal(e: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorKind::Internal, e.to_string())
}

/// Prefix and suffix of the files snapshots are received into.
const INCOMING_PREFIX: &str = "incoming-";
const INCOMING_SUFFIX: &str = ".snap";

/// Removes a snapshot file being received however the reception ends: installed (the state
/// machine keeps its own copy), failed, or dropped at the transfer deadline.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl RaftService {
    /// Serve `raft`; incoming snapshots are received into files in `incoming` (created). Files
    /// left there by a process that died while receiving are deleted.
    pub fn new(raft: Raft, incoming: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&incoming)?;
        for entry in std::fs::read_dir(&incoming)? {
            let entry = entry?;
            let name = entry.file_name();
            let ours = name
                .to_str()
                .is_some_and(|n| n.starts_with(INCOMING_PREFIX) && n.ends_with(INCOMING_SUFFIX));
            if ours {
                match std::fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => tracing::info!(file = ?name, "deleted a partly received snapshot"),
                }
            }
        }
        Ok(Self { raft, incoming })
    }

    /// Answer one of Raft's RPCs.
    pub async fn serve(&self, req: RaftRequest) -> Answer {
        match req {
            RaftRequest::AppendEntries(r) => Answer::of::<AppendEntriesRequest>(
                self.raft.append_entries(r).await.map_err(internal),
            ),
            RaftRequest::Vote(r) => {
                Answer::of::<VoteRequest>(self.raft.vote(r).await.map_err(internal))
            }
            RaftRequest::PreVote(r) => {
                Answer::of::<PreVote>(self.raft.pre_vote(r.0).await.map_err(internal))
            }
        }
    }

    async fn receive_snapshot(
        &self,
        header: SnapshotHeader,
        body: SnapshotBody,
    ) -> Result<SnapshotResponse, WireError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = self.incoming.join(format!(
            "{INCOMING_PREFIX}{}-{}{INCOMING_SUFFIX}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _remove = RemoveOnDrop(path.clone());
        async {
            // Read back by the state machine: open for reading too.
            let mut file = tokio::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .await
                .map_err(internal)?;
            body.copy_to(&mut file).await.map_err(|e| {
                WireError::new(ErrorKind::BadRequest, format!("snapshot body: {e}"))
            })?;
            file.seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(internal)?;
            let snapshot = Snapshot {
                meta: header.meta,
                snapshot: file,
            };
            self.raft
                .install_full_snapshot(header.vote, snapshot)
                .await
                .map_err(internal)
        }
        .await
    }
}

impl Service for RaftService {
    async fn handle(&self, _peer: Peer, req: Request) -> Answer {
        match req {
            Request::Raft(r) => self.serve(r).await,
            Request::Admin(AdminRequest::Ping(p)) => p.answer(Ok(())),
            Request::Actor(_) | Request::Admin(_) | Request::Leader(_) => {
                Answer::error(WireError::new(
                    ErrorKind::BadRequest,
                    "this node serves Raft only (no actor runtime)",
                ))
            }
        }
    }

    fn append_stream(
        &self,
        _peer: Peer,
        input: FBoxStream<'static, AppendEntriesRequest>,
    ) -> FBoxStream<'static, Result<StreamAppendResult, WireError>> {
        self.raft
            .stream_append(input)
            .map(|r| r.map_err(internal))
            .boxed()
    }

    async fn install_snapshot(
        &self,
        _peer: Peer,
        header: SnapshotHeader,
        body: SnapshotBody,
    ) -> Result<SnapshotResponse, WireError> {
        self.receive_snapshot(header, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_store::types::{Entry, EntryPayload};
    use raft_store::{ActorId, Command, Outcome};

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: openraft::testing::log_id::<TypeConfig>(1, 1, index),
            payload: EntryPayload::Normal(Command::Commit {
                actor: ActorId::new("T", "k"),
                epoch: 1,
                state: Some(vec![1; bytes]),
                base: None,
                request: None,
                acked: 0,
                outcome: Outcome::Reply(vec![]),
            }),
        }
    }

    #[test]
    fn large_appends_are_split_into_frames_that_fit() {
        let big = MAX_ENTRY_BYTES - 1024;
        let req = AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, 9)),
            entries: (10..16).map(|i| entry(i, big)).collect(),
            leader_commit: Some(openraft::testing::log_id::<TypeConfig>(1, 1, 12)),
        };
        let parts = split_append(req.clone());
        assert_eq!(parts.len(), 6, "one near-limit entry per part");
        let mut prev = req.prev_log_id;
        for p in &parts {
            assert_eq!(p.prev_log_id, prev, "parts are consecutive");
            assert_eq!(p.leader_commit, req.leader_commit);
            let frame = floe_proto::codec::encode_frame(
                &floe_proto::Request::from(p.clone()),
                floe_proto::codec::DEFAULT_MAX_FRAME,
            );
            assert!(frame.is_ok(), "part does not fit a frame: {frame:?}");
            prev = p.entries.last().map(|e| e.log_id);
        }
        // Small entries stay in one request.
        let small = AppendEntriesRequest {
            entries: (10..300).map(|i| entry(i, 100)).collect(),
            ..req
        };
        assert_eq!(split_append(small).len(), 1);
    }
}

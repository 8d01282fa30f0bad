//! The node's network service: one dispatch per sub-protocol of the wire (actor calls and
//! sessions, admin, the leader protocol, Raft), each request answered with its own reply type.

use std::sync::{Arc, Weak};

use floe_net::raft::RaftService;
use floe_net::{Peer, Service, SnapshotBody};
use floe_proto::raft::{
    AppendEntriesRequest, SnapshotHeader, SnapshotResponse, StreamAppendResult,
};
use floe_proto::{
    ActorRequest, AdminRequest, Answer, CallReply, CallRequest, ErrorKind, MemberStatus, Request,
    Rpc, SessionOpened, StatusReport, WireError,
};
use futures::stream::BoxStream;

use crate::cluster::cluster_view;
use crate::link::{node_addr, to_wire};
use crate::membership::admin::Admin;
use crate::runtime::Runtime;

/// What a node serves to peers and clients.
pub(crate) struct NodeService {
    pub(crate) raft_service: RaftService,
    pub(crate) rt: Weak<Runtime>,
    pub(crate) admin: Admin,
}

impl NodeService {
    fn rt(&self) -> Result<Arc<Runtime>, WireError> {
        self.rt
            .upgrade()
            .ok_or_else(|| WireError::new(ErrorKind::Unavailable, "node is shutting down"))
    }

    async fn actor(&self, req: ActorRequest) -> Answer {
        let rt = match self.rt() {
            Ok(rt) => rt,
            Err(e) => return Answer::error(e),
        };
        match req {
            ActorRequest::Call(c) => {
                let reply = rt
                    .serve_remote(c)
                    .await
                    .map(|(payload, owner)| CallReply {
                        payload,
                        owner,
                        owner_addr: node_addr(&rt.raft, owner),
                    })
                    .map_err(|f| to_wire(&rt.raft, f));
                Answer::of::<CallRequest>(reply)
            }
            ActorRequest::OpenSession(q) => {
                let reply = rt
                    .open_session("client")
                    .await
                    .map(|id| SessionOpened { id })
                    .map_err(|f| to_wire(&rt.raft, f));
                q.answer(reply)
            }
        }
    }

    async fn admin(&self, req: AdminRequest) -> Answer {
        let rt = match self.rt() {
            Ok(rt) => rt,
            Err(e) => return Answer::error(e),
        };
        match req {
            AdminRequest::Ping(q) => q.answer(Ok(())),
            AdminRequest::Members(q) => q.answer(self.admin.members(&rt).await),
            AdminRequest::Status(q) => q.answer(Ok(status(&rt).await)),
            AdminRequest::AddNode(q) => {
                Answer::of::<floe_proto::AddNode>(self.admin.add_node(&rt, q).await)
            }
            AdminRequest::RemoveNode(q) => q.answer(self.admin.remove_node(&rt, q).await),
            AdminRequest::Initialize(q) => {
                Answer::of::<floe_proto::Initialize>(self.admin.initialize(&rt, q).await)
            }
        }
    }
}

async fn status(rt: &Runtime) -> StatusReport {
    let v = cluster_view(&rt.raft, &rt.view).await;
    StatusReport {
        node: v.this,
        state: v.state,
        leader: v.leader,
        term: v.term,
        last_applied: v.last_applied,
        members: v
            .members
            .into_iter()
            .map(|m| MemberStatus {
                node: m.node,
                addr: m.addr,
                voter: m.voter,
                alive: m.alive,
                incarnation: m.incarnation,
                actors: m.placements,
                last_ack_ms: m.last_ack_ms,
            })
            .collect(),
    }
}

impl Service for NodeService {
    async fn handle(&self, _peer: Peer, req: Request) -> Answer {
        match req {
            Request::Actor(r) => self.actor(r).await,
            Request::Admin(r) => self.admin(r).await,
            Request::Leader(r) => match self.rt() {
                Ok(rt) => crate::proposer::serve(&rt.raft, r).await,
                Err(e) => Answer::error(e),
            },
            Request::Raft(r) => self.raft_service.serve(r).await,
        }
    }

    fn append_stream(
        &self,
        peer: Peer,
        input: BoxStream<'static, AppendEntriesRequest>,
    ) -> BoxStream<'static, Result<StreamAppendResult, WireError>> {
        self.raft_service.append_stream(peer, input)
    }

    async fn install_snapshot(
        &self,
        peer: Peer,
        header: SnapshotHeader,
        body: SnapshotBody,
    ) -> Result<SnapshotResponse, WireError> {
        self.raft_service.install_snapshot(peer, header, body).await
    }
}

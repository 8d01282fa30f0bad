//! Cluster administration over the wire: a node's status, the members, bootstrapping a cluster,
//! adding and removing nodes. Membership changes go to the leader, following the hints of the
//! nodes asked first.
//!
//! ```no_run
//! # async fn demo(tls: floe_net::TlsMaterial) -> Result<(), Box<dyn std::error::Error>> {
//! use floe_client::admin::Admin;
//! let admin = Admin::bind(Default::default(), &tls)?;
//! let seeds = ["127.0.0.1:7001".parse()?];
//! let status = admin.status(seeds[0]).await?;
//! println!("node {} is {}", status.node, status.state);
//! admin.remove_node(&seeds, 4).await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use floe_net::{BindError, RpcError, Target, TlsMaterial, Transport, TransportConfig};
use floe_proto::{
    AddNode, ErrorKind, Initialize, MemberInfo, Members, NodeId, Ping, RemoveNode, Rpc, Status,
    StatusReport, WireError,
};

/// Why an admin request has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No node could be reached (or none was given): check the addresses and that the nodes run.
    #[error("no node reachable: {0}")]
    Unreachable(String),
    /// A TLS handshake failed: the certificates do not fit this cluster. Fix them.
    #[error("certificate refused: {0}")]
    Refused(String),
    /// The cluster refused the request (a used node id, an initialized node, a certificate
    /// without the admin role): fix the request.
    #[error("refused by the cluster: {0}")]
    Rejected(WireError),
    /// No leader answered (an election, a lost quorum): retry later.
    #[error("no leader answered: {0}")]
    NoLeader(String),
    /// The request may or may not have taken effect (a timeout, a connection lost): check the
    /// status, then retry; every membership change is idempotent.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

impl AdminError {
    fn of(e: RpcError) -> Self {
        match e {
            RpcError::Unreachable(m) => AdminError::Unreachable(m),
            RpcError::Shutdown => AdminError::Unreachable(e.to_string()),
            RpcError::Refused(m) => AdminError::Refused(m),
            RpcError::Remote(w) => match w.kind {
                ErrorKind::BadRequest | ErrorKind::Forbidden => AdminError::Rejected(w),
                ErrorKind::NotLeader { .. } | ErrorKind::Unavailable => {
                    AdminError::NoLeader(w.to_string())
                }
                _ => AdminError::Unknown(w.to_string()),
            },
            RpcError::Timeout(_) | RpcError::ConnectionLost(_) | RpcError::Protocol(_) => {
                AdminError::Unknown(e.to_string())
            }
        }
    }

    /// Whether asking another node (or the same one again) may help.
    fn try_elsewhere(&self) -> bool {
        !matches!(self, AdminError::Rejected(_) | AdminError::Refused(_))
    }
}

/// Nodes asked, hints followed, for one membership change at most.
const MAX_TRIES: usize = 12;

/// Pause before asking again when no node knew a leader.
const NO_LEADER_PAUSE: Duration = Duration::from_millis(200);

/// Sends admin requests with an admin (or node) certificate; queries work with any certificate.
#[derive(Debug, Clone)]
pub struct Admin {
    transport: Transport,
    query_timeout: Duration,
    change_timeout: Duration,
}

impl Admin {
    /// Admin requests over `transport`.
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            query_timeout: Duration::from_secs(5),
            change_timeout: Duration::from_secs(60),
        }
    }

    /// Bind an endpoint with `config` and `tls` for admin requests.
    ///
    /// # Errors
    /// [`BindError`] if the TLS material is unusable or the socket cannot be bound.
    pub fn bind(config: TransportConfig, tls: &TlsMaterial) -> Result<Self, BindError> {
        Ok(Self::new(Transport::bind(config, tls)?))
    }

    /// How long a query (status, members, ping) may take; 5 s by default.
    pub fn with_query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// How long one node may take over a membership change; 60 s by default (adding a voter
    /// waits until it caught up).
    pub fn with_change_timeout(mut self, timeout: Duration) -> Self {
        self.change_timeout = timeout;
        self
    }

    /// The transport the requests go over.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The status of the node at `node`.
    ///
    /// # Errors
    /// See [`AdminError`].
    ///
    /// # Cancel safety
    /// Cancel safe: a query changes nothing.
    pub async fn status(&self, node: SocketAddr) -> Result<StatusReport, AdminError> {
        self.transport
            .request(&Target::any_node(node), Status, self.query_timeout)
            .await
            .map_err(AdminError::of)
    }

    /// Whether the node at `node` answers.
    ///
    /// # Errors
    /// See [`AdminError`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn ping(&self, node: SocketAddr) -> Result<(), AdminError> {
        self.transport
            .request(&Target::any_node(node), Ping, self.query_timeout)
            .await
            .map_err(AdminError::of)
    }

    /// The members of the cluster, as the first of `seeds` that answers reports them.
    ///
    /// # Errors
    /// The last seed's error, [`AdminError::Unreachable`] if `seeds` is empty.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn members(&self, seeds: &[SocketAddr]) -> Result<Vec<MemberInfo>, AdminError> {
        let mut last = AdminError::Unreachable("no seed addresses".into());
        for seed in seeds {
            match self
                .transport
                .request(&Target::any_node(*seed), Members, self.query_timeout)
                .await
            {
                Ok(m) => return Ok(m),
                Err(e) => last = AdminError::of(e),
            }
        }
        Err(last)
    }

    /// Bootstrap a new cluster through the pristine node at `node`, one of `voters` (id and
    /// address of each first voter).
    ///
    /// # Errors
    /// [`AdminError::Rejected`] if the node is already initialized or not among the voters.
    ///
    /// # Cancel safety
    /// The node may still initialize after the future is dropped; a second attempt is then
    /// rejected as already initialized.
    pub async fn initialize(
        &self,
        node: SocketAddr,
        voters: Vec<(NodeId, String)>,
    ) -> Result<(), AdminError> {
        self.transport
            .request(
                &Target::any_node(node),
                Initialize { voters },
                self.change_timeout,
            )
            .await
            .map_err(AdminError::of)
    }

    /// Add node `node` reachable at `addr` to the membership, as a learner, then as a voter
    /// once it caught up if `voter`.
    ///
    /// # Errors
    /// [`AdminError::Rejected`] for a node id that was used before.
    ///
    /// # Cancel safety
    /// The change may still complete after the future is dropped; asking again is harmless.
    pub async fn add_node(
        &self,
        seeds: &[SocketAddr],
        node: NodeId,
        addr: impl Into<String>,
        voter: bool,
    ) -> Result<(), AdminError> {
        let req = AddNode {
            node,
            addr: addr.into(),
            voter,
        };
        self.to_leader(seeds, req).await
    }

    /// Remove node `node` from the membership; its actors move on their next call.
    ///
    /// # Errors
    /// See [`AdminError`].
    ///
    /// # Cancel safety
    /// The change may still complete after the future is dropped; asking again is harmless.
    pub async fn remove_node(&self, seeds: &[SocketAddr], node: NodeId) -> Result<(), AdminError> {
        self.to_leader(seeds, RemoveNode { node }).await
    }

    /// Send `req` to the leader: ask `seeds` in turn, going first to the leader a node names.
    async fn to_leader<R: Rpc + Clone>(
        &self,
        seeds: &[SocketAddr],
        req: R,
    ) -> Result<R::Reply, AdminError> {
        let mut targets: Vec<Target> = seeds.iter().map(|s| Target::any_node(*s)).collect();
        let mut last = AdminError::Unreachable("no seed addresses".into());
        let mut i = 0;
        while i < targets.len() && i < MAX_TRIES {
            let t = targets[i].clone();
            i += 1;
            match self
                .transport
                .request(&t, req.clone(), self.change_timeout)
                .await
            {
                Ok(r) => return Ok(r),
                Err(RpcError::Remote(WireError {
                    kind: ErrorKind::NotLeader { leader: Some(h) },
                    message,
                })) => {
                    last = AdminError::NoLeader(message);
                    if let Ok(a) = h.addr.parse() {
                        targets.insert(i, Target::node(h.node, a));
                    }
                }
                Err(e) => {
                    let e = AdminError::of(e);
                    if !e.try_elsewhere() {
                        return Err(e);
                    }
                    if matches!(e, AdminError::NoLeader(_)) {
                        // An election is under way: ask the same node again after a pause.
                        tokio::time::sleep(NO_LEADER_PAUSE).await;
                        targets.insert(i, t);
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_whether_another_node_may_help() {
        let bad = RpcError::Remote(WireError::new(ErrorKind::BadRequest, "id used"));
        assert!(matches!(
            AdminError::of(bad.clone()),
            AdminError::Rejected(_)
        ));
        assert!(!AdminError::of(bad).try_elsewhere());
        let no_leader = RpcError::Remote(WireError::new(ErrorKind::Unavailable, "election"));
        assert!(matches!(AdminError::of(no_leader), AdminError::NoLeader(_)));
        let timeout = RpcError::Timeout(Duration::from_secs(1));
        let e = AdminError::of(timeout);
        assert!(matches!(e, AdminError::Unknown(_)));
        assert!(e.try_elsewhere());
        assert!(!AdminError::of(RpcError::Refused("cert".into())).try_elsewhere());
    }
}

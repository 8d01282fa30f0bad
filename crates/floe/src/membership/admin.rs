//! The membership changes and the member list a node serves: add a node, remove one, bootstrap
//! a cluster. Changes are served by the leader, one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use floe_proto::{AddNode, ErrorKind, Initialize, MemberInfo, RemoveNode, WireError};
use raft_store::types::openraft::ChangeMembers;
use raft_store::types::{NodeId, NodeInfo, NodeRole, Raft, WatchReceiver};
use raft_store::{Command, NodeDownResult, NodeRecord};

use crate::link::hint;
use crate::proposer::BACKGROUND_DEADLINE;
use crate::runtime::Runtime;

fn wire(kind: ErrorKind, msg: impl Into<String>) -> WireError {
    WireError::new(kind, msg)
}

fn leader_only(raft: &Raft) -> Result<(), WireError> {
    let (me, leader) = {
        let m = raft.metrics().borrow_watched().clone();
        (m.id, m.current_leader)
    };
    if leader == Some(me) {
        return Ok(());
    }
    Err(wire(
        ErrorKind::NotLeader {
            leader: leader.and_then(|l| hint(raft, l)),
        },
        "membership changes are served by the leader",
    ))
}

/// Serves membership changes; never two at once.
#[derive(Debug, Default)]
pub(crate) struct Admin {
    one: tokio::sync::Mutex<()>,
}

impl Admin {
    pub(crate) async fn members(&self, rt: &Runtime) -> Result<Vec<MemberInfo>, WireError> {
        let m = rt.raft.metrics().borrow_watched().clone();
        let dir: BTreeMap<NodeId, NodeRecord> = rt
            .view
            .nodes()
            .await
            .map_err(|e| wire(ErrorKind::Internal, e.to_string()))?
            .into_iter()
            .map(|n| (n.node, n))
            .collect();
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        let members = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, info)| MemberInfo {
                node: *id,
                addr: info.addr.clone(),
                voter: voters.contains(id),
                alive: dir.get(id).is_some_and(|r| r.alive),
                leader: m.current_leader == Some(*id),
            })
            .collect();
        Ok(members)
    }

    pub(crate) async fn add_node(&self, rt: &Runtime, req: AddNode) -> Result<(), WireError> {
        let AddNode { node, addr, voter } = req;
        let raft = &rt.raft;
        leader_only(raft)?;
        // Never two membership changes at once.
        let _one = self.one.lock().await;
        let err = |e: &dyn std::fmt::Display| wire(ErrorKind::Unavailable, e.to_string());
        let m = raft.metrics().borrow_watched().membership_config.clone();
        let member = m.membership().nodes().any(|(id, _)| *id == node);
        if !member {
            if let Ok(Some(rec)) = rt.view.node(node).await
                && !rec.alive
            {
                return Err(wire(
                    ErrorKind::BadRequest,
                    format!("node id {node} was used before and left; node ids are never reused"),
                ));
            }
            let role = if voter {
                NodeRole::Voter
            } else {
                NodeRole::Learner
            };
            raft.add_learner(node, NodeInfo::new(addr, role), true)
                .await
                .map_err(|e| err(&e))?;
        }
        let is_voter = raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == node);
        if voter && !is_voter {
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node])), false)
                .await
                .map_err(|e| err(&e))?;
        }
        tracing::info!(node, voter, "node added");
        Ok(())
    }

    pub(crate) async fn initialize(&self, rt: &Runtime, req: Initialize) -> Result<(), WireError> {
        let Initialize { voters } = req;
        let raft = &rt.raft;
        let _one = self.one.lock().await;
        if raft
            .is_initialized()
            .await
            .map_err(|e| wire(ErrorKind::Internal, e.to_string()))?
        {
            return Err(wire(
                ErrorKind::BadRequest,
                "this node is already part of an initialized cluster",
            ));
        }
        if !voters.iter().any(|(id, _)| *id == rt.node) {
            return Err(wire(
                ErrorKind::BadRequest,
                format!("the voters must include node {}", rt.node),
            ));
        }
        let members: BTreeMap<NodeId, NodeInfo> = voters
            .into_iter()
            .map(|(id, addr)| (id, NodeInfo::new(addr, NodeRole::Voter)))
            .collect();
        raft.initialize(members)
            .await
            .map_err(|e| wire(ErrorKind::BadRequest, e.to_string()))?;
        tracing::info!(node = rt.node, "cluster initialized");
        Ok(())
    }

    pub(crate) async fn remove_node(&self, rt: &Runtime, req: RemoveNode) -> Result<(), WireError> {
        let RemoveNode { node } = req;
        let raft = &rt.raft;
        leader_only(raft)?;
        let _one = self.one.lock().await;
        let err = |e: &dyn std::fmt::Display| wire(ErrorKind::Unavailable, e.to_string());
        let m = raft.metrics().borrow_watched().membership_config.clone();
        let is_voter = m.membership().voter_ids().any(|v| v == node);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([node]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node]))
        };
        if m.membership().nodes().any(|(id, _)| *id == node) {
            raft.change_membership(change, false)
                .await
                .map_err(|e| err(&e))?;
        }
        // Its actors move on their next call.
        if let Ok(Some(rec)) = rt.view.node(node).await
            && rec.alive
        {
            let _ = rt
                .proposer
                .propose::<NodeDownResult>(
                    Command::NodeDown {
                        node,
                        incarnation: rec.incarnation,
                    },
                    Instant::now() + BACKGROUND_DEADLINE,
                )
                .await;
        }
        tracing::info!(node, "node removed");
        Ok(())
    }
}

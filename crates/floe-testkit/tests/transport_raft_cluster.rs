//! Three Raft nodes in one process over real QUIC (mutual TLS) and real sled stores.

mod raftnet;

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ChangeMembers;
use raft_store::types::{NodeInfo, NodeRole, WatchReceiver};
use raft_store::{ActorId, Command};
use raftnet::*;

fn register(node: u64) -> Command {
    Command::RegisterNode {
        node,
        incarnation: 1,
        addr: format!("n{node}"),
        actor_types: vec!["T".into()],
    }
}

/// Node that `activate(i)` prefers (all nodes are registered, so it wins).
fn expected_owner(i: u64) -> u64 {
    1 + i % 3
}

fn activate(i: u64) -> Command {
    Command::Activate {
        actor: ActorId::new("T", format!("k{i}")),
        preferred: 1 + i % 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_fail_over_and_catch_up_by_snapshot() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_cluster(&pki, root.path(), 3).await;
    let rafts: Vec<_> = nodes.iter().map(|n| n.raft.clone()).collect();
    let leader = wait_leader(&rafts.iter().collect::<Vec<_>>(), None).await;
    tracing::info!(leader, "phase 1: elected; replicating 10,000 commands");
    write_all_to(&rafts, (1..=3).map(register)).await;
    let last = write_all_to(&rafts, (0..10_000).map(activate)).await;
    for n in &nodes {
        wait_applied(&n.raft, last, "all nodes apply the 10,000 commands").await;
        let owner = n
            .view
            .owner(&ActorId::new("T", "k9999"))
            .await
            .expect("read");
        assert_eq!(
            owner.map(|p| p.node),
            Some(expected_owner(9999)),
            "node {}",
            n.id
        );
    }

    tracing::info!("phase 2: shut the leader's endpoint down; a new leader takes writes");
    let leader = wait_leader(&rafts.iter().collect::<Vec<_>>(), None).await;
    let old = nodes.remove((leader - 1) as usize);
    old.transport.shutdown(Duration::from_millis(100)).await;
    let survivors: Vec<_> = nodes.iter().map(|n| &n.raft).collect();
    let new_leader = wait_leader(&survivors, Some(leader)).await;
    let nraft = nodes
        .iter()
        .find(|n| n.id == new_leader)
        .expect("leader node")
        .raft
        .clone();
    let live: Vec<_> = nodes.iter().map(|n| n.raft.clone()).collect();
    let old_last = old
        .raft
        .metrics()
        .borrow_watched()
        .last_log_index
        .unwrap_or(0);
    let old_addr = old.addr;
    let old_dir = old.dir.clone();
    old.stop().await;

    tracing::info!("phase 3: 3,000 writes while the old leader is down; logs get purged");
    let last = write_all_to(&live, (10_000..13_000).map(activate)).await;
    for n in &nodes {
        wait_applied(&n.raft, last, "survivors apply").await;
    }
    nraft.trigger().snapshot().await.expect("trigger snapshot");
    nraft
        .wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > old_last),
            "leader purged past the old leader's log",
        )
        .await
        .expect("purge");

    tracing::info!("phase 4: restart the old leader from its data dir; it catches up by snapshot");
    let back = start_node(&pki, leader, &old_dir, old_addr).await;
    wait_applied(&back.raft, last, "restarted node catches up").await;
    let snap = back.raft.metrics().borrow_watched().snapshot;
    assert!(
        snap.is_some_and(|s| s.index > old_last),
        "restarted node installed no snapshot: {snap:?}"
    );
    let owner = back
        .view
        .owner(&ActorId::new("T", "k12999"))
        .await
        .expect("read");
    assert_eq!(owner.map(|p| p.node), Some(expected_owner(12999)));

    // Writes still work with all three.
    let mut all = live.clone();
    all.push(back.raft.clone());
    let last = write_all_to(&all, (13_000..13_100).map(activate)).await;
    wait_applied(&back.raft, last, "restarted node follows new writes").await;
    back.stop().await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_joins_is_promoted_and_a_voter_is_removed() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let nodes = start_cluster(&pki, root.path(), 3).await;
    let rafts: Vec<_> = nodes.iter().map(|n| &n.raft).collect();
    let leader_id = wait_leader(&rafts, None).await;
    let leader = nodes[(leader_id - 1) as usize].raft.clone();
    write_all(&leader, (0..500).map(activate)).await;

    tracing::info!("add node 4 as a learner (blocking until caught up)");
    let four = start_node(
        &pki,
        4,
        &root.path().join("n4"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await;
    leader
        .add_learner(
            4,
            NodeInfo::new(four.addr.to_string(), NodeRole::Learner),
            true,
        )
        .await
        .expect("add learner");
    let last = leader
        .metrics()
        .borrow_watched()
        .last_applied
        .map_or(0, |l| l.index);
    wait_applied(&four.raft, last, "learner catches up").await;

    tracing::info!("promote node 4 to voter");
    leader
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([4])), false)
        .await
        .expect("promote");
    let victim = if leader_id == 3 { 2 } else { 3 };
    tracing::info!(victim, "remove a voter that is not the leader");
    leader
        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([victim])), false)
        .await
        .expect("remove voter");
    let voters: BTreeSet<u64> = leader
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    let expected: BTreeSet<u64> = [1, 2, 3, 4].into_iter().filter(|v| *v != victim).collect();
    assert_eq!(voters, expected);
    let last = write_all(&leader, (500..600).map(activate)).await;
    wait_applied(&four.raft, last, "new voter applies").await;
    four.stop().await;
    for n in nodes {
        n.stop().await;
    }
}

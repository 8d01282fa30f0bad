//! Size limits: no entry can stop replication. Near-limit states committed at once do not
//! freeze the cluster, an over-limit state is refused and rolled back, and a follower catches up
//! over large entries after a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use floe::{CallError, CallFailure, Placement, RuntimeConfig};
use raft_store::types::WatchReceiver;

/// A state just under the default limit (4 MiB), leaving room for its encoding.
const NEAR_LIMIT: usize = (4 << 20) - 1024;

fn leader_index(nodes: &[floe::Node]) -> usize {
    let m = nodes[0].raft().metrics().borrow_watched().clone();
    let leader = m.current_leader.expect("a leader");
    nodes
        .iter()
        .position(|n| n.id() == leader)
        .expect("leader is a member")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_near_limit_states_at_once_do_not_freeze_other_commits() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let nodes = cluster(&pki, root.path(), 3, Placement::PreferLocal).await;
    let leader = leader_index(&nodes);
    // Through the leader, prefer-local placement makes the blobs leader-owned.
    let c = client(&pki, vec![addr(&nodes[leader])]).await;
    let small = client(&pki, vec![addr(&nodes[(leader + 1) % 3])]).await;
    small
        .actor::<Counter>("elsewhere")
        .call(Add(1))
        .await
        .expect("warm up");

    println!("phase 1: twelve near-limit states are written at once, and a small write elsewhere");
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..12u8 {
        let c = c.clone();
        writes.spawn(async move {
            c.actor::<Blob>(format!("b{i}"))
                .with_timeout(Duration::from_secs(60))
                .call(Fill {
                    len: NEAR_LIMIT,
                    byte: i,
                })
                .await
        });
    }
    let started = Instant::now();
    let v = small
        .actor::<Counter>("elsewhere")
        .call(Add(1))
        .await
        .expect("a small write commits while large ones are in flight");
    assert_eq!(v, 2);
    let small_took = started.elapsed();
    while let Some(r) = writes.join_next().await {
        assert_eq!(r.expect("task").expect("large write"), NEAR_LIMIT);
    }
    println!("small write took {small_took:?}, all large writes committed");

    println!("phase 2: every large state reads back whole");
    for i in 0..12u8 {
        let got = c
            .actor::<Blob>(format!("b{i}"))
            .call(Size)
            .await
            .expect("read");
        assert_eq!(got, (NEAR_LIMIT, Some(i)));
    }
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_limit_state_is_refused_and_rolled_back() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let runtime = RuntimeConfig::default().max_state_bytes(64 << 10);
    let nodes = cluster_with(&pki, root.path(), 3, Placement::PreferLocal, runtime).await;
    let c = client(&pki, vec![addr(&nodes[1])]).await;
    let b = c.actor::<Blob>("x");
    assert_eq!(
        b.call(Fill { len: 1000, byte: 7 }).await.expect("small"),
        1000
    );
    match b
        .call(Fill {
            len: 65 << 10,
            byte: 8,
        })
        .await
    {
        Err(CallError::Failed(CallFailure::TooLarge(m))) => {
            assert!(m.contains("limit is 65536"), "{m}")
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(
        b.call(Size).await.expect("read"),
        (1000, Some(7)),
        "rolled back"
    );
    // A message above the message limit is refused before it runs.
    let too_big = floe::builtin::Write("x".repeat((1 << 20) + 1));
    match c.actor::<floe::builtin::Register>("r").call(too_big).await {
        Err(CallError::Failed(CallFailure::TooLarge(_))) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_catches_up_over_large_entries() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(&pki, root.path(), 3, Placement::PreferLocal).await;
    let leader = leader_index(&nodes);
    let follower = (leader + 1) % 3;
    let (id, listen) = (nodes[follower].id(), addr(&nodes[follower]));
    let seed = addr(&nodes[leader]);

    println!("phase 1: follower {id} stops; twelve near-limit states commit without it");
    nodes
        .remove(follower)
        .shutdown()
        .await
        .expect("stop follower");
    let c = client(&pki, vec![seed]).await;
    for i in 0..12u8 {
        c.actor::<Blob>(format!("catch-up-{i}"))
            .call(Fill {
                len: NEAR_LIMIT,
                byte: i,
            })
            .await
            .expect("large write with one follower down");
    }
    let target = nodes[0]
        .raft()
        .metrics()
        .borrow_watched()
        .last_log_index
        .expect("log index");

    println!("phase 2: it restarts and catches up over the large entries");
    let spec = spec(id, &[seed], true, Placement::PreferLocal).listen(listen);
    let back = start_node(&pki, root.path(), spec).await;
    wait_until(
        "the follower applied the large entries",
        Duration::from_secs(60),
        || {
            let applied = back
                .raft()
                .metrics()
                .borrow_watched()
                .last_applied
                .map(|l| l.index);
            async move { applied >= Some(target) }
        },
    )
    .await;
    let via = client(&pki, vec![addr(&back)]).await;
    assert_eq!(
        via.actor::<Blob>("catch-up-11")
            .call(Size)
            .await
            .expect("read via the follower"),
        (NEAR_LIMIT, Some(11))
    );
    back.shutdown().await.expect("shutdown");
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

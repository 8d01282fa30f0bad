//! Nodes that host different actor types: any node accepts any call and routes it to a node
//! that hosts the type; a type that no node hosts gets a clear error.

mod common;

use common::*;
use floe::{ActorId, CallError, CallFailure};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_the_actor_type_forwards_instead_of_bad_request() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    // Nodes 1 and 2 host counters and accounts; node 3 hosts only slow counters.
    let both = |b: floe::NodeBuilder| b.register::<Counter>().register::<Account>();
    let n1 = start_hosting(&pki, root.path(), 1, &[], both).await;
    let seed = addr(&n1);
    let n2 = start_hosting(&pki, root.path(), 2, &[seed], both).await;
    let n3 = start_hosting(&pki, root.path(), 3, &[seed], |b| b.register::<Slow>()).await;

    println!("phase 1: calls through node 3 reach counters and accounts on nodes 1 and 2");
    let via3 = client(&pki, vec![addr(&n3)]).await;
    for i in 0..10 {
        let key = format!("k{i}");
        assert_eq!(
            via3.actor::<Counter>(&key)
                .call(Add(2))
                .await
                .expect("add via 3"),
            2
        );
        let owner = via3
            .cached_owner(&ActorId::new("test.Counter", &*key))
            .expect("owner learned");
        assert_ne!(owner, 3, "placed on a node without the type");
        assert_eq!(
            via3.actor::<Account>(&key)
                .call(Credit(5))
                .await
                .expect("credit via 3"),
            5
        );
    }

    println!("phase 2: calls through nodes 1 and 2 reach slow counters on node 3");
    let via1 = client(&pki, vec![addr(&n1), addr(&n2)]).await;
    for i in 0..5 {
        let key = format!("s{i}");
        let v = via1
            .actor::<Slow>(&key)
            .call(SlowAdd { n: 1, delay_ms: 0 })
            .await
            .expect("slow via 1");
        assert_eq!(v, 1);
        assert_eq!(
            via1.cached_owner(&ActorId::new("test.Slow", &*key)),
            Some(3)
        );
    }
    // A node calling its own actors: node 3 reaches a counter it does not host.
    assert_eq!(
        n3.actor::<Counter>("k0")
            .call(Get)
            .await
            .expect("in-node call"),
        2
    );

    println!("phase 3: a type no node hosts gets a clear, definite error");
    match via1
        .actor::<Relay>("nobody")
        .call(Forward {
            to: "x".into(),
            n: 1,
        })
        .await
    {
        Err(CallError::Failed(CallFailure::BadRequest(m))) => {
            assert!(m.contains("no node hosts actor type test.Relay"), "{m}")
        }
        other => panic!("expected a clear error, got {other:?}"),
    }
    for n in [n1, n2, n3] {
        n.shutdown().await.expect("shutdown");
    }
}

/// Stateless actors are fenced like the others: once their node is declared down, its old
/// activation no longer answers; the call is answered under a newer placement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_actor_on_a_node_declared_down_does_not_answer_under_its_old_epoch() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let nodes = cluster(&pki, root.path(), 3, floe::Placement::PreferLocal).await;
    let x = &nodes[2];
    let (node, epoch) = x.actor::<WhoAmI>("w").call(Who).await.expect("who");
    assert_eq!(node, x.id(), "prefer-local placement");
    println!("phase 1: node {node} is declared down while it keeps running");
    let down = raft_store::Command::NodeDown {
        node,
        incarnation: x.incarnation(),
    };
    let leader_id = nodes[0].raft().current_leader().await.expect("a leader");
    let leader = nodes
        .iter()
        .find(|n| n.id() == leader_id)
        .expect("the leader is a member");
    leader.raft().client_write(down).await.expect("node down");
    println!("phase 2: a call through it is answered under a newer placement");
    let (_, after) = x.actor::<WhoAmI>("w").call(Who).await.expect("who again");
    assert!(after > epoch, "answered under the old epoch {epoch}");
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

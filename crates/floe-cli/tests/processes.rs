//! The cluster's contract with real `floe node` processes: kill -9 of an owner and of the
//! leader, restart of every node, and fencing of a paused (SIGSTOP) owner.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use floe::ActorId;
use floe::RequestId;
use floe::builtin::{Counter, Increment, Value};

fn key(k: &str) -> ActorId {
    ActorId::new("floe.Counter", k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_owner_kill_leader_restart_everything() {
    let root = tempfile::tempdir().expect("tempdir");
    let certs = Certs::create(&root.path().join("certs"), &[1, 2, 3]);
    let mut procs = start_cluster(root.path(), &certs, 3);
    let admin = admin_transport(&certs);
    let addrs: Vec<_> = procs.iter().map(|p| p.addr).collect();
    wait_healthy(&admin, &addrs, 3, Duration::from_secs(30)).await;
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();

    println!("phase 1: place a counter on a follower and write to it");
    let s = wait_healthy(&admin, &addrs, 3, Duration::from_secs(30)).await;
    let owner = (1..=3)
        .rev()
        .find(|n| Some(*n) != s.leader)
        .expect("a follower");
    let oi = (owner - 1) as usize;
    let at_owner = client(&certs, vec![procs[oi].addr]).await;
    for _ in 0..5 {
        let v = at_owner
            .actor::<Counter>("owned")
            .call(Increment(1))
            .await
            .expect("increment");
        acked.insert("owned".into(), v);
    }
    assert_eq!(at_owner.cached_owner(&key("owned")), Some(owner));

    println!("phase 2: kill -9 the owner; the actor answers elsewhere with its committed state");
    let rest: Vec<_> = procs
        .iter()
        .filter(|p| p.id != owner)
        .map(|p| p.addr)
        .collect();
    let others = client(&certs, rest).await;
    let killed = Instant::now();
    procs[oi].kill9();
    let v = others
        .actor::<Counter>("owned")
        .call(Value)
        .await
        .expect("failover read");
    println!(
        "failover after kill -9 of a follower owner: {:?}",
        killed.elapsed()
    );
    assert_eq!(v, 5);
    let v = others
        .actor::<Counter>("owned")
        .call(Increment(1))
        .await
        .expect("failover write");
    acked.insert("owned".into(), v);
    assert_eq!(v, 6);

    println!("phase 3: restart the killed node; it comes back with a new incarnation");
    procs[oi].start().expect("restart");
    let s = wait_healthy(&admin, &addrs, 3, Duration::from_secs(30)).await;
    let inc = s
        .members
        .iter()
        .find(|m| m.node == owner)
        .and_then(|m| m.incarnation);
    assert!(
        inc.is_some_and(|i| i >= 2),
        "node {owner} incarnation {inc:?}"
    );

    println!("phase 4: kill -9 the leader; writes continue after the election");
    let leader = s.leader.expect("leader");
    let li = (leader - 1) as usize;
    procs[li].kill9();
    let rest: Vec<_> = procs
        .iter()
        .filter(|p| p.id != leader)
        .map(|p| p.addr)
        .collect();
    let c = client(&certs, rest.clone()).await;
    let killed = Instant::now();
    let v = match c.actor::<Counter>("owned").call(Increment(1)).await {
        Ok(v) => v,
        Err(e) => {
            for p in &procs {
                eprintln!("=== node {} log:\n{}", p.id, p.log_text());
            }
            panic!("first write after leader loss (leader was {leader}): {e:?}");
        }
    };
    println!(
        "first write after kill -9 of the leader: {:?}",
        killed.elapsed()
    );
    acked.insert("owned".into(), v);
    for i in 0..20 {
        let k = format!("after-leader-{i}");
        let v = c
            .actor::<Counter>(&k)
            .call(Increment(i + 1))
            .await
            .expect("write after leader loss");
        acked.insert(k, v);
    }

    println!("phase 5: a retried request id is applied once, through different gateways");
    let rid: RequestId = c.new_request_id().await.expect("request id");
    for addr in &rest {
        let c = client(&certs, vec![*addr]).await;
        let v = c
            .actor::<Counter>("once")
            .with_request_id(rid)
            .call(Increment(7))
            .await
            .expect("retry");
        assert_eq!(v, 7);
    }
    acked.insert("once".into(), 7);

    println!("phase 6: kill -9 every node, restart all: every acknowledged write is there");
    for p in procs.iter_mut() {
        p.kill9();
    }
    for p in procs.iter_mut() {
        p.start().expect("restart");
    }
    wait_healthy(&admin, &addrs, 3, Duration::from_secs(60)).await;
    let c = client(&certs, addrs.clone()).await;
    for (k, v) in &acked {
        let got = c
            .actor::<Counter>(k)
            .call(Value)
            .await
            .expect("read after restart");
        assert_eq!(got, *v, "acknowledged write to {k} lost");
    }
    for p in procs.iter_mut() {
        assert!(
            stop(p),
            "node {} did not exit cleanly on SIGTERM:\n{}",
            p.id,
            p.log_text()
        );
        assert!(!p.log_text().contains("panicked"), "node {} panicked", p.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_owner_is_fenced() {
    let root = tempfile::tempdir().expect("tempdir");
    let certs = Certs::create(&root.path().join("certs"), &[1, 2, 3]);
    let mut procs = start_cluster(root.path(), &certs, 3);
    let admin = admin_transport(&certs);
    let addrs: Vec<_> = procs.iter().map(|p| p.addr).collect();
    let s = wait_healthy(&admin, &addrs, 3, Duration::from_secs(30)).await;
    // Pause a follower that owns the actor (pausing the leader also works, but then the
    // election adds to the failover).
    let victim = (1..=3).find(|n| Some(*n) != s.leader).expect("a follower");
    let vi = (victim - 1) as usize;

    let at_victim = client(&certs, vec![procs[vi].addr]).await;
    for _ in 0..3 {
        at_victim
            .actor::<Counter>("fenced")
            .call(Increment(1))
            .await
            .expect("increment");
    }
    assert_eq!(at_victim.cached_owner(&key("fenced")), Some(victim));

    println!("SIGSTOP the owner; the actor moves and takes writes");
    assert!(procs[vi].signal("-STOP"), "kill -STOP");
    let rest: Vec<_> = procs
        .iter()
        .filter(|p| p.id != victim)
        .map(|p| p.addr)
        .collect();
    let others = client(&certs, rest).await;
    let paused = Instant::now();
    assert_eq!(
        others
            .actor::<Counter>("fenced")
            .call(Increment(1))
            .await
            .expect("moved"),
        4
    );
    println!(
        "failover after SIGSTOP of the owner: {:?}",
        paused.elapsed()
    );
    assert_eq!(
        others
            .actor::<Counter>("fenced")
            .call(Increment(1))
            .await
            .expect("moved"),
        5
    );
    assert_ne!(others.cached_owner(&key("fenced")), Some(victim));

    println!("SIGCONT: the stale activation can neither answer nor commit");
    assert!(procs[vi].signal("-CONT"), "kill -CONT");
    let via_old = client(&certs, vec![procs[vi].addr]).await;
    assert_eq!(
        via_old
            .actor::<Counter>("fenced")
            .call(Value)
            .await
            .expect("read via old owner"),
        5
    );
    assert_eq!(
        via_old
            .actor::<Counter>("fenced")
            .call(Increment(1))
            .await
            .expect("write via old owner"),
        6
    );
    assert_eq!(
        others
            .actor::<Counter>("fenced")
            .call(Value)
            .await
            .expect("read"),
        6
    );

    for p in procs.iter_mut() {
        assert!(
            stop(p),
            "node {} did not exit cleanly:\n{}",
            p.id,
            p.log_text()
        );
        assert!(!p.log_text().contains("panicked"), "node {} panicked", p.id);
    }
}

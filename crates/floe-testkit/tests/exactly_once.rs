//! Exactly-once outside the easy envelope, on in-process 3-node clusters (real QUIC, real sled):
//! retries long after the first attempt, behind many other writers and clients, after the
//! session expired, and after an ambiguous attempt followed by a refused one.
//!
//! "The reply was lost" is played by a second client sending the request with the first
//! client's id: the first client never sees the answer, so its session keeps the outcome.

mod common;

use std::time::Duration;

use common::*;
use floe::builtin::{Cas, CasOutcome, Register, Write};
use floe::{CallError, CallFailure, Placement, RuntimeConfig};
use floe_client::{Client, ClientConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_retried_after_70_other_writes_returns_its_swap_not_a_mismatch() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let nodes = cluster(&pki, root.path(), 3, Placement::PreferLocal).await;
    let owner = client(&pki, vec![addr(&nodes[0])]).await;
    let other = client(&pki, vec![addr(&nodes[1])]).await;
    let rid = owner.new_request_id().await.expect("request id");
    let cas = || Cas {
        expect: None,
        new: "7".into(),
    };

    println!("phase 1: CAS(absent -> 7) applies; its reply is lost to its client");
    let first = other
        .actor::<Register>("r")
        .with_request_id(rid)
        .call(cas())
        .await
        .expect("first attempt");
    assert_eq!(first, CasOutcome::Swapped);

    println!("phase 2: 70 other writes land on the same actor");
    for i in 0..70 {
        other
            .actor::<Register>("r")
            .call(Write(format!("w{i}")))
            .await
            .expect("write");
    }

    println!("phase 3: the retry gets the original answer");
    let retry = owner
        .actor::<Register>("r")
        .with_request_id(rid)
        .call(cas())
        .await
        .expect("retry");
    assert_eq!(
        retry,
        CasOutcome::Swapped,
        "a retry must not be answered afresh"
    );
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increment_retried_after_400_other_clients_applies_once() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let nodes = cluster(&pki, root.path(), 3, Placement::PreferLocal).await;
    let seeds: Vec<_> = nodes.iter().map(addr).collect();
    let owner = client(&pki, seeds.clone()).await;
    let rid = owner.new_request_id().await.expect("request id");

    println!("phase 1: +1_000_000 applies; its reply is lost to its client");
    let lost = client(&pki, seeds.clone()).await;
    let v = lost
        .actor::<Counter>("c")
        .with_request_id(rid)
        .call(Add(1_000_000))
        .await
        .expect("first attempt");
    assert_eq!(v, 1_000_000);
    lost.close().await;

    println!("phase 2: 400 distinct clients add 1 each");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..400 {
        let (pki_client, seeds) = (pki.client(&format!("c{i}")), seeds.clone());
        tasks.spawn(async move {
            let c = Client::connect(ClientConfig::new(seeds, pki_client))
                .await
                .expect("connect");
            c.actor::<Counter>("c").call(Add(1)).await.expect("add");
            c.close().await;
        });
        // At most 16 connecting at once: 2 cores.
        while tasks.len() >= 16 {
            if let Some(r) = tasks.join_next().await {
                r.expect("task");
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }

    println!("phase 3: the retry returns the original reply and adds nothing");
    let retry = owner
        .actor::<Counter>("c")
        .with_request_id(rid)
        .call(Add(1_000_000))
        .await
        .expect("retry");
    assert_eq!(retry, 1_000_000);
    assert_eq!(
        owner.actor::<Counter>("c").call(Get).await.expect("get"),
        1_000_400,
        "applied twice"
    );
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debit_retried_after_other_writes_returns_its_reply_not_insufficient() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let nodes = cluster(&pki, root.path(), 3, Placement::Random).await;
    let owner = client(&pki, vec![addr(&nodes[2])]).await;
    let other = client(&pki, vec![addr(&nodes[0])]).await;
    let acct = || other.actor::<Account>("alice");
    acct().call(Credit(10)).await.expect("credit");
    let rid = owner.new_request_id().await.expect("request id");

    println!("phase 1: debit 10 applies (balance 0); its reply is lost to its client");
    let first = acct()
        .with_request_id(rid)
        .call(Debit(10))
        .await
        .expect("debit");
    assert_eq!(first, 0);
    println!("phase 2: 70 writes that leave the balance at 0");
    for _ in 0..35 {
        acct().call(Credit(1)).await.expect("credit");
        acct().call(Debit(1)).await.expect("debit");
    }
    println!("phase 3: the retry gets the debit's reply, not Insufficient");
    let retry = owner
        .actor::<Account>("alice")
        .with_request_id(rid)
        .call(Debit(10))
        .await;
    assert_eq!(retry, Ok(0));
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_retry_is_fixed_in_the_log_before_it_is_answered() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let nodes = cluster(&pki, root.path(), 3, Placement::PreferLocal).await;
    let owner = client(&pki, vec![addr(&nodes[0])]).await;
    let c = client(&pki, vec![addr(&nodes[1])]).await;
    let rid = owner.new_request_id().await.expect("request id");
    println!("phase 1: a retried debit that finds no funds is rejected, and that is recorded");
    let refused = c
        .actor::<Account>("bob")
        .with_request_id(rid)
        .call(Debit(5))
        .await;
    assert_eq!(refused, Err(CallError::Rejected(Insufficient(0))));
    println!("phase 2: funds arrive; the same request id is still rejected, nothing is debited");
    c.actor::<Account>("bob")
        .call(Credit(100))
        .await
        .expect("credit");
    let again = owner
        .actor::<Account>("bob")
        .with_request_id(rid)
        .call(Debit(5))
        .await;
    assert_eq!(again, Err(CallError::Rejected(Insufficient(0))));
    assert_eq!(
        c.actor::<Account>("bob")
            .call(Credit(0))
            .await
            .expect("read"),
        100
    );
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_its_session_expired_is_expired_and_not_applied() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let runtime = RuntimeConfig::default()
        .call_timeout(Duration::from_millis(300))
        .session_idle_timeout(Duration::from_secs(3))
        .retry_window(Duration::from_secs(1));
    let nodes = cluster_with(&pki, root.path(), 3, Placement::PreferLocal, runtime).await;
    let seeds: Vec<_> = nodes.iter().map(addr).collect();
    let owner = client(&pki, seeds.clone()).await;
    let other = client(&pki, seeds).await;
    let rid = owner.new_request_id().await.expect("request id");
    assert_eq!(
        other
            .actor::<Counter>("e")
            .with_request_id(rid)
            .call(Add(3))
            .await
            .expect("first"),
        3
    );
    println!("phase 1: while the session lives, the retry gets the original reply");
    assert_eq!(
        owner
            .actor::<Counter>("e")
            .with_request_id(rid)
            .call(Add(3))
            .await
            .expect("retry"),
        3
    );
    println!("phase 2: the owner's session goes idle and expires; the retry is Expired");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let f = loop {
        let res = other
            .actor::<Counter>("e")
            .with_request_id(rid)
            .call(Add(3))
            .await;
        match res {
            Err(CallError::Failed(f @ CallFailure::Expired)) => break f,
            Ok(3) => {}
            other => panic!("a retry of an applied request answered {other:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the session never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!f.outcome_known());
    assert_eq!(
        other.actor::<Counter>("e").call(Get).await.expect("get"),
        3,
        "an expired retry must not apply again"
    );
    println!("phase 3: the owner, idle past its session, gets a new one and goes on");
    assert_eq!(
        owner.actor::<Counter>("e").call(Add(1)).await.expect("add"),
        4
    );
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_attempt_then_refused_seed_reports_unknown_not_a_definite_failure() {
    init_tracing();
    let pki = Pki::new();
    let root = tempfile::tempdir().expect("tempdir");
    let nodes = cluster(&pki, root.path(), 3, Placement::PreferLocal).await;
    // Seeds that refuse the handshake: nodes of another cluster's CA.
    let strangers = Pki::new();
    let bad: Vec<_> = (0..2)
        .map(|i| {
            floe_net::Transport::bind(
                floe_net::TransportConfig::default().listen(loopback()),
                &strangers.node(10 + i),
            )
            .expect("stranger binds")
        })
        .collect();
    let good = addr(&nodes[0]);
    let mut seeds = vec![good];
    seeds.extend(bad.iter().map(|t| t.local_addr().expect("addr")));
    let mut cfg = ClientConfig::new(seeds, pki.client("tester"));
    cfg.attempt_timeout = Duration::from_millis(300);
    cfg.hedge_after = Duration::from_secs(60);
    cfg.call_timeout = Duration::from_secs(20);
    let c = loop {
        if let Ok(c) = Client::connect(cfg.clone()).await {
            break c;
        }
    };
    for round in 0..6 {
        let key = format!("slow-{round}");
        // Learn the owner first (a seed that refuses is tried again).
        loop {
            let r = c
                .actor::<Slow>(&key)
                .call(SlowAdd { n: 0, delay_ms: 0 })
                .await;
            if r.is_ok()
                && c.cached_owner(&floe::ActorId::new("test.Slow", &*key))
                    .is_some()
            {
                break;
            }
        }
        println!("round {round}: the first attempt times out while the add applies");
        let r = c
            .actor::<Slow>(&key)
            .call(SlowAdd {
                n: 1,
                delay_ms: 900,
            })
            .await;
        match r {
            Ok(v) => assert_eq!(v, 1),
            Err(CallError::Failed(f)) => assert!(
                !f.outcome_known(),
                "a definite failure after an ambiguous attempt: {f:?}"
            ),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

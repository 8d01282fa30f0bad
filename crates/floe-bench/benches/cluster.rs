//! Three local nodes in one process over real QUIC (mutual TLS) and sled (fdatasync on), driven
//! through the client: latency of the first call to a new actor (placement committed through
//! Raft, then activation), concurrent activations per second, and calls to a placed actor.
//!
//! `cargo bench -p floe-bench --bench cluster` (`FLOE_BENCH_N`, default 2000 sequential
//! first calls; 20000 concurrent).

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe::Placement;
use floe::builtin::{Echo, Ping};
use floe_testkit::Pki;
use floe_testkit::cluster::{NodeSpec, addr, start_cluster_with};
use futures::StreamExt;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    floe_testkit::percentile(v, p).unwrap_or_default()
}

async fn run(n: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let spec = NodeSpec::new(1, |b| b.register::<Echo>()).placement(Placement::PreferLocal);
    let nodes = start_cluster_with(&pki, dir.path(), 3, spec).await;
    let seeds = nodes.iter().map(addr).collect();
    let client = floe_testkit::cluster::client(&pki, seeds).await;
    let leader = nodes[0].cluster().await.leader;
    println!("3 nodes, leader {leader:?}\n\n| measure | value |\n|---|---|");

    // Warm up connections.
    for i in 0..200 {
        client
            .actor::<Echo>(format!("warm-{i}"))
            .call(Ping(i))
            .await
            .expect("warm");
    }

    let mut lat = Vec::new();
    let t = Instant::now();
    for i in 0..n {
        let s = Instant::now();
        client
            .actor::<Echo>(format!("first-{i}"))
            .call(Ping(i))
            .await
            .expect("first call");
        lat.push(s.elapsed());
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    println!(
        "| first call to a new actor, sequential (client → gateway, placement + activation) | p50 {p50:.1?}, p99 {p99:.1?} ({rate:.0}/s) |"
    );

    let c = Arc::new(client.clone());
    let total = n * 10;
    let t = Instant::now();
    let done: Vec<_> = futures::stream::iter(0..total)
        .map(|i| {
            let c = c.clone();
            async move { c.actor::<Echo>(format!("conc-{i}")).call(Ping(i)).await }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let rate = total as f64 / t.elapsed().as_secs_f64();
    assert!(done.iter().all(|r| r.is_ok()), "some activations failed");
    println!("| first calls to {total} new actors, 256 in flight | {rate:.0} activations/s |");

    let mut lat = Vec::new();
    for i in 0..n {
        let s = Instant::now();
        client
            .actor::<Echo>("placed")
            .call(Ping(i))
            .await
            .expect("call");
        lat.push(s.elapsed());
    }
    println!(
        "| call to a placed stateless actor (client → owner directly) | p50 {:.1?}, p99 {:.1?} |",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    client.close().await;
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

fn main() {
    let n = std::env::var("FLOE_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(n));
}

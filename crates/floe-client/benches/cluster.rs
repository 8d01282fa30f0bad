//! Three local nodes in one process over real QUIC (mutual TLS) and sled (fdatasync on), driven
//! through the client: latency of the first call to a new actor (placement committed through
//! Raft, then activation), concurrent activations per second, and calls to a placed actor.
//!
//! `cargo bench -p floe-client --bench cluster` (`FLOE_BENCH_N`, default 2000 sequential
//! first calls; 20000 concurrent).

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe::certs::CertificateAuthority;
use floe::prelude::*;
use floe::{ClusterConfig, Placement, TlsMaterial};
use floe_client::{Client, ClientConfig};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Actor, Default)]
#[actor(name = "bench.Echo", stateless, handles(Ping))]
struct Echo;

#[derive(Message, Serialize, Deserialize)]
#[message(reply = u64)]
struct Ping(u64);

impl Handler<Ping> for Echo {
    type Error = Never;
    async fn handle(&mut self, Ping(n): Ping, _: &mut Context<Self>) -> Result<u64, Never> {
        Ok(n)
    }
}

fn tls(ca: &CertificateAuthority, c: floe::certs::CertifiedKeyPem) -> TlsMaterial {
    TlsMaterial::from_pem(
        ca.cert_pem().as_bytes(),
        c.cert_pem.as_bytes(),
        c.key_pem.as_bytes(),
    )
    .expect("tls")
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

async fn run(n: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::create("bench").expect("ca");
    let mut nodes: Vec<Node> = Vec::new();
    for id in 1..=3u64 {
        let mut c = ClusterConfig::new(
            "127.0.0.1:0".parse().expect("addr"),
            tls(&ca, ca.issue_node(id, &[]).expect("cert")),
        );
        c.placement = Placement::PreferLocal;
        match nodes.first().and_then(|n| n.addr()) {
            None => c.bootstrap = vec![(id, String::new())],
            Some(seed) => {
                c.join = vec![seed.parse().expect("seed")];
                c.join_as_voter = true;
            }
        }
        nodes.push(
            Node::builder()
                .id(id)
                .data_dir(dir.path().join(format!("n{id}")))
                .cluster(c)
                .register::<Echo>()
                .build()
                .await
                .expect("node"),
        );
    }
    let seeds = nodes
        .iter()
        .filter_map(|n| n.addr()?.parse().ok())
        .collect();
    let client = Client::connect(ClientConfig::new(
        seeds,
        tls(&ca, ca.issue_client("bench").expect("cert")),
    ))
    .await
    .expect("client");
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

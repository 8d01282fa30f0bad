//! floe-net request round trip and pipelined throughput, against a raw quinn stream doing the
//! same (same TLS 1.3 mutual-auth config, same frame sizes, same runtime) in the same run.
//!
//! `cargo bench -p floe-bench --bench transport` (`FLOE_BENCH_SECS`, default 3 s per case).

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_net::tls::{client_config, server_config};
use floe_net::{Peer, Service, Target, TlsMaterial, Transport, TransportConfig};
use floe_proto::codec::{DEFAULT_MAX_FRAME, encode_frame};
use floe_proto::{Answer, Open, Ping, Request};
use floe_testkit::Pki;

struct Pong;
impl Service for Pong {
    async fn handle(&self, _p: Peer, _r: Request) -> Answer {
        Answer::of::<Ping>(Ok(()))
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    floe_testkit::percentile(v, p).unwrap_or_default()
}

/// One request/response exchange; floe-net or raw quinn.
#[derive(Clone)]
enum Client {
    Floe(Transport, Target),
    Raw(quinn::Connection, Arc<Vec<u8>>),
}

impl Client {
    async fn call(&self) {
        match self {
            Client::Floe(t, target) => {
                let r = t.request(target, Ping, Duration::from_secs(5)).await;
                assert!(r.is_ok(), "{r:?}");
            }
            Client::Raw(conn, frame) => {
                let (mut send, mut recv) = conn.open_bi().await.expect("open");
                send.write_all(frame).await.expect("write");
                send.finish().expect("finish");
                let back = recv.read_to_end(1 << 16).await.expect("read");
                assert_eq!(back.len(), frame.len());
            }
        }
    }
}

async fn sequential(c: &Client, budget: Duration) -> (Duration, Duration, f64) {
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        c.call().await;
        lat.push(t.elapsed());
    }
    let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99), rate)
}

async fn pipelined(c: &Client, inflight: usize, budget: Duration) -> f64 {
    let c = c.clone();
    floe_testkit::load::closed_loop(budget, inflight, move |_| {
        let c = c.clone();
        async move { c.call().await }
    })
    .await
}

/// A raw quinn echo server with the same TLS and transport settings as floe-net.
fn raw_server(tls: &TlsMaterial) -> quinn::Endpoint {
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(server_config(tls).expect("server"))
            .expect("quic");
    let ep = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(crypto)),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("raw server");
    floe_testkit::load::serve_echo(&ep);
    ep
}

async fn run(budget: Duration) -> Vec<String> {
    let pki = Pki::new();
    let server = Transport::bind(TransportConfig::default(), &pki.node(1)).expect("bind");
    server.serve(Arc::new(Pong));
    let client_t = Transport::bind(TransportConfig::default(), &pki.node(2)).expect("bind");
    let floe = Client::Floe(
        client_t,
        Target::node(1, server.local_addr().expect("addr")),
    );

    let raw_ep = raw_server(&pki.node(1));
    let client_tls = pki.node(2);
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(
        client_config(&client_tls).expect("client"),
    )
    .expect("quic");
    let mut raw_client =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    raw_client.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = raw_client
        .connect(raw_ep.local_addr().expect("addr"), "node-1.floe")
        .expect("connect")
        .await
        .expect("handshake");
    // The raw exchange carries the same bytes floe-net sends for a ping.
    let frame = encode_frame(&Open::Request(Ping.into()), DEFAULT_MAX_FRAME)
        .expect("frame")
        .to_vec();
    let raw = Client::Raw(conn, Arc::new(frame));

    // Warm up both.
    for c in [&floe, &raw] {
        sequential(c, Duration::from_millis(300)).await;
    }
    let (f50, f99, frate) = sequential(&floe, budget).await;
    let (r50, r99, rrate) = sequential(&raw, budget).await;
    let fpipe = pipelined(&floe, 64, budget).await;
    let rpipe = pipelined(&raw, 64, budget).await;
    vec![
        format!(
            "| sequential p50 | {f50:.1?} | {r50:.1?} | {:.2}× |",
            f50.as_secs_f64() / r50.as_secs_f64()
        ),
        format!(
            "| sequential p99 | {f99:.1?} | {r99:.1?} | {:.2}× |",
            f99.as_secs_f64() / r99.as_secs_f64()
        ),
        format!(
            "| sequential req/s | {frate:.0} | {rrate:.0} | {:.2} |",
            frate / rrate
        ),
        format!(
            "| 64 in flight req/s | {fpipe:.0} | {rpipe:.0} | {:.2} |",
            fpipe / rpipe
        ),
    ]
}

fn main() {
    let budget = floe_testkit::load::bench_budget(3);
    for (name, rt) in [
        (
            "multi-thread, 2 workers",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
        ),
        (
            "current-thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
        ),
    ] {
        let rt = rt.expect("runtime");
        println!(
            "\n{name}\n\n| measure | floe-net | raw quinn | floe-net / raw |\n|---|---|---|---|"
        );
        for line in rt.block_on(run(budget)) {
            println!("{line}");
        }
    }
}

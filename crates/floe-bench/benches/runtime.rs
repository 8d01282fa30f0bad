//! Runtime benchmark on one embedded node (real sled Raft store, fdatasync on):
//! heap per idle activation, and local call latency/throughput for a stateless and a
//! state-changing actor.
//!
//! `cargo bench -p floe-bench --bench runtime` (`FLOE_BENCH_SECS`, default 3; `FLOE_BENCH_ACTORS`,
//! default 100000).

// The only unsafe code in the workspace: a counting wrapper around the system allocator, so
// that heap per activation is measured exactly rather than guessed from RSS.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use floe::RuntimeConfig;
use floe::builtin::{Echo, Ping};
use floe::prelude::*;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// Counts live heap bytes, to measure what activations cost precisely.
struct Counting;
static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "bench.Counter", handles(Add))]
struct Counter {
    value: u64,
}

#[derive(Message, Serialize, Deserialize)]
#[message(name = "bench.Add", reply = u64)]
struct Add(u64);

impl Handler<Add> for Counter {
    type Error = Never;
    async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) -> Result<u64, Never> {
        self.value += n;
        Ok(self.value)
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    floe_testkit::percentile(v, p).unwrap_or_default()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn sequential<F, Fut>(budget: Duration, mut f: F) -> (Duration, Duration, f64)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < budget {
        let t = Instant::now();
        f(i).await;
        lat.push(t.elapsed());
        i += 1;
    }
    let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99), rate)
}

async fn wait_idle(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while node.activations() > 0 {
        assert!(Instant::now() < deadline, "activations never went idle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(budget: Duration, actors: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = RuntimeConfig::default().idle_timeout(Duration::from_secs(2));
    let node = Arc::new(
        Node::builder()
            .data_dir(dir.path())
            .runtime(cfg)
            .register::<Echo>()
            .register::<Counter>()
            .build()
            .await
            .expect("node"),
    );

    println!("| measure | value |\n|---|---|");
    // Calls.
    let n = node.clone();
    let (p50, p99, rate) = sequential(budget, move |i| {
        let n = n.clone();
        async move {
            n.actor::<Echo>("e").call(Ping(i)).await.expect("ping");
        }
    })
    .await;
    println!("| stateless call, 1 in flight | p50 {p50:.1?}, p99 {p99:.1?}, {rate:.0} calls/s |");
    let n = node.clone();
    let rate = floe_testkit::load::closed_loop(budget, 64, move |t| {
        let n = n.clone();
        async move {
            n.actor::<Echo>(format!("e{t}"))
                .call(Ping(t))
                .await
                .expect("ping");
        }
    })
    .await;
    println!("| stateless call, 64 in flight (64 actors) | {rate:.0} calls/s |");
    let n = node.clone();
    let (p50, p99, rate) = sequential(budget, move |_| {
        let n = n.clone();
        async move {
            n.actor::<Counter>("c").call(Add(1)).await.expect("add");
        }
    })
    .await;
    println!(
        "| state-changing call (commit + fdatasync), 1 in flight | p50 {p50:.1?}, p99 {p99:.1?}, {rate:.0} calls/s |"
    );
    let n = node.clone();
    let rate = floe_testkit::load::closed_loop(budget, 256, move |t| {
        let n = n.clone();
        async move {
            n.actor::<Counter>(format!("c{t}"))
                .call(Add(1))
                .await
                .expect("add");
        }
    })
    .await;
    println!(
        "| state-changing call, 256 actors × 1 in flight (group commit) | {rate:.0} calls/s |"
    );

    // Memory per idle activation: place `actors` actors, let them go idle, then reactivate them
    // (sticky placements: no Raft write) and count the heap they hold.
    let t = Instant::now();
    let activate = |node: Arc<Node>| async move {
        futures::stream::iter(0..actors)
            .map(|i| {
                let n = node.clone();
                async move {
                    n.actor::<Echo>(format!("m{i}"))
                        .call(Ping(i))
                        .await
                        .expect("activate");
                }
            })
            .buffer_unordered(512)
            .collect::<Vec<()>>()
            .await;
    };
    activate(node.clone()).await;
    let first = t.elapsed();
    println!(
        "| first activation of {actors} actors (Raft placement, 512 concurrent) | {:.0} activations/s |",
        actors as f64 / first.as_secs_f64()
    );
    wait_idle(&node).await;
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss_kib());
    let t = Instant::now();
    activate(node.clone()).await;
    let re = t.elapsed();
    assert_eq!(node.activations() as u64, actors);
    let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss_kib());
    println!(
        "| reactivation of {actors} idle-deactivated actors (no Raft write) | {:.0} activations/s |",
        actors as f64 / re.as_secs_f64()
    );
    println!(
        "| heap per idle activation (zero-sized actor) | {:.0} bytes |",
        (heap1 - heap0) as f64 / actors as f64
    );
    println!(
        "| RSS growth per idle activation | {:.0} bytes |",
        (rss1.saturating_sub(rss0) * 1024) as f64 / actors as f64
    );
    Arc::into_inner(node)
        .expect("sole owner")
        .shutdown()
        .await
        .expect("shutdown");
}

fn main() {
    let budget = floe_testkit::load::bench_budget(3);
    let actors = std::env::var("FLOE_BENCH_ACTORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(budget, actors));
}

//! Load for benchmarks: closed loops of a fixed concurrency for a fixed time, the run time a
//! bench is given, and a raw QUIC echo server to compare Floe's transport with.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The time each case of a bench runs: `FLOE_BENCH_SECS` seconds, else `default_secs`.
pub fn bench_budget(default_secs: u64) -> Duration {
    let secs = std::env::var("FLOE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_secs);
    Duration::from_secs(secs)
}

/// Run `inflight` loops of `f` (each given its loop number) for `budget`; the operations
/// finished per second.
///
/// # Panics
/// If a loop panicked.
pub async fn closed_loop<F, Fut>(budget: Duration, inflight: usize, f: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = (0..inflight as u64)
        .map(|t| {
            let (f, done, stop) = (f.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    f(t).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(budget).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a load loop panicked");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Answer every bidirectional stream opened on `endpoint` with the bytes it carried (at most
/// 64 KiB), until the endpoint closes: the raw-QUIC baseline of a request/response exchange.
pub fn serve_echo(endpoint: &quinn::Endpoint) {
    let accept = endpoint.clone();
    tokio::spawn(async move {
        while let Some(inc) = accept.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let Ok(data) = recv.read_to_end(1 << 16).await else {
                            return;
                        };
                        let _ = send.write_all(&data).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
}

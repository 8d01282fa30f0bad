//! Memory per connection is bounded: a peer opening a thousand streams that each announce a
//! 16 MiB frame and send part of it cannot make the node hold gigabytes, and another client is
//! served meanwhile. Its own test binary, so that the process's RSS is this test's alone.

mod raftnet;

use std::sync::Arc;
use std::time::Duration;

use floe_net::{Transport, TransportConfig};
use floe_proto::codec::DEFAULT_MAX_FRAME;
use raftnet::*;

const STREAMS: usize = 1000;
/// Bytes of the announced body each stream actually sends.
const SENT: usize = 512 << 10;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_announcing_huge_frames_cannot_exhaust_memory() {
    init_tracing();
    let pki = Pki::new();
    let config = TransportConfig::default().request_timeout(Duration::from_secs(10));
    let node = Transport::bind(config, &pki.node(1)).expect("bind");
    node.serve(Arc::new(PongService));
    let addr = node.local_addr().expect("addr");
    let friend = Transport::bind(TransportConfig::default(), &pki.node(2)).expect("bind");
    assert_serves(&friend, &node, "before the attack").await;

    let conn = raw_node_connection(&pki, addr, 3).await;
    let payload: Arc<Vec<u8>> = Arc::new(vec![0x5a; SENT]);
    let idle = status_kib("VmRSS:");

    let attack: Vec<_> = (0..STREAMS)
        .map(|_| {
            let conn = conn.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                let (mut send, _recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
                send.write_all(&(DEFAULT_MAX_FRAME as u32).to_be_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                // Ends when the node stops the stream (its first-frame deadline) or took it all.
                send.write_all(&payload).await.map_err(|e| e.to_string())?;
                // Keep the stream open until the node gives up on it.
                let _ = send.stopped().await;
                Ok::<(), String>(())
            })
        })
        .collect();

    // Served while the attack is under way.
    assert_serves(&friend, &node, "during the attack").await;

    for t in attack {
        let _ = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("attack stream ended by the node");
    }
    let peak = status_kib("VmHWM:");
    let grown_mib = peak.saturating_sub(idle) / 1024;
    println!(
        "RSS idle {} MiB, peak {} MiB, grown {grown_mib} MiB",
        idle / 1024,
        peak / 1024
    );
    assert!(
        grown_mib < 256,
        "RSS grew by {grown_mib} MiB under {STREAMS} streams"
    );
    assert_serves(&friend, &node, "after the attack").await;
}

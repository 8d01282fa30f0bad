//! Malformed input: random bytes, truncated frames and a frame announcing 4 GiB close that stream
//! with an error; repeated abuse closes the connection; nothing panics, nothing large is
//! allocated, and the node keeps serving.

mod raftnet;

use std::time::Duration;

use floe_net::{Transport, TransportConfig};
use floe_proto::codec::{DEFAULT_MAX_FRAME, decode_frame};
use floe_proto::{ErrorKind, WireError};
use raftnet::*;
use rand::Rng;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Send `bytes` as a whole stream and return what the server answered (or the stream error).
async fn send_raw(conn: &quinn::Connection, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())
}

fn assert_bad_request(answer: Result<Vec<u8>, String>, what: &str) {
    match answer {
        Ok(bytes) => {
            let r: Result<(), WireError> =
                decode_frame(&bytes, DEFAULT_MAX_FRAME).expect("an error frame");
            assert!(
                matches!(
                    r,
                    Err(WireError {
                        kind: ErrorKind::BadRequest,
                        ..
                    })
                ),
                "{what}: {r:?}"
            );
        }
        // The server may also stop the stream before we read the answer.
        Err(e) => assert!(e.contains("stop") || e.contains("reset"), "{what}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_streams_are_closed_and_the_node_keeps_serving() {
    init_tracing();
    let pki = Pki::new();
    let node = pong_node(&pki, 1);
    let addr = node.local_addr().expect("addr");
    let friend = Transport::bind(TransportConfig::default(), &pki.node(2)).expect("bind");
    let conn = raw_node_connection(&pki, addr, 3).await;
    let rss_before = rss_kib();

    let mut random = vec![0u8; 300];
    rand::rng().fill_bytes(&mut random);
    random[..4].copy_from_slice(&200u32.to_be_bytes()); // a plausible length, garbage body
    assert_bad_request(send_raw(&conn, &random).await, "random bytes");

    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[1, 2, 3]);
    assert_bad_request(send_raw(&conn, &truncated).await, "truncated frame");

    let mut huge = u32::MAX.to_be_bytes().to_vec();
    huge.extend_from_slice(&[0; 64]);
    assert_bad_request(send_raw(&conn, &huge).await, "4 GiB frame");
    assert_bad_request(send_raw(&conn, &[0, 0]).await, "half a length prefix");

    let grown = rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 64 * 1024,
        "RSS grew by {grown} KiB after malformed frames"
    );
    assert_serves(&friend, &node, "after malformed streams").await;

    // Repeated abuse on one connection: it is closed with the protocol error code.
    for _ in 0..8 {
        let _ = send_raw(&conn, &huge).await;
    }
    let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("connection closed");
    assert!(
        matches!(&reason, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == floe_net::codes::PROTOCOL),
        "{reason}"
    );
    assert_serves(&friend, &node, "after closing the abusive connection").await;
}

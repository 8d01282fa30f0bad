//! Receiving snapshots: an announced size above the limit is refused before anything is written,
//! a transfer cut off by its deadline leaves no file behind, and files left in `incoming/` by a
//! previous process are deleted at start.

mod raftnet;

use std::path::Path;
use std::time::Duration;

use floe_net::{Target, Transport, TransportConfig};
use floe_proto::raft::{SnapshotHeader, SnapshotResponse};
use floe_proto::{ErrorKind, Open, WireError};
use raft_store::types::{SnapshotMeta, Vote};
use raftnet::*;

fn any_addr() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// Announce a snapshot of `size` bytes to `node`, send `sent` bytes of it without finishing,
/// and return the node's answer (waiting at most `wait`).
async fn announce(
    from: &Transport,
    node: &TestNode,
    size: u64,
    sent: usize,
    wait: Duration,
) -> Result<SnapshotResponse, WireError> {
    let header = SnapshotHeader {
        vote: Vote::new(1, 2),
        meta: SnapshotMeta::default(),
        size,
    };
    let target = Target::node(node.id, node.addr);
    let mut s = from
        .open_stream(&target, &Open::Snapshot(header))
        .await
        .expect("open snapshot stream");
    s.send.write_all(&vec![0u8; sent]).await.expect("send");
    tokio::time::timeout(wait, s.recv_frame::<Result<SnapshotResponse, WireError>>())
        .await
        .expect("the node answers")
        .expect("an answer frame")
        .expect("not the end of the stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_snapshot_announcement_is_refused_up_front() {
    init_tracing();
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TransportConfig::default().max_snapshot_bytes(1 << 20);
    let node = start_node_with(&pki, 1, dir.path(), any_addr(), config).await;
    let peer = Transport::bind(TransportConfig::default(), &pki.node(2)).expect("bind");

    let answer = announce(&peer, &node, (1 << 20) + 1, 1024, Duration::from_secs(10)).await;
    match answer {
        Err(WireError {
            kind: ErrorKind::BadRequest,
            message,
        }) => assert!(message.contains("exceeds the maximum"), "{message}"),
        other => panic!("oversized snapshot not refused: {other:?}"),
    }
    assert!(files_in(&dir.path().join("incoming")).is_empty());
    assert!(
        TransportConfig::default()
            .max_snapshot_bytes(0)
            .validate()
            .is_err()
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_cut_off_by_its_deadline_leaves_no_file() {
    init_tracing();
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TransportConfig::default().snapshot_timeout(Duration::from_millis(500));
    let node = start_node_with(&pki, 1, dir.path(), any_addr(), config).await;
    let peer = Transport::bind(TransportConfig::default(), &pki.node(2)).expect("bind");

    let answer = announce(&peer, &node, 1 << 20, 4096, Duration::from_secs(10)).await;
    assert!(
        matches!(
            answer,
            Err(WireError {
                kind: ErrorKind::Timeout,
                ..
            })
        ),
        "{answer:?}"
    );
    // The file is removed before the answer is sent.
    let left = files_in(&dir.path().join("incoming"));
    assert!(left.is_empty(), "left behind: {left:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partly_received_snapshots_are_deleted_at_start() {
    init_tracing();
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let incoming = dir.path().join("incoming");
    std::fs::create_dir_all(&incoming).expect("mkdir");
    std::fs::write(incoming.join("incoming-4242-0.snap"), vec![1u8; 4096]).expect("leftover");
    std::fs::write(incoming.join("incoming-4242-7.snap"), b"x").expect("leftover");
    std::fs::write(incoming.join("README"), b"not ours").expect("other file");

    let node = start_node(&pki, 1, dir.path(), any_addr()).await;
    assert_eq!(files_in(&incoming), vec!["README".to_string()]);
    node.stop().await;
}

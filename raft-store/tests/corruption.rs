//! Damaged data gives typed errors, never a panic; snapshots install atomically and survive a
//! restart.

use std::io::ErrorKind;
use std::path::Path;

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::TypeConfigExt;
use raft_store::types::{IOFlushed, TypeConfig, Vote};
use raft_store::{ActorId, Command, StoreConfig, StoreError, open};

use raft_store::testing::{entry, register};

/// Opens the raw sled database of a closed store and lets `f` damage it.
fn damage(dir: &Path, f: impl FnOnce(&sled::Db)) {
    let db = sled::open(dir.join("sled")).expect("raw open");
    f(&db);
    db.flush().expect("raw flush");
}

#[tokio::test]
async fn corrupt_log_entries_and_vote_give_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut log, _sm) = open(dir.path(), &StoreConfig::default()).expect("open");
        let (tx, rx) = TypeConfig::oneshot();
        log.append(
            (1..=10).map(|i| entry(i, register(i))),
            IOFlushed::signal(tx),
        )
        .await
        .expect("append");
        rx.await.expect("flushed").expect("flush ok");
        log.save_vote(&Vote::new(3, 1)).await.expect("vote");
    }
    damage(dir.path(), |db| {
        let log = db.open_tree("raft.log").expect("log tree");
        log.insert(5u64.to_be_bytes(), &b"\xff\xfe garbage"[..])
            .expect("garbage");
        let six = log.get(6u64.to_be_bytes()).expect("get").expect("entry 6");
        log.insert(6u64.to_be_bytes(), &six[..six.len() / 2])
            .expect("truncate");
        // Entry 7 stored under the wrong index.
        let eight = log.get(8u64.to_be_bytes()).expect("get").expect("entry 8");
        log.insert(7u64.to_be_bytes(), eight).expect("misplace");
        db.open_tree("raft.meta")
            .expect("meta")
            .insert("vote", &[0xffu8; 3][..])
            .expect("vote");
    });
    let (mut log, _sm) = open(dir.path(), &StoreConfig::default()).expect("reopen");
    for i in [5u64, 6, 7] {
        let err = log
            .try_get_log_entries(i..=i)
            .await
            .expect_err("corrupt entry must fail");
        assert_eq!(err.kind(), ErrorKind::InvalidData, "entry {i}: {err}");
    }
    assert_eq!(
        log.try_get_log_entries(1..=4)
            .await
            .expect("intact prefix")
            .len(),
        4
    );
    assert_eq!(
        log.read_vote().await.expect_err("corrupt vote").kind(),
        ErrorKind::InvalidData
    );
    // The store keeps serving what is intact.
    assert_eq!(
        log.get_log_state()
            .await
            .expect("state")
            .last_log_id
            .map(|l| l.index),
        Some(10)
    );
}

#[tokio::test]
async fn corrupt_state_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_log, sm) = open(dir.path(), &StoreConfig::default()).expect("open");
        sm.apply_entries(&[
            entry(1, register(1)),
            entry(
                2,
                Command::Activate {
                    actor: ActorId::new("T", "a"),
                    preferred: 1,
                },
            ),
            entry(
                3,
                Command::Commit {
                    actor: ActorId::new("T", "a"),
                    epoch: 1,
                    state: Some(b"hello".to_vec()),
                    base: None,
                    request: None,
                    acked: 0,
                    outcome: raft_store::Outcome::Reply(vec![]),
                },
            ),
        ])
        .await
        .expect("apply");
        // A later batch, so that the damaged record is not in the redo record of the last one
        // (which reopening writes again).
        sm.apply_entries(&[entry(4, register(2))])
            .await
            .expect("apply");
    }
    damage(dir.path(), |db| {
        let actors = db.open_tree("sm.0.actors").expect("actors");
        let (k, v) = actors.iter().next().expect("one actor").expect("read");
        actors.insert(k, &v[..v.len() - 3]).expect("truncate");
    });
    let (_log, sm) = open(dir.path(), &StoreConfig::default()).expect("reopen");
    let err = sm
        .view()
        .actor_state(&ActorId::new("T", "a"))
        .await
        .expect_err("corrupt state");
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                what: "actor state",
                ..
            }
        ),
        "{err}"
    );
    // A commit that must read the damaged record fails the apply with a typed error.
    let err = sm
        .apply_entries(&[entry(
            5,
            Command::Commit {
                actor: ActorId::new("T", "a"),
                epoch: 1,
                state: Some(vec![]),
                base: None,
                request: None,
                acked: 0,
                outcome: raft_store::Outcome::Reply(vec![]),
            },
        )])
        .await
        .expect_err("apply over corrupt state");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[tokio::test]
async fn snapshot_transfers_survives_restart_and_rejects_damage() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (_l, mut leader) = open(leader_dir.path(), &StoreConfig::default()).expect("open leader");
    let mut entries = vec![entry(1, register(1))];
    for i in 0..2000u64 {
        let actor = ActorId::new("T", format!("k{i}"));
        entries.push(entry(
            2 + 2 * i,
            Command::Activate {
                actor: actor.clone(),
                preferred: 1,
            },
        ));
        entries.push(entry(
            3 + 2 * i,
            Command::Commit {
                actor,
                epoch: 1,
                state: Some(i.to_le_bytes().to_vec()),
                base: None,
                request: None,
                acked: 0,
                outcome: raft_store::Outcome::Reply(vec![]),
            },
        ));
    }
    leader.apply_entries(&entries).await.expect("apply");
    let mut builder = leader.get_snapshot_builder().await;
    let snap = builder.build_snapshot().await.expect("build");
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(4001));

    // A damaged copy is refused and leaves the follower untouched.
    let bad_path = follower_dir.path().join("damaged.snap");
    let mut bytes = std::fs::read(
        leader_dir
            .path()
            .join("snapshots")
            .read_dir()
            .expect("dir")
            .next()
            .expect("file")
            .expect("entry")
            .path(),
    )
    .expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&bad_path, &bytes).expect("write");
    {
        let (_f, mut follower) =
            open(follower_dir.path(), &StoreConfig::default()).expect("open follower");
        let bad = tokio::fs::File::open(&bad_path).await.expect("open bad");
        let err = follower
            .install_snapshot(&snap.meta, bad)
            .await
            .expect_err("damaged snapshot installed");
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
        assert_eq!(follower.applied_state().await.expect("applied").0, None);
        assert!(
            follower
                .get_current_snapshot()
                .await
                .expect("current")
                .is_none()
        );

        let good = leader
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("leader has one");
        follower
            .install_snapshot(&good.meta, good.snapshot)
            .await
            .expect("install");
    }
    // After a restart the follower has the leader's state and the snapshot.
    let (_f, mut follower) =
        open(follower_dir.path(), &StoreConfig::default()).expect("reopen follower");
    assert_eq!(
        follower.applied_state().await.expect("applied").0,
        snap.meta.last_log_id
    );
    assert_eq!(
        follower
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("snapshot")
            .meta,
        snap.meta
    );
    let view = follower.view();
    for i in [0u64, 777, 1999] {
        let st = view
            .actor_state(&ActorId::new("T", format!("k{i}")))
            .await
            .expect("state")
            .expect("present");
        assert_eq!(st.state, i.to_le_bytes().to_vec());
        assert_eq!(
            view.owner(&ActorId::new("T", format!("k{i}")))
                .await
                .expect("owner")
                .map(|p| p.epoch),
            Some(1)
        );
    }
    // Exactly one snapshot file is kept.
    assert_eq!(
        follower_dir
            .path()
            .join("snapshots")
            .read_dir()
            .expect("dir")
            .count(),
        1
    );
}

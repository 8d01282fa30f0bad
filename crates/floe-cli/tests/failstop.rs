//! Fail-stop: a node whose storage fails (an fsync answering EIO) logs why and exits non-zero at
//! once, so that its supervisor can restart it; the others go on serving.
//!
//! The fault hook exists only in a test-only build of `floe` (feature `fault-injection`), made
//! here by a cargo invocation of its own into its own target directory, so that feature
//! unification can never switch it on in the normal binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use floe::builtin::{Counter, Increment, Value};

/// Build `floe` with the storage fault hook; returns the executable.
fn faulty_floe() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("workspace root");
    let target = workspace.join("target").join("selftest");
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args(["build", "--locked", "-p", "floe-cli", "--features"])
        .arg("floe-cli/fault-injection")
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the fault-injection floe failed");
    target.join("debug").join("floe")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_the_node_at_once_and_the_others_go_on() {
    let bin = faulty_floe();
    let root = tempfile::tempdir().expect("tempdir");
    let certs = Certs::create(&root.path().join("certs"), &[1, 2, 3]);
    let trigger = root.path().join("fail-fsync-now");
    let ports: Vec<(u64, u16)> = (1..=3).map(|id| (id, free_port())).collect();
    let boot = bootstrap_arg(&ports);
    let mut procs: Vec<Proc> = ports
        .iter()
        .map(|(id, port)| {
            let env = vec![(
                "FLOE_FAULT_FSYNC".to_string(),
                format!("{}-{id}", trigger.display()),
            )];
            node_with(root.path(), &certs, *id, *port, &boot, &bin, env)
        })
        .collect();
    let admin = admin_transport(&certs);
    let addrs: Vec<_> = procs.iter().map(|p| p.addr).collect();
    let s = wait_healthy(&admin, &addrs, 3, Duration::from_secs(60)).await;
    let victim = (1..=3u64)
        .find(|n| Some(*n) != s.leader)
        .expect("a follower");
    let vi = (victim - 1) as usize;
    let rest: Vec<_> = procs
        .iter()
        .filter(|p| p.id != victim)
        .map(|p| p.addr)
        .collect();
    let c = client(&certs, rest.clone()).await;
    for _ in 0..5 {
        c.actor::<Counter>("before")
            .call(Increment(1))
            .await
            .expect("write before the fault");
    }

    println!("phase 1: node {victim}'s fsync starts failing with EIO; the next write hits it");
    std::fs::write(format!("{}-{victim}", trigger.display()), b"").expect("arm the fault");
    let armed = Instant::now();
    c.actor::<Counter>("after")
        .call(Increment(1))
        .await
        .expect("a write with the fault armed commits on the other two");
    let status = loop {
        if let Some(st) = procs[vi].try_exit() {
            break st;
        }
        assert!(
            armed.elapsed() < Duration::from_secs(20),
            "node {victim} kept running after its fsync failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "node {victim} exited {status:?} {:?} after the fault",
        armed.elapsed()
    );
    assert_eq!(status.code(), Some(70), "fail-stop exits with status 70");
    let log = procs[vi].log_text();
    assert!(log.contains("fatal"), "the reason is logged:\n{log}");

    println!("phase 2: the other two keep serving, with every acknowledged write");
    assert_eq!(
        c.actor::<Counter>("before")
            .call(Value)
            .await
            .expect("read"),
        5
    );
    c.actor::<Counter>("after")
        .call(Increment(1))
        .await
        .expect("write after the fault");

    println!("phase 3: restarted without the fault, the node rejoins");
    std::fs::remove_file(format!("{}-{victim}", trigger.display())).expect("disarm");
    procs[vi].start().expect("restart");
    wait_healthy(&admin, &addrs, 3, Duration::from_secs(60)).await;
    for p in procs.iter_mut() {
        stop(p);
    }
}

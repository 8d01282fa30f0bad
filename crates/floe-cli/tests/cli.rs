//! The `floe` CLI end to end with real processes: certs, init, status, a client call, join and
//! leave of a learner, `floe dev`, and the one-line messages of bad configurations.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use floe::builtin::{Counter, Increment};

/// A minimal HTTP/1.1 GET: (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn run_ok(args: &[String]) -> String {
    let out = Command::new(FLOE).args(args).output().expect("run floe");
    assert!(
        out.status.success(),
        "floe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status_json(certs: &Certs, node: &str) -> Option<serde_json::Value> {
    let mut args = vec![
        "status".to_string(),
        "--node".into(),
        node.into(),
        "--json".into(),
    ];
    args.extend(certs.admin_args());
    let out = Command::new(FLOE).args(&args).output().expect("run floe");
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn wait_status(
    certs: &Certs,
    node: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = status_json(certs, node)
            && ok(&s)
        {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn healthy(s: &serde_json::Value, n: usize) -> bool {
    let members = s["members"].as_array().cloned().unwrap_or_default();
    members.len() == n && members.iter().all(|m| m["healthy"] == true) && !s["leader"].is_null()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_status_call_join_leave() {
    let root = tempfile::tempdir().expect("tempdir");
    let certs = Certs::create(&root.path().join("certs"), &[1, 2, 3, 4]);
    // Three nodes with no bootstrap: they wait for `floe init`.
    let admin_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
        l.local_addr().expect("addr").port()
    };
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let mut procs: Vec<Proc> = (1..=3)
        .map(|id| {
            let extra: Vec<String> = if id == 1 {
                vec!["--admin".into(), admin_addr.clone()]
            } else {
                vec![]
            };
            node(root.path(), &certs, id, free_port(), &extra)
        })
        .collect();
    let a1 = procs[0].addr.to_string();
    let voters: Vec<String> = procs
        .iter()
        .map(|p| format!("{}={}", p.id, p.addr))
        .collect();
    let mut init = vec![
        "init".to_string(),
        "--node".into(),
        a1.clone(),
        "--voter".into(),
        voters.join(","),
    ];
    init.extend(certs.admin_args());
    // The nodes may still be binding: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(FLOE).args(&init).output().expect("floe init");
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "floe init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = wait_status(&certs, &a1, "three healthy members", |s| healthy(s, 3));
    assert_eq!(s["members"].as_array().map(|m| m.len()), Some(3));

    // A client call through the cluster.
    let c = client(&certs, procs.iter().map(|p| p.addr).collect()).await;
    assert_eq!(
        c.actor::<Counter>("cli")
            .call(Increment(3))
            .await
            .expect("call"),
        3
    );

    // The admin HTTP endpoint of node 1.
    assert_eq!(http_get(&admin_addr, "/health").0, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(&admin_addr, "/ready").0 != 200 {
        assert!(Instant::now() < deadline, "node 1 never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, metrics) = http_get(&admin_addr, "/metrics");
    assert_eq!(code, 200);
    for name in [
        "floe_calls_total",
        "floe_call_seconds",
        "floe_raft_term",
        "floe_raft_applied_index",
        "floe_activations",
        "floe_placements",
        "floe_fencing_rejections_total",
        "floe_commits_total",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    let (code, cluster) = http_get(&admin_addr, "/cluster");
    assert_eq!(code, 200);
    let view: serde_json::Value = serde_json::from_str(&cluster).expect("cluster json");
    assert_eq!(
        view["members"].as_array().map(|m| m.len()),
        Some(3),
        "{cluster}"
    );

    // The table form.
    let mut status = vec!["status".to_string(), "--node".into(), a1.clone()];
    status.extend(certs.admin_args());
    let table = run_ok(&status);
    assert!(
        table.contains("leader:") && table.lines().count() >= 5,
        "{table}"
    );

    // A learner joins through `floe join`, then leaves through `floe leave`.
    let mut four = node(root.path(), &certs, 4, free_port(), &[]);
    let mut join = vec![
        "join".to_string(),
        "--node".into(),
        a1.clone(),
        "--id".into(),
        "4".into(),
        "--addr".into(),
        four.addr.to_string(),
    ];
    join.extend(certs.admin_args());
    assert!(run_ok(&join).contains("added as learner"));
    let s = wait_status(&certs, &a1, "learner healthy", |s| healthy(s, 4));
    let learner = s["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["node"] == 4).cloned())
        .expect("node 4");
    assert_eq!(learner["role"], "learner");
    let mut leave = vec![
        "leave".to_string(),
        "--node".into(),
        a1.clone(),
        "--id".into(),
        "4".into(),
    ];
    leave.extend(certs.admin_args());
    assert!(run_ok(&leave).contains("removed"));
    wait_status(&certs, &a1, "back to three", |s| healthy(s, 3));
    assert!(stop(&mut four), "node 4 did not stop cleanly");
    for p in procs.iter_mut() {
        assert!(
            stop(p),
            "node {} did not stop cleanly:\n{}",
            p.id,
            p.log_text()
        );
    }
}

#[test]
fn dev_runs_a_demo_and_stops_on_ctrl_c() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = (free_port() / 10 * 10).saturating_sub(10).max(20000);
    let out = Command::new(FLOE)
        .args([
            "dev",
            "--nodes",
            "3",
            "--demo",
            "--exit",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(root.path().join("demo"))
        .output()
        .expect("floe dev");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "floe dev failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("demo: 100 increments") && stdout.contains("stopped cleanly"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("Leader").count(), 1, "{stdout}");

    // Without --exit it runs until Ctrl-C (SIGINT), then stops cleanly.
    let base = base + 10;
    let mut child = Command::new(FLOE)
        .args([
            "dev",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(root.path().join("wait"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("floe dev");
    // A deadline for the whole exchange: a dev cluster that ignores its Ctrl-C is killed, which
    // ends its output, and the assertions below then fail instead of the test hanging.
    let pid = child.id().to_string();
    let (done, stop) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if stop.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        let ready = line.contains("press Ctrl-C");
        seen.push(line);
        if ready {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("press Ctrl-C")), "{seen:?}");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("wait");
    let _ = done.send(());
    let _ = watchdog.join();
    assert!(status.success(), "exit status {status}");
    assert!(
        rest.iter().any(|l| l.contains("stopped cleanly")),
        "{rest:?}"
    );
}

/// Run `floe node` with `args` and expect a one-line error containing `expect`.
fn bad(args: &[String], expect: &str) {
    let out = Command::new(FLOE).args(args).output().expect("run floe");
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert!(!out.status.success(), "accepted: {args:?}");
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
    assert_eq!(errors.len(), 1, "expected one error line, got: {err}");
    assert!(
        errors[0].contains(expect),
        "expected {expect:?} in: {}",
        errors[0]
    );
}

#[test]
fn bad_configurations_give_one_line_explanations() {
    let root = tempfile::tempdir().expect("tempdir");
    let certs = Certs::create(&root.path().join("certs"), &[1]);
    let base = |dir: &str| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "node".into(),
            "--id".into(),
            "1".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--data-dir".into(),
            root.path().join(dir).to_string_lossy().into_owned(),
        ];
        a.extend(certs.node_args(1));
        a
    };

    let file = root.path().join("node.toml");
    std::fs::write(&file, "id = 1\ncolour = \"red\"\n").expect("write");
    bad(
        &[
            "node".into(),
            "--config".into(),
            file.to_string_lossy().into_owned(),
        ],
        "unknown field `colour`",
    );

    let mut missing = base("d1");
    let k = missing.iter().position(|a| a == "--key").expect("--key") + 1;
    missing[k] = root.path().join("nope.key").to_string_lossy().into_owned();
    bad(&missing, "nope.key");

    let busy = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let mut in_use = base("d2");
    let l = in_use
        .iter()
        .position(|a| a == "--listen")
        .expect("--listen")
        + 1;
    in_use[l] = busy.local_addr().expect("addr").to_string();
    bad(&in_use, "in use");

    let other = root.path().join("other-certs");
    Certs::create(&other, &[1]);
    let d3 = root.path().join("d3");
    std::fs::create_dir_all(&d3).expect("dir");
    std::fs::write(d3.join("cluster-ca"), "deadbeef\n").expect("marker");
    bad(&base("d3"), "belongs to another cluster");

    bad(
        &["node".into(), "--id".into(), "1".into()],
        "missing setting: listen",
    );
}

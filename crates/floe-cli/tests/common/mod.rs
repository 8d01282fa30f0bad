//! Real `floe` processes on loopback, driven through the `floe` CLI and the client library.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use floe::TlsMaterial;
use floe_client::admin::Admin;
use floe_client::{Client, ClientConfig, StatusReport};
use floe_net::TransportConfig;
use floe_net::certs::TlsFiles;
pub use floe_testkit::process::{NodeProcess, bootstrap_list, free_port};

pub const FLOE: &str = env!("CARGO_BIN_EXE_floe");

/// Run `floe args...` to completion.
pub fn floe(args: &[&str]) -> Output {
    Command::new(FLOE).args(args).output().expect("run floe")
}

/// A cluster's certificates, made with `floe certs`.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    pub fn create(dir: &Path, nodes: &[u64]) -> Self {
        let d = dir.to_str().expect("utf-8 path");
        assert!(floe(&["certs", "ca", "--dir", d]).status.success());
        for id in nodes {
            let out = floe(&["certs", "node", "--dir", d, "--id", &id.to_string()]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            floe(&["certs", "client", "--dir", d, "--name", "tester"])
                .status
                .success()
        );
        assert!(
            floe(&["certs", "admin", "--dir", d, "--name", "ops"])
                .status
                .success()
        );
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn node_args(&self, id: u64) -> Vec<String> {
        let p = |f: String| self.dir.join(f).to_string_lossy().into_owned();
        vec![
            "--ca".into(),
            p("ca.pem".into()),
            "--cert".into(),
            p(format!("node-{id}.pem")),
            "--key".into(),
            p(format!("node-{id}.key")),
        ]
    }

    pub fn admin_args(&self) -> Vec<String> {
        let p = |f: &str| self.dir.join(f).to_string_lossy().into_owned();
        vec![
            "--ca".into(),
            p("ca.pem"),
            "--cert".into(),
            p("admin-ops.pem"),
            "--key".into(),
            p("admin-ops.key"),
        ]
    }

    pub fn files(&self, stem: &str) -> TlsFiles {
        TlsFiles {
            ca: self.dir.join("ca.pem"),
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }

    pub fn client_tls(&self) -> TlsMaterial {
        TlsMaterial::load(&self.files("client-tester")).expect("client tls")
    }

    pub fn admin_tls(&self) -> TlsMaterial {
        TlsMaterial::load(&self.files("admin-ops")).expect("admin tls")
    }
}

/// One `floe node` process.
pub type Proc = NodeProcess;

/// Start node `id` of this build's `floe` on loopback `port`.
pub fn node(root: &Path, certs: &Certs, id: u64, port: u16, extra: &[String]) -> Proc {
    node_with(root, certs, id, port, extra, Path::new(FLOE), Vec::new())
}

/// Start node `id` of executable `bin` with `env` added to its environment.
pub fn node_with(
    root: &Path,
    certs: &Certs,
    id: u64,
    port: u16,
    extra: &[String],
    bin: &Path,
    env: Vec<(String, String)>,
) -> Proc {
    let mut p = NodeProcess::new(
        bin,
        root,
        id,
        port,
        &certs.files(&format!("node-{id}")),
        extra,
    );
    for (k, v) in env {
        p = p.env(&k, &v);
    }
    p.start().expect("start floe node");
    p
}

/// SIGTERM and wait (20 s at most); whether it exited cleanly.
pub fn stop(p: &mut Proc) -> bool {
    p.stop(Duration::from_secs(20))
}

pub fn bootstrap_arg(procs: &[(u64, u16)]) -> Vec<String> {
    vec!["--bootstrap".into(), bootstrap_list(procs)]
}

/// Start `n` nodes that bootstrap together.
pub fn start_cluster(root: &Path, certs: &Certs, n: u64) -> Vec<Proc> {
    let ports: Vec<(u64, u16)> = (1..=n).map(|id| (id, free_port())).collect();
    let boot = bootstrap_arg(&ports);
    ports
        .iter()
        .map(|(id, port)| node(root, certs, *id, *port, &boot))
        .collect()
}

pub async fn status(admin: &Admin, at: SocketAddr) -> Option<StatusReport> {
    admin.status(at).await.ok()
}

/// Wait until a node answers with a leader and `alive` live members.
pub async fn wait_healthy(
    admin: &Admin,
    nodes: &[SocketAddr],
    alive: usize,
    limit: Duration,
) -> StatusReport {
    let deadline = Instant::now() + limit;
    loop {
        for n in nodes {
            if let Some(s) = status(admin, *n).await
                && s.leader.is_some()
                && s.members.iter().filter(|m| m.alive).count() >= alive
            {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "cluster not healthy within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn admin_transport(certs: &Certs) -> Admin {
    Admin::bind(TransportConfig::default(), &certs.admin_tls())
        .expect("admin endpoint")
        .with_query_timeout(Duration::from_secs(2))
}

pub async fn client(certs: &Certs, seeds: Vec<SocketAddr>) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(ClientConfig::new(seeds.clone(), certs.client_tls())).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "client cannot connect: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

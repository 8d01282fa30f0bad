//! Real `floe` processes on loopback, driven through the `floe` CLI and the client library.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use floe::TlsMaterial;
use floe_client::admin::Admin;
use floe_client::{Client, ClientConfig, StatusReport};
use floe_net::TransportConfig;
use floe_net::certs::TlsFiles;

pub const FLOE: &str = env!("CARGO_BIN_EXE_floe");

/// Run `floe args...` to completion.
pub fn floe(args: &[&str]) -> Output {
    Command::new(FLOE).args(args).output().expect("run floe")
}

pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .expect("udp")
        .local_addr()
        .expect("addr")
        .port()
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

    fn files(&self, stem: &str) -> TlsFiles {
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
pub struct Proc {
    pub id: u64,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub child: Option<Child>,
    /// The executable (the `floe` of this build unless a test chose another).
    pub bin: PathBuf,
    /// Extra environment of the process.
    pub env: Vec<(String, String)>,
}

impl Proc {
    pub fn new(root: &Path, certs: &Certs, id: u64, port: u16, extra: &[String]) -> Self {
        Self::with_binary(root, certs, id, port, extra, Path::new(FLOE), Vec::new())
    }

    /// A node running `bin` with `env` added to its environment.
    pub fn with_binary(
        root: &Path,
        certs: &Certs,
        id: u64,
        port: u16,
        extra: &[String],
        bin: &Path,
        env: Vec<(String, String)>,
    ) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let data = root.join(format!("node-{id}"));
        let mut args: Vec<String> = vec![
            "node".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            addr.to_string(),
            "--data-dir".into(),
            data.to_string_lossy().into_owned(),
        ];
        args.extend(certs.node_args(id));
        args.extend(extra.iter().cloned());
        let log = root.join(format!("node-{id}.log"));
        let mut p = Self {
            id,
            addr,
            data,
            args,
            log,
            child: None,
            bin: bin.to_path_buf(),
            env,
        };
        p.start();
        p
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("FLOE_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn floe node");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill {sig} failed");
    }

    /// SIGTERM and wait; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = c.try_wait().expect("wait") {
                return s.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn bootstrap_arg(procs: &[(u64, u16)]) -> Vec<String> {
    let list: Vec<String> = procs
        .iter()
        .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
        .collect();
    vec!["--bootstrap".into(), list.join(",")]
}

/// Start `n` nodes that bootstrap together.
pub fn start_cluster(root: &Path, certs: &Certs, n: u64) -> Vec<Proc> {
    let ports: Vec<(u64, u16)> = (1..=n).map(|id| (id, free_port())).collect();
    let boot = bootstrap_arg(&ports);
    ports
        .iter()
        .map(|(id, port)| Proc::new(root, certs, *id, *port, &boot))
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

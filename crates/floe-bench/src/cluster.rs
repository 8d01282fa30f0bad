//! Real `floe node` processes on loopback: certificates, start, kill -9, restart, health, and a
//! guard that kills them whenever the bench stops (return, error, panic, Ctrl-C).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use floe::certs::CertificateAuthority;
use floe::{NodeId, TlsMaterial};
use floe_client::StatusReport;
use floe_client::admin::Admin;
use floe_client::{Client, ClientConfig};
use floe_net::TransportConfig;
use floe_net::certs::TlsFiles;
use floe_testkit::process::{NodeProcess, bootstrap_list};

use crate::BenchError;

/// Find the `floe` binary: `--floe-bin`, else next to this executable. Under `cargo run`
/// (`CARGO` is set) it is (re)built first with the same profile, so it is never stale.
pub fn locate_floe(explicit: Option<&Path>) -> Result<PathBuf, BenchError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(BenchError::FloeBin(format!(
                "{} does not exist",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe().map_err(|e| BenchError::io("current executable", e))?;
    let dir = exe
        .parent()
        .ok_or_else(|| BenchError::FloeBin("the executable has no directory".into()))?;
    let floe = dir.join("floe");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "floe-cli"]);
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        eprintln!("floe-bench: building the floe binary ({profile})");
        let status = cmd
            .status()
            .map_err(|e| BenchError::io("running cargo build -p floe-cli", e))?;
        if !status.success() {
            return Err(BenchError::FloeBin(format!(
                "cargo build -p floe-cli failed: {status}"
            )));
        }
    }
    if floe.is_file() {
        Ok(floe)
    } else {
        Err(BenchError::FloeBin(format!(
            "{} not found: run `cargo build --release -p floe-cli` or pass --floe-bin",
            floe.display()
        )))
    }
}

/// A free UDP port on loopback (bound and released; a race with other processes is possible
/// but unlikely).
pub fn free_port() -> Result<u16, BenchError> {
    std::panic::catch_unwind(floe_testkit::process::free_port)
        .map_err(|_| BenchError::Cluster("no free UDP port on loopback".into()))
}

/// The status as the node at `at` reports it, through the admin endpoint `admin` (1 s deadline).
pub async fn status_at(admin: &Admin, at: SocketAddr) -> Option<StatusReport> {
    admin.status(at).await.ok()
}

/// The cluster CA and the certificates of nodes, the bench client and an admin, written as PEM
/// files in a directory.
pub struct Certs {
    ca: CertificateAuthority,
    dir: PathBuf,
}

impl Certs {
    /// Create a CA in `dir` (made by the library, as `floe certs` would).
    pub fn create(dir: &Path) -> Result<Self, BenchError> {
        let ca = CertificateAuthority::create("floe-bench")?;
        ca.write(dir)?;
        Ok(Self {
            ca,
            dir: dir.to_path_buf(),
        })
    }

    /// Issue (or reuse) node `id`'s certificate; returns its files.
    pub fn node(&self, id: NodeId) -> Result<TlsFiles, BenchError> {
        let stem = format!("node-{id}");
        let files = TlsFiles {
            ca: self.dir.join("ca.pem"),
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        };
        if files.cert.is_file() && files.key.is_file() {
            return Ok(files);
        }
        Ok(self.ca.issue_node(id, &[])?.write(&self.dir, &stem)?)
    }

    /// A client certificate (what the bench drives the cluster with).
    pub fn client_tls(&self) -> Result<TlsMaterial, BenchError> {
        let files = self
            .ca
            .issue_client("bench")?
            .write(&self.dir, "client-bench")?;
        Ok(TlsMaterial::load(&files)?)
    }

    /// An admin certificate (to read the status).
    pub fn admin_tls(&self) -> Result<TlsMaterial, BenchError> {
        let files = self
            .ca
            .issue_admin("bench")?
            .write(&self.dir, "admin-bench")?;
        Ok(TlsMaterial::load(&files)?)
    }
}

/// One `floe node` process; killed (SIGKILL) and reaped when dropped.
pub type NodeProc = NodeProcess;

/// Settings of the nodes.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Idle deactivation (`--idle-timeout-ms`); long, so activations stay for the memory
    /// scenario.
    pub idle_timeout: Duration,
    /// Failure detection timeout (`--node-timeout-ms`); `None`: Floe's default.
    pub node_timeout: Option<Duration>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(24 * 3600),
            node_timeout: None,
        }
    }
}

/// A local cluster of `floe node` processes bootstrapped together.
pub struct Cluster {
    /// The nodes, ids 1..=n in order.
    pub nodes: Vec<NodeProc>,
    /// What the bench calls with.
    pub client_tls: TlsMaterial,
    admin: Admin,
}

impl Cluster {
    /// Start `n` voters under `dir` and wait until they all are members, alive, with a leader.
    pub async fn start(
        floe: &Path,
        dir: &Path,
        n: u64,
        settings: &NodeSettings,
    ) -> Result<Self, BenchError> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir.display().to_string(), e))?;
        let certs = Certs::create(&dir.join("certs"))?;
        let ports = (1..=n)
            .map(|id| Ok((id, free_port()?)))
            .collect::<Result<Vec<_>, BenchError>>()?;
        let bootstrap = bootstrap_list(&ports);
        let mut nodes = Vec::new();
        for (id, port) in &ports {
            let files = certs.node(*id)?;
            let mut args = vec![
                "--bootstrap".into(),
                bootstrap.clone(),
                "--idle-timeout-ms".into(),
                settings.idle_timeout.as_millis().to_string(),
            ];
            if let Some(t) = settings.node_timeout {
                args.extend(["--node-timeout-ms".into(), t.as_millis().to_string()]);
            }
            // `FLOE_BENCH_NODE_LOG` (a `FLOE_LOG` filter, e.g. "warn,openraft::core=info" for
            // elections) raises the nodes' log level; the logs stay with `--keep`.
            let level = std::env::var("FLOE_BENCH_NODE_LOG").unwrap_or_else(|_| "warn".into());
            let mut p =
                NodeProcess::new(floe, dir, *id, *port, &files, &args).env("FLOE_LOG", &level);
            p.start()
                .map_err(|e| BenchError::io(format!("starting {}", floe.display()), e))?;
            nodes.push(p);
        }
        let admin = Admin::bind(TransportConfig::default(), &certs.admin_tls()?)
            .map_err(|e| BenchError::Cluster(format!("admin endpoint: {e}")))?
            .with_query_timeout(Duration::from_secs(1));
        let client_tls = certs.client_tls()?;
        let mut c = Self {
            nodes,
            client_tls,
            admin,
        };
        c.wait_healthy(n as usize, Duration::from_secs(60)).await?;
        Ok(c)
    }

    /// Node `id`.
    pub fn node(&self, id: NodeId) -> Result<&NodeProc, BenchError> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| BenchError::Cluster(format!("no node {id}")))
    }

    /// Node `id`, mutably.
    pub fn node_mut(&mut self, id: NodeId) -> Result<&mut NodeProc, BenchError> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or_else(|| BenchError::Cluster(format!("no node {id}")))
    }

    /// Process ids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(NodeProc::pid).collect()
    }

    /// Largest `VmHWM` among the running nodes.
    pub fn peak_rss(&self) -> Option<u64> {
        self.pids()
            .iter()
            .filter_map(|p| crate::procfs::peak_rss(&p.to_string()))
            .max()
    }

    /// The status as `at` reports it (2 s deadline).
    pub async fn status(&self, at: SocketAddr) -> Option<StatusReport> {
        status_at(&self.admin, at).await
    }

    /// The admin endpoint (to poll the status from another task).
    pub fn admin(&self) -> Admin {
        self.admin.clone()
    }

    /// Wait until a running node reports a leader and `alive` live members.
    pub async fn wait_healthy(
        &mut self,
        alive: usize,
        limit: Duration,
    ) -> Result<StatusReport, BenchError> {
        let deadline = Instant::now() + limit;
        loop {
            for n in &mut self.nodes {
                if n.exited() {
                    return Err(BenchError::Cluster(format!(
                        "node {} exited; its log ends with:\n{}",
                        n.id,
                        n.log_tail(8)
                    )));
                }
            }
            let running: Vec<SocketAddr> = self
                .nodes
                .iter()
                .filter(|n| n.pid().is_some())
                .map(|n| n.addr)
                .collect();
            for addr in running {
                if let Some(s) = self.status(addr).await
                    && s.leader.is_some()
                    && s.members.iter().filter(|m| m.alive).count() >= alive
                {
                    return Ok(s);
                }
            }
            if Instant::now() > deadline {
                return Err(BenchError::Cluster(format!(
                    "no leader with {alive} live members within {limit:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The current leader.
    pub async fn leader(&mut self) -> Result<NodeId, BenchError> {
        let alive = self.pids().len();
        let s = self.wait_healthy(alive, Duration::from_secs(30)).await?;
        s.leader
            .ok_or_else(|| BenchError::Cluster("no leader".into()))
    }

    /// A client seeded with the given nodes (retried until one answers, 30 s at most).
    pub async fn client(&self, seeds: &[NodeId]) -> Result<Client, BenchError> {
        let addrs = seeds
            .iter()
            .map(|id| self.node(*id).map(|n| n.addr))
            .collect::<Result<Vec<_>, _>>()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Client::connect(ClientConfig::new(addrs.clone(), self.client_tls.clone())).await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() > deadline => {
                    return Err(BenchError::Cluster(format!("client cannot connect: {e}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Kill every node.
    pub fn kill_all(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

//! Cluster control: `floe node` processes in the lab's namespaces, started, killed, paused,
//! restarted, added and removed; their status through the admin API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use floe::TlsMaterial;
use floe::certs::CertificateAuthority;
use floe_client::StatusReport;
use floe_client::admin::{Admin, AdminError};
use floe_net::TransportConfig;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::net::Lab;

/// QUIC port of every node (each node has its own address).
pub const PORT: u16 = 7000;

/// libfaketime, from Debian's `libfaketime` package.
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A cluster-control failure.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Certificates could not be made or loaded.
    #[error("certificates: {0}")]
    Certs(String),
    /// A file operation failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A node process could not be started.
    #[error("starting node {0}: {1}")]
    Spawn(u64, std::io::Error),
    /// The cluster did not get healthy in time.
    #[error("{0}")]
    NotHealthy(String),
    /// An admin request failed.
    #[error("admin request {0}: {1}")]
    Admin(String, String),
    /// No free namespace slot for a new node.
    #[error("no free node slot")]
    NoSlot,
    /// libfaketime is missing.
    #[error("clock faults need libfaketime ({FAKETIME_LIB}): apt-get install faketime libfaketime")]
    NoFaketime,
}

/// Remove the nodes' data directories (`data-<id>`) under a scenario's directory.
///
/// # Errors
///
/// The path that could not be read or removed, and why.
pub fn remove_node_data(dir: &Path) -> Result<(), (std::path::PathBuf, std::io::Error)> {
    for entry in std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))? {
        let path = entry.map_err(|e| (dir.to_path_buf(), e))?.path();
        let data = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("data-"));
        if data {
            std::fs::remove_dir_all(&path).map_err(|e| (path.clone(), e))?;
        }
    }
    Ok(())
}

/// How node processes are started.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Run under libfaketime so the clock nemesis can skew the wall clock.
    pub faketime: bool,
    /// Passed to every node as `--idle-timeout-ms`: activations idle this long deactivate.
    pub idle_timeout_ms: Option<u64>,
    /// Passed to every node as `--max-message-bytes`.
    pub max_message_bytes: Option<usize>,
}

/// One node process.
#[derive(Debug)]
pub struct NodeProc {
    /// Node id.
    pub id: u64,
    /// Namespace slot.
    pub slot: u8,
    /// Whether it votes (as last set by the harness).
    pub voter: bool,
    args: Vec<String>,
    /// Its log file.
    pub log: PathBuf,
    /// Its faketime control file.
    pub faketime_file: PathBuf,
    child: Option<tokio::process::Child>,
    /// Stopped with SIGSTOP.
    pub paused: bool,
}

impl NodeProc {
    /// The QUIC address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Lab::node_ip(self.slot), PORT))
    }

    /// Whether the process runs (it may be paused).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Its pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }
}

/// The cluster under test.
pub struct Cluster {
    dir: PathBuf,
    floe_bin: PathBuf,
    ca: CertificateAuthority,
    opts: NodeOptions,
    /// The processes, by node id (members and nodes being added).
    pub nodes: BTreeMap<u64, NodeProc>,
    /// The number of voters it should have.
    pub size: usize,
    slots: u8,
    next_id: u64,
    admin: Admin,
    /// TLS of the client role.
    pub client_tls: TlsMaterial,
}

fn pem_err(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Certs(e.to_string())
}

impl Cluster {
    /// Create certificates in `dir` and start `size` voters that bootstrap together.
    pub async fn start(
        dir: &Path,
        floe_bin: &Path,
        size: usize,
        slots: u8,
        opts: NodeOptions,
    ) -> Result<Self, ClusterError> {
        if opts.faketime && !Path::new(FAKETIME_LIB).exists() {
            return Err(ClusterError::NoFaketime);
        }
        std::fs::create_dir_all(dir).map_err(|e| ClusterError::Io(dir.display().to_string(), e))?;
        // A reused output directory: the data of an earlier run belongs to another cluster (its
        // own CA), and the nodes would refuse it.
        remove_node_data(dir).map_err(|(p, e)| ClusterError::Io(p.display().to_string(), e))?;
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs)
            .map_err(|e| ClusterError::Io(certs.display().to_string(), e))?;
        let ca = CertificateAuthority::create("floe-jepsen").map_err(pem_err)?;
        ca.write(&certs).map_err(pem_err)?;
        let admin_files = ca
            .issue_admin("jepsen")
            .map_err(pem_err)?
            .write(&certs, "admin-jepsen")
            .map_err(pem_err)?;
        let client_files = ca
            .issue_client("jepsen")
            .map_err(pem_err)?
            .write(&certs, "client-jepsen")
            .map_err(pem_err)?;
        let admin_tls = TlsMaterial::load(&admin_files).map_err(pem_err)?;
        let client_tls = TlsMaterial::load(&client_files).map_err(pem_err)?;
        let admin = Admin::bind(
            TransportConfig::default().listen(SocketAddr::from((Lab::client_ip(), 0))),
            &admin_tls,
        )
        .map_err(pem_err)?
        .with_query_timeout(Duration::from_secs(1))
        .with_change_timeout(Duration::from_secs(20));
        let mut c = Self {
            dir: dir.to_path_buf(),
            floe_bin: floe_bin.to_path_buf(),
            ca,
            opts,
            nodes: BTreeMap::new(),
            size,
            slots,
            next_id: 1,
            admin,
            client_tls,
        };
        let boot: Vec<String> = (1..=size as u8)
            .map(|s| format!("{s}={}:{PORT}", Lab::node_ip(s)))
            .collect();
        let boot = boot.join(",");
        for slot in 1..=size as u8 {
            let id = c.next_id;
            c.next_id += 1;
            c.create_node(id, slot, true, &["--bootstrap".into(), boot.clone()])?;
        }
        c.wait_healthy(Duration::from_secs(60)).await?;
        Ok(c)
    }

    fn create_node(
        &mut self,
        id: u64,
        slot: u8,
        voter: bool,
        extra: &[String],
    ) -> Result<(), ClusterError> {
        let certs = self.dir.join("certs");
        let files = self
            .ca
            .issue_node(id, &[])
            .map_err(pem_err)?
            .write(&certs, &format!("node-{id}"))
            .map_err(pem_err)?;
        let data = self.dir.join(format!("data-{id}"));
        let addr = SocketAddr::from((Lab::node_ip(slot), PORT));
        let mut args = floe_testkit::process::node_args(id, addr, &data, &files);
        if let Some(ms) = self.opts.idle_timeout_ms {
            args.extend(["--idle-timeout-ms".into(), ms.to_string()]);
        }
        if let Some(n) = self.opts.max_message_bytes {
            args.extend(["--max-message-bytes".into(), n.to_string()]);
        }
        args.extend(extra.iter().cloned());
        let faketime_file = self.dir.join(format!("node-{id}.faketime"));
        std::fs::write(&faketime_file, "+0 x1\n")
            .map_err(|e| ClusterError::Io(faketime_file.display().to_string(), e))?;
        let mut p = NodeProc {
            id,
            slot,
            voter,
            args,
            log: self.dir.join(format!("node-{id}.log")),
            faketime_file,
            child: None,
            paused: false,
        };
        self.spawn(&mut p)?;
        self.nodes.insert(id, p);
        Ok(())
    }

    fn spawn(&self, p: &mut NodeProc) -> Result<(), ClusterError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .map_err(|e| ClusterError::Io(p.log.display().to_string(), e))?;
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &Lab::node_ns(p.slot)])
            .arg(&self.floe_bin)
            .args(&p.args)
            .env(
                "FLOE_LOG",
                std::env::var("FLOE_JEPSEN_NODE_LOG")
                    .unwrap_or_else(|_| "info,openraft=error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        if self.opts.faketime {
            cmd.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME_TIMESTAMP_FILE", &p.faketime_file)
                .env("FAKETIME_NO_CACHE", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = cmd.spawn().map_err(|e| ClusterError::Spawn(p.id, e))?;
        p.child = Some(child);
        p.paused = false;
        Ok(())
    }

    /// Every slot's address (clients use them all as seeds: slots are reused by new nodes).
    pub fn seed_addrs(&self) -> Vec<SocketAddr> {
        (1..=self.slots)
            .map(|s| SocketAddr::from((Lab::node_ip(s), PORT)))
            .collect()
    }

    /// Ids of nodes whose process runs and is not paused.
    pub fn live_ids(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.running() && !n.paused)
            .map(|n| n.id)
            .collect()
    }

    /// Ids of voters.
    pub fn voter_ids(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.voter)
            .map(|n| n.id)
            .collect()
    }

    /// SIGKILL node `id` and reap it; returns whether it died of SIGKILL.
    pub async fn kill(&mut self, id: u64) -> bool {
        let Some(p) = self.nodes.get_mut(&id) else {
            return false;
        };
        let Some(mut child) = p.child.take() else {
            return false;
        };
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
        }
        let _ = child.start_kill();
        p.paused = false;
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(Ok(status)) => {
                use std::os::unix::process::ExitStatusExt;
                status.signal() == Some(9)
            }
            _ => false,
        }
    }

    /// SIGKILL nodes `ids` at once (every signal is sent before any process is reaped); returns
    /// for each whether it died of SIGKILL.
    pub async fn kill_together(&mut self, ids: &[u64]) -> Vec<(u64, bool)> {
        let mut children = Vec::new();
        for id in ids {
            let Some(p) = self.nodes.get_mut(id) else {
                children.push((*id, None));
                continue;
            };
            let mut child = p.child.take();
            if let Some(c) = child.as_mut() {
                if let Some(pid) = c.id() {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                }
                let _ = c.start_kill();
            }
            p.paused = false;
            children.push((*id, child));
        }
        let mut out = Vec::new();
        for (id, child) in children {
            let died = match child {
                Some(mut c) => matches!(
                    tokio::time::timeout(Duration::from_secs(10), c.wait()).await,
                    Ok(Ok(status)) if {
                        use std::os::unix::process::ExitStatusExt;
                        status.signal() == Some(9)
                    }
                ),
                None => false,
            };
            out.push((id, died));
        }
        out
    }

    /// Start node `id` again with the same data directory.
    pub fn restart(&mut self, id: u64) -> Result<(), ClusterError> {
        let Some(mut p) = self.nodes.remove(&id) else {
            return Ok(());
        };
        let res = if p.child.is_none() {
            self.spawn(&mut p)
        } else {
            Ok(())
        };
        self.nodes.insert(id, p);
        res
    }

    /// SIGSTOP node `id`; returns whether every thread is now stopped.
    pub async fn pause(&mut self, id: u64) -> bool {
        let Some(p) = self.nodes.get_mut(&id) else {
            return false;
        };
        let Some(pid) = p.pid() else { return false };
        if kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).is_err() {
            return false;
        }
        p.paused = true;
        // The stop is asynchronous: wait until the kernel reports it.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if process_stopped(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// SIGCONT node `id`.
    pub fn resume(&mut self, id: u64) -> bool {
        let Some(p) = self.nodes.get_mut(&id) else {
            return false;
        };
        let Some(pid) = p.pid() else { return false };
        p.paused = false;
        kill(Pid::from_raw(pid as i32), Signal::SIGCONT).is_ok()
    }

    /// Set node `id`'s wall-clock offset (libfaketime syntax, e.g. `+12.5s`).
    pub fn set_clock(&self, id: u64, offset_secs: f64) -> Result<(), ClusterError> {
        let Some(p) = self.nodes.get(&id) else {
            return Ok(());
        };
        let tmp = p.faketime_file.with_extension("tmp");
        let text = format!("{offset_secs:+.3}s x1\n");
        std::fs::write(&tmp, text).map_err(|e| ClusterError::Io(tmp.display().to_string(), e))?;
        std::fs::rename(&tmp, &p.faketime_file)
            .map_err(|e| ClusterError::Io(p.faketime_file.display().to_string(), e))
    }

    /// The wall-clock offset node `id`'s processes see now, measured with `date` under the same
    /// libfaketime settings (seconds).
    pub fn observed_clock_offset(&self, id: u64) -> Option<f64> {
        let p = self.nodes.get(&id)?;
        let out = std::process::Command::new("date")
            .arg("+%s.%N")
            .env("LD_PRELOAD", FAKETIME_LIB)
            .env("FAKETIME_TIMESTAMP_FILE", &p.faketime_file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .output()
            .ok()?;
        let seen: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        Some(seen - real)
    }

    /// Node `id`'s status, if it answers within a second.
    pub async fn status(&self, id: u64) -> Option<StatusReport> {
        let p = self.nodes.get(&id)?;
        if !p.running() || p.paused {
            return None;
        }
        self.admin.status(p.addr()).await.ok()
    }

    /// The leader, as a node that believes it leads reports (highest term wins).
    pub async fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for id in self.live_ids() {
            if let Some(s) = self.status(id).await
                && s.state == "Leader"
                && best.is_none_or(|(t, _)| s.term > t)
            {
                best = Some((s.term, s.node));
            }
        }
        best.map(|(_, id)| id)
    }

    /// The addresses of the live nodes, to send membership changes to.
    fn seeds(&self) -> Vec<SocketAddr> {
        self.live_ids()
            .iter()
            .filter_map(|id| self.nodes.get(id))
            .map(|p| p.addr())
            .collect()
    }

    fn admin_failed(what: &str) -> impl FnOnce(AdminError) -> ClusterError + '_ {
        move |e| ClusterError::Admin(what.to_string(), e.to_string())
    }

    /// A free namespace slot.
    fn free_slot(&self) -> Option<u8> {
        (1..=self.slots).find(|s| self.nodes.values().all(|n| n.slot != *s))
    }

    /// Start a fresh node (new id, empty data) and add it as a learner. Returns its id.
    pub async fn add_learner(&mut self) -> Result<u64, ClusterError> {
        let slot = self.free_slot().ok_or(ClusterError::NoSlot)?;
        let id = self.next_id;
        self.next_id += 1;
        self.create_node(id, slot, false, &[])?;
        let addr = SocketAddr::from((Lab::node_ip(slot), PORT)).to_string();
        let added = self.admin.add_node(&self.seeds(), id, addr, false).await;
        if let Err(e) = added.map_err(Self::admin_failed("add learner")) {
            // Not added: stop it and free the slot.
            self.discard(id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Make learner `id` a voter.
    pub async fn promote(&mut self, id: u64) -> Result<(), ClusterError> {
        let Some(p) = self.nodes.get(&id) else {
            return Ok(());
        };
        let addr = p.addr().to_string();
        self.admin
            .add_node(&self.seeds(), id, addr, true)
            .await
            .map_err(Self::admin_failed("promote"))?;
        if let Some(p) = self.nodes.get_mut(&id) {
            p.voter = true;
        }
        Ok(())
    }

    /// Remove node `id` from the membership, then stop it and delete its data.
    pub async fn remove(&mut self, id: u64) -> Result<(), ClusterError> {
        self.admin
            .remove_node(&self.seeds(), id)
            .await
            .map_err(Self::admin_failed("remove"))?;
        self.discard(id).await;
        Ok(())
    }

    async fn discard(&mut self, id: u64) {
        self.kill(id).await;
        self.nodes.remove(&id);
        let _ = std::fs::remove_dir_all(self.dir.join(format!("data-{id}")));
    }

    /// The membership as the leader reports it: (voters, learners).
    pub async fn membership(&self) -> Option<(Vec<u64>, Vec<u64>)> {
        let leader = self.leader().await?;
        let s = self.status(leader).await?;
        let voters = s
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.node)
            .collect();
        let learners = s
            .members
            .iter()
            .filter(|m| !m.voter)
            .map(|m| m.node)
            .collect();
        Some((voters, learners))
    }

    /// Read the membership from the leader and make the process table agree with it: processes
    /// of nodes no longer members are stopped and wiped, voter flags updated. Returns
    /// (voters, learners).
    pub async fn sync_membership(&mut self) -> Option<(Vec<u64>, Vec<u64>)> {
        let (voters, learners) = self.membership().await?;
        let gone: Vec<u64> = self
            .nodes
            .keys()
            .filter(|id| !voters.contains(id) && !learners.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.discard(id).await;
        }
        for (id, p) in self.nodes.iter_mut() {
            p.voter = voters.contains(id);
        }
        Some((voters, learners))
    }

    /// Wait until every member process agrees on one leader and every member is alive in the
    /// directory. Returns the last status seen or a description of what is wrong.
    pub async fn wait_healthy(&self, limit: Duration) -> Result<StatusReport, ClusterError> {
        let deadline = Instant::now() + limit;
        loop {
            let why = match self.healthy_once().await {
                Ok(s) => return Ok(s),
                Err(w) => w,
            };
            if Instant::now() > deadline {
                return Err(ClusterError::NotHealthy(format!(
                    "cluster not healthy within {limit:?}: {why}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn healthy_once(&self) -> Result<StatusReport, String> {
        let mut leaders = Vec::new();
        let mut last = None;
        for (id, p) in &self.nodes {
            if !p.running() || p.paused {
                return Err(format!("node {id} is not running"));
            }
            let s = self
                .status(*id)
                .await
                .ok_or_else(|| format!("node {id} does not answer"))?;
            leaders.push(s.leader);
            last = Some(s);
        }
        let s = last.ok_or("no nodes")?;
        if leaders.iter().any(|l| l.is_none() || *l != leaders[0]) {
            return Err(format!("leaders disagree: {leaders:?}"));
        }
        let dead: Vec<u64> = s
            .members
            .iter()
            .filter(|m| !m.alive)
            .map(|m| m.node)
            .collect();
        if !dead.is_empty() {
            return Err(format!("members not alive in the directory: {dead:?}"));
        }
        if s.members.len() != self.nodes.len() {
            return Err(format!(
                "{} members, {} processes",
                s.members.len(),
                self.nodes.len()
            ));
        }
        Ok(s)
    }

    /// Panics of node processes in any node log (a handler panic that the runtime caught and
    /// answered is not one: see [`node_panics`]).
    pub fn panics(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (path, text) in self.logs() {
            for l in node_panics(&text) {
                out.push(format!("{}: {l}", path.display()));
            }
        }
        out
    }

    fn logs(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "log")
                    && let Ok(text) = std::fs::read_to_string(&path)
                {
                    out.push((path, text));
                }
            }
        }
        out
    }

    /// Whether some node log says the binary is a deliberately broken self-test build.
    pub fn self_test_build(&self) -> bool {
        !self.log_lines(|l| l.contains(SELF_TEST_MARK)).is_empty()
    }

    fn log_lines(&self, want: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for (path, text) in self.logs() {
            for l in text.lines().filter(|l| want(l)) {
                out.push(format!("{}: {l}", path.display()));
            }
        }
        out
    }

    /// Stop every process: resume paused ones, SIGTERM, then SIGKILL after a grace period.
    pub async fn shutdown(&mut self) {
        for p in self.nodes.values_mut() {
            if let Some(pid) = p.pid() {
                let pid = Pid::from_raw(pid as i32);
                let _ = kill(pid, Signal::SIGCONT);
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
        for p in self.nodes.values_mut() {
            if let Some(mut c) = p.child.take()
                && tokio::time::timeout(Duration::from_secs(10), c.wait())
                    .await
                    .is_err()
            {
                let _ = c.start_kill();
                let _ = c.wait().await;
            }
        }
        self.admin
            .transport()
            .shutdown(Duration::from_millis(200))
            .await;
    }
}

/// What a self-test build of `floe` logs at start (`floe-cli`'s `unsafe-self-test-*` features).
pub const SELF_TEST_MARK: &str = "built with unsafe-self-test";

/// The runtime's warning for a handler panic it caught, rolled back and answered: the node is
/// fine, so it is no node panic.
const CAUGHT_HANDLER_PANIC: &str = "handler panicked; state rolled back";

/// The panics in a node log that are not caught handler panics. Rust's panic hook prints
/// "thread '…' panicked at …" for every panic, caught or not; the runtime then logs
/// [`CAUGHT_HANDLER_PANIC`] for each one it caught. Each such line accounts for the nearest
/// unaccounted panic line before it; the panic lines left over are the node's own panics.
pub fn node_panics(log: &str) -> Vec<String> {
    let mut open: Vec<&str> = Vec::new();
    for l in log.lines() {
        if l.contains(CAUGHT_HANDLER_PANIC) {
            open.pop();
        } else if l.contains("panicked") {
            open.push(l);
        }
    }
    open.into_iter().map(str::to_string).collect()
}

/// Whether every thread of `pid` is stopped (state `T`).
fn process_stopped(pid: u32) -> bool {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for t in rd.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            return false;
        };
        // The state follows the parenthesized command name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if state != Some("T") {
            return false;
        }
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_handler_panic_is_not_a_node_panic() {
        let caught = "thread 'tokio-runtime-worker' panicked at crates/app/src/a.rs:1:2:\nboom\n\
                      INFO other\n\
                      WARN floe::runtime: handler panicked; state rolled back actor=x panic=boom\n";
        assert!(node_panics(caught).is_empty());
        let real = format!(
            "{caught}thread 'main' panicked at crates/floe/src/b.rs:3:4:\nindex out of bounds\n"
        );
        let found = node_panics(&real);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("b.rs"));
        assert!(node_panics("INFO starting node\n").is_empty());
    }
}

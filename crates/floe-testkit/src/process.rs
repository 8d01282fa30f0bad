//! `floe node` processes: started with an id, an address, a data directory and certificates,
//! logging to a file; killed, signalled, stopped and restarted.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use floe::certs::TlsFiles;

/// A free UDP port on loopback (it may be taken again before it is used, but rarely is).
///
/// # Panics
/// If no socket can be bound.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind a UDP socket on loopback")
}

/// The `--bootstrap` value for nodes `(id, port)` on loopback.
pub fn bootstrap_list(nodes: &[(u64, u16)]) -> String {
    nodes
        .iter()
        .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The arguments of `floe node` for node `id` listening on `listen`, with its data in `data`
/// and the certificate `tls`.
pub fn node_args(id: u64, listen: SocketAddr, data: &Path, tls: &TlsFiles) -> Vec<String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        "node".into(),
        "--id".into(),
        id.to_string(),
        "--listen".into(),
        listen.to_string(),
        "--data-dir".into(),
        path(data),
        "--ca".into(),
        path(&tls.ca),
        "--cert".into(),
        path(&tls.cert),
        "--key".into(),
        path(&tls.key),
    ]
}

/// One `floe node` process; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    /// Node id.
    pub id: u64,
    /// Its QUIC address.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data: PathBuf,
    /// Its log (standard error).
    pub log: PathBuf,
    /// The executable.
    pub bin: PathBuf,
    /// Its arguments (`node ...`).
    pub args: Vec<String>,
    /// Environment added to the process's.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl NodeProcess {
    /// A node `id` of executable `bin` listening on loopback `port`, with its data and log in
    /// `root`, the certificate `tls`, and `extra` arguments. Not started yet.
    pub fn new(
        bin: &Path,
        root: &Path,
        id: u64,
        port: u16,
        tls: &TlsFiles,
        extra: &[String],
    ) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let data = root.join(format!("node-{id}"));
        let mut args = node_args(id, addr, &data, tls);
        args.extend(extra.iter().cloned());
        Self {
            id,
            addr,
            data,
            log: root.join(format!("node-{id}.log")),
            bin: bin.to_path_buf(),
            args,
            env: vec![("FLOE_LOG".into(), "info,openraft=warn".into())],
            child: None,
        }
    }

    /// Set `key=value` in its environment (for the next start).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// Start (or restart) the process with its arguments and data directory; its standard
    /// error is appended to the log.
    ///
    /// # Errors
    /// If the log cannot be opened or the executable not started.
    pub fn start(&mut self) -> std::io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send signal `sig` (as `kill` names it, e.g. `-STOP`); false if not running or refused.
    pub fn signal(&self, sig: &str) -> bool {
        let Some(pid) = self.pid() else { return false };
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGTERM, and wait up to `grace` for it to exit (SIGKILL after); whether it exited
    /// cleanly.
    pub fn stop(&mut self, grace: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        loop {
            match c.try_wait() {
                Ok(Some(s)) => return s.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return false;
                }
            }
        }
    }

    /// How it exited, if it exited on its own (it is reaped then); `None` while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// Whether it exited on its own; reaps it if so.
    pub fn exited(&mut self) -> bool {
        self.try_exit().is_some()
    }

    /// Its whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of its log (for error messages).
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

//! The limits of the machine, measured in the same run as Floe: a raw quinn stream round trip
//! and pipelined throughput against an echo server in its own process (same TLS 1.3 mutual
//! authentication, same QUIC settings, same bytes as a Floe call), and raw sled
//! `insert` + `flush` + `fdatasync` on the same disk as the nodes' data.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe::builtin::{Echo, Ping};
use floe::{Actor, Message, RequestId, TlsMaterial};
use floe_net::certs::TlsFiles;
use floe_net::tls::{client_config, server_config};
use floe_proto::codec::{DEFAULT_MAX_FRAME, encode_frame};
use floe_proto::{CallRequest, Open, Request};

use crate::cluster::Certs;
use crate::load::{Limit, drive};
use crate::procfs::CpuSample;
use crate::report::Case;
use crate::{BenchError, Opts};

/// Node id in the echo server's certificate.
const ECHO_ID: u64 = 99;
/// Deadline of one raw exchange.
const RAW_DEADLINE: Duration = Duration::from_secs(5);

/// The baselines every scenario compares with.
#[derive(Debug, Clone)]
pub struct Baselines {
    /// Raw quinn, one exchange in flight.
    pub rtt: Case,
    /// Raw quinn, 64 exchanges in flight on one connection.
    pub pipelined: Case,
    /// Raw sled, one 120 B insert + flush + fdatasync at a time.
    pub sled_1: Case,
    /// Raw sled, 256 inserts + flush + fdatasync at a time.
    pub sled_256: Case,
    /// Raw sled, three dbs each doing one insert + flush + fdatasync at a time.
    pub sled_1x3: Case,
}

/// QUIC settings identical to floe-net's (`TransportConfig::default()`).
fn quic_transport() -> Arc<quinn::TransportConfig> {
    let d = floe_net::TransportConfig::default();
    let mut t = quinn::TransportConfig::default();
    if let Ok(idle) = quinn::IdleTimeout::try_from(d.idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    t.keep_alive_interval(Some(d.keep_alive));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(d.max_streams));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    Arc::new(t)
}

/// The frame a Floe client sends for one `Echo` call: the raw exchange carries the same bytes.
pub fn echo_call_frame() -> Result<Vec<u8>, BenchError> {
    let req = Request::from(CallRequest {
        actor: floe::ActorId::new(Echo::NAME, "e-0"),
        message: Ping::NAME.to_string(),
        payload: floe::wire::encode_message("Ping", &Ping(1))
            .map_err(|e| BenchError::Call(e.to_string()))?,
        request: RequestId::new(1, 1),
        timeout_ms: 5000,
        chain: Vec::new(),
        hops: 0,
        acked: 0,
        retry: false,
    });
    encode_frame(&Open::Request(req), DEFAULT_MAX_FRAME)
        .map(|b| b.to_vec())
        .map_err(|e| BenchError::Call(e.to_string()))
}

/// `floe-bench echo-server`: a raw quinn echo server (one bidirectional stream per exchange;
/// reads to the end, writes the bytes back). Prints `listening <addr>` and exits when its
/// standard input closes (the bench exited).
pub async fn echo_server(files: TlsFiles) -> Result<(), BenchError> {
    let tls = TlsMaterial::load(&files)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_config(&tls)?)
        .map_err(|e| BenchError::Cluster(format!("quic server config: {e}")))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(quic_transport());
    let ep = quinn::Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| BenchError::io("binding the echo server", e))?;
    let addr = ep
        .local_addr()
        .map_err(|e| BenchError::io("echo server address", e))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {addr}").map_err(|e| BenchError::io("stdout", e))?;
        out.flush().map_err(|e| BenchError::io("stdout", e))?;
    }
    floe_testkit::load::serve_echo(&ep);
    // Exit when the parent goes away (its end of our stdin closes).
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await
    .map_err(|e| BenchError::Cluster(format!("stdin watcher: {e}")))?;
    ep.close(0u32.into(), b"bye");
    Ok(())
}

/// The echo server child process; killed when dropped.
struct EchoProc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for EchoProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_echo(certs: &Certs) -> Result<EchoProc, BenchError> {
    let files = certs.node(ECHO_ID)?;
    let exe = std::env::current_exe().map_err(|e| BenchError::io("current executable", e))?;
    let p = |p: &Path| p.to_string_lossy().into_owned();
    let mut child = Command::new(exe)
        .args([
            "echo-server",
            "--ca",
            &p(&files.ca),
            "--cert",
            &p(&files.cert),
            "--key",
            &p(&files.key),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| BenchError::io("starting the echo server", e))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Cluster("echo server has no stdout".into()))?;
    // Own the child first, so it is killed whatever happens below.
    let mut proc = EchoProc {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let line = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        }),
    )
    .await
    .map_err(|_| BenchError::Cluster("echo server did not start within 10 s".into()))?
    .map_err(|e| BenchError::Cluster(format!("echo server reader: {e}")))?
    .map_err(|e| BenchError::io("reading the echo server's address", e))?;
    proc.addr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| BenchError::Cluster(format!("echo server said {line:?}")))?;
    Ok(proc)
}

async fn raw_exchange(conn: &quinn::Connection, frame: &[u8]) -> Result<(), String> {
    let fut = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(frame).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        let back = recv.read_to_end(1 << 16).await.map_err(|e| e.to_string())?;
        if back.len() == frame.len() {
            Ok(())
        } else {
            Err(format!("echoed {} of {} bytes", back.len(), frame.len()))
        }
    };
    tokio::time::timeout(RAW_DEADLINE, fut)
        .await
        .map_err(|_| format!("no echo within {RAW_DEADLINE:?}"))?
}

/// A raw quinn client connected to an echo server process, ready to measure.
pub struct RawQuinn {
    server: EchoProc,
    ep: quinn::Endpoint,
    conn: quinn::Connection,
    frame: Arc<[u8]>,
}

impl RawQuinn {
    /// Start an echo server process with a certificate from `certs` and connect to it with
    /// `client_tls`.
    pub async fn start(certs: &Certs, client_tls: &TlsMaterial) -> Result<Self, BenchError> {
        let server = spawn_echo(certs).await?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_config(client_tls)?)
            .map_err(|e| BenchError::Cluster(format!("quic client config: {e}")))?;
        let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
        cc.transport_config(quic_transport());
        let mut ep = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| BenchError::io("raw quinn client", e))?;
        ep.set_default_client_config(cc);
        let conn = tokio::time::timeout(
            RAW_DEADLINE,
            ep.connect(server.addr, &floe_net::certs::node_server_name(ECHO_ID))
                .map_err(|e| BenchError::Cluster(format!("raw connect: {e}")))?,
        )
        .await
        .map_err(|_| BenchError::Cluster("raw quinn handshake timed out".into()))?
        .map_err(|e| BenchError::Cluster(format!("raw quinn handshake: {e}")))?;
        let raw = Self {
            server,
            ep,
            conn,
            frame: echo_call_frame()?.into(),
        };
        drive(
            "raw quinn warm-up",
            1,
            Limit::Time(Duration::from_millis(300)),
            raw.op(),
        )
        .await;
        Ok(raw)
    }

    fn op(
        &self,
    ) -> impl Fn(usize, u64) -> futures_lite::BoxedExchange + Send + Sync + Clone + 'static {
        let (conn, frame) = (self.conn.clone(), self.frame.clone());
        move |_, _| {
            let (conn, frame) = (conn.clone(), frame.clone());
            Box::pin(async move { raw_exchange(&conn, &frame).await })
        }
    }

    /// `inflight` exchanges at a time on the one connection for the case duration; the case is
    /// filed under `scenario`.
    pub async fn measure(&self, opts: &Opts, scenario: &str, inflight: usize) -> Case {
        let pid = [self.server.child.id()];
        let name = format!("raw quinn, {inflight} in flight");
        let before = CpuSample::take(&pid);
        let run = drive(
            &format!("{scenario}: {name}"),
            inflight,
            Limit::Time(opts.duration()),
            self.op(),
        )
        .await;
        let after = CpuSample::take(&pid);
        let peak = crate::procfs::peak_rss(&pid[0].to_string());
        let mut c = run.into_case(scenario, name, Some((&before, &after)), peak);
        c.note = Some(format!(
            "baseline: echo server process, {} B frames (a Floe echo call)",
            self.frame.len()
        ));
        c
    }

    /// Close the connection and stop the server.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"done");
        self.ep.wait_idle().await;
    }
}

/// Boxed future type of one raw exchange.
mod futures_lite {
    /// One raw exchange.
    pub type BoxedExchange =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;
}

/// Open a sled db like raft-store does, and its db file for `fdatasync`.
fn open_sled(dir: &Path) -> Result<(sled::Db, std::fs::File), BenchError> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(256 << 20)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| BenchError::Cluster(format!("sled {}: {e}", dir.display())))?;
    let file = std::fs::File::open(dir.join("db"))
        .map_err(|e| BenchError::io(format!("{}/db", dir.display()), e))?;
    Ok((db, file))
}

/// `batch` inserts of 120 B, `flush()`, `fdatasync`, repeated until `budget` from `start`;
/// returns the entries written and the latency of each flush.
fn sled_loop(
    db: &sled::Db,
    file: &std::fs::File,
    batch: u64,
    start: Instant,
    budget: Duration,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<(u64, Vec<Duration>), BenchError> {
    let value = vec![7u8; 120];
    let (mut next, mut lat) = (0u64, Vec::new());
    while start.elapsed() < budget {
        let t = Instant::now();
        for _ in 0..batch {
            db.insert(next.to_be_bytes(), value.as_slice())
                .map_err(|e| BenchError::Cluster(format!("sled insert: {e}")))?;
            next += 1;
        }
        db.flush()
            .map_err(|e| BenchError::Cluster(format!("sled flush: {e}")))?;
        file.sync_data()
            .map_err(|e| BenchError::io("fdatasync", e))?;
        lat.push(t.elapsed());
        if let Some(b) = bar {
            b.set_position(start.elapsed().as_millis() as u64);
        }
    }
    Ok((next, lat))
}

/// Raw sled in `dir`: `batch` inserts of 120 B, `flush()`, `fdatasync` of the db file, for
/// `budget`. Latency is per flush; ops are entries.
pub fn raw_sled(dir: &Path, batch: u64, budget: Duration) -> Result<Case, BenchError> {
    let (db, file) = open_sled(dir)?;
    let name = format!("raw sled, {batch} × insert + flush + fdatasync");
    let bar = crate::load::bar(&format!("raw sled × {batch}"), Limit::Time(budget));
    let cpu = CpuSample::take(&[]);
    let start = Instant::now();
    let (next, mut lat) = sled_loop(&db, &file, batch, start, budget, Some(&bar))?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let mut c = Case::new("baseline", name, next, secs);
    c.latency = crate::stats::Latency::from_samples(&mut lat);
    // In this process: the "client" CPU is sled's (its flusher thread included).
    (_, c.client_cpu_us_per_op) = cpu.per_op_since(&CpuSample::take(&[]), next);
    c.note = Some("in the bench process; latency per flush; ops are entries".into());
    Ok(c)
}

/// Three sled dbs on the same disk, each with its own thread doing 1 insert + flush +
/// fdatasync at a time: what three co-located voters' log appends cost when they overlap.
pub fn raw_sled_parallel(dir: &Path, dbs: usize, budget: Duration) -> Result<Case, BenchError> {
    let opened = (0..dbs)
        .map(|i| open_sled(&dir.join(format!("db-{i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let bar = crate::load::bar(&format!("raw sled × 1, {dbs} dbs"), Limit::Time(budget));
    let cpu = CpuSample::take(&[]);
    let start = Instant::now();
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = opened
            .iter()
            .enumerate()
            .map(|(i, (db, file))| {
                let bar = (i == 0).then_some(&bar);
                s.spawn(move || sled_loop(db, file, 1, start, budget, bar))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| BenchError::Cluster("sled thread panicked".into()))?
            })
            .collect::<Result<Vec<_>, BenchError>>()
    })?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let mut entries = 0;
    let mut lat = Vec::new();
    for (n, mut l) in results {
        entries += n;
        lat.append(&mut l);
    }
    let mut c = Case::new(
        "baseline",
        format!("raw sled, 1 × insert + flush + fdatasync, {dbs} dbs in parallel"),
        entries,
        secs,
    );
    c.latency = crate::stats::Latency::from_samples(&mut lat);
    (_, c.client_cpu_us_per_op) = cpu.per_op_since(&CpuSample::take(&[]), entries);
    c.note = Some("one thread per db, same disk: three co-located voters' appends".into());
    Ok(c)
}

/// Measure every baseline. `dir` is scratch space on the nodes' disk.
pub async fn measure(opts: &Opts, dir: &Path) -> Result<Baselines, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir.display().to_string(), e))?;
    let certs = Certs::create(&dir.join("certs"))?;
    let client_tls = certs.client_tls()?;
    let raw = RawQuinn::start(&certs, &client_tls).await?;
    let rtt = raw.measure(opts, "baseline", 1).await;
    let pipelined = raw.measure(opts, "baseline", 64).await;
    raw.close().await;
    let budget = opts.duration();
    let sled_dir = |n: u64| -> PathBuf { dir.join(format!("sled-{n}")) };
    let (d1, d256, d3) = (sled_dir(1), sled_dir(256), dir.join("sled-par"));
    let sled_1 = tokio::task::spawn_blocking(move || raw_sled(&d1, 1, budget))
        .await
        .map_err(|e| BenchError::Cluster(format!("sled task: {e}")))??;
    let sled_256 = tokio::task::spawn_blocking(move || raw_sled(&d256, 256, budget))
        .await
        .map_err(|e| BenchError::Cluster(format!("sled task: {e}")))??;
    let sled_1x3 = tokio::task::spawn_blocking(move || raw_sled_parallel(&d3, 3, budget))
        .await
        .map_err(|e| BenchError::Cluster(format!("sled task: {e}")))??;
    Ok(Baselines {
        rtt,
        pipelined,
        sled_1,
        sled_256,
        sled_1x3,
    })
}

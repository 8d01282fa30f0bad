//! The `floe` binary: run a node, bootstrap and change the membership, show the status, issue
//! certificates, and run a local development cluster.

mod config;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use floe::builtin::{Cas, CasOutcome, Counter, Increment, Read, Register, Value};
use floe::certs::CertificateAuthority;
use floe::{ClusterConfig, Node, RuntimeConfig, TlsMaterial};
use floe_client::admin::Admin;
use floe_client::{Client, ClientConfig};
use floe_net::TransportConfig;
use floe_net::certs::TlsFiles;

use crate::config::{ConfigError, NodeFile, bytes, millis, parse_member};

#[derive(Parser)]
#[command(
    name = "floe",
    version,
    about = "Virtual actors on a Raft-backed cluster"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node (config file, flags and FLOE_* variables; flags win).
    Node(Box<NodeArgs>),
    /// Bootstrap a new cluster from its first voters (sent to one pristine voter).
    Init(InitArgs),
    /// Add a node to a running cluster, as learner or voter.
    Join(JoinArgs),
    /// Remove a node from the cluster.
    Leave(LeaveArgs),
    /// Show the members, their roles and health, the leader, term and applied index.
    Status(StatusArgs),
    /// Create a cluster CA and issue node, client and admin certificates.
    Certs(CertsArgs),
    /// Run a local cluster on loopback with its own CA and data directories.
    Dev(DevArgs),
}

#[derive(Args)]
struct NodeArgs {
    /// TOML config file.
    #[arg(long, env = "FLOE_CONFIG")]
    config: Option<PathBuf>,
    /// Node id.
    #[arg(long, env = "FLOE_ID")]
    id: Option<u64>,
    /// QUIC address to bind.
    #[arg(long, env = "FLOE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address others reach this node at.
    #[arg(long, env = "FLOE_ADVERTISE")]
    advertise: Option<String>,
    /// Data directory.
    #[arg(long, env = "FLOE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// First voters, id=host:port, comma separated (identical on each of them).
    #[arg(long, env = "FLOE_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// Nodes of a running cluster to join through, comma separated.
    #[arg(long, env = "FLOE_JOIN", value_delimiter = ',')]
    join: Vec<SocketAddr>,
    /// Join as a voter (default: learner).
    #[arg(long, env = "FLOE_VOTER", num_args = 0..=1, default_missing_value = "true")]
    voter: Option<bool>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Failure detection timeout, milliseconds.
    #[arg(long, env = "FLOE_NODE_TIMEOUT_MS")]
    node_timeout_ms: Option<u64>,
    /// Default call deadline, milliseconds.
    #[arg(long, env = "FLOE_CALL_TIMEOUT_MS")]
    call_timeout_ms: Option<u64>,
    /// Idle deactivation, milliseconds.
    #[arg(long, env = "FLOE_IDLE_TIMEOUT_MS")]
    idle_timeout_ms: Option<u64>,
    /// Largest actor state, bytes (default 4 MiB).
    #[arg(long, env = "FLOE_MAX_STATE_BYTES")]
    max_state_bytes: Option<usize>,
    /// Largest message or reply of a call, bytes (default 1 MiB). With max_state_bytes at most
    /// the size of one replicated entry (just under 8 MiB).
    #[arg(long, env = "FLOE_MAX_MESSAGE_BYTES")]
    max_message_bytes: Option<usize>,
    /// Log format: human or json.
    #[arg(long, env = "FLOE_LOG_FORMAT")]
    log_format: Option<String>,
    /// Admin HTTP address serving /health, /ready, /metrics and /cluster.
    #[arg(long, env = "FLOE_ADMIN")]
    admin: Option<SocketAddr>,
}

#[derive(Args, Clone)]
struct TlsArgs {
    /// Cluster CA certificate (PEM).
    #[arg(long, env = "FLOE_CA")]
    ca: Option<PathBuf>,
    /// Certificate (PEM).
    #[arg(long, env = "FLOE_CERT")]
    cert: Option<PathBuf>,
    /// Private key (PEM).
    #[arg(long, env = "FLOE_KEY")]
    key: Option<PathBuf>,
}

#[derive(Args)]
struct ConnArgs {
    /// A node of the cluster (host:port).
    #[arg(long, env = "FLOE_NODE")]
    node: SocketAddr,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args)]
struct InitArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// A first voter, id=host:port (repeat, or comma separated).
    #[arg(long = "voter", required = true, value_delimiter = ',')]
    voters: Vec<String>,
}

#[derive(Args)]
struct JoinArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The new node's id.
    #[arg(long)]
    id: u64,
    /// The new node's address.
    #[arg(long)]
    addr: String,
    /// Add it as a voter (default: learner).
    #[arg(long)]
    voter: bool,
}

#[derive(Args)]
struct LeaveArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The node to remove.
    #[arg(long)]
    id: u64,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CertsArgs {
    #[command(subcommand)]
    what: CertsCmd,
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Create a CA (ca.pem, ca.key) in DIR.
    Ca {
        /// Directory for the files.
        #[arg(long)]
        dir: PathBuf,
        /// Cluster name in the CA's subject.
        #[arg(long, default_value = "floe")]
        cluster: String,
    },
    /// Issue node-ID.pem/.key, signed by the CA in DIR.
    Node {
        /// Directory holding ca.pem/ca.key; the files are written there.
        #[arg(long)]
        dir: PathBuf,
        /// Node id.
        #[arg(long)]
        id: u64,
        /// Extra DNS names or IP addresses for the certificate.
        #[arg(long = "san", value_delimiter = ',')]
        sans: Vec<String>,
    },
    /// Issue client-NAME.pem/.key (calls only).
    Client {
        /// Directory holding ca.pem/ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// Client name.
        #[arg(long)]
        name: String,
    },
    /// Issue admin-NAME.pem/.key (status and membership changes).
    Admin {
        /// Directory holding ca.pem/ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// Operator name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Args)]
struct DevArgs {
    /// Number of voters: 3 or 5.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Data and certificate directory (default: a new temporary one).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Node i listens on 127.0.0.1:(base-port + i).
    #[arg(long, default_value_t = 7400)]
    base_port: u16,
    /// Run a demo workload through the client and print the status.
    #[arg(long)]
    demo: bool,
    /// Stop after the demo instead of waiting for Ctrl-C.
    #[arg(long)]
    exit: bool,
}

/// An error printed as one line.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Msg(String),
}

fn msg(e: impl std::fmt::Display) -> CliError {
    CliError::Msg(e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("floe: error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floe: error: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.cmd {
        Cmd::Node(a) => node(*a).await,
        Cmd::Init(a) => init(a).await,
        Cmd::Join(a) => {
            connect(&a.conn)?
                .add_node(&[a.conn.node], a.id, a.addr, a.voter)
                .await
                .map_err(msg)?;
            println!(
                "node {} added as {}",
                a.id,
                if a.voter { "voter" } else { "learner" }
            );
            Ok(())
        }
        Cmd::Leave(a) => {
            connect(&a.conn)?
                .remove_node(&[a.conn.node], a.id)
                .await
                .map_err(msg)?;
            println!("node {} removed", a.id);
            Ok(())
        }
        Cmd::Status(a) => status(a).await,
        Cmd::Certs(a) => certs(a.what),
        Cmd::Dev(a) => dev(a).await,
    }
}

fn init_logging(format: &str) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG")
        .unwrap_or_else(|_| "info,openraft=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let res = match format {
        "human" => builder.try_init(),
        "json" => builder.json().try_init(),
        other => {
            return Err(ConfigError::Invalid(
                "log_format",
                format!("{other:?}: use human or json"),
            )
            .into());
        }
    };
    res.map_err(msg)
}

fn tls_files(t: &TlsArgs, file: Option<&NodeFile>) -> Result<TlsFiles, ConfigError> {
    let pick =
        |flag: &Option<PathBuf>, f: Option<&PathBuf>, name: &'static str, env: &'static str| {
            flag.clone()
                .or_else(|| f.cloned())
                .ok_or(ConfigError::Missing(name, env))
        };
    Ok(TlsFiles {
        ca: pick(&t.ca, file.and_then(|f| f.ca.as_ref()), "ca", "CA")?,
        cert: pick(&t.cert, file.and_then(|f| f.cert.as_ref()), "cert", "CERT")?,
        key: pick(&t.key, file.and_then(|f| f.key.as_ref()), "key", "KEY")?,
    })
}

/// Remember which CA a data directory belongs to; refuse a directory of another cluster.
fn check_cluster_dir(dir: &Path, ca_pem: &[u8]) -> Result<(), CliError> {
    let fingerprint = format!("{:08x}", crc32fast::hash(ca_pem));
    std::fs::create_dir_all(dir)
        .map_err(|e| msg(format!("data directory {}: {e}", dir.display())))?;
    let marker = dir.join("cluster-ca");
    match std::fs::read_to_string(&marker) {
        Ok(existing) if existing.trim() == fingerprint => Ok(()),
        Ok(existing) => Err(msg(format!(
            "data directory {} belongs to another cluster (CA {} here, {} configured); use a new directory",
            dir.display(),
            existing.trim(),
            fingerprint
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&marker, format!("{fingerprint}\n"))
                .map_err(|e| msg(format!("{}: {e}", marker.display())))
        }
        Err(e) => Err(msg(format!("{}: {e}", marker.display()))),
    }
}

async fn node(a: NodeArgs) -> Result<(), CliError> {
    let file = match &a.config {
        Some(p) => Some(NodeFile::load(p)?),
        None => None,
    };
    let f = file.clone().unwrap_or_default();
    init_logging(
        a.log_format
            .as_deref()
            .or(f.log_format.as_deref())
            .unwrap_or("human"),
    )?;
    let id = a.id.or(f.id).ok_or(ConfigError::Missing("id", "ID"))?;
    let listen = a
        .listen
        .or(f.listen)
        .ok_or(ConfigError::Missing("listen", "LISTEN"))?;
    let data_dir = a
        .data_dir
        .clone()
        .or(f.data_dir.clone())
        .ok_or(ConfigError::Missing("data_dir", "DATA_DIR"))?;
    let files = tls_files(&a.tls, file.as_ref())?;
    let tls = TlsMaterial::load(&files).map_err(msg)?;
    let ca_pem =
        std::fs::read(&files.ca).map_err(|e| msg(format!("{}: {e}", files.ca.display())))?;
    check_cluster_dir(&data_dir, &ca_pem)?;
    let bootstrap_src = if a.bootstrap.is_empty() {
        f.bootstrap.clone().unwrap_or_default()
    } else {
        a.bootstrap.clone()
    };
    let bootstrap = bootstrap_src
        .iter()
        .map(|s| parse_member(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cluster = ClusterConfig::new(listen, tls);
    cluster.advertise = a.advertise.clone().or(f.advertise.clone());
    cluster.bootstrap = bootstrap;
    cluster.join = if a.join.is_empty() {
        f.join.clone().unwrap_or_default()
    } else {
        a.join.clone()
    };
    cluster.join_as_voter = a.voter.or(f.voter).unwrap_or(false);
    // Without bootstrap or join the node waits for `floe init` or `floe join`.
    cluster.startup_timeout = Duration::from_secs(24 * 3600);
    if let Some(ms) = a.node_timeout_ms.or(f.node_timeout_ms) {
        cluster.node_timeout = millis("node_timeout_ms", ms)?;
    }
    let mut runtime = RuntimeConfig::default();
    if let Some(ms) = a.call_timeout_ms.or(f.call_timeout_ms) {
        runtime.call_timeout = millis("call_timeout_ms", ms)?;
    }
    if let Some(ms) = a.idle_timeout_ms.or(f.idle_timeout_ms) {
        runtime.idle_timeout = millis("idle_timeout_ms", ms)?;
    }
    if let Some(n) = a.max_state_bytes.or(f.max_state_bytes) {
        runtime.max_state_bytes = bytes("max_state_bytes", n)?;
    }
    if let Some(n) = a.max_message_bytes.or(f.max_message_bytes) {
        runtime.max_message_bytes = bytes("max_message_bytes", n)?;
    }
    #[cfg(feature = "unsafe-self-test-reads")]
    {
        tracing::warn!(
            "built with unsafe-self-test-reads: reads are answered without a read index; \
             this node is NOT linearizable (consistency-harness self-test only)"
        );
        runtime.unsafe_unconfirmed_reads = true;
    }
    #[cfg(feature = "unsafe-self-test-duplicates")]
    tracing::warn!(
        "built with unsafe-self-test-duplicates: retried requests are applied again; \
         this node is NOT exactly-once (consistency-harness self-test only)"
    );
    // Bind the admin port before anything else can fail half-way.
    let admin = match a.admin.or(f.admin) {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| msg(format!("admin address {addr}: {e}")))?,
        ),
        None => None,
    };
    let mut signals = ShutdownSignal::new()?;
    tracing::info!(id, %listen, data_dir = %data_dir.display(), "starting node");
    let build = Node::builder()
        .id(id)
        .data_dir(&data_dir)
        .runtime(runtime)
        .cluster(cluster)
        .register_builtins()
        .build();
    let node = tokio::select! {
        n = build => n.map_err(msg)?,
        () = signals.recv() => {
            tracing::info!("stopped before joining a cluster");
            return Ok(());
        }
    };
    tracing::info!(id, addr = ?node.addr(), incarnation = node.incarnation(), "node ready");
    let node = std::sync::Arc::new(node);
    let server = admin.map(|listener| {
        let app = admin_routes(node.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "admin endpoint stopped");
            }
        })
    });
    signals.recv().await;
    tracing::info!("shutting down");
    if let Some(s) = server {
        s.abort();
        let _ = s.await;
    }
    let node = std::sync::Arc::try_unwrap(node)
        .map_err(|_| msg("the node is still in use at shutdown"))?;
    node.shutdown().await.map_err(msg)?;
    tracing::info!("stopped");
    Ok(())
}

/// `/health` (the process is up), `/ready` (leader known and this node alive in the directory),
/// `/metrics` (OpenMetrics text), `/cluster` (the cluster view as JSON).
fn admin_routes(node: std::sync::Arc<Node>) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let ready = node.clone();
    let metrics = node.clone();
    let cluster = node;
    axum::Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/ready",
            get(move || {
                let n = ready.clone();
                async move {
                    if n.ready().await {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let n = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        n.metrics_text().await,
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/cluster",
            get(move || {
                let n = cluster.clone();
                async move { axum::Json(n.cluster().await) }
            }),
        )
}

/// SIGINT and SIGTERM, heard from the moment this is made: a signal that arrives before it is
/// awaited (say, right after "ready" is printed) is kept, not lost.
struct ShutdownSignal {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn new() -> Result<Self, CliError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(msg)?,
            term: signal(SignalKind::terminate()).map_err(msg)?,
        })
    }

    /// Wait for either signal.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

fn connect(conn: &ConnArgs) -> Result<Admin, CliError> {
    let files = tls_files(&conn.tls, None)?;
    let tls = TlsMaterial::load(&files).map_err(msg)?;
    Admin::bind(TransportConfig::default(), &tls).map_err(msg)
}

async fn init(a: InitArgs) -> Result<(), CliError> {
    let voters = a
        .voters
        .iter()
        .map(|s| parse_member(s))
        .collect::<Result<Vec<_>, _>>()?;
    connect(&a.conn)?
        .initialize(a.conn.node, voters.clone())
        .await
        .map_err(msg)?;
    println!(
        "cluster initialized with voters {}",
        voters
            .iter()
            .map(|(i, a)| format!("{i}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(())
}

#[derive(serde::Serialize)]
struct StatusRow {
    node: u64,
    addr: String,
    role: &'static str,
    state: Option<String>,
    healthy: bool,
    incarnation: Option<u64>,
    actors: u64,
    last_applied: Option<u64>,
    last_ack_ms: Option<u64>,
}

#[derive(serde::Serialize)]
struct Status {
    leader: Option<u64>,
    term: u64,
    members: Vec<StatusRow>,
}

async fn gather_status(admin: &Admin, seed: SocketAddr) -> Result<Status, CliError> {
    let first = admin.status(seed).await.map_err(msg)?;
    // The leader knows heartbeats; each member knows its own state and applied index.
    let leader_report = match first
        .leader
        .and_then(|l| first.members.iter().find(|m| m.node == l))
    {
        Some(m) if m.node != first.node => match m.addr.parse() {
            Ok(a) => admin.status(a).await.unwrap_or(first.clone()),
            Err(_) => first.clone(),
        },
        _ => first.clone(),
    };
    let mut rows = Vec::new();
    for m in &leader_report.members {
        let own = match m.addr.parse() {
            Ok(a) => admin.status(a).await.ok(),
            Err(_) => None,
        };
        rows.push(StatusRow {
            node: m.node,
            addr: m.addr.clone(),
            role: if m.voter { "voter" } else { "learner" },
            state: own.as_ref().map(|s| s.state.clone()),
            healthy: m.alive && own.is_some(),
            incarnation: m.incarnation,
            actors: m.actors,
            last_applied: own.as_ref().and_then(|s| s.last_applied),
            last_ack_ms: m.last_ack_ms,
        });
    }
    Ok(Status {
        leader: leader_report.leader,
        term: leader_report.term,
        members: rows,
    })
}

fn print_status(s: &Status) {
    println!(
        "leader: {}   term: {}",
        s.leader.map_or("none".into(), |l| l.to_string()),
        s.term
    );
    println!(
        "{:<5} {:<22} {:<8} {:<10} {:<8} {:<5} {:<7} {:<12} {:<8}",
        "node", "addr", "role", "state", "healthy", "inc", "actors", "applied", "ack ms"
    );
    for r in &s.members {
        println!(
            "{:<5} {:<22} {:<8} {:<10} {:<8} {:<5} {:<7} {:<12} {:<8}",
            r.node,
            r.addr,
            r.role,
            r.state.as_deref().unwrap_or("unreachable"),
            if r.healthy { "yes" } else { "no" },
            r.incarnation.map_or("-".into(), |i| i.to_string()),
            r.actors,
            r.last_applied.map_or("-".into(), |i| i.to_string()),
            r.last_ack_ms.map_or("-".into(), |i| i.to_string()),
        );
    }
}

async fn status(a: StatusArgs) -> Result<(), CliError> {
    let admin = connect(&a.conn)?;
    let s = gather_status(&admin, a.conn.node).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).map_err(msg)?);
    } else {
        print_status(&s);
    }
    Ok(())
}

fn certs(c: CertsCmd) -> Result<(), CliError> {
    match c {
        CertsCmd::Ca { dir, cluster } => {
            if dir.join("ca.key").exists() {
                return Err(msg(format!(
                    "{} already holds a CA; refusing to overwrite it",
                    dir.display()
                )));
            }
            CertificateAuthority::create(&cluster)
                .and_then(|ca| ca.write(&dir))
                .map_err(msg)?;
            println!("CA written to {}", dir.join("ca.pem").display());
        }
        CertsCmd::Node { dir, id, sans } => {
            let ca = CertificateAuthority::load(&dir).map_err(msg)?;
            let f = ca
                .issue_node(id, &sans)
                .and_then(|c| c.write(&dir, &format!("node-{id}")))
                .map_err(msg)?;
            println!("node {id}: {} {}", f.cert.display(), f.key.display());
        }
        CertsCmd::Client { dir, name } => {
            let ca = CertificateAuthority::load(&dir).map_err(msg)?;
            let f = ca
                .issue_client(&name)
                .and_then(|c| c.write(&dir, &format!("client-{name}")))
                .map_err(msg)?;
            println!("client {name}: {} {}", f.cert.display(), f.key.display());
        }
        CertsCmd::Admin { dir, name } => {
            let ca = CertificateAuthority::load(&dir).map_err(msg)?;
            let f = ca
                .issue_admin(&name)
                .and_then(|c| c.write(&dir, &format!("admin-{name}")))
                .map_err(msg)?;
            println!("admin {name}: {} {}", f.cert.display(), f.key.display());
        }
    }
    Ok(())
}

async fn dev(a: DevArgs) -> Result<(), CliError> {
    if a.nodes != 3 && a.nodes != 5 {
        return Err(msg("--nodes must be 3 or 5"));
    }
    let _ = init_logging("human");
    // Without --dir the cluster lives in a temporary directory, removed after a clean stop.
    let temporary = a.dir.is_none();
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("floe-dev-{}", std::process::id())),
    };
    let certs_dir = dir.join("certs");
    let ca = if certs_dir.join("ca.key").exists() {
        CertificateAuthority::load(&certs_dir).map_err(msg)?
    } else {
        let ca = CertificateAuthority::create("dev").map_err(msg)?;
        ca.write(&certs_dir).map_err(msg)?;
        ca
    };
    let load = |c: floe::certs::CertifiedKeyPem, stem: &str| -> Result<TlsMaterial, CliError> {
        let files = c.write(&certs_dir, stem).map_err(msg)?;
        TlsMaterial::load(&files).map_err(msg)
    };
    let addr_of = |i: u64| format!("127.0.0.1:{}", a.base_port as u64 + i);
    let voters: Vec<(u64, String)> = (1..=a.nodes).map(|i| (i, addr_of(i))).collect();
    let mut builds = Vec::new();
    for i in 1..=a.nodes {
        let tls = load(ca.issue_node(i, &[]).map_err(msg)?, &format!("node-{i}"))?;
        let listen: SocketAddr = addr_of(i).parse().map_err(msg)?;
        let mut c = ClusterConfig::new(listen, tls);
        c.bootstrap = voters.clone();
        let data = dir.join(format!("node-{i}"));
        builds.push(async move {
            Node::builder()
                .id(i)
                .data_dir(data)
                .cluster(c)
                .register_builtins()
                .build()
                .await
        });
    }
    let mut nodes = Vec::new();
    // Nodes start together: each waits for a quorum of the others.
    for r in futures::future::join_all(builds).await {
        nodes.push(r.map_err(msg)?);
    }
    let client_tls = load(ca.issue_client("dev").map_err(msg)?, "client-dev")?;
    load(ca.issue_admin("dev").map_err(msg)?, "admin-dev")?;
    println!(
        "floe dev: {} nodes on {}",
        a.nodes,
        voters
            .iter()
            .map(|(_, a)| a.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("data and certificates in {}", dir.display());
    let exe =
        std::env::current_exe().map_or_else(|_| "floe".to_string(), |p| p.display().to_string());
    println!(
        "status: {exe} status --node {} --ca {c}/ca.pem --cert {c}/admin-dev.pem --key {c}/admin-dev.key",
        addr_of(1),
        c = certs_dir.display()
    );
    let seeds: Vec<SocketAddr> = voters.iter().filter_map(|(_, a)| a.parse().ok()).collect();
    if a.demo {
        let client = Client::connect(ClientConfig::new(seeds.clone(), client_tls))
            .await
            .map_err(msg)?;
        demo(&client).await?;
        let admin = Admin::bind(
            TransportConfig::default(),
            &TlsMaterial::load(&TlsFiles {
                ca: certs_dir.join("ca.pem"),
                cert: certs_dir.join("admin-dev.pem"),
                key: certs_dir.join("admin-dev.key"),
            })
            .map_err(msg)?,
        )
        .map_err(msg)?;
        print_status(&gather_status(&admin, seeds[0]).await?);
        client.close().await;
    }
    if !a.exit {
        let mut signals = ShutdownSignal::new()?;
        println!("running; press Ctrl-C to stop");
        signals.recv().await;
    }
    for n in nodes {
        n.shutdown().await.map_err(msg)?;
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("stopped cleanly");
    Ok(())
}

async fn demo(client: &Client) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let mut total = 0;
    for i in 0..100 {
        total += client
            .actor::<Counter>(format!("visits-{}", i % 20))
            .call(Increment(1))
            .await
            .map_err(msg)?;
    }
    let v = client
        .actor::<Counter>("visits-0")
        .call(Value)
        .await
        .map_err(msg)?;
    println!(
        "demo: 100 increments over 20 counters in {:?}; visits-0 = {v} (sum of replies {total})",
        started.elapsed()
    );
    let reg = client.actor::<Register>("config");
    let before = reg.call(Read).await.map_err(msg)?;
    let swapped = reg
        .call(Cas {
            expect: before.clone(),
            new: format!("v{}", v),
        })
        .await
        .map_err(msg)?;
    let stale = reg
        .call(Cas {
            expect: Some("stale".into()),
            new: "x".into(),
        })
        .await
        .map_err(msg)?;
    println!("demo: register config: {before:?} -> cas {swapped:?}; a stale cas -> {stale:?}");
    if swapped != CasOutcome::Swapped {
        return Err(msg("demo: compare-and-set did not swap"));
    }
    Ok(())
}

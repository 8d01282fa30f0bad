//! `floe node`: run a node from its config file, flags and environment, with logging, the admin
//! HTTP endpoint and clean shutdown on SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use floe::{ClusterConfig, Node, RuntimeConfig, TlsMaterial};
use floe_net::certs::TlsFiles;

use crate::args::{NodeArgs, TlsArgs};
use crate::config::{ConfigError, NodeFile, bytes, millis, parse_member};
use crate::{CliError, msg};

pub(crate) fn init_logging(format: &str) -> Result<(), CliError> {
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

pub(crate) fn tls_files(t: &TlsArgs, file: Option<&NodeFile>) -> Result<TlsFiles, ConfigError> {
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
pub(crate) fn check_cluster_dir(dir: &Path, ca_pem: &[u8]) -> Result<(), CliError> {
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

pub(crate) async fn node(a: NodeArgs) -> Result<(), CliError> {
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
pub(crate) fn admin_routes(node: std::sync::Arc<Node>) -> axum::Router {
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
pub(crate) struct ShutdownSignal {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    pub(crate) fn new() -> Result<Self, CliError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(msg)?,
            term: signal(SignalKind::terminate()).map_err(msg)?,
        })
    }

    /// Wait for either signal.
    pub(crate) async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

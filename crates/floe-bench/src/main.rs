//! `floe-bench`: a load generator that starts a local Floe cluster (real `floe node` processes
//! on loopback, QUIC with mutual TLS, sled with fdatasync), drives it through the real client,
//! and reports latency, throughput, CPU per call and peak memory **next to the raw limits of the
//! machine measured in the same run** (raw quinn round trips, raw sled insert + flush +
//! fdatasync), as ratios.
//!
//! `cargo run --release -p floe-bench -- <call|forward|commit|activate|failover|memory|baseline|all>`

mod baseline;
mod cluster;
mod load;
mod procfs;
mod report;
mod scenarios;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use floe_net::certs::TlsFiles;
use serde::Serialize;

use crate::report::{Machine, Report};
use crate::scenarios::Ctx;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file, directory, process or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// Certificates could not be made.
    #[error("certificates: {0}")]
    Cert(#[from] floe_net::certs::CertError),
    /// TLS material is unusable.
    #[error("tls: {0}")]
    Tls(#[from] floe_net::tls::TlsError),
    /// The `floe` binary is missing or could not be built.
    #[error("floe binary: {0}")]
    FloeBin(String),
    /// The cluster did not start or behave as expected.
    #[error("cluster: {0}")]
    Cluster(String),
    /// Calls failed.
    #[error("calls: {0}")]
    Call(String),
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
}

impl BenchError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

#[derive(Parser)]
#[command(
    name = "floe-bench",
    about = "Floe against the raw transport and storage limits of the machine, in one run"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Stateless calls, client straight to the owner: 1 and 64 in flight.
    Call(Opts),
    /// The same calls through a gateway node that is not the owner.
    Forward(Opts),
    /// State-changing calls on 3 voters: one actor sequentially, 256 actors concurrently.
    Commit(Opts),
    /// First calls to new actors, sequential and 256 in flight.
    Activate(Opts),
    /// kill -9 the owner; time to the first successful call elsewhere.
    Failover(Opts),
    /// Resident memory per idle activation.
    Memory(Opts),
    /// Raw quinn round trip and pipelined throughput; raw sled insert + flush + fdatasync.
    Baseline(Opts),
    /// Every scenario, baseline first.
    All(Opts),
    /// Internal: the raw quinn echo server of the baseline (a separate process).
    #[command(hide = true)]
    EchoServer(EchoArgs),
}

/// Options shared by the scenarios.
#[derive(Args, Clone, Debug, Serialize)]
pub struct Opts {
    /// Seconds per measured case.
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Seconds of warm-up before a case.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Failover rounds for each kind of owner (a follower, the leader).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Activation counts at which `memory` measures (comma separated).
    #[arg(long, value_delimiter = ',', default_values_t = [100_000u64, 1_000_000])]
    pub activations: Vec<u64>,
    /// Where to write the JSON report (default: target/floe-bench/<scenario>.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The `floe` binary (default: next to this executable; rebuilt first under `cargo run`).
    #[arg(long)]
    pub floe_bin: Option<PathBuf>,
    /// Keep the nodes' data directories and logs after a successful run.
    #[arg(long)]
    pub keep: bool,
}

impl Opts {
    /// Time per measured case.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.clamp(0.1, 3600.0))
    }

    /// Warm-up time.
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.clamp(0.0, 600.0))
    }
}

#[derive(Args)]
struct EchoArgs {
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
}

/// `target/` of the build this executable belongs to (…/target/release/floe-bench).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"))
}

async fn run_scenario(name: &str, ctx: &mut Ctx) -> Result<(), BenchError> {
    match name {
        "baseline" => scenarios::baseline_only(ctx).await,
        "call" => scenarios::call(ctx).await,
        "forward" => scenarios::forward(ctx).await,
        "commit" => scenarios::commit(ctx).await,
        "activate" => scenarios::activate(ctx).await,
        "failover" => scenarios::failover(ctx).await,
        "memory" => scenarios::memory(ctx).await,
        "all" => {
            for s in [
                "baseline", "call", "forward", "commit", "activate", "failover", "memory",
            ] {
                Box::pin(run_scenario(s, ctx)).await?;
            }
            Ok(())
        }
        other => Err(BenchError::Cluster(format!("unknown scenario {other}"))),
    }
}

fn write_json(path: &Path, report: &Report) -> Result<(), BenchError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir.display().to_string(), e))?;
    }
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| BenchError::Cluster(format!("json: {e}")))?;
    std::fs::write(path, text).map_err(|e| BenchError::io(path.display().to_string(), e))
}

async fn bench(name: &str, opts: Opts) -> Result<(), BenchError> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = target_dir().join("floe-bench");
    let dir = out.join(format!("run-{}", std::process::id()));
    let json = opts
        .json
        .clone()
        .unwrap_or_else(|| out.join(format!("{name}.json")));
    let keep = opts.keep;
    let settings = serde_json::to_value(&opts).unwrap_or_default();
    let mut ctx = Ctx::new(opts, dir.clone());
    let result = tokio::select! {
        r = run_scenario(name, &mut ctx) => r,
        _ = tokio::signal::ctrl_c() => Err(BenchError::Interrupted),
    };
    // Every cluster and child process has been dropped (killed) by now.
    let report = Report {
        scenario: name.to_string(),
        started_unix: started,
        machine: Machine::detect(),
        settings,
        cases: std::mem::take(&mut ctx.cases),
        figures: std::mem::take(&mut ctx.figures),
    };
    if !report.cases.is_empty() {
        let m = &report.machine;
        println!(
            "\nfloe-bench {name}: {} CPUs ({}), {}, kernel {}\n",
            m.nproc, m.cpu, m.os, m.kernel
        );
        println!("{}", report.cases_table());
        if !report.figures.is_empty() {
            println!("{}", report.figures_table());
        }
        write_json(&json, &report)?;
        println!("JSON: {}", json.display());
    }
    match &result {
        Ok(()) if !keep => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(()) => println!("data and logs kept in {}", dir.display()),
        Err(_) => eprintln!("floe-bench: data and logs kept in {}", dir.display()),
    }
    result
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("floe-bench: error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (name, opts) = match cli.cmd {
        Cmd::EchoServer(a) => {
            let files = TlsFiles {
                ca: a.ca,
                cert: a.cert,
                key: a.key,
            };
            return match rt.block_on(baseline::echo_server(files)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("floe-bench echo-server: error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Cmd::Call(o) => ("call", o),
        Cmd::Forward(o) => ("forward", o),
        Cmd::Commit(o) => ("commit", o),
        Cmd::Activate(o) => ("activate", o),
        Cmd::Failover(o) => ("failover", o),
        Cmd::Memory(o) => ("memory", o),
        Cmd::Baseline(o) => ("baseline", o),
        Cmd::All(o) => ("all", o),
    };
    match rt.block_on(bench(name, opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floe-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

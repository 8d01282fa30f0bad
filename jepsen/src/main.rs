//! `floe-jepsen`: run Floe clusters under faults and check the histories for linearizability.
//!
//! ```text
//! cargo run --release -p floe-jepsen -- --nodes 5 --nemesis partition,kill --workload register --time-limit 60
//! cargo run --release -p floe-jepsen -- --nemesis all
//! cargo run --release -p floe-jepsen -- check target/jepsen/<run>/partition/history.jsonl
//! ```
//! Exit code: 0 every scenario valid, 1 something invalid, 2 the run itself failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use floe_jepsen::nemesis::Scenario;
use floe_jepsen::net::{self, Lab};
use floe_jepsen::run::{RunConfig, run_scenario};
use floe_jepsen::workload::{Workload, WorkloadConfig};
use floe_jepsen::{checker, history, report};

#[derive(Parser)]
#[command(
    name = "floe-jepsen",
    version,
    about = "Consistency harness: real floe processes in network namespaces, real faults, checked histories",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check an existing history file (JSON lines) and print the verdict.
    Check {
        /// The history.
        history: PathBuf,
        /// Time limit per key, seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Hold packets of an NFQUEUE for a delay (started by the slow nemesis inside a namespace).
    #[command(hide = true)]
    Delayer {
        #[arg(long)]
        queue: u16,
        #[arg(long)]
        delay_ms: u64,
        #[arg(long)]
        jitter_ms: u64,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Voters: 3 or 5.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Scenarios, comma separated, run in turn: partition, kill, pause, flaky, slow, clock,
    /// membership, combined (all of them mixed), none, or all (every one).
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Objects: register, counter or both.
    #[arg(long, value_enum, default_value_t = Workload::Both)]
    workload: Workload,
    /// Seconds of workload per scenario.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Operations per second, all workers together.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Concurrent workers.
    #[arg(long, default_value_t = 12)]
    concurrency: usize,
    /// Client instances (each its own QUIC endpoint) shared by the workers.
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Keys in use at once per object kind.
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// Operations per key before a fresh key replaces it.
    #[arg(long, default_value_t = 300)]
    ops_per_key: usize,
    /// Deadline of one operation, milliseconds.
    #[arg(long, default_value_t = 2000)]
    op_timeout_ms: u64,
    /// Time limit of each key's linearizability search, seconds.
    #[arg(long, default_value_t = 60)]
    check_timeout: u64,
    /// Output directory (default: target/jepsen/<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The floe binary (default: next to this one, built first when run through cargo).
    #[arg(long)]
    floe_bin: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// SELF-TEST ONLY: run the nodes with reads answered without a read index (not
    /// linearizable); the run must then be reported invalid.
    #[arg(long)]
    unsafe_reads: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Delayer {
            queue,
            delay_ms,
            jitter_ms,
        }) => {
            let stop = std::sync::atomic::AtomicBool::new(false);
            match floe_jepsen::delayer::run(
                queue,
                Duration::from_millis(delay_ms),
                Duration::from_millis(jitter_ms),
                &stop,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("delayer: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Cmd::Check { history, timeout }) => check(&history, timeout),
        None => run(cli.run),
    }
}

fn check(path: &std::path::Path, timeout: u64) -> ExitCode {
    let events = match history::read(path) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("floe-jepsen: {e}");
            return ExitCode::from(2);
        }
    };
    let parts = match checker::partition(&events) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("floe-jepsen: malformed history: {e}");
            return ExitCode::from(2);
        }
    };
    let r = checker::check(&parts, Duration::from_secs(timeout));
    let lost = checker::lost_counter_writes(&parts);
    let (counts, _) = report::count(&events);
    println!(
        "{} events, {} ok / {} fail / {} info; {} keys, {} operations checked in {} ms",
        events.len(),
        counts.ok,
        counts.fail,
        counts.info,
        r.keys,
        r.operations,
        r.elapsed_ms
    );
    for (k, why) in &r.invalid_keys {
        println!("NOT LINEARIZABLE {k}: {why}");
    }
    for k in &r.unknown_keys {
        println!("UNKNOWN (timed out) {k}");
    }
    for (k, n) in &lost {
        println!("LOST {n} acknowledged increments of {k}");
    }
    if r.valid && lost.is_empty() {
        println!("valid");
        ExitCode::SUCCESS
    } else if r.unknown && lost.is_empty() {
        println!("unknown");
        ExitCode::from(2)
    } else {
        println!("INVALID");
        ExitCode::from(1)
    }
}

/// Find (and when run through cargo, build) the floe binary.
fn floe_binary(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("--floe-bin {}: no such file", p.display()))
        };
    }
    let me = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
    let dir = me
        .parent()
        .ok_or("this binary has no directory")?
        .to_path_buf();
    if let Some(cargo) = std::env::var_os("CARGO") {
        let release = dir.ends_with("release");
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "floe-cli",
            "--manifest-path",
            manifest,
        ]);
        if release {
            cmd.arg("--release");
        }
        eprintln!(
            "floe-jepsen: building the floe binary (cargo build -p floe-cli{})",
            if release { " --release" } else { "" }
        );
        let status = cmd
            .status()
            .map_err(|e| format!("running cargo build -p floe-cli: {e}"))?;
        if !status.success() {
            return Err("cargo build -p floe-cli failed".into());
        }
    }
    // Tests run from target/<profile>/deps; the binary is one level up.
    for d in [dir.clone(), dir.join("..")] {
        let p = d.join("floe");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!(
        "no floe binary next to {}: build it with `cargo build --release -p floe-cli`, or pass --floe-bin",
        me.display()
    ))
}

/// Removes the lab's namespaces and processes when dropped (also on panic).
struct LabGuard(Lab);

impl Drop for LabGuard {
    fn drop(&mut self) {
        self.0.destroy();
    }
}

fn run(a: RunArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("floe-jepsen: error: {msg}");
        ExitCode::from(2)
    };
    if a.nodes != 3 && a.nodes != 5 {
        return fail(format!("--nodes {}: use 3 or 5", a.nodes));
    }
    if a.time_limit == 0 || a.rate <= 0.0 || a.concurrency == 0 || a.keys == 0 || a.ops_per_key == 0
    {
        return fail(
            "--time-limit, --rate, --concurrency, --keys and --ops-per-key must be positive".into(),
        );
    }
    let scenarios = match Scenario::parse_list(&a.nemesis) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let floe_bin = match floe_binary(a.floe_bin.clone()) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let self_exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format!("locating this binary: {e}")),
    };
    let out = a.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/jepsen")).join(t.to_string())
    });
    if let Err(e) = std::fs::create_dir_all(&out) {
        return fail(format!("{}: {e}", out.display()));
    }
    let out = out.canonicalize().unwrap_or(out);
    let lab = match Lab::create((a.nodes + 1) as u8) {
        Ok(l) => LabGuard(l),
        Err(e) => return fail(e.to_string()),
    };
    if let Err(e) = net::enter_client_ns() {
        return fail(e.to_string());
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("starting the runtime: {e}")),
    };
    let cfg = RunConfig {
        nodes: a.nodes,
        time_limit: Duration::from_secs(a.time_limit),
        workload: WorkloadConfig {
            workload: a.workload,
            concurrency: a.concurrency,
            rate: a.rate,
            active_keys: a.keys,
            ops_per_key: a.ops_per_key,
            op_timeout: Duration::from_millis(a.op_timeout_ms),
        },
        clients: a.clients,
        floe_bin,
        self_exe,
        unsafe_reads: a.unsafe_reads,
        check_timeout: Duration::from_secs(a.check_timeout),
        progress: !a.no_progress,
    };
    eprintln!(
        "floe-jepsen: {} scenario(s) on {} nodes, {} s each; output in {}",
        scenarios.len(),
        a.nodes,
        a.time_limit,
        out.display()
    );
    let outcome = rt.block_on(async {
        let mut results = Vec::new();
        for s in &scenarios {
            let dir = out.join(&s.name);
            let r = tokio::select! {
                r = run_scenario(&cfg, s, &dir) => r,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("floe-jepsen: interrupted; cleaning up");
                    return Err("interrupted".to_string());
                }
            };
            match r {
                Ok(r) => {
                    eprintln!(
                        "{:>12}: {}  ok {} fail {} info {}  keys {} ops {} checked in {} ms  lost {}  recovered in {} ms{}",
                        r.scenario,
                        if r.valid { "valid" } else { "INVALID" },
                        r.counts.ok,
                        r.counts.fail,
                        r.counts.info,
                        r.linearizability.keys,
                        r.linearizability.operations,
                        r.linearizability.elapsed_ms,
                        r.lost_writes.len(),
                        r.recovery_ms,
                        if r.problems.is_empty() { String::new() } else { format!("\n{:>14}{}", "", r.problems.join("\n              ")) }
                    );
                    results.push(r);
                }
                Err(e) => return Err(format!("scenario {}: {e}", s.name)),
            }
        }
        Ok(results)
    });
    drop(rt);
    drop(lab);
    match outcome {
        Ok(results) => {
            if let Err(e) = report::write_summary(&out, &results) {
                return fail(format!("writing the summary: {e}"));
            }
            eprintln!("floe-jepsen: report in {}/index.html", out.display());
            if results.iter().all(|r| r.valid) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(e),
    }
}

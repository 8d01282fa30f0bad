//! `floe-jepsen`: run Floe clusters under faults and check the histories for linearizability.
//!
//! ```text
//! cargo run --release -p floe-jepsen -- --nodes 5 --nemesis partition,kill --workload register --time-limit 60
//! cargo run --release -p floe-jepsen -- --nemesis all
//! cargo run --release -p floe-jepsen -- check target/jepsen/<run>/partition/history.jsonl
//! cargo run --release -p floe-jepsen -- --self-test duplicates --nemesis partition --time-limit 20
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
    /// Scenarios, comma separated, run in turn: partition, kill, kill-majority, kill-all, pause,
    /// flaky, slow, clock, membership, combined (all of them mixed), none, or all (every one).
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Workload: register, counter, both, retry, clients, bank or large (see the README).
    #[arg(long, value_enum, default_value_t = Workload::Both)]
    workload: Workload,
    /// Passed to every node as `--idle-timeout-ms`: activations idle this long are deactivated
    /// (and reactivated on the next call), so that happens under faults too.
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
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
    /// Keep the nodes' data directories of valid scenarios too (those of invalid ones are always
    /// kept).
    #[arg(long)]
    keep_data: bool,
    /// Run against a deliberately broken `floe`, built (with cargo, into its own target
    /// directory) with a self-test feature: `reads` (reads without a read index, checked with
    /// the both workload) or `duplicates` (retried requests applied again, checked with the
    /// retry workload). The run must be reported invalid from its history: exit code 1 when it
    /// is, 0 (and "SELF-TEST NOT CAUGHT") when it is not.
    #[arg(long, value_enum)]
    self_test: Option<SelfTest>,
}

/// A deliberately broken build of `floe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SelfTest {
    /// Reads without a read index, last-writer-wins placement.
    Reads,
    /// The state machine ignores remembered outcomes: retries apply again.
    Duplicates,
}

impl SelfTest {
    fn feature(self) -> &'static str {
        match self {
            SelfTest::Reads => "floe-cli/unsafe-self-test-reads",
            SelfTest::Duplicates => "floe-cli/unsafe-self-test-duplicates",
        }
    }

    fn workload(self) -> Workload {
        match self {
            SelfTest::Reads => Workload::Both,
            SelfTest::Duplicates => Workload::Retry,
        }
    }
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
    let (parts, conflicts) = match checker::partition_with_retries(&events) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("floe-jepsen: malformed history: {e}");
            return ExitCode::from(2);
        }
    };
    let r = checker::check(&parts, Duration::from_secs(timeout));
    let lost = checker::lost_counter_writes(&parts);
    let excess = checker::excess_counter_totals(&parts);
    let mut accounts: Vec<String> = events
        .iter()
        .filter_map(|e| e.key.clone())
        .filter(|k| k.starts_with("bank/a"))
        .collect();
    accounts.sort();
    accounts.dedup();
    let bank = checker::check_bank(&events, &accounts);
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
    for c in &conflicts {
        println!("RETRY CONFLICT {c:?}");
    }
    for (k, v, most) in &excess {
        println!("EXCESS {k}: {v} > {most}, the sum of every add sent");
    }
    if bank.ran {
        println!(
            "bank: initial {} at rest {:?}, conserved {:?}, {} negative, {} transfers unknown",
            bank.initial_total,
            bank.final_total,
            bank.conserved,
            bank.negative.len(),
            bank.transfers_unknown
        );
    }
    let extra_ok = lost.is_empty() && conflicts.is_empty() && excess.is_empty() && bank.valid;
    if r.valid && extra_ok {
        println!("valid");
        ExitCode::SUCCESS
    } else if r.unknown && extra_ok {
        println!("unknown");
        ExitCode::from(2)
    } else {
        println!("INVALID");
        ExitCode::from(1)
    }
}

/// A `cargo` command without the variables `cargo run` set for this binary (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_*`, ...): build scripts such as ring's ask to rerun when those change, so leaving
/// them in would rebuild half the dependency tree on every run and again on the next `cargo run`.
fn cargo_command(cargo: &std::ffi::OsStr) -> std::process::Command {
    let mut cmd = std::process::Command::new(cargo);
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let set_by_run = k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                k,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            );
        if set_by_run {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Build the self-test's broken `floe` with cargo, with its feature, in a separate invocation
/// and a separate target directory (`<target>/selftest`, next to this binary's profile
/// directory): feature unification can then never switch the feature on in the normal binary,
/// and the normal binary is never overwritten. Built with the dev profile: quicker to build,
/// and the bug does not depend on optimization.
fn self_test_binary(t: SelfTest) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").ok_or(
        "--self-test builds the broken floe with cargo: run floe-jepsen through `cargo run`",
    )?;
    let me = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
    let profile_dir = me.parent().ok_or("this binary has no directory")?;
    // Tests run from target/<profile>/deps.
    let profile_dir = if profile_dir.ends_with("deps") {
        profile_dir.parent().unwrap_or(profile_dir)
    } else {
        profile_dir
    };
    let target = profile_dir
        .parent()
        .ok_or("this binary is not in a cargo target directory")?
        .join("selftest");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    eprintln!(
        "floe-jepsen: building the self-test floe (cargo build -p floe-cli --features {} --target-dir {})",
        t.feature(),
        target.display()
    );
    let status = cargo_command(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "floe-cli",
            "--features",
            t.feature(),
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .map_err(|e| format!("running cargo build for the self-test: {e}"))?;
    if !status.success() {
        return Err("building the self-test floe failed".into());
    }
    let bin = target.join("debug").join("floe");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("no self-test binary at {}", bin.display()))
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
        let mut cmd = cargo_command(&cargo);
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
    let floe_bin = match (a.self_test, a.floe_bin.clone()) {
        (Some(t), None) => self_test_binary(t),
        (_, given) => floe_binary(given),
    };
    let floe_bin = match floe_bin {
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
            workload: a.self_test.map_or(a.workload, SelfTest::workload),
            concurrency: a.concurrency,
            rate: a.rate,
            active_keys: a.keys,
            ops_per_key: a.ops_per_key,
            op_timeout: Duration::from_millis(a.op_timeout_ms),
        },
        clients: a.clients,
        floe_bin,
        self_exe,
        idle_timeout_ms: a.idle_timeout_ms,
        self_test: a.self_test.is_some(),
        check_timeout: Duration::from_secs(a.check_timeout),
        progress: !a.no_progress,
        keep_data: a.keep_data,
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
                    let w = &r.workload_stats;
                    let extra = match r.workload {
                        Workload::Retry | Workload::Clients => format!(
                            "  sessions {} retries {} (answered {} expired {} unknown {} after >{} commits {})",
                            w.sessions, w.retries, w.retries_answered, w.retries_expired,
                            w.retries_unknown, floe_jepsen::workload::RETRY_AFTER_COMMITS, w.retries_after_commits
                        ),
                        Workload::Bank => format!(
                            "  transfers ok {} refused {} unknown {} (expired {})  total {} -> {:?} conserved {}",
                            r.bank.transfers_ok, r.bank.transfers_refused, r.bank.transfers_unknown,
                            w.transfers_expired, r.bank.initial_total, r.bank.final_total,
                            r.bank.conserved.map_or("unknown".to_string(), |c| c.to_string())
                        ),
                        _ => String::new(),
                    };
                    eprintln!(
                        "{:>12}: {}  ok {} fail {} info {}  keys {} ops {} checked in {} ms  lost {}  recovered in {} ms{}{}",
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
                        extra,
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
            if a.self_test.is_some() {
                // Caught only through the history, not some other problem of the run.
                let caught = results.iter().any(|r| {
                    !r.linearizability.invalid_keys.is_empty()
                        || !r.lost_writes.is_empty()
                        || !r.retry_conflicts.is_empty()
                        || !r.excess_counters.is_empty()
                        || !r.bank.valid
                });
                return if caught {
                    eprintln!(
                        "floe-jepsen: self-test caught: the broken build is reported INVALID"
                    );
                    ExitCode::from(1)
                } else {
                    eprintln!("floe-jepsen: SELF-TEST NOT CAUGHT: the broken build looked valid");
                    ExitCode::SUCCESS
                };
            }
            if results.iter().all(|r| r.valid) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(e),
    }
}

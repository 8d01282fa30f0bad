//! One scenario from start to verdict: cluster up, workload and nemesis, final heal, recovery,
//! final reads, check, report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use floe_client::{Client, ClientConfig};
use floe_net::TransportConfig;
use indicatif::{ProgressBar, ProgressStyle};

use crate::checker;
use crate::cluster::{Cluster, NodeOptions};
use crate::history::Recorder;
use crate::nemesis::{Nemesis, Scenario};
use crate::net::Lab;
use crate::report::{self, ScenarioResult};
use crate::workload::{self, Generator, Workload, WorkloadConfig};

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Voters.
    pub nodes: usize,
    /// Seconds of workload per scenario.
    pub time_limit: Duration,
    /// The workload.
    pub workload: WorkloadConfig,
    /// Client instances the workers share.
    pub clients: usize,
    /// The `floe` binary.
    pub floe_bin: PathBuf,
    /// This binary (it also runs the packet delayer).
    pub self_exe: PathBuf,
    /// Passed to the nodes as `--idle-timeout-ms` (activations deactivate after this idle time).
    pub idle_timeout_ms: Option<u64>,
    /// The `floe` binary is a deliberately broken self-test build (expected to be caught).
    pub self_test: bool,
    /// Time limit of each key's linearizability search.
    pub check_timeout: Duration,
    /// Show a progress bar.
    pub progress: bool,
    /// Keep the nodes' data directories of a valid scenario (those of an invalid one are always
    /// kept, for the post-mortem). A 60 s `large` scenario leaves several GB per node.
    pub keep_data: bool,
}

/// A run that could not be carried out (as opposed to one that found a problem).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The cluster could not be started.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// Files could not be written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The client could not connect.
    #[error("client: {0}")]
    Client(String),
}

fn client_config(cluster: &Cluster, cfg: &RunConfig) -> ClientConfig {
    let mut cc = ClientConfig::new(cluster.seed_addrs(), cluster.client_tls.clone());
    cc.call_timeout = cfg.workload.op_timeout;
    cc.attempt_timeout = cfg.workload.op_timeout.min(Duration::from_secs(1));
    cc.transport =
        TransportConfig::default().listen(std::net::SocketAddr::from((Lab::client_ip(), 0)));
    cc
}

async fn connect(cluster: &Cluster, cfg: &RunConfig) -> Result<Client, RunError> {
    let cc = client_config(cluster, cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(cc.clone()).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(RunError::Client(e.to_string())),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Run `scenario` with its output in `dir`.
pub async fn run_scenario(
    cfg: &RunConfig,
    scenario: &Scenario,
    dir: &Path,
) -> Result<ScenarioResult, RunError> {
    std::fs::create_dir_all(dir).map_err(|e| RunError::Io(dir.display().to_string(), e))?;
    let opts = NodeOptions {
        faketime: scenario.needs_faketime(),
        idle_timeout_ms: cfg.idle_timeout_ms,
        max_message_bytes: (cfg.workload.workload == Workload::Large)
            .then_some(workload::LARGE_MAX_MESSAGE_BYTES),
    };
    let slots = (cfg.nodes + 1) as u8;
    let mut cluster = Cluster::start(dir, &cfg.floe_bin, cfg.nodes, slots, opts).await?;
    let start = Instant::now();
    let hist_path = dir.join("history.jsonl");
    let rec = Arc::new(
        Recorder::create(&hist_path, start)
            .map_err(|e| RunError::Io(hist_path.display().to_string(), e))?,
    );
    let mut clients = Vec::new();
    for _ in 0..cfg.clients.max(1) {
        clients.push(Arc::new(connect(&cluster, cfg).await?));
    }
    let gen_ = Generator::new(cfg.workload.clone(), client_config(&cluster, cfg));
    let mut problems = Vec::new();
    match cfg.workload.workload {
        Workload::Retry => {
            // An id taken and never used keeps each session's acknowledgement floor below every
            // later call for the client's retry window, so the cluster must keep (and give back)
            // every outcome: retries then test remembered answers, not only Expired.
            for c in &clients {
                if let Err(e) = c.new_request_id().await {
                    return Err(RunError::Client(format!("opening a session: {e}")));
                }
            }
        }
        Workload::Bank => {
            let failed = workload::bank_setup(
                &gen_,
                &clients[0],
                &rec,
                Instant::now() + Duration::from_secs(30),
            )
            .await;
            if !failed.is_empty() {
                problems.push(format!("bank accounts could not be opened: {failed:?}"));
            }
        }
        _ => {}
    }
    let until = Instant::now() + cfg.time_limit;
    let mut workers = Vec::new();
    for w in 0..cfg.workload.concurrency {
        workers.push(tokio::spawn(workload::worker(
            gen_.clone(),
            clients.clone(),
            rec.clone(),
            w as u64,
            until,
        )));
    }

    let bar = if cfg.progress {
        let b = ProgressBar::new(cfg.time_limit.as_secs());
        b.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos:>3}/{len}s {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_prefix(scenario.name.clone());
        b
    } else {
        ProgressBar::hidden()
    };
    let ticker = {
        let bar = bar.clone();
        let g = gen_.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                bar.set_position(started.elapsed().as_secs());
                let c = &g.counts;
                let fault = bar.message();
                let fault = fault.split(" | ").last().unwrap_or("").to_string();
                bar.set_message(format!(
                    "ok {} fail {} info {} | {}",
                    c.ok.load(Ordering::Relaxed),
                    c.fail.load(Ordering::Relaxed),
                    c.info.load(Ordering::Relaxed),
                    fault
                ));
            }
        })
    };

    let mut nemesis = Nemesis::new(
        &mut cluster,
        &rec,
        scenario.faults.clone(),
        cfg.self_exe.clone(),
    );
    {
        let bar = bar.clone();
        nemesis
            .run(until, move |what| {
                let m = bar.message();
                let head = m.split(" | ").next().unwrap_or("").to_string();
                bar.set_message(format!("{head} | {what}"));
            })
            .await;
    }
    for w in workers {
        let _ = w.await;
    }
    ticker.abort();
    bar.set_message("healing".to_string());
    let log = nemesis.heal_all().await;
    let healed = Instant::now();
    let health = cluster.wait_healthy(Duration::from_secs(60)).await;
    let recovery_ms = healed.elapsed().as_millis() as u64;
    if let Err(e) = &health {
        problems.push(format!("no recovery after the final heal: {e}"));
    }
    bar.set_message("final reads".to_string());
    let unread = workload::final_reads(
        &gen_,
        &clients[0],
        &rec,
        Instant::now() + Duration::from_secs(30),
    )
    .await;
    if !unread.is_empty() {
        problems.push(format!(
            "{} keys could not be read after the final heal: {:?}",
            unread.len(),
            &unread[..unread.len().min(10)]
        ));
    }
    for c in &clients {
        c.close().await;
    }
    cluster.shutdown().await;
    let panics = cluster.panics();
    if !panics.is_empty() {
        problems.push(format!("{} panics in node logs", panics.len()));
    }
    let broken_build = cluster.self_test_build();
    if broken_build != cfg.self_test {
        problems.push(if broken_build {
            "the floe binary is a deliberately broken self-test build".into()
        } else {
            "the self-test's floe binary is not a self-test build".into()
        });
    }
    if let Err(e) = rec.flush() {
        problems.push(format!("the history file is incomplete: {e}"));
    }
    bar.set_message("checking".to_string());
    let events = rec.events();
    let (counts, counts_by_f) = report::count(&events);
    let (lin, lost, conflicts, excess) = match checker::partition_with_retries(&events) {
        Ok((parts, conflicts)) => {
            let r = checker::check(&parts, cfg.check_timeout);
            (
                r,
                checker::lost_counter_writes(&parts),
                conflicts,
                checker::excess_counter_totals(&parts),
            )
        }
        Err(e) => {
            problems.push(format!("malformed history: {e}"));
            (
                checker::check(&Default::default(), cfg.check_timeout),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            )
        }
    };
    if !conflicts.is_empty() {
        problems.push(format!(
            "{} retries answered differently from their operation's first answer (first: {:?})",
            conflicts.len(),
            conflicts[0]
        ));
    }
    if !excess.is_empty() {
        problems.push(format!(
            "counters above the sum of every add ever sent (applied twice?): {excess:?}"
        ));
    }
    let bank = checker::check_bank(&events, &gen_.accounts());
    if bank.ran {
        if !bank.negative.is_empty() {
            problems.push(format!("negative balances: {:?}", bank.negative));
        }
        match bank.conserved {
            Some(false) => problems.push(format!(
                "money not conserved: initial total {}, at rest {:?} ({} transfers of unknown outcome, {} in all)",
                bank.initial_total, bank.final_total, bank.transfers_unknown, bank.unknown_amount
            )),
            Some(true) => {}
            None => eprintln!(
                "floe-jepsen: {}: conservation unknown: {} transfers of unknown outcome (expired or unresolved)",
                scenario.name, bank.transfers_unknown
            ),
        }
    }
    let stats = gen_.stats();
    // Nothing may expire inside a run: sessions expire after an hour idle and the client keeps an
    // unknown outcome retrievable for its retry window, both longer than the run (and the
    // clock nemesis moves a clock by minutes, not hours). An expiry is an exactly-once outcome
    // lost to the client too early.
    let expired = stats.retries_expired + stats.transfers_expired;
    if expired > 0 && cfg.time_limit < floe::session::DEFAULT_RETRY_WINDOW {
        problems.push(format!(
            "{expired} requests expired (outcome unknown) within a run shorter than the retry window"
        ));
    }
    if !lin.invalid_keys.is_empty() {
        problems.push(format!(
            "{} keys are not linearizable",
            lin.invalid_keys.len()
        ));
    }
    if !lin.unknown_keys.is_empty() {
        problems.push(format!(
            "{} keys could not be checked in time",
            lin.unknown_keys.len()
        ));
    }
    if !lost.is_empty() {
        problems.push(format!("lost acknowledged counter increments: {lost:?}"));
    }
    for f in &scenario.faults {
        let applied = log.stats.get(f).map_or(0, |s| s.applied);
        if applied == 0 {
            problems.push(format!("fault {} was never applied", f.name()));
        }
    }
    if counts.ok == 0 {
        problems.push("no operation succeeded".into());
    }
    problems.extend(unacknowledged_mutations(&counts_by_f));
    bar.finish_and_clear();
    let result = ScenarioResult {
        scenario: scenario.name.clone(),
        valid: problems.is_empty(),
        problems,
        nodes: cfg.nodes,
        time_limit_s: cfg.time_limit.as_secs(),
        counts,
        counts_by_f,
        linearizability: lin,
        lost_writes: lost,
        workload: cfg.workload.workload,
        workload_stats: stats,
        retry_conflicts: conflicts,
        excess_counters: excess,
        bank,
        unread_keys: unread,
        recovered: health.is_ok(),
        recovery_ms,
        panics,
        nemesis: log,
    };
    let json = serde_json::to_vec_pretty(&result)
        .map_err(|e| RunError::Io("results.json".into(), e.into()))?;
    std::fs::write(dir.join("results.json"), json)
        .map_err(|e| RunError::Io(dir.join("results.json").display().to_string(), e))?;
    report::write_html(dir, &result, &events)
        .map_err(|e| RunError::Io(dir.join("index.html").display().to_string(), e))?;
    if result.valid && !cfg.keep_data {
        crate::cluster::remove_node_data(dir)
            .map_err(|(p, e)| RunError::Io(p.display().to_string(), e))?;
    }
    Ok(result)
}

/// A problem for each kind of mutation that was attempted and never acknowledged: a run whose
/// writes all fail checks nothing but reads of the initial state.
fn unacknowledged_mutations(
    by_f: &std::collections::BTreeMap<String, report::OpCounts>,
) -> Vec<String> {
    ["write", "cas", "add", "transfer"]
        .iter()
        .filter_map(|f| {
            let c = by_f.get(*f)?;
            (c.ok == 0 && c.fail + c.info > 0).then(|| {
                format!(
                    "no {f} succeeded ({} failed, {} of unknown outcome)",
                    c.fail, c.info
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(ok: u64, fail: u64, info: u64) -> report::OpCounts {
        report::OpCounts { ok, fail, info }
    }

    #[test]
    fn a_mutation_never_acknowledged_is_a_problem() {
        let mut by_f = std::collections::BTreeMap::new();
        by_f.insert("read".to_string(), counts(60, 0, 2));
        by_f.insert("write".to_string(), counts(0, 3, 61));
        by_f.insert("add".to_string(), counts(5, 0, 9));
        let p = unacknowledged_mutations(&by_f);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("no write succeeded"), "{p:?}");
        by_f.insert("write".to_string(), counts(1, 3, 61));
        assert!(unacknowledged_mutations(&by_f).is_empty());
    }
}

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
use crate::workload::{self, Generator, WorkloadConfig};

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
    /// Nodes run the deliberately broken read path (self-test).
    pub unsafe_reads: bool,
    /// Time limit of each key's linearizability search.
    pub check_timeout: Duration,
    /// Show a progress bar.
    pub progress: bool,
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

async fn connect(cluster: &Cluster, cfg: &RunConfig) -> Result<Client, RunError> {
    let mut cc = ClientConfig::new(cluster.seed_addrs(), cluster.client_tls.clone());
    cc.call_timeout = cfg.workload.op_timeout;
    cc.attempt_timeout = cfg.workload.op_timeout.min(Duration::from_secs(1));
    cc.transport = TransportConfig {
        listen: std::net::SocketAddr::from((Lab::client_ip(), 0)),
        ..TransportConfig::default()
    };
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
        unsafe_reads: cfg.unsafe_reads,
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
    let gen_ = Generator::new(cfg.workload.clone());
    let until = Instant::now() + cfg.time_limit;
    let mut workers = Vec::new();
    for w in 0..cfg.workload.concurrency {
        let client = clients[w % clients.len()].clone();
        workers.push(tokio::spawn(workload::worker(
            gen_.clone(),
            client,
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
    let mut problems = Vec::new();
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
    if let Err(e) = rec.flush() {
        problems.push(format!("the history file is incomplete: {e}"));
    }
    bar.set_message("checking".to_string());
    let events = rec.events();
    let (counts, counts_by_f) = report::count(&events);
    let (lin, lost) = match checker::partition(&events) {
        Ok(parts) => {
            let r = checker::check(&parts, cfg.check_timeout);
            (r, checker::lost_counter_writes(&parts))
        }
        Err(e) => {
            problems.push(format!("malformed history: {e}"));
            (
                checker::check(&Default::default(), cfg.check_timeout),
                Vec::new(),
            )
        }
    };
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
    Ok(result)
}

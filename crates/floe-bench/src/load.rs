//! The load driver: `n` tasks in flight running an operation until a time or count limit, with
//! a progress bar; latencies of successful operations are kept.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::procfs::CpuSample;
use crate::report::Case;
use crate::stats::Latency;

/// When a measurement stops.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// After this long.
    Time(Duration),
    /// After this many operations were started.
    Count(u64),
}

/// What a measurement produced.
#[derive(Debug, Default)]
pub struct Run {
    /// Latencies of successful operations.
    pub latencies: Vec<Duration>,
    /// Failed operations.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl Run {
    /// Successful operations.
    pub fn ok(&self) -> u64 {
        self.latencies.len() as u64
    }

    /// Turn into a case, with CPU per op from `before`/`after` and a peak RSS.
    pub fn into_case(
        mut self,
        scenario: &str,
        name: impl Into<String>,
        cpu: Option<(&CpuSample, &CpuSample)>,
        peak_rss: Option<u64>,
    ) -> Case {
        let ok = self.ok();
        let mut c = Case::new(scenario, name, ok, self.elapsed.as_secs_f64());
        c.errors = self.errors;
        c.first_error = self.first_error.take();
        c.latency = Latency::from_samples(&mut self.latencies);
        if let Some((a, b)) = cpu {
            (c.server_cpu_us_per_op, c.client_cpu_us_per_op) = a.per_op_since(b, ok);
        }
        c.peak_rss_bytes = peak_rss;
        c
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A progress bar for one measurement (drawn on stderr; hidden when it is not a terminal).
pub fn bar(label: &str, limit: Limit) -> ProgressBar {
    let b = match limit {
        Limit::Time(d) => ProgressBar::new(d.as_millis() as u64).with_style(style(
            "{prefix:>32.bold} [{bar:30.cyan/blue}] {elapsed}/{msg}",
        )),
        Limit::Count(n) => ProgressBar::new(n).with_style(style(
            "{prefix:>32.bold} [{bar:30.cyan/blue}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
        )),
    };
    b.set_prefix(label.to_string());
    if let Limit::Time(d) = limit {
        b.set_message(format!("{}s", d.as_secs_f64().round()));
    }
    b
}

/// A spinner for a step without a known length (starting a cluster, a failover round).
pub fn spinner(label: &str, msg: impl Into<String>) -> ProgressBar {
    let b = ProgressBar::new_spinner().with_style(style("{prefix:>32.bold} {spinner} {msg}"));
    b.set_prefix(label.to_string());
    b.set_message(msg.into());
    b.enable_steady_tick(Duration::from_millis(120));
    b
}

/// Run `op(task, i)` for i = 0, 1, 2, ... with `inflight` tasks (numbered `0..inflight`, one
/// operation in flight each) until `limit`. Each operation must carry its own deadline.
pub async fn drive<F, Fut>(label: &str, inflight: usize, limit: Limit, op: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let bar = bar(label, limit);
    let start = Instant::now();
    let ticker = matches!(limit, Limit::Time(_)).then(|| {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(start.elapsed().as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..inflight.max(1) {
        let (op, next, bar) = (op.clone(), next.clone(), bar.clone());
        tasks.spawn(async move {
            let mut run = Run::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let more = match limit {
                    Limit::Count(n) => i < n,
                    Limit::Time(d) => start.elapsed() < d,
                };
                if !more {
                    return run;
                }
                let t = Instant::now();
                match op(task, i).await {
                    Ok(()) => run.latencies.push(t.elapsed()),
                    Err(e) => {
                        run.errors += 1;
                        run.first_error.get_or_insert(e);
                    }
                }
                if matches!(limit, Limit::Count(_)) {
                    bar.inc(1);
                }
            }
        });
    }
    let mut total = Run::default();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(mut r) => {
                total.latencies.append(&mut r.latencies);
                total.errors += r.errors;
                if total.first_error.is_none() {
                    total.first_error = r.first_error;
                }
            }
            Err(e) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert_with(|| format!("load task: {e}"));
            }
        }
    }
    total.elapsed = start.elapsed();
    if let Some(t) = ticker {
        t.abort();
    }
    bar.finish_and_clear();
    total
}

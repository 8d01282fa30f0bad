//! What a run measured: cases (raw measurements), figures (a measure next to its baseline from
//! the same run, with the ratio and the goal), the machine, and the text tables.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{Latency, fmt_bytes, fmt_int, fmt_us, ratio};

/// One measured case: a load shape run against Floe or against a raw baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    /// Scenario it belongs to (`call`, `baseline`, ...).
    pub scenario: String,
    /// What ran (`1 in flight`, `raw quinn, 64 in flight`, ...).
    pub name: String,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations (each had a deadline).
    pub errors: u64,
    /// Wall-clock time of the measurement, seconds.
    pub secs: f64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Latency of successful operations.
    pub latency: Option<Latency>,
    /// CPU time (user + system) of the server processes (the nodes, or the raw echo server)
    /// per operation, microseconds.
    pub server_cpu_us_per_op: Option<f64>,
    /// CPU time of the bench process (the client) per operation, microseconds.
    pub client_cpu_us_per_op: Option<f64>,
    /// Largest peak resident set (`VmHWM`) among the server processes, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// Anything needed to read the case (placement, roles).
    pub note: Option<String>,
}

impl Case {
    /// A case with only a name and counts; fill the rest with struct update syntax.
    pub fn new(scenario: &str, name: impl Into<String>, ops: u64, secs: f64) -> Self {
        Self {
            scenario: scenario.to_string(),
            name: name.into(),
            ops,
            errors: 0,
            secs,
            throughput: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            latency: None,
            server_cpu_us_per_op: None,
            client_cpu_us_per_op: None,
            peak_rss_bytes: None,
            first_error: None,
            note: None,
        }
    }

    /// Median latency in microseconds, if measured.
    pub fn p50(&self) -> Option<f64> {
        self.latency.map(|l| l.p50_us)
    }
}

/// A target for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "limit", rename_all = "snake_case")]
pub enum Goal {
    /// The ratio to the baseline must be at most this.
    RatioAtMost(f64),
    /// The ratio to the baseline must be at least this.
    RatioAtLeast(f64),
    /// The value itself must be at most this.
    AtMost(f64),
    /// The value itself must be at least this.
    AtLeast(f64),
}

impl Goal {
    /// Whether `value` (with its `ratio` to the baseline) meets the goal; `None` if the goal is
    /// on the ratio and there is none.
    pub fn met(&self, value: f64, ratio: Option<f64>) -> Option<bool> {
        match *self {
            Goal::RatioAtMost(l) => ratio.map(|r| r <= l),
            Goal::RatioAtLeast(l) => ratio.map(|r| r >= l),
            Goal::AtMost(l) => Some(value <= l),
            Goal::AtLeast(l) => Some(value >= l),
        }
    }

    /// Short text: `≤ 1.40×`, `≥ 20,000`.
    pub fn describe(&self, unit: &str) -> String {
        match *self {
            Goal::RatioAtMost(l) => format!("≤ {l:.2}×"),
            Goal::RatioAtLeast(l) => format!("≥ {l:.2}×"),
            Goal::AtMost(l) => format!("≤ {}", fmt_value(l, unit)),
            Goal::AtLeast(l) => format!("≥ {}", fmt_value(l, unit)),
        }
    }
}

/// A value with its unit, readable: `µs` values get ms/s as needed, rates get separators.
pub fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "µs" => fmt_us(v),
        "B" => fmt_bytes(v),
        "/s" => format!("{}/s", fmt_int(v)),
        "" => fmt_int(v),
        u => format!("{} {u}", fmt_int(v)),
    }
}

/// One headline number next to its baseline from the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Scenario it belongs to.
    pub scenario: String,
    /// What is measured (`1 in flight, p50`).
    pub measure: String,
    /// The value.
    pub value: f64,
    /// Its unit: `µs`, `/s`, `B`.
    pub unit: String,
    /// What it is compared with.
    pub baseline: Option<String>,
    /// The baseline's value, same unit.
    pub baseline_value: Option<f64>,
    /// `value / baseline_value`.
    pub ratio: Option<f64>,
    /// The goal, if the issue sets one.
    pub goal: Option<Goal>,
    /// Whether the goal is met.
    pub met: Option<bool>,
}

impl Figure {
    /// A figure without baseline or goal.
    pub fn new(scenario: &str, measure: impl Into<String>, value: f64, unit: &str) -> Self {
        Self {
            scenario: scenario.to_string(),
            measure: measure.into(),
            value,
            unit: unit.to_string(),
            baseline: None,
            baseline_value: None,
            ratio: None,
            goal: None,
            met: None,
        }
    }

    /// Compare with `baseline` (same unit).
    pub fn vs(mut self, name: impl Into<String>, baseline: f64) -> Self {
        self.baseline = Some(name.into());
        self.baseline_value = Some(baseline);
        self.ratio = ratio(self.value, baseline);
        self.met = self.goal.and_then(|g| g.met(self.value, self.ratio));
        self
    }

    /// Set the goal (evaluated now and again if a baseline is set later).
    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self.met = goal.met(self.value, self.ratio);
        self
    }
}

/// The machine the run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs available to this process (`nproc`).
    pub nproc: usize,
    /// CPU model.
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
    /// Operating system.
    pub os: String,
    /// Total memory, bytes.
    pub memory_bytes: u64,
}

impl Machine {
    /// Read from `/proc` and `/etc/os-release`; unknown fields stay empty.
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024);
        Self {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os,
            memory_bytes,
        }
    }
}

/// Everything one invocation measured; written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario asked for (`all` included).
    pub scenario: String,
    /// Unix time the run started, seconds.
    pub started_unix: u64,
    /// The machine.
    pub machine: Machine,
    /// Settings of the run (duration, rounds, activation counts).
    pub settings: serde_json::Value,
    /// Raw measurements.
    pub cases: Vec<Case>,
    /// Headline figures with their baselines and goals.
    pub figures: Vec<Figure>,
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_string(), f)
}

impl Report {
    /// The cases as a markdown table.
    pub fn cases_table(&self) -> String {
        let mut s = String::from(
            "| scenario | case | ops | ops/s | p50 | p99 | p999 | server CPU/op | client CPU/op | peak RSS (max node) | errors |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for c in &self.cases {
            let l = c.latency;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.scenario,
                c.name,
                fmt_int(c.ops as f64),
                if c.secs > 0.0 {
                    fmt_int(c.throughput)
                } else {
                    "–".into()
                },
                opt(l.map(|l| l.p50_us), fmt_us),
                opt(l.map(|l| l.p99_us), fmt_us),
                opt(l.map(|l| l.p999_us), fmt_us),
                opt(c.server_cpu_us_per_op, fmt_us),
                opt(c.client_cpu_us_per_op, fmt_us),
                opt(c.peak_rss_bytes.map(|b| b as f64), fmt_bytes),
                c.errors,
            );
        }
        s
    }

    /// The figures as a markdown table: value, baseline, ratio, goal, met.
    pub fn figures_table(&self) -> String {
        let mut s = String::from(
            "| scenario | measure | value | baseline (same run) | ratio | goal | met |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for f in &self.figures {
            let base = match (&f.baseline, f.baseline_value) {
                (Some(n), Some(v)) => format!("{n}: {}", fmt_value(v, &f.unit)),
                _ => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                f.scenario,
                f.measure,
                fmt_value(f.value, &f.unit),
                base,
                opt(f.ratio, |r| format!("{r:.2}×")),
                f.goal
                    .map_or_else(|| "–".to_string(), |g| g.describe(&f.unit)),
                match f.met {
                    Some(true) => "**met**",
                    Some(false) => "**missed**",
                    None => "–",
                },
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_ratio_and_goals() {
        let f = Figure::new("call", "p50", 120.0, "µs")
            .vs("raw quinn p50", 100.0)
            .goal(Goal::RatioAtMost(1.4));
        assert_eq!(f.ratio, Some(1.2));
        assert_eq!(f.met, Some(true));
        let f = Figure::new("call", "64 in flight", 40_000.0, "/s")
            .goal(Goal::RatioAtLeast(0.5))
            .vs("raw quinn", 100_000.0);
        assert_eq!(f.ratio, Some(0.4));
        assert_eq!(
            f.met,
            Some(false),
            "goal set before the baseline is re-evaluated"
        );
        let f = Figure::new("failover", "p50", 900_000.0, "µs").goal(Goal::AtMost(1e6));
        assert_eq!(f.met, Some(true));
        let f = Figure::new("x", "y", 1.0, "").goal(Goal::RatioAtLeast(1.0));
        assert_eq!(f.met, None, "a ratio goal without baseline is undecided");
        let f = Figure::new("x", "y", 1.0, "/s").vs("zero", 0.0);
        assert_eq!(f.ratio, None);
    }

    #[test]
    fn tables_render_every_row() {
        let mut c = Case::new("call", "1 in flight", 1000, 2.0);
        c.latency = Latency::from_samples(&mut [std::time::Duration::from_micros(80)]);
        c.server_cpu_us_per_op = Some(30.0);
        let r = Report {
            scenario: "call".into(),
            started_unix: 0,
            machine: Machine::detect(),
            settings: serde_json::Value::Null,
            cases: vec![c],
            figures: vec![
                Figure::new("call", "1 in flight, p50", 100.0, "µs")
                    .vs("raw quinn round trip p50", 80.0)
                    .goal(Goal::RatioAtMost(1.4)),
                Figure::new("activate", "256 in flight", 25_000.0, "/s")
                    .goal(Goal::AtLeast(20_000.0)),
            ],
        };
        let cases = r.cases_table();
        assert!(
            cases.contains("| call | 1 in flight | 1,000 | 500 | 80.0 µs |"),
            "{cases}"
        );
        let figs = r.figures_table();
        assert!(
            figs.contains(
                "| call | 1 in flight, p50 | 100.0 µs | raw quinn round trip p50: 80.0 µs | 1.25× | ≤ 1.40× | **met** |"
            ),
            "{figs}"
        );
        assert!(
            figs.contains("| 25,000/s | – | – | ≥ 20,000/s | **met** |"),
            "{figs}"
        );
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["figures"][0]["goal"]["kind"], "ratio_at_most");
    }
}

//! The run's report: `results.json` and `index.html` (a timeline of operations with the fault
//! intervals, and latency and throughput over time), drawn as inline SVG.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::checker::Report as CheckReport;
use crate::history::{Event, Kind, Process};
use crate::nemesis::{Interval, NemesisLog};

/// Counts of completions by type.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpCounts {
    /// ok
    pub ok: u64,
    /// fail
    pub fail: u64,
    /// info (including never completed)
    pub info: u64,
}

/// Everything known about one scenario's run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub scenario: String,
    /// The overall verdict.
    pub valid: bool,
    /// Why not, in words.
    pub problems: Vec<String>,
    /// Nodes (voters).
    pub nodes: usize,
    /// Seconds of workload.
    pub time_limit_s: u64,
    /// Counts by completion type.
    pub counts: OpCounts,
    /// Counts per function.
    pub counts_by_f: std::collections::BTreeMap<String, OpCounts>,
    /// The linearizability check.
    pub linearizability: CheckReport,
    /// Acknowledged counter increments missing after the final heal (key, amount).
    pub lost_writes: Vec<(String, i64)>,
    /// The workload.
    pub workload: crate::workload::Workload,
    /// What the workload did beyond the counts (sessions, retries, expired requests).
    pub workload_stats: crate::workload::WorkloadStats,
    /// Retries whose answer differs from another answer of the same operation.
    pub retry_conflicts: Vec<crate::checker::RetryConflict>,
    /// Counters whose final value exceeds every add ever invoked (key, value, sum of adds).
    pub excess_counters: Vec<(String, i64, i64)>,
    /// The bank's invariants (bank workload).
    pub bank: crate::checker::BankReport,
    /// Keys whose final read never succeeded.
    pub unread_keys: Vec<String>,
    /// Whether the cluster recovered after the final heal, and how long it took (ms).
    pub recovered: bool,
    /// Time to recover (ms).
    pub recovery_ms: u64,
    /// Panics found in node logs.
    pub panics: Vec<String>,
    /// What the nemesis did.
    pub nemesis: NemesisLog,
}

/// Count completions.
pub fn count(events: &[Event]) -> (OpCounts, std::collections::BTreeMap<String, OpCounts>) {
    let mut all = OpCounts::default();
    let mut by: std::collections::BTreeMap<String, OpCounts> = Default::default();
    for e in events {
        if !matches!(e.process, Process::Client(_)) {
            continue;
        }
        let c = by.entry(e.f.clone()).or_default();
        match e.kind {
            Kind::Ok => {
                all.ok += 1;
                c.ok += 1;
            }
            Kind::Fail => {
                all.fail += 1;
                c.fail += 1;
            }
            Kind::Info => {
                all.info += 1;
                c.info += 1;
            }
            Kind::Invoke => {}
        }
    }
    (all, by)
}

/// One completed operation for drawing.
struct Drawn {
    call: u64,
    ret: u64,
    kind: Kind,
    f: String,
    key: String,
}

fn pair(events: &[Event]) -> Vec<Drawn> {
    let mut open: HashMap<u64, &Event> = HashMap::new();
    let mut out = Vec::new();
    let end = events.iter().map(|e| e.time).max().unwrap_or(0);
    for e in events {
        let Process::Client(p) = e.process else {
            continue;
        };
        if e.kind == Kind::Invoke {
            open.insert(p, e);
        } else if let Some(inv) = open.remove(&p) {
            out.push(Drawn {
                call: inv.time,
                ret: e.time,
                kind: e.kind,
                f: e.f.clone(),
                key: inv.key.clone().unwrap_or_default(),
            });
        }
    }
    for inv in open.values() {
        out.push(Drawn {
            call: inv.time,
            ret: end,
            kind: Kind::Info,
            f: inv.f.clone(),
            key: inv.key.clone().unwrap_or_default(),
        });
    }
    out.sort_by_key(|d| d.call);
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 1100.0;

fn bands(svg: &mut String, intervals: &[Interval], end: u64, height: f64) {
    let x = |t: u64| 40.0 + (t as f64 / end.max(1) as f64) * (W - 50.0);
    for iv in intervals {
        let (a, b) = (x(iv.start), x(iv.end.max(iv.start)));
        let _ = write!(
            svg,
            r##"<rect x="{a:.1}" y="0" width="{:.1}" height="{height}" fill="#f5b7b1" opacity="0.35"><title>{} {}</title></rect>"##,
            (b - a).max(2.0),
            iv.fault.name(),
            esc(&iv.detail)
        );
    }
}

/// Write `index.html` into `dir`.
pub fn write_html(dir: &Path, result: &ScenarioResult, events: &[Event]) -> std::io::Result<()> {
    let ops = pair(events);
    let end = events.iter().map(|e| e.time).max().unwrap_or(1).max(1);
    let x = |t: u64| 40.0 + (t as f64 / end as f64) * (W - 50.0);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>floe-jepsen: {s}</title>\
         <style>body{{font-family:sans-serif;margin:20px}} .ok{{color:#1e8449}} .bad{{color:#c0392b}} \
         pre{{background:#f4f4f4;padding:8px;white-space:pre-wrap}} td,th{{padding:2px 8px;text-align:left}}</style></head><body>\
         <h1>{s}: <span class=\"{c}\">{v}</span></h1>",
        s = esc(&result.scenario),
        c = if result.valid { "ok" } else { "bad" },
        v = if result.valid { "valid" } else { "INVALID" }
    );
    let _ = write!(
        html,
        "<p>{} nodes, {} s of workload; {} ok, {} fail, {} info; {} keys, {} operations checked in {} ms; \
         recovery after the final heal: {} ({} ms); lost acknowledged writes: {}.</p>",
        result.nodes,
        result.time_limit_s,
        result.counts.ok,
        result.counts.fail,
        result.counts.info,
        result.linearizability.keys,
        result.linearizability.operations,
        result.linearizability.elapsed_ms,
        if result.recovered { "yes" } else { "NO" },
        result.recovery_ms,
        result.lost_writes.len()
    );
    if !result.problems.is_empty() {
        html.push_str("<h2>Problems</h2><ul>");
        for p in &result.problems {
            let _ = write!(html, "<li><pre>{}</pre></li>", esc(p));
        }
        html.push_str("</ul>");
    }
    html.push_str("<h2>Faults</h2><table><tr><th>fault</th><th>attempted</th><th>applied</th><th>errors</th></tr>");
    for (f, s) in &result.nemesis.stats {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            f.name(),
            s.attempted,
            s.applied,
            esc(&s.errors.join("; "))
        );
    }
    html.push_str("</table>");

    // Timeline: operations in lanes (first free lane at the call), at most 4000 drawn.
    let shown: Vec<&Drawn> = ops.iter().take(4000).collect();
    let mut lane_end: Vec<u64> = Vec::new();
    let mut lanes = Vec::with_capacity(shown.len());
    for d in &shown {
        let lane = match lane_end.iter().position(|e| *e < d.call) {
            Some(l) => l,
            None => {
                lane_end.push(0);
                lane_end.len() - 1
            }
        };
        lane_end[lane] = d.ret;
        lanes.push(lane);
    }
    let h = (lane_end.len() as f64 * 8.0 + 20.0).max(60.0);
    let _ = write!(
        html,
        "<h2>Timeline</h2><p>Each bar is an operation from invocation to completion (green ok, red fail, \
         orange info); shaded bands are faults. {} of {} operations shown.</p><svg width=\"{W}\" height=\"{h}\">",
        shown.len(),
        ops.len()
    );
    bands(&mut html, &result.nemesis.intervals, end, h);
    for (d, lane) in shown.iter().zip(lanes) {
        let color = match d.kind {
            Kind::Ok => "#27ae60",
            Kind::Fail => "#c0392b",
            _ => "#e67e22",
        };
        let (a, b) = (x(d.call), x(d.ret));
        let _ = write!(
            html,
            r#"<rect x="{a:.1}" y="{:.1}" width="{:.1}" height="6" fill="{color}"><title>{} {} {:.3}s</title></rect>"#,
            lane as f64 * 8.0 + 4.0,
            (b - a).max(1.0),
            esc(&d.f),
            esc(&d.key),
            (d.ret.saturating_sub(d.call)) as f64 / 1e9
        );
    }
    html.push_str("</svg>");

    // Latency of ok operations.
    let lat: Vec<(u64, f64)> = ops
        .iter()
        .filter(|d| d.kind == Kind::Ok)
        .map(|d| (d.call, (d.ret - d.call) as f64 / 1e6))
        .collect();
    let max_lat = lat.iter().map(|l| l.1).fold(1.0f64, f64::max);
    let ph = 220.0;
    let _ = write!(
        html,
        "<h2>Latency (ok operations, ms, log scale; max {max_lat:.1} ms)</h2><svg width=\"{W}\" height=\"{}\">",
        ph + 20.0
    );
    bands(&mut html, &result.nemesis.intervals, end, ph);
    let y = |ms: f64| {
        ph - (ms.max(0.01).log10() + 2.0) / (max_lat.log10() + 2.0).max(0.1) * (ph - 10.0)
    };
    for t in [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0] {
        if t <= max_lat * 1.01 {
            let _ = write!(
                html,
                r##"<line x1="40" x2="{W}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="0" y="{yy:.1}" font-size="10">{t}</text>"##,
                yy = y(t)
            );
        }
    }
    let step = (lat.len() / 20000).max(1);
    for (t, ms) in lat.iter().step_by(step) {
        let _ = write!(
            html,
            r##"<circle cx="{:.1}" cy="{:.1}" r="1.2" fill="#2471a3"/>"##,
            x(*t),
            y(*ms)
        );
    }
    html.push_str("</svg>");

    // Throughput per second.
    let secs = (end / 1_000_000_000 + 1) as usize;
    let mut per = vec![0u64; secs];
    for d in ops.iter().filter(|d| d.kind == Kind::Ok) {
        per[(d.ret / 1_000_000_000) as usize % secs] += 1;
    }
    let max_t = per.iter().copied().max().unwrap_or(1).max(1) as f64;
    let _ = write!(
        html,
        "<h2>Throughput (ok operations per second; max {max_t:.0})</h2><svg width=\"{W}\" height=\"{}\">",
        ph + 20.0
    );
    bands(&mut html, &result.nemesis.intervals, end, ph);
    let mut pts = String::new();
    for (i, n) in per.iter().enumerate() {
        let _ = write!(
            pts,
            "{:.1},{:.1} ",
            x(i as u64 * 1_000_000_000 + 500_000_000),
            ph - (*n as f64 / max_t) * (ph - 10.0)
        );
    }
    let _ = write!(
        html,
        r##"<polyline points="{pts}" fill="none" stroke="#117a65" stroke-width="1.5"/></svg>"##
    );

    if !result.linearizability.invalid_keys.is_empty() {
        html.push_str("<h2>Counter-examples</h2>");
        for (k, why) in &result.linearizability.invalid_keys {
            let _ = write!(html, "<h3>{}</h3><pre>{}</pre>", esc(k), esc(why));
        }
    }
    html.push_str("<p>Files: <a href=\"history.jsonl\">history.jsonl</a>, <a href=\"results.json\">results.json</a>, node logs <code>node-*.log</code>.</p></body></html>");
    std::fs::write(dir.join("index.html"), html)
}

/// Write a summary page for several scenarios into `dir`.
pub fn write_summary(dir: &Path, results: &[ScenarioResult]) -> std::io::Result<()> {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>floe-jepsen</title>\
         <style>body{font-family:sans-serif;margin:20px} td,th{padding:2px 8px;text-align:left}</style></head>\
         <body><h1>floe-jepsen</h1><table><tr><th>scenario</th><th>verdict</th><th>ok</th><th>fail</th><th>info</th>\
         <th>lost writes</th><th>recovered</th></tr>",
    );
    for r in results {
        let _ = write!(
            html,
            "<tr><td><a href=\"{s}/index.html\">{s}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if r.valid { "valid" } else { "INVALID" },
            r.counts.ok,
            r.counts.fail,
            r.counts.info,
            r.lost_writes.len(),
            r.recovered,
            s = esc(&r.scenario)
        );
    }
    html.push_str("</table></body></html>");
    std::fs::write(dir.join("index.html"), html)?;
    let json = serde_json::to_vec_pretty(results).map_err(std::io::Error::from)?;
    std::fs::write(dir.join("results.json"), json)
}

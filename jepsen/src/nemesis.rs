//! Nemeses: real faults, scheduled, verified as applied, and healed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::RngExt;
use rand::seq::SliceRandom;
use serde::Serialize;
use serde_json::json;

use crate::cluster::Cluster;
use crate::history::{Kind, Process, Recorder};
use crate::net::{self, Lab};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// Network partitions (nftables drops on input).
    Partition,
    /// SIGKILL and restart.
    Kill,
    /// SIGKILL a majority of the nodes at once, restart them on heal.
    KillMajority,
    /// SIGKILL every node, restart them all on heal.
    KillAll,
    /// SIGSTOP and SIGCONT.
    Pause,
    /// Random packet loss.
    Flaky,
    /// Delayed packets (NFQUEUE delayer).
    Slow,
    /// Wall-clock skew (libfaketime).
    Clock,
    /// Voters and learners added and removed.
    Membership,
}

impl Fault {
    /// Every fault kind.
    pub const ALL: [Fault; 9] = [
        Fault::Partition,
        Fault::Kill,
        Fault::KillMajority,
        Fault::KillAll,
        Fault::Pause,
        Fault::Flaky,
        Fault::Slow,
        Fault::Clock,
        Fault::Membership,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Partition => "partition",
            Fault::Kill => "kill",
            Fault::KillMajority => "kill-majority",
            Fault::KillAll => "kill-all",
            Fault::Pause => "pause",
            Fault::Flaky => "flaky",
            Fault::Slow => "slow",
            Fault::Clock => "clock",
            Fault::Membership => "membership",
        }
    }
}

/// A scenario: one fault kind, or several mixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scenario {
    /// Its name (`partition`, ..., `combined`, or `none`).
    pub name: String,
    /// The faults it injects.
    pub faults: Vec<Fault>,
}

impl Scenario {
    /// Parse a `--nemesis` value: a comma-separated list of scenario names, or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, String> {
        let mut out = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => {
                    out.extend(Fault::ALL.iter().map(|f| Scenario::single(*f)));
                    out.push(Scenario::combined());
                }
                "combined" => out.push(Scenario::combined()),
                "none" => out.push(Scenario {
                    name: "none".into(),
                    faults: Vec::new(),
                }),
                other => {
                    let f = Fault::ALL
                        .iter()
                        .find(|f| f.name() == other)
                        .ok_or_else(|| {
                            format!(
                                "unknown nemesis {other:?}: use partition, kill, kill-majority, kill-all, pause, flaky, slow, clock, membership, combined, none or all"
                            )
                        })?;
                    out.push(Scenario::single(*f));
                }
            }
        }
        if out.is_empty() {
            return Err("no nemesis given".into());
        }
        Ok(out)
    }

    fn single(f: Fault) -> Self {
        Self {
            name: f.name().into(),
            faults: vec![f],
        }
    }

    fn combined() -> Self {
        Self {
            name: "combined".into(),
            faults: Fault::ALL.to_vec(),
        }
    }

    /// Whether nodes must run under libfaketime.
    pub fn needs_faketime(&self) -> bool {
        self.faults.contains(&Fault::Clock)
    }
}

/// What happened to each fault kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultStats {
    /// Times it was started.
    pub attempted: u32,
    /// Times it was verified as applied.
    pub applied: u32,
    /// Why attempts were not applied.
    pub errors: Vec<String>,
}

/// A fault interval, for the report's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// The fault.
    pub fault: Fault,
    /// What exactly.
    pub detail: String,
    /// Start (ns since the run's start).
    pub start: u64,
    /// End (ns).
    pub end: u64,
}

/// The nemesis's record of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NemesisLog {
    /// Per fault kind.
    pub stats: BTreeMap<Fault, FaultStats>,
    /// Every interval.
    pub intervals: Vec<Interval>,
}

/// Faults currently in force.
#[derive(Default)]
struct Active {
    partition: Vec<u8>,
    killed: Vec<u64>,
    paused: Vec<u64>,
    lossy: Vec<u8>,
    slowed: Vec<(u8, tokio::process::Child)>,
    skewed: Vec<u64>,
}

/// Drives faults against the cluster.
pub struct Nemesis<'a> {
    cluster: &'a mut Cluster,
    rec: &'a Recorder,
    faults: Vec<Fault>,
    active: Active,
    log: NemesisLog,
    leader_turn: bool,
    delayer_exe: std::path::PathBuf,
}

impl<'a> Nemesis<'a> {
    /// A nemesis injecting `faults` into `cluster`, recording into `rec`.
    pub fn new(
        cluster: &'a mut Cluster,
        rec: &'a Recorder,
        faults: Vec<Fault>,
        delayer_exe: std::path::PathBuf,
    ) -> Self {
        let mut log = NemesisLog::default();
        for f in &faults {
            log.stats.insert(*f, FaultStats::default());
        }
        Self {
            cluster,
            rec,
            faults,
            active: Active::default(),
            log,
            leader_turn: false,
            delayer_exe,
        }
    }

    /// The cluster.
    pub fn cluster(&mut self) -> &mut Cluster {
        self.cluster
    }

    /// Run the schedule until `until`: healthy 2–4 s, then one fault (two mixed, when the
    /// scenario has several kinds) for 3–6 s, healed, and so on.
    pub async fn run(&mut self, until: Instant, mut on_change: impl FnMut(&str)) {
        if self.faults.is_empty() {
            tokio::time::sleep_until(until.into()).await;
            return;
        }
        let mut rng = rand::rng();
        // Short runs get a faster schedule, so that every kind still gets its turns: at 60 s and
        // more, 2–4 s healthy and 3–6 s of fault; at 30 s half of that.
        let total = until
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        let scale = (total / 60.0).clamp(0.4, 1.0);
        let ms = |lo: f64, hi: f64, rng: &mut rand::rngs::ThreadRng| {
            Duration::from_millis(rng.random_range((lo * scale) as u64..(hi * scale) as u64))
        };
        // Mixed scenarios go through every kind in a shuffled cycle, two at a time, so each
        // kind is applied; a kind that could not be applied goes to the end of the cycle, after
        // the kinds that have not had their turn (at the front it took turn after turn while
        // the cluster could not take it, and a short run ended with a kind never applied).
        let mut queue: std::collections::VecDeque<Fault> = Default::default();
        loop {
            let healthy = ms(2000.0, 4000.0, &mut rng);
            if Instant::now() + healthy >= until {
                break;
            }
            tokio::time::sleep(healthy).await;
            let n = if self.faults.len() > 1 { 2 } else { 1 };
            let mut chosen = Vec::new();
            for _ in 0..4 {
                if chosen.len() >= n {
                    break;
                }
                if queue.is_empty() {
                    let mut cycle = self.faults.clone();
                    cycle.shuffle(&mut rng);
                    queue.extend(cycle);
                }
                if let Some(f) = queue.pop_front() {
                    if chosen.contains(&f) {
                        queue.push_back(f);
                    } else {
                        chosen.push(f);
                    }
                }
            }
            let mut started = Vec::new();
            for f in &chosen {
                match self.start(*f).await {
                    Some(iv) => {
                        on_change(&format!("{} {}", f.name(), iv.detail));
                        started.push(iv);
                    }
                    None if n > 1 => queue.push_back(*f),
                    None => {}
                }
            }
            let hold = ms(3000.0, 6000.0, &mut rng);
            let end = (Instant::now() + hold).min(until);
            tokio::time::sleep_until(end.into()).await;
            for mut iv in started {
                self.stop(iv.fault).await;
                iv.end = self.rec.now();
                self.log.intervals.push(iv);
            }
            on_change("healthy");
            if Instant::now() >= until {
                break;
            }
        }
    }

    fn note(&self, f: &str, fault: Fault, value: serde_json::Value) {
        self.rec.record(
            Process::Nemesis("nemesis".into()),
            Kind::Info,
            f,
            Some(fault.name()),
            value,
            None,
        );
    }

    fn applied(&mut self, fault: Fault, ok: Result<(), String>) -> bool {
        let s = self.log.stats.entry(fault).or_default();
        s.attempted += 1;
        match ok {
            Ok(()) => {
                s.applied += 1;
                true
            }
            Err(e) => {
                if s.errors.len() < 20 {
                    s.errors.push(e);
                }
                false
            }
        }
    }

    /// Member node ids, shuffled.
    fn shuffled_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.cluster.nodes.keys().copied().collect();
        ids.shuffle(&mut rand::rng());
        ids
    }

    async fn target(&mut self, candidates: &[u64]) -> Option<u64> {
        self.leader_turn = !self.leader_turn;
        if self.leader_turn
            && let Some(l) = self.cluster.leader().await
            && candidates.contains(&l)
        {
            return Some(l);
        }
        let mut c = candidates.to_vec();
        c.shuffle(&mut rand::rng());
        c.first().copied()
    }

    /// Start `fault`; returns its interval when it was applied.
    async fn start(&mut self, fault: Fault) -> Option<Interval> {
        let (detail, res) = match fault {
            Fault::Partition => self.start_partition().await,
            Fault::Kill => {
                let live = self.cluster.live_ids();
                match self.target(&live).await {
                    Some(id) => {
                        let ok = self.cluster.kill(id).await;
                        if ok {
                            self.active.killed.push(id);
                        }
                        (
                            format!("node {id}"),
                            if ok {
                                Ok(())
                            } else {
                                Err(format!("node {id} did not die of SIGKILL"))
                            },
                        )
                    }
                    None => ("nothing".into(), Err("no live node to kill".into())),
                }
            }
            Fault::KillMajority | Fault::KillAll => {
                let mut live = self.cluster.live_ids();
                live.shuffle(&mut rand::rng());
                let members = self.cluster.nodes.len();
                let n = if fault == Fault::KillAll {
                    live.len()
                } else {
                    (members / 2 + 1).min(live.len())
                };
                live.truncate(n);
                live.sort_unstable();
                let mut res = if n == 0 {
                    Err("no live node to kill".to_string())
                } else {
                    Ok(())
                };
                for (id, ok) in self.cluster.kill_together(&live).await {
                    self.active.killed.push(id);
                    if !ok {
                        res = Err(format!("node {id} did not die of SIGKILL"));
                    }
                }
                (format!("nodes {live:?} of {members}"), res)
            }
            Fault::Pause => {
                let live = self.cluster.live_ids();
                match self.target(&live).await {
                    Some(id) => {
                        let ok = self.cluster.pause(id).await;
                        self.active.paused.push(id);
                        (
                            format!("node {id}"),
                            if ok {
                                Ok(())
                            } else {
                                Err(format!("node {id} not stopped"))
                            },
                        )
                    }
                    None => ("nothing".into(), Err("no live node to pause".into())),
                }
            }
            Fault::Flaky => {
                let slots = self.some_slots();
                let mut res = Ok(());
                for s in &slots {
                    if let Err(e) = net::lossy(*s, 20) {
                        res = Err(e.to_string());
                    }
                    self.active.lossy.push(*s);
                }
                if res.is_ok() && slots.iter().any(|s| net::loss_rules(*s).is_none()) {
                    res = Err("loss rule not found after install".into());
                }
                (format!("20% loss into slots {slots:?}"), res)
            }
            Fault::Slow => {
                let slots = self.some_slots();
                let mut res = Ok(());
                for s in &slots {
                    match self.start_delayer(*s).await {
                        Ok(child) => self.active.slowed.push((*s, child)),
                        Err(e) => res = Err(e),
                    }
                }
                (format!("50±25 ms delay into slots {slots:?}"), res)
            }
            Fault::Clock => {
                let mut rng = rand::rng();
                let mut ids = self.shuffled_ids();
                let n = rng.random_range(1..=ids.len().max(1));
                ids.truncate(n);
                let mut res = Ok(());
                let mut what = Vec::new();
                for id in ids {
                    let exp: f64 = rng.random_range(6.0..22.0);
                    let ms = 1.5f64.powf(exp);
                    let off = if rng.random_bool(0.5) { ms } else { -ms } / 1000.0;
                    what.push(format!("node {id} {off:+.3}s"));
                    if let Err(e) = self.cluster.set_clock(id, off) {
                        res = Err(e.to_string());
                        continue;
                    }
                    self.active.skewed.push(id);
                    match self.cluster.observed_clock_offset(id) {
                        Some(seen) if (seen - off).abs() < 1.0 => {}
                        other => {
                            res = Err(format!(
                                "node {id}: clock offset {other:?}, wanted {off:.3}"
                            ))
                        }
                    }
                }
                (what.join(", "), res)
            }
            Fault::Membership => self.membership_step().await,
        };
        let value = json!(detail);
        let ok = self.applied(fault, res.clone());
        self.note(
            "start",
            fault,
            json!({"detail": value, "applied": ok, "error": res.err()}),
        );
        ok.then(|| Interval {
            fault,
            detail,
            start: self.rec.now(),
            end: 0,
        })
    }

    /// 1..=n random member slots.
    fn some_slots(&self) -> Vec<u8> {
        let mut rng = rand::rng();
        let mut slots: Vec<u8> = self.cluster.nodes.values().map(|n| n.slot).collect();
        slots.shuffle(&mut rng);
        let n = rng.random_range(1..=slots.len().max(1));
        slots.truncate(n);
        slots.sort_unstable();
        slots
    }

    async fn start_delayer(&mut self, slot: u8) -> Result<tokio::process::Child, String> {
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &Lab::node_ns(slot)])
            .arg(&self.delayer_exe)
            .args([
                "delayer",
                "--queue",
                "1",
                "--delay-ms",
                "50",
                "--jitter-ms",
                "25",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting the delayer: {e}"))?;
        // The delayer prints "ready" once bound to its queue.
        let Some(out) = child.stdout.take() else {
            return Err("delayer has no stdout".into());
        };
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(out));
        match tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await {
            Ok(Ok(Some(l))) if l.trim() == "ready" => {}
            other => return Err(format!("delayer in slot {slot} did not start: {other:?}")),
        }
        net::queue_input(slot, 1).map_err(|e| e.to_string())?;
        if !net::has_queue_rule(slot) {
            return Err(format!("NFQUEUE rule not found in slot {slot}"));
        }
        Ok(child)
    }

    async fn start_partition(&mut self) -> (String, Result<(), String>) {
        let mut rng = rand::rng();
        let ids = self.shuffled_ids();
        let slot = |id: &u64| self.cluster.nodes.get(id).map_or(0, |n| n.slot);
        let n = ids.len();
        let mut grudge: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        let mut cut = |a: u64, b: u64, both: bool| {
            grudge.entry(a).or_default().insert(b);
            if both {
                grudge.entry(b).or_default().insert(a);
            }
        };
        let shape = rng.random_range(0..5);
        let name = match shape {
            0 => {
                let (a, b) = ids.split_at(n / 2);
                for x in a {
                    for y in b {
                        cut(*x, *y, true);
                    }
                }
                format!("halves {a:?} | {b:?}")
            }
            1 | 2 => {
                let x = if shape == 2 {
                    match self.cluster.leader().await {
                        Some(l) => l,
                        None => ids[0],
                    }
                } else {
                    ids[0]
                };
                for y in ids.iter().filter(|y| **y != x) {
                    cut(x, *y, true);
                }
                if shape == 2 {
                    format!("isolate leader {x}")
                } else {
                    format!("isolate node {x}")
                }
            }
            3 => {
                // Every node hears a majority, no two the same one.
                for (i, x) in ids.iter().enumerate() {
                    if n == 3 {
                        cut(*x, ids[(i + 1) % n], false);
                    } else {
                        for (j, y) in ids.iter().enumerate() {
                            let d = (i + n - j) % n;
                            if d != 0 && d != 1 && d != n - 1 {
                                cut(*x, *y, false);
                            }
                        }
                    }
                }
                format!("majorities ring {ids:?}")
            }
            _ => {
                let mid = ids[0];
                let rest = &ids[1..];
                let (a, b) = rest.split_at(rest.len() / 2);
                for x in a {
                    for y in b {
                        cut(*x, *y, true);
                    }
                }
                format!("bridge {a:?} - {mid} - {b:?}")
            }
        };
        let mut res = Ok(());
        for (x, from) in &grudge {
            let sx = slot(x);
            let from_slots: Vec<u8> = from.iter().map(&slot).collect();
            if let Err(e) = net::drop_from(sx, &from_slots) {
                res = Err(e.to_string());
            }
            self.active.partition.push(sx);
            let listed = net::partition_rules(sx).unwrap_or_default();
            if from_slots
                .iter()
                .any(|s| !listed.contains(&Lab::node_ip(*s).to_string()))
            {
                res = Err(format!("partition rules of slot {sx} not in place"));
            }
        }
        (name, res)
    }

    /// One membership change: add a learner, promote it, or remove a voter.
    async fn membership_step(&mut self) -> (String, Result<(), String>) {
        let Some((voters, learners)) = self.cluster.sync_membership().await else {
            return (
                "membership".into(),
                Err("no leader reports the membership".into()),
            );
        };
        if let Some(l) = learners.first().copied() {
            let r = self.cluster.promote(l).await.map_err(|e| e.to_string());
            let r = match r {
                Ok(()) => self.verify_membership(|v, _| v.contains(&l)).await,
                e => e,
            };
            return (format!("promote node {l} to voter"), r);
        }
        if voters.len() > self.cluster.size {
            let mut v = voters;
            v.shuffle(&mut rand::rng());
            let id = v[0];
            let r = self.cluster.remove(id).await.map_err(|e| e.to_string());
            let r = match r {
                Ok(()) => {
                    self.verify_membership(|v, l| !v.contains(&id) && !l.contains(&id))
                        .await
                }
                e => e,
            };
            return (format!("remove voter {id}"), r);
        }
        match self.cluster.add_learner().await {
            Ok(id) => {
                let r = self.verify_membership(|_, l| l.contains(&id)).await;
                (format!("add learner {id}"), r)
            }
            Err(e) => ("add learner".into(), Err(e.to_string())),
        }
    }

    async fn verify_membership(&self, ok: impl Fn(&[u64], &[u64]) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some((v, l)) = self.cluster.membership().await
                && ok(&v, &l)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("membership change not visible in the leader's status".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Heal `fault`.
    async fn stop(&mut self, fault: Fault) {
        let mut detail = String::new();
        match fault {
            Fault::Partition => {
                for s in std::mem::take(&mut self.active.partition) {
                    net::heal_rules(s);
                }
            }
            Fault::Kill | Fault::KillMajority | Fault::KillAll => {
                for id in std::mem::take(&mut self.active.killed) {
                    if let Err(e) = self.cluster.restart(id) {
                        detail = e.to_string();
                    }
                }
            }
            Fault::Pause => {
                for id in std::mem::take(&mut self.active.paused) {
                    self.cluster.resume(id);
                }
            }
            Fault::Flaky => {
                for s in std::mem::take(&mut self.active.lossy) {
                    net::heal_rules(s);
                }
            }
            Fault::Slow => {
                for (s, mut child) in std::mem::take(&mut self.active.slowed) {
                    net::unqueue_input(s);
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
            Fault::Clock => {
                for id in std::mem::take(&mut self.active.skewed) {
                    if let Err(e) = self.cluster.set_clock(id, 0.0) {
                        detail = e.to_string();
                    }
                }
            }
            Fault::Membership => {}
        }
        self.note("stop", fault, json!(detail));
    }

    /// Heal everything, restore the voter count, and return the log.
    pub async fn heal_all(&mut self) -> NemesisLog {
        for f in Fault::ALL {
            self.stop(f).await;
        }
        // Every process runs (a membership change may have raced a kill).
        let ids: Vec<u64> = self.cluster.nodes.keys().copied().collect();
        for id in ids {
            let _ = self.cluster.restart(id);
            self.cluster.resume(id);
        }
        // Bring the membership back to `size` voters and no learners, one process per member
        // (a change whose request failed may still have been applied).
        let deadline = Instant::now() + Duration::from_secs(45);
        while Instant::now() < deadline {
            let Some((voters, learners)) = self.cluster.sync_membership().await else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let orphan = voters
                .iter()
                .chain(learners.iter())
                .find(|id| !self.cluster.nodes.contains_key(id))
                .copied();
            let r = if let Some(o) = orphan {
                self.cluster.remove(o).await
            } else if let Some(l) = learners.first() {
                self.cluster.promote(*l).await
            } else if voters.len() > self.cluster.size {
                let newest = voters.iter().max().copied().unwrap_or_default();
                self.cluster.remove(newest).await
            } else {
                break;
            };
            if r.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        std::mem::take(&mut self.log)
    }
}

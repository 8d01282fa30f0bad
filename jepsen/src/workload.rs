//! Workloads through the real client: a compare-and-set register and a counter per actor, over
//! many keys, by several logical processes, at a configured rate.
//!
//! Value shapes in the history:
//! - register `read`: invoke `null`; ok: the value (a number) or `"absent"`.
//! - register `write`: invoke and ok: the written number (unique in the run).
//! - register `cas`: invoke `{"from", "to"}`; ok adds `"swapped"` and, when it did not swap,
//!   `"current"` (what the register held). A cas whose precondition failed is `ok`.
//! - counter `add`: invoke the delta; ok `{"delta", "result"}` (the value after the add).
//! - counter `read`: invoke `null`; ok the value.
//!
//! A mutation whose outcome is not known (timeout, lost connection, no quorum) is `info`; the
//! worker then continues as a new process. Reads that fail are `fail` (they had no effect).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use floe::CallFailure;
use floe::builtin::{Cas, CasOutcome, Counter, Increment, Read, Register, Value, Write};
use floe_client::Client;
use rand::Rng;
use serde_json::json;

use crate::history::{Kind, Process, Recorder};

/// Which workload to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Compare-and-set registers.
    Register,
    /// Counters.
    Counter,
    /// Both, on separate keys.
    Both,
}

/// Workload settings.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Which objects.
    pub workload: Workload,
    /// Concurrent workers (each one logical process at a time).
    pub concurrency: usize,
    /// Total operations per second (all workers).
    pub rate: f64,
    /// Keys in use at once (per object kind).
    pub active_keys: usize,
    /// Operations per key before it is retired for a fresh one.
    pub ops_per_key: usize,
    /// Deadline of one operation.
    pub op_timeout: Duration,
}

struct KeySlot {
    name: String,
    issued: usize,
    last_seen: Option<u64>,
}

/// The keys in use: each retires after `ops_per_key` operations.
struct Keys {
    prefix: &'static str,
    slots: Vec<KeySlot>,
    next: u64,
    per_key: usize,
    all: Vec<String>,
}

impl Keys {
    fn new(prefix: &'static str, active: usize, per_key: usize) -> Self {
        let mut k = Self {
            prefix,
            slots: Vec::new(),
            next: 0,
            per_key,
            all: Vec::new(),
        };
        for _ in 0..active.max(1) {
            let s = k.fresh();
            k.slots.push(s);
        }
        k
    }

    fn fresh(&mut self) -> KeySlot {
        let name = format!("{}{}", self.prefix, self.next);
        self.next += 1;
        KeySlot {
            name,
            issued: 0,
            last_seen: None,
        }
    }

    /// Pick a key for one operation; returns (key, last value seen there).
    fn pick(&mut self, rng: &mut impl Rng) -> (String, Option<u64>) {
        let i = rng.random_range(0..self.slots.len());
        if self.slots[i].issued >= self.per_key {
            self.slots[i] = self.fresh();
        }
        let s = &mut self.slots[i];
        if s.issued == 0 {
            self.all.push(s.name.clone());
        }
        s.issued += 1;
        (s.name.clone(), s.last_seen)
    }

    fn saw(&mut self, key: &str, v: Option<u64>) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.name == key) {
            s.last_seen = v;
        }
    }
}

/// Counts of completions, for the progress bar.
#[derive(Debug, Default)]
pub struct Counts {
    /// ok completions.
    pub ok: AtomicU64,
    /// fail completions.
    pub fail: AtomicU64,
    /// info completions.
    pub info: AtomicU64,
}

/// Shared state of the workers.
pub struct Generator {
    cfg: WorkloadConfig,
    registers: Mutex<Keys>,
    counters: Mutex<Keys>,
    next_value: AtomicU64,
    next_process: AtomicU64,
    /// Completion counts.
    pub counts: Counts,
    start: Instant,
    issued: AtomicU64,
}

/// Actor type prefix of register keys in the history (`register/<actor key>`).
pub const REGISTER_PREFIX: &str = "register/";
/// Actor type prefix of counter keys in the history.
pub const COUNTER_PREFIX: &str = "counter/";

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: WorkloadConfig) -> Arc<Self> {
        Arc::new(Self {
            registers: Mutex::new(Keys::new(REGISTER_PREFIX, cfg.active_keys, cfg.ops_per_key)),
            counters: Mutex::new(Keys::new(COUNTER_PREFIX, cfg.active_keys, cfg.ops_per_key)),
            next_value: AtomicU64::new(1),
            next_process: AtomicU64::new(cfg.concurrency as u64),
            counts: Counts::default(),
            start: Instant::now(),
            issued: AtomicU64::new(0),
            cfg,
        })
    }

    /// Every key used so far (register keys, counter keys).
    pub fn keys(&self) -> (Vec<String>, Vec<String>) {
        let r = self.registers.lock().unwrap_or_else(|p| p.into_inner());
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let used = |k: &Keys| k.all.clone();
        match self.cfg.workload {
            Workload::Register => (used(&r), Vec::new()),
            Workload::Counter => (Vec::new(), used(&c)),
            Workload::Both => (used(&r), used(&c)),
        }
    }

    /// Remember the value last seen in register `key` (the next cas expects it).
    fn saw(&self, key: &str, v: Option<u64>) {
        self.registers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saw(key, v);
    }

    /// A fresh process id (after an `info`, or for the final reads).
    pub fn new_process(&self) -> u64 {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    /// Wait for this worker's next slot so that all workers together issue `rate` ops/s.
    async fn pace(&self) {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let at = self.start + Duration::from_secs_f64(n as f64 / self.cfg.rate.max(0.1));
        tokio::time::sleep_until(at.into()).await;
    }
}

/// How a failed mutation completes: `fail` only when the failure proves it had no effect,
/// otherwise `info` (outcome unknown).
fn mutation_failure<E>(e: &floe::CallError<E>) -> Kind {
    if e.failure().is_some_and(definite) {
        Kind::Fail
    } else {
        Kind::Info
    }
}

/// Whether the failure proves the operation had no effect.
fn definite(f: &CallFailure) -> bool {
    matches!(
        f,
        CallFailure::BadRequest(_)
            | CallFailure::Rejected { .. }
            | CallFailure::CallCycle(_)
            | CallFailure::ActivationFailed(_)
    )
}

fn reg_json(v: Option<u64>) -> serde_json::Value {
    v.map_or(json!("absent"), |n| json!(n))
}

fn parse_reg(v: Option<String>) -> Result<Option<u64>, String> {
    match v {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("register holds {s:?}, which no client wrote")),
    }
}

/// One worker: runs operations until `until`, recording them.
pub async fn worker(
    gen_: Arc<Generator>,
    client: Arc<Client>,
    rec: Arc<Recorder>,
    worker_index: u64,
    until: Instant,
) {
    let mut process = worker_index;
    let mut rng = {
        use rand::SeedableRng;
        rand::rngs::StdRng::from_rng(&mut rand::rng())
    };
    loop {
        gen_.pace().await;
        if Instant::now() >= until {
            return;
        }
        let counter = match gen_.cfg.workload {
            Workload::Register => false,
            Workload::Counter => true,
            Workload::Both => worker_index % 2 == 1,
        };
        let outcome = if counter {
            let (key, _) = gen_
                .counters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pick(&mut rng);
            if rng.random_bool(0.6) {
                let d: i64 = rng.random_range(1..=5);
                counter_add(&gen_, &client, &rec, process, &key, d).await
            } else {
                counter_read(&gen_, &client, &rec, process, &key).await
            }
        } else {
            let (key, last) = gen_
                .registers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pick(&mut rng);
            let roll: f64 = rng.random();
            if roll < 0.5 {
                register_read(&gen_, &client, &rec, process, &key).await
            } else if roll < 0.75 {
                register_write(&gen_, &client, &rec, process, &key).await
            } else {
                register_cas(&gen_, &client, &rec, process, &key, last).await
            }
        };
        if outcome == Kind::Info {
            process = gen_.new_process();
        }
    }
}

fn actor_key<'a>(key: &'a str, prefix: &str) -> &'a str {
    key.strip_prefix(prefix).unwrap_or(key)
}

#[allow(clippy::too_many_arguments)]
fn complete(
    gen_: &Generator,
    rec: &Recorder,
    process: u64,
    kind: Kind,
    f: &str,
    key: &str,
    value: serde_json::Value,
    error: Option<String>,
) -> Kind {
    match kind {
        Kind::Ok => gen_.counts.ok.fetch_add(1, Ordering::Relaxed),
        Kind::Fail => gen_.counts.fail.fetch_add(1, Ordering::Relaxed),
        _ => gen_.counts.info.fetch_add(1, Ordering::Relaxed),
    };
    rec.record(Process::Client(process), kind, f, Some(key), value, error);
    kind
}

/// A register read (also used for the final reads). Returns the completion kind.
pub async fn register_read(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    process: u64,
    key: &str,
) -> Kind {
    rec.record(
        Process::Client(process),
        Kind::Invoke,
        "read",
        Some(key),
        json!(null),
        None,
    );
    let r = client
        .actor::<Register>(actor_key(key, REGISTER_PREFIX))
        .with_timeout(gen_.cfg.op_timeout)
        .call(Read)
        .await;
    match r.map_err(|e| e.to_string()).and_then(parse_reg) {
        Ok(v) => {
            gen_.saw(key, v);
            complete(gen_, rec, process, Kind::Ok, "read", key, reg_json(v), None)
        }
        Err(e) => complete(
            gen_,
            rec,
            process,
            Kind::Fail,
            "read",
            key,
            json!(null),
            Some(e),
        ),
    }
}

async fn register_write(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    process: u64,
    key: &str,
) -> Kind {
    let v = gen_.next_value.fetch_add(1, Ordering::Relaxed);
    rec.record(
        Process::Client(process),
        Kind::Invoke,
        "write",
        Some(key),
        json!(v),
        None,
    );
    let r = client
        .actor::<Register>(actor_key(key, REGISTER_PREFIX))
        .with_timeout(gen_.cfg.op_timeout)
        .call(Write(v.to_string()))
        .await;
    match r {
        Ok(()) => {
            gen_.saw(key, Some(v));
            complete(gen_, rec, process, Kind::Ok, "write", key, json!(v), None)
        }
        Err(e) => {
            let kind = mutation_failure(&e);
            complete(
                gen_,
                rec,
                process,
                kind,
                "write",
                key,
                json!(v),
                Some(e.to_string()),
            )
        }
    }
}

async fn register_cas(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    process: u64,
    key: &str,
    from: Option<u64>,
) -> Kind {
    let to = gen_.next_value.fetch_add(1, Ordering::Relaxed);
    let args = json!({"from": reg_json(from), "to": to});
    rec.record(
        Process::Client(process),
        Kind::Invoke,
        "cas",
        Some(key),
        args.clone(),
        None,
    );
    let r = client
        .actor::<Register>(actor_key(key, REGISTER_PREFIX))
        .with_timeout(gen_.cfg.op_timeout)
        .call(Cas {
            expect: from.map(|v| v.to_string()),
            new: to.to_string(),
        })
        .await;
    match r {
        Ok(CasOutcome::Swapped) => {
            gen_.saw(key, Some(to));
            let v = json!({"from": reg_json(from), "to": to, "swapped": true});
            complete(gen_, rec, process, Kind::Ok, "cas", key, v, None)
        }
        Ok(CasOutcome::Mismatch(current)) => match parse_reg(current) {
            Ok(cur) => {
                gen_.saw(key, cur);
                let v = json!({"from": reg_json(from), "to": to, "swapped": false, "current": reg_json(cur)});
                complete(gen_, rec, process, Kind::Ok, "cas", key, v, None)
            }
            // Garbage in the register: record an impossible observation so the checker flags it.
            Err(e) => complete(gen_, rec, process, Kind::Info, "cas", key, args, Some(e)),
        },
        Err(e) => {
            let kind = mutation_failure(&e);
            complete(
                gen_,
                rec,
                process,
                kind,
                "cas",
                key,
                args,
                Some(e.to_string()),
            )
        }
    }
}

async fn counter_add(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    process: u64,
    key: &str,
    d: i64,
) -> Kind {
    rec.record(
        Process::Client(process),
        Kind::Invoke,
        "add",
        Some(key),
        json!(d),
        None,
    );
    let r = client
        .actor::<Counter>(actor_key(key, COUNTER_PREFIX))
        .with_timeout(gen_.cfg.op_timeout)
        .call(Increment(d))
        .await;
    match r {
        Ok(total) => {
            let v = json!({"delta": d, "result": total});
            complete(gen_, rec, process, Kind::Ok, "add", key, v, None)
        }
        Err(e) => {
            let kind = mutation_failure(&e);
            complete(
                gen_,
                rec,
                process,
                kind,
                "add",
                key,
                json!(d),
                Some(e.to_string()),
            )
        }
    }
}

/// A counter read (also used for the final reads).
pub async fn counter_read(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    process: u64,
    key: &str,
) -> Kind {
    rec.record(
        Process::Client(process),
        Kind::Invoke,
        "read",
        Some(key),
        json!(null),
        None,
    );
    let r = client
        .actor::<Counter>(actor_key(key, COUNTER_PREFIX))
        .with_timeout(gen_.cfg.op_timeout)
        .call(Value)
        .await;
    match r {
        Ok(v) => complete(gen_, rec, process, Kind::Ok, "read", key, json!(v), None),
        Err(e) => complete(
            gen_,
            rec,
            process,
            Kind::Fail,
            "read",
            key,
            json!(null),
            Some(e.to_string()),
        ),
    }
}

/// After the final heal: read every key until the read succeeds (each attempt is recorded).
/// Returns the keys that could not be read before `deadline`.
pub async fn final_reads(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    deadline: Instant,
) -> Vec<String> {
    let (regs, ctrs) = gen_.keys();
    let mut unread = Vec::new();
    for (key, counter) in regs
        .into_iter()
        .map(|k| (k, false))
        .chain(ctrs.into_iter().map(|k| (k, true)))
    {
        let process = gen_.new_process();
        loop {
            let kind = if counter {
                counter_read(gen_, client, rec, process, &key).await
            } else {
                register_read(gen_, client, rec, process, &key).await
            };
            if kind == Kind::Ok {
                break;
            }
            if Instant::now() > deadline {
                unread.push(key.clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    unread
}

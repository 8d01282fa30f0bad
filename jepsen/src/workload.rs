//! Workloads through the real client: compare-and-set registers and counters over many keys
//! (`register`, `counter`, `both`), retries of old requests (`retry`), many short-lived clients
//! (`clients`), a bank of accounts moved between by a teller actor (`bank`), and registers of
//! values of 1–3 MiB (`large`), by several logical processes, at a configured rate.
//!
//! Value shapes in the history:
//! - register `read`: invoke `null`; ok: the value (a number) or `"absent"`, or
//!   `{"foreign": "<what it held>"}` when it held what no client wrote (the checker rejects it).
//! - register `write`: invoke and ok: the written number (unique in the run). In the `large`
//!   workload the number names a 1–3 MiB string derived from it; a read verifies every byte.
//! - register `cas`: invoke `{"from", "to"}`; ok adds `"swapped"` and, when it did not swap,
//!   `"current"` (what the register held, possibly foreign). A cas whose precondition failed is
//!   `ok`.
//! - counter `add`: invoke the delta; ok `{"delta", "result"}` (the value after the add).
//! - counter `read`: invoke `null`; ok the value.
//! - bank (keys `bank/...`, checked by invariants, not a model): `deposit` on `bank/<account>`
//!   (invoke the amount, ok `{"balance"}`); `transfer` on `bank/transfer` (invoke `{"from",
//!   "to", "amount"}`, ok `{"from_balance", "to_balance"}`, fail: refused, nothing moved);
//!   `balance` on `bank/<account>` (invoke `null`, ok the balance).
//!
//! Mutations of the `retry`, `clients` and `bank` workloads carry their request id
//! (`"request"`); a later invocation with the same id is a retry of that operation.
//!
//! A mutation whose outcome is not known (timeout, lost connection, no quorum, expired) is
//! `info`; the worker then continues as a new process. Reads that fail are `fail` (they had no
//! effect).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use floe::builtin::{
    Balance, BankError, Cas, CasOutcome, Counter, Credit, Increment, Read, Register, Teller,
    Transfer, Value, Write,
};
use floe::{CallError, CallFailure, RequestId};
use floe_client::{Client, ClientConfig};
use rand::{Rng, RngExt};
use serde::Serialize;
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
    /// Counters and registers whose earlier mutations are retried, long after, with their
    /// request ids.
    Retry,
    /// Counter adds (retried with their request ids) from many short-lived clients.
    Clients,
    /// Transfers between accounts through a teller actor; invariants instead of a model.
    Bank,
    /// Registers holding 1–3 MiB values.
    Large,
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
    /// Keys in use at once (per object kind; accounts of the bank).
    pub active_keys: usize,
    /// Operations per key before it is retired for a fresh one.
    pub ops_per_key: usize,
    /// Deadline of one operation.
    pub op_timeout: Duration,
}

/// Most operations per second of the `large` workload (each write moves 1–3 MiB through the
/// log of every node).
pub const LARGE_MAX_RATE: f64 = 6.0;

/// The nodes' message limit in the `large` workload (`--max-message-bytes`): a write carries,
/// and a read returns, a value of up to 3 MiB, above the default limit of 1 MiB. With the
/// default state limit (4 MiB) it keeps one commit within a replicated entry.
pub const LARGE_MAX_MESSAGE_BYTES: usize = 7 << 19;

/// Deadline of one operation of the `large` workload, at least.
pub const LARGE_MIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Opening balance of each bank account.
pub const BANK_OPENING: i64 = 100;

/// Commits on a key after which a pooled request is due for its retry: more than the 64
/// outcomes per actor that an older design remembered.
pub const RETRY_AFTER_COMMITS: u64 = 80;

/// Age after which a pooled request is due for its retry anyway (across some fault cycles).
const RETRY_AFTER: Duration = Duration::from_secs(4);

/// Short-lived clients each `clients` worker runs at once.
const CLIENT_LIVES_PER_WORKER: usize = 12;

/// An ambiguous transfer is retried with its request id after this long.
const TRANSFER_RETRY_AFTER: Duration = Duration::from_millis(300);

struct KeySlot {
    name: String,
    issued: usize,
    /// Operations on it that ended with their outcome unknown.
    unknown: usize,
    last_seen: Option<u64>,
}

/// A key also retires after this many operations of unknown outcome: each one may take effect
/// at any later point, and the checker's search grows exponentially with them on one key.
const UNKNOWN_PER_KEY: usize = 24;

/// The keys in use: each retires after `ops_per_key` operations (or [`UNKNOWN_PER_KEY`] of
/// unknown outcome).
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
            unknown: 0,
            last_seen: None,
        }
    }

    /// Pick a key for one operation; returns (key, last value seen there).
    fn pick(&mut self, rng: &mut impl Rng) -> (String, Option<u64>) {
        let i = rng.random_range(0..self.slots.len());
        if self.slots[i].issued >= self.per_key || self.slots[i].unknown >= UNKNOWN_PER_KEY {
            self.slots[i] = self.fresh();
        }
        let s = &mut self.slots[i];
        if s.issued == 0 {
            self.all.push(s.name.clone());
        }
        s.issued += 1;
        (s.name.clone(), s.last_seen)
    }

    fn unknown(&mut self, key: &str) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.name == key) {
            s.unknown += 1;
        }
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

/// A mutation kept for a later retry with its request id.
#[derive(Debug, Clone)]
struct Pooled {
    key: String,
    request: RequestId,
    op: PooledOp,
    at: Instant,
    commits_at: u64,
}

#[derive(Debug, Clone, Copy)]
enum PooledOp {
    Add(i64),
    Cas { from: Option<u64>, to: u64 },
}

/// An ambiguous transfer, to be retried with its request id until it gets a definite answer.
#[derive(Debug, Clone)]
struct Pending {
    request: RequestId,
    from: usize,
    to: usize,
    amount: i64,
    at: Instant,
}

/// What the workload did beyond the history's counts (in `results.json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkloadStats {
    /// Distinct client sessions that made a call.
    pub sessions: usize,
    /// Retries sent with an earlier request id.
    pub retries: u64,
    /// Retries answered (the checker compares the answer with the original).
    pub retries_answered: u64,
    /// Retries refused as expired (outcome unknown, not applied again).
    pub retries_expired: u64,
    /// Retries with another outcome (timeout, no quorum).
    pub retries_unknown: u64,
    /// Retries sent after more than the pooled key's commit threshold.
    pub retries_after_commits: u64,
    /// Bank transfers that ended expired (their outcome can no longer be learned).
    pub transfers_expired: u64,
    /// Bank transfers still unknown when the final phase gave up on them.
    pub transfers_unresolved: u64,
}

/// Shared state of the workers.
pub struct Generator {
    cfg: WorkloadConfig,
    client_config: ClientConfig,
    registers: Mutex<Keys>,
    counters: Mutex<Keys>,
    next_value: AtomicU64,
    next_process: AtomicU64,
    /// Completion counts.
    pub counts: Counts,
    start: Instant,
    issued: AtomicU64,
    rate: f64,
    /// Mutations committed or maybe committed, per key (decides when a retry is due).
    commits: Mutex<HashMap<String, u64>>,
    pool: Mutex<Vec<Pooled>>,
    pending: Mutex<Vec<Pending>>,
    sessions: Mutex<HashSet<u64>>,
    stats: Mutex<WorkloadStats>,
}

/// Actor type prefix of register keys in the history (`register/<actor key>`).
pub const REGISTER_PREFIX: &str = "register/";
/// Actor type prefix of counter keys in the history.
pub const COUNTER_PREFIX: &str = "counter/";
/// History key of the bank's transfers.
pub const TRANSFER_KEY: &str = "bank/transfer";

/// History key of bank account `i`.
pub fn account_key(i: usize) -> String {
    format!("bank/a{i}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Generator {
    /// A generator for `cfg`; `client_config` makes the short-lived clients.
    pub fn new(cfg: WorkloadConfig, client_config: ClientConfig) -> Arc<Self> {
        let large = cfg.workload == Workload::Large;
        let reg_prefix = if large { "register/L" } else { REGISTER_PREFIX };
        let rate = if large {
            cfg.rate.min(LARGE_MAX_RATE)
        } else {
            cfg.rate
        };
        Arc::new(Self {
            registers: Mutex::new(Keys::new(reg_prefix, cfg.active_keys, cfg.ops_per_key)),
            counters: Mutex::new(Keys::new(COUNTER_PREFIX, cfg.active_keys, cfg.ops_per_key)),
            next_value: AtomicU64::new(1),
            next_process: AtomicU64::new(cfg.concurrency as u64),
            counts: Counts::default(),
            start: Instant::now(),
            issued: AtomicU64::new(0),
            rate,
            commits: Mutex::new(HashMap::new()),
            pool: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashSet::new()),
            stats: Mutex::new(WorkloadStats::default()),
            client_config,
            cfg,
        })
    }

    /// The workload.
    pub fn workload(&self) -> Workload {
        self.cfg.workload
    }

    /// Every key used so far (register keys, counter keys).
    pub fn keys(&self) -> (Vec<String>, Vec<String>) {
        let r = lock(&self.registers);
        let c = lock(&self.counters);
        let used = |k: &Keys| k.all.clone();
        match self.cfg.workload {
            Workload::Register | Workload::Large => (used(&r), Vec::new()),
            Workload::Counter | Workload::Clients => (Vec::new(), used(&c)),
            Workload::Both | Workload::Retry => (used(&r), used(&c)),
            Workload::Bank => (Vec::new(), Vec::new()),
        }
    }

    /// The bank's account keys (history keys), when the workload is the bank.
    pub fn accounts(&self) -> Vec<String> {
        if self.cfg.workload == Workload::Bank {
            (0..self.bank_size()).map(account_key).collect()
        } else {
            Vec::new()
        }
    }

    fn bank_size(&self) -> usize {
        self.cfg.active_keys.max(2)
    }

    /// What the workload did.
    pub fn stats(&self) -> WorkloadStats {
        let mut s = lock(&self.stats).clone();
        s.sessions = lock(&self.sessions).len();
        s
    }

    /// Remember the value last seen in register `key` (the next cas expects it).
    fn saw(&self, key: &str, v: Option<u64>) {
        lock(&self.registers).saw(key, v);
    }

    fn note_session(&self, client: &Client) {
        if let Some(s) = client.session_id() {
            lock(&self.sessions).insert(s);
        }
    }

    fn committed(&self, key: &str) -> u64 {
        let mut c = lock(&self.commits);
        let n = c.entry(key.to_string()).or_default();
        *n += 1;
        *n
    }

    fn commits_on(&self, key: &str) -> u64 {
        lock(&self.commits).get(key).copied().unwrap_or(0)
    }

    /// A fresh process id (after an `info`, or for the final reads).
    pub fn new_process(&self) -> u64 {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    fn timeout(&self) -> Duration {
        if self.cfg.workload == Workload::Large {
            self.cfg.op_timeout.max(LARGE_MIN_TIMEOUT)
        } else {
            self.cfg.op_timeout
        }
    }

    /// Wait for this worker's next slot so that all workers together issue `rate` ops/s.
    async fn pace(&self) {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let at = self.start + Duration::from_secs_f64(n as f64 / self.rate.max(0.1));
        tokio::time::sleep_until(at.into()).await;
    }

    /// A pooled request due for its retry (enough commits on its key since, or old enough).
    fn due_retry(&self, rng: &mut impl Rng) -> Option<Pooled> {
        let mut pool = lock(&self.pool);
        let now = Instant::now();
        let due: Vec<usize> = pool
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                self.commits_on(&p.key).saturating_sub(p.commits_at) > RETRY_AFTER_COMMITS
                    || now.duration_since(p.at) >= RETRY_AFTER
            })
            .map(|(i, _)| i)
            .collect();
        if due.is_empty() {
            return None;
        }
        let i = due[rng.random_range(0..due.len())];
        let p = pool.swap_remove(i);
        // Most are retried once; some go back to be retried again later (after failovers).
        if rng.random_bool(0.3) {
            pool.push(Pooled {
                at: now,
                commits_at: self.commits_on(&p.key),
                ..p.clone()
            });
        }
        Some(p)
    }

    fn pool_push(&self, key: &str, request: RequestId, op: PooledOp) {
        let commits_at = self.commits_on(key);
        lock(&self.pool).push(Pooled {
            key: key.to_string(),
            request,
            op,
            at: Instant::now(),
            commits_at,
        });
    }
}

/// How a failed mutation completes: `fail` only when the failure proves it had no effect,
/// otherwise `info` (outcome unknown).
fn mutation_failure<E>(e: &CallError<E>) -> Kind {
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
            | CallFailure::TooLarge(_)
            | CallFailure::Panicked(_)
    )
}

fn reg_json(v: Option<u64>) -> serde_json::Value {
    v.map_or(json!("absent"), |n| json!(n))
}

/// A register's content as the history records it: the number that names the written value,
/// `"absent"`, or `{"foreign": ...}` for a value no client wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Value(Option<u64>),
    Foreign(String),
}

impl Seen {
    fn json(&self) -> serde_json::Value {
        match self {
            Seen::Value(v) => reg_json(*v),
            Seen::Foreign(f) => json!({ "foreign": f }),
        }
    }

    fn value(&self) -> Option<u64> {
        match self {
            Seen::Value(v) => *v,
            Seen::Foreign(_) => None,
        }
    }
}

/// The string written for value `n`: its decimal form, or in the `large` workload a string of
/// 1–3 MiB that starts with `L<n>:` and continues with bytes derived from `n`.
pub fn register_string(n: u64, large: bool) -> String {
    if !large {
        return n.to_string();
    }
    let len = (1usize << 20) + (n.wrapping_mul(2_654_435_761) % (2u64 << 20)) as usize;
    let mut s = format!("L{n}:");
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while s.len() < len {
        // xorshift: cheap, and a wrong byte anywhere is caught.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(char::from(b'a' + (x % 26) as u8));
    }
    s
}

/// Decode a register's content: a value some client wrote, or foreign.
fn parse_reg(v: Option<String>) -> Seen {
    let Some(s) = v else {
        return Seen::Value(None);
    };
    if let Ok(n) = s.parse::<u64>() {
        return Seen::Value(Some(n));
    }
    let large = s
        .strip_prefix('L')
        .and_then(|r| r.split_once(':'))
        .and_then(|(n, _)| n.parse::<u64>().ok())
        .filter(|n| register_string(*n, true) == s);
    match large {
        Some(n) => Seen::Value(Some(n)),
        None => {
            let head: String = s.chars().take(48).collect();
            Seen::Foreign(format!("{head:?} ({} bytes)", s.len()))
        }
    }
}

/// One worker: runs operations until `until`, recording them. `clients[own]` is its client;
/// retries may go through any of them.
pub async fn worker(
    gen_: Arc<Generator>,
    clients: Vec<Arc<Client>>,
    rec: Arc<Recorder>,
    worker_index: u64,
    until: Instant,
) {
    let mut process = worker_index;
    let mut rng = {
        use rand::SeedableRng;
        rand::rngs::StdRng::from_rng(&mut rand::rng())
    };
    if clients.is_empty() {
        return;
    }
    let own = clients[worker_index as usize % clients.len()].clone();
    if gen_.cfg.workload == Workload::Clients {
        // Starting a client takes a handshake and a session: several lives at once per worker
        // keep the rate up (each its own logical process).
        let mut lives = tokio::task::JoinSet::new();
        for i in 0..CLIENT_LIVES_PER_WORKER {
            let (g, r) = (gen_.clone(), rec.clone());
            let p = if i == 0 { process } else { gen_.new_process() };
            lives.spawn(async move {
                let mut rng = {
                    use rand::SeedableRng;
                    rand::rngs::StdRng::from_rng(&mut rand::rng())
                };
                clients_worker(&g, &r, p, until, &mut rng).await;
            });
        }
        while lives.join_next().await.is_some() {}
        return;
    }
    loop {
        gen_.pace().await;
        if Instant::now() >= until {
            return;
        }
        let any = clients[rng.random_range(0..clients.len())].clone();
        let outcome = match gen_.cfg.workload {
            Workload::Retry => {
                retry_step(&gen_, &own, &any, &rec, process, worker_index, &mut rng).await
            }
            Workload::Bank => {
                bank_step(&gen_, &own, &any, &rec, process, worker_index, &mut rng).await
            }
            w => {
                let counter = match w {
                    Workload::Counter => true,
                    Workload::Both => worker_index % 2 == 1,
                    _ => false,
                };
                plain_step(&gen_, &own, &rec, process, counter, &mut rng).await
            }
        };
        gen_.note_session(&own);
        if outcome == Kind::Info {
            process = gen_.new_process();
        }
    }
}

/// One operation of the register/counter workloads.
async fn plain_step(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    process: u64,
    counter: bool,
    rng: &mut impl Rng,
) -> Kind {
    if counter {
        let (key, _) = lock(&gen_.counters).pick(rng);
        if rng.random_bool(0.6) {
            let d: i64 = rng.random_range(1..=5);
            counter_add(gen_, client, rec, process, &key, d, None)
                .await
                .0
        } else {
            counter_read(gen_, client, rec, process, &key).await
        }
    } else {
        let (key, last) = lock(&gen_.registers).pick(rng);
        let roll: f64 = rng.random();
        let large = gen_.cfg.workload == Workload::Large;
        if roll < 0.5 {
            register_read(gen_, client, rec, process, &key).await
        } else if roll < 0.75 || large {
            register_write(gen_, client, rec, process, &key, None).await
        } else {
            register_cas(gen_, client, rec, process, &key, last, None)
                .await
                .0
        }
    }
}

/// One operation of the `retry` workload: a retry of a pooled request when one is due (about a
/// quarter of the time), else a counter or register operation whose mutations carry explicit
/// request ids and go into the pool.
async fn retry_step(
    gen_: &Generator,
    own: &Client,
    any: &Client,
    rec: &Recorder,
    process: u64,
    worker_index: u64,
    rng: &mut impl Rng,
) -> Kind {
    if rng.random_bool(0.25)
        && let Some(p) = gen_.due_retry(rng)
    {
        let after_commits =
            gen_.commits_on(&p.key).saturating_sub(p.commits_at) > RETRY_AFTER_COMMITS;
        let (kind, expired) = match p.op {
            PooledOp::Add(d) => {
                let (k, _, e) =
                    counter_add(gen_, any, rec, process, &p.key, d, Some(p.request)).await;
                (k, e)
            }
            PooledOp::Cas { from, to } => {
                let (k, _, e) =
                    register_cas(gen_, any, rec, process, &p.key, from, Some((p.request, to)))
                        .await;
                (k, e)
            }
        };
        let mut s = lock(&gen_.stats);
        s.retries += 1;
        s.retries_after_commits += u64::from(after_commits);
        match kind {
            Kind::Ok => s.retries_answered += 1,
            _ if expired => s.retries_expired += 1,
            _ => s.retries_unknown += 1,
        }
        return kind;
    }
    let counter = worker_index % 2 == 1;
    let mutate = rng.random_bool(0.6);
    if !mutate {
        return if counter {
            let (key, _) = lock(&gen_.counters).pick(rng);
            counter_read(gen_, own, rec, process, &key).await
        } else {
            let (key, _) = lock(&gen_.registers).pick(rng);
            register_read(gen_, own, rec, process, &key).await
        };
    }
    let Ok(request) = own.new_request_id().await else {
        // No session now (no quorum): nothing was sent.
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Kind::Fail;
    };
    if counter {
        let (key, _) = lock(&gen_.counters).pick(rng);
        let d: i64 = rng.random_range(1..=5);
        let (kind, _, _) = counter_add(gen_, own, rec, process, &key, d, Some(request)).await;
        if kind != Kind::Fail {
            gen_.pool_push(&key, request, PooledOp::Add(d));
        }
        kind
    } else {
        let (key, last) = lock(&gen_.registers).pick(rng);
        let to = gen_.next_value.fetch_add(1, Ordering::Relaxed);
        let (kind, _, _) =
            register_cas(gen_, own, rec, process, &key, last, Some((request, to))).await;
        if kind != Kind::Fail {
            gen_.pool_push(&key, request, PooledOp::Cas { from: last, to });
        }
        kind
    }
}

/// The `clients` workload's worker: a fresh client (its own QUIC endpoint and session) for every
/// one to four operations on the counters; adds carry request ids and an ambiguous one is
/// retried with its id through the same client, then through another fresh one.
async fn clients_worker(
    gen_: &Generator,
    rec: &Recorder,
    mut process: u64,
    until: Instant,
    rng: &mut impl Rng,
) {
    while Instant::now() < until {
        let client = match Client::connect(gen_.client_config.clone()).await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut unknown: Vec<(String, i64, RequestId)> = Vec::new();
        for _ in 0..rng.random_range(1..=4) {
            gen_.pace().await;
            if Instant::now() >= until {
                break;
            }
            let (key, _) = lock(&gen_.counters).pick(rng);
            let kind = if rng.random_bool(0.7) {
                let d: i64 = rng.random_range(1..=5);
                match client.new_request_id().await {
                    Ok(request) => {
                        let mut kind =
                            counter_add(gen_, &client, rec, process, &key, d, Some(request))
                                .await
                                .0;
                        // Retry it at once, with its id, through the same client.
                        if kind == Kind::Info {
                            process = gen_.new_process();
                            kind = counter_add(gen_, &client, rec, process, &key, d, Some(request))
                                .await
                                .0;
                            lock(&gen_.stats).retries += 1;
                        }
                        if kind == Kind::Info {
                            unknown.push((key, d, request));
                        }
                        kind
                    }
                    Err(_) => Kind::Fail,
                }
            } else {
                counter_read(gen_, &client, rec, process, &key).await
            };
            gen_.note_session(&client);
            if kind == Kind::Info {
                process = gen_.new_process();
            }
        }
        client.close().await;
        // Still unknown: another client asks (it cannot speak for the first one's session, so
        // the answer is the original outcome or Expired).
        if !unknown.is_empty()
            && let Ok(other) = Client::connect(gen_.client_config.clone()).await
        {
            for (key, d, request) in unknown {
                let kind = counter_add(gen_, &other, rec, process, &key, d, Some(request))
                    .await
                    .0;
                lock(&gen_.stats).retries += 1;
                if kind == Kind::Info {
                    process = gen_.new_process();
                }
            }
            gen_.note_session(&other);
            other.close().await;
        }
    }
}

/// One operation of the bank: a due retry of an ambiguous transfer, a transfer, or a balance
/// read.
async fn bank_step(
    gen_: &Generator,
    own: &Client,
    any: &Client,
    rec: &Recorder,
    process: u64,
    worker_index: u64,
    rng: &mut impl Rng,
) -> Kind {
    let due = {
        let mut p = lock(&gen_.pending);
        match p.first() {
            Some(t) if t.at.elapsed() >= TRANSFER_RETRY_AFTER => Some(p.remove(0)),
            _ => None,
        }
    };
    if let Some(t) = due {
        lock(&gen_.stats).retries += 1;
        return transfer(gen_, any, rec, process, worker_index, t).await;
    }
    let n = gen_.bank_size();
    if rng.random_bool(0.6) {
        let from = rng.random_range(0..n);
        let to = (from + rng.random_range(1..n)) % n;
        let Ok(request) = own.new_request_id().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Kind::Fail;
        };
        let t = Pending {
            request,
            from,
            to,
            amount: rng.random_range(1..=30),
            at: Instant::now(),
        };
        transfer(gen_, own, rec, process, worker_index, t).await
    } else {
        balance_read(gen_, own, rec, process, rng.random_range(0..n)).await
    }
}

/// Send (or resend, with its request id) a transfer through a teller; an ambiguous one goes
/// back to the pending list, to be retried soon.
async fn transfer(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    process: u64,
    worker_index: u64,
    t: Pending,
) -> Kind {
    let args =
        json!({"from": format!("a{}", t.from), "to": format!("a{}", t.to), "amount": t.amount});
    let req = Some(t.request.to_string());
    let p = Process::Client(process);
    rec.record_request(
        p.clone(),
        Kind::Invoke,
        "transfer",
        Some(TRANSFER_KEY),
        args.clone(),
        None,
        req.clone(),
    );
    let r = client
        .actor::<Teller>(format!("t{worker_index}"))
        .with_request_id(t.request)
        .with_timeout(gen_.timeout())
        .call(Transfer {
            from: format!("a{}", t.from),
            to: format!("a{}", t.to),
            amount: t.amount,
        })
        .await;
    let (kind, value, error) = match r {
        Ok(done) => (
            Kind::Ok,
            json!({"from_balance": done.from_balance, "to_balance": done.to_balance}),
            None,
        ),
        // Refused before anything moved.
        Err(CallError::Rejected(
            e @ (BankError::Insufficient(_) | BankError::Invalid(_) | BankError::DebitFailed(_)),
        )) => (Kind::Fail, args, Some(e.to_string())),
        Err(e) => {
            let expired = matches!(e.failure(), Some(CallFailure::Expired));
            if expired {
                lock(&gen_.stats).transfers_expired += 1;
            } else {
                lock(&gen_.pending).push(Pending {
                    at: Instant::now(),
                    ..t
                });
            }
            (Kind::Info, args, Some(e.to_string()))
        }
    };
    count(gen_, kind);
    rec.record_request(p, kind, "transfer", Some(TRANSFER_KEY), value, error, req);
    kind
}

async fn balance_read(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    process: u64,
    i: usize,
) -> Kind {
    let key = account_key(i);
    rec.record(
        Process::Client(process),
        Kind::Invoke,
        "balance",
        Some(&key),
        json!(null),
        None,
    );
    let r = client
        .actor::<floe::builtin::Account>(format!("a{i}"))
        .with_timeout(gen_.timeout())
        .call(Balance)
        .await;
    match r {
        Ok(b) => complete(
            gen_,
            rec,
            process,
            Kind::Ok,
            "balance",
            &key,
            json!(b),
            None,
        ),
        Err(e) => complete(
            gen_,
            rec,
            process,
            Kind::Fail,
            "balance",
            &key,
            json!(null),
            Some(e.to_string()),
        ),
    }
}

/// Open every bank account with [`BANK_OPENING`], each deposit retried with its request id
/// until it is acknowledged. Returns the accounts it could not open before `deadline`.
pub async fn bank_setup(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    deadline: Instant,
) -> Vec<String> {
    let mut failed = Vec::new();
    for i in 0..gen_.bank_size() {
        let key = account_key(i);
        let Some(request) = retry_until(deadline, || client.new_request_id()).await else {
            failed.push(key);
            continue;
        };
        let mut done = false;
        while !done && Instant::now() < deadline {
            let process = gen_.new_process();
            let req = Some(request.to_string());
            rec.record_request(
                Process::Client(process),
                Kind::Invoke,
                "deposit",
                Some(&key),
                json!(BANK_OPENING),
                None,
                req.clone(),
            );
            let r = client
                .actor::<floe::builtin::Account>(format!("a{i}"))
                .with_request_id(request)
                .with_timeout(gen_.timeout())
                .call(Credit(BANK_OPENING))
                .await;
            let (kind, value, error) = match r {
                Ok(b) => (Kind::Ok, json!({ "balance": b }), None),
                Err(e) => (Kind::Info, json!(BANK_OPENING), Some(e.to_string())),
            };
            rec.record_request(
                Process::Client(process),
                kind,
                "deposit",
                Some(&key),
                value,
                error,
                req,
            );
            done = kind == Kind::Ok;
            if !done {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if !done {
            failed.push(key);
        }
    }
    failed
}

async fn retry_until<T, E, F: std::future::Future<Output = Result<T, E>>>(
    deadline: Instant,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    loop {
        if let Ok(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a recorded error is [`CallFailure::Expired`].
fn r_expired(error: &Option<String>) -> bool {
    error.as_deref() == Some(CallFailure::Expired.to_string().as_str())
}

fn actor_key<'a>(key: &'a str, prefix: &str) -> &'a str {
    key.strip_prefix(prefix).unwrap_or(key)
}

fn count(gen_: &Generator, kind: Kind) {
    match kind {
        Kind::Ok => gen_.counts.ok.fetch_add(1, Ordering::Relaxed),
        Kind::Fail => gen_.counts.fail.fetch_add(1, Ordering::Relaxed),
        _ => gen_.counts.info.fetch_add(1, Ordering::Relaxed),
    };
}

/// [`count`], and note an unknown outcome against its key.
fn tally(gen_: &Generator, kind: Kind, key: &str) {
    count(gen_, kind);
    if kind == Kind::Info {
        lock(&gen_.registers).unknown(key);
        lock(&gen_.counters).unknown(key);
    }
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
    tally(gen_, kind, key);
    rec.record(Process::Client(process), kind, f, Some(key), value, error);
    kind
}

/// A register read (also used for the final reads). Returns the completion kind. A value no
/// client wrote is recorded as what it is: an `ok` read of a foreign value.
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
        .with_timeout(gen_.timeout())
        .call(Read)
        .await;
    match r {
        Ok(v) => {
            let seen = parse_reg(v);
            gen_.saw(key, seen.value());
            complete(gen_, rec, process, Kind::Ok, "read", key, seen.json(), None)
        }
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

async fn register_write(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    process: u64,
    key: &str,
    request: Option<RequestId>,
) -> Kind {
    let v = gen_.next_value.fetch_add(1, Ordering::Relaxed);
    let req = request.map(|r| r.to_string());
    rec.record_request(
        Process::Client(process),
        Kind::Invoke,
        "write",
        Some(key),
        json!(v),
        None,
        req.clone(),
    );
    let text = register_string(v, gen_.cfg.workload == Workload::Large);
    let mut a = client
        .actor::<Register>(actor_key(key, REGISTER_PREFIX))
        .with_timeout(gen_.timeout());
    if let Some(r) = request {
        a = a.with_request_id(r);
    }
    let r = a.call(Write(text)).await;
    let (kind, error) = match r {
        Ok(()) => {
            gen_.saw(key, Some(v));
            (Kind::Ok, None)
        }
        Err(e) => (mutation_failure(&e), Some(e.to_string())),
    };
    if kind != Kind::Fail {
        gen_.committed(key);
    }
    tally(gen_, kind, key);
    rec.record_request(
        Process::Client(process),
        kind,
        "write",
        Some(key),
        json!(v),
        error,
        req,
    );
    kind
}

/// A compare-and-set from `from` to a fresh value, or (with `request`) to the given value with
/// that request id: a first attempt or a retry. Returns the completion and, when answered, the
/// outcome as recorded.
#[allow(clippy::too_many_arguments)]
async fn register_cas(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    process: u64,
    key: &str,
    from: Option<u64>,
    request: Option<(RequestId, u64)>,
) -> (Kind, Option<serde_json::Value>, bool) {
    let to = match request {
        Some((_, to)) => to,
        None => gen_.next_value.fetch_add(1, Ordering::Relaxed),
    };
    let req = request.map(|(r, _)| r.to_string());
    let args = json!({"from": reg_json(from), "to": to});
    rec.record_request(
        Process::Client(process),
        Kind::Invoke,
        "cas",
        Some(key),
        args.clone(),
        None,
        req.clone(),
    );
    let mut a = client
        .actor::<Register>(actor_key(key, REGISTER_PREFIX))
        .with_timeout(gen_.timeout());
    if let Some((r, _)) = request {
        a = a.with_request_id(r);
    }
    let r = a
        .call(Cas {
            expect: from.map(|v| v.to_string()),
            new: to.to_string(),
        })
        .await;
    let (kind, value, error) = match r {
        Ok(CasOutcome::Swapped) => {
            gen_.saw(key, Some(to));
            (
                Kind::Ok,
                json!({"from": reg_json(from), "to": to, "swapped": true}),
                None,
            )
        }
        Ok(CasOutcome::Mismatch(current)) => {
            let cur = parse_reg(current);
            gen_.saw(key, cur.value());
            (
                Kind::Ok,
                json!({"from": reg_json(from), "to": to, "swapped": false, "current": cur.json()}),
                None,
            )
        }
        Err(e) => (mutation_failure(&e), args, Some(e.to_string())),
    };
    let expired = r_expired(&error);
    if kind == Kind::Info || value.get("swapped") == Some(&json!(true)) {
        gen_.committed(key);
    }
    tally(gen_, kind, key);
    let answered = (kind == Kind::Ok).then(|| value.clone());
    rec.record_request(
        Process::Client(process),
        kind,
        "cas",
        Some(key),
        value,
        error,
        req,
    );
    (kind, answered, expired)
}

/// A counter add, with an explicit request id (a first attempt or a retry) or the client's own.
async fn counter_add(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    process: u64,
    key: &str,
    d: i64,
    request: Option<RequestId>,
) -> (Kind, Option<i64>, bool) {
    let req = request.map(|r| r.to_string());
    rec.record_request(
        Process::Client(process),
        Kind::Invoke,
        "add",
        Some(key),
        json!(d),
        None,
        req.clone(),
    );
    let mut a = client
        .actor::<Counter>(actor_key(key, COUNTER_PREFIX))
        .with_timeout(gen_.timeout());
    if let Some(r) = request {
        a = a.with_request_id(r);
    }
    let r = a.call(Increment(d)).await;
    let (kind, value, error, total) = match r {
        Ok(total) => (
            Kind::Ok,
            json!({"delta": d, "result": total}),
            None,
            Some(total),
        ),
        Err(e) => (mutation_failure(&e), json!(d), Some(e.to_string()), None),
    };
    let expired = r_expired(&error);
    if kind != Kind::Fail {
        gen_.committed(key);
    }
    tally(gen_, kind, key);
    rec.record_request(
        Process::Client(process),
        kind,
        "add",
        Some(key),
        value,
        error,
        req,
    );
    (kind, total, expired)
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
        .with_timeout(gen_.timeout())
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

/// After the final heal: retry every ambiguous transfer with its request id until it gets a
/// definite answer or expires, then read every key until the read succeeds (each attempt is
/// recorded). Returns the keys that could not be read before `deadline`.
pub async fn final_reads(
    gen_: &Generator,
    client: &Client,
    rec: &Recorder,
    deadline: Instant,
) -> Vec<String> {
    loop {
        let next = {
            let mut p = lock(&gen_.pending);
            if p.is_empty() {
                None
            } else {
                Some(p.remove(0))
            }
        };
        let Some(t) = next else { break };
        if Instant::now() > deadline {
            lock(&gen_.stats).transfers_unresolved += 1;
            continue;
        }
        let process = gen_.new_process();
        lock(&gen_.stats).retries += 1;
        if transfer(gen_, client, rec, process, 0, t).await == Kind::Info {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (regs, ctrs) = gen_.keys();
    let mut unread = Vec::new();
    for (key, what) in regs
        .into_iter()
        .map(|k| (k, 0))
        .chain(ctrs.into_iter().map(|k| (k, 1)))
        .chain((0..gen_.accounts().len()).map(|i| (account_key(i), 2)))
    {
        let process = gen_.new_process();
        loop {
            let kind = match what {
                0 => register_read(gen_, client, rec, process, &key).await,
                1 => counter_read(gen_, client, rec, process, &key).await,
                _ => {
                    let i = key.trim_start_matches("bank/a").parse().unwrap_or(0);
                    balance_read(gen_, client, rec, process, i).await
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_values_decode_and_foreign_ones_are_named() {
        assert_eq!(parse_reg(None), Seen::Value(None));
        assert_eq!(parse_reg(Some("17".into())), Seen::Value(Some(17)));
        let big = register_string(5, true);
        assert!((1 << 20..=3 << 20).contains(&big.len()));
        assert_eq!(parse_reg(Some(big.clone())), Seen::Value(Some(5)));
        let mut bad = big.into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'a' { b'b' } else { b'a' };
        let bad = String::from_utf8(bad).expect("ascii");
        assert!(matches!(parse_reg(Some(bad)), Seen::Foreign(_)));
        let f = parse_reg(Some("absent".into()));
        assert!(matches!(f, Seen::Foreign(_)));
        assert!(f.json().get("foreign").is_some());
    }
}

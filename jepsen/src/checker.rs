//! Linearizability checking: Wing–Gong search with Lowe's memoization (WGL), per key.
//!
//! Every actor is an independent object, so a history is linearizable iff each key's
//! sub-history is (locality). Keys are checked in parallel, each with its own cache.
//!
//! An operation with an unknown outcome (`info`, or never completed) may have taken effect at
//! any time after its invocation, or never: its return is placed at +∞, and the search succeeds
//! as soon as only such returns remain (Knossos's treatment). `fail` operations and unknown
//! reads are dropped: they had no effect.
//!
//! A value no client wrote (`{"foreign": ...}` in the history) is an observation no model state
//! allows, so a key where one was read is not linearizable. A retry of an operation (an
//! invocation with a request id seen before) is the same operation: its `ok` answer becomes the
//! operation's outcome (returning at the retry's completion), and must equal any other `ok`
//! answer of it ([`RetryConflict`] otherwise).
//!
//! Why our own and not `porcupine-rs`: that crate pulls criterion (and its plotting stack) as a
//! normal dependency and has no optional operations; the search below is ~200 lines, keeps a
//! counter-example (the deepest linearized prefix and the operation that could not follow it),
//! and is tested against a brute-force oracle.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::history::{Event, Kind, Process};

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Input {
    /// Register read.
    Read,
    /// Register write of a unique value.
    Write(u64),
    /// Register compare-and-set.
    Cas {
        /// Expected current value (`None`: absent).
        from: Option<u64>,
        /// New value.
        to: u64,
    },
    /// Counter add.
    Add(i64),
    /// Counter read.
    CounterRead,
}

/// What an operation observed (present only for `ok` operations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Output {
    /// Register read result.
    Read(Option<u64>),
    /// Write acknowledged.
    Write,
    /// CAS result; `current` is what the register held when it did not swap.
    Cas {
        /// Whether it swapped.
        swapped: bool,
        /// The value seen when it did not.
        current: Option<u64>,
    },
    /// The counter's value after the add.
    Add(i64),
    /// Counter read result.
    CounterRead(i64),
    /// A register read, or a cas that did not swap, saw a value that no client wrote. No state
    /// of any model allows it.
    Foreign(String),
}

/// One operation of a key's sub-history.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    /// The client process.
    pub process: u64,
    /// Its input.
    pub input: Input,
    /// Its output; `None` when the outcome is unknown.
    pub output: Option<Output>,
    /// Invocation time (ns).
    pub call: u64,
    /// Completion time (ns); `u64::MAX` when unknown.
    pub ret: u64,
}

/// A sequential specification.
pub trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash + Debug;
    /// The initial state.
    fn init(&self) -> Self::State;
    /// Apply `input` in `state`; `None` if the observed `output` is impossible there. `output` is
    /// `None` for an operation of unknown outcome (any output is acceptable).
    fn step(
        &self,
        state: &Self::State,
        input: &Input,
        output: Option<&Output>,
    ) -> Option<Self::State>;
}

/// A compare-and-set register that starts absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = Option<u64>;
    fn init(&self) -> Option<u64> {
        None
    }
    fn step(&self, s: &Option<u64>, i: &Input, o: Option<&Output>) -> Option<Option<u64>> {
        match (i, o) {
            (Input::Read, Some(Output::Read(v))) => (v == s).then_some(*s),
            (Input::Read, None) => Some(*s),
            (Input::Write(v), None | Some(Output::Write)) => Some(Some(*v)),
            (Input::Cas { from, to }, None | Some(Output::Cas { swapped: true, .. })) => {
                (s == from).then_some(Some(*to))
            }
            (
                Input::Cas { from, .. },
                Some(Output::Cas {
                    swapped: false,
                    current,
                }),
            ) => (s != from && s == current).then_some(*s),
            _ => None,
        }
    }
}

/// A counter that starts at zero; adds return the new value.
#[derive(Debug, Clone, Copy, Default)]
pub struct CounterModel;

impl Model for CounterModel {
    type State = i64;
    fn init(&self) -> i64 {
        0
    }
    fn step(&self, s: &i64, i: &Input, o: Option<&Output>) -> Option<i64> {
        match (i, o) {
            (Input::Add(d), None) => s.checked_add(*d),
            (Input::Add(d), Some(Output::Add(r))) => s.checked_add(*d).filter(|n| n == r),
            (Input::CounterRead, Some(Output::CounterRead(v))) => (v == s).then_some(*s),
            (Input::CounterRead, None) => Some(*s),
            _ => None,
        }
    }
}

/// The verdict for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Verdict {
    /// A linearization exists.
    Valid,
    /// None exists.
    Invalid {
        /// Why, in words: the deepest linearized prefix and the operation that cannot follow.
        explanation: String,
    },
    /// The search did not finish in time.
    Unknown,
}

/// Where a key's search got stuck.
struct Stuck<S> {
    prefix: Vec<usize>,
    state: S,
    blocked: usize,
}

/// Check one key's operations against `model`.
pub fn check_operations<M: Model>(model: &M, ops: &[Operation], deadline: Instant) -> Verdict {
    match wgl(model, ops, deadline) {
        Ok(true) => Verdict::Valid,
        Ok(false) => Verdict::Unknown,
        Err(stuck) => Verdict::Invalid {
            explanation: explain(ops, &stuck),
        },
    }
}

fn explain<S: Debug>(ops: &[Operation], stuck: &Stuck<S>) -> String {
    let show = |i: usize| {
        let o = &ops[i];
        let ret = if o.ret == u64::MAX {
            "?".to_string()
        } else {
            format!("{:.3}s", o.ret as f64 / 1e9)
        };
        format!(
            "process {} {:?} -> {} [{:.3}s, {}]",
            o.process,
            o.input,
            o.output
                .as_ref()
                .map_or("unknown".to_string(), |x| format!("{x:?}")),
            o.call as f64 / 1e9,
            ret
        )
    };
    let tail: Vec<String> = stuck
        .prefix
        .iter()
        .rev()
        .take(8)
        .rev()
        .map(|&i| show(i))
        .collect();
    format!(
        "no linearization: after {} operations (last: [{}]) the state is {:?}, and {} cannot be \
         linearized there nor any operation concurrent with it",
        stuck.prefix.len(),
        tail.join("; "),
        stuck.state,
        show(stuck.blocked)
    )
}

const HEAD: usize = 0;

/// The WGL search. `Ok(true)`: linearizable; `Ok(false)`: deadline passed; `Err`: not
/// linearizable, with the deepest prefix found.
fn wgl<M: Model>(model: &M, ops: &[Operation], deadline: Instant) -> Result<bool, Stuck<M::State>> {
    let n = ops.len();
    if n == 0 {
        return Ok(true);
    }
    // Entries 1..=2n: (time, is_return, op); calls sort before returns at equal times (closed
    // intervals), unknown returns (u64::MAX) after everything.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        order.push((o.call, false, i));
        order.push((o.ret.max(o.call), true, i));
    }
    order.sort_by_key(|&(t, is_ret, i)| (t, is_ret, i));
    let len = order.len() + 2; // head sentinel at 0, end sentinel at len - 1
    let end = len - 1;
    let mut is_ret = vec![false; len];
    let mut op_of = vec![0usize; len];
    let mut ret_entry = vec![0usize; n];
    for (pos, &(_, r, i)) in order.iter().enumerate() {
        let e = pos + 1;
        is_ret[e] = r;
        op_of[e] = i;
        if r {
            ret_entry[i] = e;
        }
    }
    let mut next: Vec<usize> = (0..len).map(|i| (i + 1).min(end)).collect();
    let mut prev: Vec<usize> = (0..len).map(|i| i.saturating_sub(1)).collect();
    let optional: Vec<bool> = ops.iter().map(|o| o.output.is_none()).collect();

    let words = n.div_ceil(64);
    let mut lin = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut best: Option<Stuck<M::State>> = None;
    let mut cur = next[HEAD];
    let mut steps: u64 = 0;

    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, nx) = (prev[e], next[e]);
        next[p] = nx;
        prev[nx] = p;
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, nx) = (prev[e], next[e]);
        next[p] = e;
        prev[nx] = e;
    };

    loop {
        steps += 1;
        if steps.is_multiple_of(1 << 16) && Instant::now() > deadline {
            return Ok(false);
        }
        if cur == end {
            return Ok(true);
        }
        let op = op_of[cur];
        if !is_ret[cur] {
            if let Some(next_state) = model.step(&state, &ops[op].input, ops[op].output.as_ref()) {
                lin[op / 64] |= 1 << (op % 64);
                if cache.insert((lin.clone(), next_state.clone())) {
                    stack.push((cur, std::mem::replace(&mut state, next_state)));
                    let r = ret_entry[op];
                    lift(&mut next, &mut prev, cur);
                    lift(&mut next, &mut prev, r);
                    cur = next[HEAD];
                    continue;
                }
                lin[op / 64] &= !(1 << (op % 64));
            }
            cur = next[cur];
        } else {
            if optional[op] {
                // Only unknown-outcome returns remain: every acknowledged op is linearized.
                return Ok(true);
            }
            if best.as_ref().is_none_or(|b| stack.len() > b.prefix.len()) {
                best = Some(Stuck {
                    prefix: stack.iter().map(|(e, _)| op_of[*e]).collect(),
                    state: state.clone(),
                    blocked: op,
                });
            }
            let Some((call_e, prev_state)) = stack.pop() else {
                return Err(best.unwrap_or(Stuck {
                    prefix: Vec::new(),
                    state,
                    blocked: op,
                }));
            };
            let op2 = op_of[call_e];
            state = prev_state;
            lin[op2 / 64] &= !(1 << (op2 % 64));
            unlift(&mut next, &mut prev, ret_entry[op2]);
            unlift(&mut next, &mut prev, call_e);
            cur = next[call_e];
        }
    }
}

/// A register's history without the writes of unknown outcome whose value nothing observed.
///
/// Such a write can be left out without changing the verdict. Leaving an unknown operation
/// out is always allowed (it may never have taken effect), so a linearization of what remains
/// is one of the whole. Conversely, in a linearization of the whole, the operations between the
/// write and the next write or swap see the register hold its value, yet none observed it: they
/// are unknown compare-and-sets that did not swap, no-ops that can be left out with it. Every
/// remaining operation then sees the same value as before. Values are unique, so "observed"
/// is: a read returned it, a compare-and-set that did not swap saw it, or a compare-and-set
/// expected it. Leaving out an unknown compare-and-set can un-observe its expected value, so
/// this repeats until nothing changes.
///
/// This matters because the search tries each subset of concurrent unknown writes: a partition
/// that leaves a few dozen writes of unknown outcome on one key, none of which ever took
/// effect, costs seconds to minutes without it.
pub fn without_unobserved_writes(ops: &[Operation]) -> Vec<Operation> {
    let mut keep: Vec<Operation> = ops.to_vec();
    loop {
        let mut seen: HashSet<u64> = HashSet::new();
        for o in &keep {
            if let Some(
                Output::Read(Some(v))
                | Output::Cas {
                    current: Some(v), ..
                },
            ) = &o.output
            {
                seen.insert(*v);
            }
            if let Input::Cas { from: Some(v), .. } = &o.input {
                seen.insert(*v);
            }
        }
        let before = keep.len();
        keep.retain(|o| {
            o.output.is_some()
                || match o.input {
                    Input::Write(v) | Input::Cas { to: v, .. } => seen.contains(&v),
                    _ => true,
                }
        });
        if keep.len() == before {
            return keep;
        }
    }
}

/// Most states [`check_counter`] keeps before it gives up (the verdict is then unknown).
const COUNTER_MAX_STATES: usize = 2_000_000;

/// Most distinct deltas among a counter's adds of unknown outcome that [`check_counter`] takes.
const COUNTER_MAX_DELTAS: usize = 8;

/// An exact check of a counter whose adds are all positive, polynomial in the number of adds
/// of unknown outcome for a fixed number of distinct deltas; `None` when it does not apply (a
/// non-positive add, an output the model cannot produce, too many distinct deltas), and the
/// general search is used instead.
///
/// With positive adds the counter only grows, so every acknowledged operation has a fixed place
/// in any linearization: an add that returned `v` moves the counter from `v - d` to `v`, a read
/// of `v` sits at `v`, after the add that reached `v`. Sorted by that value, the acknowledged
/// operations form the only possible order (reads of one value may be swapped, and are taken in
/// order of invocation). Between two of them, the difference must be made up by adds of unknown
/// outcome invoked before the later one takes effect. Those of one delta are interchangeable
/// except for their invocation, and an earlier one can stand in for a later one anywhere, so a
/// linearization may use them earliest first: what matters is how many of each delta are used
/// so far. The search keeps, for each such count vector, the earliest time the last placed
/// operation can take effect (later is never better), and places the next acknowledged
/// operation at the latest of that time, its own invocation and the invocations of the adds it
/// needs; it must be no later than its return.
///
/// The general search tries every subset of concurrent unknown adds; a kill of the whole
/// cluster leaves dozens on one key, beyond what it can do in time.
pub fn check_counter(ops: &[Operation], deadline: Instant) -> Option<Verdict> {
    struct Known {
        index: usize,
        pre: i64,
        post: i64,
        is_add: bool,
        call: u64,
        ret: u64,
    }
    let mut known = Vec::new();
    let mut unknown: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for (index, o) in ops.iter().enumerate() {
        match (&o.input, &o.output) {
            (Input::Add(d), _) if *d <= 0 => return None,
            (Input::Add(d), None) => unknown.entry(*d).or_default().push(o.call),
            (Input::Add(d), Some(Output::Add(v))) => known.push(Known {
                index,
                pre: v.checked_sub(*d)?,
                post: *v,
                is_add: true,
                call: o.call,
                ret: o.ret,
            }),
            (Input::CounterRead, Some(Output::CounterRead(v))) => known.push(Known {
                index,
                pre: *v,
                post: *v,
                is_add: false,
                call: o.call,
                ret: o.ret,
            }),
            _ => return None,
        }
    }
    if unknown.len() > COUNTER_MAX_DELTAS {
        return None;
    }
    known.sort_by_key(|k| (k.post, !k.is_add, k.call));
    let deltas: Vec<(i64, Vec<u64>)> = unknown
        .into_iter()
        .map(|(d, mut calls)| {
            calls.sort_unstable();
            (d, calls)
        })
        .collect();
    let show = |i: usize| {
        let o = &ops[i];
        format!(
            "process {} {:?} -> {:?} [{:.3}s, {:.3}s]",
            o.process,
            o.input,
            o.output,
            o.call as f64 / 1e9,
            o.ret as f64 / 1e9
        )
    };
    // Count vector (adds of unknown outcome used, per delta) -> earliest time of the last
    // placed operation.
    let mut states: HashMap<Vec<u32>, u64> = HashMap::from([(vec![0; deltas.len()], 0)]);
    let mut level = 0i64;
    let mut last: Option<usize> = None;
    for k in &known {
        let gap = k.pre - level;
        let mut next: HashMap<Vec<u32>, u64> = HashMap::new();
        if gap >= 0 {
            for (used, &at) in &states {
                if Instant::now() > deadline {
                    return Some(Verdict::Unknown);
                }
                let mut more = vec![0u32; deltas.len()];
                let mut ok = true;
                extend(&deltas, used, 0, gap, &mut more, &mut |more| {
                    let mut t = at.max(k.call);
                    let mut after = used.clone();
                    for (j, m) in more.iter().enumerate() {
                        if *m > 0 {
                            after[j] += m;
                            t = t.max(deltas[j].1[after[j] as usize - 1]);
                        }
                    }
                    if t <= k.ret {
                        let e = next.entry(after).or_insert(t);
                        *e = (*e).min(t);
                    }
                    ok = next.len() <= COUNTER_MAX_STATES;
                    ok
                });
                if !ok {
                    return Some(Verdict::Unknown);
                }
            }
        }
        if next.is_empty() {
            let unknowns: usize = deltas.iter().map(|(_, c)| c.len()).sum();
            return Some(Verdict::Invalid {
                explanation: format!(
                    "no linearization: the counter is at {level} after {} and must be at {} for \
                     {}; no choice among the {unknowns} adds of unknown outcome gets it there \
                     in time",
                    last.map_or("the start".to_string(), show),
                    k.pre,
                    show(k.index)
                ),
            });
        }
        states = next;
        level = k.post;
        last = Some(k.index);
    }
    Some(Verdict::Valid)
}

/// Call `f` with every vector `more` (from position `j` on) such that the adds it names are
/// still unused and sum to `gap`; stop when `f` returns false. Returns false if stopped.
fn extend(
    deltas: &[(i64, Vec<u64>)],
    used: &[u32],
    j: usize,
    gap: i64,
    more: &mut Vec<u32>,
    f: &mut impl FnMut(&[u32]) -> bool,
) -> bool {
    if j == deltas.len() {
        return gap != 0 || f(more);
    }
    let (d, calls) = &deltas[j];
    let free = calls.len() as u32 - used[j];
    let mut m = 0u32;
    while m <= free && i64::from(m) * d <= gap {
        more[j] = m;
        if !extend(deltas, used, j + 1, gap - i64::from(m) * d, more, f) {
            more[j] = 0;
            return false;
        }
        m += 1;
    }
    more[j] = 0;
    true
}

/// Which model a key follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// `register/...` keys.
    Register,
    /// `counter/...` keys.
    Counter,
}

impl ModelKind {
    /// The model of a key, from its actor type prefix.
    pub fn of_key(key: &str) -> Option<Self> {
        if key.starts_with("register/") {
            Some(ModelKind::Register)
        } else if key.starts_with("counter/") {
            Some(ModelKind::Counter)
        } else {
            None
        }
    }
}

/// A history that cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// A process invoked while it had an operation outstanding.
    #[error("event {index}: process {process} invoked while its previous operation is open")]
    Overlap {
        /// Index of the event in the history.
        index: usize,
        /// The process.
        process: u64,
    },
    /// A completion without an invocation.
    #[error("event {index}: completion without an invocation from process {process}")]
    Orphan {
        /// Index of the event.
        index: usize,
        /// The process.
        process: u64,
    },
    /// A completion that does not match its invocation, or an unknown function.
    #[error("event {index}: {reason}")]
    Malformed {
        /// Index of the event.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

fn reg_value(v: &serde_json::Value) -> Result<Option<u64>, String> {
    match v {
        serde_json::Value::String(s) if s == "absent" => Ok(None),
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("register value {n} is not an unsigned integer")),
        other => Err(format!(
            "register value {other} is neither a number nor \"absent\""
        )),
    }
}

fn int(v: &serde_json::Value, what: &str) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("{what} {v} is not an integer"))
}

fn parse_input(kind: ModelKind, f: &str, v: &serde_json::Value) -> Result<Input, String> {
    Ok(match (kind, f) {
        (ModelKind::Register, "read") => Input::Read,
        (ModelKind::Register, "write") => {
            Input::Write(reg_value(v)?.ok_or_else(|| "a write of \"absent\"".to_string())?)
        }
        (ModelKind::Register, "cas") => Input::Cas {
            from: reg_value(&v["from"])?,
            to: reg_value(&v["to"])?.ok_or_else(|| "a cas to \"absent\"".to_string())?,
        },
        (ModelKind::Counter, "add") => Input::Add(int(v, "delta")?),
        (ModelKind::Counter, "read") => Input::CounterRead,
        (k, f) => return Err(format!("unknown function {f:?} for a {k:?}")),
    })
}

/// A value no client wrote, as the workload records it: `{"foreign": "<what was seen>"}`.
fn foreign(v: &serde_json::Value) -> Option<String> {
    v.get("foreign").map(|f| match f.as_str() {
        Some(s) => s.to_string(),
        None => f.to_string(),
    })
}

fn parse_output(input: &Input, v: &serde_json::Value) -> Result<Output, String> {
    Ok(match input {
        Input::Read if let Some(f) = foreign(v) => Output::Foreign(f),
        Input::Cas { .. } if let Some(f) = foreign(&v["current"]) => Output::Foreign(f),
        Input::Read => Output::Read(reg_value(v)?),
        Input::Write(_) => Output::Write,
        Input::Cas { .. } => {
            let swapped = v["swapped"]
                .as_bool()
                .ok_or_else(|| format!("cas result {v} has no \"swapped\""))?;
            let current = if swapped {
                None
            } else {
                reg_value(&v["current"])?
            };
            Output::Cas { swapped, current }
        }
        Input::Add(_) => Output::Add(int(&v["result"], "add result")?),
        Input::CounterRead => Output::CounterRead(int(v, "counter value")?),
    })
}

/// The operations of every key, paired from the events.
pub type Partitioned = BTreeMap<String, (ModelKind, Vec<Operation>)>;

/// Key prefix of objects checked by invariants instead of a model (the bank's accounts and
/// transfers); [`partition`] skips them.
pub const INVARIANT_PREFIX: &str = "bank/";

/// A retry that answered differently from another answer of the same operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryConflict {
    /// The key.
    pub key: String,
    /// The request id.
    pub request: String,
    /// The operation's input.
    pub input: Input,
    /// The answer it had.
    pub first: Output,
    /// The retry's different answer.
    pub retry: Output,
    /// When the retry completed (ns).
    pub time: u64,
}

/// Pair invocations with completions and split by key. Nemesis events are skipped.
pub fn partition(events: &[Event]) -> Result<Partitioned, HistoryError> {
    partition_with_retries(events).map(|(p, _)| p)
}

/// [`partition`], also returning the retries whose answer contradicts another answer of the
/// same operation.
pub fn partition_with_retries(
    events: &[Event],
) -> Result<(Partitioned, Vec<RetryConflict>), HistoryError> {
    struct Open {
        key: String,
        kind: ModelKind,
        input: Input,
        call: u64,
        request: Option<String>,
        /// A retry of the operation at this index of its key's list.
        retry_of: Option<usize>,
    }
    let mut open: HashMap<u64, Open> = HashMap::new();
    // Processes whose open invocation is of an invariant-only object.
    let mut skipped: HashSet<u64> = HashSet::new();
    // Request id -> (key, index of the operation in the key's list).
    let mut by_request: HashMap<String, (String, usize)> = HashMap::new();
    let mut conflicts = Vec::new();
    let mut out: Partitioned = BTreeMap::new();
    let malformed = |index: usize, reason: String| HistoryError::Malformed { index, reason };
    for (index, ev) in events.iter().enumerate() {
        let Process::Client(p) = ev.process else {
            continue;
        };
        match ev.kind {
            Kind::Invoke => {
                if open.contains_key(&p) || skipped.contains(&p) {
                    return Err(HistoryError::Overlap { index, process: p });
                }
                let key = ev
                    .key
                    .clone()
                    .ok_or_else(|| malformed(index, "an invocation without a key".into()))?;
                if key.starts_with(INVARIANT_PREFIX) {
                    skipped.insert(p);
                    continue;
                }
                let kind = ModelKind::of_key(&key)
                    .ok_or_else(|| malformed(index, format!("unknown key type {key:?}")))?;
                let input = parse_input(kind, &ev.f, &ev.value).map_err(|r| malformed(index, r))?;
                let retry_of = match ev.request.as_ref().and_then(|r| by_request.get(r)) {
                    Some((k, i))
                        if *k == key
                            && out.get(k).is_some_and(|(_, ops)| ops[*i].input == input) =>
                    {
                        Some(*i)
                    }
                    Some(_) => {
                        return Err(malformed(
                            index,
                            "a retry with another key or input than its request's first invocation"
                                .into(),
                        ));
                    }
                    None => None,
                };
                open.insert(
                    p,
                    Open {
                        key,
                        kind,
                        input,
                        call: ev.time,
                        request: ev.request.clone(),
                        retry_of,
                    },
                );
            }
            Kind::Ok | Kind::Fail | Kind::Info => {
                if skipped.remove(&p) {
                    continue;
                }
                let o = open
                    .remove(&p)
                    .ok_or(HistoryError::Orphan { index, process: p })?;
                if ev.key.as_deref().is_some_and(|k| k != o.key) {
                    return Err(malformed(index, "completion for another key".into()));
                }
                let output = match ev.kind {
                    Kind::Ok => {
                        Some(parse_output(&o.input, &ev.value).map_err(|r| malformed(index, r))?)
                    }
                    Kind::Fail if o.retry_of.is_none() => continue,
                    _ => {
                        if matches!(o.input, Input::Read | Input::CounterRead) {
                            continue;
                        }
                        None
                    }
                };
                if let Some(i) = o.retry_of {
                    // The same operation: an answer settles its outcome; another answer must
                    // agree with it.
                    let Some(answer) = output else { continue };
                    let Some((_, ops)) = out.get_mut(&o.key) else {
                        continue;
                    };
                    let op = &mut ops[i];
                    match &op.output {
                        None => {
                            op.output = Some(answer);
                            op.ret = ev.time;
                        }
                        Some(first) if *first != answer => conflicts.push(RetryConflict {
                            key: o.key.clone(),
                            request: o.request.clone().unwrap_or_default(),
                            input: op.input.clone(),
                            first: first.clone(),
                            retry: answer,
                            time: ev.time,
                        }),
                        Some(_) => {}
                    }
                    continue;
                }
                let ret = if output.is_some() { ev.time } else { u64::MAX };
                let list = &mut out
                    .entry(o.key.clone())
                    .or_insert_with(|| (o.kind, Vec::new()))
                    .1;
                if let Some(r) = o.request {
                    by_request.entry(r).or_insert((o.key, list.len()));
                }
                list.push(Operation {
                    process: p,
                    input: o.input,
                    output,
                    call: o.call,
                    ret,
                });
            }
        }
    }
    // Never completed: unknown outcome (reads and retries dropped).
    for (p, o) in open {
        if matches!(o.input, Input::Read | Input::CounterRead) || o.retry_of.is_some() {
            continue;
        }
        out.entry(o.key)
            .or_insert_with(|| (o.kind, Vec::new()))
            .1
            .push(Operation {
                process: p,
                input: o.input,
                output: None,
                call: o.call,
                ret: u64::MAX,
            });
    }
    Ok((out, conflicts))
}

/// The result of checking a whole history.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every key was linearizable.
    pub valid: bool,
    /// Some key's check timed out (and none was invalid).
    pub unknown: bool,
    /// Keys checked.
    pub keys: usize,
    /// Operations checked (fail ops and unknown reads excluded).
    pub operations: usize,
    /// Keys that are not linearizable, with the explanation.
    pub invalid_keys: BTreeMap<String, String>,
    /// Keys whose check timed out.
    pub unknown_keys: Vec<String>,
    /// Wall time of the check.
    pub elapsed_ms: u64,
}

/// Check every key, in parallel, each within `per_key` time.
pub fn check(parts: &Partitioned, per_key: Duration) -> Report {
    let started = Instant::now();
    let keys: Vec<(&String, &(ModelKind, Vec<Operation>))> = parts.iter().collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(keys.len().max(1));
    let results: Vec<(String, Verdict)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((key, (kind, ops))) = keys.get(i) else {
                            break;
                        };
                        let deadline = Instant::now() + per_key;
                        let v = match kind {
                            ModelKind::Register => check_operations(
                                &RegisterModel,
                                &without_unobserved_writes(ops),
                                deadline,
                            ),
                            ModelKind::Counter => check_counter(ops, deadline)
                                .unwrap_or_else(|| check_operations(&CounterModel, ops, deadline)),
                        };
                        mine.push(((*key).clone(), v));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut invalid_keys = BTreeMap::new();
    let mut unknown_keys = Vec::new();
    for (k, v) in &results {
        match v {
            Verdict::Valid => {}
            Verdict::Invalid { explanation } => {
                invalid_keys.insert(k.clone(), explanation.clone());
            }
            Verdict::Unknown => unknown_keys.push(k.clone()),
        }
    }
    unknown_keys.sort();
    let checked = results.len();
    Report {
        valid: invalid_keys.is_empty() && unknown_keys.is_empty() && checked == keys.len(),
        unknown: invalid_keys.is_empty() && !unknown_keys.is_empty(),
        keys: keys.len(),
        operations: parts.values().map(|(_, o)| o.len()).sum(),
        invalid_keys,
        unknown_keys,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Acknowledged counter increments missing from the last read of each counter: the last
/// successful read of a key must be at least the sum of the adds acknowledged before it began.
/// Returns (key, missing amount) for every key that lost something.
pub fn lost_counter_writes(parts: &Partitioned) -> Vec<(String, i64)> {
    let mut lost = Vec::new();
    for (key, (kind, ops)) in parts {
        if *kind != ModelKind::Counter {
            continue;
        }
        let Some(last) = ops
            .iter()
            .filter(|o| matches!(o.output, Some(Output::CounterRead(_))))
            .max_by_key(|o| o.call)
        else {
            continue;
        };
        let Some(Output::CounterRead(seen)) = last.output else {
            continue;
        };
        let acked: i64 = ops
            .iter()
            .filter(|o| o.output.is_some() && o.ret < last.call)
            .filter_map(|o| match o.input {
                Input::Add(d) => Some(d),
                _ => None,
            })
            .sum();
        if seen < acked {
            lost.push((key.clone(), acked - seen));
        }
    }
    lost
}

/// Counters whose last read exceeds the sum of every distinct add ever invoked on them (each
/// operation once, retries included in it): some add was applied more than once, or the counter
/// holds what no client added. Returns (key, last read, that sum).
pub fn excess_counter_totals(parts: &Partitioned) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for (key, (kind, ops)) in parts {
        if *kind != ModelKind::Counter {
            continue;
        }
        let Some(Output::CounterRead(seen)) = ops
            .iter()
            .filter(|o| matches!(o.output, Some(Output::CounterRead(_))))
            .max_by_key(|o| o.call)
            .and_then(|o| o.output.clone())
        else {
            continue;
        };
        let most: i64 = ops
            .iter()
            .filter_map(|o| match o.input {
                Input::Add(d) => Some(d),
                _ => None,
            })
            .sum();
        if seen > most {
            out.push((key.clone(), seen, most));
        }
    }
    out
}

/// The bank's invariants over a history (see the workload module for the event shapes).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BankReport {
    /// Whether the bank workload ran (any `bank/` event).
    pub ran: bool,
    /// Sum of the acknowledged opening deposits.
    pub initial_total: i64,
    /// Sum of each account's last balance read (after the final heal), if every account was read.
    pub final_total: Option<i64>,
    /// Accounts read.
    pub accounts: usize,
    /// Transfers by their final outcome: ok, refused (definite), still unknown.
    pub transfers_ok: usize,
    /// Transfers refused (insufficient funds: nothing moved).
    pub transfers_refused: usize,
    /// Transfers whose outcome stayed unknown after every retry (expired, or given up).
    pub transfers_unknown: usize,
    /// Their amounts together: money a debit without its credit may have taken out.
    pub unknown_amount: i64,
    /// Negative balances observed, in words.
    pub negative: Vec<String>,
    /// `Some(true)`: the total at rest equals the initial one; `Some(false)`: it cannot be
    /// explained; `None`: not known (unknown transfers, or no final total).
    pub conserved: Option<bool>,
    /// No violation found.
    pub valid: bool,
}

/// Check the bank: no balance is ever seen negative, and at rest the total is the initial one
/// (or, with transfers of unknown outcome, between the initial total less their amounts and the
/// initial total: a teller debits before it credits, so such a transfer can only take money out).
pub fn check_bank(events: &[Event], accounts: &[String]) -> BankReport {
    let mut r = BankReport::default();
    let mut invoked: HashMap<u64, &Event> = HashMap::new();
    // Request id -> (amount, settled).
    let mut transfers: BTreeMap<String, (i64, Option<bool>)> = BTreeMap::new();
    let mut last_read: HashMap<&str, (u64, i64)> = HashMap::new();
    for ev in events {
        let Process::Client(p) = ev.process else {
            continue;
        };
        let Some(key) = ev
            .key
            .as_deref()
            .filter(|k| k.starts_with(INVARIANT_PREFIX))
        else {
            continue;
        };
        r.ran = true;
        if ev.kind == Kind::Invoke {
            invoked.insert(p, ev);
            if ev.f == "transfer"
                && let Some(req) = &ev.request
            {
                let amount = ev.value["amount"].as_i64().unwrap_or(0);
                transfers.entry(req.clone()).or_insert((amount, None));
            }
            continue;
        }
        let Some(inv) = invoked.remove(&p) else {
            continue;
        };
        match (inv.f.as_str(), ev.kind) {
            ("deposit", Kind::Ok) => r.initial_total += inv.value.as_i64().unwrap_or(0),
            ("balance", Kind::Ok) => {
                let b = ev.value.as_i64().unwrap_or(i64::MIN);
                if b < 0 {
                    r.negative
                        .push(format!("{key} read {b} at {:.3}s", ev.time as f64 / 1e9));
                }
                let e = last_read.entry(key).or_insert((inv.time, b));
                if inv.time >= e.0 {
                    *e = (inv.time, b);
                }
            }
            ("transfer", kind) => {
                if kind == Kind::Ok {
                    for side in ["from_balance", "to_balance"] {
                        let b = ev.value[side].as_i64().unwrap_or(i64::MIN);
                        if b < 0 {
                            r.negative.push(format!(
                                "transfer {} left {side} {b} at {:.3}s",
                                inv.value,
                                ev.time as f64 / 1e9
                            ));
                        }
                    }
                }
                if let Some(t) = inv.request.as_ref().and_then(|q| transfers.get_mut(q)) {
                    match kind {
                        Kind::Ok => t.1 = Some(true),
                        Kind::Fail if t.1.is_none() => t.1 = Some(false),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    for (amount, settled) in transfers.values() {
        match settled {
            Some(true) => r.transfers_ok += 1,
            Some(false) => r.transfers_refused += 1,
            None => {
                r.transfers_unknown += 1;
                r.unknown_amount += amount;
            }
        }
    }
    let reads: Vec<i64> = accounts
        .iter()
        .filter_map(|a| last_read.get(a.as_str()).map(|(_, b)| *b))
        .collect();
    r.accounts = reads.len();
    if !accounts.is_empty() && reads.len() == accounts.len() {
        r.final_total = Some(reads.iter().sum());
    }
    r.conserved = match r.final_total {
        Some(t) if t > r.initial_total || t < r.initial_total - r.unknown_amount => Some(false),
        Some(t) if r.transfers_unknown == 0 => Some(t == r.initial_total),
        _ => None,
    };
    r.valid = r.negative.is_empty() && r.conserved != Some(false);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: u64, input: Input, output: Option<Output>, call: u64, ret: u64) -> Operation {
        let ret = if output.is_none() { u64::MAX } else { ret };
        Operation {
            process,
            input,
            output,
            call,
            ret,
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn sequential_register_history_is_valid() {
        let ops = vec![
            op(0, Input::Read, Some(Output::Read(None)), 0, 1),
            op(0, Input::Write(1), Some(Output::Write), 2, 3),
            op(
                0,
                Input::Cas {
                    from: Some(1),
                    to: 2,
                },
                Some(Output::Cas {
                    swapped: true,
                    current: None,
                }),
                4,
                5,
            ),
            op(
                0,
                Input::Cas {
                    from: Some(1),
                    to: 3,
                },
                Some(Output::Cas {
                    swapped: false,
                    current: Some(2),
                }),
                6,
                7,
            ),
            op(0, Input::Read, Some(Output::Read(Some(2))), 8, 9),
        ];
        assert_eq!(
            check_operations(&RegisterModel, &ops, far()),
            Verdict::Valid
        );
    }

    #[test]
    fn stale_read_is_invalid() {
        let ops = vec![
            op(0, Input::Write(1), Some(Output::Write), 0, 1),
            op(1, Input::Write(2), Some(Output::Write), 2, 3),
            op(2, Input::Read, Some(Output::Read(Some(1))), 4, 5),
        ];
        match check_operations(&RegisterModel, &ops, far()) {
            Verdict::Invalid { explanation } => assert!(explanation.contains("Read(Some(1))")),
            v => panic!("expected invalid, got {v:?}"),
        }
    }

    #[test]
    fn absent_is_a_real_value() {
        // A read of "absent" after an acknowledged write is a lost write, not "unknown".
        let ops = vec![
            op(0, Input::Write(1), Some(Output::Write), 0, 1),
            op(1, Input::Read, Some(Output::Read(None)), 2, 3),
        ];
        assert!(matches!(
            check_operations(&RegisterModel, &ops, far()),
            Verdict::Invalid { .. }
        ));
    }

    #[test]
    fn concurrent_ops_may_be_reordered() {
        // The read overlaps the write and sees the old value: fine.
        let ops = vec![
            op(0, Input::Write(1), Some(Output::Write), 0, 1),
            op(1, Input::Write(2), Some(Output::Write), 2, 10),
            op(2, Input::Read, Some(Output::Read(Some(1))), 3, 4),
            op(3, Input::Read, Some(Output::Read(Some(2))), 5, 6),
            op(2, Input::Read, Some(Output::Read(Some(2))), 7, 8),
        ];
        assert_eq!(
            check_operations(&RegisterModel, &ops, far()),
            Verdict::Valid
        );
    }

    #[test]
    fn unknown_write_may_apply_late_or_never() {
        let late = vec![
            op(0, Input::Write(1), None, 0, 0),
            op(1, Input::Read, Some(Output::Read(None)), 2, 3),
            op(1, Input::Read, Some(Output::Read(Some(1))), 100, 101),
        ];
        assert_eq!(
            check_operations(&RegisterModel, &late, far()),
            Verdict::Valid
        );
        let never = vec![
            op(0, Input::Write(1), None, 0, 0),
            op(1, Input::Read, Some(Output::Read(None)), 100, 101),
        ];
        assert_eq!(
            check_operations(&RegisterModel, &never, far()),
            Verdict::Valid
        );
        // But it cannot take effect before it was invoked.
        let early = vec![
            op(1, Input::Read, Some(Output::Read(Some(1))), 0, 1),
            op(0, Input::Write(1), None, 5, 0),
        ];
        assert!(matches!(
            check_operations(&RegisterModel, &early, far()),
            Verdict::Invalid { .. }
        ));
    }

    #[test]
    fn counter_model_checks_results_and_reads() {
        let ok = vec![
            op(0, Input::Add(2), Some(Output::Add(2)), 0, 1),
            op(1, Input::Add(3), None, 2, 0),
            op(0, Input::CounterRead, Some(Output::CounterRead(2)), 3, 4),
            op(0, Input::CounterRead, Some(Output::CounterRead(5)), 5, 6),
        ];
        assert_eq!(check_operations(&CounterModel, &ok, far()), Verdict::Valid);
        let bad = vec![
            op(0, Input::Add(2), Some(Output::Add(2)), 0, 1),
            op(0, Input::CounterRead, Some(Output::CounterRead(5)), 3, 4),
        ];
        assert!(matches!(
            check_operations(&CounterModel, &bad, far()),
            Verdict::Invalid { .. }
        ));
    }

    fn ev(p: u64, kind: Kind, f: &str, key: &str, value: serde_json::Value, time: u64) -> Event {
        Event {
            process: Process::Client(p),
            kind,
            f: f.into(),
            key: Some(key.into()),
            value,
            time,
            error: None,
            request: None,
        }
    }

    #[test]
    fn partition_pairs_drops_fails_and_unknown_reads() {
        use serde_json::json;
        let k = "register/a";
        let events = vec![
            ev(0, Kind::Invoke, "write", k, json!(1), 0),
            ev(1, Kind::Invoke, "read", k, json!(null), 1),
            ev(0, Kind::Ok, "write", k, json!(1), 2),
            ev(1, Kind::Info, "read", k, json!(null), 3),
            ev(0, Kind::Invoke, "cas", k, json!({"from": 1, "to": 2}), 4),
            ev(0, Kind::Fail, "cas", k, json!({"from": 1, "to": 2}), 5),
            ev(2, Kind::Invoke, "write", k, json!(3), 6),
            ev(
                3,
                Kind::Invoke,
                "cas",
                k,
                json!({"from": "absent", "to": 4}),
                7,
            ),
            ev(
                3,
                Kind::Ok,
                "cas",
                k,
                json!({"from": "absent", "to": 4, "swapped": false, "current": 1}),
                8,
            ),
        ];
        let parts = partition(&events).expect("well formed");
        let ops = &parts[k].1;
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[2].input, Input::Write(3));
        assert_eq!(ops[2].ret, u64::MAX);
        assert_eq!(
            ops[1].output,
            Some(Output::Cas {
                swapped: false,
                current: Some(1)
            })
        );
        let bad = vec![ev(0, Kind::Ok, "read", k, json!(1), 0)];
        assert!(matches!(partition(&bad), Err(HistoryError::Orphan { .. })));
        let overlap = vec![
            ev(0, Kind::Invoke, "read", k, json!(null), 0),
            ev(0, Kind::Invoke, "read", k, json!(null), 1),
        ];
        assert!(matches!(
            partition(&overlap),
            Err(HistoryError::Overlap { .. })
        ));
    }

    #[test]
    fn lost_counter_increments_are_counted() {
        let k = "counter/x".to_string();
        let mut parts = Partitioned::new();
        parts.insert(
            k.clone(),
            (
                ModelKind::Counter,
                vec![
                    op(0, Input::Add(2), Some(Output::Add(2)), 0, 1),
                    op(0, Input::Add(3), Some(Output::Add(5)), 2, 3),
                    op(1, Input::CounterRead, Some(Output::CounterRead(2)), 10, 11),
                ],
            ),
        );
        assert_eq!(lost_counter_writes(&parts), vec![(k, 3)]);
    }

    fn req(mut e: Event, r: &str) -> Event {
        e.request = Some(r.into());
        e
    }

    #[test]
    fn a_value_no_client_wrote_makes_the_key_invalid() {
        use serde_json::json;
        let k = "register/f";
        let read = vec![
            ev(0, Kind::Invoke, "write", k, json!(1), 0),
            ev(0, Kind::Ok, "write", k, json!(1), 1),
            ev(1, Kind::Invoke, "read", k, json!(null), 2),
            ev(1, Kind::Ok, "read", k, json!({"foreign": "garbage"}), 3),
        ];
        let cas = vec![
            ev(
                0,
                Kind::Invoke,
                "cas",
                k,
                json!({"from": "absent", "to": 2}),
                0,
            ),
            ev(
                0,
                Kind::Ok,
                "cas",
                k,
                json!({"from": "absent", "to": 2, "swapped": false, "current": {"foreign": "x"}}),
                1,
            ),
        ];
        for events in [read, cas] {
            let parts = partition(&events).expect("well formed");
            assert!(matches!(
                parts[k].1.last().and_then(|o| o.output.clone()),
                Some(Output::Foreign(_))
            ));
            let r = check(&parts, Duration::from_secs(10));
            assert!(!r.valid && r.invalid_keys.contains_key(k), "{r:?}");
        }
    }

    #[test]
    fn a_retry_is_the_same_operation() {
        use serde_json::json;
        let k = "counter/r";
        // Unknown at first; the retry's answer settles it.
        let settled = vec![
            req(ev(0, Kind::Invoke, "add", k, json!(2), 0), "1:1"),
            req(ev(0, Kind::Info, "add", k, json!(2), 1), "1:1"),
            ev(1, Kind::Invoke, "add", k, json!(3), 2),
            ev(1, Kind::Ok, "add", k, json!({"delta": 3, "result": 5}), 3),
            req(ev(2, Kind::Invoke, "add", k, json!(2), 4), "1:1"),
            req(
                ev(2, Kind::Ok, "add", k, json!({"delta": 2, "result": 2}), 5),
                "1:1",
            ),
            ev(3, Kind::Invoke, "read", k, json!(null), 6),
            ev(3, Kind::Ok, "read", k, json!(5), 7),
        ];
        let (parts, conflicts) = partition_with_retries(&settled).expect("well formed");
        assert!(conflicts.is_empty());
        let ops = &parts[k].1;
        assert_eq!(ops.len(), 3, "the retry is merged into its operation");
        assert_eq!(ops[0].output, Some(Output::Add(2)));
        assert_eq!(ops[0].ret, 5);
        assert!(check(&parts, Duration::from_secs(10)).valid);
        assert!(excess_counter_totals(&parts).is_empty());
        // Applied again: the retry answers a new total, and the counter holds the delta twice.
        let twice = vec![
            req(ev(0, Kind::Invoke, "add", k, json!(2), 0), "1:1"),
            req(
                ev(0, Kind::Ok, "add", k, json!({"delta": 2, "result": 2}), 1),
                "1:1",
            ),
            req(ev(1, Kind::Invoke, "add", k, json!(2), 2), "1:1"),
            req(
                ev(1, Kind::Ok, "add", k, json!({"delta": 2, "result": 4}), 3),
                "1:1",
            ),
            ev(2, Kind::Invoke, "read", k, json!(null), 4),
            ev(2, Kind::Ok, "read", k, json!(4), 5),
        ];
        let (parts, conflicts) = partition_with_retries(&twice).expect("well formed");
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].retry, Output::Add(4));
        assert!(!check(&parts, Duration::from_secs(10)).valid);
        assert_eq!(excess_counter_totals(&parts), vec![(k.to_string(), 4, 2)]);
    }

    #[test]
    fn bank_invariants() {
        use serde_json::json;
        let accts = vec!["bank/a".to_string(), "bank/b".to_string()];
        let t = "bank/transfer";
        let base = vec![
            ev(0, Kind::Invoke, "deposit", "bank/a", json!(10), 0),
            ev(0, Kind::Ok, "deposit", "bank/a", json!({"balance": 10}), 1),
            ev(0, Kind::Invoke, "deposit", "bank/b", json!(10), 2),
            ev(0, Kind::Ok, "deposit", "bank/b", json!({"balance": 10}), 3),
            req(
                ev(
                    1,
                    Kind::Invoke,
                    "transfer",
                    t,
                    json!({"from": "a", "to": "b", "amount": 4}),
                    4,
                ),
                "1:1",
            ),
            req(
                ev(
                    1,
                    Kind::Info,
                    "transfer",
                    t,
                    json!({"from": "a", "to": "b", "amount": 4}),
                    5,
                ),
                "1:1",
            ),
        ];
        let finals = |a: i64, b: i64| {
            vec![
                ev(5, Kind::Invoke, "balance", "bank/a", json!(null), 100),
                ev(5, Kind::Ok, "balance", "bank/a", json!(a), 101),
                ev(5, Kind::Invoke, "balance", "bank/b", json!(null), 102),
                ev(5, Kind::Ok, "balance", "bank/b", json!(b), 103),
            ]
        };
        let retried = vec![
            req(
                ev(
                    2,
                    Kind::Invoke,
                    "transfer",
                    t,
                    json!({"from": "a", "to": "b", "amount": 4}),
                    6,
                ),
                "1:1",
            ),
            req(
                ev(
                    2,
                    Kind::Ok,
                    "transfer",
                    t,
                    json!({"from_balance": 6, "to_balance": 14}),
                    7,
                ),
                "1:1",
            ),
        ];
        let ok = [base.clone(), retried.clone(), finals(6, 14)].concat();
        let r = check_bank(&ok, &accts);
        assert_eq!(
            (r.initial_total, r.final_total, r.conserved, r.valid),
            (20, Some(20), Some(true), true)
        );
        // Unknown transfer: only a loss of up to its amount is explained.
        let unknown = check_bank(&[base.clone(), finals(6, 10)].concat(), &accts);
        assert_eq!(
            (unknown.conserved, unknown.valid, unknown.transfers_unknown),
            (None, true, 1)
        );
        let created = check_bank(&[base.clone(), finals(10, 14)].concat(), &accts);
        assert!(!created.valid);
        let lost = check_bank(
            &[base.clone(), retried.clone(), finals(6, 10)].concat(),
            &accts,
        );
        assert_eq!((lost.conserved, lost.valid), (Some(false), false));
        let negative = check_bank(&[base, retried, finals(-1, 21)].concat(), &accts);
        assert!(!negative.valid && negative.negative.len() == 1);
    }

    /// Brute force: try every order of every subset of unknown ops (small histories only).
    fn oracle<M: Model>(model: &M, ops: &[Operation]) -> bool {
        fn go<M: Model>(
            model: &M,
            ops: &[Operation],
            done: &mut Vec<bool>,
            state: &M::State,
        ) -> bool {
            // Done when every acknowledged op is linearized.
            if ops
                .iter()
                .zip(done.iter())
                .all(|(o, d)| *d || o.output.is_none())
            {
                return true;
            }
            for i in 0..ops.len() {
                if done[i] {
                    continue;
                }
                // i may go next only if no pending op returned before i was invoked.
                let blocked = ops
                    .iter()
                    .zip(done.iter())
                    .any(|(o, d)| !*d && o.ret < ops[i].call);
                if blocked {
                    continue;
                }
                if let Some(s2) = model.step(state, &ops[i].input, ops[i].output.as_ref()) {
                    done[i] = true;
                    if go(model, ops, done, &s2) {
                        return true;
                    }
                    done[i] = false;
                }
            }
            false
        }
        go(model, ops, &mut vec![false; ops.len()], &model.init())
    }

    use proptest::prelude::*;

    fn arb_register_ops() -> impl Strategy<Value = Vec<Operation>> {
        prop::collection::vec(
            (0u64..4, 0u64..20, 1u64..8, 0u8..6, 0u64..4, any::<bool>()),
            1..7,
        )
        .prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (p, call, dur, f, v, unknown))| {
                    let v = if v == 0 { None } else { Some(v) };
                    let (input, output) = match f {
                        0 | 1 => (Input::Read, Some(Output::Read(v))),
                        2 => (Input::Write(i as u64 + 1), Some(Output::Write)),
                        3 => (
                            Input::Cas {
                                from: v,
                                to: i as u64 + 1,
                            },
                            Some(Output::Cas {
                                swapped: true,
                                current: None,
                            }),
                        ),
                        4 => (
                            Input::Cas {
                                from: v,
                                to: i as u64 + 1,
                            },
                            Some(Output::Cas {
                                swapped: false,
                                current: v.map(|x| x + 1),
                            }),
                        ),
                        _ => (Input::Write(i as u64 + 1), Some(Output::Write)),
                    };
                    let output = if unknown && !matches!(input, Input::Read) {
                        None
                    } else {
                        output
                    };
                    op(p, input, output, call, call + dur)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn wgl_agrees_with_brute_force(ops in arb_register_ops()) {
            let fast = check_operations(&RegisterModel, &ops, far());
            let slow = oracle(&RegisterModel, &ops);
            prop_assert_eq!(fast == Verdict::Valid, slow, "ops: {:?}", ops);
        }

        #[test]
        fn leaving_out_unobserved_unknown_writes_keeps_the_verdict(ops in arb_register_ops()) {
            let pruned = without_unobserved_writes(&ops);
            let fast = check_operations(&RegisterModel, &pruned, far());
            prop_assert_eq!(fast == Verdict::Valid, oracle(&RegisterModel, &ops), "ops: {:?}", ops);
        }
    }

    fn arb_counter_ops() -> impl Strategy<Value = Vec<Operation>> {
        prop::collection::vec(
            (
                0u64..4,
                0u64..20,
                1u64..8,
                any::<bool>(),
                1i64..4,
                0i64..9,
                any::<bool>(),
            ),
            1..7,
        )
        .prop_map(|raw| {
            raw.into_iter()
                .map(|(p, call, dur, add, d, v, unknown)| {
                    let (input, output) = if add {
                        (Input::Add(d), (!unknown).then_some(Output::Add(v)))
                    } else {
                        (Input::CounterRead, Some(Output::CounterRead(v)))
                    };
                    op(p, input, output, call, call + dur)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn the_counter_check_agrees_with_brute_force(ops in arb_counter_ops()) {
            let fast = check_counter(&ops, far()).expect("positive adds");
            prop_assert_eq!(fast == Verdict::Valid, oracle(&CounterModel, &ops), "ops: {:?}", ops);
        }
    }

    /// The shape of a kill of the whole cluster in the `clients` workload: 60 adds of unknown
    /// outcome in flight on one key, some of which applied, then reads.
    #[test]
    fn a_burst_of_unknown_adds_is_checked_in_time() {
        let mut ops = vec![op(0, Input::Add(1), Some(Output::Add(1)), 0, 5)];
        let mut applied = 1;
        for i in 0..60u64 {
            let d = (i % 5) as i64 + 1;
            if i % 3 == 0 {
                applied += d;
            }
            ops.push(op(10 + i, Input::Add(d), None, 10 + i, 0));
        }
        ops.push(op(
            1,
            Input::CounterRead,
            Some(Output::CounterRead(applied)),
            1000,
            1005,
        ));
        ops.push(op(
            2,
            Input::Add(2),
            Some(Output::Add(applied + 2)),
            1010,
            1020,
        ));
        let parts: Partitioned =
            std::iter::once(("counter/0".to_string(), (ModelKind::Counter, ops.clone()))).collect();
        let r = check(&parts, Duration::from_secs(20));
        assert!(r.valid, "{r:?}");
        let deadline = Instant::now() + Duration::from_secs(20);
        // More than every add in flight could make, or a value none could reach: invalid.
        let all: i64 = 1 + (0..60).map(|i| i % 5 + 1).sum::<i64>() + 2;
        for bad in [all + 1, -1] {
            let mut wrong = ops.clone();
            wrong.push(op(
                3,
                Input::CounterRead,
                Some(Output::CounterRead(bad)),
                2000,
                2001,
            ));
            let v = check_counter(&wrong, deadline);
            assert!(matches!(v, Some(Verdict::Invalid { .. })), "{bad}: {v:?}");
        }
        // Adds that were invoked only after the read cannot explain it.
        let mut late = vec![op(
            0,
            Input::CounterRead,
            Some(Output::CounterRead(3)),
            0,
            5,
        )];
        late.push(op(1, Input::Add(3), None, 6, 0));
        assert!(matches!(
            check_counter(&late, deadline),
            Some(Verdict::Invalid { .. })
        ));
        // Non-positive adds are left to the general search.
        assert_eq!(
            check_counter(&[op(0, Input::Add(0), None, 0, 0)], deadline),
            None
        );
    }

    /// The shape of a `large` run under partition: dozens of writes of unknown outcome on one
    /// key, none of which took effect, between reads that all saw the register absent.
    #[test]
    fn many_unobserved_unknown_writes_are_checked_in_time() {
        let mut ops = Vec::new();
        for i in 0..40u64 {
            let t = i * 10;
            ops.push(op(i % 7, Input::Write(i + 1), None, t, 0));
            ops.push(op(
                100 + i,
                Input::Read,
                Some(Output::Read(None)),
                t + 5,
                t + 8,
            ));
        }
        let parts: Partitioned =
            std::iter::once(("register/L0".to_string(), (ModelKind::Register, ops))).collect();
        let r = check(&parts, Duration::from_secs(20));
        assert!(r.valid, "{r:?}");
        // A read of one of them keeps that write, and only it.
        let mut seen = parts["register/L0"].1.clone();
        seen.push(op(999, Input::Read, Some(Output::Read(Some(7))), 500, 501));
        let kept = without_unobserved_writes(&seen);
        assert_eq!(kept.len(), 42);
        assert!(kept.iter().any(|o| o.input == Input::Write(7)));
    }
}

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

fn parse_output(input: &Input, v: &serde_json::Value) -> Result<Output, String> {
    Ok(match input {
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

/// Pair invocations with completions and split by key. Nemesis events are skipped.
pub fn partition(events: &[Event]) -> Result<Partitioned, HistoryError> {
    struct Open {
        key: String,
        kind: ModelKind,
        input: Input,
        call: u64,
    }
    let mut open: HashMap<u64, Open> = HashMap::new();
    let mut out: Partitioned = BTreeMap::new();
    let malformed = |index: usize, reason: String| HistoryError::Malformed { index, reason };
    for (index, ev) in events.iter().enumerate() {
        let Process::Client(p) = ev.process else {
            continue;
        };
        match ev.kind {
            Kind::Invoke => {
                if open.contains_key(&p) {
                    return Err(HistoryError::Overlap { index, process: p });
                }
                let key = ev
                    .key
                    .clone()
                    .ok_or_else(|| malformed(index, "an invocation without a key".into()))?;
                let kind = ModelKind::of_key(&key)
                    .ok_or_else(|| malformed(index, format!("unknown key type {key:?}")))?;
                let input = parse_input(kind, &ev.f, &ev.value).map_err(|r| malformed(index, r))?;
                open.insert(
                    p,
                    Open {
                        key,
                        kind,
                        input,
                        call: ev.time,
                    },
                );
            }
            Kind::Ok | Kind::Fail | Kind::Info => {
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
                    Kind::Fail => continue,
                    _ => {
                        if matches!(o.input, Input::Read | Input::CounterRead) {
                            continue;
                        }
                        None
                    }
                };
                let ret = if output.is_some() { ev.time } else { u64::MAX };
                out.entry(o.key)
                    .or_insert_with(|| (o.kind, Vec::new()))
                    .1
                    .push(Operation {
                        process: p,
                        input: o.input,
                        output,
                        call: o.call,
                        ret,
                    });
            }
        }
    }
    // Never completed: unknown outcome (reads dropped).
    for (p, o) in open {
        if matches!(o.input, Input::Read | Input::CounterRead) {
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
    Ok(out)
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
                            ModelKind::Register => check_operations(&RegisterModel, ops, deadline),
                            ModelKind::Counter => check_operations(&CounterModel, ops, deadline),
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
    }
}

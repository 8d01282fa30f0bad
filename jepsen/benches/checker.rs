//! Checker speed on a synthetic linearizable history: 100,000 register and counter operations
//! over 100 keys by 20 processes, 2% of mutations with unknown outcome (half of them applied).
//!
//! `cargo bench -p floe-jepsen --bench checker`

use std::time::{Duration, Instant};

use floe_jepsen::checker;
use floe_jepsen::history::{Event, Kind, Process};
use rand::{RngExt, SeedableRng};
use serde_json::json;

struct Op {
    process: u64,
    key: String,
    f: &'static str,
    arg: serde_json::Value,
    call: u64,
    lin: u64,
    ret: u64,
    unknown: bool,
    applies: bool,
    result: serde_json::Value,
}

fn synthetic(ops: usize, keys: usize, processes: u64, seed: u64) -> Vec<Event> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut list: Vec<Op> = Vec::with_capacity(ops);
    let mut clock = vec![0u64; processes as usize];
    let mut pid: Vec<u64> = (0..processes).collect();
    let mut next_pid = processes;
    let mut value = 1u64;
    for _ in 0..ops {
        let w = rng.random_range(0..processes as usize);
        let call = clock[w] + 1 + rng.random_range(0..50_000);
        let lin = call + rng.random_range(1..200_000);
        let ret = lin + rng.random_range(1..200_000);
        clock[w] = ret;
        let k = rng.random_range(0..keys);
        let counter = k % 2 == 1;
        let roll: f64 = rng.random();
        let (key, f, arg) = if counter {
            let key = format!("counter/{k}");
            if roll < 0.6 {
                (key, "add", json!(rng.random_range(1..5)))
            } else {
                (key, "read", json!(null))
            }
        } else {
            let key = format!("register/{k}");
            value += 1;
            if roll < 0.5 {
                (key, "read", json!(null))
            } else if roll < 0.75 {
                (key, "write", json!(value))
            } else {
                (key, "cas", json!({"from": "absent", "to": value}))
            }
        };
        let unknown = f != "read" && rng.random_bool(0.02);
        list.push(Op {
            process: pid[w],
            key,
            f,
            arg,
            call,
            lin,
            ret,
            unknown,
            applies: !unknown || rng.random_bool(0.5),
            result: json!(null),
        });
        if unknown {
            pid[w] = next_pid;
            next_pid += 1;
        }
    }
    // Apply in linearization order to get the outputs; cas expects the current value half the time.
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by_key(|i| list[*i].lin);
    let mut regs: std::collections::HashMap<String, Option<u64>> = Default::default();
    let mut ctrs: std::collections::HashMap<String, i64> = Default::default();
    for i in order {
        let o = &mut list[i];
        if !o.applies {
            continue;
        }
        match o.f {
            "add" => {
                let c = ctrs.entry(o.key.clone()).or_default();
                *c += o.arg.as_i64().unwrap_or(0);
                o.result = json!({"delta": o.arg, "result": *c});
            }
            "read" if o.key.starts_with("counter/") => {
                o.result = json!(ctrs.get(&o.key).copied().unwrap_or(0))
            }
            "read" => {
                let v = regs.get(&o.key).copied().flatten();
                o.result = v.map_or(json!("absent"), |v| json!(v));
            }
            "write" => {
                regs.insert(o.key.clone(), o.arg.as_u64());
                o.result = o.arg.clone();
            }
            _ => {
                let cur = regs.get(&o.key).copied().flatten();
                let to = o.arg["to"].as_u64();
                let from = if rng.random_bool(0.5) { cur } else { Some(0) };
                let from_json = from.map_or(json!("absent"), |v| json!(v));
                o.arg = json!({"from": from_json, "to": to});
                if from == cur {
                    regs.insert(o.key.clone(), to);
                    o.result = json!({"from": from_json, "to": to, "swapped": true});
                } else {
                    let c = cur.map_or(json!("absent"), |v| json!(v));
                    o.result = json!({"from": from_json, "to": to, "swapped": false, "current": c});
                }
            }
        }
    }
    let mut events = Vec::with_capacity(ops * 2);
    for o in &list {
        let ev = |kind, time, value| Event {
            process: Process::Client(o.process),
            kind,
            f: o.f.to_string(),
            key: Some(o.key.clone()),
            value,
            time,
            error: None,
            request: None,
        };
        events.push(ev(Kind::Invoke, o.call, o.arg.clone()));
        if o.unknown {
            events.push(ev(Kind::Info, o.ret, o.arg.clone()));
        } else {
            events.push(ev(Kind::Ok, o.ret, o.result.clone()));
        }
    }
    events.sort_by_key(|e| (e.time, e.kind != Kind::Invoke));
    events
}

fn main() {
    let (ops, keys) = (100_000, 100);
    {
        let events = synthetic(ops, keys, 20, 7);
        let t = Instant::now();
        let parts = checker::partition(&events).expect("well formed");
        let r = checker::check(&parts, Duration::from_secs(120));
        println!(
            "{ops} ops, {keys} keys: valid={} unknown={} checked {} ops in {:.3} s (search {} ms)",
            r.valid,
            r.unknown,
            r.operations,
            t.elapsed().as_secs_f64(),
            r.elapsed_ms
        );
        assert!(
            r.valid,
            "a linearizable history was judged invalid: {:?}",
            r.invalid_keys
        );
    }
}

//! The cost of encoding application data: actor state and message bodies as Floe stores them
//! (MessagePack with field names, behind a 5-byte state header) against the positional bincode
//! used before, measured in the same run on the same values.
//!
//! `cargo bench -p floe-bench --bench codec` (`FLOE_BENCH_SECS`, default 3, split over the cases).

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A counter: the smallest state.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    value: u64,
}

/// A bank account with a short history: a typical small state.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    balance: i64,
    owner: String,
    frozen: bool,
    limit: Option<u64>,
    history: Vec<Entry>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    amount: i64,
    at_ms: u64,
    memo: String,
}

/// A cart of 200 items: a larger state with many small records.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Cart {
    items: Vec<Entry>,
}

fn account() -> Account {
    Account {
        balance: 1_234_567,
        owner: "ada@example.com".into(),
        frozen: false,
        limit: Some(10_000),
        history: (0..10)
            .map(|i| Entry {
                amount: 100 * i - 300,
                at_ms: 1_700_000_000_000 + i as u64,
                memo: format!("payment {i}"),
            })
            .collect(),
    }
}

fn cart() -> Cart {
    Cart {
        items: (0..200)
            .map(|i| Entry {
                amount: i,
                at_ms: 1_700_000_000_000 + i as u64,
                memo: format!("sku-{i:05}"),
            })
            .collect(),
    }
}

/// Nanoseconds per encode + decode round of `value`, over `budget`; and the encoded size.
fn measure<T, E, D>(value: &T, budget: Duration, encode: E, decode: D) -> (f64, usize)
where
    T: PartialEq + std::fmt::Debug,
    E: Fn(&T) -> Vec<u8>,
    D: Fn(&[u8]) -> T,
{
    let bytes = encode(value);
    assert_eq!(
        &decode(&bytes),
        value,
        "the round trip must give the value back"
    );
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < budget {
        for _ in 0..256 {
            let b = encode(black_box(value));
            black_box(decode(black_box(&b)));
        }
        rounds += 256;
    }
    (
        started.elapsed().as_nanos() as f64 / rounds as f64,
        bytes.len(),
    )
}

fn bincode_of<T: Serialize>(v: &T) -> Vec<u8> {
    floe_proto::codec::encode_body(v).expect("bincode encode")
}

fn from_bincode<T: DeserializeOwned>(b: &[u8]) -> T {
    floe_proto::codec::decode_body(b).expect("bincode decode")
}

fn state_of<T: Serialize>(v: &T) -> Vec<u8> {
    floe::codec::encode_state(1, v).expect("state encode")
}

fn from_state<T: DeserializeOwned>(b: &[u8]) -> T {
    floe::codec::decode_state(b, 1, None).expect("state decode")
}

fn body_of<T: Serialize>(v: &T) -> Vec<u8> {
    floe::codec::encode_body(v).expect("body encode")
}

fn from_body<T: DeserializeOwned>(b: &[u8]) -> T {
    floe::codec::decode_body(b).expect("body decode")
}

fn row<T>(name: &str, value: &T, budget: Duration)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let (base_ns, base_len) = measure(value, budget, bincode_of, from_bincode::<T>);
    let (state_ns, state_len) = measure(value, budget, state_of, from_state::<T>);
    let (body_ns, body_len) = measure(value, budget, body_of, from_body::<T>);
    println!(
        "| {name} | {base_ns:.0} ns, {base_len} B | {state_ns:.0} ns, {state_len} B | {:.2}× time, {:.2}× size | {body_ns:.0} ns, {body_len} B |",
        state_ns / base_ns,
        state_len as f64 / base_len as f64,
    );
}

fn main() {
    let secs: f64 = std::env::var("FLOE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    // Three values, three encodings each.
    let budget = Duration::from_secs_f64(secs / 9.0);
    println!("codec: encode + decode of one value, same process, same run");
    println!();
    println!(
        "| value | bincode (baseline) | state: header + MessagePack, named | state / baseline | message body: MessagePack, named |"
    );
    println!("|---|---|---|---|---|");
    row("counter (one u64)", &Counter { value: 42 }, budget);
    row("account (5 fields, 10 entries)", &account(), budget);
    row("cart (200 entries)", &cart(), budget);
}

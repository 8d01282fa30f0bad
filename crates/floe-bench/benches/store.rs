//! Store benchmark: durable append throughput by entries per flush, with and without the extra
//! fdatasync, and state-machine apply throughput.
//!
//! `cargo bench -p floe-bench --bench store` (set `FLOE_BENCH_SECS` to change the time per
//! case, default 3). Prints a markdown table for BENCHMARKS.md.

use std::time::{Duration, Instant};

use raft_store::types::openraft::storage::RaftLogStorage;
use raft_store::types::openraft::type_config::TypeConfigExt;
use raft_store::types::{Entry, EntryPayload, IOFlushed, TypeConfig};
use raft_store::{ActorId, Command, Durability, StoreConfig, open};

fn commit(i: u64) -> Command {
    Command::Commit {
        actor: ActorId::new("bench.Counter", format!("k{}", i % 1024)),
        epoch: 1,
        state: Some(vec![(i % 251) as u8; 64]),
        base: None,
        request: None,
        acked: 0,
        outcome: raft_store::Outcome::Reply(vec![1; 8]),
    }
}

fn entry(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: raft_store::types::openraft::testing::log_id::<TypeConfig>(1, 1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn append_case(
    durability: Durability,
    batch: u64,
    budget: Duration,
) -> (f64, Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _sm) =
        open(dir.path(), &StoreConfig::default().durability(durability)).expect("open");
    let mut next = 1;
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        let entries: Vec<Entry> = (next..next + batch).map(|i| entry(i, commit(i))).collect();
        next += batch;
        let (tx, rx) = TypeConfig::oneshot();
        log.append(entries, IOFlushed::signal(tx))
            .await
            .expect("append");
        rx.await.expect("flush dropped").expect("flush");
        lat.push(t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    (
        (next - 1) as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    )
}

async fn apply_case(budget: Duration) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, sm) = open(dir.path(), &StoreConfig::default()).expect("open");
    let mut setup = vec![entry(
        1,
        Command::RegisterNode {
            node: 1,
            incarnation: 1,
            addr: "n1".into(),
            actor_types: vec![],
        },
    )];
    for k in 0..1024u64 {
        setup.push(entry(
            2 + k,
            Command::Activate {
                actor: ActorId::new("bench.Counter", format!("k{k}")),
                preferred: 1,
            },
        ));
    }
    sm.apply_entries(&setup).await.expect("setup");
    let mut next = setup.len() as u64 + 1;
    let start = Instant::now();
    let mut applied = 0u64;
    while start.elapsed() < budget {
        let entries: Vec<Entry> = (next..next + 256).map(|i| entry(i, commit(i))).collect();
        next += 256;
        sm.apply_entries(&entries).await.expect("apply");
        applied += 256;
    }
    applied as f64 / start.elapsed().as_secs_f64()
}

/// Raw sled in the same run: insert `batch` values, `flush()`, optionally `fdatasync` the db file.
fn raw_sled_case(fsync: bool, batch: u64, budget: Duration) -> (f64, Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .open()
        .expect("sled");
    let file = std::fs::File::open(dir.path().join("db")).expect("db file");
    let value = vec![7u8; 120];
    let (mut next, mut lat) = (0u64, Vec::new());
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        for _ in 0..batch {
            db.insert(next.to_be_bytes(), value.as_slice())
                .expect("insert");
            next += 1;
        }
        db.flush().expect("flush");
        if fsync {
            file.sync_data().expect("fdatasync");
        }
        lat.push(t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    (
        next as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    )
}

fn main() {
    let budget = floe_testkit::load::bench_budget(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("| case | durability | entries/flush | entries/s | flush p50 | flush p99 |");
    println!("|---|---|---|---|---|---|");
    for durability in [Durability::Fsync, Durability::SledFlush] {
        for batch in [1u64, 16, 256] {
            let (rate, p50, p99) = rt.block_on(append_case(durability, batch, budget));
            println!("| append | {durability:?} | {batch} | {rate:.0} | {p50:.1?} | {p99:.1?} |");
        }
    }
    for fsync in [true, false] {
        for batch in [1u64, 16, 256] {
            let (rate, p50, p99) = raw_sled_case(fsync, batch, budget);
            let d = if fsync {
                "raw sled + fdatasync"
            } else {
                "raw sled flush"
            };
            println!("| baseline | {d} | {batch} | {rate:.0} | {p50:.1?} | {p99:.1?} |");
        }
    }
    let rate = rt.block_on(apply_case(budget));
    println!("| apply (Commit, 256/transaction) | - | - | {rate:.0} | - | - |");
}

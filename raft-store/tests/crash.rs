//! Crash test: a child process appends, votes and applies through the real store while this
//! process kills it with SIGKILL at random moments. After every kill the store is reopened and
//! checked: every append whose completion was reported is present with its content, the log has
//! no holes, the vote never went backwards, and applied ≤ last log index.
//!
//! The child is this same executable started with `FLOE_CRASH_CHILD=<dir>`; it prints `ACK <index>`
//! after an append's completion and `VOTE <term>` after `save_vote` returned.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command as Proc, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::type_config::TypeConfigExt;
use raft_store::types::{Entry, EntryPayload, IOFlushed, TypeConfig, Vote};
use raft_store::{Command, StoreConfig, open};
use rand::RngExt;

const ROUNDS: usize = 24;
const CHILD_ENV: &str = "FLOE_CRASH_CHILD";

/// The payload the child writes at `index`; the parent checks it back.
fn payload(index: u64) -> Command {
    Command::RegisterNode {
        node: index,
        incarnation: index * 3,
        addr: format!("10.0.{}.{}:7000", index % 251, index % 13),
        actor_types: vec!["x".repeat((index % 200) as usize)],
    }
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: openraft::testing::log_id::<TypeConfig>(term, 1, index),
        payload: EntryPayload::Normal(payload(index)),
    }
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let t0 = Instant::now();
    parent();
    println!("crash test: {ROUNDS} rounds passed in {:?}", t0.elapsed());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn child(dir: &Path) {
    runtime().block_on(async {
        let (mut log, mut sm) = open(dir, &StoreConfig::default()).expect("child: open");
        let state = log.get_log_state().await.expect("child: log state");
        let mut next = state.last_log_id.map_or(1, |l| l.index + 1);
        let mut term = log
            .read_vote()
            .await
            .expect("child: vote")
            .map_or(1, |v| v.leader_id.term);
        let (applied, _) = sm.applied_state().await.expect("child: applied");
        let mut applied = applied.map_or(0, |l| l.index);
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let say = |line: String| {
            let mut o = out.lock().expect("stdout");
            writeln!(o, "{line}").expect("stdout write");
            o.flush().expect("stdout flush");
        };
        let mut rng = rand::rng();
        let mut pending = std::collections::VecDeque::new();
        loop {
            if rng.random_ratio(1, 20) {
                term += 1;
                log.save_vote(&Vote::new(term, 1))
                    .await
                    .expect("child: save vote");
                say(format!("VOTE {term}"));
            }
            let n = rng.random_range(1..=32u64);
            let entries: Vec<Entry> = (next..next + n).map(|i| entry(term, i)).collect();
            let (tx, rx) = TypeConfig::oneshot();
            log.append(entries, IOFlushed::signal(tx))
                .await
                .expect("child: append");
            next += n;
            pending.push_back((next - 1, rx));
            // Up to four appends in flight, completed in order.
            while pending.len() > 4 || (rng.random_ratio(1, 2) && !pending.is_empty()) {
                let Some((last, rx)) = pending.pop_front() else {
                    break;
                };
                rx.await
                    .expect("child: flush dropped")
                    .expect("child: flush failed");
                say(format!("ACK {last}"));
                // Apply a prefix of what is durable, as Raft applies committed entries.
                let upto = applied + rng.random_range(0..=(last - applied));
                if upto > applied {
                    let entries = log
                        .try_get_log_entries(applied + 1..=upto)
                        .await
                        .expect("child: read back");
                    sm.apply_entries(&entries).await.expect("child: apply");
                    applied = upto;
                }
            }
        }
    })
}

fn parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut max_acked = 0u64;
    let mut max_vote = 0u64;
    let mut rng = rand::rng();
    for round in 0..ROUNDS {
        let mut child = Proc::new(&exe)
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().expect("lines").push(l);
                }
            })
        };
        // Wait until this round acknowledged something, then let it run a random while.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.starts_with("ACK"))
        {
            assert!(
                Instant::now() < deadline,
                "round {round}: child made no progress"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("round {round}: child exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        child.kill().expect("SIGKILL child");
        child.wait().expect("reap child");
        reader.join().expect("reader thread");
        for l in lines.lock().expect("lines").iter() {
            let (kind, n) = l.split_once(' ').expect("child line");
            let n: u64 = n.parse().expect("child number");
            match kind {
                "ACK" => max_acked = max_acked.max(n),
                "VOTE" => max_vote = max_vote.max(n),
                _ => panic!("unexpected child line {l}"),
            }
        }
        verify(dir.path(), round, max_acked, max_vote);
    }
}

fn verify(dir: &Path, round: usize, max_acked: u64, max_vote: u64) {
    runtime().block_on(async {
        let (mut log, mut sm) = open(dir, &StoreConfig::default()).expect("reopen after kill");
        let state = log.get_log_state().await.expect("log state");
        let last = state.last_log_id.map_or(0, |l| l.index);
        assert!(
            last >= max_acked,
            "round {round}: acked {max_acked} but last is {last}"
        );
        let entries = log.try_get_log_entries(1..=last).await.expect("read log");
        assert_eq!(entries.len() as u64, last, "round {round}: hole in the log");
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.log_id.index, i as u64 + 1, "round {round}: out of order");
            match &e.payload {
                EntryPayload::Normal(c) => assert_eq!(c, &payload(e.log_id.index)),
                other => panic!("round {round}: unexpected payload {other:?}"),
            }
        }
        let vote = log
            .read_vote()
            .await
            .expect("vote")
            .map_or(0, |v| v.leader_id.term);
        assert!(
            vote >= max_vote,
            "round {round}: vote went back from {max_vote} to {vote}"
        );
        let (applied, _) = sm.applied_state().await.expect("applied");
        let applied = applied.map_or(0, |l| l.index);
        assert!(
            applied <= last,
            "round {round}: applied {applied} > last {last}"
        );
        // The applied state is exactly the effect of entries 1..=applied.
        let view = sm.view();
        let nodes = view.nodes().await.expect("nodes");
        assert_eq!(nodes.len() as u64, applied, "round {round}: partial apply");
        println!("round {round}: last {last}, acked {max_acked}, applied {applied}, vote {vote}");
    })
}

//! The actor runtime on one node with a real sled-backed Raft: calls, durability, fencing rules,
//! rollback, cycles, backpressure, idle deactivation and exactly-once retries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use floe::RuntimeConfig;
use floe::prelude::*;
use floe_proto::raft::WatchReceiver;
use floe_testkit::init_tracing;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

// ---------- test actors ----------

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(
    name = "test.Account",
    handles(Deposit, Balance, Transfer, Explode, Overdraw)
)]
struct Account {
    balance: i64,
}

#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Deposit", reply = i64)]
struct Deposit(i64);

#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Balance", reply = i64)]
struct Balance;

/// Move `amount` to another account (an actor→actor call).
#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Transfer", reply = i64)]
struct Transfer {
    to: String,
    amount: i64,
}

/// Changes the state, then panics.
#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Explode")]
struct Explode;

/// Changes the state, then fails.
#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Overdraw", reply = i64)]
struct Overdraw(i64);

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
enum BankError {
    #[error("insufficient funds: have {have}, need {need}")]
    Insufficient { have: i64, need: i64 },
    #[error("transfer failed: {0}")]
    Transfer(String),
}

impl Handler<Deposit> for Account {
    type Error = Never;
    async fn handle(
        &mut self,
        Deposit(n): Deposit,
        _ctx: &mut Context<Self>,
    ) -> Result<i64, Never> {
        self.balance += n;
        Ok(self.balance)
    }
}

impl Handler<Balance> for Account {
    type Error = Never;
    async fn handle(&mut self, _: Balance, _ctx: &mut Context<Self>) -> Result<i64, Never> {
        Ok(self.balance)
    }
}

impl Handler<Transfer> for Account {
    type Error = BankError;
    async fn handle(&mut self, t: Transfer, ctx: &mut Context<Self>) -> Result<i64, BankError> {
        if self.balance < t.amount {
            return Err(BankError::Insufficient {
                have: self.balance,
                need: t.amount,
            });
        }
        self.balance -= t.amount;
        ctx.actor::<Account>(t.to)
            .call(Deposit(t.amount))
            .await
            .map_err(|e| BankError::Transfer(e.to_string()))?;
        Ok(self.balance)
    }
}

impl Handler<Explode> for Account {
    type Error = Never;
    async fn handle(&mut self, _: Explode, _ctx: &mut Context<Self>) -> Result<(), Never> {
        self.balance += 1_000_000;
        panic!("boom");
    }
}

impl Handler<Overdraw> for Account {
    type Error = BankError;
    async fn handle(
        &mut self,
        Overdraw(n): Overdraw,
        _ctx: &mut Context<Self>,
    ) -> Result<i64, BankError> {
        self.balance -= n;
        if self.balance < 0 {
            return Err(BankError::Insufficient {
                have: self.balance + n,
                need: n,
            });
        }
        Ok(self.balance)
    }
}

/// Calls another `Pinger` (for the cycle rule) and probes concurrency, hooks and tasks.
#[derive(Actor, Default)]
#[actor(name = "test.Pinger", stateless, lifecycle, handles(Ping, Hold, Tick))]
struct Pinger;

/// Call `next` (a chain of keys); the last one answers.
#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Ping", reply = String)]
struct Ping {
    next: Vec<String>,
}

/// Wait until the named gate opens.
#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Hold")]
struct Hold(String);

/// Start a background task bound to the activation.
#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Tick")]
struct Tick(String);

fn probes() -> &'static Mutex<HashMap<String, u64>> {
    static P: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    P.get_or_init(Default::default)
}

fn probe(name: &str) -> u64 {
    probes()
        .lock()
        .expect("probes")
        .get(name)
        .copied()
        .unwrap_or(0)
}

fn bump(name: &str) {
    *probes()
        .lock()
        .expect("probes")
        .entry(name.to_string())
        .or_default() += 1;
}

fn gates() -> &'static Mutex<HashMap<String, Arc<tokio::sync::Notify>>> {
    static G: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Notify>>>> = OnceLock::new();
    G.get_or_init(Default::default)
}

fn gate(name: &str) -> Arc<tokio::sync::Notify> {
    gates()
        .lock()
        .expect("gates")
        .entry(name.to_string())
        .or_default()
        .clone()
}

/// Handlers of the "solo" pinger running now.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static OVERLAP: AtomicBool = AtomicBool::new(false);

impl Lifecycle for Pinger {
    async fn on_activate(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        if ctx.key().starts_with("bad") {
            return Err(ActorError::new(format!(
                "refusing to activate {}",
                ctx.key()
            )));
        }
        bump(&format!("activate:{}", ctx.key()));
        Ok(())
    }
    async fn on_deactivate(&mut self, ctx: &mut Context<Self>) {
        bump(&format!("deactivate:{}", ctx.key()));
    }
}

impl Handler<Ping> for Pinger {
    type Error = String;
    async fn handle(&mut self, mut p: Ping, ctx: &mut Context<Self>) -> Result<String, String> {
        // Only the "solo" actor is watched: other tests of this binary run pingers of other
        // keys at the same time.
        let solo = ctx.key() == "solo";
        if solo && RUNNING.fetch_add(1, Ordering::SeqCst) > 0 {
            OVERLAP.store(true, Ordering::SeqCst);
        }
        let out = if p.next.is_empty() {
            tokio::task::yield_now().await;
            Ok(format!("pong from {}", ctx.key()))
        } else {
            let next = p.next.remove(0);
            ctx.actor::<Pinger>(next)
                .call(p)
                .await
                .map_err(|e| e.to_string())
        };
        if solo {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        }
        out
    }
}

impl Handler<Hold> for Pinger {
    type Error = Never;
    async fn handle(&mut self, Hold(g): Hold, _ctx: &mut Context<Self>) -> Result<(), Never> {
        gate(&g).notified().await;
        Ok(())
    }
}

impl Handler<Tick> for Pinger {
    type Error = Never;
    async fn handle(&mut self, Tick(name): Tick, ctx: &mut Context<Self>) -> Result<(), Never> {
        ctx.spawn(async move {
            loop {
                bump(&name);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        ctx.deactivate();
        Ok(())
    }
}

/// A stateless actor whose only effect is a deposit into an account.
#[derive(Actor, Default)]
#[actor(name = "test.Giver", stateless, handles(Give))]
struct Giver;

#[derive(Message, Serialize, Deserialize)]
#[message(name = "test.Give", reply = i64)]
struct Give {
    to: String,
    amount: i64,
}

impl Handler<Give> for Giver {
    type Error = String;
    async fn handle(&mut self, g: Give, ctx: &mut Context<Self>) -> Result<i64, String> {
        ctx.actor::<Account>(g.to)
            .call(Deposit(g.amount))
            .await
            .map_err(|e| e.to_string())
    }
}

// ---------- helpers ----------

async fn node(dir: &std::path::Path, runtime: RuntimeConfig) -> Node {
    Node::builder()
        .data_dir(dir)
        .runtime(runtime)
        .register::<Account>()
        .register::<Pinger>()
        .register::<Giver>()
        .build()
        .await
        .expect("node starts")
}

fn last_index(node: &Node) -> u64 {
    node.raft()
        .metrics()
        .borrow_watched()
        .last_log_index
        .unwrap_or(0)
}

/// Wait (at most 10 s) until `cond` holds.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    floe_testkit::wait_until(what, Duration::from_secs(10), || std::future::ready(cond())).await
}

// ---------- tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_durable_across_restart_and_reads_write_nothing() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path(), RuntimeConfig::default()).await;
    let alice = n.actor::<Account>("alice");
    assert_eq!(alice.call(Deposit(10)).await.expect("deposit"), 10);
    assert_eq!(alice.call(Deposit(5)).await.expect("deposit"), 15);
    let before = last_index(&n);
    assert_eq!(alice.call(Balance).await.expect("balance"), 15);
    assert_eq!(
        last_index(&n),
        before,
        "a read-only call appended to the log"
    );
    let first_incarnation = n.incarnation();
    n.shutdown().await.expect("shutdown");

    let n = node(dir.path(), RuntimeConfig::default()).await;
    assert!(n.incarnation() > first_incarnation);
    assert_eq!(
        n.actor::<Account>("alice")
            .call(Balance)
            .await
            .expect("balance"),
        15
    );
    n.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_to_actor_calls_and_handler_errors_roll_back() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path(), RuntimeConfig::default()).await;
    n.actor::<Account>("a")
        .call(Deposit(100))
        .await
        .expect("deposit");
    let left = n
        .actor::<Account>("a")
        .call(Transfer {
            to: "b".into(),
            amount: 30,
        })
        .await
        .expect("transfer");
    assert_eq!(left, 70);
    assert_eq!(
        n.actor::<Account>("b")
            .call(Balance)
            .await
            .expect("balance"),
        30
    );

    // The handler mutates then fails: the caller gets the typed error, the state is untouched.
    let err = n
        .actor::<Account>("a")
        .call(Overdraw(500))
        .await
        .expect_err("overdraw");
    assert_eq!(
        err.rejected(),
        Some(&BankError::Insufficient {
            have: 70,
            need: 500
        })
    );
    assert_eq!(
        n.actor::<Account>("a")
            .call(Balance)
            .await
            .expect("balance"),
        70
    );
    let err = n
        .actor::<Account>("a")
        .call(Transfer {
            to: "b".into(),
            amount: 1000,
        })
        .await
        .expect_err("too much");
    assert!(matches!(
        err,
        CallError::Rejected(BankError::Insufficient { .. })
    ));
    n.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_are_isolated_and_rolled_back() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path(), RuntimeConfig::default()).await;
    let acc = n.actor::<Account>("p");
    acc.call(Deposit(7)).await.expect("deposit");
    let err = acc.call(Explode).await.expect_err("panic");
    assert!(
        matches!(err.failure(), Some(CallFailure::Panicked(m)) if m.contains("boom")),
        "{err:?}"
    );
    assert_eq!(acc.call(Balance).await.expect("balance after panic"), 7);
    assert_eq!(acc.call(Deposit(1)).await.expect("node keeps serving"), 8);
    n.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_cycles_fail_fast_instead_of_deadlocking() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path(), RuntimeConfig::default()).await;
    // A chain without a cycle works.
    let r = n
        .actor::<Pinger>("x")
        .call(Ping {
            next: vec!["y".into(), "z".into()],
        })
        .await
        .expect("chain");
    assert_eq!(r, "pong from z");
    // x → y → x is a cycle; so is x → x.
    let started = Instant::now();
    for next in [
        vec!["y".to_string(), "x".to_string()],
        vec!["x".to_string()],
    ] {
        let err = n
            .actor::<Pinger>("x")
            .call(Ping { next })
            .await
            .expect_err("cycle");
        let CallError::Rejected(msg) = err else {
            panic!("expected the handler's error, got {err:?}")
        };
        assert!(msg.contains("call cycle"), "{msg}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cycle detection waited for a timeout"
    );
    n.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_activate_hook_fails_the_call_and_leaves_nothing_behind() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path(), RuntimeConfig::default()).await;
    let before = n.activations();
    let err = n
        .actor::<Pinger>("bad-1")
        .call(Ping { next: vec![] })
        .await
        .expect_err("hook fails");
    assert!(
        matches!(err.failure(), Some(CallFailure::ActivationFailed(m)) if m.contains("refusing")),
        "{err:?}"
    );
    assert_eq!(n.activations(), before, "a half-alive activation was kept");
    // The next call tries again (and fails again), and other actors are unaffected.
    assert!(
        n.actor::<Pinger>("bad-1")
            .call(Ping { next: vec![] })
            .await
            .is_err()
    );
    assert_eq!(
        n.actor::<Pinger>("good")
            .call(Ping { next: vec![] })
            .await
            .expect("ok"),
        "pong from good"
    );
    n.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_request_id_is_applied_once_even_after_restart() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path(), RuntimeConfig::default()).await;
    let rid = n.new_request_id().await.expect("request id");
    let acc = n.actor::<Account>("once").with_request_id(rid);
    assert_eq!(acc.call(Deposit(10)).await.expect("first"), 10);
    assert_eq!(
        acc.call(Deposit(10)).await.expect("retry"),
        10,
        "retry must return the original reply"
    );
    n.shutdown().await.expect("shutdown");
    let n = node(dir.path(), RuntimeConfig::default()).await;
    let acc = n.actor::<Account>("once").with_request_id(rid);
    assert_eq!(
        acc.call(Deposit(10)).await.expect("retry after restart"),
        10
    );
    assert_eq!(
        n.actor::<Account>("once")
            .call(Balance)
            .await
            .expect("balance"),
        10
    );
    n.shutdown().await.expect("shutdown");
}

/// Regression: a stateless actor re-run for a retried request (client retry, hedged request,
/// re-routed forward) used to repeat its calls with fresh request ids and apply them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_stateless_call_does_not_repeat_its_effects() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path(), RuntimeConfig::default()).await;
    let rid = n.new_request_id().await.expect("request id");
    let giver = n.actor::<Giver>("g").with_request_id(rid);
    assert_eq!(
        giver
            .call(Give {
                to: "dest".into(),
                amount: 5
            })
            .await
            .expect("give"),
        5
    );
    assert_eq!(
        giver
            .call(Give {
                to: "dest".into(),
                amount: 5
            })
            .await
            .expect("retry"),
        5
    );
    assert_eq!(
        n.actor::<Account>("dest")
            .call(Balance)
            .await
            .expect("balance"),
        5,
        "deposit applied twice"
    );
    // A new request does apply.
    assert_eq!(
        n.actor::<Giver>("g")
            .call(Give {
                to: "dest".into(),
                amount: 5
            })
            .await
            .expect("give"),
        10
    );
    n.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_actors_with_concurrent_calls_and_group_commit() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let n = Arc::new(node(dir.path(), RuntimeConfig::default()).await);
    let start = last_index(&n);
    let results: Vec<_> = futures::stream::iter(0..10_000)
        .map(|i| {
            let n = n.clone();
            async move {
                n.actor::<Account>(format!("acc-{i}"))
                    .call(Deposit(i))
                    .await
            }
        })
        .buffer_unordered(512)
        .collect()
        .await;
    for (i, r) in results.into_iter().enumerate() {
        assert!(r.is_ok(), "call {i}: {r:?}");
    }
    assert_eq!(n.activations(), 10_000);
    let entries = last_index(&n) - start;
    // 10,000 activations and 10,000 commits; group commit puts many into each entry.
    assert!(
        entries < 10_000,
        "{entries} log entries for 20,000 commands: no batching"
    );
    for i in [0i64, 4_999, 9_999] {
        assert_eq!(
            n.actor::<Account>(format!("acc-{i}"))
                .call(Balance)
                .await
                .expect("balance"),
            i
        );
    }
    Arc::into_inner(n)
        .expect("sole owner")
        .shutdown()
        .await
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_at_a_time_and_bounded_mailbox() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = RuntimeConfig::default().mailbox_capacity(1);
    let n = Arc::new(node(dir.path(), cfg).await);

    // Concurrent calls to one actor never overlap.
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let n = n.clone();
            tokio::spawn(async move { n.actor::<Pinger>("solo").call(Ping { next: vec![] }).await })
        })
        .collect();
    for c in calls {
        c.await.expect("task").expect("call");
    }
    assert!(
        !OVERLAP.load(Ordering::SeqCst),
        "two messages ran at once on one actor"
    );

    // Backpressure: one call runs (blocked on a gate), one waits in the single mailbox slot,
    // a third cannot get in before its deadline.
    let held = gate("mailbox");
    let first = {
        let n = n.clone();
        tokio::spawn(async move { n.actor::<Pinger>("busy").call(Hold("mailbox".into())).await })
    };
    wait_until("first call running", || n.activations() >= 2).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = {
        let n = n.clone();
        tokio::spawn(async move { n.actor::<Pinger>("busy").call(Hold("mailbox".into())).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let third = n
        .actor::<Pinger>("busy")
        .with_timeout(Duration::from_millis(200))
        .call(Hold("mailbox".into()))
        .await;
    assert!(
        matches!(third.as_ref().err().and_then(|e| e.failure()), Some(CallFailure::Unavailable(m)) if m.contains("mailbox")),
        "{third:?}"
    );
    held.notify_one();
    first.await.expect("task").expect("first");
    held.notify_one();
    second.await.expect("task").expect("second");
    Arc::into_inner(n)
        .expect("sole owner")
        .shutdown()
        .await
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_actors_deactivate_and_come_back_without_a_raft_write() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = RuntimeConfig::default().idle_timeout(Duration::from_millis(50));
    let n = node(dir.path(), cfg).await;
    n.actor::<Account>("idle")
        .call(Deposit(3))
        .await
        .expect("deposit");
    n.actor::<Pinger>("idle-p")
        .call(Ping { next: vec![] })
        .await
        .expect("ping");
    wait_until("idle deactivation", || n.activations() == 0).await;
    wait_until("deactivate hook ran", || probe("deactivate:idle-p") == 1).await;
    let before = last_index(&n);
    assert_eq!(
        n.actor::<Account>("idle")
            .call(Balance)
            .await
            .expect("balance"),
        3
    );
    assert_eq!(
        last_index(&n),
        before,
        "reactivation on the same node wrote to Raft"
    );
    assert_eq!(probe("activate:idle-p"), 1);
    n.actor::<Pinger>("idle-p")
        .call(Ping { next: vec![] })
        .await
        .expect("ping again");
    assert_eq!(
        probe("activate:idle-p"),
        2,
        "reactivation runs the activate hook"
    );

    // Tasks spawned by an activation stop with it (Tick deactivates right away).
    n.actor::<Pinger>("ticker")
        .call(Tick("ticks".into()))
        .await
        .expect("tick");
    wait_until("deactivated", || probe("deactivate:ticker") == 1).await;
    let t = probe("ticks");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(probe("ticks") <= t + 1, "task outlived its activation");
    n.shutdown().await.expect("shutdown");
}

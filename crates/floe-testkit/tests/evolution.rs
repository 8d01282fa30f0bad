//! Actor state across versions of the code, on one node with a real sled-backed Raft that is
//! stopped and started again with the changed actor: a renamed type, an added, a removed and a
//! renamed field, and a breaking change with an explicit migration.

use floe::prelude::*;
use floe::{StateError, StoredState};
use floe_testkit::init_tracing;
use serde::{Deserialize, Serialize};

/// Every version of the message that reads a counter; the name is what matters on the wire.
#[derive(Message, Serialize, Deserialize)]
#[message(name = "evo.Read", reply = (u64, String))]
struct Read;

#[derive(Message, Serialize, Deserialize)]
#[message(name = "evo.Add", reply = u64)]
struct Add(u64);

// ---------- version 1, as first deployed ----------

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "evo.Counter", handles(Add, Read))]
struct Counter {
    total: u64,
    owner: String,
    scratch: Vec<u8>,
}

impl Handler<Add> for Counter {
    type Error = Never;
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> Result<u64, Never> {
        self.total += n;
        self.owner = "ada".into();
        self.scratch = vec![1, 2, 3];
        Ok(self.total)
    }
}

impl Handler<Read> for Counter {
    type Error = Never;
    async fn handle(&mut self, _: Read, _: &mut Context<Self>) -> Result<(u64, String), Never> {
        Ok((self.total, self.owner.clone()))
    }
}

// ---------- version 1, compatible edit: the type renamed, `owner` renamed to `holder` with an
// alias, `scratch` removed, `limit` and `note` added ----------

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "evo.Counter", handles(Add, Read))]
struct Tally {
    total: u64,
    #[serde(alias = "owner")]
    holder: String,
    #[serde(default)]
    limit: u64,
    note: Option<String>,
}

impl Handler<Add> for Tally {
    type Error = Never;
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> Result<u64, Never> {
        self.total += n;
        self.limit = 1_000;
        self.note = Some("v1b".into());
        Ok(self.total)
    }
}

impl Handler<Read> for Tally {
    type Error = Never;
    async fn handle(&mut self, _: Read, _: &mut Context<Self>) -> Result<(u64, String), Never> {
        Ok((self.total, format!("{}/{}", self.holder, self.limit)))
    }
}

// ---------- version 2, a breaking change: the total becomes a list of entries ----------

#[derive(Deserialize)]
struct TallyV1 {
    total: u64,
    holder: String,
}

#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "evo.Counter", version = 2, migrate = Ledger::upgrade, handles(Add, Read))]
struct Ledger {
    entries: Vec<u64>,
    holder: String,
}

impl Ledger {
    fn upgrade(old: StoredState<'_>) -> Result<Self, StateError> {
        match old.version() {
            1 => {
                let v1: TallyV1 = old.decode()?;
                Ok(Self {
                    entries: vec![v1.total],
                    holder: v1.holder,
                })
            }
            v => Err(StateError(format!("no migration from version {v}"))),
        }
    }
}

impl Handler<Add> for Ledger {
    type Error = Never;
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> Result<u64, Never> {
        self.entries.push(n);
        Ok(self.entries.iter().sum())
    }
}

impl Handler<Read> for Ledger {
    type Error = Never;
    async fn handle(&mut self, _: Read, _: &mut Context<Self>) -> Result<(u64, String), Never> {
        Ok((
            self.entries.iter().sum(),
            format!("{} in {}", self.holder, self.entries.len()),
        ))
    }
}

/// Version 2 with no migration given, and version 1 code meeting a version 2 state.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "evo.Counter", version = 3, handles(Add, Read))]
struct Unmigrated {
    entries: Vec<u64>,
}

impl Handler<Add> for Unmigrated {
    type Error = Never;
    async fn handle(&mut self, _: Add, _: &mut Context<Self>) -> Result<u64, Never> {
        Ok(0)
    }
}

impl Handler<Read> for Unmigrated {
    type Error = Never;
    async fn handle(&mut self, _: Read, _: &mut Context<Self>) -> Result<(u64, String), Never> {
        Ok((0, String::new()))
    }
}

async fn node_with<A: Actor>(dir: &std::path::Path) -> Node {
    Node::builder()
        .data_dir(dir)
        .register::<A>()
        .build()
        .await
        .expect("node starts")
}

fn activation_failed<T: std::fmt::Debug>(r: Result<T, CallError<Never>>) -> String {
    match r {
        Err(CallError::Failed(CallFailure::ActivationFailed(why))) => why,
        other => panic!("expected the activation to fail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_state_is_read_by_the_next_versions_of_the_actor() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");

    // Version 1 writes.
    let n = node_with::<Counter>(dir.path()).await;
    assert_eq!(n.actor::<Counter>("c").call(Add(5)).await.expect("add"), 5);
    n.shutdown().await.expect("shutdown");

    // The renamed type with compatible field changes reads it, and writes its own shape.
    let n = node_with::<Tally>(dir.path()).await;
    let t = n.actor::<Tally>("c");
    assert_eq!(t.call(Read).await.expect("read"), (5, "ada/0".into()));
    assert_eq!(t.call(Add(2)).await.expect("add"), 7);
    assert_eq!(t.call(Read).await.expect("read"), (7, "ada/1000".into()));
    n.shutdown().await.expect("shutdown");

    // A breaking change at version 2 goes through its migration, once: what it commits is
    // version 2 and is read as such after another restart.
    let n = node_with::<Ledger>(dir.path()).await;
    let l = n.actor::<Ledger>("c");
    assert_eq!(l.call(Read).await.expect("read"), (7, "ada in 1".into()));
    assert_eq!(l.call(Add(3)).await.expect("add"), 10);
    n.shutdown().await.expect("shutdown");
    let n = node_with::<Ledger>(dir.path()).await;
    let l = n.actor::<Ledger>("c");
    assert_eq!(l.call(Read).await.expect("read"), (10, "ada in 2".into()));
    n.shutdown().await.expect("shutdown");

    // A newer version with no migration refuses to guess, and so does older code meeting a
    // newer state; neither changes what is stored.
    let n = node_with::<Unmigrated>(dir.path()).await;
    let why = activation_failed(n.actor::<Unmigrated>("c").call(Read).await);
    assert!(why.contains("no migration"), "{why}");
    n.shutdown().await.expect("shutdown");
    let n = node_with::<Tally>(dir.path()).await;
    let why = activation_failed(n.actor::<Tally>("c").call(Read).await);
    assert!(why.contains("newer than this code"), "{why}");
    n.shutdown().await.expect("shutdown");
    let n = node_with::<Ledger>(dir.path()).await;
    let l = n.actor::<Ledger>("c");
    assert_eq!(l.call(Read).await.expect("read"), (10, "ada in 2".into()));
    n.shutdown().await.expect("shutdown");
}

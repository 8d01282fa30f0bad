//! Values the application shares with its actors through the node builder: read in an
//! activation hook and in handlers, shared (not copied) across activations, and a clear error
//! when the node was not given one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use floe::prelude::*;
use floe_testkit::init_tracing;
use serde::{Deserialize, Serialize};

/// Stands for a connection pool: counts what actors did with it.
#[derive(Default)]
struct Pool {
    queries: AtomicU64,
}

/// Stands for settings the application loaded.
struct Greeting(String);

#[derive(Message, Serialize, Deserialize)]
#[message(name = "appdata.Query", reply = (u64, String))]
struct Query;

/// Takes the pool when activated and keeps it outside its durable state.
#[derive(Actor, Default, Serialize, Deserialize)]
#[actor(name = "appdata.Repo", lifecycle, handles(Query))]
struct Repo {
    asked: u64,
    #[serde(skip)]
    pool: Option<Arc<Pool>>,
}

impl Lifecycle for Repo {
    async fn on_activate(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        self.pool = Some(ctx.app_data::<Pool>()?);
        Ok(())
    }
}

impl Handler<Query> for Repo {
    type Error = String;
    async fn handle(&mut self, _: Query, ctx: &mut Context<Self>) -> Result<(u64, String), String> {
        let pool = self.pool.as_ref().ok_or("activated without a pool")?;
        let n = pool.queries.fetch_add(1, Ordering::SeqCst) + 1;
        self.asked += 1;
        let greeting = ctx.app_data::<Greeting>().map_err(|e| e.to_string())?;
        Ok((n, format!("{} #{}", greeting.0, self.asked)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_share_the_nodes_app_data_and_a_missing_value_is_named() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = Arc::new(Pool::default());
    let node = Node::builder()
        .data_dir(dir.path())
        .app_data_arc(pool.clone())
        .app_data(Greeting("hello".into()))
        .register::<Repo>()
        .build()
        .await
        .expect("node starts");
    let a = node.actor::<Repo>("a");
    let b = node.actor::<Repo>("b");
    assert_eq!(a.call(Query).await.expect("a"), (1, "hello #1".into()));
    assert_eq!(b.call(Query).await.expect("b"), (2, "hello #1".into()));
    assert_eq!(a.call(Query).await.expect("a"), (3, "hello #2".into()));
    // One pool, the application's own: every activation used the same one.
    assert_eq!(pool.queries.load(Ordering::SeqCst), 3);
    node.shutdown().await.expect("shutdown");

    // A node given no pool fails the activation and says which type is missing; the state
    // written before is untouched.
    let node = Node::builder()
        .data_dir(dir.path())
        .app_data(Greeting("hi".into()))
        .register::<Repo>()
        .build()
        .await
        .expect("node starts");
    match node.actor::<Repo>("a").call(Query).await {
        Err(CallError::Failed(CallFailure::ActivationFailed(why))) => {
            assert!(why.contains("Pool") && why.contains("app_data"), "{why}")
        }
        other => panic!("expected a failed activation, got {other:?}"),
    }
    node.shutdown().await.expect("shutdown");
    let node = Node::builder()
        .data_dir(dir.path())
        .app_data(Pool::default())
        .app_data(Greeting("hey".into()))
        .register::<Repo>()
        .build()
        .await
        .expect("node starts");
    assert_eq!(
        node.actor::<Repo>("a").call(Query).await.expect("a"),
        (1, "hey #3".into())
    );
    node.shutdown().await.expect("shutdown");
}

//! Floe: virtual actors with durable, fenced state on a Raft-backed cluster.
//!
//! An actor is addressed by `(type, key)`, activated on demand, processes one message at a time
//! and keeps durable state: when a handler changes the actor's state, the new state is committed
//! through Raft (with the activation's epoch, which fences stale activations) before the reply
//! is sent. A handler that fails or panics leaves the committed state untouched.
//!
//! Calls are exactly-once across retries within an explicit window (see [`session`]): a retry
//! with the same [`RequestId`] gets the original answer, or [`CallFailure::Expired`] (outcome
//! unknown) once the outcome was forgotten, never a fresh answer. States are bounded by
//! [`RuntimeConfig::max_state_bytes`] and messages by [`RuntimeConfig::max_message_bytes`]
//! ([`CallFailure::TooLarge`]). Stateless actors are fenced like stateful ones. A node whose
//! storage fails stops serving at once ([`RuntimeConfig::exit_on_fatal`]).
//!
//! ```
//! use floe::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Actor, Default, Serialize, Deserialize)]
//! #[actor(name = "demo.Counter", handles(Add, Get))]
//! struct Counter { value: u64 }
//!
//! #[derive(Message, Serialize, Deserialize)]
//! #[message(name = "demo.Add", reply = u64)]
//! struct Add(u64);
//!
//! #[derive(Message, Serialize, Deserialize)]
//! #[message(name = "demo.Get", reply = u64)]
//! struct Get;
//!
//! impl Handler<Add> for Counter {
//!     type Error = Never;
//!     async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) -> Result<u64, Never> {
//!         self.value += n;
//!         Ok(self.value)
//!     }
//! }
//!
//! impl Handler<Get> for Counter {
//!     type Error = Never;
//!     async fn handle(&mut self, _: Get, _ctx: &mut Context<Self>) -> Result<u64, Never> {
//!         Ok(self.value)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let node = Node::builder().data_dir(dir.path()).register::<Counter>().build().await?;
//! let counter = node.actor::<Counter>("visits");
//! assert_eq!(counter.call(Add(2)).await?, 2);
//! assert_eq!(counter.call(Get).await?, 2);
//! node.shutdown().await?;
//! # Ok(())
//! # }
//! ```

// Lets the derives (which name `::floe`) work inside this crate too.
#[allow(unused_extern_crates)]
extern crate self as floe;

// The actor API: what actor implementations and callers need. No storage, no Raft.
#[cfg_attr(not(feature = "server"), allow(dead_code, unused_imports))]
mod actor;
mod app_data;
pub mod builtin;
#[cfg_attr(not(feature = "server"), allow(dead_code))]
mod call;
pub mod codec;
mod error;
pub mod retry;
pub mod session;
#[doc(hidden)]
pub mod wire;

// The server: the runtime, the cluster and the node (the `server` feature, on by default).
#[cfg(feature = "server")]
mod cluster;
#[cfg(feature = "server")]
mod config;
#[cfg(feature = "server")]
mod incarnation;
#[cfg(feature = "server")]
mod link;
#[cfg(feature = "server")]
mod membership;
#[cfg(feature = "server")]
mod metrics;
#[cfg(feature = "server")]
mod node;
#[cfg(feature = "server")]
mod placement;
#[cfg(feature = "server")]
mod proposer;
#[cfg(feature = "server")]
mod runtime;
#[cfg(feature = "server")]
mod service;

pub use actor::{
    Actor, ActorError, ActorRef, Context, DispatchError, Handler, Lifecycle, Message, Never,
    StateError,
};
pub use app_data::{AppData, MissingAppData};
pub use codec::StoredState;
pub use error::{CallError, CallFailure};
pub use floe_macros::{Actor, Message};
pub use floe_proto::{ActorId, NodeId, NodeRecord, Outcome, RequestId};

#[cfg(feature = "server")]
pub use cluster::{ClusterConfig, ClusterView, MemberView};
#[cfg(feature = "server")]
pub use config::{ConfigError, RuntimeConfig};
#[cfg(feature = "server")]
pub use floe_net::{TlsMaterial, certs};
#[cfg(feature = "server")]
pub use node::{BuildError, Node, NodeBuilder, ShutdownError};
#[cfg(feature = "server")]
pub use placement::{Placement, PlacementStrategy};
#[cfg(feature = "server")]
pub use proposer::ProposeError;

/// Everything an actor implementation needs.
pub mod prelude {
    #[cfg(feature = "server")]
    pub use crate::Node;
    pub use crate::{
        Actor, ActorError, ActorRef, CallError, CallFailure, Context, Handler, Lifecycle, Message,
        Never,
    };
}

/// Support for the derive macros; not a public API.
#[doc(hidden)]
pub mod __private {
    use crate::{Actor, Context, DispatchError, Handler, Message, StateError, codec};

    pub use futures::future::BoxFuture;

    /// Decode `payload` as `M`, run `A`'s handler, encode its reply or error.
    pub async fn dispatch<A, M>(
        actor: &mut A,
        payload: &[u8],
        ctx: &mut Context<A>,
    ) -> Result<Vec<u8>, DispatchError>
    where
        A: Handler<M>,
        M: Message,
    {
        let msg: M = codec::decode_body(payload)
            .map_err(|e| DispatchError::BadPayload(format!("{}: {e}", M::NAME)))?;
        match actor.handle(msg, ctx).await {
            Ok(reply) => {
                codec::encode_body(&reply).map_err(|e| DispatchError::EncodeReply(e.to_string()))
            }
            Err(e) => Err(DispatchError::Rejected {
                display: e.to_string(),
                error: codec::encode_body(&e)
                    .map_err(|e| DispatchError::EncodeReply(e.to_string()))?,
            }),
        }
    }

    /// Build an actor from its committed state (`None`: never written → `Default`), stored at
    /// `version` or, through `migrate`, an older one.
    pub fn decode_state<A>(
        state: Option<&[u8]>,
        version: u32,
        migrate: Option<codec::Migrate<A>>,
    ) -> Result<A, StateError>
    where
        A: Actor + serde::de::DeserializeOwned + Default,
    {
        match state {
            None => Ok(A::default()),
            Some(b) => codec::decode_state(b, version, migrate),
        }
    }

    /// Encode an actor's state as `version`.
    pub fn encode_state<A: serde::Serialize>(
        version: u32,
        actor: &A,
    ) -> Result<Vec<u8>, StateError> {
        codec::encode_state(version, actor)
    }
}

//! The actor API: the traits a user implements (or derives) — actors, messages, handlers and
//! lifecycle hooks — and the context a handler runs in.

mod context;

use std::fmt;
use std::future::Future;

use serde::{Serialize, de::DeserializeOwned};

pub(crate) use context::Nested;
pub use context::{ActorRef, Context};

/// A message an actor can receive, with the type of its reply. Derive it with
/// `#[derive(Message)]` and `#[message(name = "app.Deposit", reply = T)]`; the name, not the Rust
/// type's, is what the wire carries. Bodies are MessagePack with field names
/// ([`crate::codec`]), so a field added with a default or removed reads across versions.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// What the handler returns on success.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
    /// Stable name of the message type; part of the wire protocol.
    const NAME: &'static str;
}

/// Handles message `M`. One message at a time per actor: `&mut self` is exclusive.
///
/// If `handle` returns an error or panics, the actor's in-memory state is rolled back to its
/// last committed state and the caller receives the error. If it returns `Ok` and the actor's
/// state changed, the new state is committed through Raft before the reply is sent.
pub trait Handler<M: Message>: Actor {
    /// The error the caller receives in [`crate::CallError::Rejected`].
    type Error: Serialize + DeserializeOwned + fmt::Debug + fmt::Display + Send + 'static;

    /// Handle one message.
    fn handle(
        &mut self,
        msg: M,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<M::Reply, Self::Error>> + Send;
}

/// An error an activation hook returns; the call that triggered the activation fails with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ActorError(pub String);

impl ActorError {
    /// An error with `msg`.
    pub fn new(msg: impl fmt::Display) -> Self {
        Self(msg.to_string())
    }
}

impl From<crate::app_data::MissingAppData> for ActorError {
    fn from(e: crate::app_data::MissingAppData) -> Self {
        Self(e.to_string())
    }
}

/// Lifecycle hooks. `#[derive(Actor)]` implements this with no-op hooks unless you write
/// `#[actor(lifecycle)]` and implement it yourself.
pub trait Lifecycle: Sized + Send + 'static {
    /// Runs after the state is loaded and before the first message. An error fails the call that
    /// triggered the activation, and the activation is discarded.
    fn on_activate(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), ActorError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs when the activation is discarded (idle, `ctx.deactivate()`, node shutdown).
    /// Its state was committed already; changes made here are not saved.
    fn on_deactivate(&mut self, ctx: &mut Context<Self>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }
}

pub use crate::error::StateError;

/// Why a message could not be handled by the generated dispatcher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// The actor does not handle this message type.
    #[error("unknown message {0}")]
    UnknownMessage(String),
    /// The payload does not decode as the message.
    #[error("bad payload: {0}")]
    BadPayload(String),
    /// The reply could not be encoded.
    #[error("cannot encode reply: {0}")]
    EncodeReply(String),
    /// The handler returned an error.
    #[error("rejected: {display}")]
    Rejected {
        /// The serialized error.
        error: Vec<u8>,
        /// Its display text.
        display: String,
    },
}

/// An actor type. Derive it with `#[derive(Actor)]`: the derive generates the name, the state
/// codec (versioned: `#[actor(version = N, migrate = f)]`, see [`crate::codec`]) and the
/// dispatcher from `#[actor(name = "...", handles(...))]`.
pub trait Actor: Lifecycle {
    /// Stable type name; part of every actor id and of the wire protocol.
    const NAME: &'static str;
    /// Names of the messages this actor handles.
    const MESSAGES: &'static [&'static str];

    /// Build an activation from its committed state (`None`: never written).
    fn create(key: &str, state: Option<&[u8]>) -> Result<Self, StateError>;

    /// The durable state to commit; `None` for stateless actors.
    fn save(&self) -> Result<Option<Vec<u8>>, StateError>;

    /// Decode `payload` as the message named `message` and run its handler.
    fn dispatch<'a>(
        &'a mut self,
        message: &'a str,
        payload: &'a [u8],
        ctx: &'a mut Context<Self>,
    ) -> futures::future::BoxFuture<'a, Result<Vec<u8>, DispatchError>>;
}

/// An uninhabited error type for handlers that cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Never {}

impl fmt::Display for Never {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

//! Floe's wire protocol: the frame codec, the shared identities and commands, and the requests
//! nodes and clients exchange, each with the type of its answer.
//!
//! No IO happens here; `floe-net` moves these frames over QUIC. The `raft` feature adds the
//! openraft type configuration and Raft's own messages; clients build without it.
//!
//! ```
//! use floe_proto::{Open, Request, Status, codec};
//! let frame = codec::encode_frame(&Open::Request(Status.into()), codec::DEFAULT_MAX_FRAME)?;
//! let back: Open = codec::decode_frame(&frame, codec::DEFAULT_MAX_FRAME)?;
//! assert!(matches!(back, Open::Request(Request::Admin(_))));
//! # Ok::<(), floe_proto::codec::FrameError>(())
//! ```

pub mod codec;
pub mod command;
mod config;
mod error;
#[cfg(feature = "raft")]
pub mod raft;
mod rpc;
pub mod setters;

pub use codec::FrameError;
pub use command::*;
pub use config::ConfigError;
pub use error::*;
pub use rpc::*;

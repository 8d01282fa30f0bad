//! Floe's wire protocol: the frame codec and the envelopes nodes and clients exchange.
//!
//! No IO happens here; `floe-net` moves these frames over QUIC.
//!
//! ```
//! use floe_proto::{Open, Request, codec};
//! let frame = codec::encode_frame(&Open::Request(Request::Ping), codec::DEFAULT_MAX_FRAME)?;
//! let back: Open = codec::decode_frame(&frame, codec::DEFAULT_MAX_FRAME)?;
//! assert!(matches!(back, Open::Request(Request::Ping)));
//! # Ok::<(), floe_proto::codec::FrameError>(())
//! ```

pub mod codec;
mod message;

pub use codec::FrameError;
pub use message::*;

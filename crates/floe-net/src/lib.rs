//! Floe's QUIC transport: endpoints with mutual TLS (rustls, ring), a connection pool with
//! reconnect and backoff, request/response over one bidirectional stream per request with a
//! deadline on each, long-lived streams for pipelined Raft appends and snapshots, and openraft's
//! network over it (the `raft` feature; clients build without it).

pub mod certs;
mod config;
mod error;
mod frame;
#[cfg(feature = "raft")]
pub mod raft;
mod server;
pub mod tls;
mod transport;

pub use config::{ConfigError, TransportConfig};
pub use error::{BindError, RpcError};
pub use frame::{FrameReceiver, FrameSender, FrameStream, write_frame};
#[cfg(feature = "raft")]
pub use raft::{APPEND_CHUNK_BYTES, MAX_ENTRY_BYTES};
pub use server::{Service, SnapshotBody, SnapshotTooLarge, check_snapshot_size};
pub use tls::{Role, TlsMaterial};
pub use transport::{Peer, Target, Transport, codes};

//! Why a request or an endpoint failed.

use std::net::SocketAddr;
use std::time::Duration;

use floe_proto::{FrameError, WireError};

use crate::config::ConfigError;
use crate::tls::TlsError;

/// Why a request did not produce an answer from the peer's service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No connection could be made (or we are backing off after failures). The request was not
    /// sent: try another peer or later.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer refused the TLS handshake or our certificate, or we refused its certificate.
    /// Retrying will not help until the certificates are fixed.
    #[error("refused: {0}")]
    Refused(String),
    /// The deadline passed. The request may or may not have been executed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke during the request. The request may or may not have been executed.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The peer sent something that is not a valid frame. Outcome unknown.
    #[error("protocol error: {0}")]
    Protocol(#[from] FrameError),
    /// The peer's service answered with an error.
    #[error("remote error: {0}")]
    Remote(WireError),
    /// This transport is shut down.
    #[error("transport is shut down")]
    Shutdown,
}

/// Why a transport could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound (address in use, permission).
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A connection broke during a request: the outcome is unknown.
pub(crate) fn lost(e: impl std::fmt::Display) -> RpcError {
    RpcError::ConnectionLost(e.to_string())
}

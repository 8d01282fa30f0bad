//! Transport settings.

use std::net::SocketAddr;
use std::time::Duration;

use floe_proto::codec::DEFAULT_MAX_FRAME;

/// Default [`TransportConfig::max_snapshot_bytes`]: 4 GiB, far above the state of the actors a
/// node holds in memory, far below what fills a disk by surprise.
pub const DEFAULT_MAX_SNAPSHOT: u64 = 4 << 30;

/// Settings of a [`crate::Transport`]. `Default` is what a node uses on loopback.
///
/// Build it from `Default` and the setters of the same names as the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Address to bind. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Deadline of a request when the caller gives none, and of reading a request's first frame
    /// and running its handler on the server.
    pub request_timeout: Duration,
    /// Deadline of a QUIC handshake.
    pub connect_timeout: Duration,
    /// A connection with no traffic for this long is closed (keep-alives prevent it while the
    /// peer is alive). Not a request deadline.
    pub idle_timeout: Duration,
    /// Interval of QUIC keep-alive packets.
    pub keep_alive: Duration,
    /// Deadline of a whole snapshot transfer.
    pub snapshot_timeout: Duration,
    /// Largest snapshot accepted from a peer, in bytes. A larger announced size is refused
    /// before any of the body is received, so a peer cannot fill the disk through `incoming/`.
    pub max_snapshot_bytes: u64,
    /// Largest frame body accepted or sent.
    pub max_frame: usize,
    /// Concurrent bidirectional streams a peer may open.
    pub max_streams: u32,
    /// Bytes of frame bodies one connection may have being received and decoded at once. A frame
    /// reserves its announced length before its body is read; frames that find the budget spent
    /// wait (within their deadline), so a peer announcing many large frames holds at most this
    /// much. At least `max_frame`, or a maximal frame could never be read.
    pub conn_buffer_bytes: usize,
    /// The same budget over all connections of this endpoint together; at least
    /// `conn_buffer_bytes`.
    pub node_buffer_bytes: usize,
    /// QUIC flow control: bytes a peer may send on one stream beyond what was read.
    pub stream_receive_window: u32,
    /// QUIC flow control: bytes a peer may send on a connection beyond what was read, all streams
    /// together. With the budgets above, it bounds what one connection can make this endpoint
    /// hold: `conn_buffer_bytes + conn_receive_window`.
    pub conn_receive_window: u32,
    /// First wait after a failed connection attempt; doubles per failure.
    pub backoff_min: Duration,
    /// Longest wait between connection attempts.
    pub backoff_max: Duration,
    /// Malformed streams tolerated on one connection before it is closed.
    pub max_protocol_errors: u32,
}

floe_proto::setters!(TransportConfig {
    listen: SocketAddr,
    request_timeout: Duration,
    connect_timeout: Duration,
    idle_timeout: Duration,
    keep_alive: Duration,
    snapshot_timeout: Duration,
    max_snapshot_bytes: u64,
    max_frame: usize,
    max_streams: u32,
    conn_buffer_bytes: usize,
    node_buffer_bytes: usize,
    stream_receive_window: u32,
    conn_receive_window: u32,
    backoff_min: Duration,
    backoff_max: Duration,
    max_protocol_errors: u32,
});

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(500),
            // A peer that sends nothing for this long is gone (killed processes leave silent
            // connections behind); keep-alives keep live connections well inside it.
            idle_timeout: Duration::from_secs(2),
            keep_alive: Duration::from_millis(500),
            snapshot_timeout: Duration::from_secs(120),
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT,
            max_frame: DEFAULT_MAX_FRAME,
            max_streams: 1024,
            conn_buffer_bytes: 4 * DEFAULT_MAX_FRAME,
            node_buffer_bytes: 32 * DEFAULT_MAX_FRAME,
            // 1 MiB per stream keeps a snapshot stream at 100 MB/s over a 10 ms path; the
            // connection window lets a dozen streams run at that pace.
            stream_receive_window: 1 << 20,
            conn_receive_window: 16 << 20,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            max_protocol_errors: 8,
        }
    }
}

pub use floe_proto::ConfigError;

impl TransportConfig {
    /// Check the settings and hand them back.
    ///
    /// # Errors
    /// [`ConfigError`] names the first setting that is wrong.
    pub fn validate(self) -> Result<Self, ConfigError> {
        let check = ConfigError::check;
        check(
            !self.request_timeout.is_zero(),
            "request_timeout",
            "must be positive",
        )?;
        check(
            !self.connect_timeout.is_zero(),
            "connect_timeout",
            "must be positive",
        )?;
        check(
            self.keep_alive < self.idle_timeout,
            "keep_alive",
            "must be shorter than idle_timeout",
        )?;
        check(
            (1024..=DEFAULT_MAX_FRAME).contains(&self.max_frame),
            "max_frame",
            "must be between 1 KiB and 16 MiB (the codec's limit)",
        )?;
        check(
            self.max_snapshot_bytes >= 1024,
            "max_snapshot_bytes",
            "must be at least 1 KiB",
        )?;
        check(self.max_streams > 0, "max_streams", "must be at least 1")?;
        check(
            self.conn_buffer_bytes >= self.max_frame,
            "conn_buffer_bytes",
            "must be at least max_frame",
        )?;
        check(
            self.node_buffer_bytes >= self.conn_buffer_bytes,
            "node_buffer_bytes",
            "must be at least conn_buffer_bytes",
        )?;
        check(
            self.stream_receive_window >= 1024,
            "stream_receive_window",
            "must be at least 1 KiB",
        )?;
        check(
            self.conn_receive_window >= self.stream_receive_window,
            "conn_receive_window",
            "must be at least stream_receive_window",
        )?;
        check(
            !self.backoff_min.is_zero(),
            "backoff_min",
            "must be positive",
        )?;
        check(
            self.backoff_min <= self.backoff_max,
            "backoff_max",
            "must be at least backoff_min",
        )?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrong(c: TransportConfig) -> &'static str {
        c.validate()
            .expect_err("the setting is out of range")
            .setting
    }

    #[test]
    fn buffer_budgets_must_fit_a_maximal_frame() {
        let ok = TransportConfig::default();
        assert_eq!(ok.clone().validate(), Ok(ok.clone()));
        let small_conn = TransportConfig {
            conn_buffer_bytes: ok.max_frame - 1,
            ..ok.clone()
        };
        assert_eq!(wrong(small_conn), "conn_buffer_bytes");
        let small_node = TransportConfig {
            node_buffer_bytes: ok.conn_buffer_bytes - 1,
            ..ok.clone()
        };
        assert_eq!(wrong(small_node), "node_buffer_bytes");
        let windows = TransportConfig {
            conn_receive_window: ok.stream_receive_window - 1,
            ..ok.clone()
        };
        assert_eq!(wrong(windows), "conn_receive_window");
        let frame = TransportConfig {
            max_frame: DEFAULT_MAX_FRAME + 1,
            ..ok
        };
        assert_eq!(wrong(frame), "max_frame");
    }
}

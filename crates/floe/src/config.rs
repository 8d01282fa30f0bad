//! Settings of a node's actor runtime.

use std::time::Duration;

pub use floe_proto::ConfigError;

/// Settings of the actor runtime. Build it from `Default` and the setters of the same names as
/// the fields: `RuntimeConfig::default().call_timeout(Duration::from_secs(5))`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Calls that may wait for one activation; further callers wait for a slot until their
    /// deadline (backpressure).
    pub mailbox_capacity: usize,
    /// An activation with no call for this long is deactivated (its placement stays).
    pub idle_timeout: Duration,
    /// Deadline of a call when the caller sets none.
    pub call_timeout: Duration,
    /// Most commands proposed in one Raft entry (group commit).
    pub max_batch: usize,
    /// Most payload bytes (states and replies) proposed in one Raft entry; a larger single
    /// command goes alone.
    pub max_batch_bytes: usize,
    /// Raft entries of commands in flight at once.
    pub max_inflight_batches: usize,
    /// Largest serialized actor state; a handler that leaves a larger one fails with
    /// [`crate::CallFailure::TooLarge`] and its state is rolled back.
    pub max_state_bytes: usize,
    /// Largest serialized message or reply; larger ones fail with
    /// [`crate::CallFailure::TooLarge`].
    pub max_message_bytes: usize,
    /// What to do when the node's Raft core stops on a fatal error (a storage fault such as an
    /// `fdatasync` failing with EIO, a Raft core panic): the node stops serving at once either
    /// way, since nothing it holds can be trusted any more; with `true` (the default) the
    /// process also exits with status 70 after logging why, so that its supervisor restarts
    /// it on a fresh start. Embedders that run several nodes in one process (tests) set `false`
    /// and watch [`Node::failed`].
    pub exit_on_fatal: bool,
    /// A client session without a commit for this long expires, and the outcomes it still
    /// holds are forgotten: a retry after that gets [`crate::CallFailure::Expired`]. Measured
    /// on the Raft leader's clock, carried in the log. Must exceed the longest call deadline.
    pub session_idle_timeout: Duration,
    /// How long this node keeps the outcome of one of its own calls that ended unknown
    /// retrievable by a retry with the same request id.
    pub retry_window: Duration,
    /// **Breaks linearizability; for the consistency harness's self-test only.** Answer a call
    /// that left the state unchanged from the activation's memory, without confirming through
    /// a read index that this node still owns the actor, reactivate from the local directory
    /// without one, and take over actors placed elsewhere (last-writer-wins placement, as in
    /// systems without fencing). Old owners then serve stale reads. It takes effect only in a
    /// build with the `unsafe-self-test-reads` feature; never set this in production.
    #[doc(hidden)]
    pub unsafe_unconfirmed_reads: bool,
}

floe_proto::setters!(RuntimeConfig {
    mailbox_capacity: usize,
    idle_timeout: Duration,
    call_timeout: Duration,
    max_batch: usize,
    max_batch_bytes: usize,
    max_inflight_batches: usize,
    max_state_bytes: usize,
    max_message_bytes: usize,
    exit_on_fatal: bool,
    session_idle_timeout: Duration,
    retry_window: Duration,
});

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            mailbox_capacity: 256,
            idle_timeout: Duration::from_secs(600),
            call_timeout: Duration::from_secs(10),
            max_batch: 512,
            max_batch_bytes: 4 << 20,
            max_inflight_batches: 4,
            max_state_bytes: 4 << 20,
            max_message_bytes: 1 << 20,
            exit_on_fatal: true,
            session_idle_timeout: Duration::from_secs(3600),
            retry_window: crate::session::DEFAULT_RETRY_WINDOW,
            unsafe_unconfirmed_reads: false,
        }
    }
}

impl RuntimeConfig {
    /// Check the settings and hand them back.
    ///
    /// # Errors
    /// [`ConfigError`] names the first setting that is wrong.
    pub fn validate(self) -> Result<Self, ConfigError> {
        let check = ConfigError::check;
        check(
            self.mailbox_capacity > 0,
            "mailbox_capacity",
            "must be at least 1",
        )?;
        check(
            self.idle_timeout >= Duration::from_millis(10),
            "idle_timeout",
            "must be at least 10 ms",
        )?;
        check(
            !self.call_timeout.is_zero(),
            "call_timeout",
            "must be positive",
        )?;
        check(self.max_batch > 0, "max_batch", "must be at least 1")?;
        check(
            self.max_inflight_batches > 0,
            "max_inflight_batches",
            "must be at least 1",
        )?;
        check(
            self.max_state_bytes > 0,
            "max_state_bytes",
            "must be positive",
        )?;
        check(
            self.max_message_bytes > 0,
            "max_message_bytes",
            "must be positive",
        )?;
        // Every Raft entry must fit in one replication frame: one commit carries a state and a
        // reply, one batch carries at most max_batch_bytes.
        let entry = floe_net::MAX_ENTRY_BYTES;
        if self.max_state_bytes.saturating_add(self.max_message_bytes) > entry {
            return Err(ConfigError::new(
                "max_state_bytes",
                format!("max_state_bytes + max_message_bytes must be at most {entry}"),
            ));
        }
        if self.max_batch_bytes == 0 || self.max_batch_bytes > entry {
            return Err(ConfigError::new(
                "max_batch_bytes",
                format!("must be between 1 and {entry}"),
            ));
        }
        // A remote call may wait up to six call timeouts; a session must outlive it.
        check(
            self.session_idle_timeout > self.call_timeout * 6,
            "session_idle_timeout",
            "must exceed six call timeouts",
        )?;
        check(
            self.retry_window < self.session_idle_timeout,
            "retry_window",
            "must be shorter than session_idle_timeout",
        )?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_a_wrong_setting_is_named() {
        assert_eq!(
            RuntimeConfig::default().validate(),
            Ok(RuntimeConfig::default())
        );
        let zero = RuntimeConfig {
            mailbox_capacity: 0,
            ..RuntimeConfig::default()
        };
        assert_eq!(
            zero.validate().map_err(|e| e.setting),
            Err("mailbox_capacity")
        );
        let too_big = RuntimeConfig {
            max_state_bytes: floe_net::MAX_ENTRY_BYTES,
            ..RuntimeConfig::default()
        };
        assert_eq!(
            too_big.validate().map_err(|e| e.setting),
            Err("max_state_bytes")
        );
        let short = RuntimeConfig {
            session_idle_timeout: Duration::from_secs(60),
            ..RuntimeConfig::default()
        };
        let e = short
            .validate()
            .expect_err("an hour of calls outlives a minute of session");
        assert_eq!(e.setting, "session_idle_timeout");
        assert!(e.to_string().contains("six call timeouts"), "{e}");
    }
}

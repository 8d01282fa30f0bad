//! Logging for tests.

/// Log to the test's output, filtered by `FLOE_LOG` (default: warnings, and openraft's errors
/// only). Calling it again does nothing.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG")
                .unwrap_or_else(|_| "warn,openraft=error".into()),
        )
        .with_test_writer()
        .try_init();
}

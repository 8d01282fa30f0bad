//! Floe's test kit, for Floe's own tests and for applications built on it: certificates made
//! on the fly ([`Pki`]), an in-process cluster of real nodes over real QUIC and sled
//! ([`cluster`]), `floe node` processes ([`process`]), waiting on a condition ([`wait_until`]),
//! test logging ([`init_tracing`]), percentiles ([`percentile`]) and load for benchmarks
//! ([`load`]).
//!
//! Everything here panics on setup failures with a message that says what failed: it is meant
//! for tests, where a failed setup is a failed test.
//!
//! ```no_run
//! # async fn demo() {
//! use floe_testkit::{Pki, cluster};
//! let pki = Pki::new();
//! let dir = std::env::temp_dir().join("floe-demo");
//! let nodes = cluster::start_cluster(&pki, &dir, 3, |b| b.register_builtins()).await;
//! let client = cluster::client(&pki, vec![cluster::addr(&nodes[0])]).await;
//! # drop(client);
//! # }
//! ```

pub mod cluster;
pub mod load;
mod pki;
pub mod process;
mod stats;
mod trace;
mod wait;

pub use pki::Pki;
pub use stats::percentile;
pub use trace::init_tracing;
pub use wait::wait_until;

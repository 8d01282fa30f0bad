//! Floe's consistency harness: cluster control, nemeses, workloads, history, checker, report.
//!
//! See `jepsen/README.md` for what is covered and how to run it.

pub mod checker;
pub mod cluster;
pub mod delayer;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod run;
pub mod workload;

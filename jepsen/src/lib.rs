//! Floe's consistency harness: cluster control, nemeses, workloads, history, checker, report.

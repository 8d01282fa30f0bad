//! The `floe-bench` binary.
fn main() {}

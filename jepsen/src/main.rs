//! The `floe-jepsen` binary.
fn main() {}

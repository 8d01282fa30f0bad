//! The harness must catch a broken system: nodes in the deliberately unsafe mode (reads without
//! a read index, last-writer-wins placement) under partitions must be reported invalid, through
//! the same binary, processes, namespaces and checker as a real run.
//!
//! Needs root (network namespaces, nftables), as CI has; it fails with a clear message otherwise.
//! Ignored by default: it builds a second `floe` (the self-test build, into its own target
//! directory), which CI's harness step does anyway with `--self-test reads` and
//! `--self-test duplicates`. Run it with `cargo test -p floe-jepsen --test selftest -- --ignored`.

use std::process::Command;

/// The harness needs nftables and iptables; a fresh Debian machine has neither. Install them
/// (root and Debian's registry are available where this test runs) so that the README's test
/// command works as written.
fn ensure_tools() {
    let have = |p: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if have("nft") && have("iptables") {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "nftables", "iptables"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        assert!(
            install(),
            "could not install nftables and iptables with apt-get"
        );
    }
}

#[test]
#[ignore = "builds the self-test floe; CI runs the self-tests in its harness step"]
fn unsafe_mode_is_reported_invalid_under_partitions() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it builds network namespaces and nftables rules"
    );
    ensure_tools();
    let out = tempfile::tempdir().expect("tempdir");
    let run = Command::new(env!("CARGO_BIN_EXE_floe-jepsen"))
        .args([
            "--nodes",
            "3",
            "--nemesis",
            "partition",
            "--time-limit",
            "20",
            "--no-progress",
            "--self-test",
            "reads",
            "--out",
        ])
        .arg(out.path())
        .output()
        .expect("run floe-jepsen");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(1),
        "expected exit code 1 (invalid); stderr:\n{stderr}"
    );
    let text =
        std::fs::read_to_string(out.path().join("partition/results.json")).expect("results.json");
    let r: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(r["valid"], false);
    let invalid = r["linearizability"]["invalid_keys"]
        .as_object()
        .map_or(0, |m| m.len());
    let lost = r["lost_writes"].as_array().map_or(0, |a| a.len());
    assert!(
        invalid + lost > 0,
        "the run must be invalid because of the history, not something else: {text}"
    );
    // The counter-example is in the report.
    let html = std::fs::read_to_string(out.path().join("partition/index.html")).expect("html");
    assert!(html.contains("INVALID"));
    // Everything the harness created is gone.
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("fj-"),
        "namespaces left behind"
    );
}

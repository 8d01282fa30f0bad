//! The lab network: a switch namespace with a bridge, one namespace per node slot and one for the
//! clients, joined by veth pairs. Faults are installed inside the node namespaces (nftables on
//! the input hook, iptables NFQUEUE for delays), never in the root namespace.

use std::net::Ipv4Addr;
use std::process::Command;

/// Name prefix of everything this harness creates.
pub const PREFIX: &str = "fj";

/// A command failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The program could not be started (not installed?).
    #[error(
        "running {cmd}: {source} (is it installed? the harness needs iproute2, nftables, iptables)"
    )]
    Spawn {
        /// The command line.
        cmd: String,
        /// The cause.
        source: std::io::Error,
    },
    /// It exited with an error.
    #[error("{cmd} failed: {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// What it printed.
        stderr: String,
    },
    /// The harness is not root.
    #[error("the harness needs root (network namespaces, nftables); run it as root")]
    NotRoot,
}

/// Run a program to completion; its stdout on success.
pub fn run(program: &str, args: &[&str]) -> Result<String, NetError> {
    run_input(program, args, None)
}

/// Run a program with `input` on stdin.
pub fn run_input(program: &str, args: &[&str], input: Option<&str>) -> Result<String, NetError> {
    use std::io::Write;
    let cmd = format!("{program} {}", args.join(" "));
    let mut c = Command::new(program);
    c.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(if input.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        });
    let mut child = c.spawn().map_err(|source| NetError::Spawn {
        cmd: cmd.clone(),
        source,
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|source| NetError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| NetError::Spawn {
        cmd: cmd.clone(),
        source,
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Failed {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Run a program inside namespace `ns`.
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> Result<String, NetError> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// The lab: namespaces and addresses.
#[derive(Debug, Clone)]
pub struct Lab {
    /// Number of node slots.
    pub slots: u8,
}

impl Lab {
    /// The switch namespace.
    pub fn switch_ns() -> String {
        format!("{PREFIX}-sw")
    }

    /// The clients' namespace (the harness runs in it).
    pub fn client_ns() -> String {
        format!("{PREFIX}-ctl")
    }

    /// Namespace of node slot `slot` (1-based).
    pub fn node_ns(slot: u8) -> String {
        format!("{PREFIX}-n{slot}")
    }

    /// Address of node slot `slot`.
    pub fn node_ip(slot: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, slot)
    }

    /// Address of the clients' namespace.
    pub fn client_ip() -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 200)
    }

    /// Remove whatever a previous run left behind (processes in our namespaces, then the
    /// namespaces themselves).
    pub fn remove_leftovers() -> Result<(), NetError> {
        let list = run("ip", &["netns", "list"])?;
        let ours: Vec<String> = list
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{PREFIX}-")))
            .map(str::to_string)
            .collect();
        for ns in &ours {
            kill_ns_processes(ns);
        }
        for ns in &ours {
            let _ = run("ip", &["netns", "del", ns]);
        }
        Ok(())
    }

    /// Create the switch, the client namespace and `slots` node namespaces.
    pub fn create(slots: u8) -> Result<Self, NetError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(NetError::NotRoot);
        }
        Self::remove_leftovers()?;
        let sw = Self::switch_ns();
        run("ip", &["netns", "add", &sw])?;
        run("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &sw, "link", "set", "br0", "up"])?;
        run("ip", &["-n", &sw, "link", "set", "lo", "up"])?;
        let lab = Self { slots };
        let mut members: Vec<(String, Ipv4Addr)> = (1..=slots)
            .map(|s| (Self::node_ns(s), Self::node_ip(s)))
            .collect();
        members.push((Self::client_ns(), Self::client_ip()));
        for (i, (ns, ip)) in members.iter().enumerate() {
            let peer = format!("v{i}");
            run("ip", &["netns", "add", ns])?;
            run(
                "ip",
                &[
                    "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", &peer,
                    "netns", &sw,
                ],
            )?;
            run("ip", &["-n", &sw, "link", "set", &peer, "master", "br0"])?;
            run("ip", &["-n", &sw, "link", "set", &peer, "up"])?;
            let cidr = format!("{ip}/24");
            run("ip", &["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
            run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// Kill every process in our namespaces and delete them.
    pub fn destroy(&self) {
        let _ = Self::remove_leftovers();
    }
}

/// SIGCONT then SIGKILL every process in `ns`.
fn kill_ns_processes(ns: &str) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let Ok(pids) = run("ip", &["netns", "pids", ns]) else {
        return;
    };
    let me = std::process::id() as i32;
    for pid in pids
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|p| *p != me)
    {
        let p = Pid::from_raw(pid);
        let _ = kill(p, Signal::SIGCONT);
        let _ = kill(p, Signal::SIGKILL);
    }
}

/// Enter the clients' namespace for this thread and every thread it starts later. Call it
/// before the async runtime starts its workers.
pub fn enter_client_ns() -> Result<(), NetError> {
    let path = format!("/var/run/netns/{}", Lab::client_ns());
    let f = std::fs::File::open(&path).map_err(|source| NetError::Spawn {
        cmd: format!("open {path}"),
        source,
    })?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Failed {
        cmd: format!("setns {path}"),
        stderr: e.to_string(),
    })
}

/// The nftables table used for partitions.
const PART_TABLE: &str = "floej_part";
/// The nftables table used for packet loss.
const LOSS_TABLE: &str = "floej_loss";

/// Drop everything node `slot` receives from `from` (on its input hook).
pub fn drop_from(slot: u8, from: &[u8]) -> Result<(), NetError> {
    if from.is_empty() {
        return Ok(());
    }
    let ips: Vec<String> = from.iter().map(|s| Lab::node_ip(*s).to_string()).collect();
    let rules = format!(
        "table inet {PART_TABLE} {{\n chain input {{ type filter hook input priority 0; policy accept;\n  ip saddr {{ {} }} drop\n }}\n}}\n",
        ips.join(", ")
    );
    run_input(
        "ip",
        &["netns", "exec", &Lab::node_ns(slot), "nft", "-f", "-"],
        Some(&rules),
    )?;
    Ok(())
}

/// Randomly drop `percent`% of what node `slot` receives from anyone.
pub fn lossy(slot: u8, percent: u8) -> Result<(), NetError> {
    let rules = format!(
        "table inet {LOSS_TABLE} {{\n chain input {{ type filter hook input priority 0; policy accept;\n  ip saddr 10.77.0.0/24 numgen random mod 100 < {percent} drop\n }}\n}}\n"
    );
    run_input(
        "ip",
        &["netns", "exec", &Lab::node_ns(slot), "nft", "-f", "-"],
        Some(&rules),
    )?;
    Ok(())
}

/// Whether node `slot` has the partition rules installed, and from which addresses it drops.
pub fn partition_rules(slot: u8) -> Option<String> {
    in_ns(
        &Lab::node_ns(slot),
        "nft",
        &["list", "table", "inet", PART_TABLE],
    )
    .ok()
}

/// Whether node `slot` has the loss rule installed.
pub fn loss_rules(slot: u8) -> Option<String> {
    in_ns(
        &Lab::node_ns(slot),
        "nft",
        &["list", "table", "inet", LOSS_TABLE],
    )
    .ok()
}

/// Remove partition and loss rules of node `slot` (absent tables are fine).
pub fn heal_rules(slot: u8) {
    let ns = Lab::node_ns(slot);
    for t in [PART_TABLE, LOSS_TABLE] {
        let _ = in_ns(&ns, "nft", &["delete", "table", "inet", t]);
    }
}

/// Send what node `slot` receives from the other nodes through NFQUEUE `queue`.
pub fn queue_input(slot: u8, queue: u16) -> Result<(), NetError> {
    let q = queue.to_string();
    in_ns(
        &Lab::node_ns(slot),
        "iptables",
        &[
            "-w",
            "-A",
            "INPUT",
            "-s",
            "10.77.0.0/24",
            "-j",
            "NFQUEUE",
            "--queue-num",
            &q,
            "--queue-bypass",
        ],
    )?;
    Ok(())
}

/// Whether node `slot` has an NFQUEUE rule.
pub fn has_queue_rule(slot: u8) -> bool {
    in_ns(&Lab::node_ns(slot), "iptables", &["-w", "-S", "INPUT"])
        .map(|s| s.contains("NFQUEUE"))
        .unwrap_or(false)
}

/// Remove node `slot`'s iptables rules.
pub fn unqueue_input(slot: u8) {
    let _ = in_ns(&Lab::node_ns(slot), "iptables", &["-w", "-F", "INPUT"]);
}

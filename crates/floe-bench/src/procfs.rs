//! CPU time and memory of processes, from `/proc`.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn ticks_per_sec() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field (`VmHWM`, `VmRSS`) of `/proc/<pid>/status` text, in bytes.
pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// CPU time (user + system, all threads, exited ones included) of process `pid`
/// (`"self"` for this one).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_ticks(&stat)?;
    Some(Duration::from_secs_f64(
        ticks as f64 / ticks_per_sec() as f64,
    ))
}

/// Peak resident set (`VmHWM`) of `pid`, bytes.
pub fn peak_rss(pid: &str) -> Option<u64> {
    parse_status_kib(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmHWM",
    )
}

/// Current resident set (`VmRSS`) of `pid`, bytes.
pub fn rss(pid: &str) -> Option<u64> {
    parse_status_kib(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmRSS",
    )
}

/// CPU time of several processes, to take a difference around a measurement.
#[derive(Debug, Clone)]
pub struct CpuSample {
    servers: Duration,
    client: Duration,
}

impl CpuSample {
    /// Sum over `pids` (the servers) and this process (the client).
    pub fn take(pids: &[u32]) -> Self {
        Self {
            servers: pids.iter().filter_map(|p| cpu_time(&p.to_string())).sum(),
            client: cpu_time("self").unwrap_or_default(),
        }
    }

    /// Microseconds of server and client CPU per operation since `self`.
    pub fn per_op_since(&self, later: &CpuSample, ops: u64) -> (Option<f64>, Option<f64>) {
        if ops == 0 {
            return (None, None);
        }
        let per =
            |a: Duration, b: Duration| Some(b.saturating_sub(a).as_secs_f64() * 1e6 / ops as f64);
        (
            per(self.servers, later.servers),
            per(self.client, later.client),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "1234 (floe node (x)) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        let status = "Name:\tfloe\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20 << 20));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10 << 20));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert!(cpu_time("self").is_some());
        assert!(peak_rss("self").is_some_and(|b| b > 0));
    }
}

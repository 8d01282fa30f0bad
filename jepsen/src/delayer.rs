//! The slow-network fault: this kernel has no `tc netem`, so packets sent to an NFQUEUE are held
//! in user space for a delay (with jitter, which also reorders them) and then accepted. It runs as
//! a separate process (`floe-jepsen delayer`) inside the node's namespace; the iptables rule
//! uses `--queue-bypass`, so traffic flows normally if it dies.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::RngExt;

/// Hold each packet of `queue` for `delay` ± `jitter`, until `stop` is set or forever.
pub fn run(
    queue: u16,
    delay: Duration,
    jitter: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    let mut q = nfq::Queue::open()?;
    q.bind(queue)?;
    q.set_nonblocking(true);
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        writeln!(out, "ready")?;
        out.flush()?;
    }
    let mut held: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut packets: std::collections::HashMap<u64, nfq::Message> = Default::default();
    let mut seq = 0u64;
    let mut rng = rand::rng();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut got = false;
        loop {
            match q.recv() {
                Ok(mut msg) => {
                    got = true;
                    msg.set_verdict(nfq::Verdict::Accept);
                    let j = jitter.as_micros() as i64;
                    let off = if j > 0 { rng.random_range(-j..=j) } else { 0 };
                    let d = (delay.as_micros() as i64 + off).max(0) as u64;
                    held.push(Reverse((Instant::now() + Duration::from_micros(d), seq)));
                    packets.insert(seq, msg);
                    seq += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        while let Some(Reverse((at, id))) = held.peek().copied() {
            if at > now {
                break;
            }
            held.pop();
            if let Some(msg) = packets.remove(&id) {
                q.verdict(msg)?;
            }
        }
        if !got {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    // Release what is held before leaving.
    for (_, msg) in packets.drain() {
        let _ = q.verdict(msg);
    }
    Ok(())
}

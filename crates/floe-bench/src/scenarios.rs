//! The scenarios: each starts the cluster it needs, measures through the real client, and adds
//! its cases and figures (next to the baselines of the same run) to the context.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe::builtin::{Counter, Echo, Increment, Ping, Read, Register, Value};
use floe::{Actor, Message, NodeId, RequestId};
use floe_client::Client;
use floe_net::{Target, Transport, TransportConfig};
use floe_proto::{CallReply, CallRequest};

use crate::baseline::{self, Baselines, RawQuinn};
use crate::cluster::{Certs, Cluster, NodeSettings};
use crate::load::{Limit, drive, spinner};
use crate::procfs::{self, CpuSample};
use crate::report::{Case, Figure, Goal};
use crate::{BenchError, Opts};

/// Deadline of every call the bench makes (the client retries inside it).
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// State shared by the scenarios of one invocation.
pub struct Ctx {
    /// Options.
    pub opts: Opts,
    /// Scratch directory (data directories, logs, certificates) on the target disk.
    pub dir: PathBuf,
    floe: Option<PathBuf>,
    baselines: Option<Baselines>,
    /// Measured cases, in order.
    pub cases: Vec<Case>,
    /// Headline figures, in order.
    pub figures: Vec<Figure>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Ctx {
    /// A context writing under `dir`.
    pub fn new(opts: Opts, dir: PathBuf) -> Self {
        Self {
            opts,
            dir,
            floe: None,
            baselines: None,
            cases: Vec::new(),
            figures: Vec::new(),
        }
    }

    fn floe(&mut self) -> Result<PathBuf, BenchError> {
        if let Some(f) = &self.floe {
            return Ok(f.clone());
        }
        let f = crate::cluster::locate_floe(self.opts.floe_bin.as_deref())?;
        self.floe = Some(f.clone());
        Ok(f)
    }

    /// The baselines of this run, measured now if they were not yet.
    pub async fn baselines(&mut self) -> Result<Baselines, BenchError> {
        if let Some(b) = &self.baselines {
            return Ok(b.clone());
        }
        let b = baseline::measure(&self.opts, &self.dir.join("baseline")).await?;
        for c in [&b.rtt, &b.pipelined, &b.sled_1, &b.sled_256, &b.sled_1x3] {
            self.cases.push(c.clone());
        }
        self.baselines = Some(b.clone());
        Ok(b)
    }

    /// A raw quinn echo server and client for baselines paired with scenario `name`.
    async fn raw_quinn(&self, name: &str) -> Result<RawQuinn, BenchError> {
        let certs = Certs::create(&self.dir.join(name).join("raw-certs"))?;
        let tls = certs.client_tls()?;
        RawQuinn::start(&certs, &tls).await
    }

    /// Raw sled with `batch` entries per flush, on the nodes' disk, filed under `name`.
    async fn sled(&self, name: &str, batch: u64) -> Result<Case, BenchError> {
        let dir = self.dir.join(name).join(format!("raw-sled-{batch}"));
        let budget = self.opts.duration();
        let mut c = tokio::task::spawn_blocking(move || baseline::raw_sled(&dir, batch, budget))
            .await
            .map_err(|e| BenchError::Cluster(format!("sled task: {e}")))??;
        c.scenario = name.to_string();
        Ok(c)
    }

    async fn cluster(&mut self, name: &str, settings: NodeSettings) -> Result<Cluster, BenchError> {
        let floe = self.floe()?;
        let s = spinner(name, "starting 3 floe nodes");
        let c = Cluster::start(&floe, &self.dir.join(name), 3, &settings).await;
        s.finish_and_clear();
        c
    }
}

/// The leader and the two other voters of a healthy 3-node cluster.
async fn roles(cl: &mut Cluster) -> Result<(NodeId, NodeId, NodeId), BenchError> {
    let leader = cl.leader().await?;
    let others: Vec<NodeId> = cl
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != leader)
        .collect();
    match others[..] {
        [a, b] => Ok((leader, a, b)),
        _ => Err(BenchError::Cluster(format!(
            "expected 3 nodes, have {}",
            others.len() + 1
        ))),
    }
}

async fn echo(client: &Client, key: &str, n: u64) -> Result<(), String> {
    let got = client
        .actor::<Echo>(key)
        .with_timeout(CALL_DEADLINE)
        .call(Ping(n))
        .await
        .map_err(err)?;
    if got == n {
        Ok(())
    } else {
        Err(format!("echo {n} answered {got}"))
    }
}

/// Place `keys` echo actors through `client` and check they live on `owner`.
async fn place_echoes(
    client: &Client,
    prefix: &str,
    keys: usize,
    owner: NodeId,
) -> Result<(), BenchError> {
    for k in 0..keys {
        let key = format!("{prefix}-{k}");
        echo(client, &key, 0).await.map_err(BenchError::Call)?;
        let id = floe::ActorId::new(Echo::NAME, key.as_str());
        if client.cached_owner(&id) != Some(owner) {
            return Err(BenchError::Cluster(format!(
                "{key} placed on {:?}, expected node {owner}",
                client.cached_owner(&id)
            )));
        }
    }
    Ok(())
}

/// Measure `op` with CPU and memory of the cluster's nodes.
async fn measure<F, Fut>(
    cl: &Cluster,
    scenario: &str,
    name: &str,
    inflight: usize,
    limit: Limit,
    op: F,
) -> Case
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let pids = cl.pids();
    let before = CpuSample::take(&pids);
    let run = drive(&format!("{scenario}: {name}"), inflight, limit, op).await;
    let after = CpuSample::take(&pids);
    run.into_case(scenario, name, Some((&before, &after)), cl.peak_rss())
}

fn check(case: &Case) -> Result<(), BenchError> {
    if case.ops == 0 {
        return Err(BenchError::Call(format!(
            "{} / {}: no call succeeded; first error: {}",
            case.scenario,
            case.name,
            case.first_error.as_deref().unwrap_or("none")
        )));
    }
    if let Some(e) = &case.first_error {
        eprintln!(
            "floe-bench: {} / {}: {} of {} calls failed; first: {e}",
            case.scenario,
            case.name,
            case.errors,
            case.ops + case.errors
        );
    }
    Ok(())
}

fn nan(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

/// `call`: stateless echo actors, client straight to the owner (a follower), 1 and 64 in flight,
/// each case right after the same load against raw quinn.
pub async fn call(ctx: &mut Ctx) -> Result<(), BenchError> {
    let mut cl = ctx.cluster("call", NodeSettings::default()).await?;
    let raw = ctx.raw_quinn("call").await?;
    let (_, owner, _) = roles(&mut cl).await?;
    let client = cl.client(&[owner]).await?;
    place_echoes(&client, "e", 64, owner).await?;
    let op = {
        let client = client.clone();
        move |task: usize, i: u64| {
            let client = client.clone();
            async move { echo(&client, &format!("e-{task}"), i).await }
        }
    };
    drive(
        "call: warm-up",
        1,
        Limit::Time(ctx.opts.warmup()),
        op.clone(),
    )
    .await;
    let d = Limit::Time(ctx.opts.duration());
    let raw1 = raw.measure(&ctx.opts, "call", 1).await;
    let mut seq = measure(&cl, "call", "1 in flight", 1, d, op.clone()).await;
    let raw64 = raw.measure(&ctx.opts, "call", 64).await;
    let mut par = measure(&cl, "call", "64 in flight (64 actors)", 64, d, op).await;
    raw.close().await;
    client.close().await;
    check(&seq)?;
    check(&par)?;
    let f = |m: &str, v: f64, u: &str| Figure::new("call", m, v, u);
    ctx.figures.extend([
        f("1 in flight, p50", nan(seq.p50()), "µs")
            .vs("raw quinn round trip p50", nan(raw1.p50()))
            .goal(Goal::RatioAtMost(1.4)),
        f("1 in flight, calls/s", seq.throughput, "/s")
            .vs("rio-rs sequential (reference, 13k/s)", 13_000.0)
            .goal(Goal::RatioAtLeast(1.0)),
        f("64 in flight, calls/s", par.throughput, "/s")
            .vs("raw quinn 64 in flight", raw64.throughput)
            .goal(Goal::RatioAtLeast(0.5)),
        f("64 in flight, calls/s vs rio-rs", par.throughput, "/s")
            .vs("rio-rs 64 in flight (reference, 31k/s)", 31_000.0)
            .goal(Goal::RatioAtLeast(1.0)),
        f(
            "1 in flight, node CPU per call",
            nan(seq.server_cpu_us_per_op),
            "µs",
        )
        .vs(
            "raw quinn echo server CPU per exchange",
            nan(raw1.server_cpu_us_per_op),
        ),
        f(
            "64 in flight, node CPU per call",
            nan(par.server_cpu_us_per_op),
            "µs",
        )
        .vs(
            "raw quinn echo server CPU per exchange",
            nan(raw64.server_cpu_us_per_op),
        ),
    ]);
    let note = format!("owner: node {owner} (a follower); client seeded with it");
    seq.note = Some(note.clone());
    par.note = Some(note);
    ctx.cases.extend([raw1, seq, raw64, par]);
    Ok(())
}

/// One call sent to `gateway` with the bytes a client sends, without the client's owner cache.
async fn via_gateway(
    t: &Transport,
    gateway: &Target,
    client_id: u64,
    key: &str,
    n: u64,
    owner: NodeId,
) -> Result<(), String> {
    let req = CallRequest {
        actor: floe::ActorId::new(Echo::NAME, key),
        message: Ping::NAME.to_string(),
        payload: floe::wire::encode_message("Ping", &Ping(n)).map_err(err)?,
        request: RequestId::new(client_id, n + 1),
        timeout_ms: CALL_DEADLINE.as_millis() as u32,
        chain: Vec::new(),
        hops: 0,
        acked: 0,
        retry: false,
    };
    match t.request(gateway, req, CALL_DEADLINE).await.map_err(err)? {
        CallReply {
            payload, owner: o, ..
        } if o == owner => {
            let got: u64 = floe::codec::decode_body(&payload).map_err(err)?;
            if got == n {
                Ok(())
            } else {
                Err(format!("echo {n} answered {got}"))
            }
        }
        CallReply { owner: o, .. } => Err(format!("answered by node {o}, expected {owner}")),
    }
}

/// `forward`: the same echo calls sent to a gateway node that is not the owner.
pub async fn forward(ctx: &mut Ctx) -> Result<(), BenchError> {
    let mut cl = ctx.cluster("forward", NodeSettings::default()).await?;
    let raw = ctx.raw_quinn("forward").await?;
    let (_, owner, gateway) = roles(&mut cl).await?;
    let client = cl.client(&[owner]).await?;
    place_echoes(&client, "e", 64, owner).await?;
    client.close().await;
    // The client library always learns the owner and goes there: to measure the gateway hop,
    // send the client's request frames to the gateway with a client-certificate transport.
    let t = Transport::bind(TransportConfig::default(), &cl.client_tls)
        .map_err(|e| BenchError::Cluster(format!("client endpoint: {e}")))?;
    let target = Target::node(gateway, cl.node(gateway)?.addr);
    let client_id = u64::from(std::process::id()) << 32;
    let op = {
        let (t, target) = (t.clone(), target.clone());
        move |task: usize, i: u64| {
            let (t, target) = (t.clone(), target.clone());
            async move { via_gateway(&t, &target, client_id, &format!("e-{task}"), i, owner).await }
        }
    };
    drive(
        "forward: warm-up",
        1,
        Limit::Time(ctx.opts.warmup()),
        op.clone(),
    )
    .await;
    let d = Limit::Time(ctx.opts.duration());
    let raw1 = raw.measure(&ctx.opts, "forward", 1).await;
    let mut seq = measure(&cl, "forward", "1 in flight", 1, d, op.clone()).await;
    let raw64 = raw.measure(&ctx.opts, "forward", 64).await;
    let mut par = measure(&cl, "forward", "64 in flight (64 actors)", 64, d, op).await;
    raw.close().await;
    t.shutdown(Duration::from_millis(100)).await;
    check(&seq)?;
    check(&par)?;
    let note = format!("client → gateway node {gateway} → owner node {owner} (followers)");
    let f = |m: &str, v: f64, u: &str| Figure::new("forward", m, v, u);
    ctx.figures.extend([
        f("1 in flight, p50", nan(seq.p50()), "µs")
            .vs("2 × raw quinn round trip p50", 2.0 * nan(raw1.p50())),
        f("64 in flight, calls/s", par.throughput, "/s")
            .vs("raw quinn 64 in flight", raw64.throughput),
    ]);
    seq.note = Some(note.clone());
    par.note = Some(note);
    ctx.cases.extend([raw1, seq, raw64, par]);
    Ok(())
}

async fn increment(client: &Client, key: &str) -> Result<i64, String> {
    client
        .actor::<Counter>(key)
        .with_timeout(CALL_DEADLINE)
        .call(Increment(1))
        .await
        .map_err(err)
}

/// `commit`: state-changing calls on 3 voters; one actor sequentially (owned by the leader, then
/// by a follower), and 256 actors with one call each in flight (group commit).
pub async fn commit(ctx: &mut Ctx) -> Result<(), BenchError> {
    let mut cl = ctx.cluster("commit", NodeSettings::default()).await?;
    let (leader, follower, _) = roles(&mut cl).await?;
    let d = Limit::Time(ctx.opts.duration());
    let raw = ctx.raw_quinn("commit").await?;
    let rtt = raw.measure(&ctx.opts, "commit", 1).await;
    raw.close().await;
    let sled_1 = ctx.sled("commit", 1).await?;
    let floor = nan(sled_1.p50()) + 2.0 * nan(rtt.p50());
    ctx.cases.extend([rtt, sled_1]);
    for (owner, role) in [(leader, "leader"), (follower, "follower")] {
        let client = cl.client(&[owner]).await?;
        let key = format!("c-{role}");
        increment(&client, &key).await.map_err(BenchError::Call)?;
        let placed = client.cached_owner(&floe::ActorId::new(Counter::NAME, key.as_str()));
        if placed != Some(owner) {
            return Err(BenchError::Cluster(format!(
                "{key} placed on {placed:?}, expected node {owner}"
            )));
        }
        let op = {
            let (client, key) = (client.clone(), key.clone());
            move |_, _| {
                let (client, key) = (client.clone(), key.clone());
                async move { increment(&client, &key).await.map(|_| ()) }
            }
        };
        drive(
            "commit: warm-up",
            1,
            Limit::Time(ctx.opts.warmup()),
            op.clone(),
        )
        .await;
        let name = format!("1 actor on the {role}, 1 in flight");
        let mut c = measure(&cl, "commit", &name, 1, d, op).await;
        client.close().await;
        check(&c)?;
        ctx.figures.push(
            Figure::new("commit", format!("{name}, p50"), nan(c.p50()), "µs")
                .vs("fdatasync p50 + 2 raw round trips", floor)
                .goal(Goal::RatioAtMost(3.0)),
        );
        c.note = Some(format!("owner: node {owner} ({role})"));
        ctx.cases.push(c);
    }
    let sled_256 = ctx.sled("commit", 256).await?;
    let all: Vec<NodeId> = cl.nodes.iter().map(|n| n.id).collect();
    let client = cl.client(&all).await?;
    for k in 0..256 {
        increment(&client, &format!("g-{k}"))
            .await
            .map_err(BenchError::Call)?;
    }
    let op = {
        let client = client.clone();
        move |task: usize, _| {
            let client = client.clone();
            async move { increment(&client, &format!("g-{task}")).await.map(|_| ()) }
        }
    };
    let mut c = measure(
        &cl,
        "commit",
        "256 actors, 1 call each in flight",
        256,
        d,
        op,
    )
    .await;
    client.close().await;
    check(&c)?;
    ctx.figures.push(
        Figure::new("commit", "256 actors, commits/s", c.throughput, "/s")
            .vs(
                "raw sled 256 × insert + flush + fdatasync",
                sled_256.throughput,
            )
            .goal(Goal::RatioAtLeast(0.4)),
    );
    ctx.cases.push(sled_256);
    c.note = Some("actors placed round robin over the 3 nodes (gateway = owner)".into());
    ctx.cases.push(c);
    Ok(())
}

/// `activate`: first calls to new (stateless) actors, sequential and 256 in flight, client
/// seeded with the 3 nodes (each places at the gateway it reaches).
pub async fn activate(ctx: &mut Ctx) -> Result<(), BenchError> {
    let mut cl = ctx.cluster("activate", NodeSettings::default()).await?;
    let raw = ctx.raw_quinn("activate").await?;
    let rtt = raw.measure(&ctx.opts, "activate", 1).await;
    raw.close().await;
    let sled_1 = ctx.sled("activate", 1).await?;
    roles(&mut cl).await?;
    let all: Vec<NodeId> = cl.nodes.iter().map(|n| n.id).collect();
    let client = cl.client(&all).await?;
    let op = |prefix: &'static str| {
        let client = client.clone();
        move |_, i: u64| {
            let client = client.clone();
            async move { echo(&client, &format!("{prefix}-{i}"), i).await }
        }
    };
    drive(
        "activate: warm-up",
        16,
        Limit::Time(ctx.opts.warmup()),
        op("w"),
    )
    .await;
    let d = Limit::Time(ctx.opts.duration());
    let seq = measure(&cl, "activate", "new actor, 1 in flight", 1, d, op("s")).await;
    let sled_256 = ctx.sled("activate", 256).await?;
    let par = measure(
        &cl,
        "activate",
        "new actors, 256 in flight",
        256,
        d,
        op("p"),
    )
    .await;
    client.close().await;
    check(&seq)?;
    check(&par)?;
    ctx.figures.extend([
        Figure::new("activate", "1 in flight, p50", nan(seq.p50()), "µs").vs(
            "fdatasync p50 + 2 raw round trips",
            nan(sled_1.p50()) + 2.0 * nan(rtt.p50()),
        ),
        Figure::new(
            "activate",
            "256 in flight, activations/s",
            par.throughput,
            "/s",
        )
        .vs(
            "raw sled 256 × insert + flush + fdatasync",
            sled_256.throughput,
        )
        .goal(Goal::AtLeast(20_000.0)),
    ]);
    ctx.cases.extend([rtt, sled_1, seq, sled_256, par]);
    Ok(())
}

/// What one failover round observed, from the kill.
struct Round {
    /// First successful call elsewhere.
    took: Duration,
    /// A survivor knew a leader other than the victim.
    elected: Option<Duration>,
    /// A survivor's directory had the victim down.
    down: Option<Duration>,
}

/// One failover round: place a counter on `victim`, kill -9 it, time the first successful
/// increment through the survivors, restart it.
async fn failover_round(cl: &mut Cluster, victim: NodeId, key: &str) -> Result<Round, BenchError> {
    let survivors: Vec<NodeId> = cl
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != victim)
        .collect();
    let placer = cl.client(&[victim]).await?;
    let id = floe::ActorId::new(Counter::NAME, key);
    let first = increment(&placer, key).await.map_err(BenchError::Call)?;
    placer.close().await;
    if first != 1 || placer.cached_owner(&id) != Some(victim) {
        return Err(BenchError::Cluster(format!(
            "{key}: value {first} on {:?}, expected 1 on node {victim}",
            placer.cached_owner(&id)
        )));
    }
    // A client of the survivors that has learned the owner, as a long-running one would have.
    let client = cl.client(&survivors).await?;
    let v = client
        .actor::<Counter>(key)
        .with_timeout(CALL_DEADLINE)
        .call(Value)
        .await
        .map_err(|e| BenchError::Call(e.to_string()))?;
    if v != 1 || client.cached_owner(&id) != Some(victim) {
        return Err(BenchError::Cluster(format!(
            "{key}: read {v} from {:?}, expected 1 from node {victim}",
            client.cached_owner(&id)
        )));
    }
    // Watch a survivor's view: when a leader other than the victim is known, and when the
    // directory has declared the victim down.
    let (admin, watch) = (cl.admin(), cl.node(survivors[0])?.addr);
    cl.node_mut(victim)?.kill9();
    let t = Instant::now();
    let watcher = tokio::spawn(async move {
        let (mut elected, mut down) = (None, None);
        while t.elapsed() < Duration::from_secs(30) && (elected.is_none() || down.is_none()) {
            if let Some(s) = crate::cluster::status_at(&admin, watch).await {
                if elected.is_none() && s.leader.is_some_and(|l| l != victim) {
                    elected = Some(t.elapsed());
                }
                if down.is_none() && s.members.iter().any(|m| m.node == victim && !m.alive) {
                    down = Some(t.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (elected, down)
    });
    let after = client
        .actor::<Counter>(key)
        .with_timeout(Duration::from_secs(30))
        .call(Increment(1))
        .await;
    let took = t.elapsed();
    let (elected, down) = match tokio::time::timeout(Duration::from_secs(31), watcher).await {
        Ok(Ok(r)) => r,
        _ => (None, None),
    };
    let moved = client.cached_owner(&id);
    client.close().await;
    match after {
        Ok(2) if moved.is_some_and(|m| m != victim) => {}
        Ok(v) => {
            return Err(BenchError::Cluster(format!(
                "{key} after failover: value {v} on {moved:?}; expected 2 elsewhere than {victim}"
            )));
        }
        Err(e) => return Err(BenchError::Call(format!("{key} after failover: {e}"))),
    }
    cl.node_mut(victim)?
        .start()
        .map_err(|e| BenchError::io(format!("restarting node {victim}"), e))?;
    cl.wait_healthy(3, Duration::from_secs(60)).await?;
    // A restarted node can be declared down once more right after it registers (see
    // BENCHMARKS.md); let that settle so the next round starts from a stable cluster.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cl.wait_healthy(3, Duration::from_secs(60)).await?;
    Ok(Round {
        took,
        elected,
        down,
    })
}

/// `failover`: kill -9 the owner of an actor, time to the first successful call elsewhere;
/// rounds with the owner a follower, then with the owner the leader.
pub async fn failover(ctx: &mut Ctx) -> Result<(), BenchError> {
    let mut cl = ctx.cluster("failover", NodeSettings::default()).await?;
    let node_timeout = floe::ClusterConfig::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        cl.client_tls.clone(),
    )
    .node_timeout;
    let rounds = ctx.opts.rounds.max(1);
    for kind in ["follower", "leader"] {
        let s = spinner(&format!("failover: owner is the {kind}"), "");
        let mut times = Vec::new();
        let mut rounds_text = Vec::new();
        let started = Instant::now();
        for r in 0..rounds {
            let (leader, a, b) = roles(&mut cl).await?;
            let victim = match kind {
                "leader" => leader,
                _ if r.is_multiple_of(2) => a,
                _ => b,
            };
            s.set_message(format!("round {}/{rounds}: kill -9 node {victim}", r + 1));
            let round = failover_round(&mut cl, victim, &format!("f-{kind}-{r}")).await?;
            let ms = |d: Option<Duration>| {
                d.map_or_else(
                    || "?".to_string(),
                    |d| format!("{:.0}", d.as_secs_f64() * 1e3),
                )
            };
            let line = format!(
                "{}: leader known {} ms, declared down {} ms, first call {} ms",
                victim,
                ms(round.elected),
                ms(round.down),
                ms(Some(round.took))
            );
            s.println(format!("  failover, owner {kind}, node {line}"));
            rounds_text.push(line);
            times.push(round.took);
        }
        s.finish_and_clear();
        let run = crate::load::Run {
            latencies: times,
            elapsed: started.elapsed(),
            ..Default::default()
        };
        let mut c = run.into_case(
            "failover",
            format!("kill -9 of the owner, a {kind}"),
            None,
            cl.peak_rss(),
        );
        c.throughput = 0.0;
        c.secs = 0.0;
        c.note = Some(format!(
            "latency = time from kill -9 to the first successful increment elsewhere; default \
             timings (node timeout {} ms); after the kill of node {}",
            node_timeout.as_millis(),
            rounds_text.join("; node ")
        ));
        ctx.figures.push(
            Figure::new("failover", format!("owner {kind}, p50"), nan(c.p50()), "µs")
                .vs("node timeout", node_timeout.as_secs_f64() * 1e6)
                .goal(Goal::AtMost(1e6)),
        );
        ctx.cases.push(c);
    }
    Ok(())
}

fn rss_of(cl: &Cluster, id: NodeId) -> Result<u64, BenchError> {
    let pid = cl
        .node(id)?
        .pid()
        .ok_or_else(|| BenchError::Cluster(format!("node {id} is not running")))?;
    procfs::rss(&pid.to_string())
        .ok_or_else(|| BenchError::Cluster(format!("no VmRSS for node {id}")))
}

/// `memory`: resident memory per idle activation. Register actors are activated with one read
/// each on one follower (the owner) and left idle (idle timeout 24 h); the other follower applies
/// the same Raft entries (placements) but hosts no activation, so the difference of the two
/// RSS growths is the runtime's own cost per activation. Node timeout 10 s (see the code).
pub async fn memory(ctx: &mut Ctx) -> Result<(), BenchError> {
    // Failure detection is not what this measures: a long node timeout keeps a node that
    // stalls on a busy shared disk from being declared down (and dropping its activations).
    let settings = NodeSettings {
        node_timeout: Some(Duration::from_secs(10)),
        ..NodeSettings::default()
    };
    let mut cl = ctx.cluster("memory", settings).await?;
    let (leader, owner, reference) = roles(&mut cl).await?;
    let client = cl.client(&[owner]).await?;
    let read = |client: &Client, key: String| {
        let client = client.clone();
        async move {
            match client
                .actor::<Register>(key)
                .with_timeout(CALL_DEADLINE)
                .call(Read)
                .await
            {
                Ok(None) => Ok(()),
                Ok(Some(v)) => Err(format!("fresh register holds {v:?}")),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    // Warm up: connections, allocator arenas, sled caches.
    let op = {
        let client = client.clone();
        move |_, i: u64| read(&client, format!("w-{i}"))
    };
    drive("memory: warm-up", 256, Limit::Count(5_000), op).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base_owner = rss_of(&cl, owner)?;
    let base_ref = rss_of(&cl, reference)?;
    let base_leader = rss_of(&cl, leader)?;
    let owner_member = |st: &floe_proto::StatusReport| {
        st.members
            .iter()
            .find(|m| m.node == owner)
            .map(|m| (m.incarnation, m.actors))
    };
    let (incarnation, placed_before) = cl
        .status(cl.node(owner)?.addr)
        .await
        .and_then(|st| owner_member(&st))
        .ok_or_else(|| BenchError::Cluster("no status of the owner".into()))?;
    let mut counts = ctx.opts.activations.clone();
    counts.sort_unstable();
    counts.dedup();
    let mut done = 0u64;
    let started = Instant::now();
    let client = Arc::new(client);
    for target in counts {
        if target <= done {
            continue;
        }
        let offset = done;
        let op = {
            let client = client.clone();
            move |_, i: u64| read(&client, format!("m-{}", offset + i))
        };
        let pids = cl.pids();
        let before = CpuSample::take(&pids);
        let run = drive(
            &format!("memory: activate {target}"),
            256,
            Limit::Count(target - done),
            op,
        )
        .await;
        let after = CpuSample::take(&pids);
        let failed = run.errors;
        let mut case = run.into_case(
            "memory",
            format!(
                "activate {} → {target} idle registers (256 in flight)",
                done
            ),
            Some((&before, &after)),
            cl.peak_rss(),
        );
        check(&case)?;
        if failed > 0 {
            return Err(BenchError::Call(format!(
                "{failed} activations failed: the count would be wrong"
            )));
        }
        done = target;
        // Let in-flight buffers drain before reading the resident sets.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let st = cl
            .status(cl.node(owner)?.addr)
            .await
            .ok_or_else(|| BenchError::Cluster("no status".into()))?;
        let (now_incarnation, placed) = owner_member(&st).unwrap_or((None, 0));
        // An overloaded machine can make the owner miss heartbeats: declared down, it drops
        // every activation and rejoins with a new incarnation. The figure would be wrong.
        if now_incarnation != incarnation || placed < placed_before + done {
            return Err(BenchError::Cluster(format!(
                "the owner (node {owner}) did not keep its activations: incarnation \
                 {incarnation:?} → {now_incarnation:?}, {placed} placements for {} activations \
                 (it was declared down, probably because the machine is overloaded); rerun",
                placed_before + done
            )));
        }
        let owner_delta = rss_of(&cl, owner)? as f64 - base_owner as f64;
        let ref_delta = rss_of(&cl, reference)? as f64 - base_ref as f64;
        let leader_delta = rss_of(&cl, leader)? as f64 - base_leader as f64;
        let n = done as f64;
        case.note = Some(format!(
            "owner node {owner}: +{:.0} B/activation RSS ({placed} placements); other follower \
             (same Raft state, no activations) node {reference}: +{:.0} B; leader node {leader}: \
             +{:.0} B; {:.0} s since the first activation",
            owner_delta / n,
            ref_delta / n,
            leader_delta / n,
            started.elapsed().as_secs_f64()
        ));
        ctx.figures.extend([
            Figure::new(
                "memory",
                format!("runtime overhead per idle activation at {done}"),
                (owner_delta - ref_delta) / n,
                "B",
            )
            .vs(
                "follower's RSS growth (replicated placements)",
                ref_delta / n,
            )
            .goal(Goal::AtMost(1024.0)),
            Figure::new(
                "memory",
                format!("owner RSS growth per idle activation at {done}"),
                owner_delta / n,
                "B",
            ),
        ]);
        ctx.cases.push(case);
    }
    client.close().await;
    Ok(())
}

/// `baseline` on its own: just the machine's limits.
pub async fn baseline_only(ctx: &mut Ctx) -> Result<(), BenchError> {
    ctx.baselines().await.map(|_| ())
}

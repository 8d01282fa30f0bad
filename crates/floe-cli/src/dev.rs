//! `floe dev`: a local cluster in one process with its certificates, and a short demo against
//! it.

use std::net::SocketAddr;

use floe::builtin::{Cas, CasOutcome, Counter, Increment, Read, Register, Value};
use floe::certs::CertificateAuthority;
use floe::{ClusterConfig, Node, TlsMaterial};
use floe_client::admin::Admin;
use floe_client::{Client, ClientConfig};
use floe_net::TransportConfig;
use floe_net::certs::TlsFiles;

use crate::admin::{gather_status, print_status};
use crate::args::DevArgs;
use crate::node::{ShutdownSignal, init_logging};
use crate::{CliError, msg};

pub(crate) async fn dev(a: DevArgs) -> Result<(), CliError> {
    if a.nodes != 3 && a.nodes != 5 {
        return Err(msg("--nodes must be 3 or 5"));
    }
    let _ = init_logging("human");
    // Without --dir the cluster lives in a temporary directory, removed after a clean stop.
    let temporary = a.dir.is_none();
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("floe-dev-{}", std::process::id())),
    };
    let certs_dir = dir.join("certs");
    let ca = if certs_dir.join("ca.key").exists() {
        CertificateAuthority::load(&certs_dir).map_err(msg)?
    } else {
        let ca = CertificateAuthority::create("dev").map_err(msg)?;
        ca.write(&certs_dir).map_err(msg)?;
        ca
    };
    let load = |c: floe::certs::CertifiedKeyPem, stem: &str| -> Result<TlsMaterial, CliError> {
        let files = c.write(&certs_dir, stem).map_err(msg)?;
        TlsMaterial::load(&files).map_err(msg)
    };
    let addr_of = |i: u64| format!("127.0.0.1:{}", a.base_port as u64 + i);
    let voters: Vec<(u64, String)> = (1..=a.nodes).map(|i| (i, addr_of(i))).collect();
    let mut builds = Vec::new();
    for i in 1..=a.nodes {
        let tls = load(ca.issue_node(i, &[]).map_err(msg)?, &format!("node-{i}"))?;
        let listen: SocketAddr = addr_of(i).parse().map_err(msg)?;
        let mut c = ClusterConfig::new(listen, tls);
        c.bootstrap = voters.clone();
        let data = dir.join(format!("node-{i}"));
        builds.push(async move {
            Node::builder()
                .id(i)
                .data_dir(data)
                .cluster(c)
                .register_builtins()
                .build()
                .await
        });
    }
    let mut nodes = Vec::new();
    // Nodes start together: each waits for a quorum of the others.
    for r in futures::future::join_all(builds).await {
        nodes.push(r.map_err(msg)?);
    }
    let client_tls = load(ca.issue_client("dev").map_err(msg)?, "client-dev")?;
    load(ca.issue_admin("dev").map_err(msg)?, "admin-dev")?;
    println!(
        "floe dev: {} nodes on {}",
        a.nodes,
        voters
            .iter()
            .map(|(_, a)| a.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("data and certificates in {}", dir.display());
    let exe =
        std::env::current_exe().map_or_else(|_| "floe".to_string(), |p| p.display().to_string());
    println!(
        "status: {exe} status --node {} --ca {c}/ca.pem --cert {c}/admin-dev.pem --key {c}/admin-dev.key",
        addr_of(1),
        c = certs_dir.display()
    );
    let seeds: Vec<SocketAddr> = voters.iter().filter_map(|(_, a)| a.parse().ok()).collect();
    if a.demo {
        let client = Client::connect(ClientConfig::new(seeds.clone(), client_tls))
            .await
            .map_err(msg)?;
        demo(&client).await?;
        let admin = Admin::bind(
            TransportConfig::default(),
            &TlsMaterial::load(&TlsFiles {
                ca: certs_dir.join("ca.pem"),
                cert: certs_dir.join("admin-dev.pem"),
                key: certs_dir.join("admin-dev.key"),
            })
            .map_err(msg)?,
        )
        .map_err(msg)?;
        print_status(&gather_status(&admin, seeds[0]).await?);
        client.close().await;
    }
    if !a.exit {
        let mut signals = ShutdownSignal::new()?;
        println!("running; press Ctrl-C to stop");
        signals.recv().await;
    }
    for n in nodes {
        n.shutdown().await.map_err(msg)?;
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("stopped cleanly");
    Ok(())
}

pub(crate) async fn demo(client: &Client) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let mut total = 0;
    for i in 0..100 {
        total += client
            .actor::<Counter>(format!("visits-{}", i % 20))
            .call(Increment(1))
            .await
            .map_err(msg)?;
    }
    let v = client
        .actor::<Counter>("visits-0")
        .call(Value)
        .await
        .map_err(msg)?;
    println!(
        "demo: 100 increments over 20 counters in {:?}; visits-0 = {v} (sum of replies {total})",
        started.elapsed()
    );
    let reg = client.actor::<Register>("config");
    let before = reg.call(Read).await.map_err(msg)?;
    let swapped = reg
        .call(Cas {
            expect: before.clone(),
            new: format!("v{}", v),
        })
        .await
        .map_err(msg)?;
    let stale = reg
        .call(Cas {
            expect: Some("stale".into()),
            new: "x".into(),
        })
        .await
        .map_err(msg)?;
    println!("demo: register config: {before:?} -> cas {swapped:?}; a stale cas -> {stale:?}");
    if swapped != CasOutcome::Swapped {
        return Err(msg("demo: compare-and-set did not swap"));
    }
    Ok(())
}

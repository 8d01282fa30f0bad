//! The admin subcommands: `init`, `join`, `leave` and `status`, over the cluster's admin
//! protocol.

use std::net::SocketAddr;

use floe::TlsMaterial;
use floe_client::admin::Admin;
use floe_net::TransportConfig;

use crate::args::{ConnArgs, InitArgs, JoinArgs, LeaveArgs, StatusArgs};
use crate::config::parse_member;
use crate::node::tls_files;
use crate::{CliError, msg};

pub(crate) fn connect(conn: &ConnArgs) -> Result<Admin, CliError> {
    let files = tls_files(&conn.tls, None)?;
    let tls = TlsMaterial::load(&files).map_err(msg)?;
    Admin::bind(TransportConfig::default(), &tls).map_err(msg)
}

/// `floe join`: add a node to the membership.
pub(crate) async fn join(a: JoinArgs) -> Result<(), CliError> {
    connect(&a.conn)?
        .add_node(&[a.conn.node], a.id, a.addr, a.voter)
        .await
        .map_err(msg)?;
    println!(
        "node {} added as {}",
        a.id,
        if a.voter { "voter" } else { "learner" }
    );
    Ok(())
}

/// `floe leave`: remove a node from the membership.
pub(crate) async fn leave(a: LeaveArgs) -> Result<(), CliError> {
    connect(&a.conn)?
        .remove_node(&[a.conn.node], a.id)
        .await
        .map_err(msg)?;
    println!("node {} removed", a.id);
    Ok(())
}

pub(crate) async fn init(a: InitArgs) -> Result<(), CliError> {
    let voters = a
        .voters
        .iter()
        .map(|s| parse_member(s))
        .collect::<Result<Vec<_>, _>>()?;
    connect(&a.conn)?
        .initialize(a.conn.node, voters.clone())
        .await
        .map_err(msg)?;
    println!(
        "cluster initialized with voters {}",
        voters
            .iter()
            .map(|(i, a)| format!("{i}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(())
}

#[derive(serde::Serialize)]
pub(crate) struct StatusRow {
    pub(crate) node: u64,
    pub(crate) addr: String,
    pub(crate) role: &'static str,
    pub(crate) state: Option<String>,
    pub(crate) healthy: bool,
    pub(crate) incarnation: Option<u64>,
    pub(crate) actors: u64,
    pub(crate) last_applied: Option<u64>,
    pub(crate) last_ack_ms: Option<u64>,
}

#[derive(serde::Serialize)]
pub(crate) struct Status {
    pub(crate) leader: Option<u64>,
    pub(crate) term: u64,
    pub(crate) members: Vec<StatusRow>,
}

pub(crate) async fn gather_status(admin: &Admin, seed: SocketAddr) -> Result<Status, CliError> {
    let first = admin.status(seed).await.map_err(msg)?;
    // The leader knows heartbeats; each member knows its own state and applied index.
    let leader_report = match first
        .leader
        .and_then(|l| first.members.iter().find(|m| m.node == l))
    {
        Some(m) if m.node != first.node => match m.addr.parse() {
            Ok(a) => admin.status(a).await.unwrap_or(first.clone()),
            Err(_) => first.clone(),
        },
        _ => first.clone(),
    };
    let mut rows = Vec::new();
    for m in &leader_report.members {
        let own = match m.addr.parse() {
            Ok(a) => admin.status(a).await.ok(),
            Err(_) => None,
        };
        rows.push(StatusRow {
            node: m.node,
            addr: m.addr.clone(),
            role: if m.voter { "voter" } else { "learner" },
            state: own.as_ref().map(|s| s.state.clone()),
            healthy: m.alive && own.is_some(),
            incarnation: m.incarnation,
            actors: m.actors,
            last_applied: own.as_ref().and_then(|s| s.last_applied),
            last_ack_ms: m.last_ack_ms,
        });
    }
    Ok(Status {
        leader: leader_report.leader,
        term: leader_report.term,
        members: rows,
    })
}

pub(crate) fn print_status(s: &Status) {
    println!(
        "leader: {}   term: {}",
        s.leader.map_or("none".into(), |l| l.to_string()),
        s.term
    );
    println!(
        "{:<5} {:<22} {:<8} {:<10} {:<8} {:<5} {:<7} {:<12} {:<8}",
        "node", "addr", "role", "state", "healthy", "inc", "actors", "applied", "ack ms"
    );
    for r in &s.members {
        println!(
            "{:<5} {:<22} {:<8} {:<10} {:<8} {:<5} {:<7} {:<12} {:<8}",
            r.node,
            r.addr,
            r.role,
            r.state.as_deref().unwrap_or("unreachable"),
            if r.healthy { "yes" } else { "no" },
            r.incarnation.map_or("-".into(), |i| i.to_string()),
            r.actors,
            r.last_applied.map_or("-".into(), |i| i.to_string()),
            r.last_ack_ms.map_or("-".into(), |i| i.to_string()),
        );
    }
}

pub(crate) async fn status(a: StatusArgs) -> Result<(), CliError> {
    let admin = connect(&a.conn)?;
    let s = gather_status(&admin, a.conn.node).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).map_err(msg)?);
    } else {
        print_status(&s);
    }
    Ok(())
}

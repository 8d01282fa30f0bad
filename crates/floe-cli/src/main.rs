//! The `floe` binary: run a node, bootstrap and change the membership, show the status, issue
//! certificates, and run a local development cluster.

mod admin;
mod args;
mod certs;
mod config;
mod dev;
mod node;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Cmd};
use crate::config::ConfigError;

/// Why a command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Msg(String),
}

/// A failure described by its message.
pub(crate) fn msg(e: impl std::fmt::Display) -> CliError {
    CliError::Msg(e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("floe: error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floe: error: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.cmd {
        Cmd::Node(a) => node::node(*a).await,
        Cmd::Init(a) => admin::init(a).await,
        Cmd::Join(a) => admin::join(a).await,
        Cmd::Leave(a) => admin::leave(a).await,
        Cmd::Status(a) => admin::status(a).await,
        Cmd::Certs(a) => certs::certs(a.what),
        Cmd::Dev(a) => dev::dev(a).await,
    }
}

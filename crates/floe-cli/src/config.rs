//! `floe node` settings: a TOML file, overridden by flags and `FLOE_*` environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The TOML file of `floe node --config`. Unknown keys are errors.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Node id (never reused in a cluster).
    pub id: Option<u64>,
    /// QUIC address to bind.
    pub listen: Option<SocketAddr>,
    /// Address others reach this node at (default: `listen`).
    pub advertise: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// First voters as `"id=host:port"`; identical on each of them.
    pub bootstrap: Option<Vec<String>>,
    /// Nodes of a running cluster to join through.
    pub join: Option<Vec<SocketAddr>>,
    /// Join as a voter instead of a learner.
    pub voter: Option<bool>,
    /// Cluster CA certificate (PEM).
    pub ca: Option<PathBuf>,
    /// This node's certificate (PEM).
    pub cert: Option<PathBuf>,
    /// This node's private key (PEM).
    pub key: Option<PathBuf>,
    /// Failure detection timeout in milliseconds.
    pub node_timeout_ms: Option<u64>,
    /// Default call deadline in milliseconds.
    pub call_timeout_ms: Option<u64>,
    /// Idle deactivation after this many milliseconds.
    pub idle_timeout_ms: Option<u64>,
    /// Largest actor state in bytes (larger states are refused and rolled back).
    pub max_state_bytes: Option<usize>,
    /// Largest message or reply of a call in bytes.
    pub max_message_bytes: Option<usize>,
    /// `human` or `json`.
    pub log_format: Option<String>,
    /// Admin HTTP address (`/health`, `/ready`, `/metrics`, `/cluster`); off if unset.
    pub admin: Option<SocketAddr>,
}

/// Why the configuration is unusable; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a node (unknown key, wrong type).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, on one line.
        message: String,
    },
    /// A required setting is missing.
    #[error("missing setting: {0} (set it in the config file, as a flag, or as FLOE_{1})")]
    Missing(&'static str, &'static str),
    /// A setting has a bad value.
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
}

impl NodeFile {
    /// Read and parse a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().replace('\n', " "),
        })
    }
}

/// Parse `"id=host:port"`.
pub fn parse_member(s: &str) -> Result<(u64, String), ConfigError> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| ConfigError::Invalid("member", format!("{s:?}: expected id=host:port")))?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| ConfigError::Invalid("member", format!("{s:?}: the id must be a number")))?;
    let addr = addr.trim();
    if addr.parse::<SocketAddr>().is_err() {
        return Err(ConfigError::Invalid(
            "member",
            format!("{s:?}: {addr:?} is not host:port"),
        ));
    }
    Ok((id, addr.to_string()))
}

/// A byte count, refusing zero.
pub fn bytes(name: &'static str, v: usize) -> Result<usize, ConfigError> {
    if v == 0 {
        return Err(ConfigError::Invalid(name, "must be positive".into()));
    }
    Ok(v)
}

/// Milliseconds as a duration, refusing zero.
pub fn millis(name: &'static str, v: u64) -> Result<Duration, ConfigError> {
    if v == 0 {
        return Err(ConfigError::Invalid(name, "must be positive".into()));
    }
    Ok(Duration::from_millis(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_members_are_one_line_errors() {
        let err =
            toml::from_str::<NodeFile>("id = 1\ncolour = \"red\"\n").expect_err("unknown key");
        assert!(err.message().contains("colour"), "{}", err.message());
        assert!(parse_member("1=127.0.0.1:7000").is_ok());
        assert!(parse_member("x=127.0.0.1:7000").is_err());
        assert!(parse_member("1=nowhere").is_err());
        assert!(parse_member("1").is_err());
    }
}

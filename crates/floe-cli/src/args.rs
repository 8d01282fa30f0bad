//! The command line: subcommands and their flags (each flag also an environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "floe",
    version,
    about = "Virtual actors on a Raft-backed cluster"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Run a node (config file, flags and FLOE_* variables; flags win).
    Node(Box<NodeArgs>),
    /// Bootstrap a new cluster from its first voters (sent to one pristine voter).
    Init(InitArgs),
    /// Add a node to a running cluster, as learner or voter.
    Join(JoinArgs),
    /// Remove a node from the cluster.
    Leave(LeaveArgs),
    /// Show the members, their roles and health, the leader, term and applied index.
    Status(StatusArgs),
    /// Create a cluster CA and issue node, client and admin certificates.
    Certs(CertsArgs),
    /// Run a local cluster on loopback with its own CA and data directories.
    Dev(DevArgs),
}

#[derive(Args)]
pub(crate) struct NodeArgs {
    /// TOML config file.
    #[arg(long, env = "FLOE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Node id.
    #[arg(long, env = "FLOE_ID")]
    pub(crate) id: Option<u64>,
    /// QUIC address to bind.
    #[arg(long, env = "FLOE_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Address others reach this node at.
    #[arg(long, env = "FLOE_ADVERTISE")]
    pub(crate) advertise: Option<String>,
    /// Data directory.
    #[arg(long, env = "FLOE_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// First voters, id=host:port, comma separated (identical on each of them).
    #[arg(long, env = "FLOE_BOOTSTRAP", value_delimiter = ',')]
    pub(crate) bootstrap: Vec<String>,
    /// Nodes of a running cluster to join through, comma separated.
    #[arg(long, env = "FLOE_JOIN", value_delimiter = ',')]
    pub(crate) join: Vec<SocketAddr>,
    /// Join as a voter (default: learner).
    #[arg(long, env = "FLOE_VOTER", num_args = 0..=1, default_missing_value = "true")]
    pub(crate) voter: Option<bool>,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// Failure detection timeout, milliseconds.
    #[arg(long, env = "FLOE_NODE_TIMEOUT_MS")]
    pub(crate) node_timeout_ms: Option<u64>,
    /// Default call deadline, milliseconds.
    #[arg(long, env = "FLOE_CALL_TIMEOUT_MS")]
    pub(crate) call_timeout_ms: Option<u64>,
    /// Idle deactivation, milliseconds.
    #[arg(long, env = "FLOE_IDLE_TIMEOUT_MS")]
    pub(crate) idle_timeout_ms: Option<u64>,
    /// Largest actor state, bytes (default 4 MiB).
    #[arg(long, env = "FLOE_MAX_STATE_BYTES")]
    pub(crate) max_state_bytes: Option<usize>,
    /// Largest message or reply of a call, bytes (default 1 MiB). With max_state_bytes at most
    /// the size of one replicated entry (just under 8 MiB).
    #[arg(long, env = "FLOE_MAX_MESSAGE_BYTES")]
    pub(crate) max_message_bytes: Option<usize>,
    /// Log format: human or json.
    #[arg(long, env = "FLOE_LOG_FORMAT")]
    pub(crate) log_format: Option<String>,
    /// Admin HTTP address serving /health, /ready, /metrics and /cluster.
    #[arg(long, env = "FLOE_ADMIN")]
    pub(crate) admin: Option<SocketAddr>,
}

#[derive(Args, Clone)]
pub(crate) struct TlsArgs {
    /// Cluster CA certificate (PEM).
    #[arg(long, env = "FLOE_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// Certificate (PEM).
    #[arg(long, env = "FLOE_CERT")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM).
    #[arg(long, env = "FLOE_KEY")]
    pub(crate) key: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct ConnArgs {
    /// A node of the cluster (host:port).
    #[arg(long, env = "FLOE_NODE")]
    pub(crate) node: SocketAddr,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

#[derive(Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    /// A first voter, id=host:port (repeat, or comma separated).
    #[arg(long = "voter", required = true, value_delimiter = ',')]
    pub(crate) voters: Vec<String>,
}

#[derive(Args)]
pub(crate) struct JoinArgs {
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    /// The new node's id.
    #[arg(long)]
    pub(crate) id: u64,
    /// The new node's address.
    #[arg(long)]
    pub(crate) addr: String,
    /// Add it as a voter (default: learner).
    #[arg(long)]
    pub(crate) voter: bool,
}

#[derive(Args)]
pub(crate) struct LeaveArgs {
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    /// The node to remove.
    #[arg(long)]
    pub(crate) id: u64,
}

#[derive(Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct CertsArgs {
    #[command(subcommand)]
    pub(crate) what: CertsCmd,
}

#[derive(Subcommand)]
pub(crate) enum CertsCmd {
    /// Create a CA (ca.pem, ca.key) in DIR.
    Ca {
        /// Directory for the files.
        #[arg(long)]
        dir: PathBuf,
        /// Cluster name in the CA's subject.
        #[arg(long, default_value = "floe")]
        cluster: String,
    },
    /// Issue node-ID.pem/.key, signed by the CA in DIR.
    Node {
        /// Directory holding ca.pem/ca.key; the files are written there.
        #[arg(long)]
        dir: PathBuf,
        /// Node id.
        #[arg(long)]
        id: u64,
        /// Extra DNS names or IP addresses for the certificate.
        #[arg(long = "san", value_delimiter = ',')]
        sans: Vec<String>,
    },
    /// Issue client-NAME.pem/.key (calls only).
    Client {
        /// Directory holding ca.pem/ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// Client name.
        #[arg(long)]
        name: String,
    },
    /// Issue admin-NAME.pem/.key (status and membership changes).
    Admin {
        /// Directory holding ca.pem/ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// Operator name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Args)]
pub(crate) struct DevArgs {
    /// Number of voters: 3 or 5.
    #[arg(long, default_value_t = 3)]
    pub(crate) nodes: u64,
    /// Data and certificate directory (default: a new temporary one).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Node i listens on 127.0.0.1:(base-port + i).
    #[arg(long, default_value_t = 7400)]
    pub(crate) base_port: u16,
    /// Run a demo workload through the client and print the status.
    #[arg(long)]
    pub(crate) demo: bool,
    /// Stop after the demo instead of waiting for Ctrl-C.
    #[arg(long)]
    pub(crate) exit: bool,
}

//! Shared pieces of the runnable examples (`[[example]]` targets of this package).

use std::net::SocketAddr;
use std::path::Path;

use floe::certs::CertificateAuthority;
use floe::{ClusterConfig, Node, NodeBuilder, Placement, TlsMaterial};

/// A throw-away cluster CA for examples.
pub struct DevCa(CertificateAuthority);

impl DevCa {
    /// A new CA.
    pub fn new() -> Result<Self, Box<dyn std::error::Error>> {
        Ok(Self(CertificateAuthority::create("example")?))
    }

    fn material(
        &self,
        c: floe::certs::CertifiedKeyPem,
    ) -> Result<TlsMaterial, Box<dyn std::error::Error>> {
        Ok(TlsMaterial::from_pem(
            self.0.cert_pem().as_bytes(),
            c.cert_pem.as_bytes(),
            c.key_pem.as_bytes(),
        )?)
    }

    /// A node certificate.
    pub fn node(&self, id: u64) -> Result<TlsMaterial, Box<dyn std::error::Error>> {
        self.material(self.0.issue_node(id, &[])?)
    }

    /// A client certificate.
    pub fn client(&self, name: &str) -> Result<TlsMaterial, Box<dyn std::error::Error>> {
        self.material(self.0.issue_client(name)?)
    }
}

/// Start `n` voters on loopback: node 1 bootstraps, the others join it. `register` adds the
/// actor types to each node.
pub async fn local_cluster(
    ca: &DevCa,
    dir: &Path,
    n: u64,
    placement: Placement,
    register: impl Fn(NodeBuilder) -> NodeBuilder,
) -> Result<Vec<Node>, Box<dyn std::error::Error>> {
    let mut nodes: Vec<Node> = Vec::new();
    for id in 1..=n {
        let mut c = ClusterConfig::new("127.0.0.1:0".parse()?, ca.node(id)?);
        c.placement = placement.clone();
        match nodes.first().and_then(|n| n.addr()) {
            None => c.bootstrap = vec![(id, String::new())],
            Some(seed) => {
                c.join = vec![seed.parse()?];
                c.join_as_voter = true;
            }
        }
        let b = Node::builder()
            .id(id)
            .data_dir(dir.join(format!("node-{id}")))
            .cluster(c);
        nodes.push(register(b).build().await?);
    }
    Ok(nodes)
}

/// The addresses of `nodes`.
pub fn addrs(nodes: &[Node]) -> Vec<SocketAddr> {
    nodes
        .iter()
        .filter_map(|n| n.addr()?.parse().ok())
        .collect()
}

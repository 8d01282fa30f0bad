//! rustls (ring provider) configuration for mutual TLS, and the peer's role from its certificate.

use std::fmt;
use std::sync::Arc;

use floe_proto::ALPN;
use floe_proto::NodeId;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::TlsFiles;

/// What a peer may do, read from the `floe://` URI in its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// A cluster node: may send Raft and node-to-node requests.
    Node(NodeId),
    /// A client: may only call actors and read the cluster's status.
    Client(String),
    /// An operator: may also change the membership, but never send Raft RPCs.
    Admin(String),
}

impl Role {
    /// Whether this is a node.
    pub fn is_node(&self) -> bool {
        matches!(self, Role::Node(_))
    }

    /// Whether this role may send requests of `access`.
    pub fn allows(&self, access: floe_proto::Access) -> bool {
        match access {
            floe_proto::Access::Any => true,
            floe_proto::Access::Admin => matches!(self, Role::Node(_) | Role::Admin(_)),
            floe_proto::Access::Node => self.is_node(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Node(id) => write!(f, "node {id}"),
            Role::Client(name) => write!(f, "client {name}"),
            Role::Admin(name) => write!(f, "admin {name}"),
        }
    }
}

/// Why TLS material could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing or unreadable.
    #[error("{what} {path}: {reason}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built from the CA.
    #[error("client verifier: {0}")]
    Verifier(String),
    /// Our own certificate carries no `floe://` role.
    #[error("certificate has no floe:// role: {0}")]
    NoRole(String),
}

/// Certificates and key in memory, ready for rustls.
#[derive(Debug)]
pub struct TlsMaterial {
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    /// Our own role, from our certificate.
    pub role: Role,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        Self {
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            role: self.role.clone(),
        }
    }
}

fn pem_err(what: &'static str, path: &std::path::Path, reason: impl ToString) -> TlsError {
    TlsError::Pem {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl TlsMaterial {
    /// Load PEM files.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let ca = std::fs::read(&files.ca).map_err(|e| pem_err("CA certificate", &files.ca, e))?;
        let cert =
            std::fs::read(&files.cert).map_err(|e| pem_err("certificate", &files.cert, e))?;
        let key = std::fs::read(&files.key).map_err(|e| pem_err("private key", &files.key, e))?;
        Self::from_pem(&ca, &cert, &key).map_err(|e| match e {
            TlsError::Pem { what, reason, .. } => {
                let path = match what {
                    "CA certificate" => &files.ca,
                    "certificate" => &files.cert,
                    _ => &files.key,
                };
                pem_err(what, path, reason)
            }
            other => other,
        })
    }

    /// Build from PEM bytes.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let inline = std::path::Path::new("<inline>");
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca) {
            let c = c.map_err(|e| pem_err("CA certificate", inline, e))?;
            roots.add(c)?;
        }
        if roots.is_empty() {
            return Err(pem_err("CA certificate", inline, "no certificate in file"));
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<_, _>>()
            .map_err(|e| pem_err("certificate", inline, e))?;
        let leaf = chain
            .first()
            .ok_or_else(|| pem_err("certificate", inline, "no certificate in file"))?;
        let role = role_of(leaf).ok_or_else(|| TlsError::NoRole("own certificate".into()))?;
        let key =
            PrivateKeyDer::from_pem_slice(key).map_err(|e| pem_err("private key", inline, e))?;
        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key,
            role,
        })
    }
}

impl TlsMaterial {
    /// The key of QUIC stateless resets, derived from our private key so that it survives a
    /// restart: a restarted node then resets the connections its predecessor left behind, and
    /// peers reconnect at once instead of waiting for an idle timeout.
    pub(crate) fn reset_key(&self) -> ring::hmac::Key {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"floe/1 stateless reset key\0");
        ctx.update(self.key.secret_der());
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, ctx.finish().as_ref())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls server config: TLS 1.3, ALPN `floe/1`, client certificates required and verified
/// against the cluster CA.
pub fn server_config(m: &TlsMaterial) -> Result<rustls::ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(m.roots.clone(), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.chain.clone(), m.key.clone_key())?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// rustls client config: TLS 1.3, ALPN `floe/1`, our certificate presented, the server verified
/// against the cluster CA.
pub fn client_config(m: &TlsMaterial) -> Result<rustls::ClientConfig, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(m.roots.clone())
        .with_client_auth_cert(m.chain.clone(), m.key.clone_key())?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The role in a (verified) certificate: its `floe://node/<id>` or `floe://client/<name>` URI.
pub fn role_of(cert: &CertificateDer<'_>) -> Option<Role> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(uri) => parse_role_uri(uri),
        _ => None,
    })
}

fn parse_role_uri(uri: &str) -> Option<Role> {
    let rest = uri.strip_prefix("floe://")?;
    if let Some(id) = rest.strip_prefix("node/") {
        return id.parse().ok().map(Role::Node);
    }
    if let Some(n) = rest.strip_prefix("admin/") {
        return (!n.is_empty()).then(|| Role::Admin(n.to_string()));
    }
    rest.strip_prefix("client/")
        .filter(|n| !n.is_empty())
        .map(|n| Role::Client(n.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::CertificateAuthority;

    #[test]
    fn roles_come_from_the_certificate() {
        let ca = CertificateAuthority::create("t").expect("ca");
        let node = ca.issue_node(7, &[]).expect("node");
        let client = ca.issue_client("app-1").expect("client");
        let n = TlsMaterial::from_pem(
            ca.cert_pem().as_bytes(),
            node.cert_pem.as_bytes(),
            node.key_pem.as_bytes(),
        )
        .expect("node material");
        assert_eq!(n.role, Role::Node(7));
        let c = TlsMaterial::from_pem(
            ca.cert_pem().as_bytes(),
            client.cert_pem.as_bytes(),
            client.key_pem.as_bytes(),
        )
        .expect("client material");
        assert_eq!(c.role, Role::Client("app-1".into()));
        assert!(server_config(&n).is_ok() && client_config(&c).is_ok());
    }

    #[test]
    fn bad_names_and_uris_are_refused() {
        let ca = CertificateAuthority::create("t").expect("ca");
        assert!(ca.issue_client("").is_err());
        assert!(ca.issue_client("a/b").is_err());
        assert_eq!(parse_role_uri("floe://node/x"), None);
        assert_eq!(parse_role_uri("floe://client/"), None);
        assert_eq!(parse_role_uri("https://node/1"), None);
    }

    #[test]
    fn ca_survives_write_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::create("t").expect("ca");
        ca.write(dir.path()).expect("write");
        let loaded = CertificateAuthority::load(dir.path()).expect("load");
        let node = loaded.issue_node(1, &["127.0.0.1".into()]).expect("issue");
        let files = node.write(dir.path(), "node-1").expect("write node");
        let m = TlsMaterial::load(&files).expect("load material");
        assert_eq!(m.role, Role::Node(1));
        let missing = TlsFiles {
            key: dir.path().join("nope.key"),
            ..files
        };
        let err = TlsMaterial::load(&missing).expect_err("missing key");
        assert!(err.to_string().contains("nope.key"), "{err}");
    }
}

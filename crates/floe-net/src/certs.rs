//! The cluster CA and the certificates it issues (rcgen), written as PEM files.
//!
//! A node certificate carries the DNS names `floe-node` and `node-<id>.floe` and the URI
//! `floe://node/<id>`; it is valid for server and client authentication. A client certificate
//! carries the URI `floe://client/<name>` and is valid for client authentication only; an admin
//! certificate (`floe://admin/<name>`) is a client certificate that may also change the
//! membership. The role a peer acts in is read from that URI (see [`crate::tls::Role`]).

use std::fs;
use std::path::{Path, PathBuf};

use floe_proto::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// DNS name every node certificate carries; used when dialing a seed whose id is unknown.
pub const ANY_NODE_NAME: &str = "floe-node";

/// DNS name of node `id`; used when dialing a known node, which authenticates its id.
pub fn node_server_name(id: NodeId) -> String {
    format!("node-{id}.floe")
}

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or the key.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A client name is empty or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid client name {0:?}: use letters, digits, '.', '_' or '-'")]
    BadName(String),
}

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct CertifiedKeyPem {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

/// A cluster certificate authority.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

fn write(path: &Path, data: &str) -> Result<(), CertError> {
    fs::write(path, data).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

impl CertificateAuthority {
    /// Create a new CA named `cluster` (valid ten years).
    pub fn create(cluster: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("floe cluster CA {cluster}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, 3650);
        let key = KeyPair::generate()?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem,
        })
    }

    /// Load a CA written by [`CertificateAuthority::write`].
    pub fn load(dir: &Path) -> Result<Self, CertError> {
        let cert_pem = read(&dir.join("ca.pem"))?;
        let key = KeyPair::from_pem(&read(&dir.join("ca.key"))?)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Self { issuer, cert_pem })
    }

    /// The CA certificate, PEM encoded.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Write `ca.pem` and `ca.key` into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        fs::create_dir_all(dir).map_err(|source| CertError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        write(&dir.join("ca.pem"), &self.cert_pem)?;
        write_key(&dir.join("ca.key"), &self.issuer.key().serialize_pem())
    }

    fn issue(&self, mut params: CertificateParams) -> Result<CertifiedKeyPem, CertError> {
        validity(&mut params, 825);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKeyPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issue the certificate of node `id`; `extra_names` are added as DNS or IP SANs.
    pub fn issue_node(
        &self,
        id: NodeId,
        extra_names: &[String],
    ) -> Result<CertifiedKeyPem, CertError> {
        let mut names = vec![ANY_NODE_NAME.to_string(), node_server_name(id)];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params
            .subject_alt_names
            .push(SanType::URI(format!("floe://node/{id}").try_into()?));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("floe node {id}"));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(params)
    }

    /// Issue a client certificate for `name` (letters, digits, `.`, `_`, `-`).
    pub fn issue_client(&self, name: &str) -> Result<CertifiedKeyPem, CertError> {
        self.issue_named("client", name)
    }

    /// Issue an operator certificate for `name`: it may change the membership and read the
    /// status, and call actors, but never send Raft RPCs.
    pub fn issue_admin(&self, name: &str) -> Result<CertifiedKeyPem, CertError> {
        self.issue_named("admin", name)
    }

    fn issue_named(&self, role: &str, name: &str) -> Result<CertifiedKeyPem, CertError> {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(CertError::BadName(name.to_string()));
        }
        let mut params = CertificateParams::default();
        params
            .subject_alt_names
            .push(SanType::URI(format!("floe://{role}/{name}").try_into()?));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("floe {role} {name}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }
}

fn write_key(path: &Path, pem: &str) -> Result<(), CertError> {
    write(path, pem)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|source| {
            CertError::Io {
                path: path.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Paths of a PEM certificate, its key, and the CA certificate to trust.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsFiles {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// This peer's certificate.
    pub cert: PathBuf,
    /// This peer's private key.
    pub key: PathBuf,
}

impl CertifiedKeyPem {
    /// Write `<stem>.pem` and `<stem>.key` into `dir`, and return the paths with `dir/ca.pem`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<TlsFiles, CertError> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        write(&cert, &self.cert_pem)?;
        write_key(&key, &self.key_pem)?;
        Ok(TlsFiles {
            ca: dir.join("ca.pem"),
            cert,
            key,
        })
    }
}

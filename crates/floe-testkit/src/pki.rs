//! A cluster CA for one test, and the certificates it issues.

use std::path::Path;

use floe::TlsMaterial;
use floe::certs::{CertificateAuthority, CertifiedKeyPem, TlsFiles};

/// A fresh cluster CA; issues node, client and admin certificates.
pub struct Pki {
    /// The CA.
    pub ca: CertificateAuthority,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// A new CA named `test`.
    pub fn new() -> Self {
        Self {
            ca: CertificateAuthority::create("test").expect("create a test CA"),
        }
    }

    fn material(&self, c: CertifiedKeyPem) -> TlsMaterial {
        TlsMaterial::from_pem(
            self.ca.cert_pem().as_bytes(),
            c.cert_pem.as_bytes(),
            c.key_pem.as_bytes(),
        )
        .expect("load issued TLS material")
    }

    /// Node `id`'s certificate.
    pub fn node(&self, id: u64) -> TlsMaterial {
        self.material(
            self.ca
                .issue_node(id, &[])
                .expect("issue a node certificate"),
        )
    }

    /// A client certificate.
    pub fn client(&self, name: &str) -> TlsMaterial {
        self.material(
            self.ca
                .issue_client(name)
                .expect("issue a client certificate"),
        )
    }

    /// An admin certificate.
    pub fn admin(&self, name: &str) -> TlsMaterial {
        self.material(
            self.ca
                .issue_admin(name)
                .expect("issue an admin certificate"),
        )
    }

    /// Write the CA certificate (`ca.pem`) and node `id`'s certificate and key
    /// (`node-{id}.pem`, `node-{id}.key`) into `dir`.
    pub fn node_files(&self, dir: &Path, id: u64) -> TlsFiles {
        self.write(dir, self.ca.issue_node(id, &[]), &format!("node-{id}"))
    }

    /// Write the CA certificate and a client certificate and key named `name` into `dir`.
    pub fn client_files(&self, dir: &Path, name: &str) -> TlsFiles {
        self.write(dir, self.ca.issue_client(name), &format!("client-{name}"))
    }

    /// Write the CA certificate and an admin certificate and key named `name` into `dir`.
    pub fn admin_files(&self, dir: &Path, name: &str) -> TlsFiles {
        self.write(dir, self.ca.issue_admin(name), &format!("admin-{name}"))
    }

    fn write(
        &self,
        dir: &Path,
        issued: Result<CertifiedKeyPem, floe::certs::CertError>,
        stem: &str,
    ) -> TlsFiles {
        std::fs::create_dir_all(dir).expect("create the certificate directory");
        std::fs::write(dir.join("ca.pem"), self.ca.cert_pem()).expect("write ca.pem");
        issued
            .expect("issue a certificate")
            .write(dir, stem)
            .expect("write a certificate")
    }
}

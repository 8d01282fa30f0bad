//! `floe certs`: the cluster CA and the certificates it issues, written as PEM files.

use floe::certs::CertificateAuthority;

use crate::args::CertsCmd;
use crate::{CliError, msg};

pub(crate) fn certs(c: CertsCmd) -> Result<(), CliError> {
    match c {
        CertsCmd::Ca { dir, cluster } => {
            if dir.join("ca.key").exists() {
                return Err(msg(format!(
                    "{} already holds a CA; refusing to overwrite it",
                    dir.display()
                )));
            }
            CertificateAuthority::create(&cluster)
                .and_then(|ca| ca.write(&dir))
                .map_err(msg)?;
            println!("CA written to {}", dir.join("ca.pem").display());
        }
        CertsCmd::Node { dir, id, sans } => {
            let ca = CertificateAuthority::load(&dir).map_err(msg)?;
            let f = ca
                .issue_node(id, &sans)
                .and_then(|c| c.write(&dir, &format!("node-{id}")))
                .map_err(msg)?;
            println!("node {id}: {} {}", f.cert.display(), f.key.display());
        }
        CertsCmd::Client { dir, name } => {
            let ca = CertificateAuthority::load(&dir).map_err(msg)?;
            let f = ca
                .issue_client(&name)
                .and_then(|c| c.write(&dir, &format!("client-{name}")))
                .map_err(msg)?;
            println!("client {name}: {} {}", f.cert.display(), f.key.display());
        }
        CertsCmd::Admin { dir, name } => {
            let ca = CertificateAuthority::load(&dir).map_err(msg)?;
            let f = ca
                .issue_admin(&name)
                .and_then(|c| c.write(&dir, &format!("admin-{name}")))
                .map_err(msg)?;
            println!("admin {name}: {} {}", f.cert.display(), f.key.display());
        }
    }
    Ok(())
}

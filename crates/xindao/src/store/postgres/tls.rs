//! TLS to PostgreSQL, as the URL's `sslmode` asks. `require`, `verify-ca` and `verify-full` all connect over
//! TLS (rustls) and verify the server's certificate chain and host name: against the roots in
//! `sslrootcert=/path/ca.pem` when given, otherwise Mozilla's roots (webpki-roots) plus the system's. That is
//! stricter than libpq's `require`, which encrypts without verifying: a man in the middle would defeat it.
//! `prefer` (tokio-postgres's default) and `disable` connect in plain text, as before, with no TLS set-up.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// A parsed connection URL and, when it asks for TLS, the connector that verifies the server.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: Option<MakeRustlsConnect>,
}

/// Parses `url`, taking out what tokio-postgres does not know (`sslmode=verify-ca|verify-full`, which it
/// reads as `require` after we take over verification, and `sslrootcert`).
pub fn target(url: &str) -> Result<Target> {
    let bad = |e: String| Error::Unavailable(format!("bad PostgreSQL URL: {e}"));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslrootcert", path)) => root_cert = Some(path.to_string()),
            Some(("sslmode", "verify-ca" | "verify-full")) => kept.push("sslmode=require"),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| bad(e.to_string()))?;
    let tls = match config.get_ssl_mode() {
        SslMode::Require => Some(connector(root_cert.as_deref())?),
        _ if root_cert.is_some() => {
            return Err(bad(
                "sslrootcert needs sslmode=require, verify-ca or verify-full".into(),
            ))
        }
        _ => None,
    };
    Ok(Target { config, tls })
}

fn connector(root_cert: Option<&str>) -> Result<MakeRustlsConnect> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| Error::Unavailable(format!("cannot read sslrootcert {path}: {e}")))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::Unavailable(format!(
                    "sslrootcert {path} holds no usable certificate"
                )));
            }
        }
        None => {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            // The system's store adds private CAs an operator installed; unreadable entries are skipped.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_decides_whether_tls_is_set_up() {
        let tls = |url: &str| target(url).map(|t| t.tls.is_some());
        assert!(!tls("postgres://u@h/db").unwrap());
        assert!(!tls("postgres://u@h/db?sslmode=disable").unwrap());
        assert!(!tls("postgres://u@h/db?sslmode=prefer").unwrap());
        assert!(tls("postgres://u@h/db?sslmode=require").unwrap());
        assert!(tls("postgres://u@h/db?sslmode=verify-full&connect_timeout=3").unwrap());
        assert!(tls("postgres://u@h/db?sslmode=verify-ca").unwrap());
        assert!(tls("postgres://u@h/db?sslmode=bogus").is_err());
        assert!(tls("postgres://u@h/db?sslrootcert=/nonexistent.pem").is_err());
        assert!(tls("postgres://u@h/db?sslmode=require&sslrootcert=/nonexistent.pem").is_err());
    }
}

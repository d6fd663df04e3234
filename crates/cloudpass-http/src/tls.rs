//! TLS server configurations from PEM files, for the HTTP port and the switch's ISO 8583
//! port: a certificate chain and its private key, and optionally the CA whose certificates
//! clients must present (mutual TLS, for acquirers). rustls with the ring provider; TLS 1.2
//! and 1.3 only. Errors name the file and what is wrong with it, never its contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Where a port's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate, then its chain.
    pub certificate: PathBuf,
    /// PEM: the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// PEM: the CA(s) that sign client certificates; with it, clients must present one.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: no PEM certificate could be read")]
    Certificate { path: String },
    #[error("{path}: no PEM private key could be read")]
    PrivateKey { path: String },
    #[error("{path}: no usable CA certificate")]
    ClientCa { path: String },
    #[error("the certificate and the private key do not make a TLS configuration: {0}")]
    Config(String),
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = || TlsError::Certificate {
        path: path.display().to_string(),
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|_| error())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| error())?;
    if certificates.is_empty() {
        return Err(error());
    }
    Ok(certificates)
}

/// Installs ring as the process's rustls provider (once; later calls do nothing).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS acceptor from `files`.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    install_provider();
    let chain = certificates(&files.certificate)?;
    let key =
        PrivateKeyDer::from_pem_file(&files.private_key).map_err(|_| TlsError::PrivateKey {
            path: files.private_key.display().to_string(),
        })?;
    let builder = rustls::ServerConfig::builder();
    let config = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let bad = || TlsError::ClientCa {
                path: path.display().to_string(),
            };
            let mut roots = RootCertStore::empty();
            for certificate in certificates(path).map_err(|_| bad())? {
                roots.add(certificate).map_err(|_| bad())?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|error| TlsError::Config(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    }
    .with_single_cert(chain, key)
    .map_err(|error| TlsError::Config(error.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

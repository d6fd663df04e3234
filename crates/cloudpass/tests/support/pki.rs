//! A test PKI made by rcgen: a CA, a server certificate for 127.0.0.1 (then its chain) and a
//! client certificate, as PEM files in a directory; TLS settings and clients that use them.

use std::path::Path;
use std::sync::Arc;

use cloudpass_http::tls::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A test CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
pub struct Pki {
    pub dir: std::path::PathBuf,
}

impl Pki {
    pub fn make(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        for (name, subject) in [("server", "127.0.0.1"), ("client", "acquirer-48021000")] {
            let key = KeyPair::generate().unwrap();
            let certificate = CertificateParams::new(vec![subject.to_owned()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            // The certificate, then its chain.
            std::fs::write(
                dir.join(format!("{name}.pem")),
                format!("{}{}", certificate.pem(), ca.pem()),
            )
            .unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir: dir.to_owned(),
        }
    }

    pub fn server(&self, client_ca: bool) -> TlsFiles {
        TlsFiles {
            certificate: self.dir.join("server.pem"),
            private_key: self.dir.join("server.key"),
            client_ca: client_ca.then(|| self.dir.join("ca.pem")),
        }
    }

    pub fn connector(&self, with_client_certificate: bool) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.dir.join("ca.pem")).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = if with_client_certificate {
            builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_file(self.dir.join("client.pem")).unwrap()],
                    PrivateKeyDer::from_pem_file(self.dir.join("client.key")).unwrap(),
                )
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

impl Pki {
    /// The PKI in `dir`, made there the first time.
    pub fn open_or_make(dir: &Path) -> Pki {
        if dir.join("ca.pem").exists() {
            Pki {
                dir: dir.to_owned(),
            }
        } else {
            Pki::make(dir)
        }
    }

    /// An HTTPS client that trusts the test CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(self.dir.join("ca.pem")).unwrap())
                    .unwrap(),
            )
            .build()
            .unwrap()
    }
}

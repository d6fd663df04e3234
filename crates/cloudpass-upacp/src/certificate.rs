//! The X.509 facts UPACP relies on: `certId` is the certificate's serial number in decimal;
//! a 5.1.0 signature is trusted when `signPubKeyCert` is within its validity dates, chains to
//! the middle and root CA the merchant holds, and its subject CN's third `@`-separated part
//! names the signer (reference/upacp.md §3). Parsing and signature checks are x509-parser's
//! over aws-lc-rs; nothing here implements X.509 or RSA.

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the text holds no PEM certificate")]
    NoPem,
    #[error("the certificate is not valid DER X.509")]
    NotX509,
    #[error("the certificate's key is not an RSA key")]
    NotRsa,
}

/// A parsed certificate, kept as its DER bytes (parsed again where a field is read; parsing
/// is cheap next to RSA).
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Certificate(certId {}, CN {})",
            self.cert_id(),
            self.common_name()
        )
    }
}

impl Certificate {
    /// The first certificate in PEM text (LF or CRLF line breaks, as `signPubKeyCert` has).
    pub fn from_pem(text: &str) -> Result<Certificate, CertificateError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(text.trim_start().as_bytes())
            .map_err(|_| CertificateError::NoPem)?;
        Certificate::from_der(pem.contents)
    }

    pub fn from_der(der: Vec<u8>) -> Result<Certificate, CertificateError> {
        X509Certificate::from_der(&der).map_err(|_| CertificateError::NotX509)?;
        let certificate = Certificate { der };
        if certificate.rsa_public_key_der().is_none() {
            return Err(CertificateError::NotRsa);
        }
        Ok(certificate)
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    fn with<T>(&self, read: impl FnOnce(&X509Certificate<'_>) -> T) -> Option<T> {
        X509Certificate::from_der(&self.der)
            .ok()
            .map(|(_, c)| read(&c))
    }

    /// `certId`: the serial number in decimal.
    pub fn cert_id(&self) -> String {
        self.with(|c| c.tbs_certificate.serial.to_string())
            .unwrap_or_default()
    }

    /// The subject's common name ("" when it has none).
    pub fn common_name(&self) -> String {
        self.with(|c| {
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
    }

    /// The subject's distinguished name, for messages.
    pub fn subject(&self) -> String {
        self.with(|c| c.subject().to_string()).unwrap_or_default()
    }

    /// Validity as unix seconds: (not before, not after).
    pub fn validity(&self) -> (i64, i64) {
        self.with(|c| {
            let v = c.validity();
            (v.not_before.timestamp(), v.not_after.timestamp())
        })
        .unwrap_or((0, 0))
    }

    /// Whether the certificate may sign others (basicConstraints cA).
    pub fn is_ca(&self) -> bool {
        self.with(|c| {
            c.basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|b| b.value.ca)
        })
        .unwrap_or(false)
    }

    /// The RSA public key as DER `RSAPublicKey`, the form signature checks take.
    pub fn rsa_public_key_der(&self) -> Option<Vec<u8>> {
        self.with(|c| {
            let spki = c.public_key();
            let is_rsa =
                spki.algorithm.algorithm == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
            is_rsa.then(|| spki.subject_public_key.data.to_vec())
        })
        .flatten()
    }

    /// The public key as DER `SubjectPublicKeyInfo`, the form encryption takes.
    pub fn public_key_info_der(&self) -> Option<Vec<u8>> {
        self.with(|c| c.public_key().raw.to_vec())
    }

    /// Whether `issuer`'s key signed this certificate.
    pub fn is_signed_by(&self, issuer: &Certificate) -> bool {
        let Ok((_, subject)) = X509Certificate::from_der(&self.der) else {
            return false;
        };
        let Ok((_, issuer)) = X509Certificate::from_der(&issuer.der) else {
            return false;
        };
        subject.verify_signature(Some(issuer.public_key())).is_ok()
    }

    /// The PEM text of the certificate with CRLF line breaks, as `signPubKeyCert` carries it.
    pub fn to_pem_crlf(&self) -> String {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(&self.der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\r\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push_str("\r\n");
        }
        pem.push_str("-----END CERTIFICATE-----");
        pem
    }
}

/// The signer name in a UnionPay-form CN (`041@Z…@<name>@…`): its third `@` part.
pub fn signer_name(common_name: &str) -> Option<&str> {
    common_name.split('@').nth(2)
}

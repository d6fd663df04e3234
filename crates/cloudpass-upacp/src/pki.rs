//! The platform's own certificates, shaped like UnionPay's so that a merchant verifies ours
//! exactly as it verifies theirs: a root CA, a middle CA under it, and under the middle a
//! signing certificate and an encryption certificate whose subject CN has UnionPay's form
//! `041@Z<issue date>@<signer name>@<sequence>` (a merchant's SDK checks the third part), and
//! 11-digit decimal serial numbers (`certId`).
//!
//! Keys are RSA-2048 from aws-lc-rs; certificates are made by rcgen (SHA256withRSA). This
//! module only makes them; where they are kept is the caller's business. Private keys leave
//! only as PKCS#8 in a `Zeroizing` buffer.

use cloudpass_core::Random;
use cloudpass_core::clock::civil_from_days;
use cloudpass_crypto::upacp::RsaSigningKey;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_RSA_SHA256, SerialNumber,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use zeroize::Zeroizing;

use crate::certificate::{Certificate, CertificateError};

/// The signer name UnionPay's test environment puts in its CN (and that merchant SDKs in
/// test mode accept); the sandbox uses it so that integrations work unchanged.
pub const TEST_SIGNER_NAME: &str = "00040000:SIGN";
/// How long the CAs are valid, and the certificates under them.
const CA_YEARS: i64 = 20;
const LEAF_YEARS: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("an RSA key could not be made: {0}")]
    Key(#[from] cloudpass_crypto::upacp::UpacpSignatureError),
    #[error("a certificate could not be made")]
    Certificate,
    #[error(transparent)]
    Read(#[from] CertificateError),
    #[error("the PKCS#12 file could not be made")]
    Pkcs12,
}

impl From<rcgen::Error> for PkiError {
    fn from(_: rcgen::Error) -> Self {
        PkiError::Certificate
    }
}

/// A certificate with its private key.
pub struct Issued {
    pub certificate: Certificate,
    /// PEM as rcgen writes it (LF line breaks).
    pub pem: String,
    pub key_pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Issued({:?}, private key)", self.certificate)
    }
}

impl Issued {
    pub fn signing_key(&self) -> Result<RsaSigningKey, PkiError> {
        Ok(RsaSigningKey::from_pkcs8_der(&self.key_pkcs8)?)
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn key_pem(&self) -> Zeroizing<String> {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(&*self.key_pkcs8);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Zeroizing::new(pem)
    }

    /// The key with its certificate and `chain` (the middle CA, then the root) as a PKCS#12
    /// file: what UnionPay's SDKs load as the signing certificate (`acpsdk.signCert.path`
    /// and `.pwd`). Encrypted with PBES2 (AES-256-CBC, PBKDF2-HMAC-SHA256) and sealed with an
    /// HMAC-SHA256 MAC, both keyed by `password`; the alias is the certificate's CN.
    pub fn to_pkcs12(&self, chain: &[&Certificate], password: &str) -> Result<Vec<u8>, PkiError> {
        use p12_keystore::{KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
        let pkcs12_certificate = |certificate: &Certificate| {
            p12_keystore::Certificate::from_der(certificate.der()).map_err(|_| PkiError::Pkcs12)
        };
        let mut certificates = vec![pkcs12_certificate(&self.certificate)?];
        for certificate in chain {
            certificates.push(pkcs12_certificate(certificate)?);
        }
        let key = PrivateKey::from_der(&self.key_pkcs8).map_err(|_| PkiError::Pkcs12)?;
        let local_key_id = self.certificate.cert_id();
        let mut store = KeyStore::new();
        store.add_entry(
            &self.certificate.common_name(),
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(
                local_key_id.as_str(),
                key,
                certificates,
            )),
        );
        store.writer(password).write().map_err(|_| PkiError::Pkcs12)
    }
}

/// The platform's certificates.
#[derive(Debug)]
pub struct PlatformPki {
    pub root: Issued,
    pub middle: Issued,
    /// Signs every response and notification (`signPubKeyCert`).
    pub signing: Issued,
    /// Merchants encrypt `accNo`, `pin` and `encryptedInfo` to it (`encryptCertId`).
    pub encryption: Issued,
}

/// What the new certificates say and when they start.
pub struct PkiRequest<'a> {
    /// The third `@` part of the signing certificate's CN.
    pub signer_name: &'a str,
    /// The first day of validity, as unix seconds.
    pub now: i64,
    pub random: &'a dyn Random,
}

impl PlatformPki {
    pub fn generate(request: &PkiRequest<'_>) -> Result<PlatformPki, PkiError> {
        let day = request.now.div_euclid(86_400);
        let (root, root_issuer) = make_ca("cloudpass UPACP root CA", None, day, request.random)?;
        let (middle, middle_issuer) = make_ca(
            "cloudpass UPACP middle CA",
            Some(&root_issuer),
            day,
            request.random,
        )?;
        let signing = issue_leaf(
            &middle_issuer,
            &cn(day, request.signer_name, 1),
            day,
            request.random,
        )?;
        let encryption_name = request.signer_name.replace(":SIGN", ":ENC");
        let encryption = issue_leaf(
            &middle_issuer,
            &cn(day, &encryption_name, 2),
            day,
            request.random,
        )?;
        Ok(PlatformPki {
            root,
            middle,
            signing,
            encryption,
        })
    }
}

/// A UnionPay-form CN: `041@Z<yyyyMMdd>@<name>@<8-digit sequence>`.
fn cn(day: i64, name: &str, sequence: u32) -> String {
    let (year, month, date) = civil_from_days(day);
    format!("041@Z{year:04}{month:02}{date:02}@{name}@{sequence:08}")
}

/// An 11-digit serial number, as UnionPay's are (68759663125).
fn serial(random: &dyn Random) -> SerialNumber {
    let value = 10_000_000_000 + random.next_u64() % 90_000_000_000;
    SerialNumber::from(value.to_be_bytes().to_vec())
}

fn params(
    common_name: &str,
    day: i64,
    years: i64,
    random: &dyn Random,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "cloudpass");
    params.serial_number = Some(serial(random));
    let (year, month, date) = civil_from_days(day);
    let year = i32::try_from(year).map_err(|_| PkiError::Certificate)?;
    let years = i32::try_from(years).map_err(|_| PkiError::Certificate)?;
    params.not_before = rcgen::date_time_ymd(year, month, date);
    params.not_after = rcgen::date_time_ymd(year + years, month, date.min(28));
    Ok(params)
}

/// A fresh RSA key, for rcgen and for us.
fn rsa_key() -> Result<(KeyPair, Zeroizing<Vec<u8>>), PkiError> {
    let (_, pkcs8) = RsaSigningKey::generate()?;
    let der = PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_RSA_SHA256)?;
    Ok((key_pair, pkcs8))
}

fn issued(
    certificate: rcgen::Certificate,
    key_pkcs8: Zeroizing<Vec<u8>>,
) -> Result<Issued, PkiError> {
    let pem = certificate.pem();
    Ok(Issued {
        certificate: Certificate::from_pem(&pem)?,
        pem,
        key_pkcs8,
    })
}

fn make_ca(
    name: &str,
    parent: Option<&Issuer<'static, KeyPair>>,
    day: i64,
    random: &dyn Random,
) -> Result<(Issued, Issuer<'static, KeyPair>), PkiError> {
    let (key_pair, pkcs8) = rsa_key()?;
    let mut params = params(name, day, CA_YEARS, random)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let certificate = match parent {
        Some(parent) => params.signed_by(&key_pair, parent)?,
        None => params.self_signed(&key_pair)?,
    };
    let issued = issued(certificate, pkcs8)?;
    Ok((issued, Issuer::new(params, key_pair)))
}

fn issue_leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    day: i64,
    random: &dyn Random,
) -> Result<Issued, PkiError> {
    let (key_pair, pkcs8) = rsa_key()?;
    let mut params = params(common_name, day, LEAF_YEARS, random)?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    issued(params.signed_by(&key_pair, issuer)?, pkcs8)
}

/// A merchant's signing certificate under the platform's middle CA, for a key the platform
/// makes: CN `041@Z<date>@<merId>:SIGN@00000001`, as UnionPay's merchant test certificates.
pub fn issue_merchant(
    middle: &Issued,
    mer_id: &str,
    request: &PkiRequest<'_>,
) -> Result<Issued, PkiError> {
    let der = PrivatePkcs8KeyDer::from(middle.key_pkcs8.to_vec());
    let middle_key = KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_RSA_SHA256)?;
    let issuer = Issuer::from_ca_cert_pem(&middle.pem, middle_key)?;
    let day = request.now.div_euclid(86_400);
    issue_leaf(
        &issuer,
        &cn(day, &format!("{mer_id}:SIGN"), 1),
        day,
        request.random,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::Form;
    use crate::signing::{self, Trust};
    use cloudpass_core::random::SeededRandom;

    const NOW: i64 = 1_796_169_600; // 2026-12-02

    #[test]
    fn the_platform_signs_what_a_merchant_verifies_through_the_chain() {
        let random = SeededRandom::new(7);
        let request = PkiRequest {
            signer_name: TEST_SIGNER_NAME,
            now: NOW,
            random: &random,
        };
        let pki = PlatformPki::generate(&request).unwrap();
        assert_eq!(
            pki.signing.certificate.common_name(),
            "041@Z20261202@00040000:SIGN@00000001"
        );
        assert_eq!(
            pki.encryption.certificate.common_name(),
            "041@Z20261202@00040000:ENC@00000002"
        );
        let cert_id = pki.signing.certificate.cert_id();
        assert_eq!(cert_id.len(), 11, "{cert_id}");
        assert!(pki.root.certificate.is_ca() && pki.middle.certificate.is_ca());
        assert!(!pki.signing.certificate.is_ca());

        let mut form = Form::new()
            .with("version", "5.1.0")
            .with("respCode", "00")
            .with("signPubKeyCert", pki.signing.certificate.to_pem_crlf());
        signing::sign_rsa(&mut form, &pki.signing.signing_key().unwrap()).unwrap();
        let trust = Trust {
            chain: Some((&pki.root.certificate, &pki.middle.certificate)),
            signer_name: Some(TEST_SIGNER_NAME),
            at: NOW + 3_600,
            ..Trust::default()
        };
        let report = signing::verify(&Form::parse_raw(&form.to_raw()).unwrap(), &trust);
        assert!(report.fully_verified(), "{report:?}");
        // Before its first day it is not valid.
        let early = Trust {
            at: NOW - 86_400,
            ..trust
        };
        assert!(!signing::verify(&form, &early).all_passed());
    }

    #[test]
    fn what_is_encrypted_to_the_encryption_certificate_its_key_opens() {
        use cloudpass_crypto::upacp::{RsaDecryptingKey, UpacpEncryptionError, encrypt_base64};
        // What a merchant encrypts: an accNo, here a made-up one.
        const PLAINTEXT: &[u8] = b"accNo 1234567890";
        let random = SeededRandom::new(11);
        let request = PkiRequest {
            signer_name: TEST_SIGNER_NAME,
            now: NOW,
            random: &random,
        };
        let pki = PlatformPki::generate(&request).unwrap();
        let public = pki.encryption.certificate.public_key_info_der().unwrap();
        let sealed = encrypt_base64(&public, PLAINTEXT).unwrap();
        assert!(
            !sealed
                .as_bytes()
                .windows(PLAINTEXT.len())
                .any(|w| w == PLAINTEXT)
        );
        let key = RsaDecryptingKey::from_pkcs8_der(&pki.encryption.key_pkcs8).unwrap();
        assert_eq!(key.decrypt_base64(&sealed).unwrap().as_slice(), PLAINTEXT);
        // Encrypted to another key (the signing certificate's), or not encrypted at all.
        let signing_public = pki.signing.certificate.public_key_info_der().unwrap();
        let elsewhere = encrypt_base64(&signing_public, PLAINTEXT).unwrap();
        assert_eq!(
            key.decrypt_base64(&elsewhere),
            Err(UpacpEncryptionError::Undecryptable)
        );
        assert_eq!(
            key.decrypt_base64("not base64!"),
            Err(UpacpEncryptionError::NotBase64)
        );
        assert!(!format!("{key:?}").contains("BEGIN"));
    }

    #[test]
    fn merchant_certificates_chain_to_the_platform() {
        let random = SeededRandom::new(8);
        let request = PkiRequest {
            signer_name: TEST_SIGNER_NAME,
            now: NOW,
            random: &random,
        };
        let pki = PlatformPki::generate(&request).unwrap();
        let merchant = issue_merchant(&pki.middle, "777290058110048", &request).unwrap();
        assert_eq!(
            crate::certificate::signer_name(&merchant.certificate.common_name()),
            Some("777290058110048:SIGN")
        );
        assert!(merchant.certificate.is_signed_by(&pki.middle.certificate));
        assert!(!merchant.certificate.is_signed_by(&pki.root.certificate));
        let key = merchant.signing_key().unwrap();
        assert_eq!(
            merchant.certificate.rsa_public_key_der().as_deref(),
            Some(key.public_key_der())
        );
        assert!(
            merchant
                .key_pem()
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert!(!format!("{merchant:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_merchant_pfx_holds_its_key_and_chain_under_the_password() {
        use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
        let random = SeededRandom::new(9);
        let request = PkiRequest {
            signer_name: TEST_SIGNER_NAME,
            now: NOW,
            random: &random,
        };
        let pki = PlatformPki::generate(&request).unwrap();
        let merchant = issue_merchant(&pki.middle, "777290058110048", &request).unwrap();
        let pfx = merchant
            .to_pkcs12(&[&pki.middle.certificate, &pki.root.certificate], "000000")
            .unwrap();

        let store = KeyStore::from_pkcs12(&pfx, "000000", Pkcs12ImportPolicy::Strict).unwrap();
        let (alias, chain) = store.private_key_chain().unwrap();
        assert_eq!(alias, merchant.certificate.common_name());
        assert_eq!(chain.key().as_der(), merchant.key_pkcs8.as_slice());
        let ders: Vec<&[u8]> = chain.certs().iter().map(|c| c.as_der()).collect();
        assert_eq!(
            ders,
            [
                merchant.certificate.der(),
                pki.middle.certificate.der(),
                pki.root.certificate.der()
            ]
        );
        assert!(KeyStore::from_pkcs12(&pfx, "000001", Pkcs12ImportPolicy::Strict).is_err());
    }
}

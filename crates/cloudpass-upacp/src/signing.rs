//! Signing and verifying whole UPACP forms: which algorithm a form asks for (`version`,
//! `signMethod`), what it signs (`Form::string_to_sign`) and, for 5.1.0 RSA signatures, the
//! certificate checks a merchant makes on `signPubKeyCert`.
//!
//! [`verify`] never stops at the first failure: it returns every check it made, so the
//! integrator tool can say exactly what failed, and the gateway asks only whether all passed.

use cloudpass_crypto::upacp::{
    self as algorithms, RsaDigest, RsaSigningKey, SecureKeyHash, UpacpSignatureError,
};

use crate::certificate::{Certificate, signer_name};
use crate::form::Form;

/// The protocol versions we read. We sign only 5.1.0: see [`sign_rsa`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V5_0_0,
    V5_1_0,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        match text {
            "5.0.0" => Some(Version::V5_0_0),
            "5.1.0" => Some(Version::V5_1_0),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V5_0_0 => "5.0.0",
            Version::V5_1_0 => "5.1.0",
        }
    }

    fn rsa_digest(self) -> RsaDigest {
        match self {
            Version::V5_0_0 => RsaDigest::Sha1,
            Version::V5_1_0 => RsaDigest::Sha256,
        }
    }
}

/// `signMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMethod {
    /// 01: RSA with a certificate.
    Rsa,
    /// 11: SHA-256 with the merchant's secure key.
    SecureKeySha256,
    /// 12: SM3 with the merchant's secure key.
    SecureKeySm3,
}

impl SignMethod {
    pub fn parse(text: &str) -> Option<SignMethod> {
        match text {
            "01" => Some(SignMethod::Rsa),
            "11" => Some(SignMethod::SecureKeySha256),
            "12" => Some(SignMethod::SecureKeySm3),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            SignMethod::Rsa => "01",
            SignMethod::SecureKeySha256 => "11",
            SignMethod::SecureKeySm3 => "12",
        }
    }

    fn secure_key_hash(self) -> Option<SecureKeyHash> {
        match self {
            SignMethod::Rsa => None,
            SignMethod::SecureKeySha256 => Some(SecureKeyHash::Sha256),
            SignMethod::SecureKeySm3 => Some(SecureKeyHash::Sm3),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("version must be 5.1.0 to sign with RSA: SHA-1 (5.0.0) signing is not offered")]
    RsaNeeds510,
    #[error(transparent)]
    Algorithm(#[from] UpacpSignatureError),
}

/// Signs `form` with signMethod 01 (5.1.0): blank fields are dropped first (they are neither
/// signed nor sent), `signMethod` is set, and `signature` added. The caller sets `version`,
/// and `certId` (requests) or `signPubKeyCert` (responses, notifications) before signing.
pub fn sign_rsa(form: &mut Form, key: &RsaSigningKey) -> Result<(), SignError> {
    if form.get("version") != Some(Version::V5_1_0.as_str()) {
        return Err(SignError::RsaNeeds510);
    }
    form.drop_blank();
    form.remove("signature");
    form.set("signMethod", SignMethod::Rsa.code());
    let signature = key.sign(form.string_to_sign().as_bytes())?;
    form.set("signature", signature);
    Ok(())
}

/// Signs `form` with a merchant's secure key (signMethod 11 or 12; `certId` is not sent).
pub fn sign_secure_key(form: &mut Form, method: SignMethod, secure_key: &[u8]) {
    form.drop_blank();
    form.remove("signature");
    form.remove("certId");
    form.set("signMethod", method.code());
    let hash = method.secure_key_hash().unwrap_or(SecureKeyHash::Sha256);
    let signature =
        algorithms::secure_key_signature(hash, secure_key, form.string_to_sign().as_bytes());
    form.set("signature", signature);
}

/// What a verifier trusts.
#[derive(Debug, Default)]
pub struct Trust<'a> {
    /// Root and middle CA for 5.1.0 `signPubKeyCert` chains; `None` skips the chain check,
    /// and the report says so.
    pub chain: Option<(&'a Certificate, &'a Certificate)>,
    /// The certificate to use when the form carries none (5.0.0, or a merchant's request
    /// carrying `certId`): looked up by the caller from `certId`.
    pub known_certificate: Option<&'a Certificate>,
    /// The signer name the CN must carry (its third `@` part); `None` skips the check.
    pub signer_name: Option<&'a str>,
    /// The merchant's secure key for signMethod 11/12.
    pub secure_key: Option<&'a [u8]>,
    /// The moment at which certificates must be valid (unix seconds).
    pub at: i64,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed(String),
    Failed(String),
    NotChecked(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
}

/// Every check a verification made, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
    /// The exact string the signature covers.
    pub string_to_sign: String,
}

impl Report {
    fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            outcome: Outcome::Passed(detail.into()),
        });
    }
    fn fail(&mut self, name: &'static str, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            outcome: Outcome::Failed(detail.into()),
        });
    }
    fn skip(&mut self, name: &'static str, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            outcome: Outcome::NotChecked(detail.into()),
        });
    }

    /// True when every check made passed (checks not made do not count against it).
    pub fn all_passed(&self) -> bool {
        !self.checks.is_empty()
            && self
                .checks
                .iter()
                .all(|c| !matches!(c.outcome, Outcome::Failed(_)))
    }

    /// True when everything passed and nothing was left unchecked.
    pub fn fully_verified(&self) -> bool {
        self.checks
            .iter()
            .all(|c| matches!(c.outcome, Outcome::Passed(_)))
            && !self.checks.is_empty()
    }

    /// The names of the checks that failed, in order.
    pub fn failures(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
            .map(|c| c.name)
            .collect()
    }

    pub fn first_failure(&self) -> Option<&Check> {
        self.checks
            .iter()
            .find(|c| matches!(c.outcome, Outcome::Failed(_)))
    }
}

/// Verifies a received form: its version and signMethod, then the signature with the key the
/// method calls for, then (RSA) the certificate's dates, chain and CN.
pub fn verify(form: &Form, trust: &Trust<'_>) -> Report {
    let mut report = Report {
        checks: Vec::new(),
        string_to_sign: form.string_to_sign(),
    };
    let Some(version) = form.get("version").and_then(Version::parse) else {
        report.fail("version", "version must be 5.1.0 or 5.0.0");
        return report;
    };
    let Some(method) = form.get("signMethod").and_then(SignMethod::parse) else {
        report.fail("signMethod", "signMethod must be 01, 11 or 12");
        return report;
    };
    let Some(signature) = form.non_blank("signature") else {
        report.fail("signature", "the form carries no signature");
        return report;
    };
    match method.secure_key_hash() {
        Some(hash) => verify_secure_key(&mut report, hash, trust, signature),
        None => verify_rsa(&mut report, form, version, trust, signature),
    }
    report
}

fn verify_secure_key(report: &mut Report, hash: SecureKeyHash, trust: &Trust<'_>, signature: &str) {
    let Some(key) = trust.secure_key else {
        report.fail(
            "secure key",
            "signMethod 11/12 needs the merchant's secure key",
        );
        return;
    };
    if algorithms::verify_secure_key(hash, key, report.string_to_sign.as_bytes(), signature) {
        report.pass("signature", "the secure-key digest matches");
    } else {
        report.fail(
            "signature",
            "the secure-key digest does not match the string to sign",
        );
    }
}

fn verify_rsa(
    report: &mut Report,
    form: &Form,
    version: Version,
    trust: &Trust<'_>,
    signature: &str,
) {
    let embedded = form.non_blank("signPubKeyCert").map(Certificate::from_pem);
    let certificate = match (embedded, trust.known_certificate) {
        (Some(Ok(certificate)), _) => certificate,
        (Some(Err(error)), _) => {
            report.fail(
                "signPubKeyCert",
                format!("signPubKeyCert is unreadable: {error}"),
            );
            return;
        }
        (None, Some(known)) => {
            let cert_id = form.get("certId").unwrap_or_default();
            if cert_id != known.cert_id() {
                report.fail(
                    "certId",
                    format!(
                        "the form's certId {cert_id} is not the serial {} of the certificate given",
                        known.cert_id()
                    ),
                );
                return;
            }
            known.clone()
        }
        (None, None) => {
            report.fail(
                "certificate",
                "no signPubKeyCert in the form and no certificate for its certId",
            );
            return;
        }
    };
    let Some(public_key) = certificate.rsa_public_key_der() else {
        report.fail("certificate", "the certificate holds no RSA key");
        return;
    };
    let digest = version.rsa_digest();
    match algorithms::verify_rsa(&public_key, digest, report.string_to_sign.as_bytes(), signature) {
        Ok(()) => {
            let (digest_name, algorithm) = digest_names(digest);
            let detail = format!("{algorithm} over the {digest_name} hex digest, certId {}", certificate.cert_id());
            report.pass("signature", detail)
        }
        Err(UpacpSignatureError::SignatureNotBase64) => report.fail("signature", "signature is not base64"),
        Err(_) => report.fail(
            "signature",
            format!(
                "digest mismatch: {} of the string to sign is {}, and the signature does not sign it under certId {}",
                digest_names(digest).0,
                algorithms::hex_digest(digest, report.string_to_sign.as_bytes()),
                certificate.cert_id()
            ),
        ),
    }
    check_certificate(report, &certificate, trust);
}

/// The digest's name and the signature algorithm's, as UnionPay's documents write them.
fn digest_names(digest: RsaDigest) -> (&'static str, &'static str) {
    match digest {
        RsaDigest::Sha256 => ("SHA-256", "SHA256withRSA"),
        RsaDigest::Sha1 => ("SHA-1", "SHA1withRSA"),
    }
}

/// A moment as `2026-01-01T00:00:00Z`.
fn utc(unix_seconds: i64) -> String {
    let (year, month, day) =
        cloudpass_core::clock::civil_from_days(unix_seconds.div_euclid(86_400));
    let second = unix_seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second / 3_600,
        second % 3_600 / 60,
        second % 60
    )
}

fn check_certificate(report: &mut Report, certificate: &Certificate, trust: &Trust<'_>) {
    let (not_before, not_after) = certificate.validity();
    if trust.at < not_before || trust.at > not_after {
        report.fail(
            "validity",
            format!(
                "the certificate is valid from {} to {}, not at {}",
                utc(not_before),
                utc(not_after),
                utc(trust.at)
            ),
        );
    } else {
        report.pass(
            "validity",
            format!("valid from {} to {}", utc(not_before), utc(not_after)),
        );
    }
    match trust.chain {
        None => report.skip(
            "chain",
            "no root and middle certificate given: the chain was not checked",
        ),
        Some((root, middle)) => check_chain(report, certificate, root, middle, trust.at),
    }
    let common_name = certificate.common_name();
    match trust.signer_name {
        None => report.skip(
            "CN",
            format!("CN is {common_name}; no signer name required"),
        ),
        Some(expected) if signer_name(&common_name) == Some(expected) => {
            report.pass("CN", format!("CN {common_name} names {expected}"))
        }
        Some(expected) => report.fail(
            "CN",
            format!("CN {common_name} does not name {expected} in its third @ part"),
        ),
    }
}

fn check_chain(
    report: &mut Report,
    leaf: &Certificate,
    root: &Certificate,
    middle: &Certificate,
    at: i64,
) {
    let dated = |c: &Certificate| {
        let (from, to) = c.validity();
        from <= at && at <= to
    };
    if !middle.is_ca() || !root.is_ca() {
        report.fail(
            "chain",
            "the root or middle certificate given is not a CA certificate",
        );
    } else if !dated(middle) || !dated(root) {
        report.fail(
            "chain",
            "the root or middle certificate is outside its validity dates",
        );
    } else if !leaf.is_signed_by(middle) {
        report.fail(
            "chain",
            format!(
                "the signing certificate was not issued by the middle CA {}",
                middle.subject()
            ),
        );
    } else if !middle.is_signed_by(root) {
        report.fail(
            "chain",
            format!(
                "the middle CA was not issued by the root {}",
                root.subject()
            ),
        );
    } else {
        report.pass(
            "chain",
            format!("issued by {} under {}", middle.subject(), root.subject()),
        );
    }
}

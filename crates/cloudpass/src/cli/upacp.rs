//! `cloudpass upacp sign|verify`: an integrator's tools for UPACP forms, ours or UnionPay's.
//! Both read one form on stdin (a final line break ignored), raw (`k=v&…` as UPACP responses are written) or URL-encoded
//! (as requests and notifications are posted).

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use cloudpass_crypto::upacp::RsaSigningKey;
use cloudpass_upacp::signing::{self, Outcome, SignMethod, Trust};
use cloudpass_upacp::{Certificate, Form};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use zeroize::Zeroizing;

use super::CliResult;

/// The most a form on stdin may be: UPACP messages are a few kilobytes.
const MAX_FORM_BYTES: u64 = 1 << 20;

#[derive(Clone, Copy, ValueEnum)]
pub enum Method {
    /// 01: RSA (SHA256withRSA over the SHA-256 hex digest), version 5.1.0.
    #[value(name = "01")]
    Rsa,
    /// 11: SHA-256 with a secure key.
    #[value(name = "11")]
    Sha256,
    /// 12: SM3 with a secure key.
    #[value(name = "12")]
    Sm3,
}

#[derive(Subcommand)]
pub enum UpacpCommand {
    /// Sign a form read on stdin; print it signed (URL-encoded, ready to POST).
    Sign {
        #[arg(long, value_enum, default_value = "01")]
        method: Method,
        /// PKCS#8 PEM private key (method 01). From a UnionPay PFX:
        /// `openssl pkcs12 -legacy -in sign.pfx -nocerts -nodes | openssl pkcs8 -topk8 -nocrypt`.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The signing certificate (PEM, method 01): its serial becomes certId.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Carry the certificate as signPubKeyCert instead of certId, as responses and
        /// notifications do.
        #[arg(long)]
        embed_cert: bool,
        /// File holding the secure key (methods 11 and 12).
        #[arg(long)]
        secure_key_file: Option<PathBuf>,
        /// Print the raw form (`k=v&…` unencoded) instead of URL-encoded.
        #[arg(long)]
        raw: bool,
    },
    /// Make a platform PKI in UnionPay's shape into a new directory: root and middle CA,
    /// a signing and an encryption certificate (CN `041@Z<date>@<signer name>@…`, 11-digit
    /// decimal serials), keys as PKCS#8 PEM in 0600 files (the root's is not kept). Nothing
    /// is read from stdin.
    Pki {
        /// The directory to create; it must not exist.
        #[arg(long)]
        out: PathBuf,
        /// The third `@` part of the signing certificate's CN.
        #[arg(long, default_value = cloudpass_upacp::pki::TEST_SIGNER_NAME)]
        signer_name: String,
    },
    /// Verify a form read on stdin: print every check and exit 0 only when all that was
    /// checked holds.
    Verify {
        /// Root CA certificate (PEM) the signing certificate must chain to, with --middle.
        #[arg(long, requires = "middle")]
        root: Option<PathBuf>,
        /// Middle CA certificate (PEM) that issued the signing certificate, with --root.
        #[arg(long, requires = "root")]
        middle: Option<PathBuf>,
        /// The signer's certificate when the form carries only certId (5.0.0, or a request).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// The name the signing certificate's CN must carry in its third `@` part
        /// (UnionPay's: 中国银联股份有限公司).
        #[arg(long)]
        signer_name: Option<String>,
        /// File holding the secure key (methods 11 and 12).
        #[arg(long)]
        secure_key_file: Option<PathBuf>,
        /// When the certificates must be valid: yyyyMMddHHmmss Beijing time (as txnTime) or
        /// unix seconds. Default: now.
        #[arg(long)]
        at: Option<String>,
    },
}

pub fn run(command: UpacpCommand) -> CliResult {
    if let UpacpCommand::Pki { out, signer_name } = &command {
        return make_pki(out, signer_name);
    }
    let form = read_form()?;
    match command {
        UpacpCommand::Pki { .. } => Ok(()),
        UpacpCommand::Sign {
            method,
            key,
            cert,
            embed_cert,
            secure_key_file,
            raw,
        } => {
            let signed = sign(form, method, key, cert, embed_cert, secure_key_file)?;
            println!(
                "{}",
                if raw {
                    signed.to_raw()
                } else {
                    signed.to_urlencoded()
                }
            );
            Ok(())
        }
        UpacpCommand::Verify {
            root,
            middle,
            cert,
            signer_name,
            secure_key_file,
            at,
        } => {
            let chain = match (root, middle) {
                (Some(root), Some(middle)) => {
                    Some((read_certificate(&root)?, read_certificate(&middle)?))
                }
                _ => None,
            };
            let known = cert.map(|path| read_certificate(&path)).transpose()?;
            let secure_key = secure_key_file.map(|path| read_secret(&path)).transpose()?;
            let trust = Trust {
                chain: chain.as_ref().map(|(root, middle)| (root, middle)),
                known_certificate: known.as_ref(),
                signer_name: signer_name.as_deref(),
                secure_key: secure_key.as_ref().map(|key| key.as_slice()),
                at: parse_at(at.as_deref())?,
            };
            print_report(&signing::verify(&form, &trust))
        }
    }
}

fn make_pki(out: &Path, signer_name: &str) -> CliResult {
    if out.exists() {
        return Err(format!("{} exists; give a new directory", out.display()));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .map_err(|_| "the system clock is before 1970".to_string())?;
    let random = cloudpass_crypto::OsRandom;
    let request = cloudpass_upacp::pki::PkiRequest {
        signer_name,
        now,
        random: &random,
    };
    let pki = cloudpass_upacp::pki::PlatformPki::generate(&request).map_err(|e| e.to_string())?;
    cloudpass::data_dir::create_private_dir(out)?;
    for (name, issued) in [
        ("root", &pki.root),
        ("middle", &pki.middle),
        ("sign", &pki.signing),
        ("encrypt", &pki.encryption),
    ] {
        std::fs::write(out.join(format!("{name}.pem")), &issued.pem)
            .map_err(|e| format!("cannot write {name}.pem: {e}"))?;
        if name != "root" {
            cloudpass::data_dir::write_private(
                &out.join(format!("{name}.key")),
                issued.key_pem().as_bytes(),
            )?;
        }
        println!(
            "{:<12} certId {:<12} CN {}",
            format!("{name}.pem"),
            issued.certificate.cert_id(),
            issued.certificate.common_name()
        );
    }
    println!("keys: middle.key, sign.key, encrypt.key (0600); the root's key was not kept");
    Ok(())
}

fn read_form() -> Result<Form, String> {
    let mut body = Vec::new();
    std::io::stdin()
        .take(MAX_FORM_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|error| format!("cannot read the form on stdin: {error}"))?;
    if body.len() as u64 > MAX_FORM_BYTES {
        return Err(format!(
            "the form on stdin is longer than {MAX_FORM_BYTES} bytes"
        ));
    }
    // The line break a shell or an editor adds after the form is not part of it.
    if body.last() == Some(&b'\n') {
        body.pop();
    }
    Form::parse_either(&body).map_err(|error| format!("stdin is not a UPACP form: {error}"))
}

fn sign(
    mut form: Form,
    method: Method,
    key: Option<PathBuf>,
    cert: Option<PathBuf>,
    embed_cert: bool,
    secure_key_file: Option<PathBuf>,
) -> Result<Form, String> {
    form.remove("signature");
    match method {
        Method::Rsa => {
            let key = key.ok_or("method 01 needs --key (a PKCS#8 PEM private key)")?;
            let cert =
                cert.ok_or("method 01 needs --cert (the signing certificate, for certId)")?;
            let certificate = read_certificate(&cert)?;
            let signing_key = read_private_key(&key)?;
            if certificate.rsa_public_key_der().as_deref() != Some(signing_key.public_key_der()) {
                return Err(format!(
                    "{} is not the certificate of the key in {}",
                    cert.display(),
                    key.display()
                ));
            }
            if embed_cert {
                form.remove("certId");
                form.set("signPubKeyCert", certificate.to_pem_crlf());
            } else {
                form.set("certId", certificate.cert_id());
            }
            signing::sign_rsa(&mut form, &signing_key).map_err(|error| error.to_string())?;
        }
        Method::Sha256 | Method::Sm3 => {
            let path = secure_key_file.ok_or("methods 11 and 12 need --secure-key-file")?;
            let secure_key = read_secret(&path)?;
            let method = if matches!(method, Method::Sha256) {
                SignMethod::SecureKeySha256
            } else {
                SignMethod::SecureKeySm3
            };
            signing::sign_secure_key(&mut form, method, &secure_key);
        }
    }
    Ok(form)
}

fn read_certificate(path: &Path) -> Result<Certificate, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    Certificate::from_pem(&text).map_err(|error| format!("{}: {error}", path.display()))
}

fn read_private_key(path: &Path) -> Result<RsaSigningKey, String> {
    let der = PrivatePkcs8KeyDer::from_pem_file(path).map_err(|_| {
        format!(
            "{} holds no PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)",
            path.display()
        )
    })?;
    RsaSigningKey::from_pkcs8_der(der.secret_pkcs8_der())
        .map_err(|error| format!("{}: {error}", path.display()))
}

/// A secret from a file, without a trailing line break.
fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut bytes = Zeroizing::new(
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?,
    );
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Ok(bytes)
}

fn parse_at(at: Option<&str>) -> Result<i64, String> {
    let Some(text) = at else {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .map_err(|_| "the system clock is before 1970".to_string());
    };
    if text.len() == 14 {
        return cloudpass_upacp::time::parse_beijing(text)
            .ok_or_else(|| "--at is not a real yyyyMMddHHmmss time".to_string());
    }
    text.parse::<i64>()
        .map_err(|_| "--at must be yyyyMMddHHmmss (Beijing time) or unix seconds".to_string())
}

fn print_report(report: &signing::Report) -> CliResult {
    for check in &report.checks {
        match &check.outcome {
            Outcome::Passed(detail) => println!("ok       {:<15} {detail}", check.name),
            Outcome::Failed(detail) => println!("FAILED   {:<15} {detail}", check.name),
            Outcome::NotChecked(detail) => println!("unchecked {:<14} {detail}", check.name),
        }
    }
    let failures = report.failures();
    if !failures.is_empty() {
        if failures.contains(&"signature") {
            println!("string to sign:\n{}", report.string_to_sign);
        }
        return Err(format!(
            "the form does not verify: {} failed",
            failures.join(", ")
        ));
    }
    if report.fully_verified() {
        println!("verified");
    } else {
        println!("verified as far as checked: see the unchecked lines");
    }
    Ok(())
}

//! `cloudpass upacp sign|verify` against an independent UPACP implementation: a Python peer
//! written from reference/upacp.md with PyPI `cryptography` (tests/interop/upacp_peer.py)
//! makes a root, a middle CA and a signing certificate, signs forms the way UnionPay's SDKs
//! do (5.1.0, 5.0.0's SHA-1 form, secure key), and verifies what our CLI signs. Each test then
//! breaks one thing and reads what the CLI says failed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A form as a merchant's app consume request carries it, with a nested value.
const FORM: &str = "version=5.1.0&encoding=UTF-8&txnType=01&txnSubType=01&bizType=000201&channelType=08&accessType=0&merId=777290058110048&orderId=20261202001&txnTime=20261202120000&txnAmt=100&currencyCode=156&backUrl=https://merchant.example/notify&reserved={cardNumberLock=1&x=y}";

fn run(program: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn cloudpass(args: &[&str], stdin: &str) -> (bool, String) {
    let output = run(Path::new(env!("CARGO_BIN_EXE_cloudpass")), args, stdin);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn peer(args: &[&str], stdin: &str) -> String {
    let script = support::interop_dir().join("upacp_peer.py");
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = run(&support::interop_python(), &all, stdin);
    assert!(
        output.status.success(),
        "upacp_peer.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

fn pki(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("upacp-{name}-{}", std::process::id()));
    peer(&["pki", dir.to_str().unwrap()], "");
    dir
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

#[test]
fn verifies_what_an_independent_signer_signed_and_says_what_breaks() {
    let dir = pki("verify");
    let signed = peer(&["sign", dir.to_str().unwrap(), "510"], FORM);
    let (root, middle) = (file(&dir, "root.pem"), file(&dir, "middle.pem"));
    let chain = [
        "upacp",
        "verify",
        "--root",
        &root,
        "--middle",
        &middle,
        "--signer-name",
        "cloudpass",
        "--at",
        "20270101000000",
    ];

    let (ok, out) = cloudpass(&chain, &signed);
    assert!(ok, "{out}");
    assert!(
        out.contains("ok       signature") && out.contains("68759663125"),
        "{out}"
    );
    assert!(
        out.contains("ok       chain") && out.contains("ok       CN"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("verified"), "{out}");

    // One amount changed: the digest no longer matches and the CLI shows what was signed.
    let tampered = signed.replace("txnAmt=100", "txnAmt=1000");
    let (ok, out) = cloudpass(&chain, &tampered);
    assert!(!ok);
    assert!(
        out.contains("FAILED   signature") && out.contains("digest mismatch"),
        "{out}"
    );
    assert!(
        out.contains("string to sign:\naccessType=0&backUrl="),
        "{out}"
    );

    // Another merchant's idea of the CA.
    let other = pki("other");
    let (ok, out) = cloudpass(
        &[
            "upacp",
            "verify",
            "--root",
            &file(&other, "root.pem"),
            "--middle",
            &file(&other, "middle.pem"),
            "--at",
            "20270101000000",
        ],
        &signed,
    );
    assert!(!ok && out.contains("FAILED   chain"), "{out}");

    // Outside the certificate's dates; a CN that names someone else.
    let (ok, out) = cloudpass(&["upacp", "verify", "--at", "20400101000000"], &signed);
    assert!(!ok && out.contains("FAILED   validity"), "{out}");
    let (ok, out) = cloudpass(
        &[
            "upacp",
            "verify",
            "--signer-name",
            "中国银联股份有限公司",
            "--at",
            "20270101000000",
        ],
        &signed,
    );
    assert!(!ok && out.contains("FAILED   CN"), "{out}");

    // No roots: the signature and dates hold, and the CLI says plainly the chain was not
    // checked.
    let (ok, out) = cloudpass(&["upacp", "verify", "--at", "20270101000000"], &signed);
    assert!(ok, "{out}");
    assert!(
        out.contains("the chain was not checked") && out.contains("verified as far as checked"),
        "{out}"
    );
}

#[test]
fn verifies_the_5_0_0_sha1_form_and_secure_keys() {
    let dir = pki("legacy");
    let signed = peer(&["sign", dir.to_str().unwrap(), "500"], FORM);
    assert!(signed.contains("certId=68759663125") && !signed.contains("signPubKeyCert"));
    let cert = file(&dir, "sign.pem");
    let (ok, out) = cloudpass(
        &["upacp", "verify", "--cert", &cert, "--at", "20270101000000"],
        &signed,
    );
    assert!(ok, "{out}");
    let (ok, out) = cloudpass(&["upacp", "verify", "--at", "20270101000000"], &signed);
    assert!(
        !ok && out.contains("no certificate for its certId"),
        "{out}"
    );

    let signed = peer(&["sign", dir.to_str().unwrap(), "11"], FORM);
    let key = file(&dir, "secure.key");
    let (ok, out) = cloudpass(&["upacp", "verify", "--secure-key-file", &key], &signed);
    assert!(ok, "{out}");
    let (ok, out) = cloudpass(
        &["upacp", "verify", "--secure-key-file", &key],
        &signed.replace("txnAmt=100", "txnAmt=1"),
    );
    assert!(!ok && out.contains("FAILED   signature"), "{out}");
}

#[test]
fn what_we_sign_an_independent_verifier_accepts() {
    let dir = pki("sign");
    let (key, cert) = (file(&dir, "sign.key"), file(&dir, "sign.pem"));
    let (ok, signed) = cloudpass(
        &[
            "upacp",
            "sign",
            "--key",
            &key,
            "--cert",
            &cert,
            "--embed-cert",
        ],
        FORM,
    );
    assert!(ok, "{signed}");
    assert!(signed.contains("signMethod=01") && signed.contains("signPubKeyCert="));
    let verdict = peer(&["verify", dir.to_str().unwrap()], &signed);
    assert_eq!(verdict, "verified 01 68759663125");

    // The key must belong to the certificate; a form must be a form.
    let other = pki("sign-other");
    let (ok, out) = cloudpass(
        &[
            "upacp",
            "sign",
            "--key",
            &file(&other, "sign.key"),
            "--cert",
            &cert,
        ],
        FORM,
    );
    assert!(
        !ok && out.contains("is not the certificate of the key"),
        "{out}"
    );
    let (ok, out) = cloudpass(&["upacp", "sign", "--key", &key, "--cert", &cert], "a=1&b");
    assert!(
        !ok && out.contains("stdin is not a UPACP form: a pair has no '='"),
        "{out}"
    );
    let (ok, out) = cloudpass(
        &["upacp", "sign", "--key", &key, "--cert", &cert],
        &FORM.replace("5.1.0", "5.0.0"),
    );
    assert!(!ok && out.contains("version must be 5.1.0"), "{out}");
}

#[test]
fn a_platform_pki_made_here_verifies_in_an_independent_implementation() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("upacp-pki-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, out) = cloudpass(&["upacp", "pki", "--out", dir.to_str().unwrap()], "");
    assert!(ok, "{out}");
    assert!(
        out.contains("CN 041@Z") && out.contains("@00040000:SIGN@00000001"),
        "{out}"
    );
    let (ok, out) = cloudpass(&["upacp", "pki", "--out", dir.to_str().unwrap()], "");
    assert!(!ok && out.contains("exists"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("sign.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the signing key is private");
        assert!(!dir.join("root.key").exists());
    }
    let (key, cert) = (file(&dir, "sign.key"), file(&dir, "sign.pem"));
    let (ok, signed) = cloudpass(
        &[
            "upacp",
            "sign",
            "--key",
            &key,
            "--cert",
            &cert,
            "--embed-cert",
        ],
        FORM,
    );
    assert!(ok, "{signed}");
    // Python's `cryptography` checks the chain (root → middle → signing certificate), the
    // CN and the signature.
    let verdict = peer(&["verify", dir.to_str().unwrap(), "00040000:SIGN"], &signed);
    assert!(verdict.starts_with("verified 01 "), "{verdict}");
}

//! Signing and verifying whole forms against a real certificate chain made by rcgen: a root,
//! a middle CA and a signing certificate in UnionPay's CN form with a known serial. Each test
//! breaks one thing (a field, the chain, the dates, the CN, the key) and checks that exactly
//! that check fails and says why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cloudpass_crypto::upacp::RsaSigningKey;
use cloudpass_upacp::signing::{self, Outcome, SignMethod, Trust};
use cloudpass_upacp::{Certificate, Form};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_RSA_SHA256,
    SerialNumber,
};
use rustls_pki_types::PrivatePkcs8KeyDer;

struct Chain {
    root: Certificate,
    middle: Certificate,
    leaf: Certificate,
    key: RsaSigningKey,
    not_before: i64,
}

fn rsa_key() -> (RsaSigningKey, KeyPair) {
    let (key, pkcs8) = RsaSigningKey::generate().unwrap();
    let der = PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    (
        key,
        KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_RSA_SHA256).unwrap(),
    )
}

fn params(cn: &str, serial: u64, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.serial_number = Some(SerialNumber::from(serial.to_be_bytes().to_vec()));
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2031, 1, 1);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params
}

fn chain(leaf_cn: &str) -> Chain {
    let (_, root_key) = rsa_key();
    let root_params = params("cloudpass test root", 1, true);
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let (_, middle_key) = rsa_key();
    let middle_params = params("cloudpass test middle", 2, true);
    let middle = middle_params.signed_by(&middle_key, &root_issuer).unwrap();
    let middle_issuer = Issuer::new(middle_params, middle_key);
    let (key, leaf_key) = rsa_key();
    let leaf = params(leaf_cn, 68_759_663_125, false)
        .signed_by(&leaf_key, &middle_issuer)
        .unwrap();
    Chain {
        root: Certificate::from_pem(&root.pem()).unwrap(),
        middle: Certificate::from_pem(&middle.pem()).unwrap(),
        leaf: Certificate::from_pem(&leaf.pem()).unwrap(),
        key,
        not_before: 1_767_225_600, // 2026-01-01
    }
}

fn response() -> Form {
    Form::new()
        .with("version", "5.1.0")
        .with("encoding", "UTF-8")
        .with("txnType", "01")
        .with("respCode", "00")
        .with("respMsg", "成功[0000000]")
        .with("reserved", "{cardNumberLock=1&x=y}")
        .with("reqReserved", "")
        .with("tn", "611854042060710157601")
}

fn signed(chain: &Chain) -> Form {
    let mut form = response().with("signPubKeyCert", chain.leaf.to_pem_crlf());
    signing::sign_rsa(&mut form, &chain.key).unwrap();
    form
}

fn trust(chain: &Chain) -> Trust<'_> {
    Trust {
        chain: Some((&chain.root, &chain.middle)),
        signer_name: Some("cloudpass"),
        at: chain.not_before + 86_400,
        ..Trust::default()
    }
}

fn failure(report: &signing::Report) -> (&'static str, String) {
    let check = report.first_failure().expect("a check failed");
    match &check.outcome {
        Outcome::Failed(why) => (check.name, why.clone()),
        _ => unreachable!(),
    }
}

#[test]
fn a_signed_response_verifies_through_its_raw_encoding() {
    let chain = chain("041@Z0000001@cloudpass@00000001");
    assert_eq!(chain.leaf.cert_id(), "68759663125");
    let form = signed(&chain);
    assert_eq!(form.get("signMethod"), Some("01"));
    assert_eq!(
        form.get("reqReserved"),
        None,
        "blank fields are neither signed nor sent"
    );
    // What a merchant receives is the raw encoding; it parses back to the same form.
    let received = Form::parse_raw(&form.to_raw()).unwrap();
    let report = signing::verify(&received, &trust(&chain));
    assert!(report.fully_verified(), "{report:?}");
    assert_eq!(report.string_to_sign, form.string_to_sign());
    assert!(!report.string_to_sign.contains("signature="));
}

#[test]
fn a_changed_field_is_a_digest_mismatch() {
    let chain = chain("041@Z0000001@cloudpass@00000001");
    let mut form = signed(&chain);
    form.set("respCode", "01");
    let (name, why) = failure(&signing::verify(&form, &trust(&chain)));
    assert_eq!(name, "signature");
    assert!(why.starts_with("digest mismatch"), "{why}");
}

#[test]
fn a_certificate_from_another_chain_is_refused() {
    let ours = chain("041@Z0000001@cloudpass@00000001");
    let theirs = chain("041@Z0000001@cloudpass@00000001");
    let form = signed(&theirs);
    let report = signing::verify(&form, &trust(&ours));
    let (name, why) = failure(&report);
    assert_eq!(name, "chain");
    assert!(why.contains("not issued by the middle CA"), "{why}");
    // The signature itself was good: only the chain failed.
    assert!(matches!(report.checks[0].outcome, Outcome::Passed(_)));
}

#[test]
fn dates_cn_and_a_missing_chain_are_reported() {
    let chain = chain("041@Z0000001@someone-else@00000001");
    let form = signed(&chain);
    let mut late = trust(&chain);
    late.at = chain.not_before + 6 * 366 * 86_400;
    let (name, _) = failure(&signing::verify(&form, &late));
    assert_eq!(name, "validity");
    let (name, why) = failure(&signing::verify(&form, &trust(&chain)));
    assert_eq!(name, "CN");
    assert!(why.contains("someone-else"), "{why}");
    let unchained = Trust {
        at: late.at - 5 * 366 * 86_400,
        ..Trust::default()
    };
    let report = signing::verify(&form, &unchained);
    assert!(
        report.all_passed() && !report.fully_verified(),
        "{report:?}"
    );
    assert!(report.checks.iter().any(|c| c.name == "chain"
        && matches!(&c.outcome, Outcome::NotChecked(why) if why.contains("not checked"))));
}

#[test]
fn secure_key_methods_sign_and_verify() {
    for method in [SignMethod::SecureKeySha256, SignMethod::SecureKeySm3] {
        let mut form = response().with("certId", "68759663125");
        signing::sign_secure_key(&mut form, method, b"88888888");
        assert_eq!(form.get("certId"), None);
        assert_eq!(form.get("signMethod"), Some(method.code()));
        let trust = Trust {
            secure_key: Some(b"88888888"),
            ..Trust::default()
        };
        assert!(signing::verify(&form, &trust).fully_verified());
        let wrong = Trust {
            secure_key: Some(b"88888889"),
            ..Trust::default()
        };
        assert_eq!(failure(&signing::verify(&form, &wrong)).0, "signature");
    }
}

#[test]
fn forms_that_cannot_be_verified_say_why() {
    let chain = chain("041@Z0000001@cloudpass@00000001");
    let unsigned = response();
    assert_eq!(
        failure(&signing::verify(&unsigned, &trust(&chain))).0,
        "signMethod"
    );
    let mut no_cert = signed(&chain);
    no_cert.remove("signPubKeyCert");
    assert_eq!(
        failure(&signing::verify(&no_cert, &trust(&chain))).0,
        "certificate"
    );
    let known = Trust {
        known_certificate: Some(&chain.leaf),
        ..trust(&chain)
    };
    // A known certificate is used only for the certId it has.
    assert_eq!(failure(&signing::verify(&no_cert, &known)).0, "certId");
    no_cert.set("certId", chain.leaf.cert_id());
    let report = signing::verify(&no_cert, &known);
    // The certificate is known, but the signature covered signPubKeyCert, now removed.
    assert_eq!(failure(&report).0, "signature");
    let mut old = signed(&chain);
    old.set("version", "4.0.0");
    assert_eq!(failure(&signing::verify(&old, &trust(&chain))).0, "version");
    let mut sha1 = response();
    sha1.set("version", "5.0.0");
    assert!(signing::sign_rsa(&mut sha1, &chain.key).is_err());
}

//! A UPACP merchant for Rust tests: signs with a merchant's key and certificate, posts to the
//! gateway, and verifies every answer through the platform's root and middle CA. (The
//! independent client is the Python one in `interop/`; this one is for tests about what the
//! gateway decides, not about the wire.)

use std::path::Path;

use cloudpass_crypto::upacp::RsaSigningKey;
use cloudpass_upacp::{Certificate, Form, Trust, signing};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

pub const SANDBOX_MER_ID: &str = "777290058110048";

pub struct Merchant {
    pub mer_id: String,
    pub key: RsaSigningKey,
    pub certificate: Certificate,
    base: String,
    data_dir: std::path::PathBuf,
    http: reqwest::Client,
}

pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Merchant {
    /// The merchant whose `merchant-<merId>.pem` and `.key` are in `dir`.
    pub fn from_files(base: &str, data_dir: &Path, mer_id: &str, dir: &Path) -> Merchant {
        let key =
            PrivatePkcs8KeyDer::from_pem_file(dir.join(format!("merchant-{mer_id}.key"))).unwrap();
        let certificate = Certificate::from_pem(
            &std::fs::read_to_string(dir.join(format!("merchant-{mer_id}.pem"))).unwrap(),
        )
        .unwrap();
        Merchant {
            mer_id: mer_id.to_owned(),
            key: RsaSigningKey::from_pkcs8_der(key.secret_pkcs8_der()).unwrap(),
            certificate,
            base: base.to_owned(),
            data_dir: data_dir.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The sandbox merchant of the app in `data_dir`.
    pub fn sandbox(base: &str, data_dir: &Path) -> Merchant {
        Self::from_files(base, data_dir, SANDBOX_MER_ID, &data_dir.join("upacp"))
    }

    /// The fields every request of this merchant carries, `txnTime` now.
    pub fn header(&self, txn_type: &str, txn_sub_type: &str, biz_type: &str) -> Form {
        Form::new()
            .with("version", "5.1.0")
            .with("encoding", "UTF-8")
            .with("txnType", txn_type)
            .with("txnSubType", txn_sub_type)
            .with("bizType", biz_type)
            .with("accessType", "0")
            .with("merId", self.mer_id.clone())
            .with(
                "txnTime",
                cloudpass_upacp::time::format_beijing(now_seconds()),
            )
    }

    pub fn consume(&self, order_id: &str, amount: u64) -> Form {
        self.header("01", "01", "000201")
            .with("channelType", "08")
            .with("orderId", order_id)
            .with("txnAmt", amount.to_string())
            .with("currencyCode", "156")
            .with("backUrl", "https://merchant.example/notify")
    }

    pub fn query(&self, order_id: &str, txn_time: &str) -> Form {
        let mut form = self.header("00", "00", "000000").with("orderId", order_id);
        form.set("txnTime", txn_time);
        form
    }

    /// A refund (`04`) or undo (`31`) of the consume whose queryId is `orig_qry_id`.
    pub fn back(&self, txn_type: &str, order_id: &str, amount: u64, orig_qry_id: &str) -> Form {
        self.header(txn_type, "00", "000201")
            .with("channelType", "07")
            .with("orderId", order_id)
            .with("txnAmt", amount.to_string())
            .with("currencyCode", "156")
            .with("backUrl", "https://merchant.example/notify")
            .with("origQryId", orig_qry_id)
    }

    /// Signs `form` with this merchant's key (certId of its certificate).
    pub fn sign(&self, mut form: Form) -> Form {
        form.set("certId", self.certificate.cert_id());
        signing::sign_rsa(&mut form, &self.key).unwrap();
        form
    }

    /// Signs and posts `form` to `path`; the answer, verified as from the platform.
    pub async fn post(&self, path: &str, form: Form) -> Form {
        self.post_signed(path, self.sign(form)).await
    }

    /// Posts `form` as it is (signed or not) to `path`; the answer, verified.
    pub async fn post_signed(&self, path: &str, form: Form) -> Form {
        let body = self
            .http
            .post(format!("{}{path}", self.base))
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=UTF-8",
            )
            .body(form.to_urlencoded())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let answer = Form::parse_raw(&body).unwrap();
        verify_from_platform(&self.data_dir, &answer);
        answer
    }
}

/// Verifies a form from the platform as a merchant does: the chain to our root and middle,
/// the signer's name, the signature.
pub fn verify_from_platform(data_dir: &Path, form: &Form) {
    let read = |name: &str| {
        Certificate::from_pem(&std::fs::read_to_string(data_dir.join("upacp").join(name)).unwrap())
            .unwrap()
    };
    let (root, middle) = (read("root.pem"), read("middle.pem"));
    let trust = Trust {
        chain: Some((&root, &middle)),
        signer_name: Some(cloudpass_upacp::pki::TEST_SIGNER_NAME),
        at: now_seconds(),
        ..Trust::default()
    };
    let report = signing::verify(form, &trust);
    assert!(
        report.fully_verified(),
        "the platform's form verifies: {report:?}"
    );
}

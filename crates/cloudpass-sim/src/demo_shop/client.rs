//! The demo shop's UPACP client: what any institution writes from docs/upacp.md. Requests are
//! signed with the shop's own merchant key (signMethod 01, `certId` its certificate's
//! serial) and posted over HTTP to the gateway; every answer and notification is verified
//! through the platform's root and middle CA before the shop believes a word of it.

use std::sync::Mutex;

use cloudpass_crypto::upacp::RsaSigningKey;
use cloudpass_upacp::signing::{self, Trust};
use cloudpass_upacp::{Certificate, Form};

/// One of the shop's merchant identities at the gateway.
pub struct ShopMerchant {
    pub mer_id: String,
    pub key: RsaSigningKey,
    pub certificate: Certificate,
}

/// What the shop trusts: the platform's CA and its signer's name.
pub struct PlatformTrust {
    pub root: Certificate,
    pub middle: Certificate,
    pub signer_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ShopClientError {
    #[error("the gateway could not be reached")]
    Unreachable,
    #[error("the gateway answered HTTP {0}")]
    Http(u16),
    #[error("the gateway's answer is not a UPACP form")]
    NotAForm,
    #[error("the gateway's answer failed its signature check: {0}")]
    BadSignature(String),
    #[error("the request could not be signed")]
    Signing,
    #[error("the platform's encryption certificate could not be read")]
    EncryptionCertificate,
    #[error("a field could not be encrypted to the platform's encryption certificate")]
    Encrypting,
    #[error("the gateway refused: {1} ({0})")]
    Refused(String, String),
}

pub struct UpacpClient {
    http: reqwest::Client,
    /// Where the gateway's `/gateway/api/…` endpoints are.
    gateway_base: String,
    trust: PlatformTrust,
    /// The platform's signing certificate from the last verified answer: the one the app's
    /// synchronous results are signed with (their `cert_id` names it).
    platform_signer: Mutex<Option<Certificate>>,
    /// The platform's encryption certificate (txnType 95), once asked for.
    encryption: Mutex<Option<Certificate>>,
}

impl UpacpClient {
    pub fn new(gateway_base: String, trust: PlatformTrust) -> Result<UpacpClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(UpacpClient {
            http,
            gateway_base,
            trust,
            platform_signer: Mutex::new(None),
            encryption: Mutex::new(None),
        })
    }

    /// Signs `form` as `merchant` and posts it to `endpoint`; the verified answer.
    pub async fn post(
        &self,
        merchant: &ShopMerchant,
        endpoint: &str,
        mut form: Form,
        now: i64,
    ) -> Result<Form, ShopClientError> {
        form.set("certId", merchant.certificate.cert_id());
        signing::sign_rsa(&mut form, &merchant.key).map_err(|_| ShopClientError::Signing)?;
        let response = self
            .http
            .post(format!("{}{endpoint}", self.gateway_base))
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=UTF-8",
            )
            .body(form.to_urlencoded())
            .send()
            .await
            .map_err(|_| ShopClientError::Unreachable)?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|_| ShopClientError::Unreachable)?;
        if status != 200 {
            return Err(ShopClientError::Http(status));
        }
        let answer = Form::parse_either(&body).map_err(|_| ShopClientError::NotAForm)?;
        self.verify(&answer, now)?;
        Ok(answer)
    }

    /// Checks a form the platform signed (an answer or a notification): the chain to our
    /// root, the signer's name, the dates, the signature.
    pub fn verify(&self, form: &Form, now: i64) -> Result<(), ShopClientError> {
        let trust = Trust {
            chain: Some((&self.trust.root, &self.trust.middle)),
            signer_name: Some(&self.trust.signer_name),
            at: now,
            ..Trust::default()
        };
        let report = signing::verify(form, &trust);
        if !report.fully_verified() {
            let failed = report.failures().join(", ");
            return Err(ShopClientError::BadSignature(failed));
        }
        if let Some(certificate) = form
            .get("signPubKeyCert")
            .and_then(|pem| Certificate::from_pem(pem).ok())
            && let Ok(mut signer) = self.platform_signer.lock()
        {
            *signer = Some(certificate);
        }
        Ok(())
    }

    /// The platform's signing certificate, once an answer has shown it.
    pub fn platform_signer(&self) -> Option<Certificate> {
        self.platform_signer.lock().ok().and_then(|s| s.clone())
    }

    /// The platform's encryption certificate, asked for once with txnType 95: what `accNo`,
    /// PIN blocks and `encryptedInfo` are encrypted to.
    pub async fn encryption_certificate(
        &self,
        merchant: &ShopMerchant,
        now: i64,
    ) -> Result<Certificate, ShopClientError> {
        if let Some(known) = self.encryption.lock().ok().and_then(|c| c.clone()) {
            return Ok(known);
        }
        let txn_time = cloudpass_upacp::time::format_beijing(now);
        let form = Form::new()
            .with("version", "5.1.0")
            .with("encoding", "UTF-8")
            .with("txnType", "95")
            .with("txnSubType", "00")
            .with("bizType", "000000")
            .with("accessType", "0")
            .with("channelType", "07")
            .with("certType", "01")
            .with("merId", merchant.mer_id.clone())
            .with("orderId", format!("EC{txn_time}"))
            .with("txnTime", txn_time);
        let answer = self
            .post(merchant, "/gateway/api/backTransReq.do", form, now)
            .await?;
        let certificate = answer
            .get("encryptPubKeyCert")
            .and_then(|pem| Certificate::from_pem(pem).ok())
            .ok_or_else(|| {
                ShopClientError::Refused(
                    answer.get("respCode").unwrap_or("").to_owned(),
                    answer.get("respMsg").unwrap_or("").to_owned(),
                )
            })?;
        if let Ok(mut known) = self.encryption.lock() {
            *known = Some(certificate.clone());
        }
        Ok(certificate)
    }

    /// A signed form for the payer's browser to post to `frontTransReq.do` (API WAP).
    pub fn front_form(
        &self,
        merchant: &ShopMerchant,
        mut form: Form,
    ) -> Result<Vec<(String, String)>, ShopClientError> {
        form.set("certId", merchant.certificate.cert_id());
        signing::sign_rsa(&mut form, &merchant.key).map_err(|_| ShopClientError::Signing)?;
        Ok(form
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }
}

//! The payment control's synchronous result (控件支付): what the Cloud QuickPass app hands
//! back to the institution's page when a payment started by the SDK ends — `pay_result`
//! (`success`, `fail`, `cancel`) and, with it, `result_data`, the JSON
//! `{"sign":"…","data":"pay_result=…&tn=…&cert_id=…"}` that the institution's server checks
//! before it trusts the result (reference/upacp.md §7).
//!
//! `sign` is signed as every 5.1.0 message is (signMethod 01: SHA256withRSA over the lowercase
//! hex SHA-256 of `data`) by the platform's signing certificate, whose serial `data` carries as
//! `cert_id`: the certificate every gateway answer carries in `signPubKeyCert`. UnionPay's own
//! 5.1.0 app result is SHA1withRSA under a dedicated certificate; cloudpass does not sign with
//! SHA-1 (docs/sdk.md says so). The result is a convenience for the page: the notification and
//! `queryTrans.do` are what settle an order.

use cloudpass_crypto::upacp::{RsaDigest, RsaSigningKey, UpacpSignatureError, verify_rsa};

use crate::Certificate;

/// How a payment started by the SDK ended, as the app tells the institution's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayResult {
    Success,
    Fail,
    Cancel,
}

impl PayResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PayResult::Success => "success",
            PayResult::Fail => "fail",
            PayResult::Cancel => "cancel",
        }
    }

    pub fn parse(text: &str) -> Option<PayResult> {
        match text {
            "success" => Some(PayResult::Success),
            "fail" => Some(PayResult::Fail),
            "cancel" => Some(PayResult::Cancel),
            _ => None,
        }
    }
}

/// `result_data`: the signed `data` string and its signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResultData {
    pub sign: String,
    pub data: String,
}

/// What a verified `result_data` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedResult {
    pub pay_result: PayResult,
    pub tn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppResultError {
    #[error("result_data is not the JSON object {{\"sign\", \"data\"}}")]
    NotJson,
    #[error("result_data's data lacks {0}")]
    Missing(&'static str),
    #[error("result_data's pay_result is not success, fail or cancel")]
    UnknownResult,
    #[error("result_data was signed under another certificate than the one given (cert_id)")]
    OtherCertificate,
    #[error("the certificate carries no RSA public key")]
    NoPublicKey,
    #[error(transparent)]
    Signature(#[from] UpacpSignatureError),
}

impl ResultData {
    /// Signs the result of `tn` with the platform's signing key and its certificate.
    pub fn sign(
        pay_result: PayResult,
        tn: &str,
        key: &RsaSigningKey,
        certificate: &Certificate,
    ) -> Result<ResultData, UpacpSignatureError> {
        let data = format!(
            "pay_result={}&tn={tn}&cert_id={}",
            pay_result.as_str(),
            certificate.cert_id()
        );
        let sign = key.sign(data.as_bytes())?;
        Ok(ResultData { sign, data })
    }

    /// The JSON the SDK hands to the page.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<ResultData, AppResultError> {
        serde_json::from_str(text).map_err(|_| AppResultError::NotJson)
    }

    /// Checks the signature under `certificate` (the platform's signing certificate, itself
    /// checked against the UnionPay chain by the caller) and reads what `data` says.
    pub fn verify(&self, certificate: &Certificate) -> Result<VerifiedResult, AppResultError> {
        let field = |name: &'static str| {
            self.data
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                .ok_or(AppResultError::Missing(name))
        };
        if field("cert_id")? != certificate.cert_id() {
            return Err(AppResultError::OtherCertificate);
        }
        let public_key = certificate
            .rsa_public_key_der()
            .ok_or(AppResultError::NoPublicKey)?;
        verify_rsa(
            &public_key,
            RsaDigest::Sha256,
            self.data.as_bytes(),
            &self.sign,
        )?;
        Ok(VerifiedResult {
            pay_result: PayResult::parse(field("pay_result")?)
                .ok_or(AppResultError::UnknownResult)?,
            tn: field("tn")?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{PkiRequest, PlatformPki};
    use cloudpass_core::random::SeededRandom;

    #[test]
    fn a_signed_result_verifies_and_any_change_does_not() {
        let random = SeededRandom::new(9);
        let pki = PlatformPki::generate(&PkiRequest {
            signer_name: "00040000",
            now: 1_796_169_600,
            random: &random,
        })
        .unwrap();
        let key = pki.signing.signing_key().unwrap();
        let (key, certificate) = (&key, &pki.signing.certificate);
        let tn = "202612041200000000001";
        let result = ResultData::sign(PayResult::Success, tn, key, certificate).unwrap();
        assert_eq!(
            result.data,
            format!(
                "pay_result=success&tn={tn}&cert_id={}",
                certificate.cert_id()
            )
        );
        let parsed = ResultData::from_json(&result.to_json()).unwrap();
        assert_eq!(
            parsed.verify(certificate).unwrap(),
            VerifiedResult {
                pay_result: PayResult::Success,
                tn: tn.to_owned(),
            }
        );

        let forged = ResultData {
            data: result.data.replace("success", "cancel"),
            ..result.clone()
        };
        assert!(matches!(
            forged.verify(certificate),
            Err(AppResultError::Signature(_))
        ));
        let other = ResultData {
            data: result.data.replace(&certificate.cert_id(), "1"),
            ..result
        };
        assert_eq!(
            other.verify(certificate),
            Err(AppResultError::OtherCertificate)
        );
        assert_eq!(
            ResultData::from_json("pay_result=success"),
            Err(AppResultError::NotJson)
        );
    }
}

//! What the Cloud QuickPass app asks the token service when a person binds a card to their
//! account (no token is made): the card's issuer, found by BIN, checks that the card exists
//! and that the data typed is right (checkEligibility), and texts the person a code
//! (sendPasscode with purpose `bind`). The service also seals the card number for the app's
//! store and gives the keyed fingerprint and code digest, so the app never holds a key.

use cloudpass_core::{AccountNumber, Expiry, Pan};
use cloudpass_issuer_api::{DeviceInfo, EligibilityRequest, PasscodeRequest};

use crate::error::{TspError, TspResult};
use crate::service::Tsp;

/// The issuer's answer about a card to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardCheck {
    /// `debit` or `credit`.
    pub funding: String,
    pub product: Option<String>,
    /// Where a code would go, masked (`181****0000`).
    pub phone_masked: Option<String>,
}

impl Tsp {
    /// Asks the card's issuer whether `pan` exists with this expiry (and CVN2, when given);
    /// `Declined` for every refusal, as for a token (the reason is the bank's business).
    pub async fn check_card_for_binding(
        &self,
        pan: &Pan,
        expiry: Expiry,
        cvn2: Option<&str>,
        wallet: &str,
    ) -> TspResult<CardCheck> {
        let (_, _, endpoint) = self.card_issuer(pan).await?;
        let answer = self
            .issuers
            .check_eligibility(
                &endpoint,
                &EligibilityRequest {
                    request_id: self.id("req"),
                    card_number: pan.expose().to_owned(),
                    expiry: expiry.to_wire(),
                    cvn2: cvn2.map(str::to_owned),
                    token_requestor_id: wallet.to_owned(),
                    wallet: wallet.to_owned(),
                    // The app itself: the card is bound to an account, not loaded on a device.
                    device: DeviceInfo {
                        kind: "app".into(),
                        brand: wallet.to_owned(),
                    },
                },
            )
            .await?;
        if !answer.eligible {
            return Err(TspError::Declined);
        }
        Ok(CardCheck {
            funding: answer.funding.unwrap_or_else(|| "debit".into()),
            product: answer.product,
            phone_masked: answer.reserved_phone_masked,
        })
    }

    /// Has the card's issuer text `code` to the card's phone for binding it to `wallet`; the
    /// phone, masked, or `None` when the bank sent nothing.
    pub async fn send_binding_code(
        &self,
        pan: &Pan,
        code: &str,
        wallet: &str,
    ) -> TspResult<Option<String>> {
        let (_, _, endpoint) = self.card_issuer(pan).await?;
        let answer = self
            .issuers
            .send_passcode(
                &endpoint,
                &PasscodeRequest {
                    request_id: self.id("req"),
                    card_number: pan.expose().to_owned(),
                    method: "sms".into(),
                    otp: code.to_owned(),
                    token_last4: String::new(),
                    wallet: wallet.to_owned(),
                    purpose: Some("bind".into()),
                },
            )
            .await?;
        Ok(answer.sent.then_some(answer.destination_masked).flatten())
    }

    /// The keyed fingerprint of a card number (one card, one fingerprint, not reversible
    /// without the key).
    pub fn card_fingerprint(&self, pan: &Pan) -> TspResult<Vec<u8>> {
        self.fingerprint(pan)
    }

    /// A keyed digest of a code sent for `binding_id`: what is kept to check the code.
    pub fn binding_code_digest(&self, binding_id: &str, code: &str) -> TspResult<Vec<u8>> {
        self.otp_hash(binding_id, code)
    }
}

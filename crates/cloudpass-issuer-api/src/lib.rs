//! The token service's questions to an issuer, modelled on the VTS issuer interface
//! (checkEligibility, approveProvision, sendPasscode). The TSP is the client; a bank — or the
//! issuer host stand-in in `cloudpass-sim` — is the server. Every call is an HTTP POST of
//! JSON to `{issuer api url}/{operation}`, signed with the issuer's shared secret
//! (`cloudpass_crypto::signature`). docs/tsp-api.md describes the protocol for banks.
//!
//! The card number travels in clear inside these bodies: the issuer owns it. Deployments put
//! TLS on the link; neither side logs bodies.

use serde::{Deserialize, Serialize};

pub const CHECK_ELIGIBILITY: &str = "checkEligibility";
pub const APPROVE_PROVISION: &str = "approveProvision";
pub const SEND_PASSCODE: &str = "sendPasscode";

/// The device a card is to be loaded onto, as far as the issuer's risk rules care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `handset_se`, `wearable`, `hce`.
    pub kind: String,
    pub brand: String,
}

/// "Can this card be tokenized, and is the data the cardholder typed right?"
/// Not `Debug`: it carries a card number.
#[derive(Clone, Serialize, Deserialize)]
pub struct EligibilityRequest {
    pub request_id: String,
    pub card_number: String,
    pub expiry: String,
    /// Absent for an issuer-app push (the card data came from the bank itself).
    pub cvn2: Option<String>,
    pub token_requestor_id: String,
    pub wallet: String,
    pub device: DeviceInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EligibilityResponse {
    pub eligible: bool,
    /// Why not, when not eligible (`CARD_NOT_FOUND`, `CVN2_MISMATCH`, `EXPIRY_MISMATCH`,
    /// `CARD_EXPIRED`, `CARD_BLOCKED`, …).
    pub reason: Option<String>,
    /// `debit` or `credit`.
    pub funding: Option<String>,
    pub product: Option<String>,
    /// The reserved phone, masked (`181****0000`): where a step-up code would go.
    pub reserved_phone_masked: Option<String>,
}

/// "Approve this token?" The issuer answers green, yellow (step-up) or red.
/// Not `Debug`: it carries a card number.
#[derive(Clone, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub request_id: String,
    pub card_number: String,
    pub expiry: String,
    pub token_last4: String,
    pub token_requestor_id: String,
    pub wallet: String,
    pub device: DeviceInfo,
    /// The bank itself pushed the card (issuer-app push provisioning).
    pub issuer_push: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Green,
    Yellow,
    Red,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalResponse {
    pub decision: Decision,
    pub reason: Option<String>,
    /// For yellow: how the cardholder may be verified (`sms`).
    #[serde(default)]
    pub step_up_methods: Vec<String>,
}

/// "Deliver this one-time passcode to the cardholder." The TSP makes the code; the bank
/// sends it to the card's reserved phone. `purpose` says what the code is for: absent (or
/// `provision`) to add the card to a device as the token ending `token_last4`; `bind` to
/// bind the card to the person's account in the wallet app (no token: `token_last4` empty).
/// Not `Debug`: it carries a card number and a passcode.
#[derive(Clone, Serialize, Deserialize)]
pub struct PasscodeRequest {
    pub request_id: String,
    pub card_number: String,
    pub method: String,
    pub otp: String,
    pub token_last4: String,
    pub wallet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasscodeResponse {
    pub sent: bool,
    pub destination_masked: Option<String>,
    pub reason: Option<String>,
}

/// An error body from the issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

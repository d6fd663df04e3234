//! The token service's errors, each with a stable public code and an HTTP status. Messages
//! are written for the developer calling the API and never contain a card number, a CVN2 or
//! an OTP.

use cloudpass_core::CardNumberError;
use cloudpass_core::device::DeviceError;
use cloudpass_core::lifecycle::LifecycleError;
use cloudpass_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum TspError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("card number: {0}")]
    InvalidCardNumber(CardNumberError),
    #[error("expiry must be YYMM")]
    InvalidExpiry,
    #[error("missing or unknown API key")]
    Unauthorized,
    /// A known party calling an endpoint of another role (a wallet on the bank's side).
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("too many failed authentications from this address; retry later")]
    Throttled,
    #[error("{what} not found")]
    NotFound {
        code: &'static str,
        what: &'static str,
    },
    #[error("this card already has a live token on this device ({token_id})")]
    TokenExists { token_id: String },
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("{0}")]
    Lifecycle(#[from] LifecycleError),
    #[error("{0}")]
    Device(#[from] DeviceError),
    #[error("that wallet account is not the one signed in on the device")]
    AccountNotOnDevice,
    #[error("only an active token can be the default card")]
    TokenNotActive,
    #[error("this token is not on an HCE device; its keys are not replenished")]
    NotHce,
    #[error("the resource kept changing under this request; retry")]
    Busy,
    #[error("no issuer takes cards with this BIN")]
    NoIssuer,
    /// One answer for every decline (the issuer's reason goes to the bank, not the wallet).
    #[error("the card cannot be added; check the card details, or ask the bank")]
    Declined,
    #[error("the one-time passcode is wrong; {attempts_left} attempts left")]
    OtpInvalid { attempts_left: i64 },
    #[error("the one-time passcode has expired; ask for a new one")]
    OtpExpired,
    #[error("too many wrong passcodes; the pending token was deleted")]
    OtpExhausted,
    #[error("no more passcodes may be sent for this token")]
    ResendsExhausted,
    #[error("this token has no pending step-up")]
    NoChallenge,
    #[error("the push receipt is invalid or expired")]
    InvalidPushReceipt,
    #[error("the issuer did not answer: {0}")]
    IssuerUnavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl TspError {
    pub fn not_found(code: &'static str, what: &'static str) -> Self {
        TspError::NotFound { code, what }
    }

    /// The stable public code.
    pub fn code(&self) -> &'static str {
        match self {
            TspError::InvalidRequest(_) => "INVALID_REQUEST",
            TspError::InvalidCardNumber(_) => "INVALID_CARD_NUMBER",
            TspError::InvalidExpiry => "INVALID_EXPIRY",
            TspError::Unauthorized => "UNAUTHORIZED",
            TspError::Forbidden(_) => "FORBIDDEN",
            TspError::Throttled => "TOO_MANY_REQUESTS",
            TspError::NotFound { code, .. } => code,
            TspError::TokenExists { .. } => "TOKEN_ALREADY_EXISTS",
            TspError::AlreadyExists("user") => "USER_ALREADY_EXISTS",
            TspError::AlreadyExists("device") => "DEVICE_ALREADY_REGISTERED",
            TspError::AlreadyExists(_) => "ALREADY_EXISTS",
            TspError::Lifecycle(error) => match error {
                LifecycleError::Deleted => "TOKEN_DELETED",
                LifecycleError::ChannelNotPermitted { .. } => "CHANNEL_NOT_PERMITTED",
                LifecycleError::HeldByOther { .. } => "SUSPENDED_BY_OTHER_PARTY",
                LifecycleError::Pending { .. } => "TOKEN_PENDING",
                LifecycleError::AlreadyActive => "TOKEN_ALREADY_ACTIVE",
            },
            TspError::Device(error) => match error {
                DeviceError::Retired => "DEVICE_RETIRED",
                DeviceError::NotSignedIn => "DEVICE_NOT_SIGNED_IN",
                DeviceError::NoUnlock => "DEVICE_UNLOCK_NOT_SET",
                DeviceError::NotActive(_) | DeviceError::NotLost | DeviceError::NotWiped => {
                    "DEVICE_STATE"
                }
            },
            TspError::AccountNotOnDevice => "ACCOUNT_NOT_ON_DEVICE",
            TspError::TokenNotActive => "TOKEN_NOT_ACTIVE",
            TspError::NotHce => "NOT_HCE_TOKEN",
            TspError::Busy => "CONCURRENT_MODIFICATION",
            TspError::NoIssuer => "NO_ISSUER_FOR_CARD",
            TspError::Declined => "PROVISIONING_DECLINED",
            TspError::OtpInvalid { .. } => "OTP_INVALID",
            TspError::OtpExpired => "OTP_EXPIRED",
            TspError::OtpExhausted => "OTP_ATTEMPTS_EXHAUSTED",
            TspError::ResendsExhausted => "OTP_RESENDS_EXHAUSTED",
            TspError::NoChallenge => "NO_PENDING_STEP_UP",
            TspError::InvalidPushReceipt => "INVALID_PUSH_RECEIPT",
            TspError::IssuerUnavailable(_) => "ISSUER_UNAVAILABLE",
            TspError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            TspError::InvalidRequest(_)
            | TspError::InvalidCardNumber(_)
            | TspError::InvalidExpiry => 400,
            TspError::Unauthorized => 401,
            TspError::Forbidden(_) => 403,
            TspError::Throttled => 429,
            TspError::NotFound { .. } => 404,
            TspError::TokenExists { .. }
            | TspError::AlreadyExists(_)
            | TspError::Lifecycle(_)
            | TspError::Device(_)
            | TspError::AccountNotOnDevice
            | TspError::TokenNotActive
            | TspError::NotHce
            | TspError::Busy
            | TspError::NoChallenge => 409,
            TspError::NoIssuer
            | TspError::Declined
            | TspError::OtpInvalid { .. }
            | TspError::OtpExpired
            | TspError::OtpExhausted
            | TspError::ResendsExhausted
            | TspError::InvalidPushReceipt => 422,
            TspError::IssuerUnavailable(_) => 502,
            TspError::Internal(_) => 500,
        }
    }

    /// Whether a retry with the same idempotency key may succeed (the failure had no effect
    /// and was not the caller's fault).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TspError::IssuerUnavailable(_) | TspError::Busy | TspError::Internal(_)
        )
    }
}

impl From<StoreError> for TspError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict => TspError::Busy,
            other => TspError::Internal(other.to_string()),
        }
    }
}

impl From<cloudpass_crypto::HsmError> for TspError {
    fn from(error: cloudpass_crypto::HsmError) -> Self {
        TspError::Internal(format!("HSM: {error}"))
    }
}

pub type TspResult<T> = Result<T, TspError>;

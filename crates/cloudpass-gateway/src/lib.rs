//! The institution gateway: payment institutions take Cloud QuickPass payments through a
//! transaction number (TN), over UnionPay's UPACP 5.1.0 (docs/upacp.md).
//!
//! A request goes: the form parsed (`cloudpass-upacp`), the merchant found by `merId`, its
//! signature verified, the request parsed into its typed form, then the flow of its
//! endpoint — one file each (`consume`, `query`, `returns`, `file`, and `pay` and `page` for
//! the payer's side) — deciding with `cloudpass-core::order` and
//! recording in the [`GatewayStore`]. Every answer is a raw UPACP form signed by the
//! platform's signing key, carrying its certificate as `signPubKeyCert`. No error repeats a
//! value it refuses.

mod answer;
mod back_consume;
mod card_tokens;
pub mod certification;
mod consume;
pub mod device_pay;
pub mod discount;
mod file;
pub mod http;
pub mod identity;
pub mod merchant;
pub mod notify;
pub mod openapi;
mod orders;
mod page;
pub mod pay;
mod pending;
mod query;
mod returns;
pub mod sandbox_clock;
pub mod sdk;
mod sms;
mod tn;
mod unanswered;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use cloudpass_acquirer::Terminal;

use cloudpass_core::{Clock, Random};
use cloudpass_crypto::upacp::{RsaDecryptingKey, RsaSigningKey};
use cloudpass_store::AnyStore;
use cloudpass_upacp::Certificate;

pub use merchant::{
    MERCHANT_CACHE_MILLIS, Merchant, MerchantRowError, MerchantSecrets, Merchants, Permissions,
    UnknownPermission, card_token_owner, secret_owner, secure_key_is_valid,
};
pub use pay::{BoxFuture, CardKind, PayError, PayRequest, PayResult, PayerChecks, TestCard};
pub use sms::SmsSent;

/// The gateway's own settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How far `txnTime` may be from now (UPACP wants "now").
    pub txn_time_skew_seconds: i64,
    /// `payTimeout` when the request gives none (UnionPay's demos: 15 minutes).
    pub default_pay_timeout_seconds: i64,
    pub notify: notify::NotifyConfig,
    /// How long a registered merchant read from the store is used before it is read again:
    /// how soon a grant or a revoke takes effect.
    pub merchant_cache_millis: i64,
    /// How long a payment may stay unanswered before the sweep reverses it: longer than the
    /// terminal's answer timeout and all its reversal attempts.
    pub unanswered_after_seconds: i64,
    /// The marketing campaigns app payments may get a discount from (none unless set).
    pub campaigns: Vec<cloudpass_core::discount::Campaign>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            txn_time_skew_seconds: 10 * 60,
            default_pay_timeout_seconds: 15 * 60,
            notify: notify::NotifyConfig::default(),
            merchant_cache_millis: merchant::MERCHANT_CACHE_MILLIS,
            unanswered_after_seconds: 120,
            campaigns: Vec::new(),
        }
    }
}

/// The platform's signing key and certificate.
pub struct PlatformSigner {
    pub key: RsaSigningKey,
    pub certificate: Certificate,
    /// The encryption certificate merchants ask for with txnType 95.
    pub encryption_certificate: Certificate,
    /// Its private key: opens `accNo`, `pin` and `encryptedInfo`.
    pub decryption_key: RsaDecryptingKey,
}

/// What a gateway is built from.
pub struct GatewayParts {
    /// Where the orders live.
    pub store: AnyStore,
    pub merchants: Merchants,
    pub signer: PlatformSigner,
    /// The checks of the payment control (card kind, SMS code).
    pub payer: Arc<dyn PayerChecks>,
    /// Opens registered merchants' sealed secure keys.
    pub secrets: Arc<dyn MerchantSecrets>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub config: GatewayConfig,
}

pub struct Gateway {
    store: AnyStore,
    merchants: Merchants,
    signer: PlatformSigner,
    payer: Arc<dyn PayerChecks>,
    secrets: Arc<dyn MerchantSecrets>,
    /// The e-commerce terminal the gateway acquires through, once signed on to the switch.
    acquirer: OnceLock<Arc<Terminal>>,
    /// Registered merchants read lately (see `merchant`).
    merchant_cache: Mutex<merchant::MerchantCache>,
    /// Merchants' sandbox clock offsets (see `sandbox_clock`).
    offsets: Mutex<sandbox_clock::Offsets>,
    /// Certification cases known to be recorded (see `certification`).
    certified: Mutex<HashSet<(String, certification::Case)>>,
    /// Tries per TN that stopped before the network (bounded, see `pay`).
    tries: Mutex<HashMap<String, u32>>,
    /// SMS codes sent for cards without a published one (see `sms`).
    sms_codes: Mutex<sms::SentCodes>,
    /// Payments the pending trigger holds before sending (see `pending`).
    held: Mutex<Vec<pending::HeldPayment>>,
    /// Held while an app payment's discount is decided and recorded (see `discount`).
    campaign_lock: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    config: GatewayConfig,
}

impl Gateway {
    pub fn new(parts: GatewayParts) -> Gateway {
        Gateway {
            store: parts.store,
            merchants: parts.merchants,
            signer: parts.signer,
            payer: parts.payer,
            secrets: parts.secrets,
            acquirer: OnceLock::new(),
            merchant_cache: Mutex::new(HashMap::new()),
            certified: Mutex::new(HashSet::new()),
            offsets: Mutex::new(HashMap::new()),
            tries: Mutex::new(HashMap::new()),
            sms_codes: Mutex::new(HashMap::new()),
            held: Mutex::new(Vec::new()),
            campaign_lock: tokio::sync::Mutex::new(()),
            clock: parts.clock,
            random: parts.random,
            config: parts.config,
        }
    }

    fn now_seconds(&self) -> i64 {
        self.clock.now_millis().div_euclid(1_000)
    }
}

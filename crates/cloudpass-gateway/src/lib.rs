//! The institution gateway: payment institutions take Cloud QuickPass payments through a
//! transaction number (TN), over UnionPay's UPACP 5.1.0 (docs/upacp.md).
//!
//! A request goes: the form parsed (`cloudpass-upacp`), the merchant found by `merId`, its
//! signature verified, the request parsed into its typed form, then the flow of its
//! endpoint — one file each (`consume`, `query`, and `pay` for the payer's side) — deciding with `cloudpass-core::order` and
//! recording in the [`GatewayStore`]. Every answer is a raw UPACP form signed by the
//! platform's signing key, carrying its certificate as `signPubKeyCert`. No error repeats a
//! value it refuses.

mod answer;
mod consume;
mod file;
pub mod http;
pub mod merchant;
pub mod notify;
mod orders;
pub mod pay;
mod query;
mod returns;
mod tn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cloudpass_acquirer::Terminal;

use cloudpass_core::{Clock, Random};
use cloudpass_crypto::upacp::RsaSigningKey;
use cloudpass_store::AnyStore;
use cloudpass_upacp::Certificate;

pub use merchant::{Merchant, Merchants, Permissions};
pub use pay::{CardKind, PayError, PayRequest, PayResult, PayerChecks, SmsCheck};

/// The gateway's own settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How far `txnTime` may be from now (UPACP wants "now").
    pub txn_time_skew_seconds: i64,
    /// `payTimeout` when the request gives none (UnionPay's demos: 15 minutes).
    pub default_pay_timeout_seconds: i64,
    pub notify: notify::NotifyConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            txn_time_skew_seconds: 10 * 60,
            default_pay_timeout_seconds: 15 * 60,
            notify: notify::NotifyConfig::default(),
        }
    }
}

/// The platform's signing key and certificate.
pub struct PlatformSigner {
    pub key: RsaSigningKey,
    pub certificate: Certificate,
    /// The encryption certificate merchants ask for with txnType 95.
    pub encryption_certificate: Certificate,
}

/// What a gateway is built from.
pub struct GatewayParts {
    /// Where the orders live.
    pub store: AnyStore,
    pub merchants: Merchants,
    pub signer: PlatformSigner,
    /// The checks of the payment control (card kind, SMS code).
    pub payer: Arc<dyn PayerChecks>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub config: GatewayConfig,
}

pub struct Gateway {
    store: AnyStore,
    merchants: Merchants,
    signer: PlatformSigner,
    payer: Arc<dyn PayerChecks>,
    /// The e-commerce terminal the gateway acquires through, once signed on to the switch.
    acquirer: OnceLock<Arc<Terminal>>,
    /// Tries per TN that stopped before the network (bounded, see `pay`).
    tries: Mutex<HashMap<String, u32>>,
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
            acquirer: OnceLock::new(),
            tries: Mutex::new(HashMap::new()),
            clock: parts.clock,
            random: parts.random,
            config: parts.config,
        }
    }

    fn now_seconds(&self) -> i64 {
        self.clock.now_millis().div_euclid(1_000)
    }
}

//! The seam between the switch and the token service: the switch reads tokens through this
//! trait and never writes token state. The binary implements it over `cloudpass-tsp`'s vault.

use std::future::Future;
use std::pin::Pin as StdPin;

use cloudpass_core::authorization::TokenFacts;
use cloudpass_core::{Expiry, Money, Pan};
use cloudpass_crypto::KeyHandle;

pub type BoxFuture<'a, T> = StdPin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the switch needs to know about a token to authorize a payment with it.
pub struct VaultRecord {
    pub pan: Pan,
    pub card_expiry: Expiry,
    pub facts: TokenFacts,
    pub token_id: String,
    pub token_expiry: Expiry,
    pub issuer_id: String,
    pub par: String,
    pub token_requestor_id: String,
    pub wallet: String,
    /// `SE`, `WR` or `HC` (field 63 `TK` tag 10).
    pub device_kind: &'static str,
    pub pan_sequence: u8,
    /// HCE: the highest ATC limited-use keys were issued for (0 for secure elements).
    pub atc_issued_until: i64,
    /// The issuer master key the token's EMV keys derive from (in the shared HSM).
    pub issuer_master_key: KeyHandle,
    pub contactless_no_pin_limit: Money,
    pub online_no_pin_limit: Money,
    /// The device card has the e-cash (UPCash) application.
    pub ecash_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token vault: {0}")]
pub struct VaultError(pub String);

/// Token → card and state.
pub trait TokenVault: Send + Sync {
    fn lookup<'a>(
        &'a self,
        token_number: &'a str,
    ) -> BoxFuture<'a, Result<Option<VaultRecord>, VaultError>>;
}

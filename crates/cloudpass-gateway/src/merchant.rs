//! Merchants the gateway serves: who they are, how their requests are signed, and what they
//! may do. Two sources: the fixed ones the wiring gives (the sandbox merchant, with its
//! secure key), and those registered in the store (`cloudpass merchant add`: a certificate
//! and permissions, no secret), read through a short cache so a grant or a revoke takes
//! effect within `GatewayConfig::merchant_cache_millis` (5 s by default) on every gateway
//! instance.

use std::collections::HashMap;
use std::sync::Arc;

use cloudpass_store::{GatewayStore, MerchantRow, StoreError};
use cloudpass_upacp::Certificate;
use zeroize::Zeroizing;

use crate::Gateway;

/// How long a merchant read from the store is used before it is read again, by default
/// (`GatewayConfig::merchant_cache_millis`).
pub const MERCHANT_CACHE_MILLIS: i64 = 5_000;
/// Merchants remembered at once; the cache starts over past it.
const MERCHANTS_CACHED: usize = 10_000;

/// What a merchant may do (reference/upacp.md §2; a separate SDK-WAP permission is the next
/// issue's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions {
    /// Consume at `appTransReq.do` (the payment control in an app).
    pub app_consume: bool,
    /// Consume at `backTransReq.do` with the card and the payer's checks encrypted (the "no
    /// redirect" payment from the merchant's server).
    pub back_consume: bool,
    /// Consume at `frontTransReq.do` from a PC browser (channelType 07).
    pub pc_consume: bool,
    /// Consume at `frontTransReq.do` from a phone's browser (channelType 08): "API WAP".
    pub api_wap: bool,
    /// WAP pay started by the payment SDK inside a merchant's H5 page: "SDK WAP".
    pub sdk_wap: bool,
    pub undo: bool,
    pub refund: bool,
    pub query: bool,
    /// Card details (`accNo`, `payCardType`, …) in notifications and queries.
    pub card_details: bool,
}

/// A permission name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission; the permissions are {}", Permissions::NAMES.join(", "))]
pub struct UnknownPermission;

impl Permissions {
    /// Every permission by name, as the CLI and the store spell them.
    pub const NAMES: [&'static str; 9] = [
        "app_consume",
        "back_consume",
        "pc_consume",
        "api_wap",
        "sdk_wap",
        "undo",
        "refund",
        "query",
        "card_details",
    ];

    pub const NONE: Permissions = Permissions {
        app_consume: false,
        back_consume: false,
        pc_consume: false,
        api_wap: false,
        sdk_wap: false,
        undo: false,
        refund: false,
        query: false,
        card_details: false,
    };

    fn flag(&mut self, name: &str) -> Result<&mut bool, UnknownPermission> {
        Ok(match name {
            "app_consume" => &mut self.app_consume,
            "back_consume" => &mut self.back_consume,
            "pc_consume" => &mut self.pc_consume,
            "api_wap" => &mut self.api_wap,
            "sdk_wap" => &mut self.sdk_wap,
            "undo" => &mut self.undo,
            "refund" => &mut self.refund,
            "query" => &mut self.query,
            "card_details" => &mut self.card_details,
            _ => return Err(UnknownPermission),
        })
    }

    /// Turns the permission `name` on or off.
    pub fn set(&mut self, name: &str, on: bool) -> Result<(), UnknownPermission> {
        *self.flag(name)? = on;
        Ok(())
    }

    /// The names of the permissions held, in [`Permissions::NAMES`] order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut copy = *self;
        Self::NAMES
            .into_iter()
            .filter(|name| copy.flag(name).is_ok_and(|flag| *flag))
            .collect()
    }

    /// Comma-separated names, as stored.
    pub fn to_text(&self) -> String {
        self.names().join(",")
    }

    /// Parses comma-separated names (blank: none); `all` is every permission.
    pub fn parse(text: &str) -> Result<Permissions, UnknownPermission> {
        let mut permissions = Permissions::NONE;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                permissions = Permissions::ALL;
            } else {
                permissions.set(name, true)?;
            }
        }
        Ok(permissions)
    }

    pub const ALL: Permissions = Permissions {
        app_consume: true,
        back_consume: true,
        pc_consume: true,
        api_wap: true,
        sdk_wap: true,
        undo: true,
        refund: true,
        query: true,
        card_details: true,
    };
}

pub struct Merchant {
    /// `merId`, 15 characters.
    pub mer_id: String,
    pub name: String,
    /// The certificate its requests are signed with (signMethod 01), found by `certId`.
    pub certificate: Option<Certificate>,
    /// The secure key of signMethod 11 and 12.
    pub secure_key: Option<Zeroizing<Vec<u8>>>,
    pub permissions: Permissions,
}

impl std::fmt::Debug for Merchant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merchant")
            .field("mer_id", &self.mer_id)
            .field("certificate", &self.certificate)
            .field("secure_key", &self.secure_key.as_ref().map(|_| "…"))
            .field("permissions", &self.permissions)
            .finish()
    }
}

/// What the platform seals for merchants: their secure keys, and the cards behind the tokens
/// they opened (`card_tokens`). The platform seals with its data key and the owner bound in
/// (the merchant's [`secret_owner`], or the token), so a sealed value copied onto another
/// row does not open.
pub trait MerchantSecrets: Send + Sync {
    /// A merchant's secure key.
    fn open(&self, mer_id: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>>;
    /// Seals the card behind `token`; `None` when the sealing key is not there.
    fn seal_card(&self, token: &str, card: &[u8]) -> Option<Vec<u8>>;
    /// The card behind `token`, as [`MerchantSecrets::seal_card`] sealed it.
    fn open_card(&self, token: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>>;
}

/// The owner the card behind a merchant's token is sealed to.
pub fn card_token_owner(token: &str) -> String {
    format!("card token {token}")
}

/// The owner a merchant's sealed secrets are bound to.
pub fn secret_owner(mer_id: &str) -> String {
    format!("merchant {mer_id}")
}

/// Secure keys, fewest and most characters (UnionPay's demo key is 8 digits).
pub const SECURE_KEY_LENGTH: std::ops::RangeInclusive<usize> = 8..=64;

/// Whether `key` can be a secure key: 8 to 64 printable ASCII characters, no spaces.
pub fn secure_key_is_valid(key: &[u8]) -> bool {
    SECURE_KEY_LENGTH.contains(&key.len()) && key.iter().all(|b| b.is_ascii_graphic())
}

impl Merchant {
    /// A registered merchant as the store keeps it, its secure key opened by `secrets`.
    pub fn from_row(
        row: &MerchantRow,
        secrets: &dyn MerchantSecrets,
    ) -> Result<Merchant, MerchantRowError> {
        let secure_key = match &row.secure_key_sealed {
            Some(sealed) => Some(
                secrets
                    .open(&row.mer_id, sealed)
                    .ok_or(MerchantRowError::SecureKey)?,
            ),
            None => None,
        };
        Ok(Merchant {
            mer_id: row.mer_id.clone(),
            name: row.name.clone(),
            certificate: Some(
                Certificate::from_pem(&row.certificate_pem)
                    .map_err(|_| MerchantRowError::Certificate)?,
            ),
            secure_key,
            permissions: Permissions::parse(&row.permissions)
                .map_err(|_| MerchantRowError::Permissions)?,
        })
    }
}

/// A stored merchant the gateway cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MerchantRowError {
    #[error("the stored certificate is not a PEM certificate")]
    Certificate,
    #[error("the stored permissions name an unknown permission")]
    Permissions,
    #[error("the stored secure key does not open under the platform's data key")]
    SecureKey,
}

/// The fixed merchants the wiring gives, by `merId`.
#[derive(Debug, Default)]
pub struct Merchants {
    by_id: HashMap<String, Arc<Merchant>>,
}

impl Merchants {
    pub fn add(&mut self, merchant: Merchant) {
        self.by_id
            .insert(merchant.mer_id.clone(), Arc::new(merchant));
    }

    pub fn get(&self, mer_id: &str) -> Option<Arc<Merchant>> {
        self.by_id.get(mer_id).cloned()
    }

    pub fn contains(&self, mer_id: &str) -> bool {
        self.by_id.contains_key(mer_id)
    }

    /// Every fixed merchant, by `merId`.
    pub fn all(&self) -> Vec<Arc<Merchant>> {
        let mut all: Vec<Arc<Merchant>> = self.by_id.values().cloned().collect();
        all.sort_by(|a, b| a.mer_id.cmp(&b.mer_id));
        all
    }
}

/// Registered merchants read lately: the merchant (or its absence) and when it was read.
pub(crate) type MerchantCache = HashMap<String, (Option<Arc<Merchant>>, i64)>;

impl Gateway {
    /// The merchant `mer_id`: a fixed one, or a registered one (cached for
    /// [`MERCHANT_CACHE_MILLIS`]). A stored merchant the gateway cannot read counts as none,
    /// and is logged.
    pub(crate) async fn merchant(&self, mer_id: &str) -> Result<Option<Arc<Merchant>>, StoreError> {
        if let Some(merchant) = self.merchants.get(mer_id) {
            return Ok(Some(merchant));
        }
        let now = self.clock.now_millis();
        if let Some((merchant, read_at)) = self.lock_cache().get(mer_id)
            && now - read_at < self.config.merchant_cache_millis
        {
            return Ok(merchant.clone());
        }
        let merchant = match self.store.merchant(mer_id).await? {
            Some(row) => match Merchant::from_row(&row, &*self.secrets) {
                Ok(merchant) => Some(Arc::new(merchant)),
                Err(error) => {
                    tracing::error!(error = %error, mer_id = %mer_id, "gateway: a registered merchant cannot be used");
                    None
                }
            },
            None => None,
        };
        let mut cache = self.lock_cache();
        if cache.len() >= MERCHANTS_CACHED {
            cache.clear();
        }
        cache.insert(mer_id.to_owned(), (merchant.clone(), now));
        Ok(merchant)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, MerchantCache> {
        self.merchant_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_read_and_write_by_name() {
        assert_eq!(Permissions::parse("all"), Ok(Permissions::ALL));
        assert_eq!(Permissions::parse(""), Ok(Permissions::NONE));
        let some = Permissions::parse("query, refund").unwrap_or(Permissions::NONE);
        assert!(some.query && some.refund && !some.undo);
        assert_eq!(some.to_text(), "refund,query");
        assert_eq!(
            Permissions::parse(&Permissions::ALL.to_text()),
            Ok(Permissions::ALL)
        );
        assert_eq!(Permissions::parse("query,root"), Err(UnknownPermission));
    }
}

//! The token vault: token number → the card behind it, for the switch's detokenization.
//!
//! Entries are cached in memory as read from the store — the card number still encrypted —
//! and decrypted in the HSM on every lookup, so a clear card number exists only for the
//! moment a caller holds the returned [`Detokenized`]. The token service drops an entry from
//! the cache whenever it commits a change to that token or its card; the cache is bounded.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cloudpass_core::lifecycle::TokenStatus;
use cloudpass_core::{Clock, Currency, Expiry, Money, Pan};
use cloudpass_crypto::{Hsm, KeyHandle};
use cloudpass_store::{AnyStore, TokenStore, VaultEntry};

use crate::error::{TspError, TspResult};

/// Most cached entries; when full, the cache is emptied and refills from the store.
pub const DEFAULT_CACHE_CAPACITY: usize = 1_000_000;

/// What detokenization returns: the card and the token's state, as of this lookup.
pub struct Detokenized {
    pub pan: Pan,
    pub card_expiry: Expiry,
    pub card_status: String,
    pub issuer_id: String,
    pub par: String,
    pub token_id: String,
    pub token_status: TokenStatus,
    pub token_expiry: Expiry,
    pub token_requestor_id: String,
    pub device_id: String,
    pub domain_nfc: bool,
    pub domain_in_app: bool,
    pub pan_sequence: u8,
    pub atc_issued_until: i64,
    /// The device card has the e-cash (UPCash) application.
    pub ecash_enabled: bool,
    /// `handset_se`, `wearable`, `hce` or `sim_se`.
    pub device_kind: String,
    pub device_state: String,
    pub wallet: String,
    /// The card product's contactless and online no-PIN limits, if configured.
    pub no_pin_limits: Option<(Money, Money)>,
}

pub struct Vault {
    store: AnyStore,
    hsm: Arc<dyn Hsm>,
    data_key: KeyHandle,
    /// Each entry with when it was loaded (the clock's milliseconds).
    cache: RwLock<HashMap<String, (Arc<VaultEntry>, i64)>>,
    capacity: usize,
    ttl: Option<Duration>,
    clock: Arc<dyn Clock>,
}

/// Associated data binding a card's encrypted number to the card.
pub fn pan_aad(card_id: &str) -> Vec<u8> {
    format!("cloudpass card {card_id}").into_bytes()
}

impl Vault {
    /// A vault reading time (for the cache's `ttl`) through `clock`.
    pub fn new(
        store: AnyStore,
        hsm: Arc<dyn Hsm>,
        data_key: KeyHandle,
        capacity: usize,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            hsm,
            data_key,
            cache: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
            ttl: None,
            clock,
        }
    }

    /// Cached entries older than `ttl` (by the vault's clock) are read again from the store.
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    fn fresh(&self, loaded_at: i64) -> bool {
        self.ttl.is_none_or(|ttl| {
            let age = self.clock.now_millis().saturating_sub(loaded_at);
            u128::try_from(age).is_ok_and(|age| age < ttl.as_millis())
        })
    }

    /// The card behind `token_number`, or `None` if no such token exists.
    pub async fn detokenize(&self, token_number: &str) -> TspResult<Option<Detokenized>> {
        let cached = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token_number)
            .filter(|(_, loaded_at)| self.fresh(*loaded_at))
            .map(|(entry, _)| Arc::clone(entry));
        let entry = match cached {
            Some(entry) => entry,
            None => {
                let Some(entry) = self.store.vault_entry(token_number).await? else {
                    return Ok(None);
                };
                let entry = Arc::new(entry);
                let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= self.capacity {
                    cache.clear();
                }
                cache.insert(
                    token_number.to_owned(),
                    (Arc::clone(&entry), self.clock.now_millis()),
                );
                entry
            }
        };
        self.open(&entry).map(Some)
    }

    fn open(&self, entry: &VaultEntry) -> TspResult<Detokenized> {
        let clear = self.hsm.decrypt(
            self.data_key,
            &entry.card.pan_encrypted,
            &pan_aad(&entry.card.id),
        )?;
        let text = std::str::from_utf8(&clear)
            .map_err(|_| TspError::Internal("stored card number is not text".into()))?;
        let pan = Pan::parse(text)
            .map_err(|_| TspError::Internal("stored card number is invalid".into()))?;
        let corrupt =
            |what: &str| TspError::Internal(format!("token {}: bad {what}", entry.token.id));
        Ok(Detokenized {
            pan,
            card_expiry: entry
                .card
                .expiry
                .parse()
                .map_err(|_| corrupt("card expiry"))?,
            card_status: entry.card.status.clone(),
            issuer_id: entry.card.issuer_id.clone(),
            par: entry.card.par.clone(),
            token_id: entry.token.id.clone(),
            token_status: TokenStatus::parse(&entry.token.status)
                .ok_or_else(|| corrupt("status"))?,
            token_expiry: entry
                .token
                .expiry
                .parse()
                .map_err(|_| corrupt("token expiry"))?,
            token_requestor_id: entry.token.token_requestor_id.clone(),
            device_id: entry.token.device_id.clone(),
            domain_nfc: entry.token.domain_nfc,
            domain_in_app: entry.token.domain_in_app,
            pan_sequence: u8::try_from(entry.token.pan_sequence)
                .map_err(|_| corrupt("PAN sequence"))?,
            atc_issued_until: entry.token.atc_issued_until,
            ecash_enabled: entry.token.ecash_enabled,
            device_kind: entry.device_kind.clone(),
            device_state: entry.device_state.clone(),
            wallet: entry.wallet.clone(),
            no_pin_limits: match entry.limits {
                Some(limits) => {
                    let currency = u16::try_from(limits.currency)
                        .ok()
                        .and_then(|numeric| Currency::from_numeric(numeric).ok())
                        .ok_or_else(|| corrupt("product currency"))?;
                    let amount = |minor: i64| {
                        u64::try_from(minor)
                            .map(|minor| Money::new(minor, currency))
                            .map_err(|_| corrupt("no-PIN limit"))
                    };
                    Some((amount(limits.contactless)?, amount(limits.online)?))
                }
                None => None,
            },
        })
    }

    /// The card behind `token_number`, read from the store without touching the cache
    /// (what a cache miss costs; for measurements).
    pub async fn detokenize_uncached(&self, token_number: &str) -> TspResult<Option<Detokenized>> {
        match self.store.vault_entry(token_number).await? {
            Some(entry) => self.open(&entry).map(Some),
            None => Ok(None),
        }
    }

    /// Drops cached entries after their tokens or cards changed.
    pub fn invalidate(&self, token_numbers: &[String]) {
        if token_numbers.is_empty() {
            return;
        }
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        for number in token_numbers {
            cache.remove(number);
        }
    }

    /// Empties the cache (for cold-cache measurements, and when another process changed
    /// tokens).
    pub fn clear(&self) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn cached(&self) -> usize {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

//! The token service's keys, kept in the HSM and stored only wrapped under its master key:
//! the data key that encrypts card numbers at rest, the fingerprint key that finds a card
//! without decrypting anything, the OTP key that hashes step-up codes, and one issuer master
//! key (IMK-AC) per issuer from which every token's EMV keys derive.
//!
//! A key is generated the first time it is needed and written with "insert if absent", so
//! two instances starting together agree on one key.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cloudpass_core::Clock;
use cloudpass_crypto::{Hsm, KeyHandle, KeyUsage, WrappedKey};
use cloudpass_store::{AnyStore, TokenStore};

use crate::error::{TspError, TspResult};

pub struct TspKeys {
    pub data: KeyHandle,
    pub fingerprint: KeyHandle,
    pub otp: KeyHandle,
    /// Fingerprints idempotent requests (their bodies may carry card data).
    pub requests: KeyHandle,
    issuer_master_keys: RwLock<HashMap<String, KeyHandle>>,
}

/// Loads the key stored under `name`, or makes, wraps and stores one.
pub async fn load_or_create(
    store: &AnyStore,
    hsm: &Arc<dyn Hsm>,
    clock: &dyn Clock,
    name: &str,
    usage: KeyUsage,
) -> TspResult<KeyHandle> {
    let stored = match store.key(name).await? {
        Some(stored) => stored,
        None => {
            let fresh = hsm.generate_key(usage)?;
            let wrapped = hsm.wrap(fresh)?.to_text();
            hsm.release(fresh)?;
            store
                .insert_key_if_absent(name, &wrapped, clock.now_millis())
                .await?
        }
    };
    let wrapped = WrappedKey::from_text(&stored)?;
    if wrapped.usage() != usage {
        return Err(TspError::Internal(format!(
            "stored key {name} is a {} key, expected {usage}",
            wrapped.usage()
        )));
    }
    Ok(hsm.load_wrapped(&wrapped)?)
}

impl TspKeys {
    pub async fn load(store: &AnyStore, hsm: &Arc<dyn Hsm>, clock: &dyn Clock) -> TspResult<Self> {
        Ok(Self {
            data: load_or_create(store, hsm, clock, "tsp:data", KeyUsage::DataEncryption).await?,
            fingerprint: load_or_create(
                store,
                hsm,
                clock,
                "tsp:fingerprint",
                KeyUsage::Fingerprint,
            )
            .await?,
            otp: load_or_create(store, hsm, clock, "tsp:otp", KeyUsage::Fingerprint).await?,
            requests: load_or_create(store, hsm, clock, "tsp:requests", KeyUsage::Fingerprint)
                .await?,
            issuer_master_keys: RwLock::new(HashMap::new()),
        })
    }

    /// The IMK-AC of an issuer's tokens.
    pub async fn issuer_master_key(
        &self,
        store: &AnyStore,
        hsm: &Arc<dyn Hsm>,
        clock: &dyn Clock,
        issuer_id: &str,
    ) -> TspResult<KeyHandle> {
        if let Some(handle) = self
            .issuer_master_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(issuer_id)
        {
            return Ok(*handle);
        }
        let handle = load_or_create(
            store,
            hsm,
            clock,
            &format!("tsp:imk-ac:{issuer_id}"),
            KeyUsage::IssuerMasterAc,
        )
        .await?;
        let mut keys = self
            .issuer_master_keys
            .write()
            .unwrap_or_else(|p| p.into_inner());
        Ok(*keys.entry(issuer_id.to_owned()).or_insert(handle))
    }
}

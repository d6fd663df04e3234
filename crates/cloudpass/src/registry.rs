//! The parties of a production network, from a file the operator keeps (`serve --no-sandbox
//! --parties FILE`): issuers (banks) with their BIN ranges and products, token requestors
//! (wallets), and acquirers with their merchants and terminals. Secrets are not in the file:
//! API keys appear as their SHA-256, and each party's signing secret is read from a file of
//! its own. Loading is idempotent: a party already in the store is left as it is.
//!
//! The format is documented in docs/security.md ("Production") with an example.

use std::path::{Path, PathBuf};

use cloudpass_core::{Currency, Money, hex};
use cloudpass_crypto::KeyHandle;
use cloudpass_store::{BinRangeRow, IssuerRow, ProductRow, TokenRequestorRow, TokenStore};
use cloudpass_switch::Switch;
use cloudpass_switch::participants::{Acquirer, Merchant};
use cloudpass_tsp::Tsp;
use serde::Deserialize;
use zeroize::Zeroizing;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartiesFile {
    #[serde(default)]
    pub issuers: Vec<IssuerEntry>,
    #[serde(default)]
    pub token_requestors: Vec<WalletEntry>,
    #[serde(default)]
    pub acquirers: Vec<AcquirerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerEntry {
    pub id: String,
    pub name: String,
    /// The bank's issuer API (eligibility, approval, passcodes), https.
    pub api_url: String,
    /// SHA-256 of the bank's API key at the token service, 64 hex digits.
    pub api_key_sha256: String,
    /// Where the token service notifies the bank, https to a public host.
    pub webhook_url: Option<String>,
    /// A file holding the secret shared with the bank (signs calls both ways).
    pub secret_file: PathBuf,
    pub card_bins: Vec<BinEntry>,
    pub token_bins: Vec<BinEntry>,
    pub products: Vec<ProductEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinEntry {
    pub prefix: String,
    pub product: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductEntry {
    pub product: String,
    /// ISO 4217 numeric.
    pub currency: u16,
    pub contactless_no_pin_limit: String,
    pub online_no_pin_limit: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletEntry {
    pub id: String,
    pub name: String,
    pub wallet: String,
    pub api_key_sha256: String,
    pub webhook_url: Option<String>,
    pub secret_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquirerEntry {
    pub id: String,
    pub name: String,
    /// Production acquirers MAC their messages; the file must say so.
    pub mac_required: bool,
    /// May send card-not-present (typed card number) e-commerce payments; default no.
    #[serde(default)]
    pub card_not_present: bool,
    pub merchants: Vec<MerchantEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantEntry {
    pub id: String,
    pub terminals: Vec<String>,
}

/// Reads and checks the file: JSON as documented, every webhook and API URL https to a
/// public host, every acquirer requiring MACs. Errors name the place, never a secret.
pub fn read(path: &Path) -> Result<PartiesFile, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let parties: PartiesFile =
        cloudpass_http::parse_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let public = |what: &str, url: &str| {
        if cloudpass_http::client::public_url(url) {
            Ok(())
        } else {
            Err(format!(
                "{}: {what} must be https to a public host",
                path.display()
            ))
        }
    };
    for issuer in &parties.issuers {
        public(&format!("issuer {} api_url", issuer.id), &issuer.api_url)?;
        if let Some(url) = &issuer.webhook_url {
            public(&format!("issuer {} webhook_url", issuer.id), url)?;
        }
    }
    for wallet in &parties.token_requestors {
        if let Some(url) = &wallet.webhook_url {
            public(&format!("token requestor {} webhook_url", wallet.id), url)?;
        }
    }
    if let Some(plain) = parties.acquirers.iter().find(|a| !a.mac_required) {
        return Err(format!(
            "{}: acquirer {} does not require MACs; a production network registers none",
            path.display(),
            plain.id
        ));
    }
    Ok(parties)
}

fn key_hash(owner: &str, text: &str) -> Result<Vec<u8>, String> {
    hex::decode(text)
        .ok()
        .filter(|hash| hash.len() == 32)
        .ok_or_else(|| format!("{owner}: api_key_sha256 must be 64 hex digits"))
}

fn secret(owner: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{owner}: cannot read its secret file {}: {e}",
            path.display()
        )
    })?);
    let trimmed = text.trim();
    if trimmed.len() < 16 {
        return Err(format!(
            "{owner}: the secret in {} is shorter than 16 characters",
            path.display()
        ));
    }
    Ok(Zeroizing::new(trimmed.as_bytes().to_vec()))
}

/// Puts the file's issuers and token requestors into the token service's store (those not
/// there yet).
pub async fn load_into_tsp(tsp: &Tsp, parties: &PartiesFile) -> Result<(), String> {
    let store = tsp.store();
    let failed = |e: &dyn std::fmt::Display| format!("registering the parties: {e}");
    let now = tsp.now();
    for issuer in &parties.issuers {
        if store
            .issuer(&issuer.id)
            .await
            .map_err(|e| failed(&e))?
            .is_some()
        {
            continue;
        }
        let owner = format!("issuer {}", issuer.id);
        let mut ranges = Vec::new();
        for (kind, bins) in [("card", &issuer.card_bins), ("token", &issuer.token_bins)] {
            for bin in bins {
                ranges.push(BinRangeRow {
                    prefix: bin.prefix.clone(),
                    kind: kind.into(),
                    issuer_id: issuer.id.clone(),
                    product: bin.product.clone(),
                    funding: bin.product.clone(),
                });
            }
        }
        let mut products = Vec::new();
        for product in &issuer.products {
            let currency = Currency::from_numeric(product.currency)
                .map_err(|e| format!("{owner} product {}: {e}", product.product))?;
            let limit = |text: &str| {
                Money::parse_decimal(text, currency)
                    .map(|money| i64::try_from(money.minor_units()).unwrap_or(i64::MAX))
                    .map_err(|e| format!("{owner} product {}: {e}", product.product))
            };
            products.push(ProductRow {
                issuer_id: issuer.id.clone(),
                product: product.product.clone(),
                currency: i64::from(product.currency),
                contactless_no_pin_limit: limit(&product.contactless_no_pin_limit)?,
                online_no_pin_limit: limit(&product.online_no_pin_limit)?,
                updated_at: now,
                version: 0,
            });
        }
        let row = IssuerRow {
            id: issuer.id.clone(),
            name: issuer.name.clone(),
            api_url: issuer.api_url.clone(),
            api_key_hash: key_hash(&owner, &issuer.api_key_sha256)?,
            webhook_url: issuer.webhook_url.clone(),
            webhook_secret: Some(
                tsp.seal_secret(&issuer.id, &secret(&owner, &issuer.secret_file)?)
                    .map_err(|e| failed(&e))?,
            ),
            created_at: now,
        };
        store
            .insert_issuer(&row, &ranges, &products)
            .await
            .map_err(|e| failed(&e))?;
    }
    for wallet in &parties.token_requestors {
        if store
            .token_requestor(&wallet.id)
            .await
            .map_err(|e| failed(&e))?
            .is_some()
        {
            continue;
        }
        let owner = format!("token requestor {}", wallet.id);
        store
            .insert_token_requestor(&TokenRequestorRow {
                id: wallet.id.clone(),
                name: wallet.name.clone(),
                wallet: wallet.wallet.clone(),
                api_key_hash: key_hash(&owner, &wallet.api_key_sha256)?,
                webhook_url: wallet.webhook_url.clone(),
                webhook_secret: Some(
                    tsp.seal_secret(&wallet.id, &secret(&owner, &wallet.secret_file)?)
                        .map_err(|e| failed(&e))?,
                ),
                created_at: now,
            })
            .await
            .map_err(|e| failed(&e))?;
    }
    tsp.reload_bins().await.map_err(|e| failed(&e))
}

/// Registers the file's acquirers, merchants and terminals with the switch; every terminal
/// shares `terminal_master` (from the key ceremony in the keys directory).
pub fn register_acquirers(
    switch: &Switch,
    parties: &PartiesFile,
    terminal_master: KeyHandle,
) -> Result<(), String> {
    for acquirer in &parties.acquirers {
        let owner = format!("acquirer {}", acquirer.id);
        switch
            .register_acquirer(Acquirer {
                id: acquirer.id.clone(),
                name: acquirer.name.clone(),
                mac_required: acquirer.mac_required,
                card_not_present: acquirer.card_not_present,
            })
            .map_err(|e| format!("{owner}: {e}"))?;
        for merchant in &acquirer.merchants {
            switch
                .register_merchant(Merchant {
                    id: merchant.id.clone(),
                    acquirer_id: acquirer.id.clone(),
                })
                .map_err(|e| format!("{owner} merchant {}: {e}", merchant.id))?;
            for terminal in &merchant.terminals {
                switch
                    .register_terminal(&acquirer.id, &merchant.id, terminal, terminal_master)
                    .map_err(|e| format!("{owner} terminal {terminal}: {e}"))?;
            }
        }
    }
    Ok(())
}

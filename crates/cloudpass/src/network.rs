//! The payment network's wiring: the switch reads tokens through the token service's vault,
//! verifies cryptograms with the token service's issuer master keys in the shared HSM, and
//! exchanges keys with the issuer host and the terminals (the sandbox's key ceremony).

use std::path::Path;
use std::sync::Arc;

use cloudpass_core::authorization::TokenFacts;
use cloudpass_core::device::{DeviceKind, DeviceState};
use cloudpass_core::{Currency, Money, hex};
use cloudpass_crypto::{CheckValue, Hsm, KeyHandle, KeyUsage, SoftHsm};
use cloudpass_sim::issuer_host::IssuerHost;
use cloudpass_switch::vault::{BoxFuture, TokenVault, VaultError, VaultRecord};
use cloudpass_tsp::Tsp;

use crate::app::{
    TERMINAL_MASTER_KEY_FILE, ZONE_MASTER_KEY_FILE, ZONE_PIN_KEY_FILE, sandbox_secret,
};

/// The issuer's half of the key ceremony: its zone PIN key exported under the zone master
/// key shared with the switch (`zone-master.key`), written with its check value to
/// `zone-pin-key.txt` for a switch in another process, and returned.
pub fn publish_zone_pin_key(
    issuer_host: &IssuerHost,
    data_dir: &Path,
) -> Result<(Vec<u8>, CheckValue), String> {
    let zone_master = sandbox_secret(&data_dir.join(ZONE_MASTER_KEY_FILE), 16)?;
    let kek = issuer_host
        .import_zone_master_key(&zone_master)
        .map_err(|e| e.to_string())?;
    let (encrypted, check_value) = issuer_host
        .export_zone_pin_key(kek)
        .map_err(|e| e.to_string())?;
    let path = data_dir.join(ZONE_PIN_KEY_FILE);
    crate::data_dir::write_private(
        &path,
        format!("{} {check_value}\n", hex::encode(&encrypted)).as_bytes(),
    )?;
    Ok((encrypted, check_value))
}

/// Reads what [`publish_zone_pin_key`] wrote.
pub fn read_zone_pin_key(data_dir: &Path) -> Result<(Vec<u8>, CheckValue), String> {
    let path = data_dir.join(ZONE_PIN_KEY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read the issuer's zone PIN key {} ({e}); start the issuer host first",
            path.display()
        )
    })?;
    let mut parts = text.split_whitespace();
    let bad = || {
        format!(
            "{} must hold \"<key hex> <check value hex>\"",
            path.display()
        )
    };
    let encrypted = parts
        .next()
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(bad)?;
    let check_value = parts
        .next()
        .and_then(|h| hex::decode_array::<3>(h).ok())
        .map(CheckValue)
        .ok_or_else(bad)?;
    Ok((encrypted, check_value))
}

/// The switch's half: the zone master key, and the issuer's zone PIN key under it, loaded
/// only if its check value matches.
pub fn load_issuer_pin_key(
    hsm: &SoftHsm,
    keys: KeyFiles<'_>,
    encrypted: &[u8],
    check_value: CheckValue,
) -> Result<KeyHandle, String> {
    let zone_master = keys.secret(ZONE_MASTER_KEY_FILE, 16)?;
    let kek = hsm
        .import_clear(KeyUsage::ZoneMaster, &zone_master)
        .map_err(|e| e.to_string())?;
    hsm.import_under_kek(kek, KeyUsage::PinEncryption, encrypted, Some(check_value))
        .map_err(|e| format!("the issuer's zone PIN key: {e}"))
}

/// The master key every sandbox terminal's sign-on keys travel under.
pub fn load_terminal_master_key(hsm: &SoftHsm, keys: KeyFiles<'_>) -> Result<KeyHandle, String> {
    hsm.import_clear(
        KeyUsage::TerminalMaster,
        &keys.secret(TERMINAL_MASTER_KEY_FILE, 16)?,
    )
    .map_err(|e| e.to_string())
}

/// Where the key ceremony's files are: the sandbox's, made in the data directory on first
/// use; or production's, in a directory the operator keeps apart from the data, each file
/// required.
#[derive(Debug, Clone, Copy)]
pub enum KeyFiles<'a> {
    Sandbox(&'a Path),
    Production(&'a Path),
}

impl KeyFiles<'_> {
    pub fn dir(&self) -> &Path {
        match self {
            KeyFiles::Sandbox(dir) | KeyFiles::Production(dir) => dir,
        }
    }

    fn secret(&self, name: &str, length: usize) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        let path = self.dir().join(name);
        match self {
            KeyFiles::Sandbox(_) => sandbox_secret(&path, length),
            KeyFiles::Production(_) if !path.exists() => Err(format!(
                "the key ceremony's file {} is missing",
                path.display()
            )),
            KeyFiles::Production(_) => sandbox_secret(&path, length),
        }
    }
}

/// The switch's view of the token service's vault.
pub struct TspTokenVault {
    tsp: Arc<Tsp>,
}

impl TspTokenVault {
    pub fn new(tsp: Arc<Tsp>) -> Self {
        Self { tsp }
    }
}

impl TokenVault for TspTokenVault {
    fn lookup<'a>(
        &'a self,
        token_number: &'a str,
    ) -> BoxFuture<'a, Result<Option<VaultRecord>, VaultError>> {
        Box::pin(async move {
            let Some(found) = self
                .tsp
                .vault
                .detokenize(token_number)
                .await
                .map_err(|e| VaultError(e.to_string()))?
            else {
                return Ok(None);
            };
            let issuer_master_key = self
                .tsp
                .issuer_master_key(&found.issuer_id)
                .await
                .map_err(|e| VaultError(e.to_string()))?;
            let device_kind = DeviceKind::parse(&found.device_kind)
                .ok_or_else(|| VaultError(format!("unknown device kind {}", found.device_kind)))?;
            // No product limits configured: nothing is free of the PIN.
            let (contactless_no_pin_limit, online_no_pin_limit) = found
                .no_pin_limits
                .unwrap_or((Money::zero(Currency::CNY), Money::zero(Currency::CNY)));
            Ok(Some(VaultRecord {
                pan: found.pan,
                card_expiry: found.card_expiry,
                facts: TokenFacts {
                    status: found.token_status,
                    token_expiry: found.token_expiry,
                    device_lost: DeviceState::parse(&found.device_state)
                        != Some(DeviceState::Active),
                    domain_nfc: found.domain_nfc,
                    domain_in_app: found.domain_in_app,
                },
                token_id: found.token_id,
                token_expiry: found.token_expiry,
                issuer_id: found.issuer_id,
                par: found.par,
                token_requestor_id: found.token_requestor_id,
                wallet: found.wallet,
                device_kind: device_kind.wire_code(),
                pan_sequence: found.pan_sequence,
                atc_issued_until: if device_kind.has_secure_element() {
                    0
                } else {
                    found.atc_issued_until
                },
                issuer_master_key,
                contactless_no_pin_limit,
                online_no_pin_limit,
                ecash_enabled: found.ecash_enabled,
            }))
        })
    }
}

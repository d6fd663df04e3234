//! The payment network's wiring: the switch reads tokens through the token service's vault,
//! verifies cryptograms with the token service's issuer master keys in the shared HSM, and
//! exchanges keys with the issuer host and the terminals (the sandbox's key ceremony).

use std::sync::Arc;

use cloudpass_core::authorization::TokenFacts;
use cloudpass_core::device::{DeviceKind, DeviceState};
use cloudpass_core::{Currency, Money};
use cloudpass_switch::vault::{BoxFuture, TokenVault, VaultError, VaultRecord};
use cloudpass_tsp::Tsp;

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
            }))
        })
    }
}

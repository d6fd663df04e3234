//! A phone provisioned the way a wallet does it through the token service's API: register
//! the device with its public key, ask for a token for a card, open the sealed card profile.
//! The bench and the chaos run both load the network with such phones.

use cloudpass::sandbox;
use cloudpass_core::hex;
use cloudpass_crypto::{DeviceKeyPair, OsRandom};
use cloudpass_sim::phone::{Phone, envelope_from_json};
use serde_json::json;

/// A card for a phone: its number and expiry (YYMM).
pub struct PhoneCard<'a> {
    pub number: &'a str,
    pub expiry: &'a str,
    /// Ask for the card's e-cash (UPCash) on the device.
    pub ecash: bool,
}

/// Registers `device_id` under the sandbox's first wallet and provisions `card` to it on
/// the platform at `base`; the phone holding the opened profile. Errors name the step and
/// the token service's code, never the card.
pub async fn provision(
    http: &reqwest::Client,
    base: &str,
    device_id: &str,
    card: PhoneCard<'_>,
) -> Result<Phone, String> {
    let keys = DeviceKeyPair::generate(&OsRandom);
    provision_with(http, base, device_id, card, &keys).await
}

/// [`provision`] with the device's `keys` given: called again with the same arguments it is
/// the same request (the same Idempotency-Keys and bodies), so a caller can retry it after
/// a call that got no answer.
pub async fn provision_with(
    http: &reqwest::Client,
    base: &str,
    device_id: &str,
    card: PhoneCard<'_>,
    keys: &DeviceKeyPair,
) -> Result<Phone, String> {
    let wallet = &sandbox::WALLETS[0];
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(wallet.api_key)
            .header("Idempotency-Key", format!("{device_id}-{path}"))
            .json(&body)
            .send()
    };
    let refused = |step: &str, answer: &serde_json::Value| {
        format!(
            "{step} for {device_id}: {} {}",
            answer["code"].as_str().unwrap_or("no code"),
            answer["message"].as_str().unwrap_or_default()
        )
    };
    let registration = post(
        "/tsp/v1/devices",
        json!({"device_id": device_id, "kind": "handset_se", "brand": "cloudpass load",
               "account_id": sandbox::ACCOUNT_ID, "unlock_set": true,
               "public_key": hex::encode(&keys.public_key())}),
    )
    .await
    .map_err(|e| format!("device registration for {device_id}: {e}"))?;
    if !registration.status().is_success() {
        let answer = registration.json().await.unwrap_or_default();
        return Err(refused("device registration", &answer));
    }
    let answer: serde_json::Value = post(
        "/tsp/v1/tokens",
        json!({"device_id": device_id, "account_id": sandbox::ACCOUNT_ID,
               "card": {"number": card.number, "expiry": card.expiry}, "ecash": card.ecash}),
    )
    .await
    .map_err(|e| format!("provisioning for {device_id}: {e}"))?
    .json()
    .await
    .map_err(|e| format!("provisioning for {device_id}: {e}"))?;
    let token_id = answer["token"]["token_id"].as_str().unwrap_or_default();
    let envelope = envelope_from_json(&answer["card_profile"])
        .map_err(|_| refused("provisioning", &answer))?;
    Phone::provision(keys, token_id, &envelope).map_err(|e| format!("{device_id}: {e}"))
}

//! `cloudpass device …`: play the phone's part by hand — make the key pair a device registers
//! with, and open the card profile the token service seals to it.

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;
use cloudpass_core::hex;
use cloudpass_crypto::card_profile::{self, DeviceKeys};
use cloudpass_crypto::primitives::tdes_check_value;
use cloudpass_crypto::{DeviceEnvelope, DeviceKeyPair, OsRandom};
use serde_json::{Value, json};

use super::CliResult;

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Make an X25519 key pair: the secret goes to a new file (mode 0600), the public key to
    /// stdout, ready for `POST /tsp/v1/devices`.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Open a sealed card profile (the `card_profile` object, or a whole provisioning or
    /// activation response, on stdin) with the device's secret key. Prints the profile and
    /// the keys' check values, never the keys.
    OpenProfile {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        token_id: String,
    },
}

pub fn run(command: DeviceCommand) -> CliResult {
    match command {
        DeviceCommand::Keygen { out } => {
            use std::io::Write;
            let pair = DeviceKeyPair::generate(&OsRandom);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(&out)
                .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
            file.write_all(hex::encode(&pair.secret_bytes()[..]).as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            println!("{}", hex::encode(&pair.public_key()));
            Ok(())
        }
        DeviceCommand::OpenProfile { key, token_id } => {
            let secret = std::fs::read_to_string(&key)
                .map_err(|e| format!("cannot read {}: {e}", key.display()))?;
            let secret: [u8; 32] = hex::decode_array(secret.trim())
                .map_err(|_| format!("{} must hold 64 hex digits", key.display()))?;
            let pair = DeviceKeyPair::from_secret(secret);
            let mut input = String::new();
            std::io::stdin()
                .take(1 << 20)
                .read_to_string(&mut input)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            let document: Value =
                serde_json::from_str(&input).map_err(|e| format!("stdin is not JSON: {e}"))?;
            let envelope = if document.get("card_profile").is_some() {
                &document["card_profile"]
            } else {
                &document
            };
            let field = |name: &str| -> Result<Vec<u8>, String> {
                envelope
                    .get(name)
                    .and_then(Value::as_str)
                    .and_then(|text| hex::decode(text).ok())
                    .ok_or_else(|| format!("the envelope has no hex \"{name}\""))
            };
            let sealed = DeviceEnvelope {
                ephemeral_public_key: field("ephemeral_public_key")?
                    .try_into()
                    .map_err(|_| "ephemeral_public_key must be 32 bytes".to_owned())?,
                nonce: field("nonce")?
                    .try_into()
                    .map_err(|_| "nonce must be 12 bytes".to_owned())?,
                ciphertext: field("ciphertext")?,
            };
            let plaintext = pair
                .open(&sealed, token_id.as_bytes())
                .map_err(|e| format!("{e} (wrong key or token ID?)"))?;
            let (profile, keys) = card_profile::parse(&plaintext).map_err(|e| e.to_string())?;
            let profile: Value = serde_json::from_slice(&profile).map_err(|e| e.to_string())?;
            let keys = match keys {
                DeviceKeys::DeviceUnique { master_key } => {
                    json!({"kind": "device_unique", "mk_ac_check_value": hex::encode(&tdes_check_value(&master_key))})
                }
                DeviceKeys::LimitedUse { first_atc, keys } => json!({
                    "kind": "limited_use",
                    "atc_range": format!("{first_atc}..={}", u32::from(first_atc) + keys.len() as u32 - 1),
                    "check_values": keys.iter().map(|k| hex::encode(&tdes_check_value(k))).collect::<Vec<_>>(),
                }),
            };
            let output = json!({"profile": profile, "keys": keys});
            println!(
                "{}",
                serde_json::to_string_pretty(&output).map_err(|e| e.to_string())?
            );
            Ok(())
        }
    }
}

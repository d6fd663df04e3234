//! Handsets: the phones and watches people sign the Cloud QuickPass app in on, as the
//! sandbox's phone simulator (`/phone`) holds them. Each has its own X25519 key pair (made
//! here, as a phone makes its own; the secret never leaves this module), and keeps the card
//! profiles the token service sealed to it, each card's ATC and e-cash balance, and which
//! card is its default.
//!
//! Kept in memory and, when given a directory, one private JSON file per handset, replaced
//! whole on every change: an ATC, once spent, is on disk before the cryptogram leaves, so a
//! restart never reuses one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cloudpass_core::{AccountNumber, Expiry, Money, Random, Token, hex};
use cloudpass_crypto::DeviceKeyPair;
use cloudpass_iso8583::emv_data::TerminalData;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::phone::{InAppCryptogram, Phone, PhoneError, Tap, envelope_from_json};

/// The most handsets kept, and cards one handset holds (an Apple device holds 8 or 12).
pub const HANDSETS_MAX: usize = 10_000;
pub const CARDS_PER_HANDSET_MAX: usize = 16;
/// Sealed profiles one card keeps (the first and its key batches): older batches are spent.
const PROFILES_PER_CARD_MAX: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum HandsetError {
    #[error("no such device")]
    NoDevice,
    #[error("this device holds no such card")]
    NoCard,
    #[error("this device has no card yet; add one in the app")]
    NoCards,
    #[error("the simulator holds {HANDSETS_MAX} devices already")]
    Full,
    #[error("a device holds at most {CARDS_PER_HANDSET_MAX} cards")]
    TooManyCards,
    #[error("the device card: {0}")]
    Phone(#[from] PhoneError),
    #[error("the device's state could not be saved: {0}")]
    Save(String),
}

/// One card as a handset keeps it.
#[derive(Clone, Serialize, Deserialize)]
struct HeldCard {
    token_id: String,
    label: String,
    /// Sealed profiles, oldest first, as the token service's API writes them.
    profiles: Vec<Value>,
    atc: u16,
    ecash: Option<u64>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Handset {
    id: String,
    owner: String,
    kind: String,
    maker: String,
    name: String,
    /// Hex of the X25519 secret key.
    secret_key: String,
    cards: Vec<HeldCard>,
    default_token: Option<String>,
}

/// A handset as the simulator page shows it.
#[derive(Debug, Clone)]
pub struct HandsetView {
    pub id: String,
    pub kind: String,
    pub maker: String,
    pub name: String,
    pub cards: Vec<HeldCardView>,
}

#[derive(Debug, Clone)]
pub struct HeldCardView {
    pub token_id: String,
    pub label: String,
    /// Last four digits of the device card number (the token).
    pub token_last4: String,
    pub is_default: bool,
    pub contactless_no_pin_limit: Option<Money>,
    pub online_no_pin_limit: Option<Money>,
    /// Limited-use keys left (HCE), if the card has a batch.
    pub keys_left: Option<usize>,
}

/// What a card presents to a terminal: the tap's data and what the terminal reads with it.
pub struct Presented {
    pub token: Token,
    pub expiry: Expiry,
    pub tap: Tap,
}

/// A card's cryptogram for an in-app payment.
pub struct PresentedInApp {
    pub token: Token,
    pub expiry: Expiry,
    pub cryptogram: InAppCryptogram,
}

pub struct Handsets {
    dir: Option<PathBuf>,
    handsets: Mutex<HashMap<String, Handset>>,
}

impl Handsets {
    /// The handsets kept under `dir` (made if missing), or in memory only.
    pub fn open(dir: Option<&Path>) -> Result<Handsets, HandsetError> {
        let mut handsets = HashMap::new();
        if let Some(dir) = dir {
            create_private_dir(dir)
                .map_err(|e| HandsetError::Save(format!("{}: {e}", dir.display())))?;
            let entries = std::fs::read_dir(dir)
                .map_err(|e| HandsetError::Save(format!("{}: {e}", dir.display())))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == "json")
                    && let Ok(text) = std::fs::read_to_string(&path)
                {
                    match serde_json::from_str::<Handset>(&text) {
                        Ok(handset) => {
                            handsets.insert(handset.id.clone(), handset);
                        }
                        Err(error) => tracing::warn!(
                            file = %path.display(), error = %error,
                            "phone simulator: a saved device could not be read; skipped"
                        ),
                    }
                }
            }
        }
        Ok(Handsets {
            dir: dir.map(Path::to_path_buf),
            handsets: Mutex::new(handsets),
        })
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handset>> {
        self.handsets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, handset: &Handset) -> Result<(), HandsetError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let text = serde_json::to_vec(handset).map_err(|e| HandsetError::Save(e.to_string()))?;
        let path = dir.join(format!("{}.json", handset.id));
        let partial = dir.join(format!("{}.json.partial", handset.id));
        write_private(&partial, &text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|e| HandsetError::Save(format!("{}: {e}", path.display())))
    }

    /// A new handset of `owner` (the app's account), with a key pair of its own.
    pub fn create(
        &self,
        random: &dyn Random,
        owner: &str,
        kind: &str,
        maker: &str,
        name: &str,
    ) -> Result<(String, [u8; 32]), HandsetError> {
        let keys = DeviceKeyPair::generate(random);
        let id = format!("hs_{:016x}", random.next_u64());
        let handset = Handset {
            id: id.clone(),
            owner: owner.to_owned(),
            kind: kind.to_owned(),
            maker: maker.to_owned(),
            name: name.to_owned(),
            secret_key: hex::encode(&keys.secret_bytes()[..]),
            cards: Vec::new(),
            default_token: None,
        };
        let mut handsets = self.locked();
        if handsets.len() >= HANDSETS_MAX {
            return Err(HandsetError::Full);
        }
        self.save(&handset)?;
        handsets.insert(id.clone(), handset);
        Ok((id, keys.public_key()))
    }

    /// Receives a sealed profile: a new card, or new keys for one it holds. The profile must
    /// open with the handset's key.
    pub fn receive(
        &self,
        device_id: &str,
        token_id: &str,
        label: &str,
        profile: Value,
    ) -> Result<(), HandsetError> {
        let mut handsets = self.locked();
        let handset = handsets.get_mut(device_id).ok_or(HandsetError::NoDevice)?;
        let mut updated = handset.clone();
        match updated.cards.iter_mut().find(|c| c.token_id == token_id) {
            Some(card) => {
                card.profiles.push(profile);
                if card.profiles.len() > PROFILES_PER_CARD_MAX {
                    // Keep the first (it carries the card's data) and the newest batches.
                    card.profiles.remove(1);
                }
            }
            None => {
                if updated.cards.len() >= CARDS_PER_HANDSET_MAX {
                    return Err(HandsetError::TooManyCards);
                }
                updated.cards.push(HeldCard {
                    token_id: token_id.to_owned(),
                    label: label.to_owned(),
                    profiles: vec![profile],
                    atc: 0,
                    ecash: None,
                });
                if updated.default_token.is_none() {
                    updated.default_token = Some(token_id.to_owned());
                }
            }
        }
        open_card(&updated, token_id)?;
        self.save(&updated)?;
        *handset = updated;
        Ok(())
    }

    pub fn set_default(&self, device_id: &str, token_id: &str) -> Result<(), HandsetError> {
        self.change(device_id, |handset| {
            if !handset.cards.iter().any(|c| c.token_id == token_id) {
                return Err(HandsetError::NoCard);
            }
            handset.default_token = Some(token_id.to_owned());
            Ok(())
        })
    }

    /// A card leaves the handset (deleted, or the account signed out).
    pub fn remove(&self, device_id: &str, token_id: &str) -> Result<(), HandsetError> {
        self.change(device_id, |handset| {
            handset.cards.retain(|c| c.token_id != token_id);
            if handset.default_token.as_deref() == Some(token_id) {
                handset.default_token = handset.cards.first().map(|c| c.token_id.clone());
            }
            Ok(())
        })
    }

    /// The app signed out of the handset: it is no one's any more, and forgotten with its
    /// keys.
    pub fn forget(&self, device_id: &str) -> Result<(), HandsetError> {
        let mut handsets = self.locked();
        if handsets.remove(device_id).is_none() {
            return Err(HandsetError::NoDevice);
        }
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{device_id}.json"));
            std::fs::remove_file(&path)
                .map_err(|e| HandsetError::Save(format!("{}: {e}", path.display())))?;
        }
        Ok(())
    }

    fn change(
        &self,
        device_id: &str,
        edit: impl FnOnce(&mut Handset) -> Result<(), HandsetError>,
    ) -> Result<(), HandsetError> {
        let mut handsets = self.locked();
        let handset = handsets.get_mut(device_id).ok_or(HandsetError::NoDevice)?;
        let mut updated = handset.clone();
        edit(&mut updated)?;
        self.save(&updated)?;
        *handset = updated;
        Ok(())
    }

    /// The handsets of `owner`, in the order they were made.
    pub fn of_owner(&self, owner: &str) -> Vec<HandsetView> {
        let handsets = self.locked();
        let mut mine: Vec<&Handset> = handsets.values().filter(|h| h.owner == owner).collect();
        mine.sort_by(|a, b| a.id.cmp(&b.id));
        mine.into_iter().map(view).collect()
    }

    /// One handset of `owner`.
    pub fn handset(&self, owner: &str, device_id: &str) -> Result<HandsetView, HandsetError> {
        let handsets = self.locked();
        handsets
            .get(device_id)
            .filter(|h| h.owner == owner)
            .map(view)
            .ok_or(HandsetError::NoDevice)
    }

    /// Taps `token_id` (or the default card) on a terminal; the ATC it spends is saved first.
    pub fn tap(
        &self,
        owner: &str,
        device_id: &str,
        token_id: Option<&str>,
        terminal: &TerminalData,
        cdcvm: bool,
    ) -> Result<Presented, HandsetError> {
        self.spend(owner, device_id, token_id, |phone| {
            let tap = phone.tap(terminal, cdcvm)?;
            Ok(Presented {
                token: phone.token().clone(),
                expiry: phone.expiry(),
                tap,
            })
        })
    }

    /// An in-app cryptogram of `token_id` over `terminal`; its ATC is saved first.
    pub fn in_app(
        &self,
        owner: &str,
        device_id: &str,
        token_id: &str,
        terminal: &TerminalData,
    ) -> Result<PresentedInApp, HandsetError> {
        self.spend(owner, device_id, Some(token_id), |phone| {
            let cryptogram = phone.in_app(terminal, false)?;
            Ok(PresentedInApp {
                token: phone.token().clone(),
                expiry: phone.expiry(),
                cryptogram,
            })
        })
    }

    fn spend<T>(
        &self,
        owner: &str,
        device_id: &str,
        token_id: Option<&str>,
        present: impl FnOnce(&mut Phone) -> Result<T, HandsetError>,
    ) -> Result<T, HandsetError> {
        let mut handsets = self.locked();
        let handset = handsets
            .get_mut(device_id)
            .filter(|h| h.owner == owner)
            .ok_or(HandsetError::NoDevice)?;
        let token_id = match token_id.or(handset.default_token.as_deref()) {
            Some(token_id) => token_id.to_owned(),
            None => return Err(HandsetError::NoCards),
        };
        let mut phone = open_card(handset, &token_id)?;
        let presented = present(&mut phone)?;
        let mut updated = handset.clone();
        if let Some(card) = updated.cards.iter_mut().find(|c| c.token_id == token_id) {
            card.atc = phone.atc();
        }
        self.save(&updated)?;
        *handset = updated;
        Ok(presented)
    }
}

/// A card of the handset, opened with its key, its counter restored.
fn open_card(handset: &Handset, token_id: &str) -> Result<Phone, HandsetError> {
    let card = handset
        .cards
        .iter()
        .find(|c| c.token_id == token_id)
        .ok_or(HandsetError::NoCard)?;
    let secret: [u8; 32] = hex::decode_array(&handset.secret_key)
        .map_err(|_| HandsetError::Phone(PhoneError::Profile))?;
    let keys = DeviceKeyPair::from_secret(secret);
    let (first, later) = card.profiles.split_first().ok_or(HandsetError::NoCard)?;
    let mut phone = Phone::provision(&keys, token_id, &envelope_from_json(first)?)?;
    for profile in later {
        phone.replenish(&keys, &envelope_from_json(profile)?)?;
    }
    phone.restore_atc(card.atc);
    if let Some(fen) = card.ecash {
        phone.restore_ecash(fen);
    }
    Ok(phone)
}

fn view(handset: &Handset) -> HandsetView {
    HandsetView {
        id: handset.id.clone(),
        kind: handset.kind.clone(),
        maker: handset.maker.clone(),
        name: handset.name.clone(),
        cards: handset
            .cards
            .iter()
            .filter_map(|card| {
                let phone = open_card(handset, &card.token_id).ok()?;
                let token = phone.token().expose();
                Some(HeldCardView {
                    token_id: card.token_id.clone(),
                    label: card.label.clone(),
                    token_last4: token[token.len().saturating_sub(4)..].to_owned(),
                    is_default: handset.default_token.as_deref() == Some(card.token_id.as_str()),
                    contactless_no_pin_limit: phone.contactless_no_pin_limit(),
                    online_no_pin_limit: phone.online_no_pin_limit(),
                    keys_left: phone.keys_left(),
                })
            })
            .collect(),
    }
}

/// The directory, made 0700 if missing (it holds the handsets' secret keys), and kept so.
#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use cloudpass_core::SeededRandom;
    use cloudpass_crypto::{CardProfileRequest, Hsm, KeyDelivery, KeyUsage, MasterKey, SoftHsm};

    const TOKEN: &str = "6231180000000008";

    /// A card profile for `token_id` sealed to `device_key`, as the token service's API
    /// writes it.
    fn sealed_profile(hsm: &SoftHsm, device_key: &[u8; 32], token_id: &str) -> Value {
        let imk = hsm.generate_key(KeyUsage::IssuerMasterAc).unwrap();
        let profile = serde_json::json!({
            "token_number": TOKEN, "token_expiry": "2911", "pan_sequence": 0,
            "domains": {"nfc": true, "in_app": true},
            "cvm_limits": {"currency": "156", "contactless_no_pin_limit": "1000.00", "online_no_pin_limit": "500.00"},
        })
        .to_string();
        let envelope = hsm
            .seal_card_profile(&CardProfileRequest {
                issuer_master_key: imk,
                account: &Token::parse(TOKEN).unwrap(),
                pan_sequence: 0,
                delivery: KeyDelivery::DeviceUnique,
                profile: profile.as_bytes(),
                device_public_key: device_key,
                aad: token_id.as_bytes(),
            })
            .unwrap();
        serde_json::json!({
            "ephemeral_public_key": hex::encode(&envelope.ephemeral_public_key),
            "nonce": hex::encode(&envelope.nonce),
            "ciphertext": hex::encode(&envelope.ciphertext),
        })
    }

    fn terminal() -> TerminalData {
        TerminalData {
            amount: 1250,
            other_amount: 0,
            country: 156,
            currency: 156,
            tvr: [0; 5],
            date: [0x26, 0x12, 0x03],
            transaction_type: 0,
            unpredictable_number: [1, 2, 3, 4],
        }
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cloudpass-handsets-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_atc_once_spent_is_never_spent_again_across_a_restart() {
        let random = Arc::new(SeededRandom::new(7));
        let hsm = SoftHsm::new(MasterKey::generate(random.as_ref()), random.clone());
        let dir = scratch_dir("restart");
        let handsets = Handsets::open(Some(&dir)).unwrap();
        let (id, public_key) = handsets
            .create(random.as_ref(), "u_1", "handset_se", "huawei", "Huawei")
            .unwrap();
        handsets
            .receive(
                &id,
                "tok_1",
                "…0048",
                sealed_profile(&hsm, &public_key, "tok_1"),
            )
            .unwrap();
        let atc = |handsets: &Handsets| {
            handsets
                .tap("u_1", &id, None, &terminal(), false)
                .unwrap()
                .tap
                .atc
        };
        assert_eq!((atc(&handsets), atc(&handsets)), (1, 2));
        drop(handsets);

        let reopened = Handsets::open(Some(&dir)).unwrap();
        assert_eq!(atc(&reopened), 3, "the counter continues after a restart");
        let listed = reopened.of_owner("u_1");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].cards[0].token_last4, "0008");
        assert!(listed[0].cards[0].is_default);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(format!("{id}.json"))), 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_handset_takes_only_profiles_sealed_to_it_and_only_its_owner_taps() {
        let random = Arc::new(SeededRandom::new(8));
        let hsm = SoftHsm::new(MasterKey::generate(random.as_ref()), random.clone());
        let handsets = Handsets::open(None).unwrap();
        let (mine, _) = handsets
            .create(random.as_ref(), "u_1", "hce", "quickpass", "App")
            .unwrap();
        let (_, other_key) = handsets
            .create(random.as_ref(), "u_2", "hce", "quickpass", "App")
            .unwrap();
        // Sealed to another device: refused, nothing kept.
        assert!(matches!(
            handsets.receive(
                &mine,
                "tok_1",
                "…0048",
                sealed_profile(&hsm, &other_key, "tok_1")
            ),
            Err(HandsetError::Phone(PhoneError::Profile))
        ));
        assert!(handsets.of_owner("u_1")[0].cards.is_empty());
        assert!(matches!(
            handsets.tap("u_1", &mine, None, &terminal(), false),
            Err(HandsetError::NoCards)
        ));
        // Another account cannot tap this device, nor see it.
        assert!(matches!(
            handsets.tap("u_2", &mine, None, &terminal(), false),
            Err(HandsetError::NoDevice)
        ));
        assert!(handsets.handset("u_2", &mine).is_err());
        // Forgotten: gone for everyone.
        handsets.forget(&mine).unwrap();
        assert!(handsets.of_owner("u_1").is_empty());
    }
}

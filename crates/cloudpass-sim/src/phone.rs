//! The phone stand-in: a device card as a phone or watch holds it. It opens the card profile
//! the token service sealed to its key, keeps the token, its EMV keys and its ATC, and on a
//! tap or an in-app purchase produces the cryptogram (CP01, see `cloudpass_iso8583::emv_data`).
//!
//! A secure-element device keeps the token's ICC master key and derives a session key per
//! ATC; an HCE device holds only a batch of limited-use keys (one per ATC) and must be
//! replenished when it runs out. Cardholder verification on the device (passcode or
//! biometric, CDCVM) is a flag inside the cryptogram.

use cloudpass_core::{AccountNumber, Currency, Expiry, Money, Token};
use cloudpass_crypto::card_profile::{self, DeviceKeys};
use cloudpass_crypto::emv::{self, SessionKeyInput};
use cloudpass_crypto::{DeviceEnvelope, DeviceKeyPair};
use cloudpass_iso8583::emv_data::{self, CVR_ARQC, CVR_CDCVM, CVR_TC, CardData, TerminalData};
use serde_json::Value;
use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the card profile does not open with this device's key")]
    Profile,
    #[error("the card profile is malformed: {0}")]
    Malformed(&'static str),
    #[error("no limited-use keys left; replenish the device card")]
    NoKeysLeft,
    #[error("the ATC is exhausted; the card must be provisioned again")]
    AtcExhausted,
    #[error("this device card is not enabled for {0}")]
    Domain(&'static str),
    #[error("this device card has no e-cash (UPCash) application")]
    NoEcash,
    #[error("e-cash balance {balance} is less than {amount}: the card declines offline")]
    EcashInsufficient { balance: String, amount: String },
}

enum Keys {
    DeviceUnique(Zeroizing<[u8; 16]>),
    LimitedUse {
        first_atc: u16,
        keys: Vec<Zeroizing<[u8; 16]>>,
    },
}

/// The data of one tap: what the terminal puts in fields 35 and 55.
#[derive(Debug, Clone)]
pub struct Tap {
    /// Track 2 equivalent data (tag 57): token, `=`, expiry YYMM, service code 201.
    pub track2: String,
    /// Field 55.
    pub field55: Vec<u8>,
    pub atc: u16,
    pub cdcvm: bool,
}

/// An in-app payment's cryptogram, and whether the device asked for the payment password.
#[derive(Debug, Clone)]
pub struct InAppCryptogram {
    pub field55: Vec<u8>,
    pub atc: u16,
    pub cdcvm: bool,
    /// The amount is over the issuer's online no-PIN limit: the app asks for the password.
    pub needs_password: bool,
}

/// A device card.
pub struct Phone {
    token: Token,
    token_id: String,
    expiry: Expiry,
    pan_sequence: u8,
    keys: Keys,
    /// The last ATC used.
    atc: u16,
    contactless_no_pin_limit: Option<Money>,
    online_no_pin_limit: Option<Money>,
    nfc: bool,
    in_app: bool,
    /// The e-cash application: its balance in fen, if the card has one.
    ecash: Option<u64>,
}

/// An offline e-cash spend the phone approved: what the terminal keeps for its batch.
#[derive(Debug, Clone)]
pub struct OfflineSpend {
    pub track2: String,
    /// Field 55 with the TC.
    pub field55: Vec<u8>,
    pub atc: u16,
    pub amount: Money,
}

fn limit(limits: &Value, name: &str) -> Option<Money> {
    let currency = Currency::parse_numeric(limits["currency"].as_str()?).ok()?;
    Money::parse_decimal(limits[name].as_str()?, currency).ok()
}

/// A sealed card profile as the token service's API returns it (`card_profile`: hex fields
/// `ephemeral_public_key`, `nonce`, `ciphertext`).
pub fn envelope_from_json(value: &Value) -> Result<DeviceEnvelope, PhoneError> {
    let field = |name: &'static str| {
        value[name]
            .as_str()
            .and_then(|text| cloudpass_core::hex::decode(text).ok())
            .ok_or(PhoneError::Malformed(name))
    };
    Ok(DeviceEnvelope {
        ephemeral_public_key: field("ephemeral_public_key")?
            .try_into()
            .map_err(|_| PhoneError::Malformed("ephemeral_public_key"))?,
        nonce: field("nonce")?
            .try_into()
            .map_err(|_| PhoneError::Malformed("nonce"))?,
        ciphertext: field("ciphertext")?,
    })
}

impl Phone {
    /// Opens a card profile sealed to `keys` for token `token_id`.
    pub fn provision(
        keys: &DeviceKeyPair,
        token_id: &str,
        envelope: &DeviceEnvelope,
    ) -> Result<Self, PhoneError> {
        let plaintext = keys
            .open(envelope, token_id.as_bytes())
            .map_err(|_| PhoneError::Profile)?;
        let (profile, device_keys) =
            card_profile::parse(&plaintext).map_err(|_| PhoneError::Malformed("layout"))?;
        let profile: Value =
            serde_json::from_slice(&profile).map_err(|_| PhoneError::Malformed("profile JSON"))?;
        let token = profile["token_number"]
            .as_str()
            .and_then(|t| Token::parse(t).ok())
            .ok_or(PhoneError::Malformed("token_number"))?;
        let expiry = profile["token_expiry"]
            .as_str()
            .and_then(|e| e.parse().ok())
            .ok_or(PhoneError::Malformed("token_expiry"))?;
        let pan_sequence = profile["pan_sequence"]
            .as_u64()
            .and_then(|p| u8::try_from(p).ok())
            .ok_or(PhoneError::Malformed("pan_sequence"))?;
        let limits = &profile["cvm_limits"];
        let (keys, atc) = match device_keys {
            DeviceKeys::DeviceUnique { master_key } => (Keys::DeviceUnique(master_key), 0),
            DeviceKeys::LimitedUse { first_atc, keys } => (
                Keys::LimitedUse { first_atc, keys },
                first_atc.saturating_sub(1),
            ),
        };
        Ok(Self {
            token,
            token_id: token_id.to_owned(),
            expiry,
            pan_sequence,
            keys,
            atc,
            contactless_no_pin_limit: limit(limits, "contactless_no_pin_limit"),
            online_no_pin_limit: limit(limits, "online_no_pin_limit"),
            nfc: profile["domains"]["nfc"].as_bool().unwrap_or(false),
            in_app: profile["domains"]["in_app"].as_bool().unwrap_or(false),
            ecash: profile["ecash"].as_bool().unwrap_or(false).then_some(0),
        })
    }

    /// Restores the counter a device kept across restarts: the next cryptogram uses the ATC
    /// after `atc`. The counter never goes back.
    pub fn restore_atc(&mut self, atc: u16) {
        self.atc = self.atc.max(atc);
    }

    /// The e-cash balance, if the card has the e-cash application.
    pub fn ecash_balance(&self) -> Option<Money> {
        self.ecash.map(|fen| Money::new(fen, Currency::CNY))
    }

    /// Credits the e-cash balance after the issuer approved a load (in a real chip, the
    /// issuer's script in the answer does this).
    pub fn credit_ecash(&mut self, amount: Money) -> Result<(), PhoneError> {
        let balance = self.ecash.as_mut().ok_or(PhoneError::NoEcash)?;
        *balance = balance.saturating_add(amount.minor_units());
        Ok(())
    }

    /// Restores the e-cash balance a device kept across restarts.
    pub fn restore_ecash(&mut self, fen: u64) {
        if let Some(balance) = self.ecash.as_mut() {
            *balance = fen;
        }
    }

    /// An offline contactless spend: the phone approves it itself from its e-cash balance and
    /// makes a TC the acquirer uploads later; nothing goes online now.
    pub fn offline_tap(&mut self, terminal: &TerminalData) -> Result<OfflineSpend, PhoneError> {
        if !self.nfc {
            return Err(PhoneError::Domain("NFC payments"));
        }
        let balance = self.ecash.ok_or(PhoneError::NoEcash)?;
        let amount = Money::new(terminal.amount, Currency::CNY);
        if terminal.currency != Currency::CNY.numeric() || terminal.amount > balance {
            return Err(PhoneError::EcashInsufficient {
                balance: Money::new(balance, Currency::CNY).to_decimal_string(),
                amount: amount.to_decimal_string(),
            });
        }
        let (atc, session_key) = self.next_session_key()?;
        let card = CardData {
            aip: [0x7C, 0x00],
            atc,
            cvr: [CVR_TC, 0, 0, 0],
        };
        let tc =
            emv::application_cryptogram(&session_key, &emv_data::cryptogram_input(terminal, &card));
        self.ecash = Some(balance - terminal.amount);
        Ok(OfflineSpend {
            track2: format!("{}={}201", self.token.expose(), self.expiry.to_wire()),
            field55: emv_data::offline_field55(terminal, &card, tc),
            atc,
            amount,
        })
    }

    /// Takes a new batch of limited-use keys (HCE).
    pub fn replenish(
        &mut self,
        keys: &DeviceKeyPair,
        envelope: &DeviceEnvelope,
    ) -> Result<(), PhoneError> {
        let fresh = Self::provision(keys, &self.token_id, envelope)?;
        self.keys = fresh.keys;
        if let Keys::LimitedUse { first_atc, .. } = &self.keys {
            self.atc = self.atc.max(first_atc.saturating_sub(1));
        }
        Ok(())
    }

    pub fn token(&self) -> &Token {
        &self.token
    }

    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    pub fn pan_sequence(&self) -> u8 {
        self.pan_sequence
    }

    /// The last ATC used.
    pub fn atc(&self) -> u16 {
        self.atc
    }

    /// The issuer's contactless no-PIN limit, as the card profile carried it.
    pub fn contactless_no_pin_limit(&self) -> Option<Money> {
        self.contactless_no_pin_limit
    }

    pub fn online_no_pin_limit(&self) -> Option<Money> {
        self.online_no_pin_limit
    }

    /// Limited-use keys left (HCE), or `None` for a device-unique key.
    pub fn keys_left(&self) -> Option<usize> {
        match &self.keys {
            Keys::DeviceUnique(_) => None,
            Keys::LimitedUse { first_atc, keys } => {
                let last = u32::from(*first_atc) + keys.len() as u32 - 1;
                Some(last.saturating_sub(u32::from(self.atc)) as usize)
            }
        }
    }

    /// The session key for the next ATC, which becomes the current one.
    fn next_session_key(&mut self) -> Result<(u16, Zeroizing<[u8; 16]>), PhoneError> {
        let atc = self.atc.checked_add(1).ok_or(PhoneError::AtcExhausted)?;
        let key = match &self.keys {
            Keys::DeviceUnique(master) => Zeroizing::new(emv::derive_session_key(
                master,
                SessionKeyInput::Atc { atc },
            )),
            Keys::LimitedUse { first_atc, keys } => {
                let index = atc
                    .checked_sub(*first_atc)
                    .map(usize::from)
                    .ok_or(PhoneError::NoKeysLeft)?;
                Zeroizing::new(**keys.get(index).ok_or(PhoneError::NoKeysLeft)?)
            }
        };
        self.atc = atc;
        Ok((atc, key))
    }

    fn cryptogram(
        &mut self,
        terminal: &TerminalData,
        cdcvm: bool,
    ) -> Result<(Vec<u8>, u16), PhoneError> {
        let (atc, session_key) = self.next_session_key()?;
        let cvr = [CVR_ARQC | if cdcvm { CVR_CDCVM } else { 0 }, 0, 0, 0];
        let card = CardData {
            aip: [0x7C, 0x00],
            atc,
            cvr,
        };
        let arqc =
            emv::application_cryptogram(&session_key, &emv_data::cryptogram_input(terminal, &card));
        Ok((emv_data::request_field55(terminal, &card, arqc), atc))
    }

    /// A tap on a terminal. `cdcvm`: the cardholder unlocked the phone with passcode or
    /// biometric for this payment.
    pub fn tap(&mut self, terminal: &TerminalData, cdcvm: bool) -> Result<Tap, PhoneError> {
        if !self.nfc {
            return Err(PhoneError::Domain("NFC payments"));
        }
        let (field55, atc) = self.cryptogram(terminal, cdcvm)?;
        Ok(Tap {
            track2: format!("{}={}201", self.token.expose(), self.expiry.to_wire()),
            field55,
            atc,
            cdcvm,
        })
    }

    /// An in-app purchase: the device's cryptogram; the password is asked for only above the
    /// issuer's online no-PIN limit (unless the device verified the cardholder).
    pub fn in_app(
        &mut self,
        terminal: &TerminalData,
        cdcvm: bool,
    ) -> Result<InAppCryptogram, PhoneError> {
        if !self.in_app {
            return Err(PhoneError::Domain("in-app payments"));
        }
        let needs_password = !cdcvm
            && match self.online_no_pin_limit {
                Some(limit) => {
                    limit.currency().numeric() != terminal.currency
                        || terminal.amount > limit.minor_units()
                }
                None => true,
            };
        let (field55, atc) = self.cryptogram(terminal, cdcvm)?;
        Ok(InAppCryptogram {
            field55,
            atc,
            cdcvm,
            needs_password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use cloudpass_core::SeededRandom;
    use cloudpass_crypto::{
        CardProfileRequest, CryptogramRef, Hsm, KeyDelivery, KeyUsage, MasterKey, SoftHsm,
    };
    use cloudpass_iso8583::emv_data::ChipRequest;

    const TOKEN: &str = "6231180000000008";

    fn setup(
        delivery: KeyDelivery,
    ) -> (SoftHsm, cloudpass_crypto::KeyHandle, DeviceKeyPair, Phone) {
        let random = Arc::new(SeededRandom::new(9));
        let hsm = SoftHsm::new(MasterKey::generate(random.as_ref()), random.clone());
        let imk = hsm.generate_key(KeyUsage::IssuerMasterAc).unwrap();
        let keys = DeviceKeyPair::generate(random.as_ref());
        let token = Token::parse(TOKEN).unwrap();
        let profile = serde_json::json!({
            "token_number": TOKEN, "token_expiry": "2911", "pan_sequence": 0,
            "domains": {"nfc": true, "in_app": true},
            "cvm_limits": {"currency": "156", "contactless_no_pin_limit": "1000.00", "online_no_pin_limit": "500.00"},
        })
        .to_string();
        let envelope = hsm
            .seal_card_profile(&CardProfileRequest {
                issuer_master_key: imk,
                account: &token,
                pan_sequence: 0,
                delivery,
                profile: profile.as_bytes(),
                device_public_key: &keys.public_key(),
                aad: b"tok_1",
            })
            .unwrap();
        let phone = Phone::provision(&keys, "tok_1", &envelope).unwrap();
        (hsm, imk, keys, phone)
    }

    fn terminal(amount: u64) -> TerminalData {
        TerminalData {
            amount,
            other_amount: 0,
            country: 156,
            currency: 156,
            tvr: [0; 5],
            date: [0x26, 0x11, 0x25],
            transaction_type: 0,
            unpredictable_number: [1, 2, 3, 4],
        }
    }

    fn verifies(hsm: &SoftHsm, imk: cloudpass_crypto::KeyHandle, field55: &[u8]) -> bool {
        let chip = ChipRequest::parse(field55).unwrap();
        let token = Token::parse(TOKEN).unwrap();
        let data = chip.cryptogram_input();
        hsm.verify_arqc(&CryptogramRef {
            issuer_master_key: imk,
            account: &token,
            pan_sequence: 0,
            session: SessionKeyInput::Atc { atc: chip.card.atc },
            data: &data,
            cryptogram: chip.arqc,
        })
        .unwrap()
    }

    #[test]
    fn a_secure_element_tap_verifies_in_the_hsm() {
        let (hsm, imk, _, mut phone) = setup(KeyDelivery::DeviceUnique);
        assert_eq!(
            phone.contactless_no_pin_limit(),
            Some(Money::new(100_000, Currency::CNY))
        );
        let tap = phone.tap(&terminal(1250), false).unwrap();
        assert_eq!(tap.atc, 1);
        assert_eq!(tap.track2, format!("{TOKEN}=2911201"));
        assert!(verifies(&hsm, imk, &tap.field55));
        let second = phone.tap(&terminal(1250), true).unwrap();
        assert_eq!(second.atc, 2);
        assert!(ChipRequest::parse(&second.field55).unwrap().card.cdcvm());
        assert!(verifies(&hsm, imk, &second.field55));
        // A tampered amount no longer matches the cryptogram.
        let mut tampered = second.field55.clone();
        let chip = ChipRequest::parse(&tampered).unwrap();
        assert_eq!(chip.terminal.amount, 1250);
        let at = tampered
            .windows(3)
            .position(|w| w == [0x9F, 0x02, 0x06])
            .unwrap()
            + 3
            + 5;
        tampered[at] ^= 0x01;
        assert!(!verifies(&hsm, imk, &tampered));
    }

    #[test]
    fn hce_uses_its_keys_and_asks_for_more() {
        let (hsm, imk, keys, mut phone) = setup(KeyDelivery::LimitedUse {
            first_atc: 1,
            count: 2,
        });
        assert_eq!(phone.keys_left(), Some(2));
        for atc in [1, 2] {
            let tap = phone.tap(&terminal(100), false).unwrap();
            assert_eq!(tap.atc, atc);
            assert!(verifies(&hsm, imk, &tap.field55));
        }
        assert_eq!(phone.keys_left(), Some(0));
        assert_eq!(
            phone.tap(&terminal(100), false).unwrap_err(),
            PhoneError::NoKeysLeft
        );
        // Replenished with ATCs 3 and 4.
        let token = Token::parse(TOKEN).unwrap();
        let envelope = hsm
            .seal_card_profile(&CardProfileRequest {
                issuer_master_key: imk,
                account: &token,
                pan_sequence: 0,
                delivery: KeyDelivery::LimitedUse { first_atc: 3, count: 2 },
                profile: br#"{"token_number":"6231180000000008","token_expiry":"2911","pan_sequence":0,"domains":{"nfc":true,"in_app":true}}"#,
                device_public_key: &keys.public_key(),
                aad: b"tok_1",
            })
            .unwrap();
        phone.replenish(&keys, &envelope).unwrap();
        let tap = phone.tap(&terminal(100), false).unwrap();
        assert_eq!(tap.atc, 3);
        assert!(verifies(&hsm, imk, &tap.field55));
    }

    #[test]
    fn in_app_asks_for_the_password_above_the_online_limit() {
        let (hsm, imk, _, mut phone) = setup(KeyDelivery::DeviceUnique);
        let small = phone.in_app(&terminal(50_000), false).unwrap();
        assert!(!small.needs_password);
        assert!(verifies(&hsm, imk, &small.field55));
        assert!(
            phone
                .in_app(&terminal(50_001), false)
                .unwrap()
                .needs_password
        );
        assert!(
            !phone
                .in_app(&terminal(50_001), true)
                .unwrap()
                .needs_password
        );
    }
}

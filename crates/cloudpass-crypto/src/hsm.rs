//! The software HSM: every key lives inside it and is referred to by a [`KeyHandle`]; only
//! handles, ciphertexts, check values and verdicts cross its API. No clear key and no clear
//! PIN ever leaves it, and nothing it returns in an error names a secret.
//!
//! Key hierarchy: one AES-256 master key (from configuration or the environment; only its
//! check value is ever shown) wraps every other key with AES-256-GCM, bound to the key's
//! usage, so a wrapped key can be stored in a database and loaded again only for its purpose.
//! A key is used only for its [`KeyUsage`]: a PIN key does not MAC, a data key does not wrap.

use std::fmt;
use std::sync::{Arc, RwLock};

use aes::cipher::array::Array;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use cloudpass_core::{AccountNumber, Random, hex};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::card_profile::{self, DeviceKeys, KeyDelivery, MAX_LIMITED_USE_KEYS};
use crate::emv::{self, EmvError, SessionKeyInput};
use crate::envelope::{self, DeviceEnvelope, EnvelopeError};
use crate::pin::{self, Pin, PinBlockError};
use crate::primitives::{self, Padding, Tdes2Key};

/// At most this many keys are loaded at once: a bound, so a leak of handles shows up as an
/// error instead of unbounded memory.
pub const MAX_LOADED_KEYS: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HsmError {
    #[error("master key must be 64 hex digits (AES-256)")]
    MasterKeyFormat,
    #[error("unknown or released key handle")]
    UnknownKey,
    #[error("key is a {actual} key; this operation needs a {expected} key")]
    WrongUsage {
        expected: KeyUsage,
        actual: KeyUsage,
    },
    #[error("the HSM's key table is full ({MAX_LOADED_KEYS} keys)")]
    KeyTableFull,
    #[error("wrapped key is malformed or was not made under this master key")]
    Unwrap,
    #[error("key material has the wrong length for a {0} key")]
    KeyLength(KeyUsage),
    #[error("ciphertext failed authentication")]
    Decrypt,
    #[error("{0}")]
    PinBlock(#[from] PinBlockError),
    #[error("{0}")]
    Emv(#[from] EmvError),
    #[error("PIN block is {actual} bytes; format {format} blocks are {expected}")]
    PinBlockLength {
        format: u8,
        expected: usize,
        actual: usize,
    },
    #[error("{0}")]
    Envelope(#[from] EnvelopeError),
    #[error("limited-use keys come in batches of 1 to {MAX_LIMITED_USE_KEYS} within the ATC range")]
    KeyBatch,
    #[error("card profile too large")]
    Profile,
}

/// What a key is for. Each usage has one algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// Terminal master key (TMK, 3DES): encrypts a terminal's working keys at sign-on.
    TerminalMaster,
    /// Zone master key (ZMK, 3DES): encrypts the working keys two institutions exchange.
    ZoneMaster,
    /// PIN encryption key (TPK/ZPK, 3DES): ISO 9564 format 0 blocks.
    PinEncryption,
    /// PIN encryption key for ISO 9564 format 4 blocks (AES-128).
    PinEncryptionAes,
    /// MAC key (MAK/TAK, 3DES): ISO 9797-1 MAC algorithm 3 over messages.
    MessageAuthentication,
    /// Issuer master key for application cryptograms (IMK-AC, 3DES).
    IssuerMasterAc,
    /// One card's or token's ICC master key (MK-AC, 3DES), derived from an IMK-AC.
    IccMasterAc,
    /// PIN verification key (HMAC-SHA-256): makes and checks PIN verification values.
    PinVerification,
    /// Data encryption key (AES-256-GCM): card numbers at rest in the vault.
    DataEncryption,
    /// Fingerprint key (HMAC-SHA-256): finds a card number without decrypting anything.
    Fingerprint,
}

impl KeyUsage {
    pub const ALL: &'static [KeyUsage] = &[
        KeyUsage::TerminalMaster,
        KeyUsage::ZoneMaster,
        KeyUsage::PinEncryption,
        KeyUsage::PinEncryptionAes,
        KeyUsage::MessageAuthentication,
        KeyUsage::IssuerMasterAc,
        KeyUsage::IccMasterAc,
        KeyUsage::PinVerification,
        KeyUsage::DataEncryption,
        KeyUsage::Fingerprint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KeyUsage::TerminalMaster => "tmk",
            KeyUsage::ZoneMaster => "zmk",
            KeyUsage::PinEncryption => "pin",
            KeyUsage::PinEncryptionAes => "pin-aes",
            KeyUsage::MessageAuthentication => "mac",
            KeyUsage::IssuerMasterAc => "imk-ac",
            KeyUsage::IccMasterAc => "mk-ac",
            KeyUsage::PinVerification => "pvk",
            KeyUsage::DataEncryption => "dek",
            KeyUsage::Fingerprint => "fingerprint",
        }
    }

    pub fn parse(name: &str) -> Option<KeyUsage> {
        KeyUsage::ALL
            .iter()
            .copied()
            .find(|usage| usage.name() == name)
    }

    /// Key length in bytes.
    pub fn key_length(self) -> usize {
        match self {
            KeyUsage::TerminalMaster
            | KeyUsage::ZoneMaster
            | KeyUsage::PinEncryption
            | KeyUsage::PinEncryptionAes
            | KeyUsage::MessageAuthentication
            | KeyUsage::IssuerMasterAc
            | KeyUsage::IccMasterAc => 16,
            KeyUsage::PinVerification | KeyUsage::DataEncryption | KeyUsage::Fingerprint => 32,
        }
    }

    fn is_des(self) -> bool {
        !matches!(
            self,
            KeyUsage::PinEncryptionAes
                | KeyUsage::PinVerification
                | KeyUsage::DataEncryption
                | KeyUsage::Fingerprint
        )
    }
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key's check value: 3 bytes that identify a key without revealing it (3DES: encryption
/// of zeros; AES and HMAC keys: AES-CMAC / HMAC over zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckValue(pub [u8; 3]);

impl fmt::Display for CheckValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

/// The AES-256 master key. Only its check value may be shown.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// Parses 64 hex digits. The error never repeats the input.
    pub fn from_hex(text: &str) -> Result<Self, HsmError> {
        let bytes =
            Zeroizing::new(hex::decode(text.trim()).map_err(|_| HsmError::MasterKeyFormat)?);
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| HsmError::MasterKeyFormat)?;
        Ok(Self(Zeroizing::new(key)))
    }

    /// A fresh random master key (for a new sandbox).
    pub fn generate(random: &dyn Random) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        random.fill(&mut key[..]);
        Self(key)
    }

    /// The key as hex, for writing a newly generated sandbox key to its file once.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&self.0[..]))
    }

    pub fn check_value(&self) -> CheckValue {
        let mac = primitives::aes256_cmac(&self.0, &[0u8; 16]);
        CheckValue([mac[0], mac[1], mac[2]])
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(kcv {})", self.check_value())
    }
}

/// A key encrypted under the master key, safe to store. Text form:
/// `cpk1.<usage>.<hex of nonce ‖ ciphertext ‖ tag>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    usage: KeyUsage,
    blob: Vec<u8>,
}

impl WrappedKey {
    pub fn usage(&self) -> KeyUsage {
        self.usage
    }

    pub fn to_text(&self) -> String {
        format!("cpk1.{}.{}", self.usage.name(), hex::encode(&self.blob))
    }

    pub fn from_text(text: &str) -> Result<Self, HsmError> {
        let mut parts = text.trim().splitn(3, '.');
        let (Some("cpk1"), Some(usage), Some(blob)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(HsmError::Unwrap);
        };
        let usage = KeyUsage::parse(usage).ok_or(HsmError::Unwrap)?;
        let blob = hex::decode(blob).map_err(|_| HsmError::Unwrap)?;
        Ok(Self { usage, blob })
    }
}

/// Refers to a key loaded in an HSM. Meaningless outside the HSM that issued it; a released
/// handle never refers to another key (slots carry a generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHandle {
    slot: u32,
    generation: u32,
}

/// A PIN block encrypted under a PIN key, in one of the two formats the network carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinBlockFormat {
    /// ISO 9564 format 0 under a 3DES key: 8 bytes.
    Iso0,
    /// ISO 9564 format 4 under an AES key: 16 bytes.
    Iso4,
}

impl PinBlockFormat {
    fn number(self) -> u8 {
        match self {
            PinBlockFormat::Iso0 => 0,
            PinBlockFormat::Iso4 => 4,
        }
    }

    fn length(self) -> usize {
        match self {
            PinBlockFormat::Iso0 => 8,
            PinBlockFormat::Iso4 => 16,
        }
    }

    fn key_usage(self) -> KeyUsage {
        match self {
            PinBlockFormat::Iso0 => KeyUsage::PinEncryption,
            PinBlockFormat::Iso4 => KeyUsage::PinEncryptionAes,
        }
    }
}

/// An encrypted PIN block together with the key and account it was built with.
#[derive(Clone, Copy)]
pub struct PinBlockRef<'a> {
    pub key: KeyHandle,
    pub format: PinBlockFormat,
    pub block: &'a [u8],
    pub account: &'a dyn AccountNumber,
}

/// A PIN verification value: a keyed one-way function of the PIN and the reference the
/// issuer binds it to. Stored by the issuer instead of the PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinVerificationValue(pub [u8; 16]);

/// Which ARPC to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpcMethod {
    /// Method 1 under the ICC master key: 8 bytes.
    One {
        authorisation_response_code: [u8; 2],
    },
    /// Method 2 under the session key: 4 bytes (ARPC; the CSU and data go beside it in 91).
    Two { card_status_update: [u8; 4] },
}

/// An application cryptogram to check: the card (or token) it came from, how its session
/// key is diversified, the data it covers and the cryptogram itself.
#[derive(Clone, Copy)]
pub struct CryptogramRef<'a> {
    pub issuer_master_key: KeyHandle,
    pub account: &'a dyn AccountNumber,
    pub pan_sequence: u8,
    pub session: SessionKeyInput,
    pub data: &'a [u8],
    pub cryptogram: [u8; 8],
}

/// The operations of a hardware security module, as the platform needs them.
pub trait Hsm: Send + Sync {
    /// Check value of the master key, to print at start so operators can tell keys apart.
    fn master_check_value(&self) -> CheckValue;
    /// A new random key for `usage`, loaded.
    fn generate_key(&self, usage: KeyUsage) -> Result<KeyHandle, HsmError>;
    /// Loads a key wrapped under this HSM's master key.
    fn load_wrapped(&self, key: &WrappedKey) -> Result<KeyHandle, HsmError>;
    /// The key wrapped under the master key, for storage.
    fn wrap(&self, key: KeyHandle) -> Result<WrappedKey, HsmError>;
    /// Forgets a loaded key. Its handle is invalid from now on.
    fn release(&self, key: KeyHandle) -> Result<(), HsmError>;
    fn usage(&self, key: KeyHandle) -> Result<KeyUsage, HsmError>;
    fn check_value(&self, key: KeyHandle) -> Result<CheckValue, HsmError>;
    /// A 3DES working key (PIN or MAC key) encrypted under a key-encryption key (a terminal
    /// or zone master key; 3DES ECB), as sign-on delivers it to a terminal or one institution
    /// to another.
    fn export_under_kek(&self, key: KeyHandle, kek: KeyHandle) -> Result<Vec<u8>, HsmError>;
    /// Loads a working key received encrypted under a key-encryption key, checking its check
    /// value when one came with it.
    fn import_under_kek(
        &self,
        kek: KeyHandle,
        usage: KeyUsage,
        encrypted: &[u8],
        check_value: Option<CheckValue>,
    ) -> Result<KeyHandle, HsmError>;
    /// PIN issuance: the PIN verification value of a PIN the cardholder chose, bound to
    /// `reference`. The clear PIN goes in; only the value comes out.
    fn issue_pin(
        &self,
        verification_key: KeyHandle,
        pin: &Pin,
        reference: &[u8],
    ) -> Result<PinVerificationValue, HsmError>;
    /// Derives (Option A) and loads the ICC master key of one card or token.
    fn derive_icc_master_key(
        &self,
        issuer_master_key: KeyHandle,
        account: &dyn AccountNumber,
        pan_sequence: u8,
    ) -> Result<KeyHandle, HsmError>;
    /// Whether an ARQC is the one the card's key makes over `data`.
    fn verify_arqc(&self, cryptogram: &CryptogramRef<'_>) -> Result<bool, HsmError>;
    /// The ARPC answering a verified ARQC.
    fn generate_arpc(
        &self,
        cryptogram: &CryptogramRef<'_>,
        method: ArpcMethod,
    ) -> Result<Vec<u8>, HsmError>;
    /// Re-encrypts a PIN block built with one account under one key into a block built with
    /// another account under another key, without the PIN leaving the HSM.
    fn translate_pin_block(
        &self,
        from: &PinBlockRef<'_>,
        to_key: KeyHandle,
        to_format: PinBlockFormat,
        to_account: &dyn AccountNumber,
    ) -> Result<Vec<u8>, HsmError>;
    /// The encrypting PIN pad: the PIN the cardholder typed, as a block built with `account`
    /// under `key`. The clear PIN goes in; only the block comes out.
    fn encrypt_pin(
        &self,
        pin: &Pin,
        key: KeyHandle,
        format: PinBlockFormat,
        account: &dyn AccountNumber,
    ) -> Result<Vec<u8>, HsmError>;
    /// The PIN verification value of the PIN in `block`, bound to `reference`.
    fn pin_verification_value(
        &self,
        verification_key: KeyHandle,
        block: &PinBlockRef<'_>,
        reference: &[u8],
    ) -> Result<PinVerificationValue, HsmError>;
    /// Whether the PIN in `block` is the one `expected` was made from.
    fn verify_pin(
        &self,
        verification_key: KeyHandle,
        block: &PinBlockRef<'_>,
        reference: &[u8],
        expected: &PinVerificationValue,
    ) -> Result<bool, HsmError>;
    /// ISO 9797-1 MAC algorithm 3 (padding method 1) under a MAC key.
    fn generate_mac(&self, mac_key: KeyHandle, data: &[u8]) -> Result<[u8; 8], HsmError>;
    fn verify_mac(&self, mac_key: KeyHandle, data: &[u8], mac: &[u8]) -> Result<bool, HsmError>;
    /// AES-256-GCM under a data key; `aad` is authenticated, not encrypted. Output is
    /// nonce ‖ ciphertext ‖ tag.
    fn encrypt(
        &self,
        data_key: KeyHandle,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, HsmError>;
    fn decrypt(
        &self,
        data_key: KeyHandle,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError>;
    /// HMAC-SHA-256 of `data` under a fingerprint key.
    fn fingerprint(&self, fingerprint_key: KeyHandle, data: &[u8]) -> Result<[u8; 32], HsmError>;
    /// Seals a card profile to a device: the token service's `profile` JSON with the keys the
    /// device needs, derived here from the issuer master key for `account` (the token), and
    /// encrypted to `device_public_key` (see `card_profile` and `envelope`).
    fn seal_card_profile(
        &self,
        request: &CardProfileRequest<'_>,
    ) -> Result<DeviceEnvelope, HsmError>;
}

/// What to seal into a device's card profile.
#[derive(Clone, Copy)]
pub struct CardProfileRequest<'a> {
    pub issuer_master_key: KeyHandle,
    pub account: &'a dyn AccountNumber,
    pub pan_sequence: u8,
    pub delivery: KeyDelivery,
    pub profile: &'a [u8],
    pub device_public_key: &'a [u8],
    /// Authenticated with the envelope (the token's ID), so a profile cannot be replayed to
    /// another token.
    pub aad: &'a [u8],
}

struct Slot {
    generation: u32,
    key: Option<LoadedKey>,
}

struct LoadedKey {
    usage: KeyUsage,
    material: Zeroizing<Vec<u8>>,
}

#[derive(Default)]
struct KeyTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

/// The software implementation of [`Hsm`].
pub struct SoftHsm {
    master: MasterKey,
    random: Arc<dyn Random>,
    table: RwLock<KeyTable>,
}

const NONCE_LENGTH: usize = 12;

impl SoftHsm {
    pub fn new(master: MasterKey, random: Arc<dyn Random>) -> Self {
        Self {
            master,
            random,
            table: RwLock::new(KeyTable::default()),
        }
    }

    /// Loads a key from clear components. This is the key ceremony's door (and the tests'):
    /// an operator entering a known key, e.g. the sandbox's published test IMK. No other
    /// path takes or gives a clear key.
    /// Master key rotation: `key`, wrapped under this HSM's master key, wrapped instead
    /// under `new_master`. The key's material never leaves the HSM in clear.
    pub fn rewrap(&self, key: &WrappedKey, new_master: &MasterKey) -> Result<WrappedKey, HsmError> {
        let material =
            Self::aes_gcm_open(&self.master.0[..], &key.blob, &Self::wrap_aad(key.usage))
                .map_err(|_| HsmError::Unwrap)?;
        let blob = self.aes_gcm_seal(&new_master.0[..], &material, &Self::wrap_aad(key.usage))?;
        Ok(WrappedKey {
            usage: key.usage,
            blob,
        })
    }

    pub fn import_clear(&self, usage: KeyUsage, material: &[u8]) -> Result<KeyHandle, HsmError> {
        if material.len() != usage.key_length() {
            return Err(HsmError::KeyLength(usage));
        }
        self.insert(usage, Zeroizing::new(material.to_vec()))
    }

    fn insert(
        &self,
        usage: KeyUsage,
        mut material: Zeroizing<Vec<u8>>,
    ) -> Result<KeyHandle, HsmError> {
        if usage.is_des() {
            primitives::set_odd_parity(&mut material);
        }
        let mut table = self
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = table.free.pop() {
            let entry = &mut table.slots[slot as usize];
            entry.generation = entry.generation.wrapping_add(1);
            entry.key = Some(LoadedKey { usage, material });
            return Ok(KeyHandle {
                slot,
                generation: entry.generation,
            });
        }
        if table.slots.len() >= MAX_LOADED_KEYS {
            return Err(HsmError::KeyTableFull);
        }
        let slot = u32::try_from(table.slots.len()).map_err(|_| HsmError::KeyTableFull)?;
        table.slots.push(Slot {
            generation: 0,
            key: Some(LoadedKey { usage, material }),
        });
        Ok(KeyHandle {
            slot,
            generation: 0,
        })
    }

    /// Runs `f` over a loaded key's material after checking its usage.
    fn with_key<T>(
        &self,
        handle: KeyHandle,
        expected: &[KeyUsage],
        f: impl FnOnce(KeyUsage, &[u8]) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let table = self
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = table
            .slots
            .get(handle.slot as usize)
            .ok_or(HsmError::UnknownKey)?;
        let key = match &slot.key {
            Some(key) if slot.generation == handle.generation => key,
            _ => return Err(HsmError::UnknownKey),
        };
        if !expected.is_empty() && !expected.contains(&key.usage) {
            return Err(HsmError::WrongUsage {
                expected: expected[0],
                actual: key.usage,
            });
        }
        f(key.usage, &key.material)
    }

    /// The first 16 bytes of a key as an array (3DES double-length and AES-128 keys).
    fn key16(material: &[u8]) -> Tdes2Key {
        let mut key = [0u8; 16];
        key.copy_from_slice(&material[..16]);
        key
    }

    fn aes_gcm_seal(&self, key: &[u8], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| HsmError::Decrypt)?;
        let mut nonce = [0u8; NONCE_LENGTH];
        self.random.fill(&mut nonce);
        let sealed = cipher
            .encrypt(
                &Array::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| HsmError::Decrypt)?;
        let mut out = Vec::with_capacity(NONCE_LENGTH + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn aes_gcm_open(key: &[u8], sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if sealed.len() < NONCE_LENGTH + 16 {
            return Err(HsmError::Decrypt);
        }
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| HsmError::Decrypt)?;
        let (nonce, body) = sealed.split_at(NONCE_LENGTH);
        let nonce: [u8; NONCE_LENGTH] = nonce.try_into().map_err(|_| HsmError::Decrypt)?;
        cipher
            .decrypt(&Array::from(nonce), Payload { msg: body, aad })
            .map(Zeroizing::new)
            .map_err(|_| HsmError::Decrypt)
    }

    fn wrap_aad(usage: KeyUsage) -> Vec<u8> {
        format!("cloudpass wrapped key v1; usage={}", usage.name()).into_bytes()
    }

    /// Decrypts a PIN block inside the HSM and returns the PIN it carries.
    fn open_pin_block(&self, block: &PinBlockRef<'_>) -> Result<Pin, HsmError> {
        let format = block.format;
        if block.block.len() != format.length() {
            return Err(HsmError::PinBlockLength {
                format: format.number(),
                expected: format.length(),
                actual: block.block.len(),
            });
        }
        self.with_key(
            block.key,
            &[format.key_usage()],
            |_, material| match format {
                PinBlockFormat::Iso0 => {
                    let mut encrypted = [0u8; 8];
                    encrypted.copy_from_slice(block.block);
                    let clear = Zeroizing::new(primitives::tdes_decrypt(
                        &Self::key16(material),
                        &encrypted,
                    ));
                    Ok(pin::format0_decode(&clear, block.account.expose())?)
                }
                PinBlockFormat::Iso4 => {
                    let mut encrypted = [0u8; 16];
                    encrypted.copy_from_slice(block.block);
                    let key: [u8; 16] = Self::key16(material);
                    Ok(pin::format4_decipher(
                        &key,
                        &encrypted,
                        block.account.expose(),
                    )?)
                }
            },
        )
    }

    fn seal_pin_block(
        &self,
        pin: &Pin,
        key: KeyHandle,
        format: PinBlockFormat,
        account: &dyn AccountNumber,
    ) -> Result<Vec<u8>, HsmError> {
        self.with_key(key, &[format.key_usage()], |_, material| match format {
            PinBlockFormat::Iso0 => {
                let clear = pin::format0_encode(pin, account.expose())?;
                Ok(primitives::tdes_encrypt(&Self::key16(material), &clear).to_vec())
            }
            PinBlockFormat::Iso4 => {
                let key: [u8; 16] = Self::key16(material);
                Ok(
                    pin::format4_encipher(&key, pin, account.expose(), self.random.as_ref())?
                        .to_vec(),
                )
            }
        })
    }

    fn pvv(material: &[u8], pin: &Pin, reference: &[u8]) -> Result<PinVerificationValue, HsmError> {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(material)
            .map_err(|_| HsmError::KeyLength(KeyUsage::PinVerification))?;
        mac.update(b"cloudpass pvv v1\0");
        mac.update(
            &u32::try_from(reference.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        mac.update(reference);
        mac.update(pin.expose().as_bytes());
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        let mut value = [0u8; 16];
        value.copy_from_slice(&digest[..16]);
        Ok(PinVerificationValue(value))
    }

    fn icc_master_key(
        material: &[u8],
        cryptogram: &CryptogramRef<'_>,
    ) -> Result<Tdes2Key, HsmError> {
        Ok(emv::derive_icc_master_key(
            &Self::key16(material),
            cryptogram.account.expose(),
            cryptogram.pan_sequence,
        )?)
    }
}

impl Hsm for SoftHsm {
    fn master_check_value(&self) -> CheckValue {
        self.master.check_value()
    }

    fn generate_key(&self, usage: KeyUsage) -> Result<KeyHandle, HsmError> {
        let mut material = Zeroizing::new(vec![0u8; usage.key_length()]);
        self.random.fill(&mut material);
        self.insert(usage, material)
    }

    fn load_wrapped(&self, key: &WrappedKey) -> Result<KeyHandle, HsmError> {
        let material =
            Self::aes_gcm_open(&self.master.0[..], &key.blob, &Self::wrap_aad(key.usage))
                .map_err(|_| HsmError::Unwrap)?;
        if material.len() != key.usage.key_length() {
            return Err(HsmError::Unwrap);
        }
        self.insert(key.usage, material)
    }

    fn wrap(&self, key: KeyHandle) -> Result<WrappedKey, HsmError> {
        self.with_key(key, &[], |usage, material| {
            let blob = self.aes_gcm_seal(&self.master.0[..], material, &Self::wrap_aad(usage))?;
            Ok(WrappedKey { usage, blob })
        })
    }

    fn release(&self, key: KeyHandle) -> Result<(), HsmError> {
        let mut table = self
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = table
            .slots
            .get_mut(key.slot as usize)
            .ok_or(HsmError::UnknownKey)?;
        if slot.generation != key.generation || slot.key.is_none() {
            return Err(HsmError::UnknownKey);
        }
        slot.key = None;
        table.free.push(key.slot);
        Ok(())
    }

    fn usage(&self, key: KeyHandle) -> Result<KeyUsage, HsmError> {
        self.with_key(key, &[], |usage, _| Ok(usage))
    }

    fn check_value(&self, key: KeyHandle) -> Result<CheckValue, HsmError> {
        self.with_key(key, &[], |usage, material| {
            let bytes = match usage {
                KeyUsage::PinEncryptionAes => {
                    let key: [u8; 16] = Self::key16(material);
                    let mac = primitives::aes128_cmac(&key, &[0u8; 16]);
                    [mac[0], mac[1], mac[2]]
                }
                KeyUsage::DataEncryption => {
                    let mut key = [0u8; 32];
                    key.copy_from_slice(material);
                    let value = primitives::aes256_check_value(&key);
                    zeroize::Zeroize::zeroize(&mut key);
                    value
                }
                KeyUsage::PinVerification | KeyUsage::Fingerprint => {
                    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(material)
                        .map_err(|_| HsmError::KeyLength(usage))?;
                    mac.update(&[0u8; 16]);
                    let digest = mac.finalize().into_bytes();
                    [digest[0], digest[1], digest[2]]
                }
                _ => primitives::tdes_check_value(&Self::key16(material)),
            };
            Ok(CheckValue(bytes))
        })
    }

    fn export_under_kek(&self, key: KeyHandle, kek: KeyHandle) -> Result<Vec<u8>, HsmError> {
        let kek = Zeroizing::new(self.with_key(
            kek,
            &[KeyUsage::TerminalMaster, KeyUsage::ZoneMaster],
            |_, material| Ok(Self::key16(material)),
        )?);
        self.with_key(
            key,
            &[KeyUsage::PinEncryption, KeyUsage::MessageAuthentication],
            |_, material| {
                let mut out = Vec::with_capacity(16);
                for half in material.chunks_exact(8) {
                    let mut block = [0u8; 8];
                    block.copy_from_slice(half);
                    out.extend_from_slice(&primitives::tdes_encrypt(&kek, &block));
                }
                Ok(out)
            },
        )
    }

    fn import_under_kek(
        &self,
        kek: KeyHandle,
        usage: KeyUsage,
        encrypted: &[u8],
        check_value: Option<CheckValue>,
    ) -> Result<KeyHandle, HsmError> {
        if !matches!(
            usage,
            KeyUsage::PinEncryption | KeyUsage::MessageAuthentication
        ) || encrypted.len() != 16
        {
            return Err(HsmError::KeyLength(usage));
        }
        let clear = self.with_key(
            kek,
            &[KeyUsage::TerminalMaster, KeyUsage::ZoneMaster],
            |_, material| {
                let kek = Zeroizing::new(Self::key16(material));
                let mut clear = Zeroizing::new(Vec::with_capacity(16));
                for half in encrypted.chunks_exact(8) {
                    let mut block = [0u8; 8];
                    block.copy_from_slice(half);
                    clear.extend_from_slice(&primitives::tdes_decrypt(&kek, &block));
                }
                Ok(clear)
            },
        )?;
        let handle = self.insert(usage, clear)?;
        if let Some(expected) = check_value
            && self.check_value(handle)? != expected
        {
            self.release(handle)?;
            return Err(HsmError::Unwrap);
        }
        Ok(handle)
    }

    fn issue_pin(
        &self,
        verification_key: KeyHandle,
        pin: &Pin,
        reference: &[u8],
    ) -> Result<PinVerificationValue, HsmError> {
        self.with_key(
            verification_key,
            &[KeyUsage::PinVerification],
            |_, material| Self::pvv(material, pin, reference),
        )
    }

    fn derive_icc_master_key(
        &self,
        issuer_master_key: KeyHandle,
        account: &dyn AccountNumber,
        pan_sequence: u8,
    ) -> Result<KeyHandle, HsmError> {
        let derived = self.with_key(
            issuer_master_key,
            &[KeyUsage::IssuerMasterAc],
            |_, material| {
                Ok(Zeroizing::new(
                    emv::derive_icc_master_key(
                        &Self::key16(material),
                        account.expose(),
                        pan_sequence,
                    )?
                    .to_vec(),
                ))
            },
        )?;
        self.insert(KeyUsage::IccMasterAc, derived)
    }

    fn verify_arqc(&self, cryptogram: &CryptogramRef<'_>) -> Result<bool, HsmError> {
        self.with_key(
            cryptogram.issuer_master_key,
            &[KeyUsage::IssuerMasterAc],
            |_, material| {
                let master = Zeroizing::new(Self::icc_master_key(material, cryptogram)?);
                let session = Zeroizing::new(emv::derive_session_key(&master, cryptogram.session));
                let expected = emv::application_cryptogram(&session, cryptogram.data);
                Ok(expected.ct_eq(&cryptogram.cryptogram).into())
            },
        )
    }

    fn generate_arpc(
        &self,
        cryptogram: &CryptogramRef<'_>,
        method: ArpcMethod,
    ) -> Result<Vec<u8>, HsmError> {
        self.with_key(
            cryptogram.issuer_master_key,
            &[KeyUsage::IssuerMasterAc],
            |_, material| {
                let master = Zeroizing::new(Self::icc_master_key(material, cryptogram)?);
                Ok(match method {
                    ArpcMethod::One {
                        authorisation_response_code,
                    } => emv::arpc_method_1(
                        &master,
                        &cryptogram.cryptogram,
                        authorisation_response_code,
                    )
                    .to_vec(),
                    ArpcMethod::Two { card_status_update } => {
                        let session =
                            Zeroizing::new(emv::derive_session_key(&master, cryptogram.session));
                        emv::arpc_method_2(
                            &session,
                            &cryptogram.cryptogram,
                            card_status_update,
                            &[],
                        )
                        .to_vec()
                    }
                })
            },
        )
    }

    fn translate_pin_block(
        &self,
        from: &PinBlockRef<'_>,
        to_key: KeyHandle,
        to_format: PinBlockFormat,
        to_account: &dyn AccountNumber,
    ) -> Result<Vec<u8>, HsmError> {
        let pin = self.open_pin_block(from)?;
        self.seal_pin_block(&pin, to_key, to_format, to_account)
    }

    fn encrypt_pin(
        &self,
        pin: &Pin,
        key: KeyHandle,
        format: PinBlockFormat,
        account: &dyn AccountNumber,
    ) -> Result<Vec<u8>, HsmError> {
        self.seal_pin_block(pin, key, format, account)
    }

    fn pin_verification_value(
        &self,
        verification_key: KeyHandle,
        block: &PinBlockRef<'_>,
        reference: &[u8],
    ) -> Result<PinVerificationValue, HsmError> {
        let pin = self.open_pin_block(block)?;
        self.with_key(
            verification_key,
            &[KeyUsage::PinVerification],
            |_, material| Self::pvv(material, &pin, reference),
        )
    }

    fn verify_pin(
        &self,
        verification_key: KeyHandle,
        block: &PinBlockRef<'_>,
        reference: &[u8],
        expected: &PinVerificationValue,
    ) -> Result<bool, HsmError> {
        let pin = self.open_pin_block(block)?;
        self.with_key(
            verification_key,
            &[KeyUsage::PinVerification],
            |_, material| {
                let actual = Self::pvv(material, &pin, reference)?;
                Ok(actual.0.ct_eq(&expected.0).into())
            },
        )
    }

    fn generate_mac(&self, mac_key: KeyHandle, data: &[u8]) -> Result<[u8; 8], HsmError> {
        self.with_key(
            mac_key,
            &[KeyUsage::MessageAuthentication],
            |_, material| {
                Ok(primitives::retail_mac(
                    &Self::key16(material),
                    data,
                    Padding::Zeros,
                ))
            },
        )
    }

    fn verify_mac(&self, mac_key: KeyHandle, data: &[u8], mac: &[u8]) -> Result<bool, HsmError> {
        let expected = self.generate_mac(mac_key, data)?;
        Ok(mac.len() == expected.len() && bool::from(expected.ct_eq(mac)))
    }

    fn encrypt(
        &self,
        data_key: KeyHandle,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.with_key(data_key, &[KeyUsage::DataEncryption], |_, material| {
            self.aes_gcm_seal(material, plaintext, aad)
        })
    }

    fn decrypt(
        &self,
        data_key: KeyHandle,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.with_key(data_key, &[KeyUsage::DataEncryption], |_, material| {
            Self::aes_gcm_open(material, ciphertext, aad)
        })
    }

    fn fingerprint(&self, fingerprint_key: KeyHandle, data: &[u8]) -> Result<[u8; 32], HsmError> {
        self.with_key(fingerprint_key, &[KeyUsage::Fingerprint], |_, material| {
            let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(material)
                .map_err(|_| HsmError::KeyLength(KeyUsage::Fingerprint))?;
            mac.update(data);
            Ok(mac.finalize().into_bytes().into())
        })
    }

    fn seal_card_profile(
        &self,
        request: &CardProfileRequest<'_>,
    ) -> Result<DeviceEnvelope, HsmError> {
        let keys = self.with_key(
            request.issuer_master_key,
            &[KeyUsage::IssuerMasterAc],
            |_, material| {
                let master = Zeroizing::new(emv::derive_icc_master_key(
                    &Self::key16(material),
                    request.account.expose(),
                    request.pan_sequence,
                )?);
                Ok(match request.delivery {
                    KeyDelivery::DeviceUnique => DeviceKeys::DeviceUnique {
                        master_key: Zeroizing::new(*master),
                    },
                    KeyDelivery::LimitedUse { first_atc, count } => {
                        if count == 0
                            || count > MAX_LIMITED_USE_KEYS
                            || first_atc.checked_add(count - 1).is_none()
                        {
                            return Err(HsmError::KeyBatch);
                        }
                        let keys = (first_atc..=first_atc + (count - 1))
                            .map(|atc| {
                                Zeroizing::new(emv::derive_session_key(
                                    &master,
                                    SessionKeyInput::Atc { atc },
                                ))
                            })
                            .collect();
                        DeviceKeys::LimitedUse { first_atc, keys }
                    }
                })
            },
        )?;
        let plaintext =
            card_profile::write(request.profile, &keys).map_err(|_| HsmError::Profile)?;
        Ok(envelope::seal(
            request.device_public_key,
            &plaintext,
            request.aad,
            self.random.as_ref(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::tdes_encrypt;
    use cloudpass_core::{Pan, SeededRandom, Token};

    const MASTER: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
    const IMK: &str = "0123456789ABCDEFFEDCBA9876543210";

    fn hsm() -> SoftHsm {
        SoftHsm::new(
            MasterKey::from_hex(MASTER).unwrap(),
            Arc::new(SeededRandom::new(42)),
        )
    }

    #[test]
    fn master_key_parses_and_never_prints() {
        assert!(matches!(
            MasterKey::from_hex("00"),
            Err(HsmError::MasterKeyFormat)
        ));
        assert!(matches!(
            MasterKey::from_hex(&MASTER.replace('0', "x")),
            Err(HsmError::MasterKeyFormat)
        ));
        let key = MasterKey::from_hex(MASTER).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("0001020304"));
        assert!(shown.starts_with("MasterKey(kcv "));
    }

    #[test]
    fn wrapped_keys_survive_a_restart_and_only_under_their_master_and_usage() {
        let first = hsm();
        let key = first.generate_key(KeyUsage::DataEncryption).unwrap();
        let sealed = first.encrypt(key, b"6231180000000008", b"card:1").unwrap();
        let stored = first.wrap(key).unwrap().to_text();
        assert!(stored.starts_with("cpk1.dek."));

        // Same master key, new process: the key loads and decrypts.
        let second = hsm();
        let loaded = second
            .load_wrapped(&WrappedKey::from_text(&stored).unwrap())
            .unwrap();
        assert_eq!(
            &second.decrypt(loaded, &sealed, b"card:1").unwrap()[..],
            b"6231180000000008"
        );
        assert_eq!(
            second.decrypt(loaded, &sealed, b"card:2"),
            Err(HsmError::Decrypt)
        );
        assert_eq!(
            second.check_value(loaded).unwrap(),
            first.check_value(key).unwrap()
        );

        // Another master key cannot unwrap it.
        let other = SoftHsm::new(
            MasterKey::generate(&SeededRandom::new(1)),
            Arc::new(SeededRandom::new(1)),
        );
        assert_eq!(
            other.load_wrapped(&WrappedKey::from_text(&stored).unwrap()),
            Err(HsmError::Unwrap)
        );

        // Rotation: re-wrapped under the other master key, the same key loads there (same
        // check value) and no longer under the first.
        let rewrapped = second
            .rewrap(
                &WrappedKey::from_text(&stored).unwrap(),
                &MasterKey::generate(&SeededRandom::new(1)),
            )
            .unwrap();
        let moved = other.load_wrapped(&rewrapped).unwrap();
        assert_eq!(
            other.check_value(moved).unwrap(),
            first.check_value(key).unwrap()
        );
        assert_eq!(second.load_wrapped(&rewrapped), Err(HsmError::Unwrap));

        // Relabelling the usage breaks the binding.
        let relabelled = stored.replacen("cpk1.dek.", "cpk1.fingerprint.", 1);
        assert_eq!(
            second.load_wrapped(&WrappedKey::from_text(&relabelled).unwrap()),
            Err(HsmError::Unwrap)
        );
    }

    #[test]
    fn keys_are_used_only_for_their_purpose() {
        let hsm = hsm();
        let fingerprint = hsm.generate_key(KeyUsage::Fingerprint).unwrap();
        assert_eq!(
            hsm.encrypt(fingerprint, b"x", b""),
            Err(HsmError::WrongUsage {
                expected: KeyUsage::DataEncryption,
                actual: KeyUsage::Fingerprint
            })
        );
        let a = hsm.fingerprint(fingerprint, b"6231180000000008").unwrap();
        assert_eq!(
            a,
            hsm.fingerprint(fingerprint, b"6231180000000008").unwrap()
        );
        assert_ne!(
            a,
            hsm.fingerprint(fingerprint, b"6231180000000016").unwrap()
        );
    }

    #[test]
    fn released_handles_stay_dead() {
        let hsm = hsm();
        let key = hsm.generate_key(KeyUsage::MessageAuthentication).unwrap();
        hsm.release(key).unwrap();
        let reused = hsm.generate_key(KeyUsage::MessageAuthentication).unwrap();
        assert_eq!(hsm.generate_mac(key, b"data"), Err(HsmError::UnknownKey));
        assert!(hsm.generate_mac(reused, b"data").is_ok());
        assert_eq!(hsm.release(key), Err(HsmError::UnknownKey));
    }

    #[test]
    fn arqc_verification_and_arpc_against_v3() {
        let hsm = hsm();
        let imk = hsm
            .import_clear(KeyUsage::IssuerMasterAc, &hex::decode(IMK).unwrap())
            .unwrap();
        // V3's PAN 1234567890123456 is not Luhn-valid; its Luhn-valid sibling gives a
        // different key, so check the HSM against the pure function on a valid number and
        // against V3's published cryptogram through the pure function in emv::tests.
        let token = luhn_complete("623123456789012345");
        let data = hex::decode(
            "0000000040000000000000000124800004800001241911050152BF45851800001C06011203A0B800",
        )
        .unwrap();
        let master =
            emv::derive_icc_master_key(&hex::decode_array(IMK).unwrap(), token.expose(), 0)
                .unwrap();
        let session = emv::derive_session_key(&master, SessionKeyInput::Atc { atc: 0x1C });
        let arqc = emv::application_cryptogram(&session, &data);
        let mut cryptogram = CryptogramRef {
            issuer_master_key: imk,
            account: &token,
            pan_sequence: 0,
            session: SessionKeyInput::Atc { atc: 0x1C },
            data: &data,
            cryptogram: arqc,
        };
        assert!(hsm.verify_arqc(&cryptogram).unwrap());
        let arpc = hsm
            .generate_arpc(
                &cryptogram,
                ArpcMethod::One {
                    authorisation_response_code: *b"00",
                },
            )
            .unwrap();
        assert_eq!(arpc, emv::arpc_method_1(&master, &arqc, *b"00").to_vec());
        cryptogram.cryptogram[7] ^= 1;
        assert!(!hsm.verify_arqc(&cryptogram).unwrap());
        cryptogram.cryptogram[7] ^= 1;
        cryptogram.session = SessionKeyInput::Atc { atc: 0x1D };
        assert!(!hsm.verify_arqc(&cryptogram).unwrap());

        // A derived ICC master key is loaded as such and usable for nothing else.
        let mk = hsm.derive_icc_master_key(imk, &token, 0).unwrap();
        assert_eq!(hsm.usage(mk).unwrap(), KeyUsage::IccMasterAc);
        assert_eq!(
            hsm.check_value(mk).unwrap().0,
            primitives::tdes_check_value(&master)
        );
    }

    fn luhn_complete(body: &str) -> Token {
        let check = cloudpass_core::luhn_check_digit(body.as_bytes()).unwrap();
        Token::parse(&format!("{body}{}", char::from(check))).unwrap()
    }

    #[test]
    fn pin_translation_from_token_to_card_and_verification() {
        let hsm = hsm();
        let terminal_key = [0x11u8; 16];
        let issuer_key = [0x22u8; 16];
        let tpk = hsm
            .import_clear(KeyUsage::PinEncryption, &terminal_key)
            .unwrap();
        let zpk = hsm
            .import_clear(KeyUsage::PinEncryption, &issuer_key)
            .unwrap();
        let pvk = hsm.generate_key(KeyUsage::PinVerification).unwrap();
        let card = Pan::parse("6231180000000008").unwrap();
        let token = luhn_complete("623000100000000");
        let pin = Pin::parse("111101").unwrap();

        // The issuer enrolls the PIN from a block built with the card number.
        let mut enrollment_key = [0x22u8; 16];
        primitives::set_odd_parity(&mut enrollment_key);
        let enrollment = tdes_encrypt(
            &enrollment_key,
            &pin::format0_encode(&pin, card.expose()).unwrap(),
        );
        let reference = b"card-1";
        let pvv = hsm
            .pin_verification_value(
                pvk,
                &PinBlockRef {
                    key: zpk,
                    format: PinBlockFormat::Iso0,
                    block: &enrollment,
                    account: &card,
                },
                reference,
            )
            .unwrap();

        // The POS builds its block with the token under the terminal's key.
        let mut terminal_key_odd = terminal_key;
        primitives::set_odd_parity(&mut terminal_key_odd);
        let pos_block = tdes_encrypt(
            &terminal_key_odd,
            &pin::format0_encode(&pin, token.expose()).unwrap(),
        );
        let from = PinBlockRef {
            key: tpk,
            format: PinBlockFormat::Iso0,
            block: &pos_block,
            account: &token,
        };
        let issuer_block = hsm
            .translate_pin_block(&from, zpk, PinBlockFormat::Iso0, &card)
            .unwrap();

        // The translated block is the card-number block under the issuer key...
        let clear =
            primitives::tdes_decrypt(&enrollment_key, &issuer_block.clone().try_into().unwrap());
        assert_eq!(pin::format0_decode(&clear, card.expose()).unwrap(), pin);
        // ...and verifies against the enrolled value; a wrong PIN does not.
        let translated = PinBlockRef {
            key: zpk,
            format: PinBlockFormat::Iso0,
            block: &issuer_block,
            account: &card,
        };
        assert!(hsm.verify_pin(pvk, &translated, reference, &pvv).unwrap());
        let wrong = tdes_encrypt(
            &enrollment_key,
            &pin::format0_encode(&Pin::parse("111102").unwrap(), card.expose()).unwrap(),
        );
        let wrong = PinBlockRef {
            key: zpk,
            format: PinBlockFormat::Iso0,
            block: &wrong,
            account: &card,
        };
        assert!(!hsm.verify_pin(pvk, &wrong, reference, &pvv).unwrap());
        // Bound to its reference: the same PIN for another card does not verify.
        assert!(!hsm.verify_pin(pvk, &translated, b"card-2", &pvv).unwrap());

        // Decoding with the wrong account is caught, not silently accepted.
        let misread = PinBlockRef {
            key: tpk,
            format: PinBlockFormat::Iso0,
            block: &pos_block,
            account: &card,
        };
        match hsm.translate_pin_block(&misread, zpk, PinBlockFormat::Iso0, &card) {
            Err(HsmError::PinBlock(_)) => {}
            Ok(block) => {
                let other = PinBlockRef {
                    key: zpk,
                    format: PinBlockFormat::Iso0,
                    block: &block,
                    account: &card,
                };
                assert!(!hsm.verify_pin(pvk, &other, reference, &pvv).unwrap());
            }
            Err(other) => panic!("unexpected {other}"),
        }

        // Format 0 to format 4 and back.
        let aes_key = hsm.generate_key(KeyUsage::PinEncryptionAes).unwrap();
        let format4 = hsm
            .translate_pin_block(&from, aes_key, PinBlockFormat::Iso4, &card)
            .unwrap();
        assert_eq!(format4.len(), 16);
        let format4_ref = PinBlockRef {
            key: aes_key,
            format: PinBlockFormat::Iso4,
            block: &format4,
            account: &card,
        };
        assert!(hsm.verify_pin(pvk, &format4_ref, reference, &pvv).unwrap());
        assert_eq!(
            hsm.translate_pin_block(
                &PinBlockRef {
                    block: &format4[..8],
                    ..format4_ref
                },
                zpk,
                PinBlockFormat::Iso0,
                &card
            ),
            Err(HsmError::PinBlockLength {
                format: 4,
                expected: 16,
                actual: 8
            })
        );
    }

    #[test]
    fn card_profiles_carry_keys_only_the_device_can_read() {
        let hsm = hsm();
        let imk = hsm
            .import_clear(KeyUsage::IssuerMasterAc, &hex::decode(IMK).unwrap())
            .unwrap();
        let token = luhn_complete("623118000000000");
        let device = crate::envelope::DeviceKeyPair::generate(&SeededRandom::new(5));
        let request = CardProfileRequest {
            issuer_master_key: imk,
            account: &token,
            pan_sequence: 0,
            delivery: KeyDelivery::DeviceUnique,
            profile: b"{\"token\":\"x\"}",
            device_public_key: &device.public_key(),
            aad: b"tok_1",
        };
        let envelope = hsm.seal_card_profile(&request).unwrap();
        let opened = device.open(&envelope, b"tok_1").unwrap();
        let (profile, keys) = card_profile::parse(&opened).unwrap();
        assert_eq!(profile, b"{\"token\":\"x\"}");
        let expected =
            emv::derive_icc_master_key(&hex::decode_array(IMK).unwrap(), token.expose(), 0)
                .unwrap();
        assert_eq!(
            keys,
            DeviceKeys::DeviceUnique {
                master_key: Zeroizing::new(expected)
            }
        );

        // Limited-use keys are the session keys for the ATCs issued.
        let envelope = hsm
            .seal_card_profile(&CardProfileRequest {
                delivery: KeyDelivery::LimitedUse {
                    first_atc: 10,
                    count: 3,
                },
                ..request
            })
            .unwrap();
        let (_, keys) = card_profile::parse(&device.open(&envelope, b"tok_1").unwrap()).unwrap();
        let DeviceKeys::LimitedUse { first_atc, keys } = keys else {
            panic!("limited-use keys expected")
        };
        assert_eq!((first_atc, keys.len()), (10, 3));
        assert_eq!(
            *keys[2],
            emv::derive_session_key(&expected, SessionKeyInput::Atc { atc: 12 })
        );
        for bad in [
            KeyDelivery::LimitedUse {
                first_atc: 0,
                count: 0,
            },
            KeyDelivery::LimitedUse {
                first_atc: 0,
                count: 101,
            },
            KeyDelivery::LimitedUse {
                first_atc: u16::MAX,
                count: 2,
            },
        ] {
            assert_eq!(
                hsm.seal_card_profile(&CardProfileRequest {
                    delivery: bad,
                    ..request
                }),
                Err(HsmError::KeyBatch)
            );
        }
    }

    /// The clear value of a key, by exporting it under a known test KEK (tests only).
    fn under_zmk_clear(hsm: &SoftHsm, key: KeyHandle) -> Vec<u8> {
        let kek_clear = [0x11u8; 16];
        let kek = hsm
            .import_clear(KeyUsage::TerminalMaster, &kek_clear)
            .unwrap();
        let mut odd = kek_clear;
        primitives::set_odd_parity(&mut odd);
        let exported = hsm.export_under_kek(key, kek).unwrap();
        exported
            .chunks_exact(8)
            .flat_map(|half| primitives::tdes_decrypt(&odd, &half.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn sign_on_export_and_mac() {
        let hsm = hsm();
        let tmk_clear = {
            let mut key = [0x5Au8; 16];
            primitives::set_odd_parity(&mut key);
            key
        };
        let tmk = hsm
            .import_clear(KeyUsage::TerminalMaster, &tmk_clear)
            .unwrap();
        let mak = hsm.generate_key(KeyUsage::MessageAuthentication).unwrap();
        let exported = hsm.export_under_kek(mak, tmk).unwrap();
        assert_eq!(exported.len(), 16);
        // The terminal decrypts its MAK with its TMK and computes the same MAC.
        let mut mak_clear = [0u8; 16];
        for (i, half) in exported.chunks_exact(8).enumerate() {
            let block: [u8; 8] = half.try_into().unwrap();
            mak_clear[i * 8..i * 8 + 8]
                .copy_from_slice(&primitives::tdes_decrypt(&tmk_clear, &block));
        }
        assert_eq!(
            primitives::tdes_check_value(&mak_clear),
            hsm.check_value(mak).unwrap().0
        );
        let mac = primitives::retail_mac(&mak_clear, b"0200 message", Padding::Zeros);
        assert!(hsm.verify_mac(mak, b"0200 message", &mac).unwrap());
        assert!(!hsm.verify_mac(mak, b"0200 messagf", &mac).unwrap());
        assert!(matches!(
            hsm.export_under_kek(tmk, tmk),
            Err(HsmError::WrongUsage { .. })
        ));

        // Another institution with the same zone master key imports the key, checked by its
        // check value; a wrong check value is refused.
        let zmk_clear = [0x3Cu8; 16];
        let zmk_a = hsm.import_clear(KeyUsage::ZoneMaster, &zmk_clear).unwrap();
        let other = SoftHsm::new(
            MasterKey::generate(&SeededRandom::new(3)),
            Arc::new(SeededRandom::new(3)),
        );
        let zmk_b = other
            .import_clear(KeyUsage::ZoneMaster, &zmk_clear)
            .unwrap();
        let zpk = hsm.generate_key(KeyUsage::PinEncryption).unwrap();
        let under_zmk = hsm.export_under_kek(zpk, zmk_a).unwrap();
        let imported = other
            .import_under_kek(
                zmk_b,
                KeyUsage::PinEncryption,
                &under_zmk,
                Some(hsm.check_value(zpk).unwrap()),
            )
            .unwrap();
        assert_eq!(
            other.check_value(imported).unwrap(),
            hsm.check_value(zpk).unwrap()
        );
        assert_eq!(
            other.import_under_kek(
                zmk_b,
                KeyUsage::PinEncryption,
                &under_zmk,
                Some(CheckValue([0, 0, 0]))
            ),
            Err(HsmError::Unwrap)
        );
        // PIN issuance gives the same value verification computes.
        let pvk = hsm.generate_key(KeyUsage::PinVerification).unwrap();
        let pin = Pin::parse("111101").unwrap();
        let issued = hsm.issue_pin(pvk, &pin, b"card-9").unwrap();
        let card = Pan::parse("6231180000000008").unwrap();
        let block = primitives::tdes_encrypt(
            &{
                let mut key = [0u8; 16];
                key.copy_from_slice(&under_zmk_clear(&hsm, zpk));
                key
            },
            &pin::format0_encode(&pin, card.expose()).unwrap(),
        );
        let block_ref = PinBlockRef {
            key: zpk,
            format: PinBlockFormat::Iso0,
            block: &block,
            account: &card,
        };
        assert!(hsm.verify_pin(pvk, &block_ref, b"card-9", &issued).unwrap());
    }
}

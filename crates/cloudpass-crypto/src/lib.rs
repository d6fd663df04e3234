//! The cloudpass software HSM and the payment cryptography under it.
//!
//! - [`primitives`]: DES/3DES, ISO 9797-1 MAC algorithm 3, AES-CMAC, key check values.
//! - [`emv`]: ICC master key derivation (Option A), session keys, ARQC and ARPC.
//! - [`pin`]: PINs and ISO 9564 PIN blocks, formats 0 and 4.
//! - [`upacp`]: UPACP message signatures (RSA over a hex digest; SHA-256/SM3 secure key).
//! - [`hsm`]: the [`Hsm`] trait and [`SoftHsm`], which keeps every key inside and lets only
//!   handles, ciphertexts and verdicts out.
//!
//! Everything here is checked against published vectors (docs/../shared/reference/switch.md
//! §2 and §6; RFC 4493).

pub mod card_profile;
pub mod emv;
pub mod envelope;
pub mod hsm;
pub mod pin;
pub mod primitives;
pub mod random;
pub mod signature;
pub mod upacp;

pub use card_profile::{DeviceKeys, KeyDelivery};
pub use envelope::{DeviceEnvelope, DeviceKeyPair};
pub use hsm::{
    ArpcMethod, CardProfileRequest, CheckValue, CryptogramRef, Hsm, HsmError, KeyHandle, KeyUsage,
    MasterKey, PinBlockFormat, PinBlockRef, PinVerificationValue, SoftHsm, WrappedKey,
};
pub use pin::{Pin, PinBlockError};
pub use random::OsRandom;

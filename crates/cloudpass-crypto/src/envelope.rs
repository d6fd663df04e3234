//! Encryption to a device: what the token service sends a phone (its card profile and keys)
//! is sealed to the X25519 public key the device registered at enrollment, so only that
//! device can open it.
//!
//! Construction (ECIES): a fresh ephemeral X25519 key pair; shared secret = X25519(ephemeral
//! secret, device public key); key = HKDF-SHA-256(ikm = shared secret, salt = ephemeral public
//! ‖ device public, info = "cloudpass device envelope v1"); AES-256-GCM with a random nonce
//! over the plaintext, `aad` authenticated. The envelope carries the ephemeral public key,
//! the nonce and the ciphertext.

use aes::cipher::array::Array;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use cloudpass_core::Random;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

const INFO: &[u8] = b"cloudpass device envelope v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("device public key must be 32 bytes and a point of large order")]
    PublicKey,
    #[error("the envelope does not open with this key")]
    Open,
    #[error("the envelope is malformed")]
    Malformed,
}

/// A sealed message to one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEnvelope {
    pub ephemeral_public_key: [u8; 32],
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

/// HKDF-SHA-256 (RFC 5869), output of at most 32 bytes: extract then one expand block.
pub fn hkdf_sha256(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
    // HMAC takes keys of any length, so the error arm is never taken.
    let hmac = |key: &[u8], data: &[&[u8]]| -> Result<[u8; 32], EnvelopeError> {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key)
            .map_err(|_| EnvelopeError::Malformed)?;
        for part in data {
            mac.update(part);
        }
        Ok(mac.finalize().into_bytes().into())
    };
    let prk = Zeroizing::new(hmac(salt, &[ikm])?);
    Ok(Zeroizing::new(hmac(&prk[..], &[info, &[1u8]])?))
}

fn envelope_key(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    device: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(device);
    hkdf_sha256(&salt, shared, INFO)
}

/// Checks that `device_public_key` is a key anything can be sealed to: 32 bytes, and not one
/// of the points of small order (all zeros among them) for which X25519 gives the same
/// shared secret whatever the other side's key — a profile "sealed" to such a key is readable
/// by anyone. Clamping makes every X25519 scalar a multiple of the cofactor, so one fixed
/// scalar finds every such point.
pub fn check_public_key(device_public_key: &[u8]) -> Result<(), EnvelopeError> {
    let device: [u8; 32] = device_public_key
        .try_into()
        .map_err(|_| EnvelopeError::PublicKey)?;
    let probe = StaticSecret::from([0x5Au8; 32]);
    if probe
        .diffie_hellman(&PublicKey::from(device))
        .was_contributory()
    {
        Ok(())
    } else {
        Err(EnvelopeError::PublicKey)
    }
}

/// Seals `plaintext` to the device whose public key is `device_public_key`.
pub fn seal(
    device_public_key: &[u8],
    plaintext: &[u8],
    aad: &[u8],
    random: &dyn Random,
) -> Result<DeviceEnvelope, EnvelopeError> {
    let device: [u8; 32] = device_public_key
        .try_into()
        .map_err(|_| EnvelopeError::PublicKey)?;
    let mut secret_bytes = Zeroizing::new([0u8; 32]);
    random.fill(&mut secret_bytes[..]);
    let ephemeral_secret = StaticSecret::from(*secret_bytes);
    let ephemeral_public = PublicKey::from(&ephemeral_secret).to_bytes();
    let shared = ephemeral_secret.diffie_hellman(&PublicKey::from(device));
    if !shared.was_contributory() {
        return Err(EnvelopeError::PublicKey);
    }
    let key = envelope_key(shared.as_bytes(), &ephemeral_public, &device)?;
    let mut nonce = [0u8; 12];
    random.fill(&mut nonce);
    let cipher = Aes256Gcm::new(&Array::from(*key));
    let ciphertext = cipher
        .encrypt(
            &Array::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| EnvelopeError::Malformed)?;
    Ok(DeviceEnvelope {
        ephemeral_public_key: ephemeral_public,
        nonce,
        ciphertext,
    })
}

/// A device's key pair (the phone stand-in's; a real phone keeps the secret in its SE).
pub struct DeviceKeyPair {
    secret: StaticSecret,
}

impl DeviceKeyPair {
    pub fn generate(random: &dyn Random) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random.fill(&mut bytes[..]);
        Self {
            secret: StaticSecret::from(*bytes),
        }
    }

    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            secret: StaticSecret::from(secret),
        }
    }

    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    pub fn public_key(&self) -> [u8; 32] {
        PublicKey::from(&self.secret).to_bytes()
    }

    /// Opens an envelope sealed to this key pair.
    pub fn open(
        &self,
        envelope: &DeviceEnvelope,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let shared = self
            .secret
            .diffie_hellman(&PublicKey::from(envelope.ephemeral_public_key));
        let key = envelope_key(
            shared.as_bytes(),
            &envelope.ephemeral_public_key,
            &self.public_key(),
        )?;
        let cipher = Aes256Gcm::new(&Array::from(*key));
        cipher
            .decrypt(
                &Array::from(envelope.nonce),
                Payload {
                    msg: &envelope.ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| EnvelopeError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudpass_core::{SeededRandom, hex};

    #[test]
    fn keys_of_small_order_are_refused() {
        // All zeros, the point of order 1 (u = 1), and the points of order 8 listed in
        // "May the Fourth Be With You" (Cremers & Jackson, 2019) / libsodium's blacklist.
        let small_order = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ];
        for key in small_order {
            assert_eq!(
                check_public_key(&hex::decode(key).unwrap()),
                Err(EnvelopeError::PublicKey),
                "{key}"
            );
        }
        assert_eq!(check_public_key(&[1u8; 31]), Err(EnvelopeError::PublicKey));
        let device = DeviceKeyPair::generate(&SeededRandom::new(9));
        assert_eq!(check_public_key(&device.public_key()), Ok(()));
    }

    #[test]
    fn hkdf_rfc5869_test_case_1() {
        let ikm = [0x0b; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        // RFC 5869 A.1: the first 32 of the 42 bytes of OKM.
        assert_eq!(
            hex::encode(&hkdf_sha256(&salt, &ikm, &info).unwrap()[..]),
            "3CB25F25FAACD57A90434F64D0362F2A2D2D0A90CF1A5A4C5DB02D56ECC4C5BF"
        );
    }

    #[test]
    fn only_the_device_opens_its_envelope() {
        let random = SeededRandom::new(3);
        let device = DeviceKeyPair::generate(&random);
        let other = DeviceKeyPair::generate(&random);
        let envelope = seal(&device.public_key(), b"card profile", b"tok_1", &random).unwrap();
        assert_eq!(
            &device.open(&envelope, b"tok_1").unwrap()[..],
            b"card profile"
        );
        assert_eq!(device.open(&envelope, b"tok_2"), Err(EnvelopeError::Open));
        assert_eq!(other.open(&envelope, b"tok_1"), Err(EnvelopeError::Open));
        let mut tampered = envelope.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(device.open(&tampered, b"tok_1"), Err(EnvelopeError::Open));
        assert_eq!(
            seal(&[0u8; 31], b"x", b"", &random),
            Err(EnvelopeError::PublicKey)
        );
        // The all-zero point gives no shared secret.
        assert_eq!(
            seal(&[0u8; 32], b"x", b"", &random),
            Err(EnvelopeError::PublicKey)
        );
        // Same key pair from its secret.
        assert_eq!(
            DeviceKeyPair::from_secret(*device.secret_bytes()).public_key(),
            device.public_key()
        );
    }
}

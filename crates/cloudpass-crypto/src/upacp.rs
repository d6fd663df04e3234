//! The signature algorithms of UnionPay's UPACP (全渠道) protocol, over the bytes of a
//! message's string to sign (building that string is the protocol crate's job).
//!
//! - signMethod 01 (RSA): `base64(RSA-PKCS#1 v1.5(H, ascii(lowercase_hex(H(string)))))` —
//!   the message digest is itself hashed again by the signature scheme. H is SHA-256 for
//!   version 5.1.0 and SHA-1 for 5.0.0 (reference/upacp.md §3).
//! - signMethod 11 / 12 (secure key): `lowercase_hex(H(string "&" lowercase_hex(H(key))))`
//!   with H = SHA-256 (11) or SM3 (12).
//!
//! RSA is aws-lc-rs (constant time, fast); nothing here implements RSA. SHA-1 appears only
//! to verify 5.0.0 messages: aws-lc-rs does not sign with SHA-1 and neither do we.
//! A private key never leaves [`RsaSigningKey`]: its Debug output is masked, and the PKCS#8
//! bytes handed out at generation are zeroized on drop.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sm3::Sm3;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Which digest a signMethod 01 signature uses: the protocol version decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaDigest {
    /// Version 5.1.0: SHA256withRSA over the SHA-256 hex digest.
    Sha256,
    /// Version 5.0.0: SHA1withRSA over the SHA-1 hex digest (verification only).
    Sha1,
}

/// The hash of a secure-key signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureKeyHash {
    /// signMethod 11.
    Sha256,
    /// signMethod 12.
    Sm3,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum UpacpSignatureError {
    #[error("the private key is not a usable RSA PKCS#8 key")]
    KeyRejected,
    #[error("the RSA key could not be generated")]
    KeyGeneration,
    #[error("the RSA signature could not be made")]
    Signing,
    #[error("the signature is not valid base64")]
    SignatureNotBase64,
    #[error("the signature does not match the message and the public key")]
    Mismatch,
}

/// A lowercase hex digest of `data`, the value an RSA signature of UPACP actually signs.
pub fn hex_digest(digest: RsaDigest, data: &[u8]) -> String {
    match digest {
        RsaDigest::Sha256 => cloudpass_core::hex::encode(&Sha256::digest(data)).to_lowercase(),
        RsaDigest::Sha1 => cloudpass_core::hex::encode(&Sha1::digest(data)).to_lowercase(),
    }
}

/// Why an encrypted field could not be read, or a value not encrypted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum UpacpEncryptionError {
    #[error("the private key is not a usable RSA PKCS#8 key")]
    KeyRejected,
    #[error("the public key is not a usable RSA key")]
    PublicKeyRejected,
    #[error("the value is not valid base64")]
    NotBase64,
    #[error("the value was not encrypted with this key (RSA PKCS#1 v1.5)")]
    Undecryptable,
    #[error("the value could not be encrypted (too long for the key?)")]
    Encryption,
}

/// The platform's encryption key: merchants encrypt `accNo`, `pin` and `encryptedInfo` to
/// its certificate (RSA PKCS#1 v1.5, base64), as UnionPay's SDKs do.
pub struct RsaDecryptingKey {
    key: aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey,
}

impl std::fmt::Debug for RsaDecryptingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RsaDecryptingKey(RSA-{}, private)",
            self.key.key_size_bits()
        )
    }
}

impl RsaDecryptingKey {
    /// Reads a PKCS#8 (DER) RSA private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, UpacpEncryptionError> {
        let private = aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(der)
            .map_err(|_| UpacpEncryptionError::KeyRejected)?;
        let key = aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey::new(private)
            .map_err(|_| UpacpEncryptionError::KeyRejected)?;
        Ok(RsaDecryptingKey { key })
    }

    /// The plaintext of a base64 RSA PKCS#1 v1.5 ciphertext (zeroized when dropped).
    pub fn decrypt_base64(&self, text: &str) -> Result<Zeroizing<Vec<u8>>, UpacpEncryptionError> {
        let ciphertext = BASE64
            .decode(text.trim())
            .map_err(|_| UpacpEncryptionError::NotBase64)?;
        let mut plaintext = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let length = self
            .key
            .decrypt(&ciphertext, &mut plaintext)
            .map_err(|_| UpacpEncryptionError::Undecryptable)?
            .len();
        plaintext.truncate(length);
        Ok(plaintext)
    }
}

/// Encrypts `plaintext` to the RSA public key `public_key_info` (DER SubjectPublicKeyInfo,
/// from a certificate) as a merchant does: base64(RSA PKCS#1 v1.5).
pub fn encrypt_base64(
    public_key_info: &[u8],
    plaintext: &[u8],
) -> Result<String, UpacpEncryptionError> {
    let public = aws_lc_rs::rsa::PublicEncryptingKey::from_der(public_key_info)
        .map_err(|_| UpacpEncryptionError::PublicKeyRejected)?;
    let key = aws_lc_rs::rsa::Pkcs1PublicEncryptingKey::new(public)
        .map_err(|_| UpacpEncryptionError::PublicKeyRejected)?;
    let mut ciphertext = vec![0u8; key.ciphertext_size()];
    let sealed = key
        .encrypt(plaintext, &mut ciphertext)
        .map_err(|_| UpacpEncryptionError::Encryption)?;
    Ok(BASE64.encode(sealed))
}

/// An RSA private key that signs UPACP messages (5.1.0's SHA-256 form).
pub struct RsaSigningKey {
    key_pair: RsaKeyPair,
}

impl std::fmt::Debug for RsaSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaSigningKey(RSA-{}, private)", self.modulus_bits())
    }
}

impl RsaSigningKey {
    /// Reads a PKCS#8 (DER) RSA private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, UpacpSignatureError> {
        RsaKeyPair::from_pkcs8(der)
            .map(|key_pair| RsaSigningKey { key_pair })
            .map_err(|_| UpacpSignatureError::KeyRejected)
    }

    /// A fresh RSA-2048 key, with its PKCS#8 encoding to store (zeroized when dropped).
    pub fn generate() -> Result<(Self, Zeroizing<Vec<u8>>), UpacpSignatureError> {
        let key_pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| UpacpSignatureError::KeyGeneration)?;
        let pkcs8 = key_pair
            .as_der()
            .map_err(|_| UpacpSignatureError::KeyGeneration)?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        Ok((RsaSigningKey { key_pair }, pkcs8))
    }

    pub fn modulus_bits(&self) -> usize {
        self.key_pair.public_modulus_len() * 8
    }

    /// The public key as a DER `RSAPublicKey` (PKCS#1), the form [`verify_rsa`] takes.
    pub fn public_key_der(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }

    /// The base64 signMethod 01 signature (version 5.1.0) of `string_to_sign`.
    pub fn sign(&self, string_to_sign: &[u8]) -> Result<String, UpacpSignatureError> {
        let digest = hex_digest(RsaDigest::Sha256, string_to_sign);
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                digest.as_bytes(),
                &mut signature,
            )
            .map_err(|_| UpacpSignatureError::Signing)?;
        Ok(BASE64.encode(signature))
    }
}

/// Checks a signMethod 01 signature (base64, as received) of `string_to_sign` under an RSA
/// public key (DER `RSAPublicKey`, as in a certificate's subjectPublicKeyInfo).
pub fn verify_rsa(
    public_key_der: &[u8],
    digest: RsaDigest,
    string_to_sign: &[u8],
    signature_base64: &str,
) -> Result<(), UpacpSignatureError> {
    let signature = BASE64
        .decode(signature_base64.trim())
        .map_err(|_| UpacpSignatureError::SignatureNotBase64)?;
    let hex = hex_digest(digest, string_to_sign);
    let algorithm = match digest {
        RsaDigest::Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        RsaDigest::Sha1 => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
    };
    UnparsedPublicKey::new(algorithm, public_key_der)
        .verify(hex.as_bytes(), &signature)
        .map_err(|_| UpacpSignatureError::Mismatch)
}

fn lowercase_hex_hash(hash: SecureKeyHash, parts: &[&[u8]]) -> String {
    match hash {
        SecureKeyHash::Sha256 => {
            let mut h = Sha256::new();
            parts.iter().for_each(|p| h.update(p));
            cloudpass_core::hex::encode(&h.finalize()).to_lowercase()
        }
        SecureKeyHash::Sm3 => {
            let mut h = Sm3::new();
            parts.iter().for_each(|p| h.update(p));
            cloudpass_core::hex::encode(&h.finalize()).to_lowercase()
        }
    }
}

/// The signMethod 11/12 signature of `string_to_sign` under a merchant's secure key.
pub fn secure_key_signature(
    hash: SecureKeyHash,
    secure_key: &[u8],
    string_to_sign: &[u8],
) -> String {
    let key_digest = Zeroizing::new(lowercase_hex_hash(hash, &[secure_key]));
    lowercase_hex_hash(hash, &[string_to_sign, b"&", key_digest.as_bytes()])
}

/// Whether `signature` (hex, either case) is the secure-key signature of `string_to_sign`;
/// compared in constant time.
pub fn verify_secure_key(
    hash: SecureKeyHash,
    secure_key: &[u8],
    string_to_sign: &[u8],
    signature: &str,
) -> bool {
    let expected = secure_key_signature(hash, secure_key, string_to_sign);
    let received = signature.trim().to_ascii_lowercase();
    expected.len() == received.len() && bool::from(expected.as_bytes().ct_eq(received.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_published_vectors() {
        // FIPS 180 "abc" vectors.
        assert_eq!(
            hex_digest(RsaDigest::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex_digest(RsaDigest::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        // GM/T 0004-2012 example 1: SM3("abc").
        assert_eq!(
            lowercase_hex_hash(SecureKeyHash::Sm3, &[b"abc"]),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    #[test]
    fn secure_key_signature_is_the_documented_composition() {
        let data = b"a=1&b=2";
        // SHA-256("88888888") in hex, then SHA-256 of "a=1&b=2&" + that hex.
        let key_hex = hex_digest(RsaDigest::Sha256, b"88888888");
        let expected = hex_digest(RsaDigest::Sha256, format!("a=1&b=2&{key_hex}").as_bytes());
        let signature = secure_key_signature(SecureKeyHash::Sha256, b"88888888", data);
        assert_eq!(signature, expected);
        assert!(verify_secure_key(
            SecureKeyHash::Sha256,
            b"88888888",
            data,
            &signature.to_uppercase()
        ));
        assert!(!verify_secure_key(
            SecureKeyHash::Sha256,
            b"88888889",
            data,
            &signature
        ));
        assert!(!verify_secure_key(
            SecureKeyHash::Sm3,
            b"88888888",
            data,
            &signature
        ));
        let sm3 = secure_key_signature(SecureKeyHash::Sm3, b"88888888", data);
        assert_eq!(sm3.len(), 64);
        assert!(verify_secure_key(
            SecureKeyHash::Sm3,
            b"88888888",
            data,
            &sm3
        ));
    }

    #[test]
    fn rsa_signatures_round_trip_and_refuse_tampering() {
        let (key, pkcs8) = RsaSigningKey::generate().unwrap();
        assert_eq!(key.modulus_bits(), 2048);
        let again = RsaSigningKey::from_pkcs8_der(&pkcs8).unwrap();
        assert_eq!(again.public_key_der(), key.public_key_der());
        let signature = key.sign(b"a=1&b=2").unwrap();
        verify_rsa(
            key.public_key_der(),
            RsaDigest::Sha256,
            b"a=1&b=2",
            &signature,
        )
        .unwrap();
        assert_eq!(
            verify_rsa(
                key.public_key_der(),
                RsaDigest::Sha256,
                b"a=1&b=3",
                &signature
            ),
            Err(UpacpSignatureError::Mismatch)
        );
        assert_eq!(
            verify_rsa(
                key.public_key_der(),
                RsaDigest::Sha1,
                b"a=1&b=2",
                &signature
            ),
            Err(UpacpSignatureError::Mismatch)
        );
        assert_eq!(
            verify_rsa(
                key.public_key_der(),
                RsaDigest::Sha256,
                b"a=1&b=2",
                "not base64!"
            ),
            Err(UpacpSignatureError::SignatureNotBase64)
        );
        assert!(!format!("{key:?}").contains(&BASE64.encode(&pkcs8[..16])));
    }
}

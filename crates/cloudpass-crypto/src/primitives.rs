//! Block-cipher building blocks shared by the EMV, PIN and HSM modules: single and
//! double-length DES, ISO 9797-1 MAC algorithm 3 (the "retail MAC"), AES-CMAC, key parity and
//! key check values. Keys come in as byte arrays; keeping them secret is the caller's job
//! (the HSM's, in production).

use aes::cipher::array::Array;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use cmac::Mac;
use des::{Des, TdesEde2};

/// A double-length (112-bit) triple-DES key, K1‖K2.
pub type Tdes2Key = [u8; 16];
/// A DES/3DES block.
pub type Block8 = [u8; 8];

pub fn des_encrypt(key: &[u8; 8], block: &Block8) -> Block8 {
    let cipher = Des::new(&Array::from(*key));
    let mut data = Array::from(*block);
    cipher.encrypt_block(&mut data);
    data.into()
}

pub fn des_decrypt(key: &[u8; 8], block: &Block8) -> Block8 {
    let cipher = Des::new(&Array::from(*key));
    let mut data = Array::from(*block);
    cipher.decrypt_block(&mut data);
    data.into()
}

pub fn tdes_encrypt(key: &Tdes2Key, block: &Block8) -> Block8 {
    let cipher = TdesEde2::new(&Array::from(*key));
    let mut data = Array::from(*block);
    cipher.encrypt_block(&mut data);
    data.into()
}

pub fn tdes_decrypt(key: &Tdes2Key, block: &Block8) -> Block8 {
    let cipher = TdesEde2::new(&Array::from(*key));
    let mut data = Array::from(*block);
    cipher.decrypt_block(&mut data);
    data.into()
}

/// Sets every byte of a DES key to odd parity (the low bit is the parity bit).
pub fn set_odd_parity(key: &mut [u8]) {
    for byte in key {
        let ones = (*byte & 0xFE).count_ones();
        *byte = (*byte & 0xFE) | u8::from(ones % 2 == 0);
    }
}

/// Key check value of a 3DES key: the first 3 bytes of the key's encryption of zeros.
pub fn tdes_check_value(key: &Tdes2Key) -> [u8; 3] {
    let block = tdes_encrypt(key, &[0u8; 8]);
    [block[0], block[1], block[2]]
}

/// Key check value of an AES-256 key: the first 3 bytes of its CMAC over an all-zero block
/// (the ANSI X9.24-1:2017 method for AES keys).
pub fn aes256_check_value(key: &[u8; 32]) -> [u8; 3] {
    let mac = aes256_cmac(key, &[0u8; 16]);
    [mac[0], mac[1], mac[2]]
}

/// How a MAC's input is padded to whole blocks (ISO/IEC 9797-1 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Method 1: zero bytes up to the block boundary (none if already aligned; one zero
    /// block for empty input).
    Zeros,
    /// Method 2: one 0x80 byte, then zeros up to the block boundary (EMV's choice).
    Iso9797Method2,
}

fn padded(data: &[u8], padding: Padding) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(data);
    match padding {
        Padding::Zeros => {
            if out.is_empty() {
                out.resize(8, 0);
            }
        }
        Padding::Iso9797Method2 => out.push(0x80),
    }
    while out.len() % 8 != 0 {
        out.push(0);
    }
    out
}

/// ISO/IEC 9797-1 MAC algorithm 3 with DES: a single-DES CBC-MAC under K, with the last
/// block additionally decrypted under K′ and encrypted again under K. `key` is K‖K′.
pub fn retail_mac(key: &Tdes2Key, data: &[u8], padding: Padding) -> Block8 {
    let (left, right) = key.split_at(8);
    let mut k = [0u8; 8];
    let mut k_prime = [0u8; 8];
    k.copy_from_slice(left);
    k_prime.copy_from_slice(right);
    let mut state = [0u8; 8];
    for chunk in padded(data, padding).chunks_exact(8) {
        for (s, d) in state.iter_mut().zip(chunk) {
            *s ^= d;
        }
        state = des_encrypt(&k, &state);
    }
    des_encrypt(&k, &des_decrypt(&k_prime, &state))
}

/// AES-CMAC (NIST SP 800-38B, RFC 4493) with a 128-bit key.
pub fn aes128_cmac(key: &[u8; 16], data: &[u8]) -> [u8; 16] {
    let mut mac = <cmac::Cmac<aes::Aes128> as KeyInit>::new(&Array::from(*key));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// AES-CMAC with a 256-bit key.
pub fn aes256_cmac(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
    let mut mac = <cmac::Cmac<aes::Aes256> as KeyInit>::new(&Array::from(*key));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub fn aes128_encrypt(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
    let cipher = aes::Aes128::new(&Array::from(*key));
    let mut data = Array::from(*block);
    cipher.encrypt_block(&mut data);
    data.into()
}

pub fn aes128_decrypt(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
    let cipher = aes::Aes128::new(&Array::from(*key));
    let mut data = Array::from(*block);
    cipher.decrypt_block(&mut data);
    data.into()
}

pub fn xor8(a: &Block8, b: &Block8) -> Block8 {
    let mut out = [0u8; 8];
    for i in 0..8 {
        out[i] = a[i] ^ b[i];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudpass_core::hex;

    const IMK: &str = "0123456789ABCDEFFEDCBA9876543210";

    #[test]
    fn imk_check_value_matches_reference() {
        let imk: Tdes2Key = hex::decode_array(IMK).unwrap();
        assert_eq!(hex::encode(&tdes_check_value(&imk)), "08D7B4");
    }

    #[test]
    fn iso9797_mac_algorithm_3_annex_b4() {
        // ISO/IEC 9797-1:2011 B.4, zero padding (padding method 1).
        let key: Tdes2Key = hex::decode_array(IMK).unwrap();
        assert_eq!(
            hex::encode(&retail_mac(
                &key,
                b"Now is the time for all ",
                Padding::Zeros
            )),
            "A1C72E74EA3FA9B6"
        );
        assert_eq!(
            hex::encode(&retail_mac(&key, b"Now is the time for it", Padding::Zeros)),
            "2E2B1428CC78254F"
        );
    }

    #[test]
    fn aes_cmac_rfc4493() {
        let key: [u8; 16] = hex::decode_array("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        assert_eq!(
            hex::encode(&aes128_cmac(&key, b"")),
            "BB1D6929E95937287FA37D129B756746"
        );
        let message = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        assert_eq!(
            hex::encode(&aes128_cmac(&key, &message)),
            "070A16B46B4D4144F79BDD9DD04A287C"
        );
        // RFC 4493 §4, examples 3 and 4 (40 and 64 bytes).
        let long = hex::decode(concat!(
            "6bc1bee22e409f96e93d7e117393172a",
            "ae2d8a571e03ac9c9eb76fac45af8e51",
            "30c81c46a35ce411e5fbc1191a0a52ef",
            "f69f2445df4f9b17ad2b417be66c3710"
        ))
        .unwrap();
        assert_eq!(
            hex::encode(&aes128_cmac(&key, &long[..40])),
            "DFA66747DE9AE63030CA32611497C827"
        );
        assert_eq!(
            hex::encode(&aes128_cmac(&key, &long)),
            "51F0BEBF7E3B9D92FC49741779363CFE"
        );
    }

    #[test]
    fn parity_is_odd() {
        let mut key = [0u8, 1, 2, 3, 0xFE, 0xFF];
        set_odd_parity(&mut key);
        assert!(key.iter().all(|b| b.count_ones() % 2 == 1));
        assert_eq!(key, [0x01, 0x01, 0x02, 0x02, 0xFE, 0xFE]);
    }

    #[test]
    fn tdes_round_trip() {
        let key: Tdes2Key = hex::decode_array(IMK).unwrap();
        let block = *b"12345678";
        assert_eq!(tdes_decrypt(&key, &tdes_encrypt(&key, &block)), block);
    }
}

//! EMV application cryptograms (EMV Book 2, Annex A1): ICC master key derivation Option A,
//! the common session key, ARQC generation/verification and ARPC methods 1 and 2.
//!
//! These are pure functions over clear keys; in the platform they run only inside the
//! [`crate::SoftHsm`], and in the phone stand-in (which is a card, and holds its own key).

use crate::primitives::{
    Block8, Padding, Tdes2Key, retail_mac, set_odd_parity, tdes_encrypt, xor8,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmvError {
    #[error("account number must be digits only")]
    AccountNumber,
    #[error("PAN sequence number must be 00 to 99")]
    SequenceNumber,
}

/// Packs up to 16 decimal digits, right-aligned and zero-filled, into 8 BCD bytes.
fn pack_16_digits(digits: &[u8]) -> Result<Block8, EmvError> {
    let mut nibbles = [0u8; 16];
    let take = digits.len().min(16);
    let tail = &digits[digits.len() - take..];
    for (slot, &digit) in nibbles[16 - take..].iter_mut().zip(tail) {
        if !digit.is_ascii_digit() {
            return Err(EmvError::AccountNumber);
        }
        *slot = digit - b'0';
    }
    let mut out = [0u8; 8];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = nibbles[2 * i] << 4 | nibbles[2 * i + 1];
    }
    Ok(out)
}

/// ICC master key, Option A: Y = the rightmost 16 digits of PAN‖PSN; MK = 3DES(IMK)[Y] ‖
/// 3DES(IMK)[Y ⊕ FF…FF], odd parity. `pan_sequence` is 0 when the card has no PSN.
pub fn derive_icc_master_key(
    imk: &Tdes2Key,
    pan_digits: &str,
    pan_sequence: u8,
) -> Result<Tdes2Key, EmvError> {
    if pan_sequence > 99 {
        return Err(EmvError::SequenceNumber);
    }
    if pan_digits.is_empty() || !pan_digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EmvError::AccountNumber);
    }
    let mut input = Vec::with_capacity(pan_digits.len() + 2);
    input.extend_from_slice(pan_digits.as_bytes());
    input.push(b'0' + pan_sequence / 10);
    input.push(b'0' + pan_sequence % 10);
    let y = pack_16_digits(&input)?;
    let left = tdes_encrypt(imk, &y);
    let right = tdes_encrypt(imk, &xor8(&y, &[0xFF; 8]));
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&left);
    key[8..].copy_from_slice(&right);
    set_odd_parity(&mut key);
    Ok(key)
}

/// The diversification value R that the session key is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKeyInput {
    /// R = ATC ‖ 00×6 (EMV common session key; Visa CVN18/22, Mastercard CVN20).
    Atc { atc: u16 },
    /// R = ATC ‖ 0000 ‖ UN (Mastercard CVN16/17).
    AtcUnpredictableNumber {
        atc: u16,
        unpredictable_number: [u8; 4],
    },
    /// R given whole.
    Raw([u8; 8]),
}

impl SessionKeyInput {
    fn r(self) -> Block8 {
        match self {
            SessionKeyInput::Atc { atc } => {
                let [a, b] = atc.to_be_bytes();
                [a, b, 0, 0, 0, 0, 0, 0]
            }
            SessionKeyInput::AtcUnpredictableNumber {
                atc,
                unpredictable_number: [u0, u1, u2, u3],
            } => {
                let [a, b] = atc.to_be_bytes();
                [a, b, 0, 0, u0, u1, u2, u3]
            }
            SessionKeyInput::Raw(r) => r,
        }
    }
}

/// EMV common session key (Book 2 A1.3.1): 3DES(MK)[R with byte 3 = F0] ‖ 3DES(MK)[R with
/// byte 3 = 0F], odd parity.
pub fn derive_session_key(master_key: &Tdes2Key, input: SessionKeyInput) -> Tdes2Key {
    let mut r = input.r();
    r[2] = 0xF0;
    let left = tdes_encrypt(master_key, &r);
    r[2] = 0x0F;
    let right = tdes_encrypt(master_key, &r);
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&left);
    key[8..].copy_from_slice(&right);
    set_odd_parity(&mut key);
    key
}

/// An application cryptogram: ISO 9797-1 MAC algorithm 3 over the transaction data with
/// padding method 2 (EMV), under the session key.
pub fn application_cryptogram(session_key: &Tdes2Key, data: &[u8]) -> Block8 {
    retail_mac(session_key, data, Padding::Iso9797Method2)
}

/// ARPC method 1: 3DES(key)[ARQC ⊕ (ARC ‖ 00×6)].
pub fn arpc_method_1(
    key: &Tdes2Key,
    arqc: &Block8,
    authorisation_response_code: [u8; 2],
) -> Block8 {
    let [a, b] = authorisation_response_code;
    tdes_encrypt(key, &xor8(arqc, &[a, b, 0, 0, 0, 0, 0, 0]))
}

/// ARPC method 2: the first 4 bytes of MAC algorithm 3 (padding method 2) over
/// ARQC ‖ CSU ‖ proprietary authentication data. Sent in tag 91 as ARPC ‖ CSU ‖ data.
pub fn arpc_method_2(
    key: &Tdes2Key,
    arqc: &Block8,
    card_status_update: [u8; 4],
    proprietary_data: &[u8],
) -> [u8; 4] {
    let mut input = Vec::with_capacity(12 + proprietary_data.len());
    input.extend_from_slice(arqc);
    input.extend_from_slice(&card_status_update);
    input.extend_from_slice(proprietary_data);
    let mac = retail_mac(key, &input, Padding::Iso9797Method2);
    [mac[0], mac[1], mac[2], mac[3]]
}

#[cfg(test)]
mod tests {
    //! Vectors V1–V5 of reference/switch.md §2 (pyemv 1.5.0's tests, intermediates
    //! recomputed with pyemv/psec). Every intermediate is asserted, not only the end result,
    //! so a failure points at the step that broke.
    use super::*;
    use crate::primitives::{Padding, retail_mac, tdes_check_value};
    use cloudpass_core::hex;

    fn key(text: &str) -> Tdes2Key {
        hex::decode_array(text).unwrap()
    }
    fn block(text: &str) -> Block8 {
        hex::decode_array(text).unwrap()
    }
    const IMK: &str = "0123456789ABCDEFFEDCBA9876543210";
    const DATA: &str = "0123456789ABCDEF0123456789ABCDEF";

    #[test]
    fn v1_seventeen_digit_pan() {
        let mk = derive_icc_master_key(&key(IMK), "12345678901234567", 45).unwrap();
        assert_eq!(hex::encode(&mk), "946DC1A8C78A624519BC4645CB073737");
        assert_eq!(hex::encode(&tdes_check_value(&mk)[..2]), "FF08");
        let sk = derive_session_key(&mk, SessionKeyInput::Raw(block("1234567890123456")));
        assert_eq!(hex::encode(&sk), "C7AEDF49AEF2F146D692400E0B851A8F");
        assert_eq!(hex::encode(&tdes_check_value(&sk)[..2]), "DF82");
        let arqc = application_cryptogram(&sk, &hex::decode(DATA).unwrap());
        assert_eq!(hex::encode(&arqc), "19C1FBC83EBDC0D5");
        assert_eq!(
            hex::encode(&arpc_method_1(&mk, &arqc, [0, 0])),
            "78A372523FA35A03"
        );
        assert_eq!(
            hex::encode(&arpc_method_1(&sk, &arqc, [0, 0])),
            "C3620580668E5B65"
        );
    }

    #[test]
    fn v2_sixteen_digit_pan_and_arpc_method_2() {
        let mk = derive_icc_master_key(&key(IMK), "9901234567890123", 45).unwrap();
        assert_eq!(hex::encode(&mk), "F84315C7B95BD3B0C74694922C3808B0");
        assert_eq!(hex::encode(&tdes_check_value(&mk)[..2]), "1DA5");
        let sk = derive_session_key(&mk, SessionKeyInput::Raw(block("1234567890123456")));
        assert_eq!(hex::encode(&sk), "3E736BF8D37664348A04E3ABE00DEFC1");
        assert_eq!(hex::encode(&tdes_check_value(&sk)[..2]), "0995");
        let arqc = application_cryptogram(&sk, &hex::decode(DATA).unwrap());
        assert_eq!(hex::encode(&arqc), "4B46013359B7A58B");
        assert_eq!(
            hex::encode(&arpc_method_1(&mk, &arqc, [0, 0])),
            "F8C9CECAABD55AD1"
        );
        let pad = hex::decode("1234567890ABCDEF").unwrap();
        assert_eq!(
            hex::encode(&arpc_method_2(&sk, &arqc, [0; 4], &pad)),
            "4962B76C"
        );
        assert_eq!(
            hex::encode(&arpc_method_2(&sk, &arqc, [0; 4], &[])),
            "7DFB1188"
        );
        // Visa CVN10-style zero padding over the data followed by 01.
        let data = hex::decode(&format!("{DATA}01")).unwrap();
        assert_eq!(
            hex::encode(&retail_mac(&sk, &data, Padding::Zeros)),
            "2E141C6BC4A20DA8"
        );
    }

    #[test]
    fn v3_visa_cvn18() {
        let mk = derive_icc_master_key(&key(IMK), "1234567890123456", 0).unwrap();
        assert_eq!(hex::encode(&mk), "154F349D8585CB7F6B0798E9839B10C1");
        assert_eq!(hex::encode(&tdes_check_value(&mk)[..2]), "BAB0");
        let sk = derive_session_key(&mk, SessionKeyInput::Atc { atc: 0x001C });
        assert_eq!(hex::encode(&sk), "436B942AD637E08564B532B0EC97CB26");
        assert_eq!(hex::encode(&tdes_check_value(&sk)[..2]), "22C8");
        let data = hex::decode(
            "0000000040000000000000000124800004800001241911050152BF45851800001C06011203A0B800",
        )
        .unwrap();
        let arqc = application_cryptogram(&sk, &data);
        assert_eq!(hex::encode(&arqc), "7A788EA6B8A3E733");
        assert_eq!(
            hex::encode(&arpc_method_2(&sk, &arqc, [0; 4], &[])),
            "9AF514C1"
        );
    }

    #[test]
    fn v4_mastercard_cvn16() {
        let mk = derive_icc_master_key(&key(IMK), "1234567890123456", 0).unwrap();
        let sk = derive_session_key(
            &mk,
            SessionKeyInput::AtcUnpredictableNumber {
                atc: 0x001C,
                unpredictable_number: [0xAB, 0xCD, 0xEF, 0x12],
            },
        );
        assert_eq!(hex::encode(&sk), "5D8F37BCD9E5DA68048CDFA2EA255D9E");
        assert_eq!(hex::encode(&tdes_check_value(&sk)[..2]), "2FD5");
        // 9F02 ‖ 9F03 ‖ 9F1A ‖ 95 ‖ 5F2A ‖ 9A ‖ 9C ‖ 9F37 ‖ 82 ‖ 9F36 ‖ CVR
        let data = hex::decode(concat!(
            "000000009999",
            "000000000000",
            "0124",
            "8000000000",
            "0124",
            "209906",
            "00",
            "ABCDEF12",
            "1800",
            "001C",
            "A00003220000"
        ))
        .unwrap();
        let arqc = application_cryptogram(&sk, &data);
        assert_eq!(hex::encode(&arqc), "24CCF3DEE3158C70");
        assert_eq!(
            hex::encode(&arpc_method_1(&mk, &arqc, [0x00, 0x10])),
            "73F6BBF389A6586C"
        );
    }

    #[test]
    fn v5_session_key_and_option_a() {
        let sk = derive_session_key(&key(IMK), SessionKeyInput::Raw(block("001C000000000000")));
        assert_eq!(hex::encode(&sk), "E9FB384AF807B940FEDCEA613461B0C4");
        let mk = derive_icc_master_key(&key(IMK), "99012345678901234", 45).unwrap();
        assert_eq!(hex::encode(&mk), "67F8292358083E5EA7AB7FDA58D53B6B");
    }

    #[test]
    fn rejects_bad_inputs() {
        assert_eq!(
            derive_icc_master_key(&key(IMK), "12345x", 0),
            Err(EmvError::AccountNumber)
        );
        assert_eq!(
            derive_icc_master_key(&key(IMK), "", 0),
            Err(EmvError::AccountNumber)
        );
        assert_eq!(
            derive_icc_master_key(&key(IMK), "1234567890123456", 100),
            Err(EmvError::SequenceNumber)
        );
    }
}

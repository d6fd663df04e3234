//! PINs and ISO 9564-1 PIN blocks: format 0 (3DES, PIN XOR PAN) and format 4 (AES, the
//! PIN field enciphered, XORed with the PAN field, enciphered again).
//!
//! A [`Pin`] never prints, wipes itself on drop and must be `expose()`d to be read. Clear
//! PIN blocks are returned in `Zeroizing` wrappers. In the platform these functions run only
//! inside the HSM; the PIN pad stand-in (a terminal, another party) calls them directly.

use std::fmt;

use cloudpass_core::Random;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::primitives::{aes128_decrypt, aes128_encrypt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinBlockError {
    #[error("PIN must be 4 to 12 digits")]
    Pin,
    #[error("account number must be 12 to 19 digits")]
    AccountNumber,
    #[error("PIN block is not a valid format {format} block for this account")]
    Format { format: u8 },
}

/// A cardholder PIN: 4 to 12 digits.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin {
    digits: [u8; 12],
    length: u8,
}

impl Pin {
    pub fn parse(text: &str) -> Result<Self, PinBlockError> {
        let bytes = text.as_bytes();
        if !(4..=12).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(PinBlockError::Pin);
        }
        let mut digits = [0u8; 12];
        digits[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            digits,
            length: u8::try_from(bytes.len()).unwrap_or(0),
        })
    }

    /// The clear digits. Only PIN-block construction and verification may call this.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.digits[..usize::from(self.length)]).unwrap_or_default()
    }

    fn nibbles(&self) -> impl Iterator<Item = u8> + '_ {
        self.digits[..usize::from(self.length)]
            .iter()
            .map(|d| d - b'0')
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

impl PartialEq for Pin {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        (self.digits.ct_eq(&other.digits) & self.length.ct_eq(&other.length)).into()
    }
}

impl Eq for Pin {}

fn account_digits(account: &str) -> Result<&[u8], PinBlockError> {
    let bytes = account.as_bytes();
    if !(12..=19).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(PinBlockError::AccountNumber);
    }
    Ok(bytes)
}

fn pack_nibbles<const N: usize>(nibbles: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = nibbles[2 * i] << 4 | nibbles[2 * i + 1];
    }
    out
}

fn unpack_nibbles(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().flat_map(|b| [b >> 4, b & 0x0F]).collect()
}

/// Format 0 account field: 0000 then the 12 rightmost digits excluding the check digit.
fn format0_account_field(account: &str) -> Result<[u8; 8], PinBlockError> {
    let digits = account_digits(account)?;
    let body = &digits[..digits.len() - 1];
    let twelve = &body[body.len().saturating_sub(12)..];
    let mut nibbles = [0u8; 16];
    for (slot, digit) in nibbles[16 - twelve.len()..].iter_mut().zip(twelve) {
        *slot = digit - b'0';
    }
    Ok(pack_nibbles(&nibbles))
}

/// The clear ISO 9564 format 0 block for `pin` and `account` (digits of the PAN or token).
pub fn format0_encode(pin: &Pin, account: &str) -> Result<Zeroizing<[u8; 8]>, PinBlockError> {
    let mut nibbles = Zeroizing::new([0x0Fu8; 16]);
    nibbles[0] = 0;
    nibbles[1] = pin.length;
    for (slot, digit) in nibbles[2..].iter_mut().zip(pin.nibbles()) {
        *slot = digit;
    }
    let pin_field: Zeroizing<[u8; 8]> = Zeroizing::new(pack_nibbles(&nibbles[..]));
    let account_field = format0_account_field(account)?;
    let mut block = Zeroizing::new([0u8; 8]);
    for i in 0..8 {
        block[i] = pin_field[i] ^ account_field[i];
    }
    Ok(block)
}

/// The PIN in a clear format 0 block, checking every nibble of the structure.
pub fn format0_decode(block: &[u8; 8], account: &str) -> Result<Pin, PinBlockError> {
    let account_field = format0_account_field(account)?;
    let mut pin_field = Zeroizing::new([0u8; 8]);
    for i in 0..8 {
        pin_field[i] = block[i] ^ account_field[i];
    }
    let nibbles = Zeroizing::new(unpack_nibbles(&pin_field[..]));
    pin_from_field(&nibbles, 0, 0x0F, 16).ok_or(PinBlockError::Format { format: 0 })
}

/// Reads `control L d…d fill…` from `nibbles[..end]`.
fn pin_from_field(nibbles: &[u8], control: u8, fill: u8, end: usize) -> Option<Pin> {
    if nibbles.first() != Some(&control) {
        return None;
    }
    let length = usize::from(*nibbles.get(1)?);
    if !(4..=12).contains(&length) {
        return None;
    }
    let digits = nibbles.get(2..2 + length)?;
    if digits.iter().any(|&d| d > 9) || nibbles.get(2 + length..end)?.iter().any(|&n| n != fill) {
        return None;
    }
    let mut text = Zeroizing::new(String::with_capacity(length));
    for &digit in digits {
        text.push(char::from(b'0' + digit));
    }
    Pin::parse(&text).ok()
}

/// Format 4 account field: (digits − 12), the account right-justified in 12 digits (or
/// whole if longer), zero-filled to 32 nibbles.
fn format4_account_field(account: &str) -> Result<[u8; 16], PinBlockError> {
    let digits = account_digits(account)?;
    let mut nibbles = [0u8; 32];
    nibbles[0] =
        u8::try_from(digits.len().saturating_sub(12)).map_err(|_| PinBlockError::AccountNumber)?;
    for (slot, digit) in nibbles[1..].iter_mut().zip(digits) {
        *slot = digit - b'0';
    }
    Ok(pack_nibbles(&nibbles))
}

/// An ISO 9564 format 4 block: AES(K, AES(K, PIN field) ⊕ account field). The PIN field's
/// last 8 bytes are random, drawn from `random`.
pub fn format4_encipher(
    key: &[u8; 16],
    pin: &Pin,
    account: &str,
    random: &dyn Random,
) -> Result<[u8; 16], PinBlockError> {
    let mut filler = [0u8; 8];
    random.fill(&mut filler);
    format4_encipher_with_filler(key, pin, account, filler)
}

fn format4_encipher_with_filler(
    key: &[u8; 16],
    pin: &Pin,
    account: &str,
    filler: [u8; 8],
) -> Result<[u8; 16], PinBlockError> {
    let mut nibbles = Zeroizing::new([0x0Au8; 16]);
    nibbles[0] = 4;
    nibbles[1] = pin.length;
    for (slot, digit) in nibbles[2..].iter_mut().zip(pin.nibbles()) {
        *slot = digit;
    }
    let mut pin_field = Zeroizing::new([0u8; 16]);
    pin_field[..8].copy_from_slice(&pack_nibbles::<8>(&nibbles[..]));
    pin_field[8..].copy_from_slice(&filler);
    let account_field = format4_account_field(account)?;
    let mut intermediate = aes128_encrypt(key, &pin_field);
    for (i, byte) in intermediate.iter_mut().enumerate() {
        *byte ^= account_field[i];
    }
    Ok(aes128_encrypt(key, &intermediate))
}

/// The PIN in a format 4 block.
pub fn format4_decipher(
    key: &[u8; 16],
    block: &[u8; 16],
    account: &str,
) -> Result<Pin, PinBlockError> {
    let account_field = format4_account_field(account)?;
    let mut intermediate = Zeroizing::new(aes128_decrypt(key, block));
    for (i, byte) in intermediate.iter_mut().enumerate() {
        *byte ^= account_field[i];
    }
    let pin_field = Zeroizing::new(aes128_decrypt(key, &intermediate));
    let nibbles = Zeroizing::new(unpack_nibbles(&pin_field[..8]));
    pin_from_field(&nibbles, 4, 0x0A, 16).ok_or(PinBlockError::Format { format: 4 })
}

#[cfg(test)]
mod tests {
    //! ISO 9564 vectors of reference/switch.md §6 (psec 1.3.0 tests, cfpp, ep2).
    use super::*;
    use cloudpass_core::{SeededRandom, hex};
    use proptest::prelude::*;

    #[test]
    fn format0_published_vectors() {
        let cases = [
            ("1234", "5555555551234567", "041261AAAAEDCBA9"),
            ("123456789012", "5555555551234567", "0C1261032D8226A9"),
            ("1234", "0123456789012345", "041200A9876FEDCB"),
        ];
        for (pin, account, expected) in cases {
            let pin = Pin::parse(pin).unwrap();
            let block = format0_encode(&pin, account).unwrap();
            assert_eq!(hex::encode(&block[..]), expected);
            assert_eq!(format0_decode(&block, account).unwrap(), pin);
        }
    }

    #[test]
    fn format0_decode_rejects_the_wrong_account_and_bad_structure() {
        let pin = Pin::parse("111101").unwrap();
        let block = format0_encode(&pin, "6231180000000008").unwrap();
        // Another account XORs a different field in: the structure breaks or the PIN differs.
        match format0_decode(&block, "6231180000000016") {
            Ok(other) => assert_ne!(other, pin),
            Err(error) => assert_eq!(error, PinBlockError::Format { format: 0 }),
        }
        let garbage: [u8; 8] = hex::decode_array("1F1234FFFFFFFFFF").unwrap();
        assert!(format0_decode(&garbage, "6231180000000008").is_err());
        assert_eq!(
            format0_encode(&pin, "12345"),
            Err(PinBlockError::AccountNumber)
        );
    }

    #[test]
    fn format4_published_vectors() {
        let key: [u8; 16] = hex::decode_array("00112233445566778899AABBCCDDEEFF").unwrap();
        let pin = Pin::parse("1234").unwrap();
        assert_eq!(
            hex::encode(&format4_account_field("112233445566778899").unwrap()),
            "61122334455667788990000000000000"
        );
        let block =
            format4_encipher_with_filler(&key, &pin, "1234567890123456789", [0xFF; 8]).unwrap();
        assert_eq!(hex::encode(&block), "28B41FDDD29B743E93124BD8E32D921E");
        assert_eq!(
            format4_decipher(&key, &block, "1234567890123456789").unwrap(),
            pin
        );

        // ep2 vector: decipher only.
        let key: [u8; 16] = hex::decode_array("C1D0F8FB4958670DBA40AB1F3752EF0D").unwrap();
        let block: [u8; 16] = hex::decode_array("CC17F65586BFD0953010226C4FC5B3CA").unwrap();
        assert_eq!(
            format4_decipher(&key, &block, "432198765432109870")
                .unwrap()
                .expose(),
            "1234"
        );
        assert!(format4_decipher(&key, &block, "432198765432109871").is_err());
    }

    #[test]
    fn pin_is_never_printed() {
        let pin = Pin::parse("123456").unwrap();
        assert_eq!(format!("{pin:?}"), "Pin(****)");
        for bad in ["123", "1234567890123", "12a4", ""] {
            assert_eq!(Pin::parse(bad), Err(PinBlockError::Pin));
        }
    }

    proptest! {
        #[test]
        fn format0_and_format4_round_trip(pin in "[0-9]{4,12}", account in "[0-9]{12,19}", seed: u64) {
            let pin = Pin::parse(&pin).unwrap();
            let block = format0_encode(&pin, &account).unwrap();
            prop_assert_eq!(format0_decode(&block, &account).unwrap(), pin.clone());
            let key = [0x42u8; 16];
            let block = format4_encipher(&key, &pin, &account, &SeededRandom::new(seed)).unwrap();
            prop_assert_eq!(format4_decipher(&key, &block, &account).unwrap(), pin);
        }
    }
}

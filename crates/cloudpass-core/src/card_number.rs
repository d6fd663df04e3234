//! Card numbers: the physical card's number ([`Pan`], the SPAN) and the device card's
//! number ([`Token`], the MPAN).
//!
//! Both are parsed once at the edge (digits only, 12–19 long, Luhn-valid) and are then
//! impossible to print in clear by accident: `Debug` and `Display` show the first 6 and last
//! 4 digits only, the digits are wiped from memory on drop, equality is constant-time, and
//! reading the clear number takes an explicit [`AccountNumber::expose`]. A parse error never
//! repeats the number it refused.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Shortest card number we accept (ISO/IEC 7812 allows 8, but no network in scope issues
/// fewer than 12 digits, and PIN block format 0 needs 12 digits besides the check digit).
pub const MIN_DIGITS: usize = 12;
/// Longest card number ISO/IEC 7812 allows.
pub const MAX_DIGITS: usize = 19;

/// Why a string is not a card number. Never carries the digits themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CardNumberError {
    #[error("card number is empty")]
    Empty,
    #[error("card number has a non-digit at position {position}")]
    NonDigit { position: usize },
    #[error("card number has {length} digits; it must have 12 to 19")]
    Length { length: usize },
    #[error("card number fails the Luhn check")]
    Luhn,
}

/// True when `digits` (ASCII digits only) ends in a correct Luhn check digit.
pub fn luhn_valid(digits: &[u8]) -> bool {
    match digits.split_last() {
        Some((&last, body)) if last.is_ascii_digit() => {
            luhn_check_digit(body).is_some_and(|check| check == last)
        }
        _ => false,
    }
}

/// The Luhn check digit (as an ASCII digit) that completes `body`, or `None` if `body` holds
/// anything but ASCII digits.
pub fn luhn_check_digit(body: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    // Walking from the right, the digit next to the check digit is doubled first.
    for (index, &byte) in body.iter().rev().enumerate() {
        if !byte.is_ascii_digit() {
            return None;
        }
        let mut digit = u32::from(byte - b'0');
        if index % 2 == 0 {
            digit *= 2;
            if digit > 9 {
                digit -= 9;
            }
        }
        sum += digit;
    }
    let check = (10 - sum % 10) % 10;
    // `check` is 0..=9, so the cast cannot truncate.
    Some(b'0' + u8::try_from(check).unwrap_or(0))
}

/// Read-only access to a card number's digits, shared by [`Pan`] and [`Token`] so that code
/// which only needs "an account number" (PIN blocks, key derivation) takes either.
pub trait AccountNumber: fmt::Display + Send + Sync {
    /// The clear digits. Every call site is a place where a clear number exists in memory:
    /// keep them few, and never pass the result to a log, an error or a metric.
    fn expose(&self) -> &str;

    /// Number of digits.
    fn len(&self) -> usize {
        self.expose().len()
    }

    /// Always false: a card number has at least 12 digits.
    fn is_empty(&self) -> bool {
        false
    }

    /// The first six digits (the BIN), safe to show.
    fn bin(&self) -> &str {
        self.expose().get(..6).unwrap_or("")
    }

    /// The last four digits, safe to show.
    fn last4(&self) -> &str {
        let digits = self.expose();
        digits.get(digits.len().saturating_sub(4)..).unwrap_or("")
    }

    /// First 6 and last 4 digits with the middle replaced by `*`.
    fn masked(&self) -> String {
        mask_digits(self.expose())
    }
}

/// Masks all but the first 6 and last 4 characters of a card number (shorter inputs are
/// masked entirely). Used for display and for masking numbers found in captured messages.
pub fn mask_digits(digits: &str) -> String {
    let length = digits.chars().count();
    if length < 11 {
        return "*".repeat(length);
    }
    digits
        .chars()
        .enumerate()
        .map(|(index, c)| {
            if index < 6 || index >= length - 4 {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// Fixed-capacity digit storage: no heap allocation to forget to wipe.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Digits {
    bytes: [u8; MAX_DIGITS],
    length: u8,
}

impl Digits {
    fn parse(text: &str) -> Result<Self, CardNumberError> {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return Err(CardNumberError::Empty);
        }
        if let Some(position) = bytes.iter().position(|b| !b.is_ascii_digit()) {
            return Err(CardNumberError::NonDigit { position });
        }
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&bytes.len()) {
            return Err(CardNumberError::Length {
                length: bytes.len(),
            });
        }
        if !luhn_valid(bytes) {
            return Err(CardNumberError::Luhn);
        }
        let mut stored = [0u8; MAX_DIGITS];
        stored[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            bytes: stored,
            // 12..=19 fits in a u8.
            length: u8::try_from(bytes.len()).unwrap_or(0),
        })
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored, so this is always valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.length)]).unwrap_or_default()
    }

    fn ct_eq(&self, other: &Self) -> bool {
        (self.bytes.ct_eq(&other.bytes) & self.length.ct_eq(&other.length)).into()
    }
}

macro_rules! card_number_type {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Digits);

        impl $name {
            /// Parses and validates a card number (digits only, 12–19, Luhn).
            pub fn parse(text: &str) -> Result<Self, CardNumberError> {
                Digits::parse(text).map(Self)
            }
        }

        impl AccountNumber for $name {
            fn expose(&self) -> &str {
                self.0.as_str()
            }
        }

        impl FromStr for $name {
            type Err = CardNumberError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0)
            }
        }

        impl Eq for $name {}

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.0.as_str().hash(state);
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, "({})"), self.masked())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.masked())
            }
        }
    };
}

card_number_type!(
    /// The number of a physical card (the SPAN, "funding PAN").
    Pan,
    "Pan"
);

card_number_type!(
    /// The number of a device card (the MPAN, a payment token from a token BIN range).
    /// Structurally a card number; kept a separate type so a token is never taken for the
    /// card it stands for.
    Token,
    "Token"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Luhn-valid numbers from the sandbox's token BIN ranges (tests/sandbox_cards.rs covers
    // UnionPay's published test cards).
    const DEBIT: &str = "6231180000000008";
    const CREDIT_19: &str = "6231280000000000014";

    #[test]
    fn rejects_bad_numbers_without_echoing_them() {
        assert_eq!(Pan::parse(""), Err(CardNumberError::Empty));
        assert_eq!(
            Pan::parse("62260900x0000048"),
            Err(CardNumberError::NonDigit { position: 8 })
        );
        assert_eq!(
            Pan::parse("12345678903"),
            Err(CardNumberError::Length { length: 11 })
        );
        assert_eq!(Pan::parse("6226090000000049"), Err(CardNumberError::Luhn));
        let message = Pan::parse("6226090000000049").unwrap_err().to_string();
        assert!(!message.contains("6226090000000049"));
    }

    #[test]
    fn debug_and_display_are_masked() {
        let pan = Pan::parse(DEBIT).unwrap();
        assert_eq!(format!("{pan}"), "623118******0008");
        assert_eq!(format!("{pan:?}"), "Pan(623118******0008)");
        let token = Token::parse(CREDIT_19).unwrap();
        assert_eq!(format!("{token:?}"), "Token(623128*********0014)");
        assert_eq!(pan.bin(), "623118");
        assert_eq!(pan.last4(), "0008");
    }

    #[test]
    fn equality_compares_every_digit_and_length() {
        let a = Pan::parse(DEBIT).unwrap();
        assert_eq!(a, Pan::parse(DEBIT).unwrap());
        assert_ne!(a, Pan::parse("6231180000000016").unwrap());
        // Same prefix, different length.
        let twelve = format!(
            "62260900000{}",
            char::from(luhn_check_digit(b"62260900000").unwrap())
        );
        let thirteen = format!(
            "622609000000{}",
            char::from(luhn_check_digit(b"622609000000").unwrap())
        );
        assert_ne!(Pan::parse(&twelve).unwrap(), Pan::parse(&thirteen).unwrap());
    }

    #[test]
    fn luhn_check_digit_known_values() {
        assert_eq!(luhn_check_digit(b"7992739871"), Some(b'3'));
        assert_eq!(luhn_check_digit(b"622609000000004"), Some(b'8'));
        assert_eq!(luhn_check_digit(b"12a"), None);
        assert!(!luhn_valid(b""));
    }

    #[test]
    fn mask_short_inputs_entirely() {
        assert_eq!(mask_digits("1234"), "****");
        assert_eq!(mask_digits("12345678901"), "123456*8901");
    }

    proptest! {
        #[test]
        fn any_body_with_its_check_digit_parses(body in "[0-9]{11,18}") {
            let check = luhn_check_digit(body.as_bytes()).unwrap();
            let number = format!("{body}{}", char::from(check));
            let pan = Pan::parse(&number).unwrap();
            prop_assert_eq!(pan.expose(), number.as_str());
            let shown = format!("{:?}", pan);
            prop_assert!(!shown.contains(&number));
        }

        #[test]
        fn a_changed_single_digit_breaks_luhn(body in "[0-9]{11,18}", index in 0usize..19, delta in 1u8..10) {
            let check = luhn_check_digit(body.as_bytes()).unwrap();
            let mut number = format!("{body}{}", char::from(check)).into_bytes();
            let index = index % number.len();
            number[index] = b'0' + (number[index] - b'0' + delta) % 10;
            prop_assert!(!luhn_valid(&number));
        }
    }
}

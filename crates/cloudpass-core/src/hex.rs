//! Hexadecimal text, the way payment people write bytes (upper case, no separators).

/// Upper-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0F)]));
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("hex text has an odd number of digits")]
    OddLength,
    #[error("non-hex character at position {position}")]
    BadDigit { position: usize },
}

/// Bytes of hex text (either case, no separators).
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    let nibble = |position: usize| -> Result<u8, HexError> {
        let c = text[position];
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(HexError::BadDigit { position }),
        }
    };
    (0..text.len() / 2)
        .map(|i| Ok(nibble(2 * i)? << 4 | nibble(2 * i + 1)?))
        .collect()
}

/// Bytes of hex text into a fixed-size array.
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let bytes = decode(text)?;
    bytes.try_into().map_err(|_| HexError::OddLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(encode(&[0x00, 0x9f, 0xAB]), "009FAB");
        assert_eq!(decode("009fAB").unwrap(), vec![0x00, 0x9f, 0xab]);
        assert_eq!(decode("0"), Err(HexError::OddLength));
        assert_eq!(decode("0g"), Err(HexError::BadDigit { position: 1 }));
        assert_eq!(decode_array::<2>("0102").unwrap(), [1, 2]);
        assert!(decode_array::<2>("010203").is_err());
    }
}

//! An ISO 8583 message: an MTI and a set of numbered field values.
//!
//! Values are held in their logical form, whatever the wire encoding: digits as ASCII
//! digits (even when the wire packs them as BCD), text as ASCII, binary fields as raw bytes.
//! A decoded message borrows its values from the input buffer wherever the wire form is the
//! logical form (ASCII and binary fields), so decoding copies only BCD fields.

use std::borrow::Cow;
use std::fmt;

/// Four ASCII digits: version, class, function, origin.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mti([u8; 4]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("MTI must be four digits")]
pub struct MtiError;

impl Mti {
    pub const AUTHORIZATION_REQUEST: Mti = Mti(*b"0100");
    pub const AUTHORIZATION_RESPONSE: Mti = Mti(*b"0110");
    pub const FINANCIAL_REQUEST: Mti = Mti(*b"0200");
    pub const FINANCIAL_RESPONSE: Mti = Mti(*b"0210");
    pub const FINANCIAL_ADVICE: Mti = Mti(*b"0220");
    pub const FINANCIAL_ADVICE_RESPONSE: Mti = Mti(*b"0230");
    pub const REVERSAL_REQUEST: Mti = Mti(*b"0400");
    pub const REVERSAL_RESPONSE: Mti = Mti(*b"0410");
    pub const REVERSAL_ADVICE: Mti = Mti(*b"0420");
    pub const REVERSAL_ADVICE_REPEAT: Mti = Mti(*b"0421");
    pub const REVERSAL_ADVICE_RESPONSE: Mti = Mti(*b"0430");
    pub const NETWORK_REQUEST: Mti = Mti(*b"0800");
    pub const NETWORK_RESPONSE: Mti = Mti(*b"0810");

    pub fn parse(text: &str) -> Result<Self, MtiError> {
        Self::from_bytes(text.as_bytes())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MtiError> {
        let digits: [u8; 4] = bytes.try_into().map_err(|_| MtiError)?;
        if digits.iter().all(u8::is_ascii_digit) {
            Ok(Self(digits))
        } else {
            Err(MtiError)
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }

    /// Message class digit (1 authorization, 2 financial, 4 reversal, 8 network management).
    pub fn class(&self) -> u8 {
        self.0[1] - b'0'
    }

    /// Message function digit (0 request, 1 response, 2 advice, 3 advice response).
    pub fn function(&self) -> u8 {
        self.0[2] - b'0'
    }

    /// The MTI of the answer to this request or advice (0200 → 0210, 0420 → 0430), or
    /// `None` if this is already an answer.
    pub fn response(&self) -> Option<Mti> {
        match self.0[2] {
            b'0' | b'2' => {
                let mut digits = self.0;
                digits[2] += 1;
                // Repeats (origin 1) are answered like the original.
                if digits[3] == b'1' {
                    digits[3] = b'0';
                }
                Some(Mti(digits))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mti({})", self.as_str())
    }
}

/// A message. Fields are kept sorted by number; field 1 (the secondary bitmap) is never
/// stored, the codec derives it.
#[derive(Clone, PartialEq, Eq)]
pub struct Message<'a> {
    mti: Mti,
    fields: Vec<(u8, Cow<'a, [u8]>)>,
}

impl<'a> Message<'a> {
    pub fn new(mti: Mti) -> Self {
        Self {
            mti,
            fields: Vec::with_capacity(32),
        }
    }

    pub(crate) fn with_capacity(mti: Mti, capacity: usize) -> Self {
        Self {
            mti,
            fields: Vec::with_capacity(capacity),
        }
    }

    pub fn mti(&self) -> Mti {
        self.mti
    }

    pub fn set_mti(&mut self, mti: Mti) {
        self.mti = mti;
    }

    fn position(&self, number: u8) -> Result<usize, usize> {
        self.fields.binary_search_by_key(&number, |(n, _)| *n)
    }

    /// The value of field `number`.
    pub fn get(&self, number: u8) -> Option<&[u8]> {
        self.position(number)
            .ok()
            .map(|index| self.fields[index].1.as_ref())
    }

    /// The value of a text field (anything but binary) as a string.
    pub fn get_str(&self, number: u8) -> Option<&str> {
        self.get(number)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    pub fn contains(&self, number: u8) -> bool {
        self.position(number).is_ok()
    }

    /// Sets field `number` (2–128) to `value`, replacing any value it had. Values are
    /// checked against the profile when the message is encoded.
    pub fn set(&mut self, number: u8, value: impl Into<Cow<'a, [u8]>>) -> &mut Self {
        let value = value.into();
        match self.position(number) {
            Ok(index) => self.fields[index].1 = value,
            Err(index) => self.fields.insert(index, (number, value)),
        }
        self
    }

    /// Sets a text field from an owned string.
    pub fn set_text(&mut self, number: u8, value: impl Into<String>) -> &mut Self {
        self.set(number, value.into().into_bytes())
    }

    /// Appends a field known to come after every field already present (the decoder's path).
    pub(crate) fn push_in_order(&mut self, number: u8, value: Cow<'a, [u8]>) {
        self.fields.push((number, value));
    }

    pub fn remove(&mut self, number: u8) -> Option<Cow<'a, [u8]>> {
        self.position(number)
            .ok()
            .map(|index| self.fields.remove(index).1)
    }

    /// Field numbers and values in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.fields
            .iter()
            .map(|(number, value)| (*number, value.as_ref()))
    }

    /// Number of fields present.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// A copy that owns all of its values.
    pub fn into_owned(self) -> Message<'static> {
        Message {
            mti: self.mti,
            fields: self
                .fields
                .into_iter()
                .map(|(n, v)| (n, Cow::Owned(v.into_owned())))
                .collect(),
        }
    }
}

/// Debug never prints values (they may be card numbers or PIN blocks): only the MTI and the
/// field numbers present.
impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("mti", &self.mti)
            .field(
                "fields",
                &self.fields.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mti_rules() {
        let mti = Mti::parse("0200").unwrap();
        assert_eq!(mti.class(), 2);
        assert_eq!(mti.function(), 0);
        assert_eq!(mti.response().unwrap().as_str(), "0210");
        assert_eq!(
            Mti::parse("0421").unwrap().response().unwrap().as_str(),
            "0430"
        );
        assert_eq!(Mti::parse("0210").unwrap().response(), None);
        assert!(Mti::parse("02x0").is_err());
        assert!(Mti::parse("200").is_err());
    }

    #[test]
    fn fields_stay_sorted_and_debug_hides_values() {
        let mut message = Message::new(Mti::parse("0200").unwrap());
        message
            .set(11, &b"000001"[..])
            .set(2, &b"6231180000000008"[..])
            .set(128, vec![0u8; 8]);
        message.set(11, &b"000002"[..]);
        assert_eq!(
            message.fields().map(|(n, _)| n).collect::<Vec<_>>(),
            vec![2, 11, 128]
        );
        assert_eq!(message.get_str(11), Some("000002"));
        let shown = format!("{message:?}");
        assert!(!shown.contains("6231180000000008"), "{shown}");
        assert_eq!(message.remove(2).as_deref(), Some(&b"6231180000000008"[..]));
        assert!(!message.contains(2));
    }
}

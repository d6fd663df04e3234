//! The private fields of the cloudpass profile, after the CUPS inter-bank conventions:
//! positional sub-fields (60, 61), usage-tagged data (56 `PR`, 63 `TK`) and the original
//! data elements of a reversal (90). The layouts are tables; docs/iso8583-profile.md shows
//! them. Values are ASCII throughout.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {problem}")]
pub struct PrivateFieldError {
    pub field: u8,
    pub problem: String,
}

fn error(field: u8, problem: impl Into<String>) -> PrivateFieldError {
    PrivateFieldError {
        field,
        problem: problem.into(),
    }
}

/// One positional sub-field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubField {
    pub id: &'static str,
    pub name: &'static str,
    pub width: usize,
}

const fn sub(id: &'static str, name: &'static str, width: usize) -> SubField {
    SubField { id, name, width }
}

/// Field 60, reserved private: how and where the transaction happened. The switch reads
/// the terminal type, ECI, medium and IC application from it to tell an NFC tap from an
/// in-app payment.
pub const FIELD_60: &[SubField] = &[
    sub("60.1", "message reason code", 4),
    sub("60.2.1", "account owner type", 1),
    sub("60.2.2", "terminal read capability", 1),
    sub("60.2.3", "IC card condition code", 1),
    sub("60.2.4", "reserved", 1),
    sub("60.2.5", "terminal type", 2),
    sub("60.2.6", "no-PIN (CVM) indicator", 1),
    sub("60.2.7", "chip authentication reliability", 1),
    sub("60.2.8", "electronic commerce indicator", 2),
    sub("60.2.9", "interaction mode", 1),
    sub("60.3.1", "special fee type", 2),
    sub("60.3.2", "special fee tier", 1),
    sub("60.3.3", "reserved", 3),
    sub("60.3.4", "partial approval supported", 1),
    sub("60.3.5", "transaction initiation", 1),
    sub("60.3.6", "transaction medium", 1),
    sub("60.3.7", "IC application type", 1),
    sub("60.3.8", "account settlement type", 2),
    sub("60.3.9", "card product level", 1),
    sub("60.3.10", "card product", 2),
];

/// Field 61, cardholder authentication information.
pub const FIELD_61: &[SubField] = &[
    sub("61.1", "cardholder identification", 22),
    sub("61.2", "CVN2 check result", 1),
    sub("61.3", "reserved", 1),
    sub("61.4", "card-not-present check value", 7),
    sub("61.5", "ARQC check result", 1),
];

/// Well-known values of field 60 and 61 sub-fields.
pub mod values {
    pub const TERMINAL_TYPE_POS: &str = "03";
    pub const TERMINAL_TYPE_PC: &str = "07";
    pub const TERMINAL_TYPE_MOBILE: &str = "08";
    pub const READ_CAPABILITY_CONTACTLESS: &str = "6";
    pub const MEDIUM_IC: &str = "2";
    pub const MEDIUM_VIRTUAL: &str = "4";
    pub const MEDIUM_NO_CARD: &str = "7";
    pub const IC_APPLICATION_PBOC: &str = "1";
    pub const IC_APPLICATION_ECASH: &str = "3";
    pub const IC_APPLICATION_MSD: &str = "5";
    /// ECI for an in-app payment authenticated by the device (cryptogram present).
    pub const ECI_DEVICE_CRYPTOGRAM: &str = "05";
    pub const ARQC_PASSED: &str = "1";
    pub const ARQC_FAILED: &str = "2";
    pub const ARQC_NOT_CHECKED: &str = "3";
}

/// A positional field's value split into its sub-fields. Trailing sub-fields may be
/// absent; a value may not end inside a sub-field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positional {
    field: u8,
    layout: &'static [SubField],
    values: Vec<Option<String>>,
}

impl Positional {
    /// An empty value of `layout` (every sub-field absent).
    pub fn new(field: u8, layout: &'static [SubField]) -> Self {
        Self {
            field,
            layout,
            values: vec![None; layout.len()],
        }
    }

    pub fn parse(
        field: u8,
        layout: &'static [SubField],
        text: &str,
    ) -> Result<Self, PrivateFieldError> {
        if !text.is_ascii() {
            return Err(error(field, "not ASCII"));
        }
        let mut positional = Self::new(field, layout);
        let mut offset = 0;
        for (index, sub) in layout.iter().enumerate() {
            if offset == text.len() {
                break;
            }
            let Some(part) = text.get(offset..offset + sub.width) else {
                return Err(error(
                    field,
                    format!("value ends inside sub-field {} ({})", sub.id, sub.name),
                ));
            };
            positional.values[index] = Some(part.to_owned());
            offset += sub.width;
        }
        if offset != text.len() {
            return Err(error(
                field,
                format!(
                    "{} characters after the last sub-field",
                    text.len() - offset
                ),
            ));
        }
        Ok(positional)
    }

    fn index(&self, id: &str) -> Result<usize, PrivateFieldError> {
        self.layout
            .iter()
            .position(|sub| sub.id == id)
            .ok_or_else(|| error(self.field, format!("no sub-field {id}")))
    }

    pub fn get(&self, id: &str) -> Option<&str> {
        self.index(id)
            .ok()
            .and_then(|index| self.values[index].as_deref())
    }

    /// Sets a sub-field; the value must have exactly the sub-field's width.
    pub fn set(&mut self, id: &str, value: &str) -> Result<&mut Self, PrivateFieldError> {
        let index = self.index(id)?;
        let sub = self.layout[index];
        if value.len() != sub.width || !value.is_ascii() {
            return Err(error(
                self.field,
                format!(
                    "sub-field {} ({}) takes {} ASCII characters",
                    sub.id, sub.name, sub.width
                ),
            ));
        }
        self.values[index] = Some(value.to_owned());
        Ok(self)
    }

    /// The sub-fields present, in order.
    pub fn present(&self) -> impl Iterator<Item = (&SubField, &str)> {
        self.layout
            .iter()
            .zip(&self.values)
            .filter_map(|(sub, value)| value.as_deref().map(|v| (sub, v)))
    }
}

/// The wire text: sub-fields up to the last one set, gaps filled with zeros (or spaces for
/// text sub-fields such as 61.1).
impl fmt::Display for Positional {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.values.iter().rposition(Option::is_some);
        let Some(last) = last else { return Ok(()) };
        for (sub, value) in self.layout.iter().zip(&self.values).take(last + 1) {
            match value {
                Some(value) => f.write_str(value)?,
                None => {
                    let filler = if sub.width > 8 { " " } else { "0" };
                    f.write_str(&filler.repeat(sub.width))?;
                }
            }
        }
        Ok(())
    }
}

/// Tag-length-value data inside a usage: tag 2 digits, length 3 digits, value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaggedData {
    entries: Vec<(String, String)>,
}

impl TaggedData {
    pub fn parse(field: u8, text: &str) -> Result<Self, PrivateFieldError> {
        let mut entries = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (Some(tag), Some(length)) = (rest.get(..2), rest.get(2..5)) else {
                return Err(error(field, "tagged data truncated in a tag or length"));
            };
            if !tag.bytes().all(|b| b.is_ascii_digit())
                || !length.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(error(field, "tag and length of tagged data must be digits"));
            }
            let length: usize = length.parse().map_err(|_| error(field, "bad length"))?;
            let Some(value) = rest.get(5..5 + length) else {
                return Err(error(field, format!("value of tag {tag} is truncated")));
            };
            entries.push((tag.to_owned(), value.to_owned()));
            rest = &rest[5 + length..];
        }
        Ok(Self { entries })
    }

    pub fn get(&self, tag: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, v)| v.as_str())
    }

    /// Sets a tag (replacing an existing one); tags are two digits, values at most 999
    /// ASCII characters.
    pub fn set(&mut self, tag: &str, value: &str) -> Result<&mut Self, PrivateFieldError> {
        if tag.len() != 2
            || !tag.bytes().all(|b| b.is_ascii_digit())
            || value.len() > 999
            || !value.is_ascii()
        {
            return Err(error(
                0,
                format!(
                    "tag {tag:?} must be two digits with an ASCII value of at most 999 characters"
                ),
            ));
        }
        match self.entries.iter_mut().find(|(t, _)| t == tag) {
            Some(entry) => entry.1 = value.to_owned(),
            None => self.entries.push((tag.to_owned(), value.to_owned())),
        }
        Ok(self)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(t, v)| (t.as_str(), v.as_str()))
    }
}

impl fmt::Display for TaggedData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (tag, value) in &self.entries {
            write!(f, "{tag}{:03}{value}", value.len())?;
        }
        Ok(())
    }
}

/// A usage-tagged field (48, 56, 63): a sequence of `usage (2 characters) length (3 digits)
/// data` blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usages {
    blocks: Vec<(String, String)>,
}

impl Usages {
    pub fn parse(field: u8, text: &str) -> Result<Self, PrivateFieldError> {
        let mut blocks = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (Some(usage), Some(length)) = (rest.get(..2), rest.get(2..5)) else {
                return Err(error(
                    field,
                    "usage block truncated in its usage tag or length",
                ));
            };
            if !usage.bytes().all(|b| b.is_ascii_alphanumeric())
                || !length.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(error(
                    field,
                    "a usage block starts with 2 letters or digits and a 3-digit length",
                ));
            }
            let length: usize = length.parse().map_err(|_| error(field, "bad length"))?;
            let Some(data) = rest.get(5..5 + length) else {
                return Err(error(field, format!("usage {usage} is truncated")));
            };
            blocks.push((usage.to_owned(), data.to_owned()));
            rest = &rest[5 + length..];
        }
        Ok(Self { blocks })
    }

    pub fn get(&self, usage: &str) -> Option<&str> {
        self.blocks
            .iter()
            .find(|(u, _)| u == usage)
            .map(|(_, d)| d.as_str())
    }

    pub fn set(&mut self, usage: &str, data: &str) -> Result<&mut Self, PrivateFieldError> {
        if usage.len() != 2
            || !usage.bytes().all(|b| b.is_ascii_alphanumeric())
            || data.len() > 999
            || !data.is_ascii()
        {
            return Err(error(
                0,
                format!(
                    "usage {usage:?} must be 2 letters or digits with at most 999 ASCII characters"
                ),
            ));
        }
        match self.blocks.iter_mut().find(|(u, _)| u == usage) {
            Some(block) => block.1 = data.to_owned(),
            None => self.blocks.push((usage.to_owned(), data.to_owned())),
        }
        Ok(self)
    }

    pub fn blocks(&self) -> impl Iterator<Item = (&str, &str)> {
        self.blocks.iter().map(|(u, d)| (u.as_str(), d.as_str()))
    }
}

impl fmt::Display for Usages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (usage, data) in &self.blocks {
            write!(f, "{usage}{:03}{data}", data.len())?;
        }
        Ok(())
    }
}

/// Tags of field 63 usage `TK` (token data) and field 56 usage `PR`.
pub mod token_tags {
    /// `TK` 01: 1 if the network verified the token (and its cryptogram).
    pub const VERIFIED: &str = "01";
    /// `TK` 02: the token (MPAN).
    pub const TOKEN: &str = "02";
    /// `TK` 03: the token's expiry, YYMM.
    pub const TOKEN_EXPIRY: &str = "03";
    /// `TK` 04: token assurance level, 2 digits.
    pub const ASSURANCE_LEVEL: &str = "04";
    /// `TK` 05: scenario: `NF` NFC tap, `IA` in-app.
    pub const SCENARIO: &str = "05";
    /// `TK` 06: token requestor ID, 11 digits.
    pub const REQUESTOR_ID: &str = "06";
    /// `TK` 08: product ID.
    pub const PRODUCT_ID: &str = "08";
    /// `TK` 10 (cloudpass): device kind (`SE`, `WR` wearable, `HC` HCE).
    pub const DEVICE_KIND: &str = "10";
    /// `TK` 11 (cloudpass): wallet name.
    pub const WALLET: &str = "11";
    /// `PR` 01: the payment account reference (29 characters).
    pub const PAR: &str = "01";
}

/// Field 90, original data elements: what a reversal refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalData {
    pub mti: String,
    pub stan: String,
    pub transmission_time: String,
    pub acquirer: String,
    pub forwarder: String,
}

impl OriginalData {
    pub fn parse(text: &str) -> Result<Self, PrivateFieldError> {
        if text.len() != 42 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error(90, "original data elements are 42 digits"));
        }
        Ok(Self {
            mti: text[..4].to_owned(),
            stan: text[4..10].to_owned(),
            transmission_time: text[10..20].to_owned(),
            acquirer: text[20..31].to_owned(),
            forwarder: text[31..42].to_owned(),
        })
    }

    /// The wire text; institution IDs are right-justified and zero-filled to 11 digits.
    pub fn to_wire(&self) -> Result<String, PrivateFieldError> {
        let digits = |text: &str, width: usize, what: &str| {
            if text.len() > width || !text.bytes().all(|b| b.is_ascii_digit()) {
                Err(error(90, format!("{what} must be at most {width} digits")))
            } else {
                Ok(format!("{text:0>width$}"))
            }
        };
        if self.mti.len() != 4 || self.stan.len() != 6 || self.transmission_time.len() != 10 {
            return Err(error(
                90,
                "MTI, STAN and transmission time must be 4, 6 and 10 digits",
            ));
        }
        Ok(format!(
            "{}{}{}{}{}",
            digits(&self.mti, 4, "MTI")?,
            digits(&self.stan, 6, "STAN")?,
            digits(&self.transmission_time, 10, "transmission time")?,
            digits(&self.acquirer, 11, "acquirer ID")?,
            digits(&self.forwarder, 11, "forwarder ID")?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_60_sub_fields() {
        let mut field = Positional::new(60, FIELD_60);
        field.set("60.1", "0000").unwrap();
        field.set("60.2.2", "6").unwrap();
        field.set("60.2.5", "03").unwrap();
        field.set("60.3.6", "2").unwrap();
        field.set("60.3.7", "3").unwrap();
        let text = field.to_string();
        assert_eq!(text, "0000060003000000000000023");
        let parsed = Positional::parse(60, FIELD_60, &text).unwrap();
        assert_eq!(parsed.get("60.2.5"), Some("03"));
        assert_eq!(parsed.get("60.3.7"), Some("3"));
        assert_eq!(parsed.get("60.3.8"), None);
        assert!(field.set("60.2.5", "3").is_err());
        assert!(Positional::parse(60, FIELD_60, "000006000").is_err());
        // 60.1 alone is a complete value.
        assert_eq!(
            Positional::parse(60, FIELD_60, "0000")
                .unwrap()
                .present()
                .count(),
            1
        );
    }

    #[test]
    fn field_63_token_data() {
        let mut tk = TaggedData::default();
        tk.set(token_tags::TOKEN, "6231000000000004").unwrap();
        tk.set(token_tags::REQUESTOR_ID, "40010030273").unwrap();
        let mut usages = Usages::default();
        usages.set("TK", &tk.to_string()).unwrap();
        let text = usages.to_string();
        assert_eq!(text, "TK0370201662310000000000040601140010030273");
        let parsed = Usages::parse(63, &text).unwrap();
        let tk = TaggedData::parse(63, parsed.get("TK").unwrap()).unwrap();
        assert_eq!(tk.get(token_tags::REQUESTOR_ID), Some("40010030273"));
        assert!(Usages::parse(63, "TK010abc").is_err());
        assert!(TaggedData::parse(63, "0200").is_err());
    }

    #[test]
    fn field_90_round_trip() {
        let original = OriginalData {
            mti: "0200".into(),
            stan: "000123".into(),
            transmission_time: "1125103000".into(),
            acquirer: "48020000".into(),
            forwarder: "".into(),
        };
        let wire = original.to_wire().unwrap();
        assert_eq!(wire, "020000012311251030000004802000000000000000");
        assert_eq!(OriginalData::parse(&wire).unwrap().acquirer, "00048020000");
        assert!(OriginalData::parse("0200").is_err());
    }
}

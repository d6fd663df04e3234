//! BER-TLV as EMV uses it in field 55 (ISO/IEC 8825-1 subset, EMV Book 3 Annex B):
//! multi-byte tags, short and long length forms, constructed tags.
//!
//! The decoder accepts non-minimal long-form lengths (`81 01`, `82 00 01`) as EMV readers
//! must; the encoder always writes the minimal form. Errors carry the byte offset.

use std::fmt;

/// A tag of 1 to 4 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    bytes: [u8; 4],
    length: u8,
}

impl Tag {
    /// A one-byte tag (whose low five bits are not all set).
    const fn one(byte: u8) -> Tag {
        Tag {
            bytes: [byte, 0, 0, 0],
            length: 1,
        }
    }

    /// A two-byte tag (first byte's low five bits all set, second byte's top bit clear).
    const fn two(first: u8, second: u8) -> Tag {
        Tag {
            bytes: [first, second, 0, 0],
            length: 2,
        }
    }

    /// Parses a tag from hex (`"9F26"`), checking its structure.
    pub fn from_hex(text: &str) -> Option<Tag> {
        let bytes = cloudpass_core::hex::decode(text).ok()?;
        let (tag, used) = read_tag(&bytes, 0).ok()?;
        (used == bytes.len()).then_some(tag)
    }

    /// A tag from its bytes (which must form exactly one well-formed tag).
    pub fn from_bytes(bytes: &[u8]) -> Option<Tag> {
        let (tag, used) = read_tag(bytes, 0).ok()?;
        (used == bytes.len()).then_some(tag)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.length)]
    }

    /// Bit 6 of the first byte: the value is itself a sequence of TLVs.
    pub fn is_constructed(&self) -> bool {
        self.bytes[0] & 0x20 != 0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&cloudpass_core::hex::encode(self.as_bytes()))
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({self})")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    #[error("TLV truncated in the tag at byte {offset}")]
    TruncatedTag { offset: usize },
    #[error("TLV tag at byte {offset} is longer than 4 bytes")]
    TagTooLong { offset: usize },
    #[error("TLV truncated in the length at byte {offset}")]
    TruncatedLength { offset: usize },
    #[error("TLV length at byte {offset} uses an unsupported form")]
    BadLength { offset: usize },
    #[error("TLV value at byte {offset} needs {needed} bytes, {available} left")]
    TruncatedValue {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("TLV value of {length} bytes is too long to encode")]
    ValueTooLong { length: usize },
}

fn read_tag(input: &[u8], offset: usize) -> Result<(Tag, usize), TlvError> {
    let first = *input.get(offset).ok_or(TlvError::TruncatedTag { offset })?;
    let mut bytes = [first, 0, 0, 0];
    let mut length = 1usize;
    if first & 0x1F == 0x1F {
        loop {
            let next = *input
                .get(offset + length)
                .ok_or(TlvError::TruncatedTag { offset })?;
            if length == 4 {
                return Err(TlvError::TagTooLong { offset });
            }
            bytes[length] = next;
            length += 1;
            if next & 0x80 == 0 {
                break;
            }
        }
    }
    Ok((
        Tag {
            bytes,
            length: length as u8,
        },
        length,
    ))
}

fn read_length(input: &[u8], offset: usize) -> Result<(usize, usize), TlvError> {
    let first = *input
        .get(offset)
        .ok_or(TlvError::TruncatedLength { offset })?;
    if first < 0x80 {
        return Ok((usize::from(first), 1));
    }
    let count = usize::from(first & 0x7F);
    // 0x80 is BER's indefinite form, which EMV does not use; more than 3 length bytes
    // cannot describe anything that fits in an ISO 8583 field.
    if count == 0 || count > 3 {
        return Err(TlvError::BadLength { offset });
    }
    let bytes = input
        .get(offset + 1..offset + 1 + count)
        .ok_or(TlvError::TruncatedLength { offset })?;
    let value = bytes
        .iter()
        .fold(0usize, |value, &b| value << 8 | usize::from(b));
    Ok((value, 1 + count))
}

/// One data object. `value` borrows from the input; `offset` is where the object starts
/// and `value_offset` where its value starts (both from the start of the parsed input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: Tag,
    pub value: &'a [u8],
    pub offset: usize,
    pub value_offset: usize,
}

impl<'a> Tlv<'a> {
    /// The objects inside a constructed object's value.
    pub fn children(&self) -> Result<Vec<Tlv<'a>>, TlvError> {
        parse_at(self.value, self.value_offset)
    }
}

/// Parses a sequence of data objects (one level; use [`Tlv::children`] to descend).
pub fn parse(input: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    parse_at(input, 0)
}

fn parse_at(input: &[u8], base: usize) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut objects = Vec::new();
    let mut offset = 0;
    while offset < input.len() {
        let start = offset;
        let (tag, tag_length) = read_tag(input, offset).map_err(|e| shift(e, base))?;
        offset += tag_length;
        let (length, length_length) = read_length(input, offset).map_err(|e| shift(e, base))?;
        offset += length_length;
        let available = input.len() - offset;
        if length > available {
            return Err(TlvError::TruncatedValue {
                offset: base + offset,
                needed: length,
                available,
            });
        }
        objects.push(Tlv {
            tag,
            value: &input[offset..offset + length],
            offset: base + start,
            value_offset: base + offset,
        });
        offset += length;
    }
    Ok(objects)
}

fn shift(error: TlvError, base: usize) -> TlvError {
    match error {
        TlvError::TruncatedTag { offset } => TlvError::TruncatedTag {
            offset: offset + base,
        },
        TlvError::TagTooLong { offset } => TlvError::TagTooLong {
            offset: offset + base,
        },
        TlvError::TruncatedLength { offset } => TlvError::TruncatedLength {
            offset: offset + base,
        },
        TlvError::BadLength { offset } => TlvError::BadLength {
            offset: offset + base,
        },
        other => other,
    }
}

/// The first object with `tag` at the top level of `input`.
pub fn find<'a>(objects: &[Tlv<'a>], tag: Tag) -> Option<&'a [u8]> {
    objects
        .iter()
        .find(|object| object.tag == tag)
        .map(|object| object.value)
}

/// The EMV tags the network reads and writes in field 55.
pub mod tags {
    use super::Tag;

    pub const APPLICATION_CRYPTOGRAM: Tag = Tag::two(0x9F, 0x26);
    pub const CRYPTOGRAM_INFORMATION_DATA: Tag = Tag::two(0x9F, 0x27);
    pub const ISSUER_APPLICATION_DATA: Tag = Tag::two(0x9F, 0x10);
    pub const UNPREDICTABLE_NUMBER: Tag = Tag::two(0x9F, 0x37);
    pub const APPLICATION_TRANSACTION_COUNTER: Tag = Tag::two(0x9F, 0x36);
    pub const TERMINAL_VERIFICATION_RESULTS: Tag = Tag::one(0x95);
    pub const TRANSACTION_DATE: Tag = Tag::one(0x9A);
    pub const TRANSACTION_TYPE: Tag = Tag::one(0x9C);
    pub const AMOUNT_AUTHORISED: Tag = Tag::two(0x9F, 0x02);
    pub const AMOUNT_OTHER: Tag = Tag::two(0x9F, 0x03);
    pub const TRANSACTION_CURRENCY_CODE: Tag = Tag::two(0x5F, 0x2A);
    pub const APPLICATION_INTERCHANGE_PROFILE: Tag = Tag::one(0x82);
    pub const TERMINAL_COUNTRY_CODE: Tag = Tag::two(0x9F, 0x1A);
    pub const TERMINAL_CAPABILITIES: Tag = Tag::two(0x9F, 0x33);
    pub const CVM_RESULTS: Tag = Tag::two(0x9F, 0x34);
    pub const TERMINAL_TYPE: Tag = Tag::two(0x9F, 0x35);
    pub const IFD_SERIAL_NUMBER: Tag = Tag::two(0x9F, 0x1E);
    pub const DEDICATED_FILE_NAME: Tag = Tag::one(0x84);
    pub const APPLICATION_VERSION_NUMBER: Tag = Tag::two(0x9F, 0x09);
    pub const TRANSACTION_SEQUENCE_COUNTER: Tag = Tag::two(0x9F, 0x41);
    pub const PAN_SEQUENCE_NUMBER: Tag = Tag::two(0x5F, 0x34);
    pub const TRACK_2_EQUIVALENT_DATA: Tag = Tag::one(0x57);
    pub const ISSUER_AUTHENTICATION_DATA: Tag = Tag::one(0x91);
    pub const AUTHORISATION_RESPONSE_CODE: Tag = Tag::one(0x8A);
    pub const ISSUER_SCRIPT_RESULTS: Tag = Tag::two(0xDF, 0x31);
}

/// Appends one object, with the minimal length form.
pub fn write(tag: Tag, value: &[u8], out: &mut Vec<u8>) -> Result<(), TlvError> {
    let length = value.len();
    out.extend_from_slice(tag.as_bytes());
    match length {
        0..=0x7F => out.push(length as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, length as u8]),
        0x100..=0xFFFF => out.extend_from_slice(&[0x82, (length >> 8) as u8, length as u8]),
        _ => return Err(TlvError::ValueTooLong { length }),
    }
    out.extend_from_slice(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudpass_core::hex;
    use proptest::prelude::*;

    fn tag(text: &str) -> Tag {
        Tag::from_hex(text).unwrap()
    }

    #[test]
    fn reference_example_with_a_constructed_tag() {
        // reference/switch.md §3: 9C0101E0055F2A0202089F0200 ↔ {9C:01, E0:{5F2A:0208}, 9F02:∅}
        let input = hex::decode("9C0101E0055F2A0202089F0200").unwrap();
        let objects = parse(&input).unwrap();
        assert_eq!(objects.len(), 3);
        assert_eq!((objects[0].tag, objects[0].value), (tag("9C"), &[0x01][..]));
        assert!(objects[1].tag.is_constructed());
        let children = objects[1].children().unwrap();
        assert_eq!(children.len(), 1);
        assert_eq!(
            (children[0].tag, children[0].value),
            (tag("5F2A"), &[0x02, 0x08][..])
        );
        assert_eq!(children[0].offset, 5);
        assert_eq!((objects[2].tag, objects[2].value), (tag("9F02"), &[][..]));

        let mut inner = Vec::new();
        write(tag("5F2A"), &[0x02, 0x08], &mut inner).unwrap();
        let mut out = Vec::new();
        write(tag("9C"), &[0x01], &mut out).unwrap();
        write(tag("E0"), &inner, &mut out).unwrap();
        write(tag("9F02"), &[], &mut out).unwrap();
        assert_eq!(out, input);
    }

    #[test]
    fn accepts_non_minimal_lengths() {
        for text in ["9C8101FF", "9C820001FF"] {
            let input = hex::decode(text).unwrap();
            let objects = parse(&input).unwrap();
            assert_eq!(
                (objects[0].tag, objects[0].value),
                (tag("9C"), &[0xFF][..]),
                "{text}"
            );
        }
    }

    #[test]
    fn long_values_use_long_forms() {
        for length in [0x7F, 0x80, 0xFF, 0x100, 0x1234] {
            let value = vec![0xA5; length];
            let mut out = Vec::new();
            write(tag("9F10"), &value, &mut out).unwrap();
            let objects = parse(&out).unwrap();
            assert_eq!(objects[0].value.len(), length);
        }
    }

    #[test]
    fn errors_name_the_offset() {
        let check = |text: &str, expected: TlvError| {
            assert_eq!(parse(&hex::decode(text).unwrap()), Err(expected), "{text}");
        };
        check("9F", TlvError::TruncatedTag { offset: 0 });
        check("9C01019F", TlvError::TruncatedTag { offset: 3 });
        check("9FFFFFFF01", TlvError::TagTooLong { offset: 0 });
        check("9C", TlvError::TruncatedLength { offset: 1 });
        check("9C80", TlvError::BadLength { offset: 1 });
        check("9C8500000000010000", TlvError::BadLength { offset: 1 });
        check("9C8201", TlvError::TruncatedLength { offset: 1 });
        check(
            "9C0501",
            TlvError::TruncatedValue {
                offset: 2,
                needed: 5,
                available: 1,
            },
        );
        assert!(Tag::from_hex("9F").is_none());
        assert!(Tag::from_hex("9F2600").is_none());
    }

    #[test]
    fn named_tags_are_well_formed() {
        for named in [
            tags::APPLICATION_CRYPTOGRAM,
            tags::TERMINAL_VERIFICATION_RESULTS,
            tags::ISSUER_SCRIPT_RESULTS,
            tags::TRACK_2_EQUIVALENT_DATA,
        ] {
            assert_eq!(Tag::from_bytes(named.as_bytes()), Some(named));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(objects) = parse(&bytes) {
                for object in objects {
                    let _ = object.children();
                }
            }
        }

        #[test]
        fn encode_parse_round_trip(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let tags = ["9F26", "9F10", "82", "5F2A", "9F8201", "DF31", "57", "9A"];
            let mut out = Vec::new();
            for (i, value) in values.iter().enumerate() {
                write(tag(tags[i % tags.len()]), value, &mut out).unwrap();
            }
            let objects = parse(&out).unwrap();
            prop_assert_eq!(objects.len(), values.len());
            for (object, value) in objects.iter().zip(&values) {
                prop_assert_eq!(object.value, value.as_slice());
            }
        }
    }
}

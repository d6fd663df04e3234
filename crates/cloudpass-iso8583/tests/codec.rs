//! Black-box tests of the codec: known wire bytes, every error kind with its field and
//! offset, a second (BCD) profile to exercise the encodings the network profile does not
//! use, and property tests (random valid messages round-trip; arbitrary bytes never panic).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cloudpass_core::hex;
use cloudpass_iso8583::spec::Content::{
    AlphanumericSpecial as ANS, Binary as B, Numeric as N, Track2 as Z,
};
use cloudpass_iso8583::{
    BcdPad, BitmapEncoding, CodecError, Encoding, ErrorKind, FieldSpec, LengthUnit, Message, Mti,
    Part, Profile, profile, samples,
};
use proptest::prelude::*;

fn network() -> &'static Profile {
    profile::cloudpass()
}

#[test]
fn samples_round_trip() {
    for message in [
        samples::contactless_purchase(),
        samples::contactless_purchase_response(),
        samples::sign_on(),
        samples::reversal(),
    ] {
        let wire = network().encode(&message).unwrap();
        let decoded = network().decode(&wire).unwrap();
        assert_eq!(decoded, message);
        // ASCII and binary values are borrowed from the buffer, not copied.
        let pan = decoded.get(11).unwrap();
        let range = wire.as_ptr_range();
        assert!(range.contains(&pan.as_ptr()));
    }
}

#[test]
fn sign_on_wire_bytes() {
    let wire = network().encode(&samples::sign_on()).unwrap();
    // Bitmap: fields 7, 11, 32, 41, 42, 53 in the primary, 70 in the secondary.
    let expected = concat!(
        "30383030",         // "0800"
        "8220000100C00800", // primary bitmap (bit 1: secondary present)
        "0400000000000000", // secondary bitmap: field 70
    );
    assert_eq!(hex::encode(&wire[..20]), expected);
    let fields = concat!(
        "1125080000",
        "000001",
        "08",
        "48020000",
        "POS00001",
        "898310048990001",
        "2600000000000000",
        "001"
    );
    assert_eq!(&wire[20..], fields.as_bytes());
}

fn decode_error(bytes: &[u8]) -> CodecError {
    network().decode(bytes).unwrap_err()
}

/// A 0200 with only fields 2 and 4 (bitmap 5000000000000000).
fn small(pan: &[u8], amount: &[u8]) -> Vec<u8> {
    let mut bytes = b"0200".to_vec();
    bytes.extend_from_slice(&[0x50, 0, 0, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(pan);
    bytes.extend_from_slice(amount);
    bytes
}

#[test]
fn decode_errors_name_field_and_offset() {
    let good = small(b"166231180000000008", b"000000001250");
    assert!(network().decode(&good).is_ok());

    let error = decode_error(&good[..good.len() - 3]);
    assert_eq!(error.field(), Some(4));
    assert_eq!(error.offset, 30);
    assert_eq!(
        error.kind,
        ErrorKind::Truncated {
            needed: 12,
            available: 9
        }
    );
    assert_eq!(
        error.to_string(),
        "field 4 (amount, transaction) at byte 30: message truncated: needs 12 more bytes, 9 left"
    );

    let error = decode_error(&small(b"256231180000000008000000000", b"000000001250"));
    assert_eq!(
        (error.field(), error.offset, error.kind),
        (
            Some(2),
            12,
            ErrorKind::TooLong {
                length: 25,
                max: 19
            }
        )
    );

    let error = decode_error(&small(b"1662311800000x0008", b"000000001250"));
    assert_eq!(error.field(), Some(2));
    assert_eq!(error.offset, 14 + 11);
    assert!(matches!(
        error.kind,
        ErrorKind::BadCharacter { position: 11, .. }
    ));
    // The error never quotes the value.
    assert!(!error.to_string().contains("62311800000"));

    let error = decode_error(&small(b"1x6231180000000008", b"000000001250"));
    assert_eq!(
        (error.field(), error.offset, error.kind),
        (Some(2), 12, ErrorKind::BadLengthPrefix)
    );

    let error = decode_error(&small(b"166231180000000008", b"00000000125A"));
    assert_eq!((error.field(), error.offset), (Some(4), 41));

    let mut trailing = good.clone();
    trailing.extend_from_slice(b"xx");
    let error = decode_error(&trailing);
    assert_eq!(
        (error.part, error.offset, error.kind),
        (
            Part::Message,
            good.len(),
            ErrorKind::TrailingBytes { count: 2 }
        )
    );

    // Bit 8 (field 8) is not in the profile; it is reached after fields 2 and 4.
    let mut undefined = good.clone();
    undefined[4] = 0x51;
    let error = decode_error(&undefined);
    assert_eq!(
        (error.field(), error.kind),
        (Some(8), ErrorKind::UndefinedField)
    );
    assert_eq!(error.offset, 12 + 18 + 12);

    // Bit 65 (a tertiary bitmap) is never defined.
    let mut tertiary = b"0200".to_vec();
    tertiary.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(decode_error(&tertiary).field(), Some(65));

    assert_eq!(decode_error(b"02x0").part, Part::Mti);
    assert_eq!(
        decode_error(b"02").kind,
        ErrorKind::Truncated {
            needed: 4,
            available: 2
        }
    );
    assert_eq!(decode_error(b"0200\x80\0\0").part, Part::Bitmap);
    assert_eq!(
        decode_error(b"0200\x80\0\0\0\0\0\0\0\0\0").part,
        Part::Bitmap
    );
}

#[test]
fn a_refused_message_still_shows_the_fields_before_its_fault() {
    // Field 7, 11 and 32 are read; field 41 (ans 8) is cut short.
    let mut message = Message::new(Mti::FINANCIAL_REQUEST);
    message
        .set_text(7, "1125103000")
        .set_text(11, "000123")
        .set_text(32, "48020000")
        .set_text(41, "CPPOS001");
    let mut wire = network().encode(&message).unwrap();
    wire.truncate(wire.len() - 3);
    assert!(network().decode(&wire).is_err());
    let leading = network().decode_leading(&wire).unwrap();
    assert_eq!(leading.mti(), Mti::FINANCIAL_REQUEST);
    assert_eq!(leading.get_str(11), Some("000123"));
    assert_eq!(leading.get_str(32), Some("48020000"));
    assert!(!leading.contains(41));
    // Nothing to show without an MTI and a bitmap.
    assert!(network().decode_leading(b"02").is_none());
    // A whole message shows whole.
    let whole = network().encode(&message).unwrap();
    assert_eq!(network().decode_leading(&whole).unwrap(), message);
}

#[test]
fn an_empty_secondary_bitmap_is_accepted_and_not_repeated() {
    // Found by fuzzing: some senders always announce the secondary bitmap.
    let mut bytes = b"0200".to_vec();
    bytes.extend_from_slice(&[0x80 | 0x10, 0, 0, 0, 0, 0, 0, 0]); // secondary + field 4
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(b"000000001250");
    let message = network().decode(&bytes).unwrap();
    assert_eq!(message.get_str(4), Some("000000001250"));
    let wire = network().encode(&message).unwrap();
    assert_eq!(wire.len(), bytes.len() - 8);
    assert_eq!(network().decode(&wire).unwrap(), message);
}

#[test]
fn encode_errors_leave_the_buffer_untouched() {
    let mut out = b"prefix".to_vec();
    let mut message = samples::contactless_purchase();
    message.set_text(4, "1250");
    let error = network().encode_into(&message, &mut out).unwrap_err();
    assert_eq!(error.field(), Some(4));
    assert_eq!(
        error.kind,
        ErrorKind::WrongLength {
            length: 4,
            expected: 12
        }
    );
    assert_eq!(out, b"prefix");

    message
        .set_text(4, "000000001250")
        .set_text(2, "622609******0048");
    let error = network().encode(&message).unwrap_err();
    assert_eq!(
        (error.field(), error.kind),
        (
            Some(2),
            ErrorKind::BadCharacter {
                position: 6,
                expected: "a digit"
            }
        )
    );

    message.set_text(2, "6".repeat(20));
    assert_eq!(
        network().encode(&message).unwrap_err().kind,
        ErrorKind::TooLong {
            length: 20,
            max: 19
        }
    );

    let mut undefined = Message::new(Mti::FINANCIAL_REQUEST);
    undefined.set_text(8, "1");
    assert_eq!(
        network().encode(&undefined).unwrap_err().kind,
        ErrorKind::UndefinedField
    );
    undefined.remove(8);
    undefined.set_text(1, "1");
    assert_eq!(network().encode(&undefined).unwrap_err().field(), Some(1));
}

/// A CUPS POS-style profile: BCD MTI, BCD numerics, BCD length prefixes, the PAN
/// left-aligned with an F pad, track 2 in BCD with D as separator, a hex bitmap variant.
fn pos_profile(bitmap: BitmapEncoding) -> Profile {
    Profile::new(
        "test POS",
        Encoding::Bcd,
        bitmap,
        &[
            (
                2,
                FieldSpec::variable("pan", N, 2, 19)
                    .encoded(Encoding::Bcd)
                    .prefixed(Encoding::Bcd)
                    .padded(BcdPad::RightF),
            ),
            (
                3,
                FieldSpec::fixed("processing code", N, 6).encoded(Encoding::Bcd),
            ),
            (4, FieldSpec::fixed("amount", N, 12).encoded(Encoding::Bcd)),
            (
                22,
                FieldSpec::fixed("entry mode", N, 3).encoded(Encoding::Bcd),
            ),
            (
                35,
                FieldSpec::variable("track 2", Z, 2, 37)
                    .encoded(Encoding::Bcd)
                    .prefixed(Encoding::Bcd)
                    .padded(BcdPad::RightF),
            ),
            (
                48,
                FieldSpec::variable("byte-counted", N, 3, 20)
                    .encoded(Encoding::Bcd)
                    .prefixed(Encoding::Bcd)
                    .counted_in(LengthUnit::Bytes)
                    .padded(BcdPad::RightF),
            ),
            (
                55,
                FieldSpec::variable("icc", B, 3, 255).prefixed(Encoding::Binary),
            ),
            (
                60,
                FieldSpec::variable("private", ANS, 3, 100).prefixed(Encoding::Bcd),
            ),
            (64, FieldSpec::fixed("mac", B, 8)),
        ],
    )
    .unwrap()
}

#[test]
fn bcd_encodings_exact_bytes() {
    let profile = pos_profile(BitmapEncoding::Binary);
    let mut message = Message::new(Mti::FINANCIAL_REQUEST);
    message
        .set_text(2, "6231180000000008")
        .set_text(3, "000000")
        .set_text(4, "000000001250")
        .set_text(22, "072")
        .set_text(35, "6231180000000008=2911201")
        .set_text(48, "12345")
        .set(55, vec![0x9F, 0x26, 0x01, 0xAA])
        .set_text(60, "0000");
    let wire = profile.encode(&message).unwrap();
    let expected = concat!(
        "0200",             // MTI as BCD
        "7000040020010210", // bitmap: 2 3 4 22 35 48 55 60
        "16",
        "6231180000000008", // PAN: BCD length 16, 8 bytes
        "000000",
        "000000001250", // processing code, amount
        "0072",         // entry mode: odd length, left 0 pad
        "24",
        "6231180000000008D2911201", // track 2: 24 digits, D separator
        "0003",
        "12345F", // byte-counted: 3 bytes, right F pad
        "0004",
        "9F2601AA", // ICC data: binary 2-byte length
        "0004",
        "30303030", // private: BCD length, ASCII value
    );
    assert_eq!(hex::encode(&wire), expected);
    let decoded = profile.decode(&wire).unwrap();
    assert_eq!(decoded.get_str(35), Some("6231180000000008=2911201"));
    assert_eq!(decoded.get_str(22), Some("072"));
    assert_eq!(decoded.get_str(48), Some("12345"));
    assert_eq!(decoded, message);

    // Odd-length PAN: 19 digits, F pad at the end.
    message.set_text(2, "6216261000000000018");
    let wire = profile.encode(&message).unwrap();
    assert_eq!(hex::encode(&wire[10..21]), "196216261000000000018F");
    assert_eq!(profile.decode(&wire).unwrap(), message);

    // A non-digit nibble and a wrong pad nibble are caught.
    let mut broken = wire.clone();
    broken[11] = 0x6A;
    let error = profile.decode(&broken).unwrap_err();
    assert_eq!(
        (error.field(), error.kind),
        (Some(2), ErrorKind::BadBcd { position: 1 })
    );
    let mut broken = wire.clone();
    broken[20] = 0x80;
    assert_eq!(
        profile.decode(&broken).unwrap_err().kind,
        ErrorKind::BadBcd { position: 19 }
    );
    let mut broken = wire.clone();
    broken[10] = 0x1A;
    assert_eq!(
        profile.decode(&broken).unwrap_err().kind,
        ErrorKind::BadLengthPrefix
    );
}

#[test]
fn hex_bitmaps() {
    let profile = pos_profile(BitmapEncoding::Hex);
    let mut message = Message::new(Mti::NETWORK_REQUEST);
    message
        .set_text(3, "990000")
        .set(64, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    let wire = profile.encode(&message).unwrap();
    assert_eq!(&wire[2..18], b"2000000000000001");
    assert_eq!(profile.decode(&wire).unwrap(), message);
    let mut broken = wire.clone();
    broken[5] = b'G';
    assert_eq!(profile.decode(&broken).unwrap_err().kind, ErrorKind::BadHex);
}

#[test]
fn inconsistent_profiles_are_refused() {
    let bad = |specs: &[(u8, FieldSpec)]| {
        Profile::new("bad", Encoding::Ascii, BitmapEncoding::Binary, specs).unwrap_err()
    };
    assert_eq!(bad(&[(1, FieldSpec::fixed("x", N, 1))]).field, 1);
    assert_eq!(bad(&[(65, FieldSpec::fixed("x", N, 1))]).field, 65);
    assert_eq!(
        bad(&[
            (2, FieldSpec::fixed("x", N, 1)),
            (2, FieldSpec::fixed("y", N, 1))
        ])
        .problem,
        "defined twice"
    );
    bad(&[(2, FieldSpec::fixed("x", B, 1).encoded(Encoding::Ascii))]);
    bad(&[(2, FieldSpec::fixed("x", ANS, 1).encoded(Encoding::Bcd))]);
    bad(&[(2, FieldSpec::variable("x", N, 2, 100))]);
}

/// A random value for a field spec: right characters, legal length.
fn value_for(spec: &FieldSpec) -> BoxedStrategy<Vec<u8>> {
    use cloudpass_iso8583::{Content, Length};
    let (min, max) = match spec.length {
        Length::Fixed(n) => (n, n),
        Length::Variable { max, .. } => (0, max.min(300)),
    };
    let alphabet: Vec<u8> = match spec.content {
        Content::Numeric => (b'0'..=b'9').collect(),
        Content::Alpha => (b'A'..=b'Z').chain(b'a'..=b'z').collect(),
        Content::Alphanumeric => (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .collect(),
        Content::AlphanumericSpecial => (0x20..=0x7E).collect(),
        Content::Track2 => (b'0'..=b'9').chain([b'=']).collect(),
        Content::Binary => (0..=255).collect(),
    };
    let byte_counted_bcd = spec.encoding == Encoding::Bcd && spec.count == LengthUnit::Bytes;
    proptest::collection::vec(proptest::sample::select(alphabet), min..=max)
        .prop_map(move |mut value| {
            // A byte-counted BCD value is whole bytes: keep it even so it round-trips exactly.
            if byte_counted_bcd && value.len() % 2 == 1 {
                value.pop();
            }
            value
        })
        .boxed()
}

fn random_message(profile: &'static Profile) -> impl Strategy<Value = Message<'static>> {
    let specs: Vec<(u8, FieldSpec)> = profile.fields().map(|(n, s)| (n, *s)).collect();
    let fields = specs
        .into_iter()
        .map(|(number, spec)| {
            proptest::option::of(value_for(&spec)).prop_map(move |value| (number, value))
        })
        .collect::<Vec<_>>();
    ("[0-9]{4}", fields).prop_map(|(mti, fields)| {
        let mut message = Message::new(Mti::parse(&mti).unwrap());
        for (number, value) in fields {
            if let Some(value) = value {
                message.set(number, value);
            }
        }
        message
    })
}

fn leaked_pos_profile() -> &'static Profile {
    use std::sync::OnceLock;
    static PROFILE: OnceLock<Profile> = OnceLock::new();
    PROFILE.get_or_init(|| pos_profile(BitmapEncoding::Binary))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn network_profile_round_trips(message in random_message(profile::cloudpass())) {
        let wire = network().encode(&message).unwrap();
        prop_assert_eq!(network().decode(&wire).unwrap(), message);
    }

    #[test]
    fn bcd_profile_round_trips(message in random_message(leaked_pos_profile())) {
        let profile = leaked_pos_profile();
        let wire = profile.encode(&message).unwrap();
        prop_assert_eq!(profile.decode(&wire).unwrap(), message);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = network().decode(&bytes);
        let _ = network().decode_leading(&bytes);
        let _ = leaked_pos_profile().decode(&bytes);
    }

    #[test]
    fn corrupted_messages_never_panic(index in 0usize..400, byte: u8, cut in 0usize..400) {
        let mut wire = network().encode(&samples::contactless_purchase()).unwrap();
        let index = index % wire.len();
        wire[index] = byte;
        wire.truncate(cut.max(index + 1));
        let _ = network().decode(&wire);
    }
}

//! Typical messages of the cloudpass network, built field by field. The benchmark, the CLI's
//! self-check and the interoperability tests share them, and docs/iso8583-profile.md shows
//! them. The card number in them is a token from the sandbox's token BIN range, never a real
//! card.

use crate::message::{Message, Mti};
use crate::private::{FIELD_60, OriginalData, Positional, values};
use crate::tlv::{self, Tag, tags};

/// A token from the sandbox token BIN range 623118 (Luhn-valid).
pub const SAMPLE_TOKEN: &str = "6231180000000008";

/// Field 55 of a contactless tap: the worked example of docs/iso8583-profile.md (CP01: its
/// ARQC is the one the example's keys make), with the terminal's further tags a real
/// terminal adds and the switch passes over.
pub fn sample_icc_data() -> Vec<u8> {
    let objects: &[(Tag, &[u8])] = &[
        (
            tags::APPLICATION_CRYPTOGRAM,
            &[0x62, 0x7D, 0x4C, 0x0F, 0x0B, 0xE1, 0x51, 0xCF],
        ),
        (tags::CRYPTOGRAM_INFORMATION_DATA, &[0x80]),
        (
            tags::ISSUER_APPLICATION_DATA,
            &[0x07, 0x01, 0x11, 0x80, 0x00, 0x00, 0x00],
        ),
        (tags::UNPREDICTABLE_NUMBER, &[0x1A, 0x2B, 0x3C, 0x4D]),
        (tags::APPLICATION_TRANSACTION_COUNTER, &[0x00, 0x01]),
        (
            tags::TERMINAL_VERIFICATION_RESULTS,
            &[0x00, 0x00, 0x00, 0x00, 0x00],
        ),
        (tags::TRANSACTION_DATE, &[0x26, 0x12, 0x02]),
        (tags::TRANSACTION_TYPE, &[0x00]),
        (
            tags::AMOUNT_AUTHORISED,
            &[0x00, 0x00, 0x00, 0x00, 0x12, 0x50],
        ),
        (tags::TRANSACTION_CURRENCY_CODE, &[0x01, 0x56]),
        (tags::APPLICATION_INTERCHANGE_PROFILE, &[0x7C, 0x00]),
        (tags::TERMINAL_COUNTRY_CODE, &[0x01, 0x56]),
        (tags::AMOUNT_OTHER, &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00]),
        (tags::TERMINAL_CAPABILITIES, &[0xE0, 0xE1, 0xC8]),
        (tags::CVM_RESULTS, &[0x1F, 0x03, 0x02]),
        (tags::TERMINAL_TYPE, &[0x22]),
        (tags::IFD_SERIAL_NUMBER, b"POS00001"),
        (
            tags::DEDICATED_FILE_NAME,
            &[0xA0, 0x00, 0x00, 0x03, 0x33, 0x01, 0x01, 0x02],
        ),
        (tags::APPLICATION_VERSION_NUMBER, &[0x00, 0x30]),
        (
            tags::TRANSACTION_SEQUENCE_COUNTER,
            &[0x00, 0x00, 0x01, 0x23],
        ),
    ];
    let mut out = Vec::with_capacity(160);
    for (tag, value) in objects {
        // Every value above is far below the long-form limit, so writing cannot fail.
        let _ = tlv::write(*tag, value, &mut out);
    }
    out
}

fn field_60_contactless() -> String {
    let mut field = Positional::new(60, FIELD_60);
    let _ = field
        .set("60.1", "0000")
        .and_then(|f| f.set("60.2.2", values::READ_CAPABILITY_CONTACTLESS))
        .and_then(|f| f.set("60.2.5", values::TERMINAL_TYPE_POS))
        .and_then(|f| f.set("60.3.6", values::MEDIUM_IC))
        .and_then(|f| f.set("60.3.7", values::IC_APPLICATION_ECASH));
    field.to_string()
}

/// A 0200 contactless (qPBOC) purchase of 12.50 CNY from a POS, with a token and field 55.
pub fn contactless_purchase() -> Message<'static> {
    let mut message = Message::new(Mti::FINANCIAL_REQUEST);
    message
        .set_text(2, SAMPLE_TOKEN)
        .set_text(3, "000000")
        .set_text(4, "000000001250")
        .set_text(7, "1125103000")
        .set_text(11, "000123")
        .set_text(12, "183000")
        .set_text(13, "1125")
        .set_text(14, "2911")
        .set_text(18, "5411")
        .set_text(22, "072")
        .set_text(23, "001")
        .set_text(25, "00")
        .set_text(32, "48021000")
        .set_text(33, "48021000")
        .set_text(35, format!("{SAMPLE_TOKEN}=29112010000000000"))
        .set_text(37, "532918000123")
        .set_text(41, "CPPLN001")
        .set_text(42, "898310048990002")
        .set_text(43, "cloudpass sandbox store  Shanghai    CHN")
        .set_text(49, "156")
        .set(55, sample_icc_data())
        .set_text(60, field_60_contactless());
    message
}

/// The 0210 approval of [`contactless_purchase`], with the issuer's ARPC in field 55 and the
/// token data in field 63.
pub fn contactless_purchase_response() -> Message<'static> {
    let mut message = contactless_purchase();
    message.set_mti(Mti::FINANCIAL_RESPONSE);
    for number in [14, 18, 22, 23, 35, 43, 55, 60] {
        message.remove(number);
    }
    // The ARPC of the worked example (method 1), then the response code.
    let arpc =
        crate::emv_data::response_field55(&[0x99, 0x78, 0x2A, 0x3A, 0xCF, 0x49, 0x85, 0xED], "00");
    message
        .set_text(38, "A1B2C3")
        .set_text(39, "00")
        .set(55, arpc);
    message
}

/// A 0800 sign-on from a terminal (field 70 = 001).
pub fn sign_on() -> Message<'static> {
    let mut message = Message::new(Mti::NETWORK_REQUEST);
    message
        .set_text(7, "1125080000")
        .set_text(11, "000001")
        .set_text(32, "48020000")
        .set_text(41, "POS00001")
        .set_text(42, "898310048990001")
        .set_text(53, "2600000000000000")
        .set_text(70, "001");
    message
}

/// A 0400 reversal of [`contactless_purchase`] after a timeout (reason 4021 in 60.1).
pub fn reversal() -> Message<'static> {
    let mut message = Message::new(Mti::REVERSAL_REQUEST);
    let original = OriginalData {
        mti: "0200".into(),
        stan: "000123".into(),
        transmission_time: "1125103000".into(),
        acquirer: "48020000".into(),
        forwarder: "48020000".into(),
    };
    message
        .set_text(2, SAMPLE_TOKEN)
        .set_text(3, "000000")
        .set_text(4, "000000001250")
        .set_text(7, "1125103045")
        .set_text(11, "000124")
        .set_text(22, "072")
        .set_text(25, "00")
        .set_text(32, "48020000")
        .set_text(33, "48020000")
        .set_text(37, "532918000123")
        .set_text(41, "POS00001")
        .set_text(42, "898310048990001")
        .set_text(49, "156")
        .set_text(60, "4021")
        .set_text(90, original.to_wire().unwrap_or_default());
    message
}

//! The chip data of a token payment (field 55): what the phone's cryptogram covers, how it is
//! laid out in TLVs, and how the switch rebuilds the same bytes from a received field 55.
//!
//! cloudpass cryptogram version CP01: the ARQC is ISO 9797-1 MAC algorithm 3 (padding
//! method 2) under the EMV common session key of the token's ICC master key (Option A from
//! the token number), over CDOL1 in the CVN18 order: 9F02 ‖ 9F03 ‖ 9F1A ‖ 95 ‖ 5F2A ‖ 9A ‖
//! 9C ‖ 9F37 ‖ 82 ‖ 9F36 ‖ 9F10. The issuer application data (9F10) is
//! `07 01 11 CVR(4)`: length 7, key index 1, cryptogram version 0x11 (CP01), and a card
//! verification result whose first byte carries [`CVR_CDCVM`] when the device verified the
//! cardholder — inside the cryptogram, so it cannot be added in transit.

use crate::tlv::{self, Tag, TlvError, tags};

/// Cryptogram version number of CP01.
pub const CRYPTOGRAM_VERSION: u8 = 0x11;
/// CVR byte 1: an ARQC was requested (always set by the phone).
pub const CVR_ARQC: u8 = 0x80;
/// CVR byte 1: the device verified the cardholder (passcode or biometric).
pub const CVR_CDCVM: u8 = 0x04;
/// CVR byte 1: the card approved offline and made a TC (an e-cash spend).
pub const CVR_TC: u8 = 0x40;
/// Cryptogram information data of an ARQC.
pub const CID_ARQC: u8 = 0x80;
/// Cryptogram information data of a TC (approved offline).
pub const CID_TC: u8 = 0x40;

/// What the terminal contributes to the cryptogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalData {
    /// Amount, authorised, in minor units (9F02, n12).
    pub amount: u64,
    pub other_amount: u64,
    /// ISO 3166 numeric (9F1A).
    pub country: u16,
    /// ISO 4217 numeric (5F2A).
    pub currency: u16,
    /// Terminal verification results (95).
    pub tvr: [u8; 5],
    /// Transaction date YYMMDD (9A).
    pub date: [u8; 3],
    /// Transaction type (9C): 0x00 goods and services.
    pub transaction_type: u8,
    /// The terminal's random number (9F37).
    pub unpredictable_number: [u8; 4],
}

/// What the card (the phone) contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardData {
    /// Application interchange profile (82).
    pub aip: [u8; 2],
    /// Application transaction counter (9F36).
    pub atc: u16,
    /// Card verification results: the last 4 bytes of the issuer application data.
    pub cvr: [u8; 4],
}

impl CardData {
    /// Issuer application data (9F10) of cryptogram version CP01.
    pub fn issuer_application_data(&self) -> [u8; 7] {
        let [a, b, c, d] = self.cvr;
        [0x07, 0x01, CRYPTOGRAM_VERSION, a, b, c, d]
    }

    pub fn cdcvm(&self) -> bool {
        self.cvr[0] & CVR_CDCVM != 0
    }
}

/// Packs `value` as `digits` BCD digits (right-justified).
fn bcd(value: u64, bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; bytes];
    let mut rest = value;
    for byte in out.iter_mut().rev() {
        let low = (rest % 10) as u8;
        rest /= 10;
        let high = (rest % 10) as u8;
        rest /= 10;
        *byte = (high << 4) | low;
    }
    out
}

fn unbcd(bytes: &[u8]) -> Option<u64> {
    bytes.iter().try_fold(0u64, |value, &byte| {
        let (high, low) = (byte >> 4, byte & 0x0F);
        (high <= 9 && low <= 9).then(|| value * 100 + u64::from(high) * 10 + u64::from(low))
    })
}

/// The bytes the ARQC covers (CDOL1, CVN18 order).
pub fn cryptogram_input(terminal: &TerminalData, card: &CardData) -> Vec<u8> {
    let mut data = Vec::with_capacity(44);
    data.extend_from_slice(&bcd(terminal.amount, 6));
    data.extend_from_slice(&bcd(terminal.other_amount, 6));
    data.extend_from_slice(&bcd(u64::from(terminal.country), 2));
    data.extend_from_slice(&terminal.tvr);
    data.extend_from_slice(&bcd(u64::from(terminal.currency), 2));
    data.extend_from_slice(&terminal.date);
    data.push(terminal.transaction_type);
    data.extend_from_slice(&terminal.unpredictable_number);
    data.extend_from_slice(&card.aip);
    data.extend_from_slice(&card.atc.to_be_bytes());
    data.extend_from_slice(&card.issuer_application_data());
    data
}

/// Field 55 of a request: the cryptogram, its data and the terminal's context.
pub fn request_field55(terminal: &TerminalData, card: &CardData, arqc: [u8; 8]) -> Vec<u8> {
    field55(terminal, card, arqc, CID_ARQC)
}

/// Field 55 of an offline e-cash spend the acquirer uploads: the card's TC and its data.
pub fn offline_field55(terminal: &TerminalData, card: &CardData, tc: [u8; 8]) -> Vec<u8> {
    field55(terminal, card, tc, CID_TC)
}

fn field55(terminal: &TerminalData, card: &CardData, cryptogram: [u8; 8], cid: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let objects: [(Tag, Vec<u8>); 12] = [
        (tags::APPLICATION_CRYPTOGRAM, cryptogram.to_vec()),
        (tags::CRYPTOGRAM_INFORMATION_DATA, vec![cid]),
        (
            tags::ISSUER_APPLICATION_DATA,
            card.issuer_application_data().to_vec(),
        ),
        (
            tags::UNPREDICTABLE_NUMBER,
            terminal.unpredictable_number.to_vec(),
        ),
        (
            tags::APPLICATION_TRANSACTION_COUNTER,
            card.atc.to_be_bytes().to_vec(),
        ),
        (tags::TERMINAL_VERIFICATION_RESULTS, terminal.tvr.to_vec()),
        (tags::TRANSACTION_DATE, terminal.date.to_vec()),
        (tags::TRANSACTION_TYPE, vec![terminal.transaction_type]),
        (tags::AMOUNT_AUTHORISED, bcd(terminal.amount, 6)),
        (
            tags::TRANSACTION_CURRENCY_CODE,
            bcd(u64::from(terminal.currency), 2),
        ),
        (tags::APPLICATION_INTERCHANGE_PROFILE, card.aip.to_vec()),
        (
            tags::TERMINAL_COUNTRY_CODE,
            bcd(u64::from(terminal.country), 2),
        ),
    ];
    for (tag, value) in objects.iter().chain(std::iter::once(&(
        tags::AMOUNT_OTHER,
        bcd(terminal.other_amount, 6),
    ))) {
        // Every value here is far below the long-form limit.
        let _ = tlv::write(*tag, value, &mut out);
    }
    out
}

/// A field 55 as the switch reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipRequest {
    pub terminal: TerminalData,
    pub card: CardData,
    pub arqc: [u8; 8],
    pub cryptogram_information: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChipDataError {
    #[error("field 55: {0}")]
    Tlv(#[from] TlvError),
    #[error("field 55 lacks tag {0}")]
    Missing(Tag),
    #[error("field 55 tag {0} has the wrong length or content")]
    Malformed(Tag),
    #[error("field 55 carries cryptogram version {0:#04x}; this network speaks CP01 (0x11)")]
    Version(u8),
}

impl ChipRequest {
    pub fn parse(field55: &[u8]) -> Result<Self, ChipDataError> {
        let objects = tlv::parse(field55)?;
        let get = |tag: Tag| tlv::find(&objects, tag).ok_or(ChipDataError::Missing(tag));
        fn fixed<const N: usize>(tag: Tag, value: &[u8]) -> Result<[u8; N], ChipDataError> {
            value.try_into().map_err(|_| ChipDataError::Malformed(tag))
        }
        let number = |tag: Tag, bytes: usize| -> Result<u64, ChipDataError> {
            let value = get(tag)?;
            if value.len() != bytes {
                return Err(ChipDataError::Malformed(tag));
            }
            unbcd(value).ok_or(ChipDataError::Malformed(tag))
        };
        let iad = get(tags::ISSUER_APPLICATION_DATA)?;
        if iad.len() != 7 || iad[0] != 0x07 {
            return Err(ChipDataError::Malformed(tags::ISSUER_APPLICATION_DATA));
        }
        if iad[2] != CRYPTOGRAM_VERSION {
            return Err(ChipDataError::Version(iad[2]));
        }
        let terminal = TerminalData {
            amount: number(tags::AMOUNT_AUTHORISED, 6)?,
            other_amount: match tlv::find(&objects, tags::AMOUNT_OTHER) {
                Some(_) => number(tags::AMOUNT_OTHER, 6)?,
                None => 0,
            },
            country: u16::try_from(number(tags::TERMINAL_COUNTRY_CODE, 2)?)
                .map_err(|_| ChipDataError::Malformed(tags::TERMINAL_COUNTRY_CODE))?,
            currency: u16::try_from(number(tags::TRANSACTION_CURRENCY_CODE, 2)?)
                .map_err(|_| ChipDataError::Malformed(tags::TRANSACTION_CURRENCY_CODE))?,
            tvr: fixed(
                tags::TERMINAL_VERIFICATION_RESULTS,
                get(tags::TERMINAL_VERIFICATION_RESULTS)?,
            )?,
            date: fixed(tags::TRANSACTION_DATE, get(tags::TRANSACTION_DATE)?)?,
            transaction_type: fixed::<1>(tags::TRANSACTION_TYPE, get(tags::TRANSACTION_TYPE)?)?[0],
            unpredictable_number: fixed(
                tags::UNPREDICTABLE_NUMBER,
                get(tags::UNPREDICTABLE_NUMBER)?,
            )?,
        };
        let card = CardData {
            aip: fixed(
                tags::APPLICATION_INTERCHANGE_PROFILE,
                get(tags::APPLICATION_INTERCHANGE_PROFILE)?,
            )?,
            atc: u16::from_be_bytes(fixed(
                tags::APPLICATION_TRANSACTION_COUNTER,
                get(tags::APPLICATION_TRANSACTION_COUNTER)?,
            )?),
            cvr: fixed(tags::ISSUER_APPLICATION_DATA, &iad[3..])?,
        };
        Ok(Self {
            terminal,
            card,
            arqc: fixed(
                tags::APPLICATION_CRYPTOGRAM,
                get(tags::APPLICATION_CRYPTOGRAM)?,
            )?,
            cryptogram_information: fixed::<1>(
                tags::CRYPTOGRAM_INFORMATION_DATA,
                get(tags::CRYPTOGRAM_INFORMATION_DATA)?,
            )?[0],
        })
    }

    /// The bytes the ARQC must cover.
    pub fn cryptogram_input(&self) -> Vec<u8> {
        cryptogram_input(&self.terminal, &self.card)
    }
}

/// Field 55 of a response: the ARPC (91, method 1: 8 bytes ‖ ARC) and the response code (8A).
pub fn response_field55(arpc: &[u8], response_code: &str) -> Vec<u8> {
    let mut issuer_authentication = arpc.to_vec();
    issuer_authentication.extend_from_slice(response_code.as_bytes());
    let mut out = Vec::with_capacity(16);
    let _ = tlv::write(
        tags::ISSUER_AUTHENTICATION_DATA,
        &issuer_authentication,
        &mut out,
    );
    let _ = tlv::write(
        tags::AUTHORISATION_RESPONSE_CODE,
        response_code.as_bytes(),
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminal() -> TerminalData {
        TerminalData {
            amount: 1250,
            other_amount: 0,
            country: 156,
            currency: 156,
            tvr: [0; 5],
            date: [0x26, 0x11, 0x25],
            transaction_type: 0,
            unpredictable_number: [0xBF, 0x45, 0x85, 0x18],
        }
    }

    #[test]
    fn the_switch_rebuilds_what_the_phone_signed() {
        let card = CardData {
            aip: [0x7C, 0x00],
            atc: 0x1C,
            cvr: [CVR_ARQC | CVR_CDCVM, 0, 0, 0],
        };
        let field55 = request_field55(&terminal(), &card, [1, 2, 3, 4, 5, 6, 7, 8]);
        let parsed = ChipRequest::parse(&field55).unwrap();
        assert_eq!(parsed.terminal, terminal());
        assert_eq!(parsed.card, card);
        assert!(parsed.card.cdcvm());
        assert_eq!(parsed.arqc, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            parsed.cryptogram_input(),
            cryptogram_input(&terminal(), &card)
        );
        let input = parsed.cryptogram_input();
        assert_eq!(input.len(), 6 + 6 + 2 + 5 + 2 + 3 + 1 + 4 + 2 + 2 + 7);
        assert_eq!(&input[..6], &[0, 0, 0, 0, 0x12, 0x50]);
    }

    #[test]
    fn malformed_chip_data_is_named() {
        let card = CardData {
            aip: [0x7C, 0x00],
            atc: 1,
            cvr: [CVR_ARQC, 0, 0, 0],
        };
        let mut field55 = Vec::new();
        let _ = tlv::write(tags::APPLICATION_CRYPTOGRAM, &[0; 8], &mut field55);
        assert!(matches!(
            ChipRequest::parse(&field55),
            Err(ChipDataError::Missing(_))
        ));
        let mut other_version = request_field55(&terminal(), &card, [0; 8]);
        // 9F26 08 …(8) 9F27 01 80 9F10 07 07 01 11: the version byte is at offset 3+8+4+3+2.
        let at = 3 + 8 + 4 + 3 + 2;
        assert_eq!(other_version[at], CRYPTOGRAM_VERSION);
        other_version[at] = 0x12;
        assert_eq!(
            ChipRequest::parse(&other_version),
            Err(ChipDataError::Version(0x12))
        );
        assert!(ChipRequest::parse(&[0x9F]).is_err());
        assert_eq!(response_field55(&[0xAA; 8], "00")[..2], [0x91, 0x0A]);
    }
}

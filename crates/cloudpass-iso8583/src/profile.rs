//! The cloudpass network profile: ISO 8583:1987 with the CUPS-style private fields.
//!
//! The wire form follows the CUPS inter-bank convention: ASCII MTI, binary bitmaps, ASCII
//! numeric and text fields with ASCII length prefixes, raw binary for PIN blocks, ICC data
//! and MACs. docs/iso8583-profile.md describes every field and what it means in the network;
//! this table is the normative version of that page.

use std::sync::LazyLock;

use crate::spec::Content::{
    Alphanumeric as AN, AlphanumericSpecial as ANS, Binary as B, Numeric as N, Track2 as Z,
};
use crate::spec::{BitmapEncoding, Encoding, FieldSpec, Profile, Sensitivity};

const fn fixed(name: &'static str, content: crate::spec::Content, length: usize) -> FieldSpec {
    FieldSpec::fixed(name, content, length)
}

const fn llvar(name: &'static str, content: crate::spec::Content, max: usize) -> FieldSpec {
    FieldSpec::variable(name, content, 2, max)
}

const fn lllvar(name: &'static str, content: crate::spec::Content, max: usize) -> FieldSpec {
    FieldSpec::variable(name, content, 3, max)
}

/// The field table of the cloudpass network.
pub const CLOUDPASS_FIELDS: &[(u8, FieldSpec)] = &[
    (
        2,
        llvar("primary account number", N, 19).sensitive(Sensitivity::CardNumber),
    ),
    (3, fixed("processing code", N, 6)),
    (4, fixed("amount, transaction", N, 12)),
    (5, fixed("amount, settlement", N, 12)),
    (6, fixed("amount, cardholder billing", N, 12)),
    (7, fixed("transmission date and time", N, 10)),
    (9, fixed("conversion rate, settlement", N, 8)),
    (10, fixed("conversion rate, cardholder billing", N, 8)),
    (11, fixed("system trace audit number", N, 6)),
    (12, fixed("time, local transaction", N, 6)),
    (13, fixed("date, local transaction", N, 4)),
    (14, fixed("date, expiration", N, 4)),
    (15, fixed("date, settlement", N, 4)),
    (16, fixed("date, conversion", N, 4)),
    (18, fixed("merchant type", N, 4)),
    (19, fixed("acquiring institution country code", N, 3)),
    (22, fixed("point of service entry mode", N, 3)),
    (23, fixed("card sequence number", N, 3)),
    (25, fixed("point of service condition code", N, 2)),
    (26, fixed("point of service PIN capture code", N, 2)),
    (
        32,
        llvar("acquiring institution identification code", N, 11),
    ),
    (
        33,
        llvar("forwarding institution identification code", N, 11),
    ),
    (
        35,
        llvar("track 2 data", Z, 37).sensitive(Sensitivity::Track),
    ),
    (
        36,
        lllvar("track 3 data", ANS, 104).sensitive(Sensitivity::Track),
    ),
    (37, fixed("retrieval reference number", AN, 12)),
    (38, fixed("authorization identification response", AN, 6)),
    (39, fixed("response code", AN, 2)),
    (41, fixed("card acceptor terminal identification", ANS, 8)),
    (42, fixed("card acceptor identification code", ANS, 15)),
    (43, fixed("card acceptor name and location", ANS, 40)),
    (44, llvar("additional response data", ANS, 25)),
    (
        45,
        llvar("track 1 data", ANS, 76).sensitive(Sensitivity::Track),
    ),
    (48, lllvar("additional data, private", ANS, 512)),
    (49, fixed("currency code, transaction", N, 3)),
    (50, fixed("currency code, settlement", N, 3)),
    (51, fixed("currency code, cardholder billing", N, 3)),
    (52, fixed("PIN data", B, 8).sensitive(Sensitivity::Secret)),
    (53, fixed("security related control information", N, 16)),
    (54, lllvar("additional amounts", ANS, 40)),
    (
        55,
        lllvar("ICC system related data", B, 255).sensitive(Sensitivity::IccData),
    ),
    (56, lllvar("payment account data (usage PR)", ANS, 512)),
    (57, lllvar("additional data, issuer", ANS, 100)),
    (59, lllvar("detail inquiry data", ANS, 600)),
    (
        60,
        lllvar("reserved private: transaction conditions", ANS, 100),
    ),
    (
        61,
        lllvar("cardholder authentication information", ANS, 200),
    ),
    (
        62,
        lllvar("switching data (working keys at sign-on)", B, 512).sensitive(Sensitivity::Secret),
    ),
    (
        63,
        lllvar("network data (usage TK: token)", ANS, 512).sensitive(Sensitivity::TokenData),
    ),
    (64, fixed("message authentication code", B, 8)),
    (70, fixed("network management information code", N, 3)),
    (90, fixed("original data elements", N, 42)),
    (95, fixed("replacement amounts", AN, 42)),
    (
        96,
        fixed("message security code", B, 8).sensitive(Sensitivity::Secret),
    ),
    (
        100,
        llvar("receiving institution identification code", N, 11),
    ),
    (102, llvar("account identification 1", ANS, 28)),
    (103, llvar("account identification 2", ANS, 28)),
    (128, fixed("message authentication code", B, 8)),
];

static CLOUDPASS: LazyLock<Profile> = LazyLock::new(|| {
    match Profile::new(
        "cloudpass network 1987",
        Encoding::Ascii,
        BitmapEncoding::Binary,
        CLOUDPASS_FIELDS,
    ) {
        Ok(profile) => profile,
        // The table is a constant checked by a unit test; an inconsistent table is a build
        // defect that must stop the process before it handles a single message.
        Err(error) => {
            eprintln!("fatal: the cloudpass ISO 8583 profile table is inconsistent: {error}");
            std::process::abort()
        }
    }
});

/// The cloudpass network profile.
pub fn cloudpass() -> &'static Profile {
    &CLOUDPASS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        Profile::new(
            "check",
            Encoding::Ascii,
            BitmapEncoding::Binary,
            CLOUDPASS_FIELDS,
        )
        .unwrap();
        assert_eq!(cloudpass().field(2).unwrap().notation(), "n..19 LLVAR");
        assert_eq!(cloudpass().field(55).unwrap().notation(), "b..255 LLLVAR");
        assert!(cloudpass().field(65).is_none());
    }
}

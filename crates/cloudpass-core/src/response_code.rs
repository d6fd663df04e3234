//! ISO 8583:1987 field 39 response codes as the cloudpass network uses them, with the CUPS
//! additions (25, 68, 99, A0). The table is the single source of the codes' meanings: the
//! switch, the simulators, the CLI and docs/iso8583-profile.md all read from it.

use std::fmt;

macro_rules! response_codes {
    ($($variant:ident = $code:literal, $meaning:literal;)*) => {
        /// A field 39 response code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ResponseCode {
            $(#[doc = $meaning] $variant,)*
        }

        impl ResponseCode {
            /// Every code the network knows, in table order.
            pub const ALL: &'static [ResponseCode] = &[$(ResponseCode::$variant,)*];

            /// The two characters that go in field 39.
            pub fn code(self) -> &'static str {
                match self { $(ResponseCode::$variant => $code,)* }
            }

            /// What the code means, in one line.
            pub fn meaning(self) -> &'static str {
                match self { $(ResponseCode::$variant => $meaning,)* }
            }

            /// The code for the two characters of field 39, if the network knows it.
            pub fn parse(code: &str) -> Option<ResponseCode> {
                match code { $($code => Some(ResponseCode::$variant),)* _ => None }
            }
        }
    };
}

response_codes! {
    Approved = "00", "approved";
    InvalidMerchant = "03", "invalid merchant";
    DoNotHonour = "05", "do not honour";
    InvalidTransaction = "12", "invalid transaction";
    InvalidAmount = "13", "invalid amount";
    InvalidCard = "14", "invalid card number (no such card or token)";
    NoSuchIssuer = "15", "no such issuer";
    OriginalNotFound = "25", "original transaction not found";
    FormatError = "30", "format error";
    FunctionNotSupported = "40", "requested function not supported";
    LostCard = "41", "lost card";
    StolenCard = "43", "stolen card";
    InsufficientFunds = "51", "insufficient funds";
    ExpiredCard = "54", "expired card";
    IncorrectPin = "55", "incorrect PIN";
    NotPermittedToCardholder = "57", "transaction not permitted to cardholder";
    NotPermittedToTerminal = "58", "transaction not permitted to terminal";
    ExceedsAmountLimit = "61", "exceeds withdrawal amount limit";
    RestrictedCard = "62", "restricted card";
    SecurityViolation = "63", "security violation";
    ExceedsFrequencyLimit = "65", "PIN required (exceeds the no-PIN or frequency limit)";
    ResponseReceivedTooLate = "68", "response received too late (issuer timeout)";
    PinTriesExceeded = "75", "allowable number of PIN tries exceeded";
    Cvn2Mismatch = "N7", "CVN2 wrong or missing (card not present)";
    IssuerInoperative = "91", "issuer or switch inoperative";
    UnableToRoute = "92", "financial institution cannot be found for routing";
    DuplicateTransmission = "94", "duplicate transmission";
    SystemMalfunction = "96", "system malfunction";
    PinFormatError = "99", "PIN format error";
    MacFailure = "A0", "MAC check failed";
}

impl ResponseCode {
    pub fn is_approved(self) -> bool {
        self == ResponseCode::Approved
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.meaning())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in ResponseCode::ALL {
            assert_eq!(code.code().len(), 2);
            assert!(seen.insert(code.code()), "duplicate {}", code.code());
            assert_eq!(ResponseCode::parse(code.code()), Some(code));
        }
        assert_eq!(ResponseCode::parse("ZZ"), None);
        assert_eq!(ResponseCode::IncorrectPin.to_string(), "55 (incorrect PIN)");
        assert!(ResponseCode::Approved.is_approved());
        assert!(!ResponseCode::DoNotHonour.is_approved());
    }
}

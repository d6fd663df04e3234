//! The switch's decisions about a token payment, as pure functions: which channel a message
//! comes through, whether the token may be used on it, and whether the cardholder was
//! verified enough for the amount (the no-PIN rules). The switch gathers the facts; these
//! functions decide and name the field 39 code of a refusal.

use crate::Money;
use crate::expiry::Expiry;
use crate::lifecycle::TokenStatus;
use crate::response_code::ResponseCode;

/// Field 22's first two digits: how the card number was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanEntry {
    Manual,
    Magstripe,
    ContactChip,
    /// Contactless qPBOC (07).
    ContactlessChip,
    /// Contactless magstripe (91).
    ContactlessMagstripe,
    /// Contactless PBOC debit/credit (98).
    ContactlessPboc,
    Other,
}

impl PanEntry {
    pub fn is_contactless(self) -> bool {
        matches!(
            self,
            PanEntry::ContactlessChip | PanEntry::ContactlessMagstripe | PanEntry::ContactlessPboc
        )
    }
}

/// Field 22 (n3): PAN entry mode and whether a PIN was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosEntryMode {
    pub pan_entry: PanEntry,
    /// Third digit 1: the PIN is in field 52.
    pub pin_entered: bool,
}

impl PosEntryMode {
    /// Parses field 22; `None` if it is not three digits.
    pub fn parse(field22: &str) -> Option<Self> {
        let bytes = field22.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let pan_entry = match &field22[..2] {
            "01" => PanEntry::Manual,
            "02" | "90" => PanEntry::Magstripe,
            "05" | "95" => PanEntry::ContactChip,
            "07" => PanEntry::ContactlessChip,
            "91" => PanEntry::ContactlessMagstripe,
            "98" => PanEntry::ContactlessPboc,
            _ => PanEntry::Other,
        };
        Some(Self {
            pan_entry,
            pin_entered: bytes[2] == b'1',
        })
    }
}

/// How a token payment reached the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentChannel {
    /// A tap at a terminal: contactless entry mode.
    Nfc,
    /// An in-app purchase: e-commerce condition code and the device's cryptogram (ECI 05).
    InApp,
    /// E-commerce without a device cryptogram (a token number typed in, say).
    EcommerceWithoutCryptogram,
    /// Anything else (contact chip, magstripe, manual at a terminal).
    Other,
}

/// Works out the channel from field 22, field 25 (condition code) and the ECI (60.2.8).
pub fn payment_channel(
    entry: PosEntryMode,
    condition_code: &str,
    eci: Option<&str>,
) -> PaymentChannel {
    let ecommerce = matches!(condition_code, "42" | "43");
    if ecommerce {
        return if eci == Some("05") {
            PaymentChannel::InApp
        } else {
            PaymentChannel::EcommerceWithoutCryptogram
        };
    }
    if entry.pan_entry.is_contactless() {
        PaymentChannel::Nfc
    } else {
        PaymentChannel::Other
    }
}

/// What the switch knows about the token at the moment of the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenFacts {
    pub status: TokenStatus,
    pub token_expiry: Expiry,
    pub device_lost: bool,
    pub domain_nfc: bool,
    pub domain_in_app: bool,
}

/// Whether the token may pay through `channel` in the given month; the refusal's code.
pub fn check_token(
    facts: &TokenFacts,
    channel: PaymentChannel,
    year: u16,
    month: u8,
) -> Result<(), ResponseCode> {
    match facts.status {
        TokenStatus::Deleted => return Err(ResponseCode::InvalidCard),
        TokenStatus::Pending | TokenStatus::Suspended => {
            return Err(ResponseCode::NotPermittedToCardholder);
        }
        TokenStatus::Active => {}
    }
    if facts.device_lost {
        return Err(ResponseCode::NotPermittedToCardholder);
    }
    if facts.token_expiry.is_expired_in(year, month) {
        return Err(ResponseCode::ExpiredCard);
    }
    let allowed = match channel {
        PaymentChannel::Nfc => facts.domain_nfc,
        PaymentChannel::InApp => facts.domain_in_app,
        // A device token is only ever presented by its device: tapped or with its cryptogram.
        PaymentChannel::EcommerceWithoutCryptogram | PaymentChannel::Other => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ResponseCode::DoNotHonour)
    }
}

/// Merchant categories where small contactless payments need no PIN (the acquirer's side of
/// the rule, configurable per acquirer).
pub const DEFAULT_NO_PIN_MCCS: &[&str] = &[
    "4111", // commuter transport
    "4121", // taxis
    "4131", // bus lines
    "5311", // department stores
    "5331", // variety stores
    "5411", // supermarkets
    "5422", // meat and frozen food
    "5441", // confectionery
    "5451", // dairy
    "5462", // bakeries
    "5499", // convenience and food stores
    "5812", // restaurants
    "5814", // fast food
    "5912", // drug stores
    "5942", // book stores
    "5994", // news dealers
    "7523", // parking
    "7832", // cinemas
];

/// The acquirer's side of the contactless no-PIN rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcquirerNoPin {
    /// The terminal supports no-PIN contactless payments.
    pub terminal_capable: bool,
    /// The merchant's category is eligible.
    pub merchant_eligible: bool,
    /// The acquirer's own amount limit.
    pub limit: Money,
}

/// How the cardholder was verified for a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// A PIN was entered; the issuer verifies it.
    OnlinePin,
    /// The device verified the cardholder (passcode or biometric): a verified cardholder.
    Cdcvm,
    /// No verification, allowed under both sides' no-PIN limits.
    NoPin,
}

/// The contactless no-PIN rule, jointly: without a PIN or CDCVM the payment passes only if the
/// terminal and merchant are eligible and the amount is within both the acquirer's and the
/// issuer's limit; otherwise the PIN is required (field 39 `65`, the soft decline).
pub fn contactless_verification(
    amount: Money,
    pin_entered: bool,
    cdcvm: bool,
    acquirer: &AcquirerNoPin,
    issuer_limit: Money,
) -> Result<Verification, ResponseCode> {
    if pin_entered {
        return Ok(Verification::OnlinePin);
    }
    if cdcvm {
        return Ok(Verification::Cdcvm);
    }
    let within = |limit: Money| {
        limit.currency() == amount.currency() && amount.minor_units() <= limit.minor_units()
    };
    if acquirer.terminal_capable
        && acquirer.merchant_eligible
        && within(acquirer.limit)
        && within(issuer_limit)
    {
        Ok(Verification::NoPin)
    } else {
        Err(ResponseCode::ExceedsFrequencyLimit)
    }
}

/// The in-app rule: the device asks for the password above the issuer's online no-PIN limit
/// (which it received in its card profile); the switch holds it to that.
pub fn in_app_verification(
    amount: Money,
    pin_entered: bool,
    cdcvm: bool,
    online_limit: Money,
) -> Result<Verification, ResponseCode> {
    if pin_entered {
        return Ok(Verification::OnlinePin);
    }
    if cdcvm {
        return Ok(Verification::Cdcvm);
    }
    if online_limit.currency() == amount.currency()
        && amount.minor_units() <= online_limit.minor_units()
    {
        Ok(Verification::NoPin)
    } else {
        Err(ResponseCode::ExceedsFrequencyLimit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Currency;

    fn cny(units: u64) -> Money {
        Money::new(units, Currency::CNY)
    }

    fn facts() -> TokenFacts {
        TokenFacts {
            status: TokenStatus::Active,
            token_expiry: "2911".parse().unwrap(),
            device_lost: false,
            domain_nfc: true,
            domain_in_app: true,
        }
    }

    #[test]
    fn entry_modes_and_channels() {
        let tap = PosEntryMode::parse("072").unwrap();
        assert_eq!(
            (tap.pan_entry, tap.pin_entered),
            (PanEntry::ContactlessChip, false)
        );
        assert!(PosEntryMode::parse("981").unwrap().pin_entered);
        assert_eq!(PosEntryMode::parse("7x2"), None);
        assert_eq!(payment_channel(tap, "00", None), PaymentChannel::Nfc);
        assert_eq!(
            payment_channel(PosEntryMode::parse("912").unwrap(), "00", None),
            PaymentChannel::Nfc
        );
        let manual = PosEntryMode::parse("012").unwrap();
        assert_eq!(
            payment_channel(manual, "42", Some("05")),
            PaymentChannel::InApp
        );
        assert_eq!(
            payment_channel(manual, "42", Some("07")),
            PaymentChannel::EcommerceWithoutCryptogram
        );
        assert_eq!(
            payment_channel(tap, "42", None),
            PaymentChannel::EcommerceWithoutCryptogram
        );
        assert_eq!(
            payment_channel(PosEntryMode::parse("051").unwrap(), "00", None),
            PaymentChannel::Other
        );
    }

    #[test]
    fn token_checks_name_their_codes() {
        assert_eq!(check_token(&facts(), PaymentChannel::Nfc, 2026, 11), Ok(()));
        assert_eq!(
            check_token(
                &TokenFacts {
                    status: TokenStatus::Deleted,
                    ..facts()
                },
                PaymentChannel::Nfc,
                2026,
                11
            ),
            Err(ResponseCode::InvalidCard)
        );
        assert_eq!(
            check_token(
                &TokenFacts {
                    status: TokenStatus::Suspended,
                    ..facts()
                },
                PaymentChannel::Nfc,
                2026,
                11
            ),
            Err(ResponseCode::NotPermittedToCardholder)
        );
        assert_eq!(
            check_token(
                &TokenFacts {
                    status: TokenStatus::Pending,
                    ..facts()
                },
                PaymentChannel::Nfc,
                2026,
                11
            ),
            Err(ResponseCode::NotPermittedToCardholder)
        );
        assert_eq!(
            check_token(
                &TokenFacts {
                    device_lost: true,
                    ..facts()
                },
                PaymentChannel::Nfc,
                2026,
                11
            ),
            Err(ResponseCode::NotPermittedToCardholder)
        );
        assert_eq!(
            check_token(&facts(), PaymentChannel::Nfc, 2029, 12),
            Err(ResponseCode::ExpiredCard)
        );
        // Domains: an NFC-only token is refused in-app and the other way round; no token pays
        // without its device.
        let nfc_only = TokenFacts {
            domain_in_app: false,
            ..facts()
        };
        assert_eq!(
            check_token(&nfc_only, PaymentChannel::InApp, 2026, 11),
            Err(ResponseCode::DoNotHonour)
        );
        assert_eq!(
            check_token(&nfc_only, PaymentChannel::Nfc, 2026, 11),
            Ok(())
        );
        let in_app_only = TokenFacts {
            domain_nfc: false,
            ..facts()
        };
        assert_eq!(
            check_token(&in_app_only, PaymentChannel::Nfc, 2026, 11),
            Err(ResponseCode::DoNotHonour)
        );
        assert_eq!(
            check_token(
                &facts(),
                PaymentChannel::EcommerceWithoutCryptogram,
                2026,
                11
            ),
            Err(ResponseCode::DoNotHonour)
        );
        assert_eq!(
            check_token(&facts(), PaymentChannel::Other, 2026, 11),
            Err(ResponseCode::DoNotHonour)
        );
    }

    #[test]
    fn no_pin_needs_both_sides() {
        let acquirer = AcquirerNoPin {
            terminal_capable: true,
            merchant_eligible: true,
            limit: cny(100_000),
        };
        let issuer = cny(50_000);
        assert_eq!(
            contactless_verification(cny(50_000), false, false, &acquirer, issuer),
            Ok(Verification::NoPin)
        );
        assert_eq!(
            contactless_verification(cny(50_001), false, false, &acquirer, issuer),
            Err(ResponseCode::ExceedsFrequencyLimit)
        );
        assert_eq!(
            contactless_verification(
                cny(100),
                false,
                false,
                &AcquirerNoPin {
                    limit: cny(99),
                    ..acquirer
                },
                issuer
            ),
            Err(ResponseCode::ExceedsFrequencyLimit)
        );
        assert_eq!(
            contactless_verification(
                cny(100),
                false,
                false,
                &AcquirerNoPin {
                    terminal_capable: false,
                    ..acquirer
                },
                issuer
            ),
            Err(ResponseCode::ExceedsFrequencyLimit)
        );
        assert_eq!(
            contactless_verification(
                cny(100),
                false,
                false,
                &AcquirerNoPin {
                    merchant_eligible: false,
                    ..acquirer
                },
                issuer
            ),
            Err(ResponseCode::ExceedsFrequencyLimit)
        );
        // A PIN or the device's own verification lifts the limit.
        assert_eq!(
            contactless_verification(cny(9_000_000), true, false, &acquirer, issuer),
            Ok(Verification::OnlinePin)
        );
        assert_eq!(
            contactless_verification(cny(9_000_000), false, true, &acquirer, issuer),
            Ok(Verification::Cdcvm)
        );
        // Limits in another currency never allow a no-PIN payment.
        let usd = Money::new(100, Currency::from_numeric(840).unwrap());
        assert_eq!(
            contactless_verification(usd, false, false, &acquirer, issuer),
            Err(ResponseCode::ExceedsFrequencyLimit)
        );
    }

    #[test]
    fn in_app_password_above_the_online_limit() {
        assert_eq!(
            in_app_verification(cny(50_000), false, false, cny(50_000)),
            Ok(Verification::NoPin)
        );
        assert_eq!(
            in_app_verification(cny(50_001), false, false, cny(50_000)),
            Err(ResponseCode::ExceedsFrequencyLimit)
        );
        assert_eq!(
            in_app_verification(cny(50_001), true, false, cny(50_000)),
            Ok(Verification::OnlinePin)
        );
        assert_eq!(
            in_app_verification(cny(50_001), false, true, cny(50_000)),
            Ok(Verification::Cdcvm)
        );
    }
}

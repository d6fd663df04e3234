//! Amounts of money: integer minor units and an ISO 4217 currency. No floats anywhere.
//!
//! A [`Money`] is never negative; the direction of a movement belongs to the ledger entry
//! that carries it, not to the amount. All arithmetic is checked and refuses to mix
//! currencies.

use std::fmt;

/// An ISO 4217 currency, known by its numeric code, with its number of minor-unit digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    numeric: u16,
    alpha: &'static str,
    exponent: u8,
}

/// The currencies the network settles in. A currency outside this table is refused at the
/// edge rather than guessed at (its exponent decides what "100" means).
const CURRENCIES: &[Currency] = &[
    Currency {
        numeric: 156,
        alpha: "CNY",
        exponent: 2,
    },
    Currency {
        numeric: 344,
        alpha: "HKD",
        exponent: 2,
    },
    Currency {
        numeric: 446,
        alpha: "MOP",
        exponent: 2,
    },
    Currency {
        numeric: 840,
        alpha: "USD",
        exponent: 2,
    },
    Currency {
        numeric: 978,
        alpha: "EUR",
        exponent: 2,
    },
    Currency {
        numeric: 826,
        alpha: "GBP",
        exponent: 2,
    },
    Currency {
        numeric: 702,
        alpha: "SGD",
        exponent: 2,
    },
    Currency {
        numeric: 124,
        alpha: "CAD",
        exponent: 2,
    },
    Currency {
        numeric: 392,
        alpha: "JPY",
        exponent: 0,
    },
    Currency {
        numeric: 410,
        alpha: "KRW",
        exponent: 0,
    },
    Currency {
        numeric: 48,
        alpha: "BHD",
        exponent: 3,
    },
    Currency {
        numeric: 414,
        alpha: "KWD",
        exponent: 3,
    },
];

impl Currency {
    /// Chinese yuan, the network's home currency.
    pub const CNY: Currency = Currency {
        numeric: 156,
        alpha: "CNY",
        exponent: 2,
    };

    /// Looks a currency up by its ISO 4217 numeric code.
    pub fn from_numeric(numeric: u16) -> Result<Self, MoneyError> {
        CURRENCIES
            .iter()
            .copied()
            .find(|c| c.numeric == numeric)
            .ok_or(MoneyError::UnknownCurrency { numeric })
    }

    /// Parses a 3-digit numeric code as carried in ISO 8583 field 49 or UPACP `currencyCode`.
    pub fn parse_numeric(text: &str) -> Result<Self, MoneyError> {
        if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::BadCurrencyCode);
        }
        let numeric = text
            .parse::<u16>()
            .map_err(|_| MoneyError::BadCurrencyCode)?;
        Self::from_numeric(numeric)
    }

    pub fn numeric(self) -> u16 {
        self.numeric
    }

    /// The three-digit numeric code, zero-padded, as it goes on the wire.
    pub fn numeric_code(self) -> String {
        format!("{:03}", self.numeric)
    }

    pub fn alpha(self) -> &'static str {
        self.alpha
    }

    /// Number of digits after the decimal point.
    pub fn exponent(self) -> u8 {
        self.exponent
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency {numeric:03} is not supported")]
    UnknownCurrency { numeric: u16 },
    #[error("currency code must be three digits")]
    BadCurrencyCode,
    #[error("amounts in {left} and {right} cannot be combined")]
    CurrencyMismatch {
        left: &'static str,
        right: &'static str,
    },
    #[error("amount overflows")]
    Overflow,
    #[error("amount would become negative")]
    Underflow,
    #[error("amount is not a decimal number with at most {exponent} decimal places")]
    BadDecimal { exponent: u8 },
    #[error("amount field must be 12 digits")]
    BadAmountField,
}

/// A non-negative amount in a currency's minor units (fen for CNY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Money {
    minor_units: u64,
    currency: Currency,
}

/// The largest amount ISO 8583 field 4 (n12) can carry.
pub const MAX_WIRE_AMOUNT: u64 = 999_999_999_999;

impl Money {
    pub const fn new(minor_units: u64, currency: Currency) -> Self {
        Self {
            minor_units,
            currency,
        }
    }

    pub const fn zero(currency: Currency) -> Self {
        Self {
            minor_units: 0,
            currency,
        }
    }

    pub fn minor_units(self) -> u64 {
        self.minor_units
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    pub fn is_zero(self) -> bool {
        self.minor_units == 0
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency.alpha,
                right: other.currency.alpha,
            })
        }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor_units = self
            .minor_units
            .checked_add(other.minor_units)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            minor_units,
            ..self
        })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor_units = self
            .minor_units
            .checked_sub(other.minor_units)
            .ok_or(MoneyError::Underflow)?;
        Ok(Money {
            minor_units,
            ..self
        })
    }

    /// Parses a decimal amount in major units ("12.50", "12", "0.05") exactly.
    pub fn parse_decimal(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let bad = MoneyError::BadDecimal {
            exponent: currency.exponent,
        };
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (text, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(bad);
        }
        if fraction.len() > usize::from(currency.exponent)
            || (text.contains('.') && fraction.is_empty())
        {
            return Err(bad);
        }
        let scale = 10u64.pow(u32::from(currency.exponent));
        let whole_units: u64 = whole.parse().map_err(|_| MoneyError::Overflow)?;
        let mut fraction_units: u64 = 0;
        for position in 0..usize::from(currency.exponent) {
            let digit = fraction
                .as_bytes()
                .get(position)
                .map_or(0, |b| u64::from(b - b'0'));
            fraction_units = fraction_units * 10 + digit;
        }
        let minor_units = whole_units
            .checked_mul(scale)
            .and_then(|units| units.checked_add(fraction_units))
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            minor_units,
            currency,
        })
    }

    /// Parses ISO 8583 field 4 (n12, minor units).
    pub fn from_wire(field4: &str, currency: Currency) -> Result<Money, MoneyError> {
        if field4.len() != 12 || !field4.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::BadAmountField);
        }
        let minor_units = field4.parse().map_err(|_| MoneyError::BadAmountField)?;
        Ok(Money {
            minor_units,
            currency,
        })
    }

    /// ISO 8583 field 4: 12 digits of minor units.
    pub fn to_wire(self) -> Result<String, MoneyError> {
        if self.minor_units > MAX_WIRE_AMOUNT {
            return Err(MoneyError::Overflow);
        }
        Ok(format!("{:012}", self.minor_units))
    }

    /// The amount in major units with exactly `exponent` decimals ("12.50").
    pub fn to_decimal_string(self) -> String {
        let exponent = u32::from(self.currency.exponent);
        if exponent == 0 {
            return self.minor_units.to_string();
        }
        let scale = 10u64.pow(exponent);
        format!(
            "{}.{:0width$}",
            self.minor_units / scale,
            self.minor_units % scale,
            width = usize::from(self.currency.exponent)
        )
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency.alpha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cny(units: u64) -> Money {
        Money::new(units, Currency::CNY)
    }

    #[test]
    fn parses_decimal_amounts_exactly() {
        assert_eq!(Money::parse_decimal("12.50", Currency::CNY), Ok(cny(1250)));
        assert_eq!(Money::parse_decimal("12.5", Currency::CNY), Ok(cny(1250)));
        assert_eq!(Money::parse_decimal("12", Currency::CNY), Ok(cny(1200)));
        assert_eq!(Money::parse_decimal("0.01", Currency::CNY), Ok(cny(1)));
        let jpy = Currency::from_numeric(392).unwrap();
        assert_eq!(Money::parse_decimal("500", jpy), Ok(Money::new(500, jpy)));
        for bad in ["", "12.", ".5", "1.234", "-1", "1,00", "1e3", "12.5x"] {
            assert!(Money::parse_decimal(bad, Currency::CNY).is_err(), "{bad}");
        }
        assert!(Money::parse_decimal("1.5", jpy).is_err());
        assert_eq!(
            Money::parse_decimal("999999999999999999999", Currency::CNY),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(cny(100).checked_add(cny(50)), Ok(cny(150)));
        assert_eq!(cny(100).checked_sub(cny(150)), Err(MoneyError::Underflow));
        assert_eq!(cny(u64::MAX).checked_add(cny(1)), Err(MoneyError::Overflow));
        let usd = Currency::from_numeric(840).unwrap();
        assert_eq!(
            cny(1).checked_add(Money::new(1, usd)),
            Err(MoneyError::CurrencyMismatch {
                left: "CNY",
                right: "USD"
            })
        );
    }

    #[test]
    fn wire_format_is_twelve_digits() {
        assert_eq!(cny(1250).to_wire().unwrap(), "000000001250");
        assert_eq!(
            Money::from_wire("000000001250", Currency::CNY),
            Ok(cny(1250))
        );
        assert!(Money::from_wire("1250", Currency::CNY).is_err());
        assert!(Money::from_wire("00000000125a", Currency::CNY).is_err());
        assert_eq!(
            cny(MAX_WIRE_AMOUNT + 1).to_wire(),
            Err(MoneyError::Overflow)
        );
        assert_eq!(cny(1250).to_string(), "12.50 CNY");
        assert_eq!(Currency::parse_numeric("156"), Ok(Currency::CNY));
        assert_eq!(
            Currency::parse_numeric("999"),
            Err(MoneyError::UnknownCurrency { numeric: 999 })
        );
        assert_eq!(Currency::CNY.numeric_code(), "156");
        assert_eq!(Currency::from_numeric(48).unwrap().numeric_code(), "048");
    }

    proptest! {
        #[test]
        fn decimal_round_trip(units in 0u64..=MAX_WIRE_AMOUNT) {
            let money = cny(units);
            prop_assert_eq!(Money::parse_decimal(&money.to_decimal_string(), Currency::CNY), Ok(money));
            prop_assert_eq!(Money::from_wire(&money.to_wire().unwrap(), Currency::CNY), Ok(money));
        }
    }
}

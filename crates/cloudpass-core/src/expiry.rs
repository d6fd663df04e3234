//! Card and token expiry dates (YYMM, as in ISO 8583 field 14 and EMV tag 5F24's first
//! four digits). A card is valid through the last day of its expiry month.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExpiryError {
    #[error("expiry must be four digits, YYMM")]
    Format,
    #[error("expiry month must be 01 to 12")]
    Month,
}

/// A year and month in this century (20YY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Expiry {
    /// Two-digit year: 26 means 2026. Ordered before the month so `Ord` is chronological.
    year: u8,
    month: u8,
}

impl Expiry {
    pub fn new(year: u8, month: u8) -> Result<Self, ExpiryError> {
        if year > 99 {
            return Err(ExpiryError::Format);
        }
        if !(1..=12).contains(&month) {
            return Err(ExpiryError::Month);
        }
        Ok(Self { year, month })
    }

    pub fn year(self) -> u8 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    /// Whether a card with this expiry is expired in the given calendar month
    /// (`full_year` like 2026). Valid through the end of the expiry month.
    pub fn is_expired_in(self, full_year: u16, month: u8) -> bool {
        let this = (2000 + u16::from(self.year), self.month);
        (full_year, month) > this
    }

    /// The same month `years` years later (a reissued card's or a token's new expiry).
    pub fn plus_years(self, years: u8) -> Result<Self, ExpiryError> {
        Self::new(
            self.year.checked_add(years).ok_or(ExpiryError::Format)?,
            self.month,
        )
    }

    /// YYMM, as on the wire.
    pub fn to_wire(self) -> String {
        format!("{:02}{:02}", self.year, self.month)
    }
}

impl FromStr for Expiry {
    type Err = ExpiryError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ExpiryError::Format);
        }
        let year = text[..2].parse().map_err(|_| ExpiryError::Format)?;
        let month = text[2..].parse().map_err(|_| ExpiryError::Format)?;
        Self::new(year, month)
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_yymm() {
        let expiry: Expiry = "2512".parse().unwrap();
        assert_eq!((expiry.year(), expiry.month()), (25, 12));
        assert_eq!(expiry.to_wire(), "2512");
        assert_eq!("2513".parse::<Expiry>(), Err(ExpiryError::Month));
        assert_eq!("2500".parse::<Expiry>(), Err(ExpiryError::Month));
        assert_eq!("251".parse::<Expiry>(), Err(ExpiryError::Format));
        assert_eq!("25a1".parse::<Expiry>(), Err(ExpiryError::Format));
    }

    #[test]
    fn valid_through_the_end_of_the_month() {
        let expiry: Expiry = "2611".parse().unwrap();
        assert!(!expiry.is_expired_in(2026, 11));
        assert!(expiry.is_expired_in(2026, 12));
        assert!(expiry.is_expired_in(2027, 1));
        assert!(!expiry.is_expired_in(2025, 12));
        assert_eq!(expiry.plus_years(3).unwrap().to_wire(), "2911");
        assert!("2512".parse::<Expiry>().unwrap() < expiry);
    }
}

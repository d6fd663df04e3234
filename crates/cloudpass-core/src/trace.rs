//! Identifiers that follow a transaction through the network: the STAN (field 11) and the
//! retrieval reference number (field 37).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("STAN must be 6 digits")]
    Stan,
    #[error("retrieval reference number must be 12 letters or digits")]
    Rrn,
}

/// System trace audit number: 6 digits chosen by the message's originator. With the
/// transmission time (field 7) and the MTI it identifies a terminal's transaction within a
/// day; it must not change in transit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stan(u32);

impl Stan {
    pub const MAX: u32 = 999_999;

    pub fn new(value: u32) -> Result<Self, TraceError> {
        if value > Self::MAX {
            Err(TraceError::Stan)
        } else {
            Ok(Self(value))
        }
    }

    /// The STAN a running counter stands for: 1 to 999,999, wrapping (0 is never used).
    pub fn from_counter(counter: u32) -> Self {
        Self(counter % Self::MAX + 1)
    }

    pub fn value(self) -> u32 {
        self.0
    }

    /// The following STAN: 999999 wraps to 000001 (000000 is never handed out).
    pub fn next(self) -> Self {
        if self.0 >= Self::MAX {
            Self(1)
        } else {
            Self(self.0 + 1)
        }
    }
}

impl FromStr for Stan {
    type Err = TraceError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TraceError::Stan);
        }
        text.parse().map(Self).map_err(|_| TraceError::Stan)
    }
}

impl fmt::Display for Stan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

/// Retrieval reference number: 12 alphanumeric characters, assigned by the acquirer and
/// echoed by every party; the handle for later queries and disputes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rrn([u8; 12]);

impl Rrn {
    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl FromStr for Rrn {
    type Err = TraceError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; 12] = text.as_bytes().try_into().map_err(|_| TraceError::Rrn)?;
        if !bytes.iter().all(u8::is_ascii_alphanumeric) {
            return Err(TraceError::Rrn);
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for Rrn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stan_parses_formats_and_wraps() {
        let stan: Stan = "000123".parse().unwrap();
        assert_eq!(stan.value(), 123);
        assert_eq!(stan.to_string(), "000123");
        assert_eq!(Stan::new(999_999).unwrap().next(), Stan::new(1).unwrap());
        for bad in ["12345", "1234567", "12345a", "-12345"] {
            assert_eq!(bad.parse::<Stan>(), Err(TraceError::Stan), "{bad}");
        }
        assert_eq!(Stan::new(1_000_000), Err(TraceError::Stan));
    }

    #[test]
    fn rrn_is_twelve_alphanumerics() {
        let rrn: Rrn = "532901000123".parse().unwrap();
        assert_eq!(rrn.to_string(), "532901000123");
        assert!("ABC123def456".parse::<Rrn>().is_ok());
        for bad in [
            "53290100012",
            "5329010001234",
            "53290100012 ",
            "53290100012-",
        ] {
            assert_eq!(bad.parse::<Rrn>(), Err(TraceError::Rrn), "{bad}");
        }
    }
}

//! The plaintext of a sealed card profile: what a device finds when it opens the envelope
//! the token service sent it. The HSM writes it, so the keys in it never exist in clear
//! outside the HSM and the device.
//!
//! ```text
//! "CPP1" | profile length (u32, big-endian) | profile (JSON from the token service)
//!        | 0x01 | MK-AC (16 bytes)                                 device-unique key (SE)
//!        | 0x02 | first ATC (u16) | count (u16) | count × 16 bytes  limited-use keys (HCE)
//! ```
//!
//! A limited-use key is the EMV common session key for one ATC, so the switch verifies an
//! HCE cryptogram exactly like an SE one, and additionally checks the ATC was issued.

use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"CPP1";

/// Most limited-use keys one replenishment may carry.
pub const MAX_LIMITED_USE_KEYS: u16 = 100;

/// Which keys a device receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDelivery {
    /// The card's ICC master key, kept in the secure element for the token's life.
    DeviceUnique,
    /// Session keys for ATCs `first_atc .. first_atc + count`.
    LimitedUse { first_atc: u16, count: u16 },
}

/// Keys as the device holds them.
#[derive(Debug, PartialEq, Eq)]
pub enum DeviceKeys {
    DeviceUnique {
        master_key: Zeroizing<[u8; 16]>,
    },
    LimitedUse {
        first_atc: u16,
        keys: Vec<Zeroizing<[u8; 16]>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the card profile is malformed")]
pub struct CardProfileError;

pub(crate) fn write(
    profile: &[u8],
    keys: &DeviceKeys,
) -> Result<Zeroizing<Vec<u8>>, CardProfileError> {
    let length = u32::try_from(profile.len()).map_err(|_| CardProfileError)?;
    let mut out = Zeroizing::new(Vec::with_capacity(profile.len() + 64));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(profile);
    match keys {
        DeviceKeys::DeviceUnique { master_key } => {
            out.push(1);
            out.extend_from_slice(&master_key[..]);
        }
        DeviceKeys::LimitedUse { first_atc, keys } => {
            let count = u16::try_from(keys.len()).map_err(|_| CardProfileError)?;
            out.push(2);
            out.extend_from_slice(&first_atc.to_be_bytes());
            out.extend_from_slice(&count.to_be_bytes());
            for key in keys {
                out.extend_from_slice(&key[..]);
            }
        }
    }
    Ok(out)
}

/// Splits an opened card profile into the token service's JSON and the keys.
pub fn parse(plaintext: &[u8]) -> Result<(Vec<u8>, DeviceKeys), CardProfileError> {
    let rest = plaintext.strip_prefix(MAGIC).ok_or(CardProfileError)?;
    let (length, rest) = rest.split_first_chunk::<4>().ok_or(CardProfileError)?;
    let length = usize::try_from(u32::from_be_bytes(*length)).map_err(|_| CardProfileError)?;
    let profile = rest.get(..length).ok_or(CardProfileError)?.to_vec();
    let rest = &rest[length..];
    let (&kind, rest) = rest.split_first().ok_or(CardProfileError)?;
    let key16 = |bytes: &[u8]| -> Result<Zeroizing<[u8; 16]>, CardProfileError> {
        Ok(Zeroizing::new(
            bytes.try_into().map_err(|_| CardProfileError)?,
        ))
    };
    let keys = match kind {
        1 => DeviceKeys::DeviceUnique {
            master_key: key16(rest)?,
        },
        2 => {
            let (first, rest) = rest.split_first_chunk::<2>().ok_or(CardProfileError)?;
            let (count, rest) = rest.split_first_chunk::<2>().ok_or(CardProfileError)?;
            let count = usize::from(u16::from_be_bytes(*count));
            if rest.len() != count * 16 {
                return Err(CardProfileError);
            }
            DeviceKeys::LimitedUse {
                first_atc: u16::from_be_bytes(*first),
                keys: rest.chunks_exact(16).map(key16).collect::<Result<_, _>>()?,
            }
        }
        _ => return Err(CardProfileError),
    };
    Ok((profile, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed_input() {
        let unique = DeviceKeys::DeviceUnique {
            master_key: Zeroizing::new([7; 16]),
        };
        let bytes = write(b"{\"token\":1}", &unique).unwrap();
        assert_eq!(
            parse(&bytes).unwrap(),
            (
                b"{\"token\":1}".to_vec(),
                DeviceKeys::DeviceUnique {
                    master_key: Zeroizing::new([7; 16])
                }
            )
        );
        let limited = DeviceKeys::LimitedUse {
            first_atc: 5,
            keys: vec![Zeroizing::new([1; 16]), Zeroizing::new([2; 16])],
        };
        let bytes = write(b"{}", &limited).unwrap();
        assert_eq!(parse(&bytes).unwrap().1, limited);
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut]).is_err(), "{cut}");
        }
    }
}

//! Wallet passwords: the policy a new one must meet, and Argon2id (memory-hard) hashing to a
//! PHC string. The salt comes from the injected random source; the parameters are OWASP's
//! (19 MiB, 2 passes, 1 lane) and travel inside the PHC string, so a later change of them
//! still verifies old hashes. A password is never logged, stored or echoed.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use cloudpass_core::Random;

/// Memory in KiB, passes and lanes of a new hash.
const MEMORY_KIB: u32 = 19_456;
const PASSES: u32 = 2;
const LANES: u32 = 1;
const SALT_BYTES: usize = 16;
pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password is 8 to 64 characters")]
    Length,
    #[error("a password needs at least one letter and one digit")]
    Weak,
    #[error("the password could not be hashed")]
    Hashing,
}

/// Whether `password` may be a new account's.
pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    let length = password.chars().count();
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        return Err(PasswordError::Length);
    }
    let letter = password.chars().any(char::is_alphabetic);
    let digit = password.chars().any(|c| c.is_ascii_digit());
    if !(letter && digit) {
        return Err(PasswordError::Weak);
    }
    Ok(())
}

fn hasher() -> Result<Argon2<'static>, PasswordError> {
    let params =
        Params::new(MEMORY_KIB, PASSES, LANES, None).map_err(|_| PasswordError::Hashing)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password`.
pub fn hash(password: &str, random: &dyn Random) -> Result<String, PasswordError> {
    let mut salt = [0u8; SALT_BYTES];
    random.fill(&mut salt);
    let hash = hasher()?
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|_| PasswordError::Hashing)?;
    Ok(hash.to_string())
}

/// Whether `password` is the one `phc` was made from (in constant time; a malformed `phc`
/// matches nothing).
pub fn verify(password: &str, phc: &str) -> bool {
    match hasher() {
        Ok(argon2) => argon2.verify_password(password.as_bytes(), phc).is_ok(),
        Err(_) => false,
    }
}

/// A hash of no one's password, verified against when a phone number has no account, so a
/// login takes as long whether or not the account exists.
pub fn decoy(random: &dyn Random) -> String {
    hash("no account has this password 0", random).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudpass_core::random::SeededRandom;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let random = SeededRandom::new(1);
        let phc = hash("correct horse 1", &random).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify("correct horse 1", &phc));
        assert!(!verify("correct horse 2", &phc));
        assert!(!verify("correct horse 1", "not a phc string"));
        // A fresh salt each time: two hashes of one password differ.
        assert_ne!(phc, hash("correct horse 1", &random).unwrap());
    }

    #[test]
    fn the_policy_asks_for_length_a_letter_and_a_digit() {
        assert_eq!(check_policy("abc123"), Err(PasswordError::Length));
        assert_eq!(check_policy(&"a1".repeat(33)), Err(PasswordError::Length));
        assert_eq!(check_policy("12345678"), Err(PasswordError::Weak));
        assert_eq!(check_policy("abcdefgh"), Err(PasswordError::Weak));
        assert_eq!(check_policy("云闪付pass12"), Ok(()));
        assert_eq!(check_policy("abcd1234"), Ok(()));
    }
}

//! Transaction numbers and query ids: 21 digits, drawn from the injected random source so
//! nobody can guess one (about 69 bits), never starting with 0.

use cloudpass_core::Random;

/// A fresh 21-digit number.
pub(crate) fn draw(random: &dyn Random) -> String {
    let first = 1 + random.next_u64() % 9;
    let rest = random.next_u64() % 1_000_000_000_000_000_000;
    let tail = random.next_u64() % 100;
    format!("{first}{rest:018}{tail:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudpass_core::random::SeededRandom;

    #[test]
    fn numbers_are_21_digits_and_differ() {
        let random = SeededRandom::new(3);
        let a = draw(&random);
        let b = draw(&random);
        assert_eq!(a.len(), 21);
        assert!(a.bytes().all(|c| c.is_ascii_digit()) && !a.starts_with('0'));
        assert_ne!(a, b);
    }
}

//! Operators' sessions: the SHA-256 of each session cookie and when it ends, in memory (a
//! restart signs every operator out).

use std::collections::HashMap;
use std::sync::Mutex;

use cloudpass_core::{Random, hex};
use sha2::{Digest, Sha256};

/// How long a session lasts.
pub const SESSION_MILLIS: i64 = 8 * 60 * 60 * 1_000;
/// Sessions kept at once; past it, the ended ones go, then the oldest.
const MAX_SESSIONS: usize = 1_000;

#[derive(Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], i64>>);

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// A new session's cookie value, valid from `now`.
    pub fn open(&self, random: &dyn Random, now: i64) -> String {
        let mut bytes = [0u8; 32];
        random.fill(&mut bytes);
        let token = hex::encode(&bytes);
        let mut table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= MAX_SESSIONS {
            table.retain(|_, ends| *ends > now);
        }
        if table.len() >= MAX_SESSIONS
            && let Some(oldest) = table.iter().min_by_key(|(_, ends)| **ends).map(|(k, _)| *k)
        {
            table.remove(&oldest);
        }
        table.insert(digest(&token), now + SESSION_MILLIS);
        token
    }

    /// Whether `token` is a session that has not ended at `now`.
    pub fn valid(&self, token: &str, now: i64) -> bool {
        let table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        table.get(&digest(token)).is_some_and(|ends| *ends > now)
    }

    pub fn close(&self, token: &str) {
        let mut table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        table.remove(&digest(token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting(std::sync::atomic::AtomicU8);

    impl Random for Counting {
        fn fill(&self, buffer: &mut [u8]) {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            buffer.fill(n);
        }
    }

    #[test]
    fn a_session_lasts_eight_hours_and_ends_when_closed() {
        let sessions = Sessions::default();
        let random = Counting(std::sync::atomic::AtomicU8::new(1));
        let token = sessions.open(&random, 1_000);
        assert!(sessions.valid(&token, 1_000 + SESSION_MILLIS - 1));
        assert!(!sessions.valid(&token, 1_000 + SESSION_MILLIS));
        assert!(!sessions.valid("not a session", 1_000));
        let other = sessions.open(&random, 1_000);
        sessions.close(&token);
        assert!(!sessions.valid(&token, 2_000));
        assert!(sessions.valid(&other, 2_000));
    }
}

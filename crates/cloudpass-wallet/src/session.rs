//! Signed-in browsers and forms that only our own pages can post.
//!
//! A session is a random 256-bit token in an `HttpOnly`, `Secure`, `SameSite=Strict` cookie
//! for the whole origin (the phone simulator at `/phone` runs the same app); the store keeps
//! only its SHA-256, so a copy of the table cannot be replayed. Every form carries a CSRF token that must equal the `cp_wallet_csrf` cookie
//! (double submit, compared in constant time): another site can make a browser post, but it
//! can neither read nor set our cookie. Browsers keep `Secure` cookies on `http://127.0.0.1`
//! and `localhost` (trustworthy origins), so the sandbox works without TLS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloudpass_core::Random;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub const SESSION_COOKIE: &str = "cp_wallet";
pub const CSRF_COOKIE: &str = "cp_wallet_csrf";
pub const LANGUAGE_COOKIE: &str = "cp_wallet_lang";
/// "The app is installed on this phone" (`1`), a per-browser setting made on the phone
/// simulator: the payment SDK runs the app's flows when it is set and WAP pay when not.
pub const APP_INSTALLED_COOKIE: &str = "cp_app_installed";
const TOKEN_BYTES: usize = 32;

/// A fresh random token, base64url (43 characters).
pub fn new_token(random: &dyn Random) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    random.fill(bytes.as_mut());
    Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()))
}

/// What the store keeps of a session token: lowercase hex SHA-256.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of cookie `name` in a `Cookie` header, if present and of a sane size.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    cloudpass_http::pages::cookie_in(header, name)
}

/// A `Set-Cookie` value for one of the wallet's cookies; `max_age_seconds` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age_seconds: i64) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age_seconds}; HttpOnly; Secure; SameSite=Strict")
}

/// Whether a form's CSRF field matches the browser's CSRF cookie.
pub fn csrf_matches(cookie_value: Option<&str>, form_value: Option<&str>) -> bool {
    match (cookie_value, form_value) {
        (Some(cookie), Some(form)) if !cookie.is_empty() => {
            bool::from(cookie.as_bytes().ct_eq(form.as_bytes()))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudpass_core::random::SeededRandom;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let random = SeededRandom::new(3);
        let first = new_token(&random);
        let second = new_token(&random);
        assert_eq!(first.len(), 43);
        assert_ne!(*first, *second);
        let hash = token_hash(&first);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(first.as_str()));
    }

    #[test]
    fn cookies_are_read_by_name_and_bounded() {
        let header = Some("a=1; cp_wallet=abc ; cp_wallet_csrf=xyz");
        assert_eq!(cookie(header, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(header, CSRF_COOKIE), Some("xyz"));
        assert_eq!(cookie(header, "missing"), None);
        assert_eq!(cookie(None, SESSION_COOKIE), None);
        let long = format!("cp_wallet={}", "a".repeat(200));
        assert_eq!(cookie(Some(&long), SESSION_COOKIE), None);
        let set = set_cookie(SESSION_COOKIE, "abc", 60);
        assert!(
            set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Strict")
        );
    }

    #[test]
    fn a_form_posts_only_with_the_cookie_s_token() {
        assert!(csrf_matches(Some("t0k3n"), Some("t0k3n")));
        assert!(!csrf_matches(Some("t0k3n"), Some("t0k3m")));
        assert!(!csrf_matches(Some("t0k3n"), None));
        assert!(!csrf_matches(None, Some("t0k3n")));
        assert!(!csrf_matches(Some(""), Some("")));
    }
}

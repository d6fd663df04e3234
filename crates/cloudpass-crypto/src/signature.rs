//! HMAC-SHA-256 request signatures, for webhooks the token service sends and for its calls to
//! issuers: `X-Cloudpass-Signature: v1=<hex HMAC(secret, timestamp "." body)>` with
//! `X-Cloudpass-Timestamp: <unix seconds>`. The timestamp is signed so a captured request
//! cannot be replayed later than the receiver's tolerance.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const SIGNATURE_HEADER: &str = "x-cloudpass-signature";
pub const TIMESTAMP_HEADER: &str = "x-cloudpass-timestamp";

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Option<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(secret).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac.finalize().into_bytes().into())
}

/// The signature header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    mac(secret, timestamp, body)
        .map(|m| format!("v1={}", cloudpass_core::hex::encode(&m)))
        .unwrap_or_default()
}

/// Whether `header` signs `body` at `timestamp` and the timestamp is within `tolerance_seconds`
/// of `now`.
pub fn verify(
    secret: &[u8],
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_seconds: i64,
) -> bool {
    if (now - timestamp).abs() > tolerance_seconds {
        return false;
    }
    let Some(expected) = mac(secret, timestamp, body) else {
        return false;
    };
    let Some(given) = header
        .strip_prefix("v1=")
        .and_then(|hex| cloudpass_core::hex::decode(hex).ok())
    else {
        return false;
    };
    given.len() == expected.len() && bool::from(given.ct_eq(&expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let header = sign(b"secret", 1_764_000_000, b"{\"a\":1}");
        assert!(header.starts_with("v1=") && header.len() == 67);
        assert!(verify(
            b"secret",
            1_764_000_000,
            b"{\"a\":1}",
            &header,
            1_764_000_100,
            300
        ));
        assert!(!verify(
            b"secret",
            1_764_000_000,
            b"{\"a\":2}",
            &header,
            1_764_000_100,
            300
        ));
        assert!(!verify(
            b"other",
            1_764_000_000,
            b"{\"a\":1}",
            &header,
            1_764_000_100,
            300
        ));
        assert!(
            !verify(
                b"secret",
                1_764_000_000,
                b"{\"a\":1}",
                &header,
                1_764_001_000,
                300
            ),
            "too old"
        );
        assert!(!verify(
            b"secret",
            1_764_000_000,
            b"{\"a\":1}",
            "v1=zz",
            1_764_000_000,
            300
        ));
    }
}

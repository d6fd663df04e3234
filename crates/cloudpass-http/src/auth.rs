//! Bearer keys compared in constant time.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// Whether the request carries `Authorization: Bearer <expected>`.
pub fn bearer_is(headers: &HeaderMap, expected: &str) -> bool {
    let given = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

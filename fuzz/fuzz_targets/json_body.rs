//! Any bytes as a JSON request body, read into the typed requests the issuer host and the
//! token service take: parsing must not panic, and a refusal must never carry a value from
//! the body (serde_json's own messages quote them; `parse_json` must strip every one).
#![no_main]

use cloudpass_http::{BodyError, parse_json};
use cloudpass_issuer_api::{
    ApprovalRequest, ApprovalResponse, EligibilityRequest, PasscodeRequest,
};
use libfuzzer_sys::fuzz_target;

/// Longest body tried: positions in a refusal (line, column) then have at most 4 digits.
const MAX_BODY: usize = 4_096;

/// Every string in the body long enough to be a secret and holding a digit (a schema's field
/// name, which a refusal may name, has neither).
fn secrets(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => {
            if text.len() >= 8 && text.bytes().any(|b| b.is_ascii_digit()) {
                found.push(text.clone());
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| secrets(item, found)),
        serde_json::Value::Object(fields) => {
            for (key, item) in fields {
                secrets(&serde_json::Value::String(key.clone()), found);
                secrets(item, found);
            }
        }
        _ => {}
    }
}

fn check(refusal: Result<impl Sized, BodyError>, secrets: &[String]) {
    let Err(refusal) = refusal else { return };
    let text = refusal.to_string();
    let longest_digits = text
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_digits <= 4,
        "a refusal carries a number from the body"
    );
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a refusal carries a string from the body"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_BODY {
        return;
    }
    let mut found = Vec::new();
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        secrets(&value, &mut found);
    }
    check(parse_json::<EligibilityRequest>(data), &found);
    check(parse_json::<ApprovalRequest>(data), &found);
    check(parse_json::<ApprovalResponse>(data), &found);
    check(parse_json::<PasscodeRequest>(data), &found);
    check(parse_json::<serde_json::Value>(data), &found);
});

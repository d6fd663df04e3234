//! The token service's notifications to the app (`POST /wallet/tsp/notifications`, the Cloud
//! QuickPass token requestor's webhook): a change the bank or the network made to a device
//! card reaches the device. A card deleted (by the bank, a card closed, a device wiped)
//! leaves the device; a new default becomes the device's default. Suspensions and resumptions
//! need nothing on the device: the network refuses or takes the card, and the app's pages
//! read the states from the token service.
//!
//! A notification is taken only with a valid signature (HMAC-SHA256 under the app's webhook
//! secret, a timestamp within 5 minutes: docs/tsp-api.md, *notifications*). Each is applied
//! idempotently, so the token service's retries and duplicates are harmless.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cloudpass_crypto::signature;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::Wallet;
use crate::devices::DeviceError;

/// How far a notification's timestamp may be from now.
const TOLERANCE_SECONDS: i64 = 300;

/// What a notification says about one device card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenChange {
    pub token_id: String,
    /// The token's status after the change (`active`, `suspended`, `deleted`, …).
    pub status: String,
    pub is_default: bool,
}

impl TokenChange {
    /// The token part of a notification's body, or `None` when it has none.
    pub fn parse(body: &Value) -> Option<TokenChange> {
        let token = body.get("token")?;
        Some(TokenChange {
            token_id: token.get("token_id")?.as_str()?.to_owned(),
            status: token.get("status")?.as_str()?.to_owned(),
            is_default: token.get("is_default")?.as_bool()?,
        })
    }
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

pub(crate) async fn receive(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let signed = header(signature::TIMESTAMP_HEADER)
        .parse::<i64>()
        .is_ok_and(|timestamp| {
            signature::verify(
                &wallet.webhook_secret,
                timestamp,
                &body,
                header(signature::SIGNATURE_HEADER),
                wallet.clock.now_millis().div_euclid(1_000),
                TOLERANCE_SECONDS,
            )
        });
    if !signed {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "BAD_SIGNATURE",
            "the notification's signature does not verify",
        );
    }
    let change = serde_json::from_slice::<Value>(&body)
        .ok()
        .as_ref()
        .and_then(TokenChange::parse);
    let Some(change) = change else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "MALFORMED",
            "the notification has no token with token_id, status and is_default",
        );
    };
    match wallet.devices.on_token_change(&change).await {
        Ok(()) => Json(json!({"received": true})).into_response(),
        // Not taken: the token service sends it again later.
        Err(DeviceError::Unavailable | DeviceError::Unreachable) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the app cannot take notifications right now; send it again later",
        ),
        Err(error) => {
            tracing::warn!(error = %error, "wallet: a notification could not be applied");
            Json(json!({"received": true})).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_needs_the_token_its_status_and_whether_it_is_the_default() {
        let body = json!({"event_type": "TOKEN_STATUS_UPDATED",
            "token": {"token_id": "tok_1", "status": "deleted", "is_default": false}});
        assert_eq!(
            TokenChange::parse(&body),
            Some(TokenChange {
                token_id: "tok_1".into(),
                status: "deleted".into(),
                is_default: false,
            })
        );
        for broken in [
            json!({}),
            json!({"token": {"status": "deleted", "is_default": false}}),
            json!({"token": {"token_id": "tok_1", "is_default": false}}),
            json!({"token": {"token_id": "tok_1", "status": "active", "is_default": "yes"}}),
        ] {
            assert_eq!(TokenChange::parse(&broken), None, "{broken}");
        }
    }
}

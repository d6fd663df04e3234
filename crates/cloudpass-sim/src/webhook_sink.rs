//! A stand-in for the wallets' and banks' webhook receivers: it verifies each notification's
//! signature with the subscriber's shared secret (rejecting bad ones with 401, as a real
//! receiver would), and keeps the most recent ones for the sandbox to show.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloudpass_core::Clock;
use cloudpass_crypto::signature;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Most notifications kept.
pub const CAPACITY: usize = 2_000;

#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub subscriber_id: String,
    pub event_id: String,
    pub event_type: String,
    pub received_at: i64,
    pub signature_valid: bool,
    pub body: Value,
}

pub struct WebhookSink {
    secrets: HashMap<String, Vec<u8>>,
    received: Mutex<VecDeque<Received>>,
    clock: Arc<dyn Clock>,
    /// Listing what was received (every party's notifications) needs the sandbox operator's
    /// key; delivering does not (deliveries are checked by their signatures).
    operator_key: String,
}

impl WebhookSink {
    /// A sink that knows each subscriber's shared secret.
    pub fn new(
        secrets: HashMap<String, Vec<u8>>,
        clock: Arc<dyn Clock>,
        operator_key: String,
    ) -> Self {
        Self {
            secrets,
            received: Mutex::new(VecDeque::new()),
            clock,
            operator_key,
        }
    }

    /// Notifications received, oldest first, optionally for one subscriber or token.
    pub fn received(&self, subscriber: Option<&str>, token_id: Option<&str>) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| subscriber.is_none_or(|s| r.subscriber_id == s))
            .filter(|r| token_id.is_none_or(|t| r.body["token"]["token_id"] == t))
            .cloned()
            .collect()
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/sandbox/v1/webhooks", get(list))
            .route("/sandbox/v1/webhooks/{subscriber_id}", post(receive))
            .with_state(self)
    }
}

async fn receive(
    State(sink): State<Arc<WebhookSink>>,
    Path(subscriber_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let valid = match (
        sink.secrets.get(&subscriber_id),
        header(signature::TIMESTAMP_HEADER).parse::<i64>(),
    ) {
        (Some(secret), Ok(timestamp)) => signature::verify(
            secret,
            timestamp,
            &body,
            &header(signature::SIGNATURE_HEADER),
            sink.clock.now_millis() / 1000,
            300,
        ),
        _ => false,
    };
    let received = Received {
        subscriber_id,
        event_id: header("x-cloudpass-event-id"),
        event_type: header("x-cloudpass-event-type"),
        received_at: sink.clock.now_millis(),
        signature_valid: valid,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    {
        let mut list = sink.received.lock().unwrap_or_else(|p| p.into_inner());
        if list.len() >= CAPACITY {
            list.pop_front();
        }
        list.push_back(received);
    }
    if valid {
        StatusCode::OK.into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": "BAD_SIGNATURE", "message": "signature does not verify"})),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct ListQuery {
    subscriber: Option<String>,
    token_id: Option<String>,
}

async fn list(
    State(sink): State<Arc<WebhookSink>>,
    headers: axum::http::HeaderMap,
    Query(query): Query<ListQuery>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !cloudpass_http::auth::bearer_is(&headers, &sink.operator_key) {
        return cloudpass_http::json_error(
            axum::http::StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "listing notifications needs the sandbox operator's key (Authorization: Bearer <key>; \
             the key is in sandbox-operator.key in the data directory)",
        );
    }
    Json(
        json!({"notifications": sink.received(query.subscriber.as_deref(), query.token_id.as_deref())}),
    )
    .into_response()
}

//! Throttling of failed authentication, per client address: past a bound of `401`s in a
//! window, every request from that address is answered `429` until the window ends — a
//! guessed API key costs the guesser, not the service. Bounded: at most `MAX_ADDRESSES`
//! addresses are remembered; a full table forgets the oldest windows first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cloudpass_http::PeerAddr;

use crate::error::TspError;
use crate::http::ApiError;
use crate::service::Tsp;

/// Failed authentications one address may make in a window.
pub const MAX_FAILURES: u32 = 20;
/// The window, in milliseconds.
pub const WINDOW_MS: i64 = 60_000;
/// Addresses remembered at once.
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug, Default)]
pub struct AuthThrottle(Mutex<HashMap<IpAddr, (i64, u32)>>);

impl AuthThrottle {
    /// Whether `address` has used up its failures in the current window.
    pub fn blocked(&self, address: IpAddr, now: i64) -> bool {
        let table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        table
            .get(&address)
            .is_some_and(|(start, failures)| now - start < WINDOW_MS && *failures >= MAX_FAILURES)
    }

    pub fn record_failure(&self, address: IpAddr, now: i64) {
        let mut table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= MAX_ADDRESSES && !table.contains_key(&address) {
            table.retain(|_, (start, _)| now - *start < WINDOW_MS);
            if table.len() >= MAX_ADDRESSES {
                return;
            }
        }
        let entry = table.entry(address).or_insert((now, 0));
        if now - entry.0 >= WINDOW_MS {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// The middleware: refuses throttled addresses, and counts the `401`s it lets through.
pub async fn throttle_failed_auth(
    State((tsp, throttle)): State<(Arc<Tsp>, Arc<AuthThrottle>)>,
    request: Request,
    next: Next,
) -> Response {
    let address = request
        .extensions()
        .get::<PeerAddr>()
        .map(|peer| peer.0.ip());
    if let Some(address) = address
        && throttle.blocked(address, tsp.now())
    {
        return ApiError(TspError::Throttled).into_response();
    }
    let response = next.run(request).await;
    if let Some(address) = address
        && response.status() == StatusCode::UNAUTHORIZED
    {
        throttle.record_failure(address, tsp.now());
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_address_is_blocked_for_the_rest_of_its_window() {
        let throttle = AuthThrottle::default();
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(!throttle.blocked(address, 1_000));
            throttle.record_failure(address, 1_000);
        }
        assert!(throttle.blocked(address, 1_000 + WINDOW_MS - 1));
        assert!(!throttle.blocked("192.0.2.8".parse().unwrap(), 1_000));
        assert!(
            !throttle.blocked(address, 1_000 + WINDOW_MS),
            "a new window"
        );
    }
}

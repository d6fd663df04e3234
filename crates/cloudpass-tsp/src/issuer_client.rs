//! How the token service asks a bank: the [`IssuerClient`] trait, and its implementation over
//! the HTTP/JSON protocol of `cloudpass-issuer-api` (a real bank's endpoint or the issuer
//! host stand-in). Every request is signed with the issuer's shared secret and bounded by a
//! timeout; an unreachable or failing bank is `ISSUER_UNAVAILABLE`, never a guess.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::secret::Secret;
use cloudpass_core::Clock;
use cloudpass_crypto::signature;
use cloudpass_issuer_api::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{TspError, TspResult};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where and how to reach one issuer.
#[derive(Clone)]
pub struct IssuerEndpoint {
    pub issuer_id: String,
    pub api_url: String,
    pub secret: Secret,
}

/// The questions the token service asks a bank.
pub trait IssuerClient: Send + Sync {
    fn check_eligibility<'a>(
        &'a self,
        issuer: &'a IssuerEndpoint,
        request: &'a EligibilityRequest,
    ) -> BoxFuture<'a, TspResult<EligibilityResponse>>;
    fn approve_provision<'a>(
        &'a self,
        issuer: &'a IssuerEndpoint,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, TspResult<ApprovalResponse>>;
    fn send_passcode<'a>(
        &'a self,
        issuer: &'a IssuerEndpoint,
        request: &'a PasscodeRequest,
    ) -> BoxFuture<'a, TspResult<PasscodeResponse>>;
}

/// The issuer protocol over HTTP.
pub struct HttpIssuerClient {
    http: reqwest::Client,
    /// Stamps each request (the issuer checks it is near its own time).
    clock: Arc<dyn Clock>,
}

impl HttpIssuerClient {
    /// A client whose calls time out after `timeout` and keep at most `max_idle` idle
    /// connections per bank; `extra_root` (PEM) is trusted beside the platform's roots;
    /// requests are stamped with `clock`'s time.
    pub fn new(
        timeout: Duration,
        max_idle: usize,
        extra_root: Option<&[u8]>,
        clock: Arc<dyn Clock>,
    ) -> TspResult<Self> {
        let http = cloudpass_http::client::builder(timeout, extra_root)
            .map_err(|error| TspError::Internal(format!("HTTP client: {error}")))?
            .pool_max_idle_per_host(max_idle)
            .build()
            .map_err(|error| TspError::Internal(format!("HTTP client: {error}")))?;
        Ok(Self { http, clock })
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        issuer: &IssuerEndpoint,
        operation: &str,
        request: &Req,
    ) -> TspResult<Resp> {
        let body =
            serde_json::to_vec(request).map_err(|error| TspError::Internal(error.to_string()))?;
        let timestamp = self.clock.now_millis().div_euclid(1_000);
        let url = format!("{}/{operation}", issuer.api_url.trim_end_matches('/'));
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header(signature::TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                signature::SIGNATURE_HEADER,
                signature::sign(issuer.secret.expose(), timestamp, &body),
            )
            .body(body)
            .send()
            .await
            .map_err(|error| {
                TspError::IssuerUnavailable(format!(
                    "{} {operation}: {}",
                    issuer.issuer_id,
                    without_url(&error)
                ))
            })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|error| {
            TspError::IssuerUnavailable(format!(
                "{} {operation}: {}",
                issuer.issuer_id,
                without_url(&error)
            ))
        })?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(TspError::IssuerUnavailable(format!(
                "{} {operation}: {detail}",
                issuer.issuer_id
            )));
        }
        serde_json::from_slice(&bytes).map_err(|error| {
            TspError::IssuerUnavailable(format!(
                "{} {operation}: bad response: {}",
                issuer.issuer_id,
                cloudpass_http::body::describe(&error)
            ))
        })
    }
}

/// A reqwest error's text without the URL (which is configuration, but keep errors short).
fn without_url(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection refused or unreachable".to_owned()
    } else {
        error.to_string()
    }
}

impl IssuerClient for HttpIssuerClient {
    fn check_eligibility<'a>(
        &'a self,
        issuer: &'a IssuerEndpoint,
        request: &'a EligibilityRequest,
    ) -> BoxFuture<'a, TspResult<EligibilityResponse>> {
        Box::pin(self.post(issuer, CHECK_ELIGIBILITY, request))
    }

    fn approve_provision<'a>(
        &'a self,
        issuer: &'a IssuerEndpoint,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, TspResult<ApprovalResponse>> {
        Box::pin(self.post(issuer, APPROVE_PROVISION, request))
    }

    fn send_passcode<'a>(
        &'a self,
        issuer: &'a IssuerEndpoint,
        request: &'a PasscodeRequest,
    ) -> BoxFuture<'a, TspResult<PasscodeResponse>> {
        Box::pin(self.post(issuer, SEND_PASSCODE, request))
    }
}

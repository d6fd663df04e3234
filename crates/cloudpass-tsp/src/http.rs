//! The `/tsp/v1` HTTP API: token requestor (wallet) and issuer (bank) endpoints, device
//! events, queries. docs/tsp-api.md shows every call with curl; `/tsp/v1/openapi.json`
//! describes them for tools.
//!
//! - Callers authenticate with `Authorization: Bearer <api key>`; the key says whether the
//!   caller is a wallet or a bank, and which one. Nobody sees another party's tokens.
//! - Every mutating call needs an `Idempotency-Key` header: the same key with the same body
//!   returns the first answer again; the same key with another body is refused.
//! - Errors are `{"code": "...", "message": "..."}` with a stable code; bodies are bounded.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use cloudpass_core::device::DeviceEvent;
use cloudpass_core::lifecycle::{DeleteReason, LifecycleEvent, ResumeReason, SuspendReason};
use cloudpass_store::{IdempotencyBegin, TokenStore};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::claim::{self, RequestClaim};
use crate::error::{TspError, TspResult};
use crate::service::{CardData, CardEvent, Principal, ProvisionRequest, Tsp};
use crate::throttle::{AuthThrottle, throttle_failed_auth};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// How long an unanswered claim on an Idempotency-Key holds it: a request still running
/// after this long is taken for dead (its process killed or its answer unwritable), and a
/// retry under the same key takes the claim over. Longer than any request runs: a request's
/// calls to a bank time out well within it.
pub const CLAIM_LEASE_MS: i64 = 60_000;

/// The waits between tries at writing a request's answer.
const ANSWER_RETRY_WAITS: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(50),
    std::time::Duration::from_millis(250),
    std::time::Duration::from_secs(1),
];

/// SHA-256 of an API key, as stored.
pub fn api_key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The token service's routes, to be nested at the root of the server.
pub fn router(tsp: Arc<Tsp>) -> Router {
    Router::new()
        .route("/tsp/v1/openapi.json", get(openapi))
        .route("/tsp/v1/users", post(create_user))
        .route("/tsp/v1/devices", post(create_device))
        .route("/tsp/v1/devices/{device_id}", get(get_device))
        .route("/tsp/v1/devices/{device_id}/tokens", get(device_tokens))
        .route("/tsp/v1/devices/{device_id}/events", post(device_event))
        .route("/tsp/v1/tokens", post(provision))
        .route("/tsp/v1/tokens/{token_id}", get(get_token))
        .route("/tsp/v1/tokens/{token_id}/history", get(token_history))
        .route(
            "/tsp/v1/tokens/{token_id}/notifications",
            get(token_notifications),
        )
        .route("/tsp/v1/tokens/{token_id}/activate", post(activate))
        .route("/tsp/v1/tokens/{token_id}/otp", post(resend_otp))
        .route("/tsp/v1/tokens/{token_id}/suspend", post(suspend))
        .route("/tsp/v1/tokens/{token_id}/resume", post(resume))
        .route("/tsp/v1/tokens/{token_id}/delete", post(delete))
        .route("/tsp/v1/tokens/{token_id}/default", post(set_default))
        .route("/tsp/v1/tokens/{token_id}/metadata", post(update_metadata))
        .route("/tsp/v1/tokens/{token_id}/card-profile", get(card_profile))
        .route("/tsp/v1/tokens/{token_id}/keys", post(replenish_keys))
        .route("/tsp/v1/issuer/cards/tokens", post(card_tokens))
        .route("/tsp/v1/issuer/cards/events", post(card_event))
        .route("/tsp/v1/issuer/cards/reissue", post(reissue))
        .route(
            "/tsp/v1/issuer/products/{product}/cvm-limits",
            put(cvm_limits),
        )
        .route("/tsp/v1/issuer/push-receipts", post(push_receipt))
        .route("/tsp/v1/issuer/cards/declines", post(card_declines))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            (Arc::clone(&tsp), Arc::new(AuthThrottle::default())),
            throttle_failed_auth,
        ))
        .with_state(tsp)
}

/// The routes, as (method, path) pairs, for the OpenAPI document's completeness test.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/tsp/v1/openapi.json"),
    ("post", "/tsp/v1/users"),
    ("post", "/tsp/v1/devices"),
    ("get", "/tsp/v1/devices/{device_id}"),
    ("get", "/tsp/v1/devices/{device_id}/tokens"),
    ("post", "/tsp/v1/devices/{device_id}/events"),
    ("post", "/tsp/v1/tokens"),
    ("get", "/tsp/v1/tokens/{token_id}"),
    ("get", "/tsp/v1/tokens/{token_id}/history"),
    ("get", "/tsp/v1/tokens/{token_id}/notifications"),
    ("post", "/tsp/v1/tokens/{token_id}/activate"),
    ("post", "/tsp/v1/tokens/{token_id}/otp"),
    ("post", "/tsp/v1/tokens/{token_id}/suspend"),
    ("post", "/tsp/v1/tokens/{token_id}/resume"),
    ("post", "/tsp/v1/tokens/{token_id}/delete"),
    ("post", "/tsp/v1/tokens/{token_id}/default"),
    ("post", "/tsp/v1/tokens/{token_id}/metadata"),
    ("get", "/tsp/v1/tokens/{token_id}/card-profile"),
    ("post", "/tsp/v1/tokens/{token_id}/keys"),
    ("post", "/tsp/v1/issuer/cards/tokens"),
    ("post", "/tsp/v1/issuer/cards/events"),
    ("post", "/tsp/v1/issuer/cards/reissue"),
    ("put", "/tsp/v1/issuer/products/{product}/cvm-limits"),
    ("post", "/tsp/v1/issuer/push-receipts"),
    ("post", "/tsp/v1/issuer/cards/declines"),
];

/// An error as the API shows it.
pub struct ApiError(pub TspError);

impl From<TspError> for ApiError {
    fn from(error: TspError) -> Self {
        ApiError(error)
    }
}

fn error_body(error: &TspError) -> (StatusCode, Value) {
    if let TspError::Internal(detail) = error {
        tracing::error!(code = error.code(), detail = %detail, "internal error");
    }
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({"code": error.code(), "message": error.to_string()});
    match error {
        TspError::TokenExists { token_id } => body["token_id"] = json!(token_id),
        TspError::OtpInvalid { attempts_left } => body["attempts_left"] = json!(attempts_left),
        _ => {}
    }
    (status, body)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = error_body(&self.0);
        (status, Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn bearer(headers: &HeaderMap) -> TspResult<&str> {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or(TspError::Unauthorized)
}

async fn principal(tsp: &Tsp, headers: &HeaderMap) -> TspResult<Principal> {
    let hash = api_key_hash(bearer(headers)?);
    tsp.principal(&hash).await?.ok_or(TspError::Unauthorized)
}

async fn wallet(tsp: &Tsp, headers: &HeaderMap) -> TspResult<cloudpass_store::TokenRequestorRow> {
    match principal(tsp, headers).await? {
        Principal::Wallet(requestor) => Ok(requestor),
        Principal::Issuer(_) => Err(TspError::Forbidden(
            "this endpoint is for token requestors (wallets), not issuers",
        )),
    }
}

async fn issuer(tsp: &Tsp, headers: &HeaderMap) -> TspResult<cloudpass_store::IssuerRow> {
    match principal(tsp, headers).await? {
        Principal::Issuer(issuer) => Ok(issuer),
        Principal::Wallet(_) => Err(TspError::Forbidden(
            "this endpoint is for issuers, not token requestors",
        )),
    }
}

/// The request body as a typed request; the error names the fault's place and the expected
/// shape, never a value (see `cloudpass_http::body`).
fn parse<T: DeserializeOwned>(body: &Bytes) -> TspResult<T> {
    cloudpass_http::parse_json(body).map_err(|error| TspError::InvalidRequest(error.to_string()))
}

fn ok(status: StatusCode, body: impl serde::Serialize) -> TspResult<(StatusCode, Value)> {
    Ok((
        status,
        serde_json::to_value(body).map_err(|e| TspError::Internal(e.to_string()))?,
    ))
}

/// Runs a mutating operation under the request's idempotency key: a replay returns the
/// stored answer, a reused key with another request is refused, and a transient failure
/// frees the key for a retry.
async fn idempotent<F, Fut>(
    tsp: &Tsp,
    principal: &Principal,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    body: &Bytes,
    operation: F,
) -> ApiResult
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = TspResult<(StatusCode, Value)>>,
{
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            TspError::InvalidRequest("every mutating call needs an Idempotency-Key header".into())
        })?;
    if key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(TspError::InvalidRequest(format!(
            "Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} characters"
        ))
        .into());
    }
    // Keyed (HMAC under an HSM key): the body may carry a card number, expiry and CVN2, and
    // a plain hash of it could be reversed by trying the few values left unknown.
    let request_hash = tsp.request_fingerprint(method.as_str(), path, body)?;
    let scope = principal.idempotency_scope();
    let now = tsp.now();
    let effect_committed = match tsp
        .store()
        .idempotency_begin(&scope, key, &request_hash, now, now - CLAIM_LEASE_MS)
        .await
        .map_err(TspError::from)?
    {
        IdempotencyBegin::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response =
                (status, [("content-type", "application/json")], body).into_response();
            response.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            return Ok(response);
        }
        IdempotencyBegin::Mismatch => {
            return Err(TspError::InvalidRequest(
                "this Idempotency-Key was already used for a different request".into(),
            )
            .into());
        }
        IdempotencyBegin::InProgress => {
            return Ok((StatusCode::CONFLICT, Json(json!({"code": "REQUEST_IN_PROGRESS", "message": "a request with this Idempotency-Key is still being processed; retry later"}))).into_response());
        }
        IdempotencyBegin::New => false,
        IdempotencyBegin::TakenOver { effect_committed } => effect_committed,
    };
    let claim = RequestClaim {
        principal: scope.clone(),
        key: key.to_owned(),
        effect_committed,
    };
    let (status, value) = match claim::run_under(claim, operation()).await {
        Ok(answer) => answer,
        Err(error) if error.is_transient() => {
            // Frees the key unless a change was committed under it: then the claim stays
            // until its lease passes, and the retry that takes it over gives the answer.
            let _ = tsp.store().idempotency_release(&scope, key).await;
            return Err(error.into());
        }
        Err(error) => error_body(&error),
    };
    let text = value.to_string();
    record_answer(tsp, &scope, key, status, &text).await?;
    Ok((status, [("content-type", "application/json")], text).into_response())
}

/// Writes a request's answer under its key, retrying a failed write: the request's change is
/// already committed, and an unwritten answer would hold the key until its lease passes.
async fn record_answer(
    tsp: &Tsp,
    scope: &str,
    key: &str,
    status: StatusCode,
    text: &str,
) -> Result<(), ApiError> {
    let mut waits = ANSWER_RETRY_WAITS.iter();
    loop {
        match tsp
            .store()
            .idempotency_complete(scope, key, status.as_u16(), text)
            .await
        {
            Ok(()) => return Ok(()),
            Err(error) => match waits.next() {
                Some(wait) => tokio::time::sleep(*wait).await,
                None => return Err(TspError::from(error).into()),
            },
        }
    }
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct NewUser {
    /// The wallet's own id of the account, 1 to 64 printable characters.
    account_id: String,
}

async fn create_user(State(tsp): State<Arc<Tsp>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let requestor = wallet(&tsp, &headers).await?;
    let who = Principal::Wallet(requestor.clone());
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        "/tsp/v1/users",
        &body,
        || async {
            let request: NewUser = parse(&body)?;
            ok(
                StatusCode::CREATED,
                tsp.register_user(&requestor, &request.account_id).await?,
            )
        },
    )
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct NewDevice {
    device_id: String,
    #[schemars(schema_with = "crate::schema::device_kind")]
    kind: String,
    brand: String,
    account_id: Option<String>,
    /// A passcode or fingerprint is set on the device.
    unlock_set: bool,
    /// X25519 public key, 64 hex digits.
    public_key: String,
}

async fn create_device(State(tsp): State<Arc<Tsp>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let requestor = wallet(&tsp, &headers).await?;
    let who = Principal::Wallet(requestor.clone());
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        "/tsp/v1/devices",
        &body,
        || async {
            let request: NewDevice = parse(&body)?;
            let device = tsp
                .register_device(
                    &requestor,
                    &request.device_id,
                    &request.kind,
                    &request.brand,
                    request.account_id.as_deref(),
                    request.unlock_set,
                    &request.public_key,
                )
                .await?;
            ok(StatusCode::CREATED, device)
        },
    )
    .await
}

async fn get_device(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(device_id): Path<String>,
) -> ApiResult {
    let requestor = wallet(&tsp, &headers).await?;
    Ok(Json(tsp.device_view(&requestor, &device_id).await?).into_response())
}

#[derive(Deserialize)]
struct TokenListQuery {
    #[serde(default)]
    include_deleted: bool,
}

async fn device_tokens(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(device_id): Path<String>,
    Query(query): Query<TokenListQuery>,
) -> ApiResult {
    let requestor = wallet(&tsp, &headers).await?;
    let tokens = tsp
        .device_tokens(&requestor, &device_id, query.include_deleted)
        .await?;
    Ok(Json(TokenList { tokens }).into_response())
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TokenList {
    tokens: Vec<crate::model::TokenView>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct HistoryList {
    history: Vec<crate::model::HistoryView>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct NotificationList {
    notifications: Vec<crate::model::NotificationView>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct StepUpOnly {
    step_up: crate::service::StepUp,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CardProfile {
    card_profile: crate::service::EnvelopeView,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct DeviceEventBody {
    #[schemars(schema_with = "crate::schema::device_event")]
    event: String,
    /// For `signed_in`: the account now signed in.
    account_id: Option<String>,
}

async fn device_event(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(device_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let requestor = wallet(&tsp, &headers).await?;
    let who = Principal::Wallet(requestor.clone());
    let path = format!("/tsp/v1/devices/{device_id}/events");
    idempotent(&tsp, &who, &headers, &Method::POST, &path, &body, || async {
        let request: DeviceEventBody = parse(&body)?;
        let event = DeviceEvent::parse(&request.event).ok_or_else(|| {
            TspError::InvalidRequest("event must be one of lost, found, wiped, restored, signed_out, signed_in, unlock_removed, unlock_set".into())
        })?;
        ok(StatusCode::OK, tsp.device_event(&requestor, &device_id, event, request.account_id.as_deref()).await?)
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct CardBody {
    number: String,
    #[schemars(schema_with = "crate::schema::expiry")]
    expiry: String,
    cvn2: Option<String>,
}

/// The card's data, or a push receipt from the bank's app.
#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct ProvisionBody {
    device_id: String,
    account_id: String,
    card: Option<CardBody>,
    push_receipt: Option<String>,
    /// Where the token may pay (default: both).
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::domains")]
    domains: Option<Vec<String>>,
    /// Open a UPCash (e-cash) account on the token.
    #[serde(default)]
    ecash: bool,
}

async fn provision(State(tsp): State<Arc<Tsp>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let requestor = wallet(&tsp, &headers).await?;
    let who = Principal::Wallet(requestor.clone());
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        "/tsp/v1/tokens",
        &body,
        || async {
            let request: ProvisionBody = parse(&body)?;
            let outcome = tsp
                .provision(
                    &requestor,
                    ProvisionRequest {
                        device_id: request.device_id,
                        account_id: request.account_id,
                        card: request.card.map(|c| CardData {
                            number: c.number,
                            expiry: c.expiry,
                            cvn2: c.cvn2,
                        }),
                        push_receipt: request.push_receipt,
                        domains: request.domains,
                        ecash: request.ecash,
                    },
                )
                .await?;
            let status = if outcome.decision == "green" {
                StatusCode::CREATED
            } else {
                StatusCode::ACCEPTED
            };
            ok(status, outcome)
        },
    )
    .await
}

async fn get_token(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
) -> ApiResult {
    let who = principal(&tsp, &headers).await?;
    Ok(Json(tsp.token_view(&who, &token_id).await?).into_response())
}

async fn token_history(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
) -> ApiResult {
    let who = principal(&tsp, &headers).await?;
    let history = tsp.history(&who, &token_id).await?;
    Ok(Json(HistoryList { history }).into_response())
}

async fn token_notifications(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
) -> ApiResult {
    let who = principal(&tsp, &headers).await?;
    let notifications = tsp.notifications(&who, &token_id).await?;
    Ok(Json(NotificationList { notifications }).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct OtpBody {
    /// The one-time code the bank sent.
    otp: String,
}

async fn activate(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let requestor = wallet(&tsp, &headers).await?;
    let who = Principal::Wallet(requestor.clone());
    let path = format!("/tsp/v1/tokens/{token_id}/activate");
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        &path,
        &body,
        || async {
            let request: OtpBody = parse(&body)?;
            ok(
                StatusCode::OK,
                tsp.activate(&requestor, &token_id, &request.otp).await?,
            )
        },
    )
    .await
}

async fn resend_otp(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let requestor = wallet(&tsp, &headers).await?;
    let who = Principal::Wallet(requestor.clone());
    let path = format!("/tsp/v1/tokens/{token_id}/otp");
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        &path,
        &body,
        || async {
            ok(
                StatusCode::OK,
                StepUpOnly {
                    step_up: tsp.resend_otp(&requestor, &token_id).await?,
                },
            )
        },
    )
    .await
}

/// The body of suspend, resume and delete: an optional reason from the operation's list.
trait ReasonBody: DeserializeOwned {
    fn into_reason(self) -> Option<String>;
}

macro_rules! reason_body {
    ($name:ident, $schema:literal) => {
        #[derive(Deserialize, schemars::JsonSchema)]
        pub(crate) struct $name {
            #[serde(default)]
            #[schemars(schema_with = $schema)]
            reason: Option<String>,
        }

        impl ReasonBody for $name {
            fn into_reason(self) -> Option<String> {
                self.reason
            }
        }
    };
}

reason_body!(SuspendBody, "crate::schema::suspend_reason");
reason_body!(ResumeBody, "crate::schema::resume_reason");
reason_body!(DeleteBody, "crate::schema::delete_reason");

fn reason<B: ReasonBody, T: Copy>(
    body: &Bytes,
    parse_reason: fn(&str) -> Option<T>,
    all: &[T],
    default: T,
    name: fn(T) -> &'static str,
) -> TspResult<T> {
    let request: B = parse(body)?;
    match request.into_reason() {
        None => Ok(default),
        Some(text) => parse_reason(&text).ok_or_else(|| {
            TspError::InvalidRequest(format!(
                "reason must be one of {}",
                all.iter().map(|r| name(*r)).collect::<Vec<_>>().join(", ")
            ))
        }),
    }
}

async fn token_event(
    tsp: Arc<Tsp>,
    headers: HeaderMap,
    token_id: String,
    body: Bytes,
    action: &'static str,
) -> ApiResult {
    let who = principal(&tsp, &headers).await?;
    let path = format!("/tsp/v1/tokens/{token_id}/{action}");
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        &path,
        &body,
        || async {
            let event = match action {
                "suspend" => LifecycleEvent::Suspend(reason::<SuspendBody, _>(
                    &body,
                    SuspendReason::parse,
                    SuspendReason::ALL,
                    SuspendReason::Other,
                    SuspendReason::as_str,
                )?),
                "resume" => LifecycleEvent::Resume(reason::<ResumeBody, _>(
                    &body,
                    ResumeReason::parse,
                    ResumeReason::ALL,
                    ResumeReason::Other,
                    ResumeReason::as_str,
                )?),
                _ => {
                    let default = if matches!(who, Principal::Wallet(_)) {
                        DeleteReason::ConsumerDeleted
                    } else {
                        DeleteReason::Other
                    };
                    LifecycleEvent::Delete(reason::<DeleteBody, _>(
                        &body,
                        DeleteReason::parse,
                        DeleteReason::ALL,
                        default,
                        DeleteReason::as_str,
                    )?)
                }
            };
            ok(
                StatusCode::OK,
                tsp.token_event(&who, &token_id, event, None).await?,
            )
        },
    )
    .await
}

async fn suspend(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    token_event(tsp, headers, token_id, body, "suspend").await
}

async fn resume(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    token_event(tsp, headers, token_id, body, "resume").await
}

async fn delete(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    token_event(tsp, headers, token_id, body, "delete").await
}

async fn set_default(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let requestor = wallet(&tsp, &headers).await?;
    let who = Principal::Wallet(requestor.clone());
    let path = format!("/tsp/v1/tokens/{token_id}/default");
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        &path,
        &body,
        || async {
            ok(
                StatusCode::OK,
                tsp.set_default(&requestor, &token_id).await?,
            )
        },
    )
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct MetadataBody {
    /// A JSON object the bank keeps on the token (limits, art, terms).
    metadata: Value,
}

async fn update_metadata(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let bank = issuer(&tsp, &headers).await?;
    let who = Principal::Issuer(bank);
    let path = format!("/tsp/v1/tokens/{token_id}/metadata");
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        &path,
        &body,
        || async {
            let request: MetadataBody = parse(&body)?;
            if !request.metadata.is_object() {
                return Err(TspError::InvalidRequest(
                    "metadata must be a JSON object".into(),
                ));
            }
            ok(
                StatusCode::OK,
                tsp.token_event(
                    &who,
                    &token_id,
                    LifecycleEvent::UpdateMetadata,
                    Some(request.metadata),
                )
                .await?,
            )
        },
    )
    .await
}

async fn card_profile(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
) -> ApiResult {
    let requestor = wallet(&tsp, &headers).await?;
    Ok(Json(CardProfile {
        card_profile: tsp.card_profile(&requestor, &token_id).await?,
    })
    .into_response())
}

async fn replenish_keys(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let requestor = wallet(&tsp, &headers).await?;
    let who = Principal::Wallet(requestor.clone());
    let path = format!("/tsp/v1/tokens/{token_id}/keys");
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        &path,
        &body,
        || async {
            ok(
                StatusCode::OK,
                CardProfile {
                    card_profile: tsp.replenish_keys(&requestor, &token_id).await?,
                },
            )
        },
    )
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct CardNumberBody {
    card_number: String,
}

async fn card_tokens(State(tsp): State<Arc<Tsp>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let bank = issuer(&tsp, &headers).await?;
    let request: CardNumberBody = parse(&body)?;
    Ok(Json(tsp.card_tokens(&bank, &request.card_number).await?).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct CardEventBody {
    card_number: String,
    #[schemars(schema_with = "crate::schema::card_event")]
    event: String,
}

/// A card's declined provisioning attempts in the window, with the issuer's reasons (which
/// the wallets never see).
async fn card_declines(State(tsp): State<Arc<Tsp>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let bank = issuer(&tsp, &headers).await?;
    let request: CardNumberBody = parse(&body)?;
    Ok(Json(tsp.card_declines(&bank, &request.card_number).await?).into_response())
}

async fn card_event(State(tsp): State<Arc<Tsp>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let bank = issuer(&tsp, &headers).await?;
    let who = Principal::Issuer(bank.clone());
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        "/tsp/v1/issuer/cards/events",
        &body,
        || async {
            let request: CardEventBody = parse(&body)?;
            let event = CardEvent::parse(&request.event).ok_or_else(|| {
                TspError::InvalidRequest("event must be lost, stolen, found or closed".into())
            })?;
            ok(
                StatusCode::OK,
                tsp.card_event(&bank, &request.card_number, event).await?,
            )
        },
    )
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct ReissueBody {
    card_number: String,
    /// The new card's number, when it changes.
    new_card_number: Option<String>,
    #[schemars(schema_with = "crate::schema::expiry")]
    new_expiry: String,
}

async fn reissue(State(tsp): State<Arc<Tsp>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let bank = issuer(&tsp, &headers).await?;
    let who = Principal::Issuer(bank.clone());
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        "/tsp/v1/issuer/cards/reissue",
        &body,
        || async {
            let request: ReissueBody = parse(&body)?;
            ok(
                StatusCode::OK,
                tsp.reissue_card(
                    &bank,
                    &request.card_number,
                    request.new_card_number.as_deref(),
                    &request.new_expiry,
                )
                .await?,
            )
        },
    )
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct CvmLimitsBody {
    /// Decimal amount, e.g. `1000.00`.
    contactless_no_pin_limit: String,
    online_no_pin_limit: String,
}

async fn cvm_limits(
    State(tsp): State<Arc<Tsp>>,
    headers: HeaderMap,
    Path(product): Path<String>,
    body: Bytes,
) -> ApiResult {
    let bank = issuer(&tsp, &headers).await?;
    let who = Principal::Issuer(bank.clone());
    let path = format!("/tsp/v1/issuer/products/{product}/cvm-limits");
    idempotent(&tsp, &who, &headers, &Method::PUT, &path, &body, || async {
        let request: CvmLimitsBody = parse(&body)?;
        ok(
            StatusCode::OK,
            tsp.update_cvm_limits(
                &bank,
                &product,
                &request.contactless_no_pin_limit,
                &request.online_no_pin_limit,
            )
            .await?,
        )
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct PushReceiptBody {
    card_number: String,
    #[schemars(schema_with = "crate::schema::expiry")]
    expiry: String,
    /// The wallet the receipt is for, and its device: the receipt provisions there, once.
    token_requestor_id: String,
    device_id: String,
}

async fn push_receipt(State(tsp): State<Arc<Tsp>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let bank = issuer(&tsp, &headers).await?;
    let who = Principal::Issuer(bank.clone());
    idempotent(
        &tsp,
        &who,
        &headers,
        &Method::POST,
        "/tsp/v1/issuer/push-receipts",
        &body,
        || async {
            let request: PushReceiptBody = parse(&body)?;
            ok(
                StatusCode::CREATED,
                tsp.push_receipt(
                    &bank,
                    &request.card_number,
                    &request.expiry,
                    &request.token_requestor_id,
                    &request.device_id,
                )
                .await?,
            )
        },
    )
    .await
}

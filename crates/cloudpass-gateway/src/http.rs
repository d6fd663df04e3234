//! The UPACP endpoints on the HTTP port: form posts in (`application/x-www-form-urlencoded`,
//! UTF-8, at most [`MAX_BODY_BYTES`]), raw signed forms out. Every request passes the same
//! gate — form, header, merchant, signature — before its flow runs.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cloudpass_http::json_error;
use cloudpass_upacp::Form;
use cloudpass_upacp::code::RespCode;
use cloudpass_upacp::request::{self, Header, Refusal, refuse};
use cloudpass_upacp::signing::{self, SignMethod, Trust};

use crate::merchant::Merchant;
use crate::page::{self, Page};
use crate::{Gateway, PayError, PayRequest};

pub const APP_TRANS_PATH: &str = "/gateway/api/appTransReq.do";
/// Browser consume (PC 07, WAP 08): answers `302` to the TN's hosted payment page.
pub const FRONT_TRANS_PATH: &str = "/gateway/api/frontTransReq.do";
pub const QUERY_TRANS_PATH: &str = "/gateway/api/queryTrans.do";
pub const BACK_TRANS_PATH: &str = "/gateway/api/backTransReq.do";
/// File transfer (txnType 76): what integrators set `fileTransUrl` to.
pub const FILE_TRANS_PATH: &str = "/gateway/file/";
/// The payment control: `GET` is the hosted payment page (HTML), `POST` a
/// [`crate::PayRequest`] (JSON) pays the TN.
pub const PAY_PATH: &str = "/gateway/pay/{tn}";
/// The hosted page's two form posts: the card number, then the payment.
pub const PAGE_CARD_PATH: &str = "/gateway/pay/{tn}/card";
/// The payment control's SMS step (JSON): a code texted to the card's phone.
pub const PAY_SMS_PATH: &str = "/gateway/pay/{tn}/sms";
pub const PAGE_CONFIRM_PATH: &str = "/gateway/pay/{tn}/confirm";
pub const STYLE_PATH: &str = "/gateway/static/pay.css";
/// A merchant's sandbox clock: `GET` reads it, `POST` an [`crate::sandbox_clock::AdvanceClock`]
/// moves it forward.
pub const CLOCK_PATH: &str = "/gateway/merchants/{mer_id}/clock";
/// The OpenAPI document of the JSON endpoints.
pub const OPENAPI_PATH: &str = "/gateway/openapi.json";
/// A merchant's self-service certification checklist (JSON).
pub const CERTIFICATION_PATH: &str = "/gateway/merchants/{mer_id}/certification";
/// UPACP requests are a few kilobytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    AppTrans,
    BackTrans,
    FileTrans,
    QueryTrans,
}

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(APP_TRANS_PATH, post(app_trans))
        .route(FRONT_TRANS_PATH, post(front_trans))
        .route(QUERY_TRANS_PATH, post(query_trans))
        .route(BACK_TRANS_PATH, post(back_trans))
        .route(FILE_TRANS_PATH, post(file_trans))
        .route(PAY_PATH, get(page).post(pay))
        .route(PAGE_CARD_PATH, post(page_card))
        .route(PAY_SMS_PATH, post(pay_sms))
        .route(PAGE_CONFIRM_PATH, post(page_confirm))
        .route(STYLE_PATH, get(style))
        .route(CERTIFICATION_PATH, get(certification))
        .route(OPENAPI_PATH, get(openapi))
        .route(CLOCK_PATH, get(sandbox_clock).post(advance_sandbox_clock))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(gateway)
}

async fn app_trans(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    raw(gateway.handle(Endpoint::AppTrans, &body).await)
}

/// A browser's consume: on to the hosted page, or a page saying why the merchant's request
/// was refused (the payer cannot fix it; the merchant can, from the respCode).
async fn front_trans(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    match gateway.front(&body).await {
        Ok(tn) => (
            StatusCode::FOUND,
            [
                (LOCATION, page::page_path(&tn)),
                (CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response(),
        Err(refusal) => html(page::refused_page(
            400,
            "The merchant's payment request was refused",
            &cloudpass_upacp::code::resp_msg(refusal.code, &refusal.detail),
            Some(refusal.code),
        )),
    }
}

/// `?sdk_flow=…&sdk_return=…`: the payment SDK sent the payer (see `sdk`).
#[derive(serde::Deserialize)]
struct PageQuery {
    sdk_flow: Option<String>,
    sdk_return: Option<String>,
}

async fn page(
    State(gateway): State<Arc<Gateway>>,
    Path(tn): Path<String>,
    axum::extract::Query(query): axum::extract::Query<PageQuery>,
) -> Response {
    let sdk = crate::sdk::SdkVisit::read(query.sdk_flow.as_deref(), query.sdk_return.as_deref());
    html(gateway.page(&tn, sdk).await)
}

async fn page_card(
    State(gateway): State<Arc<Gateway>>,
    Path(tn): Path<String>,
    body: Bytes,
) -> Response {
    html(gateway.page_card(&tn, &body).await)
}

async fn page_confirm(
    State(gateway): State<Arc<Gateway>>,
    Path(tn): Path<String>,
    body: Bytes,
) -> Response {
    html(gateway.page_confirm(&tn, &body).await)
}

async fn sandbox_clock(
    State(gateway): State<Arc<Gateway>>,
    Path(mer_id): Path<String>,
) -> Response {
    match gateway.sandbox_clock(&mer_id).await {
        Ok(Some(clock)) => (StatusCode::OK, axum::Json(clock)).into_response(),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            "merchant_not_found",
            "no merchant of this gateway has this merId",
        ),
        Err(error) => {
            tracing::error!(error = %error, "gateway: a sandbox clock could not be read");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the sandbox clock is not available; try again",
            )
        }
    }
}

async fn advance_sandbox_clock(
    State(gateway): State<Arc<Gateway>>,
    Path(mer_id): Path<String>,
    body: Bytes,
) -> Response {
    use crate::sandbox_clock::{AdvanceClock, ClockError};
    let request: AdvanceClock = match cloudpass_http::parse_json(&body) {
        Ok(request) => request,
        Err(error) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &error.to_string(),
            );
        }
    };
    match gateway
        .advance_sandbox_clock(&mer_id, request.advance_seconds)
        .await
    {
        Ok(clock) => (StatusCode::OK, axum::Json(clock)).into_response(),
        Err(error @ ClockError::OutOfRange) => json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "input_invalid",
            &error.to_string(),
        ),
        Err(error @ ClockError::UnknownMerchant) => json_error(
            StatusCode::NOT_FOUND,
            "merchant_not_found",
            &error.to_string(),
        ),
        Err(ClockError::Store(error)) => {
            tracing::error!(error = %error, "gateway: a sandbox clock could not be advanced");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the sandbox clock is not available; try again",
            )
        }
    }
}

async fn openapi() -> Response {
    axum::Json(crate::openapi::document()).into_response()
}

async fn certification(
    State(gateway): State<Arc<Gateway>>,
    Path(mer_id): Path<String>,
) -> Response {
    match gateway.certification(&mer_id).await {
        Ok(Some(report)) => (StatusCode::OK, axum::Json(report)).into_response(),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            "merchant_not_found",
            "no merchant of this gateway has this merId",
        ),
        Err(error) => {
            tracing::error!(error = %error, "gateway: certification could not be read");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the certification records are not available; try again",
            )
        }
    }
}

async fn style() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/pay.css"),
    )
        .into_response()
}

/// An HTML page with the headers a payment page needs: never cached, never framed, no
/// referrer (the TN is in the URL), scripts forbidden, forms only to the gateway and the
/// merchant's `frontUrl`.
fn html(page: Page) -> Response {
    let form_action = match &page.form_origin {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let policy = format!(
        "default-src 'none'; style-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    let status = StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (CACHE_CONTROL, "no-store".to_owned()),
            (REFERRER_POLICY, "no-referrer".to_owned()),
            (X_FRAME_OPTIONS, "DENY".to_owned()),
            (X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (CONTENT_SECURITY_POLICY, policy),
        ],
        page.html,
    )
        .into_response()
}

async fn back_trans(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    raw(gateway.handle(Endpoint::BackTrans, &body).await)
}

async fn file_trans(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    raw(gateway.handle(Endpoint::FileTrans, &body).await)
}

async fn query_trans(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    raw(gateway.handle(Endpoint::QueryTrans, &body).await)
}

async fn pay(State(gateway): State<Arc<Gateway>>, Path(tn): Path<String>, body: Bytes) -> Response {
    let request: PayRequest = match cloudpass_http::parse_json(&body) {
        Ok(request) => request,
        Err(error) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &error.to_string(),
            );
        }
    };
    match gateway.pay(&tn, &request).await {
        Ok(result) => (StatusCode::OK, axum::Json(result)).into_response(),
        Err(error) => pay_error(&error),
    }
}

/// The body of `POST /gateway/pay/{tn}/sms`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsRequest {
    /// The card's number, 13 to 19 digits (spaces are ignored).
    pub card_number: String,
}

impl Drop for SmsRequest {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.card_number.zeroize();
    }
}

async fn pay_sms(
    State(gateway): State<Arc<Gateway>>,
    Path(tn): Path<String>,
    body: Bytes,
) -> Response {
    let request: SmsRequest = match cloudpass_http::parse_json(&body) {
        Ok(request) => request,
        Err(error) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &error.to_string(),
            );
        }
    };
    match gateway.send_sms_code(&tn, &request.card_number).await {
        Ok(sent) => (StatusCode::OK, axum::Json(sent)).into_response(),
        Err(error) => pay_error(&error),
    }
}

/// A payment-control error as JSON `{code, message}` with its HTTP status.
fn pay_error(error: &PayError) -> Response {
    let status = match error {
        PayError::UnknownTn => StatusCode::NOT_FOUND,
        PayError::NotPayable(_) | PayError::TimedOut | PayError::DiscountChanged => {
            StatusCode::CONFLICT
        }
        PayError::TooManyTries | PayError::SmsTooSoon(_) | PayError::TooManySmsCodes => {
            StatusCode::TOO_MANY_REQUESTS
        }
        PayError::NetworkNotReady | PayError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    json_error(status, error.code(), &error.to_string())
}

fn raw(body: String) -> Response {
    ([(CONTENT_TYPE, "text/plain;charset=UTF-8")], body).into_response()
}

impl Gateway {
    /// The signed answer to one request body.
    pub async fn handle(&self, endpoint: Endpoint, body: &[u8]) -> String {
        let form = match Form::parse_urlencoded(body) {
            Ok(form) => form,
            Err(error) => {
                return self.answer(None, RespCode::FormatError, &error.to_string(), Form::new());
            }
        };
        match self.admit(&form).await {
            Ok((header, merchant)) => {
                let outcome = match endpoint {
                    Endpoint::AppTrans => self.consume(&form, &header, &merchant).await,
                    Endpoint::QueryTrans => self.query(&form, &merchant).await,
                    Endpoint::BackTrans => self.back_trans(&form, &header, &merchant).await,
                    Endpoint::FileTrans => self.file_transfer(&form).await,
                };
                outcome.unwrap_or_else(|refusal| self.refusal(Some(&form), &refusal))
            }
            Err(refusal) => self.refusal(Some(&form), &refusal),
        }
    }

    /// A browser consume (`frontTransReq.do`): the TN of its order, or why it was refused.
    pub async fn front(&self, body: &[u8]) -> Result<String, Refusal> {
        let form = Form::parse_urlencoded(body)
            .map_err(|error| refuse(RespCode::FormatError, error.to_string()))?;
        let (header, merchant) = self.admit(&form).await?;
        self.front_consume(&form, &header, &merchant).await
    }

    /// The header read, the merchant found and the signature verified.
    async fn admit(&self, form: &Form) -> Result<(Header, Arc<Merchant>), Refusal> {
        let header = request::header(form)?;
        let merchant = self
            .merchant(&header.mer_id)
            .await
            .map_err(crate::consume::store_failure)?
            .ok_or_else(|| {
                refuse(
                    RespCode::MerchantStatus,
                    "merId is not a merchant of this gateway",
                )
            })?;
        if let Err(refusal) = self.verify(form, &merchant, header.sign_method) {
            if refusal.code == RespCode::BadSignature {
                self.certify(
                    &merchant.mer_id,
                    crate::certification::Case::BadSignatureRefused,
                )
                .await;
            }
            return Err(refusal);
        }
        Ok((header, merchant))
    }

    fn verify(&self, form: &Form, merchant: &Merchant, method: SignMethod) -> Result<(), Refusal> {
        let certificate = match method {
            SignMethod::Rsa => {
                let certificate = merchant.certificate.as_ref().ok_or_else(|| {
                    refuse(
                        RespCode::BadSignature,
                        "the merchant has no certificate for signMethod 01",
                    )
                })?;
                if form.get("certId") != Some(certificate.cert_id().as_str()) {
                    return Err(refuse(
                        RespCode::BadSignature,
                        "certId is not the merchant's certificate",
                    ));
                }
                Some(certificate)
            }
            SignMethod::SecureKeySha256 | SignMethod::SecureKeySm3 => {
                if merchant.secure_key.is_none() {
                    return Err(refuse(
                        RespCode::BadSignature,
                        "the merchant has no secure key for signMethod 11 or 12",
                    ));
                }
                None
            }
        };
        let trust = Trust {
            known_certificate: certificate,
            secure_key: merchant.secure_key.as_ref().map(|key| key.as_slice()),
            at: self.now_seconds(),
            ..Trust::default()
        };
        let report = signing::verify(form, &trust);
        match report.failures().first() {
            None => Ok(()),
            Some(&"validity") => Err(refuse(
                RespCode::BadSignature,
                "the merchant's certificate is outside its validity dates",
            )),
            Some(_) => Err(refuse(
                RespCode::BadSignature,
                "the signature does not match the request",
            )),
        }
    }
}

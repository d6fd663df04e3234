//! The UPACP endpoints on the HTTP port: form posts in (`application/x-www-form-urlencoded`,
//! UTF-8, at most [`MAX_BODY_BYTES`]), raw signed forms out. Every request passes the same
//! gate — form, header, merchant, signature — before its flow runs.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cloudpass_http::json_error;
use cloudpass_upacp::Form;
use cloudpass_upacp::code::RespCode;
use cloudpass_upacp::request::{self, Header, Refusal};
use cloudpass_upacp::signing::{self, SignMethod, Trust};

use crate::merchant::Merchant;
use crate::{Gateway, PayError, PayRequest};

pub const APP_TRANS_PATH: &str = "/gateway/api/appTransReq.do";
pub const QUERY_TRANS_PATH: &str = "/gateway/api/queryTrans.do";
pub const BACK_TRANS_PATH: &str = "/gateway/api/backTransReq.do";
/// File transfer (txnType 76): what integrators set `fileTransUrl` to.
pub const FILE_TRANS_PATH: &str = "/gateway/file/";
/// The payment control's JSON API: `POST` a [`crate::PayRequest`] to pay the TN.
pub const PAY_PATH: &str = "/gateway/pay/{tn}";
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
        .route(QUERY_TRANS_PATH, post(query_trans))
        .route(BACK_TRANS_PATH, post(back_trans))
        .route(FILE_TRANS_PATH, post(file_trans))
        .route(PAY_PATH, post(pay))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(gateway)
}

async fn app_trans(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    raw(gateway.handle(Endpoint::AppTrans, &body).await)
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
        Err(error) => {
            let status = match error {
                PayError::UnknownTn => StatusCode::NOT_FOUND,
                PayError::NotPayable(_) | PayError::TimedOut => StatusCode::CONFLICT,
                PayError::TooManyTries => StatusCode::TOO_MANY_REQUESTS,
                PayError::NetworkNotReady | PayError::Unavailable => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            json_error(status, error.code(), &error.to_string())
        }
    }
}

fn raw(body: String) -> Response {
    ([(CONTENT_TYPE, "text/plain;charset=UTF-8")], body).into_response()
}

fn refuse(code: RespCode, detail: &str) -> Refusal {
    Refusal {
        code,
        detail: detail.to_owned(),
    }
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
        match self.admit(&form) {
            Ok((header, merchant)) => {
                let outcome = match endpoint {
                    Endpoint::AppTrans => self.consume(&form, &header, merchant).await,
                    Endpoint::QueryTrans => self.query(&form, merchant).await,
                    Endpoint::BackTrans => self.back_trans(&form, &header, merchant).await,
                    Endpoint::FileTrans => self.file_transfer(&form).await,
                };
                outcome.unwrap_or_else(|refusal| self.refusal(Some(&form), &refusal))
            }
            Err(refusal) => self.refusal(Some(&form), &refusal),
        }
    }

    /// The header read, the merchant found and the signature verified.
    fn admit<'g>(&'g self, form: &Form) -> Result<(Header, &'g Merchant), Refusal> {
        let header = request::header(form)?;
        let merchant = self.merchants.get(&header.mer_id).ok_or_else(|| {
            refuse(
                RespCode::MerchantStatus,
                "merId is not a merchant of this gateway",
            )
        })?;
        self.verify(form, merchant, header.sign_method)?;
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

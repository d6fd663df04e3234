//! Every error as JSON `{code, message}`, including the ones the framework makes by itself:
//! an unknown path (404), a known path with another method (405), a body over the limit
//! (413), a path parameter that does not parse (400), and so on. The framework's own texts
//! can quote the request (``Cannot parse `…` to a `u32` ``); they are replaced whole, never
//! passed on.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The stable code and the message for an error the framework made, by status.
pub fn describe_status(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("INVALID_REQUEST", "the request could not be read"),
        StatusCode::UNAUTHORIZED => ("UNAUTHORIZED", "missing or unknown credentials"),
        StatusCode::FORBIDDEN => ("FORBIDDEN", "these credentials may not do this"),
        StatusCode::NOT_FOUND => ("NOT_FOUND", "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "METHOD_NOT_ALLOWED",
            "this endpoint does not take that method",
        ),
        StatusCode::REQUEST_TIMEOUT => ("REQUEST_TIMEOUT", "the request was not received in time"),
        StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "UNSUPPORTED_MEDIA_TYPE",
            "the request body is not in a format this endpoint reads",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => ("INVALID_REQUEST", "the request could not be read"),
        StatusCode::TOO_MANY_REQUESTS => ("TOO_MANY_REQUESTS", "too many requests; retry later"),
        StatusCode::SERVICE_UNAVAILABLE => ("UNAVAILABLE", "the service is busy; retry later"),
        status if status.is_client_error() => ("INVALID_REQUEST", "the request was refused"),
        _ => ("INTERNAL", "internal error"),
    }
}

/// Every JSON error's body: a stable code and a message for people (never the value the
/// request was refused for).
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// A JSON error response.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(ErrorBody {
            code: code.to_owned(),
            message: message.to_owned(),
        }),
    )
        .into_response()
}

/// The JSON error for `status`, in the words of [`describe_status`].
pub fn status_error(status: StatusCode) -> Response {
    let (code, message) = describe_status(status);
    json_error(status, code, message)
}

/// An error we wrote ourselves: JSON for APIs, or an HTML page for a person (the hosted
/// payment page). The framework's own errors are plain text.
fn is_ours(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("text/html")
        })
}

/// Replaces an error response that is not ours (the framework's plain text) with the JSON
/// error for its status; our JSON errors and HTML error pages pass through, and so does a
/// 405's `Allow`.
async fn errors_as_json(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_ours(&response) {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut replaced = status_error(status);
    if let Some(allow) = allow {
        replaced.headers_mut().insert(header::ALLOW, allow);
    }
    replaced
}

/// `router` with every error in JSON: unknown paths answer 404 `NOT_FOUND`, wrong methods
/// 405 `METHOD_NOT_ALLOWED`, and every other error the framework makes by itself (413 from a
/// body limit, 400 from a path parameter, …) its JSON equivalent.
pub fn with_json_errors<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .fallback(|| async { status_error(StatusCode::NOT_FOUND) })
        .layer(axum::middleware::map_response(errors_as_json))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::{Body, Bytes};
    use axum::extract::{DefaultBodyLimit, Path};
    use axum::http::Request;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn app() -> Router {
        with_json_errors(
            Router::new()
                .route(
                    "/items/{id}",
                    get(|Path(id): Path<u32>| async move { id.to_string() }),
                )
                .route(
                    "/upload",
                    post(|body: Bytes| async move { body.len().to_string() }),
                )
                .route(
                    "/page",
                    get(|| async {
                        (
                            StatusCode::NOT_FOUND,
                            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                            "<p>no such payment</p>",
                        )
                    }),
                )
                .layer(DefaultBodyLimit::max(16)),
        )
    }

    async fn call(
        method: &str,
        uri: &str,
        body: &'static str,
    ) -> (StatusCode, String, Option<String>) {
        let response = app()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let allow = response
            .headers()
            .get(header::ALLOW)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap(), allow)
    }

    #[tokio::test]
    async fn framework_errors_are_json_and_quote_nothing() {
        let (status, body, _) = call("GET", "/nowhere/6200000000000000005", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, r#"{"code":"NOT_FOUND","message":"no such endpoint"}"#);

        let (status, body, allow) = call("DELETE", "/items/1", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body.contains(r#""code":"METHOD_NOT_ALLOWED""#), "{body}");
        assert!(allow.unwrap().contains("GET"));

        let (status, body, _) = call("POST", "/upload", "6200000000000000005 is too long").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains(r#""code":"PAYLOAD_TOO_LARGE""#), "{body}");

        let (status, body, _) = call("GET", "/items/6200000000000000005x", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(!body.contains("6200000000000000005"), "{body}");
        assert!(body.contains(r#""code":"INVALID_REQUEST""#), "{body}");

        let (status, body, _) = call("GET", "/items/7", "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "7"));

        // An HTML error page of our own is kept as it is.
        let (status, body, _) = call("GET", "/page", "").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, "<p>no such payment</p>")
        );
    }
}

//! The headers every server-rendered page of the platform carries (the app, the phone
//! simulator, the console, the demo institution): never stored, never framed, no referrer
//! (addresses carry TNs), no content sniffing, and a content security policy that lets a page
//! load only its own styles — and its own scripts where it has any — and post only to itself.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Cookie values longer than this are not ours and are ignored.
const COOKIE_VALUE_MAX: usize = 128;

/// Whether a page runs script of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scripts {
    None,
    /// Scripts from the page's own origin, which may call back to it.
    OwnOrigin,
}

const WITHOUT_SCRIPTS: &str = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const WITH_OWN_SCRIPTS: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Sets the page headers on `headers`.
pub fn secure_page(headers: &mut HeaderMap, scripts: Scripts) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(match scripts {
            Scripts::None => WITHOUT_SCRIPTS,
            Scripts::OwnOrigin => WITH_OWN_SCRIPTS,
        }),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// A rendered page (`rendered`: a template's output) as an answer with the page headers; a
/// template that failed is logged under `what` and answered `500` without its details.
pub fn html<E: std::fmt::Display>(
    status: StatusCode,
    rendered: Result<String, E>,
    scripts: Scripts,
    what: &str,
) -> Response {
    let mut response = match rendered {
        Ok(html) => (status, html).into_response(),
        Err(error) => {
            tracing::error!(error = %error, page = what, "a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "This page could not be shown.",
            )
                .into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_page(headers, scripts);
    response
}

/// The value of the cookie `name` in a `Cookie` header's text, when it is there, not empty and
/// not longer than any cookie of ours.
pub fn cookie_in<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty() && value.len() <= COOKIE_VALUE_MAX)
}

/// The value of the cookie `name` in a request's headers (see [`cookie_in`]).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookie_in(headers.get(COOKIE).and_then(|v| v.to_str().ok()), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_run_scripts_only_when_they_say_so() {
        let mut headers = HeaderMap::new();
        secure_page(&mut headers, Scripts::None);
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(!policy.contains("script-src") && policy.contains("frame-ancestors 'none'"));
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        secure_page(&mut headers, Scripts::OwnOrigin);
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'"));
    }

    #[test]
    fn cookies_are_found_by_name_and_bounded() {
        let header = Some("a=1; cp_lang=en ; empty=; long=".to_owned() + &"x".repeat(200));
        assert_eq!(cookie_in(header.as_deref(), "cp_lang"), Some("en"));
        assert_eq!(cookie_in(header.as_deref(), "a"), Some("1"));
        assert_eq!(cookie_in(header.as_deref(), "empty"), None);
        assert_eq!(cookie_in(header.as_deref(), "long"), None);
        assert_eq!(cookie_in(header.as_deref(), "missing"), None);
        assert_eq!(cookie_in(None, "a"), None);
    }

    #[test]
    fn a_page_that_cannot_render_is_a_500_with_the_page_headers() {
        let failed = html(StatusCode::OK, Err("boom"), Scripts::None, "test");
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failed.headers()[CACHE_CONTROL], "no-store");
        let shown = html::<&str>(
            StatusCode::OK,
            Ok("<p>hi</p>".into()),
            Scripts::None,
            "test",
        );
        assert_eq!(shown.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    }
}

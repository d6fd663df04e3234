//! The headers every server-rendered page of the platform carries (the app, the phone
//! simulator, the console, the demo institution): never stored, never framed, no referrer
//! (addresses carry TNs), no content sniffing, and a content security policy that lets a page
//! load only its own styles — and its own scripts where it has any — and post only to itself.

use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderValue};

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
}

//! The payment SDK's side of the app (`/sdk/…`): the script an institution's H5 page loads,
//! the address `CloudPass.startPay` sends the payer to, which picks the flow, the app's
//! cashier, and the way back to the institution's page with the synchronous result.
//!
//! The flow, decided here and nowhere else:
//! - the app is installed on this phone (the phone simulator's per-browser setting) and
//!   logged in → control pay, the app's confirm screen (`/wallet/pay?tn=…&return=…`);
//! - installed, not logged in → the cashier (`/wallet/cashier`): pay by card number on the
//!   gateway's hosted page, or log in and pay with a bound card;
//! - not installed → WAP pay on the gateway's hosted page, which refuses merchants without
//!   the SDK-WAP permission.
//!
//! `/sdk/start` answers a page of our own that moves on to `/sdk/route`: the app's cookies are
//! `SameSite=Strict`, so a browser sends them only on a navigation a page of this site
//! started, not on the institution's own link.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cloudpass_gateway::PayError;
use cloudpass_gateway::sdk::{self, SdkFlow, SdkOrder, SdkOutcome, SdkVisit};

use crate::Wallet;
use crate::http::{Visit, signed_in};
use crate::session::{self, APP_INSTALLED_COOKIE};
use crate::texts::Texts;

/// `?tn=…&mode=…&return=…`, as `CloudPass.startPay` sends them.
#[derive(serde::Deserialize)]
pub(crate) struct StartQuery {
    tn: Option<String>,
    mode: Option<String>,
    #[serde(rename = "return")]
    return_url: Option<String>,
    lang: Option<String>,
}

/// Where the payer goes after `/sdk/route`.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    ControlPay,
    Cashier,
    Wap,
}

/// The flow for a browser: the app's flows when it is installed, WAP pay when not.
fn route(installed: bool, logged_in: bool) -> Route {
    match (installed, logged_in) {
        (true, true) => Route::ControlPay,
        (true, false) => Route::Cashier,
        (false, _) => Route::Wap,
    }
}

/// Whether this browser has the app installed (the phone simulator's setting).
pub(crate) fn app_installed(headers: &HeaderMap) -> bool {
    let cookies = headers.get(COOKIE).and_then(|v| v.to_str().ok());
    session::cookie(cookies, APP_INSTALLED_COOKIE) == Some("1")
}

/// `GET /sdk/cloudpass.js`: the SDK, loaded by institutions' pages from any site.
pub(crate) async fn script() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../static/cloudpass.js"),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "sdk_start.html")]
struct StartPage<'a> {
    t: &'a Texts,
    next: String,
}

#[derive(Template)]
#[template(path = "sdk_problem.html")]
struct ProblemPage<'a> {
    t: &'a Texts,
    message: &'a str,
    /// The institution's page, with `pay_result=fail`, when it gave a valid one.
    back: Option<String>,
}

#[derive(Template)]
#[template(path = "cashier.html")]
struct CashierPage<'a> {
    t: &'a Texts,
    order: SdkOrder,
    amount: String,
    return_url: String,
    by_card: String,
    log_in: String,
    cancel: String,
}

/// `GET /sdk/start`: a page of this site that moves on to `/sdk/route` with the same query.
pub(crate) async fn start(
    State(wallet): State<Arc<Wallet>>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&wallet, &headers, query.lang.as_deref());
    let next = format!(
        "/sdk/route?tn={}&mode={}&return={}",
        encode(query.tn.as_deref().unwrap_or_default()),
        encode(query.mode.as_deref().unwrap_or_default()),
        encode(query.return_url.as_deref().unwrap_or_default()),
    );
    let t = visit.texts();
    visit.page(StatusCode::OK, &StartPage { t, next })
}

/// `GET /sdk/route`: checks what the institution's page sent and sends the payer on.
pub(crate) async fn route_payer(
    State(wallet): State<Arc<Wallet>>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let (visit, return_url) = match checked_visit(&wallet, &headers, &query) {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    let t = visit.texts();
    let failed = sdk::return_link(&return_url, "fail", None);
    match query.mode.as_deref() {
        Some("01") => {}
        Some("00") => {
            return problem(
                visit,
                StatusCode::CONFLICT,
                t.sdk_production_mode,
                Some(failed),
            );
        }
        _ => return problem(visit, StatusCode::BAD_REQUEST, t.sdk_bad_mode, Some(failed)),
    }
    let tn = query.tn.unwrap_or_default();
    let Some(gateway) = wallet.app_pay.gateway.as_ref() else {
        return problem(
            visit,
            StatusCode::SERVICE_UNAVAILABLE,
            t.sdk_no_gateway,
            Some(failed),
        );
    };
    if let Err(error) = gateway.sdk_order(&tn).await {
        return order_problem(visit, gateway, &tn, &return_url, &error).await;
    }
    let installed = app_installed(&headers);
    let logged_in = installed && signed_in(&wallet, &headers).await.is_some();
    let to = match route(installed, logged_in) {
        Route::ControlPay => app_address("/wallet/pay", &tn, &return_url),
        Route::Cashier => app_address("/wallet/cashier", &tn, &return_url),
        Route::Wap => hosted_page(&tn, SdkFlow::Wap, &return_url),
    };
    visit.redirect(&to, None)
}

/// A TN the SDK cannot pay: back to the institution at once when its order already has a
/// result (paid in another tab, say), else a page that says so with the way back.
async fn order_problem(
    visit: Visit,
    gateway: &cloudpass_gateway::Gateway,
    tn: &str,
    return_url: &str,
    error: &PayError,
) -> Response {
    let t = visit.texts();
    if let Ok(outcome @ SdkOutcome::Known(..)) = gateway.sdk_outcome(tn).await {
        return visit.redirect(&outcome.return_link(return_url), None);
    }
    let (status, message) = match error {
        PayError::NetworkNotReady | PayError::Unavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, t.sdk_no_gateway)
        }
        _ => (StatusCode::NOT_FOUND, t.pay_no_order),
    };
    let failed = sdk::return_link(return_url, "fail", None);
    problem(visit, status, message, Some(failed))
}

/// The visit of an SDK address with the institution's page it names, or the page that
/// refuses a return address that is not one (with no way back: there is none to trust).
fn checked_visit(
    wallet: &Wallet,
    headers: &HeaderMap,
    query: &StartQuery,
) -> Result<(Visit, String), Response> {
    let visit = Visit::read(wallet, headers, query.lang.as_deref());
    match query.return_url.as_deref() {
        Some(url) if sdk::return_url_is_valid(url) => Ok((visit, url.to_owned())),
        _ => {
            let t = visit.texts();
            Err(problem(
                visit,
                StatusCode::BAD_REQUEST,
                t.sdk_bad_return,
                None,
            ))
        }
    }
}

fn problem(visit: Visit, status: StatusCode, message: &str, back: Option<String>) -> Response {
    let t = visit.texts();
    visit.page(status, &ProblemPage { t, message, back })
}

/// `GET /wallet/cashier?tn=…&return=…`: the app installed but not logged in.
pub(crate) async fn cashier(
    State(wallet): State<Arc<Wallet>>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let (visit, return_url) = match checked_visit(&wallet, &headers, &query) {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    let t = visit.texts();
    let tn = query.tn.unwrap_or_default();
    let Some(gateway) = wallet.app_pay.gateway.as_ref() else {
        let failed = sdk::return_link(&return_url, "fail", None);
        return problem(
            visit,
            StatusCode::SERVICE_UNAVAILABLE,
            t.sdk_no_gateway,
            Some(failed),
        );
    };
    let order = match gateway.sdk_order(&tn).await {
        Ok(order) => order,
        Err(error) => return order_problem(visit, gateway, &tn, &return_url, &error).await,
    };
    let control_pay = app_address("/wallet/pay", &tn, &return_url);
    if signed_in(&wallet, &headers).await.is_some() {
        return visit.redirect(&control_pay, None);
    }
    let page = CashierPage {
        t,
        amount: format!("{} CNY", order.amount.to_decimal_string()),
        by_card: hosted_page(&tn, SdkFlow::Cashier, &return_url),
        log_in: format!("/wallet/login?next={}", encode(&control_pay)),
        cancel: return_address(&tn, &return_url),
        return_url,
        order,
    };
    visit.page(StatusCode::OK, &page)
}

/// `GET /sdk/return?tn=…&return=…`: back to the institution's page with the order's result
/// as it stands now (signed), from the app's cancel and done links.
pub(crate) async fn back_to_merchant(
    State(wallet): State<Arc<Wallet>>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let (visit, return_url) = match checked_visit(&wallet, &headers, &query) {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    let t = visit.texts();
    let tn = query.tn.unwrap_or_default();
    let outcome = match wallet.app_pay.gateway.as_ref() {
        Some(gateway) => gateway.sdk_outcome(&tn).await.ok(),
        None => None,
    };
    // Only an order's TN sends anyone anywhere: without one this would redirect to any
    // address for anybody.
    match outcome {
        Some(outcome) => visit.redirect(&outcome.return_link(&return_url), None),
        None => problem(visit, StatusCode::NOT_FOUND, t.pay_no_order, None),
    }
}

/// An app page of `tn` that goes back to `return_url` when done.
pub(crate) fn app_address(path: &str, tn: &str, return_url: &str) -> String {
    format!("{path}?tn={}&return={}", encode(tn), encode(return_url))
}

/// The way back from the app to the institution's page, through `/sdk/return`.
pub(crate) fn return_address(tn: &str, return_url: &str) -> String {
    app_address("/sdk/return", tn, return_url)
}

fn hosted_page(tn: &str, flow: SdkFlow, return_url: &str) -> String {
    let visit = SdkVisit {
        flow,
        return_url: return_url.to_owned(),
    };
    format!("/gateway/pay/{}{}", encode(tn), visit.query())
}

pub(crate) fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_follows_installed_and_logged_in() {
        assert_eq!(route(true, true), Route::ControlPay);
        assert_eq!(route(true, false), Route::Cashier);
        assert_eq!(route(false, true), Route::Wap);
        assert_eq!(route(false, false), Route::Wap);
    }

    #[test]
    fn installed_is_the_cookie_set_to_1() {
        let mut headers = HeaderMap::new();
        assert!(!app_installed(&headers));
        headers.insert(
            COOKIE,
            "cp_wallet_lang=en; cp_app_installed=0".parse().unwrap(),
        );
        assert!(!app_installed(&headers));
        headers.insert(
            COOKIE,
            "cp_wallet_lang=en; cp_app_installed=1".parse().unwrap(),
        );
        assert!(app_installed(&headers));
    }

    #[test]
    fn addresses_keep_the_return_page_whole() {
        let link = app_address("/wallet/pay", "123", "https://shop.example/r?a=1&b=2");
        assert_eq!(
            link,
            "/wallet/pay?tn=123&return=https%3A%2F%2Fshop.example%2Fr%3Fa%3D1%26b%3D2"
        );
        assert_eq!(
            hosted_page("123", SdkFlow::Wap, "https://shop.example/r"),
            "/gateway/pay/123?sdk_flow=wap&sdk_return=https%3A%2F%2Fshop.example%2Fr"
        );
    }
}

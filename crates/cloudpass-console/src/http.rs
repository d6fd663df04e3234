//! The console's pages. Every page but the login needs an operator's session; every page is
//! `no-store`, never framed, runs no script and posts only to itself.

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cloudpass_gateway::certification::{Certification, MerchantSummary};
use cloudpass_http::PeerAddr;
use cloudpass_store::{GatewayStore, TokenStore};
use subtle::ConstantTimeEq;

use crate::views::{self, Count, HistoryLine, JournalLine, NotificationLine, OrderLine, TokenLine};
use crate::{COUNTED_ROWS, Console, LIST_ROWS};

const SESSION_COOKIE: &str = "cp_console";

pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(overview))
        .route("/console/login", get(login_page).post(log_in))
        .route("/console/logout", post(log_out))
        .route("/console/orders", get(orders))
        .route("/console/orders/{tn}", get(order))
        .route("/console/journal", get(journal))
        .route("/console/tokens", get(tokens))
        .route("/console/tokens/{id}", get(token))
        .route("/console/notifications", get(notifications))
        .route("/console/merchants", get(merchants))
        .route("/console/merchants/{mer_id}", get(merchant))
        .route("/console/static/console.css", get(style))
        .with_state(console)
}

fn page(status: StatusCode, template: &impl Template) -> Response {
    let Ok(html) = template.render() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "This page could not be shown.",
        )
            .into_response();
    };
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn redirect(to: &'static str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_static(to));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(SET_COOKIE, value);
    }
    response
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(COOKIE)?
        .to_str()
        .ok()?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Whether the request comes from a signed-in operator.
fn operator(console: &Console, headers: &HeaderMap) -> bool {
    let now = console.clock.now_millis();
    session_cookie(headers).is_some_and(|token| console.sessions.valid(token, now))
}

/// Whether a posted form came from a page of this site (the browser's `Sec-Fetch-Site`).
fn from_this_site(headers: &HeaderMap) -> bool {
    !matches!(
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        Some("cross-site" | "same-site")
    )
}

/// The page of a signed-in operator, or the way to the login.
macro_rules! signed_in {
    ($console:expr, $headers:expr) => {
        if !operator(&$console, &$headers) {
            return redirect("/console/login", None);
        }
    };
}

#[derive(Template)]
#[template(path = "console_login.html")]
struct LoginPage {
    nav: &'static str,
    error: Option<&'static str>,
}

async fn login_page() -> Response {
    page(
        StatusCode::OK,
        &LoginPage {
            nav: "",
            error: None,
        },
    )
}

async fn log_in(
    State(console): State<Arc<Console>>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = console.clock.now_millis();
    let address = peer.map(|Extension(PeerAddr(peer))| peer.ip());
    if !from_this_site(&headers) {
        let error = Some("This form can only be posted from the console's login page.");
        return page(StatusCode::FORBIDDEN, &LoginPage { nav: "", error });
    }
    if address.is_some_and(|a| console.login_throttle.blocked(a, now)) {
        let error = Some("Too many failed logins from this address; wait a minute and try again.");
        return page(StatusCode::TOO_MANY_REQUESTS, &LoginPage { nav: "", error });
    }
    let key = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "operator_key")
        .map(|(_, value)| zeroize::Zeroizing::new(value.trim().to_owned()))
        .unwrap_or_default();
    let expected = console.operator_key.as_bytes();
    if key.is_empty() || !bool::from(key.as_bytes().ct_eq(expected)) {
        if let Some(address) = address {
            console.login_throttle.record_failure(address, now);
        }
        let error = Some(
            "That is not the operator key. It is in sandbox-operator.key in the data directory.",
        );
        return page(StatusCode::UNAUTHORIZED, &LoginPage { nav: "", error });
    }
    let token = console.sessions.open(console.random.as_ref(), now);
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/console; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        crate::sessions::SESSION_MILLIS / 1_000
    );
    redirect("/console", Some(cookie))
}

async fn log_out(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if from_this_site(&headers)
        && let Some(token) = session_cookie(&headers)
    {
        console.sessions.close(token);
    }
    let cookie =
        format!("{SESSION_COOKIE}=; Path=/console; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
    redirect("/console/login", Some(cookie))
}

/// The page that says the store could not be read.
#[derive(Template)]
#[template(path = "console_problem.html")]
struct ProblemPage {
    nav: &'static str,
    message: String,
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    page(status, &ProblemPage { nav: "", message })
}

fn unavailable(error: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %error, "console: the store could not be read");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "The platform's store could not be read; reload in a moment.",
    )
}

#[derive(Template)]
#[template(path = "console_overview.html")]
struct OverviewPage {
    nav: &'static str,
    now: String,
    orders: Vec<Count>,
    journal: Vec<Count>,
    notifications: Vec<Count>,
    tokens: Vec<Count>,
    counted: i64,
}

async fn overview(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    signed_in!(console, headers);
    let store = &console.store;
    let (orders, journal, notifications, tokens) = match (
        store.order_counts().await,
        store.recent_journal(COUNTED_ROWS).await,
        store.recent_notifications(COUNTED_ROWS).await,
        store.recent_tokens(COUNTED_ROWS).await,
    ) {
        (Ok(o), Ok(j), Ok(n), Ok(t)) => (o, j, n, t),
        _ => return unavailable("a counter's query failed"),
    };
    let overview = OverviewPage {
        nav: "overview",
        now: views::beijing(console.clock.now_millis()),
        orders,
        journal: views::tally(journal.iter().map(views::journal_result)),
        notifications: views::tally(
            notifications
                .iter()
                .map(|n| views::notification_line(n).state),
        ),
        tokens: views::tally(tokens.iter().map(|t| t.status.as_str())),
        counted: COUNTED_ROWS,
    };
    page(StatusCode::OK, &overview)
}

#[derive(Template)]
#[template(path = "console_orders.html")]
struct OrdersPage {
    nav: &'static str,
    orders: Vec<OrderLine>,
}

async fn orders(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    signed_in!(console, headers);
    match console.store.recent_orders(LIST_ROWS).await {
        Ok(rows) => page(
            StatusCode::OK,
            &OrdersPage {
                nav: "orders",
                orders: rows.iter().map(views::order_line).collect(),
            },
        ),
        Err(error) => unavailable(error),
    }
}

#[derive(Template)]
#[template(path = "console_order.html")]
struct OrderPage {
    nav: &'static str,
    order: OrderLine,
    notifications: Vec<NotificationLine>,
}

async fn order(
    State(console): State<Arc<Console>>,
    Path(tn): Path<String>,
    headers: HeaderMap,
) -> Response {
    signed_in!(console, headers);
    let row = match console.store.order_by_tn(&tn).await {
        Ok(Some(row)) => row,
        Ok(None) => return problem(StatusCode::NOT_FOUND, "No order has this TN."),
        Err(error) => return unavailable(error),
    };
    let notifications = match console.store.notifications_of(&row.tn).await {
        Ok(rows) => rows.iter().map(views::notification_line).collect(),
        Err(error) => return unavailable(error),
    };
    let order = OrderPage {
        nav: "orders",
        order: views::order_line(&row),
        notifications,
    };
    page(StatusCode::OK, &order)
}

#[derive(Template)]
#[template(path = "console_journal.html")]
struct JournalPage {
    nav: &'static str,
    entries: Vec<JournalLine>,
}

async fn journal(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    signed_in!(console, headers);
    match console.store.recent_journal(LIST_ROWS).await {
        Ok(rows) => page(
            StatusCode::OK,
            &JournalPage {
                nav: "journal",
                entries: rows.iter().map(views::journal_line).collect(),
            },
        ),
        Err(error) => unavailable(error),
    }
}

#[derive(Template)]
#[template(path = "console_tokens.html")]
struct TokensPage {
    nav: &'static str,
    tokens: Vec<TokenLine>,
}

async fn tokens(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    signed_in!(console, headers);
    match console.store.recent_tokens(LIST_ROWS).await {
        Ok(rows) => page(
            StatusCode::OK,
            &TokensPage {
                nav: "tokens",
                tokens: rows.iter().map(views::token_line).collect(),
            },
        ),
        Err(error) => unavailable(error),
    }
}

#[derive(Template)]
#[template(path = "console_token.html")]
struct TokenPage {
    nav: &'static str,
    token: TokenLine,
    history: Vec<HistoryLine>,
}

async fn token(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    signed_in!(console, headers);
    let row = match console.store.token(&id).await {
        Ok(Some(row)) => row,
        Ok(None) => return problem(StatusCode::NOT_FOUND, "No token has this id."),
        Err(error) => return unavailable(error),
    };
    match console.store.history(&row.id).await {
        Ok(history) => page(
            StatusCode::OK,
            &TokenPage {
                nav: "tokens",
                token: views::token_line(&row),
                history: history.iter().map(views::history_line).collect(),
            },
        ),
        Err(error) => unavailable(error),
    }
}

#[derive(Template)]
#[template(path = "console_notifications.html")]
struct NotificationsPage {
    nav: &'static str,
    notifications: Vec<NotificationLine>,
}

async fn notifications(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    signed_in!(console, headers);
    match console.store.recent_notifications(LIST_ROWS).await {
        Ok(rows) => page(
            StatusCode::OK,
            &NotificationsPage {
                nav: "notifications",
                notifications: rows.iter().map(views::notification_line).collect(),
            },
        ),
        Err(error) => unavailable(error),
    }
}

#[derive(Template)]
#[template(path = "console_merchants.html")]
struct MerchantsPage {
    nav: &'static str,
    merchants: Vec<MerchantSummary>,
}

async fn merchants(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    signed_in!(console, headers);
    let Some(gateway) = console.gateway.as_ref() else {
        return problem(StatusCode::NOT_FOUND, "This platform runs no gateway.");
    };
    match gateway.merchant_summaries().await {
        Ok(merchants) => page(
            StatusCode::OK,
            &MerchantsPage {
                nav: "merchants",
                merchants,
            },
        ),
        Err(error) => unavailable(error),
    }
}

#[derive(Template)]
#[template(path = "console_merchant.html")]
struct MerchantPage {
    nav: &'static str,
    report: Certification,
    passed_at: Vec<String>,
}

async fn merchant(
    State(console): State<Arc<Console>>,
    Path(mer_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    signed_in!(console, headers);
    let Some(gateway) = console.gateway.as_ref() else {
        return problem(StatusCode::NOT_FOUND, "This platform runs no gateway.");
    };
    match gateway.certification(&mer_id).await {
        Ok(Some(report)) => page(
            StatusCode::OK,
            &MerchantPage {
                nav: "merchants",
                passed_at: report
                    .cases
                    .iter()
                    .map(|c| c.passed_at.map(views::beijing).unwrap_or_default())
                    .collect(),
                report,
            },
        ),
        Ok(None) => problem(StatusCode::NOT_FOUND, "No merchant has this merId."),
        Err(error) => unavailable(error),
    }
}

async fn style() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/console.css"),
    )
        .into_response()
}

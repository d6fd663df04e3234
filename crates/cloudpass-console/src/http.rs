//! The console's pages. Every page but the login needs an operator's session; every page is
//! `no-store`, never framed, runs no script and posts only to itself.

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cloudpass_gateway::Gateway;
use cloudpass_gateway::certification::{Certification, MerchantSummary};
use cloudpass_http::PeerAddr;
use cloudpass_http::pages::{self, Scripts, cookie};
use cloudpass_store::{GatewayStore, TokenStore};
use subtle::ConstantTimeEq;

use crate::views::{self, Count, HistoryLine, JournalLine, NotificationLine, OrderLine, TokenLine};
use crate::words::{Words, words};
use crate::{COUNTED_ROWS, Console, LIST_ROWS};

const SESSION_COOKIE: &str = "cp_console";
const LANGUAGE_COOKIE: &str = "cp_console_lang";

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

/// `?lang=zh|en` on any page: switches the console's language (kept in a cookie).
#[derive(serde::Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

/// The language of a request, and the cookie that keeps a new choice.
struct Visit {
    w: &'static Words,
    set_cookie: Option<String>,
}

impl Visit {
    fn read(headers: &HeaderMap, lang: Option<&str>) -> Visit {
        match lang {
            Some(code @ ("zh" | "en")) => Visit {
                w: words(code),
                set_cookie: Some(format!(
                    "{LANGUAGE_COOKIE}={code}; Path=/console; Max-Age=31536000; HttpOnly; Secure; SameSite=Strict"
                )),
            },
            _ => Visit {
                w: words(cookie(headers, LANGUAGE_COOKIE).unwrap_or("zh")),
                set_cookie: None,
            },
        }
    }
}

fn page(visit: &Visit, status: StatusCode, template: &impl Template) -> Response {
    let mut response = pages::html(status, template.render(), Scripts::None, "console");
    let headers = response.headers_mut();
    if let Some(value) = visit
        .set_cookie
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.append(SET_COOKIE, value);
    }
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
    cookie(headers, SESSION_COOKIE)
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

#[derive(Template)]
#[template(path = "console_login.html")]
struct LoginPage {
    w: &'static Words,
    nav: &'static str,
    error: Option<&'static str>,
}

fn login(visit: &Visit, status: StatusCode, error: Option<&'static str>) -> Response {
    let w = visit.w;
    page(visit, status, &LoginPage { w, nav: "", error })
}

async fn login_page(Query(query): Query<LangQuery>, headers: HeaderMap) -> Response {
    let visit = Visit::read(&headers, query.lang.as_deref());
    login(&visit, StatusCode::OK, None)
}

async fn log_in(
    State(console): State<Arc<Console>>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let visit = Visit::read(&headers, None);
    let now = console.clock.now_millis();
    let address = peer.map(|Extension(PeerAddr(peer))| peer.ip());
    if !from_this_site(&headers) {
        return login(&visit, StatusCode::FORBIDDEN, Some(visit.w.cross_site));
    }
    if address.is_some_and(|a| console.login_throttle.blocked(a, now)) {
        return login(
            &visit,
            StatusCode::TOO_MANY_REQUESTS,
            Some(visit.w.throttled),
        );
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
        return login(&visit, StatusCode::UNAUTHORIZED, Some(visit.w.wrong_key));
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

/// The page that says what could not be shown.
#[derive(Template)]
#[template(path = "console_problem.html")]
struct ProblemPage {
    w: &'static Words,
    nav: &'static str,
    message: &'static str,
}

fn problem(visit: &Visit, status: StatusCode, message: &'static str) -> Response {
    let w = visit.w;
    page(
        visit,
        status,
        &ProblemPage {
            w,
            nav: "",
            message,
        },
    )
}

fn unavailable(visit: &Visit, error: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %error, "console: the store could not be read");
    problem(
        visit,
        StatusCode::SERVICE_UNAVAILABLE,
        visit.w.store_unavailable,
    )
}

/// The visit of a signed-in operator, or the way to the login.
fn operator_visit(
    console: &Console,
    headers: &HeaderMap,
    lang: Option<&str>,
) -> Result<Visit, Response> {
    if operator(console, headers) {
        Ok(Visit::read(headers, lang))
    } else {
        Err(redirect("/console/login", None))
    }
}

/// An operator's page, or the answer that stands instead of it: the way to the login, a
/// page that says what is not there, the store's trouble.
type Answer = Result<Response, Response>;

#[derive(Template)]
#[template(path = "console_overview.html")]
struct OverviewPage {
    w: &'static Words,
    nav: &'static str,
    now: String,
    orders: Vec<Count>,
    journal: Vec<Count>,
    notifications: Vec<Count>,
    tokens: Vec<Count>,
    counted: i64,
    campaigns: Vec<views::CampaignLine>,
}

async fn overview(
    State(console): State<Arc<Console>>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Answer {
    let visit = operator_visit(&console, &headers, query.lang.as_deref())?;
    let store = &console.store;
    let failed = |error| unavailable(&visit, error);
    let orders = store.order_counts().await.map_err(failed)?;
    let journal = store.recent_journal(COUNTED_ROWS).await.map_err(failed)?;
    let notifications = store
        .recent_notifications(COUNTED_ROWS)
        .await
        .map_err(failed)?;
    let tokens = store.recent_tokens(COUNTED_ROWS).await.map_err(failed)?;
    let campaigns = match &console.gateway {
        Some(gateway) => {
            let spent = gateway
                .campaigns_spent()
                .await
                .map_err(|error| unavailable(&visit, error))?;
            gateway
                .campaigns()
                .iter()
                .zip(spent)
                .map(|(campaign, spent)| views::campaign_line(campaign, spent, visit.w.lang))
                .collect()
        }
        None => Vec::new(),
    };
    let overview = OverviewPage {
        w: visit.w,
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
        campaigns,
    };
    Ok(page(&visit, StatusCode::OK, &overview))
}

#[derive(Template)]
#[template(path = "console_orders.html")]
struct OrdersPage {
    w: &'static Words,
    nav: &'static str,
    orders: Vec<OrderLine>,
}

async fn orders(
    State(console): State<Arc<Console>>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Answer {
    let visit = operator_visit(&console, &headers, query.lang.as_deref())?;
    let rows = console
        .store
        .recent_orders(LIST_ROWS)
        .await
        .map_err(|e| unavailable(&visit, e))?;
    let orders = OrdersPage {
        w: visit.w,
        nav: "orders",
        orders: rows.iter().map(views::order_line).collect(),
    };
    Ok(page(&visit, StatusCode::OK, &orders))
}

#[derive(Template)]
#[template(path = "console_order.html")]
struct OrderPage {
    w: &'static Words,
    nav: &'static str,
    order: OrderLine,
    notifications: Vec<NotificationLine>,
}

async fn order(
    State(console): State<Arc<Console>>,
    Path(tn): Path<String>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Answer {
    let visit = operator_visit(&console, &headers, query.lang.as_deref())?;
    let row = console
        .store
        .order_by_tn(&tn)
        .await
        .map_err(|e| unavailable(&visit, e))?
        .ok_or_else(|| problem(&visit, StatusCode::NOT_FOUND, visit.w.no_such_order))?;
    let notifications = console
        .store
        .notifications_of(&row.tn)
        .await
        .map_err(|e| unavailable(&visit, e))?;
    let order = OrderPage {
        w: visit.w,
        nav: "orders",
        order: views::order_line(&row),
        notifications: notifications.iter().map(views::notification_line).collect(),
    };
    Ok(page(&visit, StatusCode::OK, &order))
}

#[derive(Template)]
#[template(path = "console_journal.html")]
struct JournalPage {
    w: &'static Words,
    nav: &'static str,
    entries: Vec<JournalLine>,
}

async fn journal(
    State(console): State<Arc<Console>>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Answer {
    let visit = operator_visit(&console, &headers, query.lang.as_deref())?;
    let rows = console
        .store
        .recent_journal(LIST_ROWS)
        .await
        .map_err(|e| unavailable(&visit, e))?;
    let journal = JournalPage {
        w: visit.w,
        nav: "journal",
        entries: rows.iter().map(views::journal_line).collect(),
    };
    Ok(page(&visit, StatusCode::OK, &journal))
}

#[derive(Template)]
#[template(path = "console_tokens.html")]
struct TokensPage {
    w: &'static Words,
    nav: &'static str,
    tokens: Vec<TokenLine>,
}

async fn tokens(
    State(console): State<Arc<Console>>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Answer {
    let visit = operator_visit(&console, &headers, query.lang.as_deref())?;
    let rows = console
        .store
        .recent_tokens(LIST_ROWS)
        .await
        .map_err(|e| unavailable(&visit, e))?;
    let tokens = TokensPage {
        w: visit.w,
        nav: "tokens",
        tokens: rows.iter().map(views::token_line).collect(),
    };
    Ok(page(&visit, StatusCode::OK, &tokens))
}

#[derive(Template)]
#[template(path = "console_token.html")]
struct TokenPage {
    w: &'static Words,
    nav: &'static str,
    token: TokenLine,
    history: Vec<HistoryLine>,
}

async fn token(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Answer {
    let visit = operator_visit(&console, &headers, query.lang.as_deref())?;
    let row = console
        .store
        .token(&id)
        .await
        .map_err(|e| unavailable(&visit, e))?
        .ok_or_else(|| problem(&visit, StatusCode::NOT_FOUND, visit.w.no_such_token))?;
    let history = console
        .store
        .history(&row.id)
        .await
        .map_err(|e| unavailable(&visit, e))?;
    let token = TokenPage {
        w: visit.w,
        nav: "tokens",
        token: views::token_line(&row),
        history: history.iter().map(views::history_line).collect(),
    };
    Ok(page(&visit, StatusCode::OK, &token))
}

#[derive(Template)]
#[template(path = "console_notifications.html")]
struct NotificationsPage {
    w: &'static Words,
    nav: &'static str,
    notifications: Vec<NotificationLine>,
}

async fn notifications(
    State(console): State<Arc<Console>>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Answer {
    let visit = operator_visit(&console, &headers, query.lang.as_deref())?;
    let rows = console
        .store
        .recent_notifications(LIST_ROWS)
        .await
        .map_err(|e| unavailable(&visit, e))?;
    let notifications = NotificationsPage {
        w: visit.w,
        nav: "notifications",
        notifications: rows.iter().map(views::notification_line).collect(),
    };
    Ok(page(&visit, StatusCode::OK, &notifications))
}

/// The gateway whose merchants the console shows, or the page that says there is none.
fn gateway<'a>(console: &'a Console, visit: &Visit) -> Result<&'a Gateway, Response> {
    console
        .gateway
        .as_deref()
        .ok_or_else(|| problem(visit, StatusCode::NOT_FOUND, visit.w.no_gateway))
}

#[derive(Template)]
#[template(path = "console_merchants.html")]
struct MerchantsPage {
    w: &'static Words,
    nav: &'static str,
    merchants: Vec<MerchantSummary>,
}

async fn merchants(
    State(console): State<Arc<Console>>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Answer {
    let visit = operator_visit(&console, &headers, query.lang.as_deref())?;
    let merchants = gateway(&console, &visit)?
        .merchant_summaries()
        .await
        .map_err(|e| unavailable(&visit, e))?;
    let merchants = MerchantsPage {
        w: visit.w,
        nav: "merchants",
        merchants,
    };
    Ok(page(&visit, StatusCode::OK, &merchants))
}

#[derive(Template)]
#[template(path = "console_merchant.html")]
struct MerchantPage {
    w: &'static Words,
    nav: &'static str,
    report: Certification,
    passed_at: Vec<String>,
}

async fn merchant(
    State(console): State<Arc<Console>>,
    Path(mer_id): Path<String>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Answer {
    let visit = operator_visit(&console, &headers, query.lang.as_deref())?;
    let report = gateway(&console, &visit)?
        .certification(&mer_id)
        .await
        .map_err(|e| unavailable(&visit, e))?
        .ok_or_else(|| problem(&visit, StatusCode::NOT_FOUND, visit.w.no_such_merchant))?;
    let merchant = MerchantPage {
        w: visit.w,
        nav: "merchants",
        passed_at: report
            .cases
            .iter()
            .map(|c| c.passed_at.map(views::beijing).unwrap_or_default())
            .collect(),
        report,
    };
    Ok(page(&visit, StatusCode::OK, &merchant))
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

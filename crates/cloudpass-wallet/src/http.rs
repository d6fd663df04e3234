//! The wallet's pages: plain HTML forms that work without script, in Chinese or English.
//! Every page is `no-store`, never framed, and may post only to itself; every form carries
//! the CSRF token of the `cp_wallet_csrf` cookie (see `session`).

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cloudpass_http::PeerAddr;
use cloudpass_http::pages::{self, Scripts};

use crate::cards::{Binding, BoundCard};
use crate::device_pages;
use crate::session::{self, CSRF_COOKIE, LANGUAGE_COOKIE, SESSION_COOKIE};
use crate::texts::{self, Language, Texts};
use crate::{AccountError, CardError, SignedIn, Wallet};

/// How long the CSRF and language cookies last.
const COOKIE_SECONDS: i64 = 24 * 60 * 60;

pub fn router(wallet: Arc<Wallet>) -> Router {
    Router::new()
        .route("/wallet", get(home))
        .route("/wallet/signup", get(sign_up_page).post(sign_up))
        .route("/wallet/login", get(log_in_page).post(log_in))
        .route("/wallet/logout", axum::routing::post(log_out))
        .route("/wallet/cards/new", get(new_card_page))
        .route("/wallet/cards", axum::routing::post(start_binding))
        .route(
            "/wallet/cards/confirm",
            axum::routing::post(confirm_binding),
        )
        .route("/wallet/cards/remove", axum::routing::post(remove_card))
        .route(
            "/wallet/devices",
            get(device_pages::show).post(device_pages::add_device),
        )
        .route(
            "/wallet/devices/cards",
            axum::routing::post(device_pages::add_card),
        )
        .route(
            "/wallet/devices/code",
            axum::routing::post(device_pages::confirm_code),
        )
        .route(
            "/wallet/devices/card",
            axum::routing::post(device_pages::card_action),
        )
        .route(
            "/wallet/devices/report",
            axum::routing::post(device_pages::report),
        )
        .route(
            "/wallet/pay",
            get(crate::pay_pages::show).post(crate::pay_pages::pay),
        )
        .route(
            "/wallet/tsp/notifications",
            axum::routing::post(crate::notifications::receive),
        )
        .route("/wallet/cashier", get(crate::sdk_pages::cashier))
        .route("/sdk/cloudpass.js", get(crate::sdk_pages::script))
        .route("/sdk/start", get(crate::sdk_pages::start))
        .route("/sdk/route", get(crate::sdk_pages::route_payer))
        .route("/sdk/return", get(crate::sdk_pages::back_to_merchant))
        .route("/wallet/static/wallet.css", get(style))
        .with_state(wallet)
}

/// The sign-up or the log-in form.
#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    t: &'a Texts,
    csrf: &'a str,
    signing_up: bool,
    error: Option<String>,
    /// The app page to go on to after logging in (from the cashier).
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    t: &'a Texts,
    csrf: &'a str,
    phone_masked: String,
    cards: Vec<BoundCard>,
    notice: Option<&'a str>,
}

/// Binding a card: the card's data, or (with `binding`) the code the bank texted.
#[derive(Template)]
#[template(path = "bind.html")]
struct BindPage<'a> {
    t: &'a Texts,
    csrf: &'a str,
    binding: Option<Binding>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "expired.html")]
struct ExpiredPage<'a> {
    t: &'a Texts,
}

/// What every request brings: the language, the CSRF token (made now if the browser had
/// none) and the cookies to set on the answer.
pub(crate) struct Visit {
    pub(crate) language: Language,
    pub(crate) csrf: String,
    set_cookies: Vec<String>,
}

impl Visit {
    pub(crate) fn read(wallet: &Wallet, headers: &HeaderMap, lang: Option<&str>) -> Visit {
        let cookies = headers.get(COOKIE).and_then(|v| v.to_str().ok());
        let mut set_cookies = Vec::new();
        let language = match lang.and_then(Language::parse) {
            Some(chosen) => {
                set_cookies.push(session::set_cookie(
                    LANGUAGE_COOKIE,
                    chosen.code(),
                    COOKIE_SECONDS,
                ));
                chosen
            }
            None => session::cookie(cookies, LANGUAGE_COOKIE)
                .and_then(Language::parse)
                .unwrap_or(Language::Chinese),
        };
        let csrf = match session::cookie(cookies, CSRF_COOKIE) {
            Some(token) => token.to_owned(),
            None => {
                let token = session::new_token(wallet.random.as_ref()).to_string();
                set_cookies.push(session::set_cookie(CSRF_COOKIE, &token, COOKIE_SECONDS));
                token
            }
        };
        Visit {
            language,
            csrf,
            set_cookies,
        }
    }

    pub(crate) fn texts(&self) -> &'static Texts {
        self.language.texts()
    }

    pub(crate) fn page(self, status: StatusCode, template: &impl Template) -> Response {
        self.finish(pages::html(
            status,
            template.render(),
            Scripts::None,
            "wallet",
        ))
    }

    /// A 303 to `to`: a path of this site, or the institution's page the SDK named.
    pub(crate) fn redirect(mut self, to: &str, cookie: Option<String>) -> Response {
        self.set_cookies.extend(cookie);
        let mut response = StatusCode::SEE_OTHER.into_response();
        let location =
            HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/wallet"));
        response.headers_mut().insert(LOCATION, location);
        self.finish(response)
    }

    /// The sign-up (`signing_up`) or log-in form, with what went wrong.
    fn account_page(
        self,
        status: StatusCode,
        signing_up: bool,
        error: Option<String>,
        next: Option<String>,
    ) -> Response {
        let (t, csrf) = (self.texts(), self.csrf.clone());
        let page = AccountPage {
            t,
            csrf: &csrf,
            signing_up,
            error,
            next,
        };
        self.page(status, &page)
    }

    /// The card step (`binding` None) or the code step, with what went wrong.
    fn bind_page(
        self,
        status: StatusCode,
        binding: Option<Binding>,
        error: Option<&CardError>,
    ) -> Response {
        let (t, csrf) = (self.texts(), self.csrf.clone());
        let error = error.map(|error| texts::card_error(self.language, error));
        let page = BindPage {
            t,
            csrf: &csrf,
            binding,
            error,
        };
        self.page(status, &page)
    }

    /// Adds the cookies to set and the headers of every wallet answer.
    fn finish(self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        secure(headers);
        for cookie in self.set_cookies {
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                headers.append(SET_COOKIE, value);
            }
        }
        response
    }
}

/// The headers of every wallet answer.
fn secure(headers: &mut HeaderMap) {
    pages::secure_page(headers, Scripts::None);
}

/// The `?lang=` of a page address, and `bound=1` or `removed=1` after a card was.
#[derive(serde::Deserialize)]
pub(crate) struct PageQuery {
    pub(crate) lang: Option<String>,
    bound: Option<String>,
    removed: Option<String>,
    /// What the last change on the devices page did.
    pub(crate) done: Option<String>,
    /// Where the log-in page goes on to (see [`next_page`]).
    next: Option<String>,
}

/// The page to go on to after logging in: a path of the app's own pages only (`/wallet/…`),
/// never another site.
fn next_page(next: Option<&str>) -> Option<String> {
    let next = next?;
    let safe = next.starts_with("/wallet/")
        && !next.contains("//")
        && !next.contains('\\')
        && next.len() <= 2048
        && next.chars().all(|c| c.is_ascii_graphic());
    safe.then(|| next.to_owned())
}

/// A posted form, read once.
pub(crate) struct PostedForm {
    fields: Vec<(String, String)>,
}

impl PostedForm {
    fn parse(body: &[u8]) -> PostedForm {
        PostedForm {
            fields: form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn text(&self, key: &str) -> &str {
        self.get(key).unwrap_or_default()
    }
}

/// Whether a posted form carries the browser's CSRF token.
fn csrf_ok(headers: &HeaderMap, form: &PostedForm) -> bool {
    let cookies = headers.get(COOKIE).and_then(|v| v.to_str().ok());
    session::csrf_matches(session::cookie(cookies, CSRF_COOKIE), form.get("csrf"))
}

fn expired(visit: Visit) -> Response {
    let t = visit.texts();
    visit.page(StatusCode::FORBIDDEN, &ExpiredPage { t })
}

pub(crate) async fn signed_in(
    wallet: &Wallet,
    headers: &HeaderMap,
) -> Option<(String, crate::SignedIn)> {
    let cookies = headers.get(COOKIE).and_then(|v| v.to_str().ok());
    let token = session::cookie(cookies, SESSION_COOKIE)?;
    match wallet.accounts.signed_in(token).await {
        Ok(Some(person)) => Some((token.to_owned(), person)),
        _ => None,
    }
}

async fn home(
    State(wallet): State<Arc<Wallet>>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&wallet, &headers, query.lang.as_deref());
    let Some((_, person)) = signed_in(&wallet, &headers).await else {
        return visit.redirect("/wallet/login", None);
    };
    let cards = match wallet.cards.list(&person).await {
        Ok(cards) => cards,
        Err(error) => return visit.bind_page(StatusCode::SERVICE_UNAVAILABLE, None, Some(&error)),
    };
    let t = visit.texts();
    let csrf = visit.csrf.clone();
    let page = HomePage {
        t,
        csrf: &csrf,
        phone_masked: person.phone.masked(),
        cards,
        notice: match (&query.bound, &query.removed) {
            (Some(_), _) => Some(t.card_bound),
            (None, Some(_)) => Some(t.card_removed),
            (None, None) => None,
        },
    };
    visit.page(StatusCode::OK, &page)
}

async fn new_card_page(
    State(wallet): State<Arc<Wallet>>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&wallet, &headers, query.lang.as_deref());
    if signed_in(&wallet, &headers).await.is_none() {
        return visit.redirect("/wallet/login", None);
    }
    visit.bind_page(StatusCode::OK, None, None)
}

/// A posted form of a signed-in person, or the answer that stops it.
pub(crate) async fn posted_by_person(
    wallet: &Wallet,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Visit, PostedForm, SignedIn), Response> {
    let (visit, form) = posted(wallet, headers, body)?;
    match signed_in(wallet, headers).await {
        Some((_, person)) => Ok((visit, form, person)),
        None => Err(visit.redirect("/wallet/login", None)),
    }
}

async fn start_binding(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, form, person) = posted_by_person(&wallet, &headers, &body).await?;
    let started = wallet
        .cards
        .start(
            &person,
            form.text("card_number"),
            form.text("expiry"),
            form.get("cvn2"),
        )
        .await;
    Ok(match started {
        Ok(binding) => visit.bind_page(StatusCode::OK, Some(binding), None),
        Err(error) => visit.bind_page(card_status(&error), None, Some(&error)),
    })
}

async fn confirm_binding(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, form, person) = posted_by_person(&wallet, &headers, &body).await?;
    let binding_id = form.text("binding");
    Ok(
        match wallet
            .cards
            .confirm(&person, binding_id, form.text("code"))
            .await
        {
            Ok(_) => visit.redirect("/wallet?bound=1", None),
            Err(error @ CardError::WrongCode(_)) => {
                let binding = wallet
                    .cards
                    .pending(&person, binding_id)
                    .await
                    .ok()
                    .flatten();
                visit.bind_page(StatusCode::UNPROCESSABLE_ENTITY, binding, Some(&error))
            }
            Err(error) => visit.bind_page(card_status(&error), None, Some(&error)),
        },
    )
}

async fn remove_card(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, form, person) = posted_by_person(&wallet, &headers, &body).await?;
    Ok(
        match wallet.cards.remove(&person, form.text("card")).await {
            Ok(()) => visit.redirect("/wallet?removed=1", None),
            Err(error) => visit.bind_page(card_status(&error), None, Some(&error)),
        },
    )
}

fn card_status(error: &CardError) -> StatusCode {
    match error {
        CardError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        CardError::AlreadyBound => StatusCode::CONFLICT,
        CardError::NoCard => StatusCode::NOT_FOUND,
        CardError::TooManyStarts => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

async fn sign_up_page(
    State(wallet): State<Arc<Wallet>>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let next = next_page(query.next.as_deref());
    Visit::read(&wallet, &headers, query.lang.as_deref()).account_page(
        StatusCode::OK,
        true,
        None,
        next,
    )
}

async fn log_in_page(
    State(wallet): State<Arc<Wallet>>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let next = next_page(query.next.as_deref());
    Visit::read(&wallet, &headers, query.lang.as_deref()).account_page(
        StatusCode::OK,
        false,
        None,
        next,
    )
}

/// A posted form with its visit, or the page that refuses it for a missing CSRF token.
fn posted(
    wallet: &Wallet,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Visit, PostedForm), Response> {
    let visit = Visit::read(wallet, headers, None);
    let form = PostedForm::parse(body);
    if csrf_ok(headers, &form) {
        Ok((visit, form))
    } else {
        Err(expired(visit))
    }
}

/// Where a sign-up or log-in leads: into the app with a session, or back to the form.
fn signed_in_or_again(
    visit: Visit,
    signing_up: bool,
    outcome: Result<crate::account::NewSession, AccountError>,
    next: Option<String>,
) -> Response {
    match outcome {
        Ok(new) => {
            let cookie = session::set_cookie(SESSION_COOKIE, &new.token, new.max_age_seconds);
            visit.redirect(next.as_deref().unwrap_or("/wallet"), Some(cookie))
        }
        Err(error) => {
            let status = match error {
                AccountError::Locked(_) | AccountError::AddressThrottled => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                AccountError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                AccountError::WrongCredentials => StatusCode::UNAUTHORIZED,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let message = texts::account_error(visit.language, &error);
            visit.account_page(status, signing_up, Some(message), next)
        }
    }
}

async fn sign_up(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, form) = posted(&wallet, &headers, &body)?;
    let outcome = wallet
        .accounts
        .sign_up(
            form.text("phone"),
            form.text("password"),
            form.text("password_again"),
        )
        .await;
    Ok(signed_in_or_again(
        visit,
        true,
        outcome,
        next_page(form.get("next")),
    ))
}

async fn log_in(
    State(wallet): State<Arc<Wallet>>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, form) = posted(&wallet, &headers, &body)?;
    let next = next_page(form.get("next"));
    let address = peer.map(|Extension(PeerAddr(peer))| peer.ip());
    let now = wallet.clock.now_millis();
    if address.is_some_and(|address| wallet.login_throttle.blocked(address, now)) {
        return Ok(signed_in_or_again(
            visit,
            false,
            Err(AccountError::AddressThrottled),
            next,
        ));
    }
    let outcome = wallet
        .accounts
        .log_in(form.text("phone"), form.text("password"))
        .await;
    if let (Some(address), Err(AccountError::WrongCredentials | AccountError::Locked(_))) =
        (address, &outcome)
    {
        wallet.login_throttle.record_failure(address, now);
    }
    Ok(signed_in_or_again(visit, false, outcome, next))
}

async fn log_out(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, _) = posted(&wallet, &headers, &body)?;
    if let Some((token, _)) = signed_in(&wallet, &headers).await
        && let Err(error) = wallet.accounts.log_out(&token).await
    {
        tracing::warn!(error = %error, "wallet: a session could not be ended");
    }
    Ok(visit.redirect(
        "/wallet/login",
        Some(session::set_cookie(SESSION_COOKIE, "", 0)),
    ))
}

async fn style() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/wallet.css"),
    )
        .into_response()
}

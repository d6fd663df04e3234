//! The phone simulator (`/phone`): the devices a person signed the Cloud QuickPass app in on,
//! their cards, and a POS to tap them on. A tap goes through the real network: the phone's
//! cryptogram (`handset`), a sandbox terminal (`pos`) that signs on and sends the purchase
//! over ISO 8583 to the switch's port, the switch, the token service and the bank. The
//! terminal asks for the PIN when the no-PIN rules call for it (its own limit, the card's,
//! unless the phone verified its holder: the fingerprint button, CDCVM).
//!
//! The person is the app's signed-in account in this browser ([`PhoneApp`]): the page shows
//! only that account's devices, and every tap is a posted form with the app's CSRF token.
//! It never shows a card number: a device card's last four digits at most.

use std::future::Future;
use std::pin::Pin as Boxed;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cloudpass_core::{Currency, Money};
use cloudpass_crypto::Pin;
use subtle::ConstantTimeEq;

use crate::handset::{HandsetError, HandsetView, Handsets};
use crate::pos::{Outcome, Pos, Presentment, Purchase};

/// The largest amount the simulated terminal takes (5,000 CNY, UnionPay's per-transaction
/// limit for device cards).
const AMOUNT_MAX_FEN: u64 = 500_000;
/// Ask the app for new limited-use keys when an HCE card has this few left.
const KEYS_LOW: usize = 2;

/// The signed-in person of the app in this browser.
pub struct AppUser {
    pub user_id: String,
    /// The token every form of theirs must carry (the app's double-submit CSRF token).
    pub csrf: String,
    /// `zh` or `en`.
    pub language: &'static str,
}

type BoxFuture<'a, T> = Boxed<Box<dyn Future<Output = T> + Send + 'a>>;

/// The Cloud QuickPass app on the phone, as the simulator reaches it.
pub trait PhoneApp: Send + Sync {
    /// The account signed in, from the request's `Cookie` header.
    fn signed_in<'a>(&'a self, cookies: Option<&'a str>) -> BoxFuture<'a, Option<AppUser>>;
    /// Asks the app's back end for new limited-use keys for an HCE card; they arrive through
    /// the handsets.
    fn replenish<'a>(
        &'a self,
        cookies: Option<&'a str>,
        device_id: &'a str,
        token_id: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// The `Set-Cookie` value that remembers the app's language (`zh` or `en`).
    fn language_cookie(&self, code: &'static str) -> String;
    /// Whether the app is installed on the phone of this browser (the request's cookies).
    fn installed(&self, cookies: Option<&str>) -> bool;
    /// The `Set-Cookie` value that installs or removes the app on this browser's phone.
    fn installed_cookie(&self, installed: bool) -> String;
}

pub struct PhoneSimulator {
    pub handsets: Arc<Handsets>,
    pub app: Arc<dyn PhoneApp>,
    /// The sandbox terminal the phones tap on, linked to the switch.
    pub pos: Pos,
    /// Whether the terminal holds working keys from a sign-on: it signs on before its first
    /// purchase, and again after the switch answered one `A0` (keys it no longer knows, as
    /// after a switch restart). A sign-on per tap would change the keys under a tap in
    /// flight from another browser.
    pub signed_on: AtomicBool,
}

pub fn router(simulator: Arc<PhoneSimulator>) -> Router {
    Router::new()
        .route("/phone", get(show))
        .route("/phone/tap", post(tap))
        .route("/phone/app", post(install))
        .with_state(simulator)
}

/// The words of the page.
struct Words {
    lang: &'static str,
    other_language: &'static str,
    other_code: &'static str,
    title: &'static str,
    sign_in_first: &'static str,
    sign_in: &'static str,
    no_devices: &'static str,
    open_app: &'static str,
    no_cards: &'static str,
    card: &'static str,
    default_card: &'static str,
    amount: &'static str,
    tap: &'static str,
    tap_fingerprint: &'static str,
    pin_title: &'static str,
    pin_why: &'static str,
    pin: &'static str,
    pay: &'static str,
    cancel: &'static str,
    approved: &'static str,
    declined: &'static str,
    no_answer: &'static str,
    terminal: &'static str,
    footer: &'static str,
    expired_form: &'static str,
    bad_amount: &'static str,
    no_such_card: &'static str,
    no_such_device: &'static str,
    bad_pin: &'static str,
    pos_offline: &'static str,
    phone_failed: &'static str,
    app_installed: &'static str,
    app_not_installed: &'static str,
    app_why: &'static str,
    install: &'static str,
    uninstall: &'static str,
}

const CHINESE: Words = Words {
    lang: "zh-CN",
    other_language: "English",
    other_code: "en",
    title: "手机模拟器",
    sign_in_first: "请先在这部手机上登录云闪付。",
    sign_in: "登录云闪付",
    no_devices: "您还没有设备。在云闪付中添加一部手机、手表或 App 本身。",
    open_app: "打开云闪付 · 我的设备",
    no_cards: "这台设备上还没有卡。",
    card: "卡片",
    default_card: "默认",
    amount: "金额（元）",
    tap: "碰一碰付款",
    tap_fingerprint: "指纹验证后碰一碰",
    pin_title: "请输入密码",
    pin_why: "金额超过免密限额，POS 要求输入交易密码。",
    pin: "交易密码",
    pay: "确认付款",
    cancel: "取消",
    approved: "支付成功",
    declined: "交易被拒绝",
    no_answer: "没有收到应答",
    terminal: "POS 终端",
    footer: "cloudpass 测试环境 — 不会发生真实资金往来。",
    expired_form: "此表单已失效，请重新打开页面。",
    bad_amount: "请输入 0.01 至 5000.00 元之间的金额，例如 12.50。",
    no_such_card: "这台设备上没有这张卡，请在云闪付中添加。",
    no_such_device: "您的账户没有这台设备，请重新打开页面。",
    bad_pin: "密码为 4 至 12 位数字。",
    pos_offline: "POS 无法连接交换中心，请稍后再试。",
    phone_failed: "手机无法完成支付：",
    app_installed: "这部手机已安装云闪付 App。",
    app_not_installed: "这部手机未安装云闪付 App。",
    app_why: "商户 H5 页面调起支付（CloudPass.startPay）时：已安装且已登录，在 App 内确认付款（控件支付）；已安装未登录，进入云闪付收银台；未安装，在商户页面内 WAP 支付。",
    install: "安装云闪付 App",
    uninstall: "卸载云闪付 App",
};

const ENGLISH: Words = Words {
    lang: "en",
    other_language: "中文",
    other_code: "zh",
    title: "Phone simulator",
    sign_in_first: "Log in to Cloud QuickPass on this phone first.",
    sign_in: "Log in to Cloud QuickPass",
    no_devices: "You have no device yet. Add a phone, a watch or the app itself in Cloud QuickPass.",
    open_app: "Open Cloud QuickPass · My devices",
    no_cards: "No card on this device yet.",
    card: "Card",
    default_card: "default",
    amount: "Amount (CNY)",
    tap: "Tap to pay",
    tap_fingerprint: "Fingerprint, then tap",
    pin_title: "Enter your PIN",
    pin_why: "The amount is over the no-PIN limit: the POS asks for the card's PIN.",
    pin: "PIN",
    pay: "Pay",
    cancel: "Cancel",
    approved: "Approved",
    declined: "Declined",
    no_answer: "No answer",
    terminal: "POS terminal",
    footer: "cloudpass sandbox — no real money moves.",
    expired_form: "This form has expired; open the page again.",
    bad_amount: "Enter an amount from 0.01 to 5000.00 yuan, e.g. 12.50.",
    no_such_card: "This device holds no such card; add it in Cloud QuickPass.",
    no_such_device: "Your account has no such device; open the page again.",
    bad_pin: "A PIN is 4 to 12 digits.",
    pos_offline: "The POS cannot reach the switch; try again shortly.",
    phone_failed: "The phone could not pay: ",
    app_installed: "Cloud QuickPass is installed on this phone.",
    app_not_installed: "Cloud QuickPass is not installed on this phone.",
    app_why: "When a shop's page starts a payment (CloudPass.startPay): installed and logged in, you confirm it in the app (control pay); installed and logged out, the Cloud QuickPass cashier opens; not installed, you pay by WAP inside the shop's page.",
    install: "Install Cloud QuickPass",
    uninstall: "Uninstall Cloud QuickPass",
};

/// A PIN pad waiting for the PIN of one tap.
struct PinPad {
    device: String,
    token: String,
    amount: String,
    card_label: String,
}

/// What a tap came to.
struct TapResult {
    approved: bool,
    headline: &'static str,
    code: String,
    detail: String,
    amount: String,
    card: String,
    trace: String,
}

#[derive(Template)]
#[template(path = "phone.html")]
struct PhonePage<'a> {
    w: &'a Words,
    csrf: &'a str,
    signed_in: bool,
    handsets: Vec<HandsetView>,
    pin_pad: Option<PinPad>,
    result: Option<TapResult>,
    error: Option<String>,
    terminal_id: &'a str,
    /// Whether the app is installed on this browser's phone.
    installed: bool,
}

fn words(language: &str) -> &'static Words {
    if language == "en" { &ENGLISH } else { &CHINESE }
}

fn cookies(headers: &HeaderMap) -> Option<&str> {
    headers.get(COOKIE).and_then(|v| v.to_str().ok())
}

fn page(status: StatusCode, template: &PhonePage<'_>) -> Response {
    use cloudpass_http::pages::{Scripts, html};
    html(status, template.render(), Scripts::None, "phone simulator")
}

struct Answer<'a> {
    simulator: &'a PhoneSimulator,
    user: Option<&'a AppUser>,
    installed: bool,
}

impl Answer<'_> {
    fn render(
        &self,
        status: StatusCode,
        pin_pad: Option<PinPad>,
        result: Option<TapResult>,
        error: Option<String>,
    ) -> Response {
        let w = words(self.user.map_or("zh", |u| u.language));
        let handsets = self
            .user
            .map(|u| self.simulator.handsets.of_owner(&u.user_id))
            .unwrap_or_default();
        page(
            status,
            &PhonePage {
                w,
                csrf: self.user.map_or("", |u| u.csrf.as_str()),
                signed_in: self.user.is_some(),
                handsets,
                pin_pad,
                result,
                error,
                terminal_id: &self.simulator.pos.config().terminal_id,
                installed: self.installed,
            },
        )
    }
}

#[derive(serde::Deserialize)]
struct ShowQuery {
    lang: Option<String>,
}

async fn show(
    State(simulator): State<Arc<PhoneSimulator>>,
    Query(query): Query<ShowQuery>,
    headers: HeaderMap,
) -> Response {
    let mut user = simulator.app.signed_in(cookies(&headers)).await;
    let chosen = match query.lang.as_deref() {
        Some("en") => Some("en"),
        Some("zh") => Some("zh"),
        _ => None,
    };
    if let (Some(code), Some(user)) = (chosen, user.as_mut()) {
        user.language = code;
    }
    let mut response = Answer {
        simulator: &simulator,
        user: user.as_ref(),
        installed: simulator.app.installed(cookies(&headers)),
    }
    .render(StatusCode::OK, None, None, None);
    if let Some(cookie) =
        chosen.and_then(|code| HeaderValue::from_str(&simulator.app.language_cookie(code)).ok())
    {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// A posted tap, read once.
struct TapForm {
    csrf: String,
    device: String,
    token: String,
    amount: String,
    cdcvm: bool,
    pin: Option<String>,
}

impl TapForm {
    fn parse(body: &[u8]) -> TapForm {
        let mut form = TapForm {
            csrf: String::new(),
            device: String::new(),
            token: String::new(),
            amount: String::new(),
            cdcvm: false,
            pin: None,
        };
        for (key, value) in form_urlencoded::parse(body) {
            match key.as_ref() {
                "csrf" => form.csrf = value.into_owned(),
                "device" => form.device = value.into_owned(),
                "token" => form.token = value.into_owned(),
                "amount" => form.amount = value.trim().to_owned(),
                "cdcvm" => form.cdcvm = value == "1",
                "pin" if !value.is_empty() => form.pin = Some(value.into_owned()),
                _ => {}
            }
        }
        form
    }
}

async fn tap(
    State(simulator): State<Arc<PhoneSimulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cookie_header = cookies(&headers);
    let Some(user) = simulator.app.signed_in(cookie_header).await else {
        let mut response = StatusCode::SEE_OTHER.into_response();
        response
            .headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/wallet/login"));
        return response;
    };
    let answer = Answer {
        simulator: &simulator,
        user: Some(&user),
        installed: simulator.app.installed(cookie_header),
    };
    let form = TapForm::parse(&body);
    if user.csrf.is_empty() || !bool::from(form.csrf.as_bytes().ct_eq(user.csrf.as_bytes())) {
        return answer.render(
            StatusCode::FORBIDDEN,
            None,
            None,
            Some(words(user.language).expired_form.into()),
        );
    }
    match pay(&simulator, cookie_header, &user, &form).await {
        Ok(Paid::NeedsPin(pad)) => answer.render(StatusCode::OK, Some(pad), None, None),
        Ok(Paid::Done(result)) => answer.render(StatusCode::OK, None, Some(result), None),
        Err(message) => answer.render(StatusCode::UNPROCESSABLE_ENTITY, None, None, Some(message)),
    }
}

/// `POST /phone/app` (`installed=1` or `0`): installs or removes the app on this browser's
/// phone, a setting of the simulator rather than of an account, so it needs no sign-in. A
/// form another site makes the browser post is refused (the browser's `Sec-Fetch-Site`).
async fn install(
    State(simulator): State<Arc<PhoneSimulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(site, Some("cross-site" | "same-site")) {
        return (
            StatusCode::FORBIDDEN,
            "This form can only be posted from /phone.",
        )
            .into_response();
    }
    let installed = form_urlencoded::parse(&body).any(|(k, v)| k == "installed" && v == "1");
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_static("/phone"));
    if let Ok(cookie) = HeaderValue::from_str(&simulator.app.installed_cookie(installed)) {
        headers.append(SET_COOKIE, cookie);
    }
    response
}

enum Paid {
    NeedsPin(PinPad),
    Done(TapResult),
}

/// One tap: the PIN pad when the terminal asks for a PIN it was not given, else the purchase
/// through the switch and what came back.
async fn pay(
    simulator: &PhoneSimulator,
    cookies: Option<&str>,
    user: &AppUser,
    form: &TapForm,
) -> Result<Paid, String> {
    let w = words(user.language);
    let amount = Money::parse_decimal(&form.amount, Currency::CNY)
        .ok()
        .filter(|a| !a.is_zero() && a.minor_units() <= AMOUNT_MAX_FEN)
        .ok_or_else(|| w.bad_amount.to_owned())?;
    let handset = simulator
        .handsets
        .handset(&user.user_id, &form.device)
        .map_err(|e| explain(w, &e))?;
    let card = handset
        .cards
        .iter()
        .find(|c| c.token_id == form.token)
        .ok_or_else(|| w.no_such_card.to_owned())?;
    if card.keys_left.is_some_and(|left| left <= KEYS_LOW)
        && let Err(error) = simulator
            .app
            .replenish(cookies, &handset.id, &card.token_id)
            .await
    {
        tracing::warn!(error = %error, "phone simulator: new limited-use keys could not be fetched");
    }
    let pos = &simulator.pos;
    if form.pin.is_none() && pos.asks_for_pin(amount, card.contactless_no_pin_limit, form.cdcvm) {
        return Ok(Paid::NeedsPin(PinPad {
            device: handset.id.clone(),
            token: card.token_id.clone(),
            amount: form.amount.clone(),
            card_label: card.label.clone(),
        }));
    }
    let pin = form
        .pin
        .as_deref()
        .map(|p| Pin::parse(p).map_err(|_| w.bad_pin.to_owned()))
        .transpose()?;
    if !simulator.signed_on.load(Ordering::Acquire) {
        pos.sign_on().await.map_err(|e| {
            tracing::warn!(error = %e, "phone simulator: the POS could not sign on");
            w.pos_offline.to_owned()
        })?;
        simulator.signed_on.store(true, Ordering::Release);
    }
    let terminal_data = pos.terminal_data(amount);
    let presented = simulator
        .handsets
        .tap(
            &user.user_id,
            &handset.id,
            Some(&card.token_id),
            &terminal_data,
            form.cdcvm,
        )
        .map_err(|e| explain(w, &e))?;
    let outcome = pos
        .purchase(&Purchase {
            account: &presented.token,
            expiry: Some(presented.expiry),
            amount,
            field55: &presented.tap.field55,
            presentment: Presentment::Contactless {
                track2: &presented.tap.track2,
            },
            pin: pin.as_ref(),
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "phone simulator: the POS could not send a purchase");
            w.pos_offline.to_owned()
        })?;
    if outcome.response_code.as_deref() == Some("A0") {
        // The switch does not know the terminal's keys: sign on before the next tap.
        simulator.signed_on.store(false, Ordering::Release);
    }
    Ok(Paid::Done(result(
        user,
        &outcome,
        amount,
        &card.label,
        &card.token_last4,
    )))
}

fn result(
    user: &AppUser,
    outcome: &Outcome,
    amount: Money,
    label: &str,
    token_last4: &str,
) -> TapResult {
    let w = words(user.language);
    let headline = if outcome.approved() {
        w.approved
    } else if outcome.response_code.is_none() {
        w.no_answer
    } else {
        w.declined
    };
    let mut trace = format!("STAN {} · RRN {}", outcome.stan, outcome.rrn);
    if let Some(code) = &outcome.auth_code {
        trace.push_str(&format!(" · auth {code}"));
    }
    TapResult {
        approved: outcome.approved(),
        headline,
        code: outcome.response_code.clone().unwrap_or_default(),
        detail: meaning(user.language, outcome),
        amount: format!("{} CNY", amount.to_decimal_string()),
        card: format!("{label} · …{token_last4}"),
        trace,
    }
}

fn explain(w: &Words, error: &HandsetError) -> String {
    match error {
        HandsetError::NoDevice => w.no_such_device.into(),
        HandsetError::NoCard | HandsetError::NoCards => w.no_such_card.into(),
        other => format!("{}{other}", w.phone_failed),
    }
}

/// Field 39 with its meaning in the page's language (the network's table is English).
fn meaning(language: &str, outcome: &Outcome) -> String {
    let Some(code) = outcome.response_code.as_deref() else {
        return words(language).no_answer.into();
    };
    if language == "en" {
        return outcome.describe();
    }
    let chinese = match code {
        "00" => "交易成功",
        "05" => "发卡行拒绝",
        "13" => "金额无效",
        "14" => "无效卡号（卡或设备卡不存在）",
        "41" => "挂失卡",
        "43" => "被盗卡",
        "51" => "余额不足",
        "54" => "卡片已过期",
        "55" => "密码错误",
        "57" => "不允许持卡人进行此交易（设备卡已暂停，或设备已挂失）",
        "61" => "超出金额限制",
        "62" => "受限制的卡",
        "65" => "需要输入密码（超出免密限额）",
        "75" => "密码错误次数超限",
        "91" => "发卡行或交换中心不可用",
        "96" => "系统故障",
        "A0" => "MAC 校验失败，POS 将重新签到",
        _ => return outcome.describe(),
    };
    format!("{code}（{chinese}）")
}

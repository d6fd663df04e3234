//! The app's payment pages: `GET /wallet/pay?tn=…` (the confirm screen) and `POST
//! /wallet/pay` (the payment, or the password step), each a page that says what happened.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cloudpass_gateway::PayError;

use crate::app_pay::{AppCard, AppPaid, AppPayError};
use crate::http::{Visit, posted_by_person, signed_in};
use crate::sdk_pages;
use crate::texts::{self, Language, Texts};
use crate::{SignedIn, Wallet};
use cloudpass_gateway::device_pay::DeviceOrder;

#[derive(Template)]
#[template(path = "pay.html")]
struct PayPage<'a> {
    t: &'a Texts,
    csrf: &'a str,
    tn: &'a str,
    /// What the card is charged, and in fen (the form says what the person confirmed).
    amount: String,
    charge_fen: u64,
    /// The order's total and the campaign's discount, when one applies.
    discount: Option<String>,
    merchant: String,
    order_id: String,
    cards: Vec<AppCard>,
    chosen: &'a str,
    ask_password: bool,
    error: Option<String>,
    result: Option<Shown>,
    /// The institution's page that sent the payer here through the SDK (control pay).
    return_url: Option<&'a str>,
    /// Back to it with the order's result, through `/sdk/return`.
    back: Option<String>,
}

/// A payment's outcome as the page shows it.
struct Shown {
    /// What the card was charged, read before it was paid.
    amount: String,
    discount: Option<String>,
    paid: bool,
    status: &'static str,
    resp_code: &'static str,
    message: String,
    card: String,
    query_id: Option<String>,
}

#[derive(serde::Deserialize)]
pub(crate) struct PayQuery {
    tn: Option<String>,
    lang: Option<String>,
    /// The institution's page, when the payment SDK sent the payer (control pay).
    #[serde(rename = "return")]
    return_url: Option<String>,
}

/// What the page needs to know of one step.
struct Step<'a> {
    tn: &'a str,
    chosen: &'a str,
    ask_password: bool,
    error: Option<String>,
    result: Option<Shown>,
    /// The institution's page the SDK named, checked.
    return_url: Option<&'a str>,
}

/// The confirm screen of `tn` for `person`, or the page that says why there is none.
async fn render(
    wallet: &Wallet,
    visit: Visit,
    person: &SignedIn,
    status: StatusCode,
    step: Step<'_>,
) -> Response {
    let t = visit.texts();
    let csrf = visit.csrf.clone();
    let back = step
        .return_url
        .map(|url| crate::sdk_pages::return_address(step.tn, url));
    let (amount, charge_fen, discount, merchant, order_id) =
        match wallet.app_pay.order(step.tn).await {
            Ok(order) => {
                let (amount, discount) = amounts(visit.language, t, &order);
                let charge_fen = order.charge.minor_units();
                (
                    amount,
                    charge_fen,
                    discount,
                    order.merchant_name,
                    order.order_id,
                )
            }
            // A paid order is no longer payable: the result still shows.
            Err(_) if step.result.is_some() => {
                (String::new(), 0, None, String::new(), String::new())
            }
            Err(error) => {
                let message = pay_error(visit.language, t, &error);
                let page = PayPage {
                    t,
                    csrf: &csrf,
                    tn: step.tn,
                    amount: String::new(),
                    charge_fen: 0,
                    discount: None,
                    merchant: String::new(),
                    order_id: String::new(),
                    cards: Vec::new(),
                    chosen: "",
                    ask_password: false,
                    error: Some(message),
                    result: None,
                    return_url: step.return_url,
                    back,
                };
                return visit.page(StatusCode::NOT_FOUND, &page);
            }
        };
    let cards = wallet
        .app_pay
        .cards(&wallet.devices, person)
        .await
        .unwrap_or_default();
    let page = PayPage {
        t,
        csrf: &csrf,
        tn: step.tn,
        amount,
        charge_fen,
        discount,
        merchant,
        order_id,
        cards,
        chosen: step.chosen,
        ask_password: step.ask_password,
        error: step.error,
        result: step.result,
        return_url: step.return_url,
        back,
    };
    visit.page(status, &page)
}

/// What the card is charged, and the order's total with the discount when one applies.
fn amounts(language: Language, t: &Texts, order: &DeviceOrder) -> (String, Option<String>) {
    let charge = format!("{} CNY", order.charge.to_decimal_string());
    let discount = order.discount.as_ref().map(|discount| {
        let name = match language {
            Language::Chinese => discount.name_zh,
            Language::English => discount.name_en,
        };
        format!(
            "{} {} CNY · {name}: −{} CNY",
            t.pay_order_total,
            order.amount.to_decimal_string(),
            discount.offset.to_decimal_string()
        )
    });
    (charge, discount)
}

fn pay_error(language: Language, t: &Texts, error: &AppPayError) -> String {
    match (language, error) {
        (
            _,
            AppPayError::Gateway(
                PayError::UnknownTn | PayError::NotPayable(_) | PayError::TimedOut,
            ),
        ) => t.pay_no_order.into(),
        (_, AppPayError::NoCard) => t.pay_no_cards.into(),
        (_, AppPayError::Gateway(PayError::DiscountChanged)) => t.pay_discount_changed.into(),
        (_, AppPayError::Device(device)) => texts::device_error(language, device),
        (Language::Chinese, AppPayError::BadPassword) => "支付密码为 4 至 12 位数字。".into(),
        (Language::Chinese, AppPayError::Gateway(PayError::NetworkNotReady)) => {
            "支付网络暂未就绪，请稍后再试。".into()
        }
        (_, other) => other.to_string(),
    }
}

pub(crate) async fn show(
    State(wallet): State<Arc<Wallet>>,
    Query(query): Query<PayQuery>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&wallet, &headers, query.lang.as_deref());
    let tn = query.tn.unwrap_or_default();
    let return_url = checked_return(query.return_url.as_deref());
    let Some((_, person)) = signed_in(&wallet, &headers).await else {
        // Log in, then back to this payment.
        let here = match return_url {
            Some(url) => sdk_pages::app_address("/wallet/pay", &tn, url),
            None => format!("/wallet/pay?tn={}", sdk_pages::encode(&tn)),
        };
        let to = format!("/wallet/login?next={}", sdk_pages::encode(&here));
        return visit.redirect(&to, None);
    };
    let step = Step {
        tn: &tn,
        chosen: "",
        ask_password: false,
        error: None,
        result: None,
        return_url,
    };
    render(&wallet, visit, &person, StatusCode::OK, step).await
}

pub(crate) async fn pay(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, form, person) = posted_by_person(&wallet, &headers, &body).await?;
    let (tn, token) = (form.text("tn"), form.text("token"));
    let (amount, discount) = match wallet.app_pay.order(tn).await {
        Ok(order) => amounts(visit.language, visit.texts(), &order),
        Err(_) => (String::new(), None),
    };
    let paid = wallet
        .app_pay
        .pay(
            &wallet.devices,
            &person,
            tn,
            token,
            form.get("password"),
            form.get("charge"),
        )
        .await;
    let mut step = Step {
        tn,
        chosen: token,
        ask_password: false,
        error: None,
        result: None,
        return_url: checked_return(form.get("return")),
    };
    let status = match paid {
        Ok(AppPaid::NeedsPassword) => {
            step.ask_password = true;
            StatusCode::OK
        }
        Ok(AppPaid::Done(result)) => {
            let card = wallet
                .app_pay
                .cards(&wallet.devices, &person)
                .await
                .ok()
                .and_then(|cards| cards.into_iter().find(|c| c.token_id == token))
                .map(|c| {
                    let t = visit.texts();
                    let kind = if c.credit { t.credit } else { t.debit };
                    format!(
                        "…{} {kind} · {} …{}",
                        c.card_last4, t.token_number, c.token_last4
                    )
                })
                .unwrap_or_default();
            step.result = Some(Shown {
                amount,
                discount,
                paid: result.status == "paid",
                status: result.status,
                resp_code: result.resp_code,
                message: result.message,
                card,
                query_id: result.query_id,
            });
            StatusCode::OK
        }
        Err(error) => {
            step.ask_password = matches!(error, AppPayError::BadPassword);
            step.error = Some(pay_error(visit.language, visit.texts(), &error));
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    Ok(render(&wallet, visit, &person, status, step).await)
}

/// The institution's page the SDK named, when it is a valid one.
fn checked_return(url: Option<&str>) -> Option<&str> {
    url.filter(|url| cloudpass_gateway::sdk::return_url_is_valid(url))
}

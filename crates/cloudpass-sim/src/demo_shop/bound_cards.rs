//! The cards visitors bind at the shop, paid by token (UPACP token payment, bizType 000902),
//! third in the checkout: the shop never keeps a card number.
//!
//! Binding: the visitor types the card number (and a credit card's expiry); the shop asks
//! for the opening's SMS code (`backTransReq.do` 77/00) and keeps the number in memory only
//! until the visitor types the code, then opens the card (79) and keeps the token, the
//! masked number and debit or credit. Removing a card deletes its token (74).
//!
//! Paying: the shop asks for the payment's SMS code naming the card by token (77/02, for
//! the order's `orderId` and `txnTime`), then sends the consume (01/000902) with the code and
//! the PIN (a format 0 block formed with the token) or the CVN2, all encrypted to the
//! platform's encryption certificate. A refusal before any money moved (a wrong code) makes
//! the next try a new UPACP order (`ShopOrder::attempt`) with a fresh code.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use base64::Engine;
use cloudpass_crypto::upacp::encrypt_base64;
use cloudpass_upacp::Form;
use zeroize::Zeroizing;

use super::client::ShopClientError;
use super::pages::{
    LangQuery, Visit, claim, consume_form, field, fields, from_this_site, gateway_problem,
    item_name, no_order, yuan,
};
use super::words::Words;
use super::{BoundCard, DemoShop, Method, PendingBind, ShopOrder, Storefront, TOKEN_REQUESTOR_ID};

pub(super) fn routes() -> Router<Arc<DemoShop>> {
    Router::new()
        .route(
            "/demo-merchant/cards",
            axum::routing::get(cards_page).post(bind),
        )
        .route("/demo-merchant/cards/code", post(bind_code))
        .route("/demo-merchant/cards/{token}/remove", post(unbind))
        .route("/demo-merchant/orders/{id}/bound", post(start_pay))
        .route("/demo-merchant/orders/{id}/bound/pay", post(pay))
}

/// A page shown again with what went wrong is 422; otherwise 200.
fn status_of(error: &Option<String>) -> StatusCode {
    if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    }
}

/// A bound card as the pages show it.
struct CardLine {
    token: String,
    label: String,
}

fn card_label(w: &Words, card: &BoundCard) -> String {
    let kind = if card.credit { w.credit } else { w.debit };
    format!(
        "{} {} ({kind})",
        w.card_ending,
        &card.masked[card.masked.len().saturating_sub(4)..]
    )
}

fn lines(w: &Words, cards: &[BoundCard]) -> Vec<CardLine> {
    cards
        .iter()
        .map(|card| CardLine {
            token: card.token.clone(),
            label: card_label(w, card),
        })
        .collect()
}

/// The cards as the checkout lists them: token and label.
pub(super) fn labelled(w: &Words, cards: &[BoundCard]) -> Vec<(String, String)> {
    cards
        .iter()
        .map(|card| (card.token.clone(), card_label(w, card)))
        .collect()
}

#[derive(Template)]
#[template(path = "demo_cards.html")]
struct CardsPage<'a> {
    w: &'a Words,
    cards: Vec<CardLine>,
    /// The order to go back to, when the visitor came from a checkout.
    order: String,
    /// A binding waits for its SMS code.
    code_step: bool,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct CardsQuery {
    lang: Option<String>,
    order: Option<String>,
}

/// An order number the pages may carry along (the shop's own, letters and digits).
fn order_param(value: Option<&str>) -> String {
    value
        .filter(|v| v.len() <= 40 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("")
        .to_owned()
}

fn render_cards(shop: &DemoShop, visit: Visit, order: String, error: Option<String>) -> Response {
    let w = visit.w;
    let code_step = shop.book().binds.contains_key(&visit.visitor);
    let page = CardsPage {
        w,
        cards: lines(w, &shop.cards_of(&visit.visitor)),
        order,
        code_step,
        error,
    };
    visit.page(status_of(&page.error), &page)
}

async fn cards_page(
    State(shop): State<Arc<DemoShop>>,
    Query(query): Query<CardsQuery>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&shop, &headers, query.lang.as_deref());
    render_cards(&shop, visit, order_param(query.order.as_deref()), None)
}

/// The header of a token-payment request of the shop's main merchant number.
fn token_form(
    shop: &DemoShop,
    txn_type: &str,
    sub_type: &str,
    order_id: &str,
    txn_time: &str,
) -> Form {
    Form::new()
        .with("version", "5.1.0")
        .with("encoding", "UTF-8")
        .with("txnType", txn_type)
        .with("txnSubType", sub_type)
        .with("bizType", "000902")
        .with("accessType", "0")
        .with("channelType", "08")
        .with("merId", shop.main.mer_id.clone())
        .with("orderId", order_id.to_owned())
        .with("txnTime", txn_time.to_owned())
}

/// `customerInfo`: base64 of `{key=value&…}`.
fn customer_info(inner: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{{{inner}}}"))
}

/// Encrypts `plain` to the platform's encryption certificate; the form gains its
/// `encryptCertId`.
async fn sealer(shop: &DemoShop) -> Result<(Vec<u8>, String), ShopClientError> {
    let certificate = shop
        .client
        .encryption_certificate(&shop.main, shop.now_seconds())
        .await?;
    let public = certificate
        .public_key_info_der()
        .ok_or(ShopClientError::EncryptionCertificate)?;
    Ok((public, certificate.cert_id()))
}

fn seal(public: &[u8], plain: &[u8]) -> Result<String, ShopClientError> {
    encrypt_base64(public, plain).map_err(|_| ShopClientError::Encrypting)
}

/// The refusal a verified answer carries, as the visitor reads it.
fn refusal_text(w: &Words, answer: &Form) -> String {
    format!(
        "{}{} ({}). {}",
        w.refused,
        answer.get("respMsg").unwrap_or(""),
        answer.get("respCode").unwrap_or(""),
        w.try_again
    )
}

/// Step 1 of binding: the card number, then the opening's SMS code is sent (77/00).
async fn bind_code(State(shop): State<Arc<DemoShop>>, headers: HeaderMap, body: Bytes) -> Response {
    let visit = Visit::read(&shop, &headers, None);
    let form = fields(&body);
    let order = order_param(Some(field(&form, "order")));
    if !from_this_site(&headers) {
        return visit.redirect("/demo-merchant/cards");
    }
    let w = visit.w;
    let number: Zeroizing<String> = Zeroizing::new(
        field(&form, "card_number")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    );
    if !(13..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
        return render_cards(&shop, visit, order, Some(w.card_number_bad.to_owned()));
    }
    let expiry = field(&form, "expiry").trim().to_owned();
    if !expiry.is_empty() && (expiry.len() != 4 || !expiry.bytes().all(|b| b.is_ascii_digit())) {
        return render_cards(&shop, visit, order, Some(w.expiry_bad.to_owned()));
    }
    if !shop.may_bind(&visit.visitor) {
        return render_cards(&shop, visit, order, Some(w.too_many_cards.to_owned()));
    }
    let txn_time = cloudpass_upacp::time::format_beijing(shop.now_seconds());
    let order_id = format!("DB{txn_time}{:06}", shop.random.below(1_000_000));
    let sent = async {
        let (public, cert_id) = sealer(&shop).await?;
        let request = token_form(&shop, "77", "00", &order_id, &txn_time)
            .with("accNo", seal(&public, number.as_bytes())?)
            .with("encryptCertId", cert_id)
            .with(
                "tokenPayData",
                format!("{{trId={TOKEN_REQUESTOR_ID}&tokenType=01}}"),
            );
        shop.client
            .post(
                &shop.main,
                "/gateway/api/backTransReq.do",
                request,
                shop.now_seconds(),
            )
            .await
    }
    .await;
    match sent {
        Ok(answer) if answer.get("respCode") == Some("00") => {
            shop.start_bind(
                &visit.visitor,
                PendingBind {
                    number,
                    expiry: (!expiry.is_empty()).then_some(expiry),
                    order_id,
                    txn_time,
                    return_to: (!order.is_empty()).then(|| order.clone()),
                },
            );
            render_cards(&shop, visit, order, None)
        }
        Ok(answer) => {
            let error = refusal_text(w, &answer);
            render_cards(&shop, visit, order, Some(error))
        }
        Err(error) => gateway_problem(visit, &error),
    }
}

/// Step 2 of binding: the SMS code, then the opening (79); the token is kept.
async fn bind(State(shop): State<Arc<DemoShop>>, headers: HeaderMap, body: Bytes) -> Response {
    let visit = Visit::read(&shop, &headers, None);
    let form = fields(&body);
    let w = visit.w;
    let Some(pending) = shop
        .take_bind(&visit.visitor)
        .filter(|_| from_this_site(&headers))
    else {
        let order = order_param(Some(field(&form, "order")));
        return render_cards(&shop, visit, order, Some(w.bind_expired.to_owned()));
    };
    let order = pending.return_to.clone().unwrap_or_default();
    let code = field(&form, "sms_code").trim().to_owned();
    let opened = async {
        let (public, cert_id) = sealer(&shop).await?;
        let mut info = format!("smsCode={code}");
        if let Some(expiry) = &pending.expiry {
            let sealed = seal(&public, format!("expired={expiry}").as_bytes())?;
            info.push_str(&format!("&encryptedInfo={sealed}"));
        }
        let request = token_form(&shop, "79", "00", &pending.order_id, &pending.txn_time)
            .with("accNo", seal(&public, pending.number.as_bytes())?)
            .with("encryptCertId", cert_id)
            .with("customerInfo", customer_info(&info))
            .with(
                "tokenPayData",
                format!("{{trId={TOKEN_REQUESTOR_ID}&tokenType=01}}"),
            );
        shop.client
            .post(
                &shop.main,
                "/gateway/api/backTransReq.do",
                request,
                shop.now_seconds(),
            )
            .await
    }
    .await;
    let answer = match opened {
        Ok(answer) => answer,
        Err(error) => return gateway_problem(visit, &error),
    };
    match (answer.get("respCode"), token_of(&answer)) {
        (Some("00"), Some(token)) => {
            let card = BoundCard {
                token,
                masked: answer.get("accNo").unwrap_or("").to_owned(),
                credit: answer.get("payCardType") == Some("02"),
            };
            shop.add_card(&visit.visitor, card);
            if order.is_empty() {
                visit.redirect("/demo-merchant/cards")
            } else {
                visit.redirect(&format!("/demo-merchant/orders/{order}/checkout"))
            }
        }
        (code, _) => {
            let error = refusal_text(w, &answer);
            // A wrong code may be typed again: nothing was opened.
            if code == Some("71") {
                shop.start_bind(&visit.visitor, pending);
            }
            render_cards(&shop, visit, order, Some(error))
        }
    }
}

/// The token of an opening's answer.
fn token_of(answer: &Form) -> Option<String> {
    let data = answer.get("tokenPayData")?;
    let inner = data.strip_prefix('{')?.strip_suffix('}')?;
    let fields = Form::parse_raw(inner).ok()?;
    fields.non_blank("token").map(str::to_owned)
}

/// Removing a card: its token deleted at the gateway (74), then forgotten.
async fn unbind(
    State(shop): State<Arc<DemoShop>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&shop, &headers, None);
    let Some(card) = shop
        .card_of(&visit.visitor, &token)
        .filter(|_| from_this_site(&headers))
    else {
        return visit.redirect("/demo-merchant/cards");
    };
    let txn_time = cloudpass_upacp::time::format_beijing(shop.now_seconds());
    let order_id = format!("DU{txn_time}{:06}", shop.random.below(1_000_000));
    let request = token_form(&shop, "74", "01", &order_id, &txn_time).with(
        "tokenPayData",
        format!("{{token={}&trId={TOKEN_REQUESTOR_ID}}}", card.token),
    );
    match shop
        .client
        .post(
            &shop.main,
            "/gateway/api/backTransReq.do",
            request,
            shop.now_seconds(),
        )
        .await
    {
        // Deleted now, or before: either way the shop forgets it.
        Ok(answer) if matches!(answer.get("respCode"), Some("00" | "63")) => {
            shop.remove_card(&visit.visitor, &card.token);
            visit.redirect("/demo-merchant/cards")
        }
        Ok(answer) => {
            let error = refusal_text(visit.w, &answer);
            render_cards(&shop, visit, String::new(), Some(error))
        }
        Err(error) => gateway_problem(visit, &error),
    }
}

#[derive(Template)]
#[template(path = "demo_bound_pay.html")]
struct BoundPayPage<'a> {
    w: &'a Words,
    order: ShopOrder,
    name: &'static str,
    amount: String,
    token: String,
    card: String,
    credit: bool,
    /// Why the last try was refused, and that a new code was sent.
    error: Option<String>,
}

/// The payment's SMS code for the order's current try (77/02, the card named by token).
async fn send_pay_code(
    shop: &DemoShop,
    order: &ShopOrder,
    token: &str,
) -> Result<Form, ShopClientError> {
    let (_, cert_id) = sealer(shop).await?;
    let request = consume_form(shop, order, "08")
        .with("txnType", "77")
        .with("txnSubType", "02")
        .with("bizType", "000902")
        .with("encryptCertId", cert_id)
        .with(
            "tokenPayData",
            format!("{{token={token}&trId={TOKEN_REQUESTOR_ID}}}"),
        );
    shop.client
        .post(
            &shop.main,
            "/gateway/api/backTransReq.do",
            request,
            shop.now_seconds(),
        )
        .await
}

fn pay_page(visit: Visit, order: ShopOrder, card: &BoundCard, error: Option<String>) -> Response {
    let w = visit.w;
    let page = BoundPayPage {
        w,
        name: item_name(w, order.item),
        amount: yuan(order.item.price_fen),
        token: card.token.clone(),
        card: card_label(w, card),
        credit: card.credit,
        error,
        order,
    };
    visit.page(status_of(&page.error), &page)
}

/// Paying with a bound card: the SMS code is sent, then the page asks for it.
async fn start_pay(
    State(shop): State<Arc<DemoShop>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = fields(&body);
    let visitor = Visit::read(&shop, &headers, None).visitor;
    let Some(card) = shop.card_of(&visitor, field(&form, "token")) else {
        let visit = Visit::read(&shop, &headers, None);
        return visit.redirect(&format!("/demo-merchant/orders/{id}/checkout"));
    };
    // Cards are bound under the main merchant number: only its orders pay with them.
    if shop.order(&id).map(|o| o.storefront) != Some(Storefront::Main) {
        let visit = Visit::read(&shop, &headers, None);
        return visit.redirect(&format!("/demo-merchant/orders/{id}/checkout"));
    }
    let (visit, order) = match claim(&shop, &headers, &id, Method::BoundCard) {
        Ok(claimed) => claimed,
        Err(answer) => return answer,
    };
    match send_pay_code(&shop, &order, &card.token).await {
        Ok(answer) if answer.get("respCode") == Some("00") => pay_page(visit, order, &card, None),
        Ok(answer) => {
            let error = refusal_text(visit.w, &answer);
            pay_page(visit, order, &card, Some(error))
        }
        Err(error) => gateway_problem(visit, &error),
    }
}

/// The consume with the bound card's token, the SMS code and the PIN or CVN2.
async fn pay(
    State(shop): State<Arc<DemoShop>>,
    Path(id): Path<String>,
    Query(_): Query<LangQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let visit = Visit::read(&shop, &headers, None);
    let form = fields(&body);
    let Some(order) = visit.order(&shop, &id) else {
        return no_order(visit);
    };
    let card = shop.card_of(&visit.visitor, field(&form, "token"));
    let (Some(card), true, Some(Method::BoundCard)) =
        (card, from_this_site(&headers), order.method)
    else {
        return visit.redirect(&format!("/demo-merchant/orders/{id}"));
    };
    let sent = async {
        let (public, cert_id) = sealer(&shop).await?;
        let mut info = format!("smsCode={}", field(&form, "sms_code").trim());
        if card.credit {
            let cvn2 = Zeroizing::new(format!("cvn2={}", field(&form, "cvn2").trim()));
            info.push_str(&format!(
                "&encryptedInfo={}",
                seal(&public, cvn2.as_bytes())?
            ));
        } else if let Ok(pin) = cloudpass_crypto::Pin::parse(field(&form, "pin").trim()) {
            let block = cloudpass_crypto::pin::format0_encode(&pin, &card.token)
                .map_err(|_| ShopClientError::Encrypting)?;
            info.push_str(&format!("&pin={}", seal(&public, block.as_slice())?));
        }
        let request = consume_form(&shop, &order, "08")
            .with("bizType", "000902")
            .with("encryptCertId", cert_id)
            .with("customerInfo", customer_info(&info))
            .with(
                "tokenPayData",
                format!("{{token={}&trId={TOKEN_REQUESTOR_ID}}}", card.token),
            );
        shop.client
            .post(
                &shop.main,
                "/gateway/api/backTransReq.do",
                request,
                shop.now_seconds(),
            )
            .await
    }
    .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) => return gateway_problem(visit, &error),
    };
    match answer.get("respCode") {
        // Stopped before any money moved: the next try is a new order with a fresh code.
        Some(code @ ("71" | "10" | "13")) => {
            let mut error = refusal_text(visit.w, &answer);
            shop.next_attempt(&id);
            let order = shop.order(&id).unwrap_or(order);
            if code == "71"
                && let Ok(sent) = send_pay_code(&shop, &order, &card.token).await
                && sent.get("respCode") == Some("00")
            {
                error.push(' ');
                error.push_str(visit.w.new_code_sent);
            }
            pay_page(visit, order, &card, Some(error))
        }
        // Paid, declined by the bank, or pending: the order's page queries and shows it.
        _ => visit.redirect(&format!("/demo-merchant/orders/{id}")),
    }
}

//! The hosted payment page: what a payer's browser sees after a merchant's `frontTransReq.do`
//! (or after opening `/gateway/pay/{tn}` for an app's TN). Three steps, each a plain HTML
//! form that works without script: the card number; then the SMS code with the PIN (debit)
//! or the CVN2 and expiry (credit), and the holder's name, phone and ID number where the
//! card's test data names its holder; then the result. A paid order's result page carries the
//! signed front notification, which the payer's "return to the merchant" button posts to
//! `frontUrl`.
//!
//! The page is the JSON payment API's twin: both end in [`Gateway::pay`], with its bounded
//! tries and its real authorization through the switch. It never shows a full card number
//! back except in the hidden field of the form the payer is filling in, and never repeats a
//! refused value.

use askama::Template;
use cloudpass_core::card_number::mask_digits;
use cloudpass_core::order::OrderStatus;
use cloudpass_core::{AccountNumber, Pan};
use cloudpass_store::{GatewayStore, OrderRow};
use cloudpass_upacp::Form;
use cloudpass_upacp::code::RespCode;

use crate::Gateway;
use crate::pay::{CardKind, PayError, PayRequest, TestCard};
use crate::sdk::{self, SdkFlow, SdkVisit};

/// What a page request produced: an HTML page and its HTTP status, with the origin the page's
/// forms may post to besides the gateway itself (the merchant's `frontUrl`).
pub struct Page {
    pub status: u16,
    pub html: String,
    pub form_origin: Option<String>,
}

/// The order as the page shows it.
struct OrderView {
    tn: String,
    merchant_name: String,
    mer_id: String,
    order_id: String,
    /// Yuan with two decimals.
    amount: String,
    /// The SDK sent the payer here: every form carries the visit on.
    sdk: Option<SdkVisit>,
    /// `?sdk_flow=…&sdk_return=…` for links back to the page, or empty.
    sdk_query: String,
    /// The institution's page with the result (or the payer's giving up) as it now stands.
    sdk_back: Option<String>,
}

#[derive(Template)]
#[template(path = "pay_card.html")]
struct CardPage<'a> {
    order: &'a OrderView,
    card_path: String,
    error: Option<&'a str>,
    test_cards: Vec<TestCardRow>,
}

struct TestCardRow {
    number: String,
    kind: &'static str,
    sms_code: String,
    then: String,
    holder: String,
}

#[derive(Template)]
#[template(path = "pay_details.html")]
struct DetailsPage<'a> {
    order: &'a OrderView,
    page_path: String,
    confirm_path: String,
    card_number: &'a str,
    card_masked: String,
    kind_label: &'static str,
    debit: bool,
    error: Option<&'a str>,
    /// Where the SMS code comes from: the published test code, or where one was sent.
    sms_hint: Option<String>,
    /// The card gets sent codes: the page offers to send a new one (the card step again).
    resend_path: Option<String>,
    /// The card's test data names its holder: the page asks the name and phone (and the ID
    /// number when the data has one), as UnionPay's test payment page does.
    asks_identity: bool,
    asks_id_number: bool,
}

#[derive(Template)]
#[template(path = "pay_result.html")]
struct ResultPage<'a> {
    order: &'a OrderView,
    title: &'a str,
    message: &'a str,
    /// `good`, `bad` or `wait`.
    tone: &'static str,
    resp_code: Option<&'static str>,
    front: Option<FrontReturn>,
    back_link: Option<String>,
}

/// The signed front notification, posted by the payer's browser to `frontUrl`.
struct FrontReturn {
    url: String,
    fields: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "refused.html")]
struct RefusedPage<'a> {
    title: &'a str,
    message: &'a str,
    resp_code: Option<&'static str>,
    /// Back to the institution's page, when the SDK sent the payer here.
    back: Option<String>,
}

/// The path of the page of `tn`, and of its two form posts.
/// The page's answer when a card whose holder the bank names is paid without the identity
/// fields the page asked (the JSON API leaves them to the payer; the page asks them).
const IDENTITY_NEEDED: &str =
    "Enter the cardholder's name, phone number and ID number as the card's bank holds them.";

pub fn page_path(tn: &str) -> String {
    format!("/gateway/pay/{tn}")
}

fn card_path(tn: &str) -> String {
    format!("/gateway/pay/{tn}/card")
}

fn confirm_path(tn: &str) -> String {
    format!("/gateway/pay/{tn}/confirm")
}

fn kind_label(kind: CardKind) -> &'static str {
    match kind {
        CardKind::Debit => "debit card 借记卡",
        CardKind::Credit => "credit card 贷记卡",
    }
}

fn render(status: u16, template: &impl Template) -> Page {
    match template.render() {
        Ok(html) => Page {
            status,
            html,
            form_origin: None,
        },
        Err(error) => {
            tracing::error!(error = %error, "gateway: a page could not be rendered");
            Page {
                status: 500,
                html: "<!DOCTYPE html><title>cloudpass</title><p>This page could not be shown.</p>"
                    .into(),
                form_origin: None,
            }
        }
    }
}

/// A page that stops the payer: an unknown TN, a refused merchant request, a failure.
pub fn refused_page(status: u16, title: &str, message: &str, code: Option<RespCode>) -> Page {
    render(
        status,
        &RefusedPage {
            title,
            message,
            resp_code: code.map(RespCode::code),
            back: None,
        },
    )
}

/// `scheme://host[:port]` of a URL, for the page's `form-action` policy.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

impl Gateway {
    /// `GET /gateway/pay/{tn}`: the card step, or the result when the order is past it.
    pub async fn page(&self, tn: &str, sdk: Option<SdkVisit>) -> Page {
        match self.sdk_page_order(tn, sdk.as_ref()).await {
            Ok(order) => self.page_for(&order, None, sdk.as_ref()).await,
            Err(page) => page,
        }
    }

    /// `POST /gateway/pay/{tn}/card`: the card number read, then the step its kind needs.
    pub async fn page_card(&self, tn: &str, body: &[u8]) -> Page {
        let form = Form::parse_urlencoded(body).unwrap_or_default();
        let sdk = posted_visit(&form);
        let order = match self.sdk_page_order(tn, sdk.as_ref()).await {
            Ok(order) => order,
            Err(page) => return page,
        };
        if !self.payable(&order) {
            return self.page_for(&order, None, sdk.as_ref()).await;
        }
        let view = self.view(&order, sdk.as_ref()).await;
        let (pan, kind) = match self.checked_card(tn, form.get("card_number").unwrap_or_default()) {
            Ok(card) => card,
            Err(error) => return self.card_page(&view, Some(&error.to_string())),
        };
        if !self.payer.published_sms_codes(&pan).is_empty() {
            return self.details_page(&view, &pan, kind, None, None);
        }
        // Any other card: a code is texted to its phone now (or the page says why not).
        match self.send_sms_code(tn, pan.expose()).await {
            Ok(sent) => {
                self.details_page(&view, &pan, kind, None, Some(capitalized(&sent.message)))
            }
            Err(error @ (PayError::SmsTooSoon(_) | PayError::TooManySmsCodes)) => {
                self.details_page(&view, &pan, kind, Some(&error.to_string()), None)
            }
            Err(error) => self.card_page(&view, Some(&error.to_string())),
        }
    }

    /// `POST /gateway/pay/{tn}/confirm`: the payment, then its result; a mistake the payer
    /// can correct shows the step again with what was wrong.
    pub async fn page_confirm(&self, tn: &str, body: &[u8]) -> Page {
        let form = Form::parse_urlencoded(body).unwrap_or_default();
        let sdk = posted_visit(&form);
        let order = match self.sdk_page_order(tn, sdk.as_ref()).await {
            Ok(order) => order,
            Err(page) => return page,
        };
        let request = PayRequest {
            card_number: form.get("card_number").unwrap_or_default().to_owned(),
            sms_code: form.get("sms_code").unwrap_or_default().to_owned(),
            pin: form.non_blank("pin").map(str::to_owned),
            cvn2: form.non_blank("cvn2").map(str::to_owned),
            expiry: form.non_blank("expiry").map(str::to_owned),
            holder_name: form.non_blank("holder_name").map(str::to_owned),
            phone: form.non_blank("phone").map(str::to_owned),
            id_number: form.non_blank("id_number").map(str::to_owned),
        };
        let view = self.view(&order, sdk.as_ref()).await;
        if let Some((pan, kind)) = self.card_kind_of(&request.card_number)
            && let Some(holder) = self.payer.holder(&pan)
            && (request.holder_name.is_none()
                || request.phone.is_none()
                || (holder.id_number.is_some() && request.id_number.is_none()))
        {
            return self.details_page(&view, &pan, kind, Some(IDENTITY_NEEDED), None);
        }
        match self.pay(tn, &request).await {
            Ok(_) => match self.page_order(tn).await {
                Ok(order) => self.page_for(&order, None, sdk.as_ref()).await,
                Err(page) => page,
            },
            Err(
                error @ (PayError::WrongSmsCode(_)
                | PayError::MissingInput(_)
                | PayError::BadInput(_)
                | PayError::SmsNotSent
                | PayError::SmsExpired
                | PayError::IdentityMismatch),
            ) => match self.card_kind_of(&request.card_number) {
                Some((pan, kind)) => {
                    self.details_page(&view, &pan, kind, Some(&error.to_string()), None)
                }
                None => self.card_page(&view, Some(&error.to_string())),
            },
            Err(
                error
                @ (PayError::BadCardNumber | PayError::UnknownCard | PayError::SmsUnavailable),
            ) => self.card_page(&view, Some(&error.to_string())),
            Err(error) => match self.page_order(tn).await {
                Ok(order) if self.payable(&order) => refused_page(
                    409,
                    "The payment could not be taken",
                    &error.to_string(),
                    None,
                ),
                Ok(order) => {
                    self.page_for(&order, Some(&error.to_string()), sdk.as_ref())
                        .await
                }
                Err(page) => page,
            },
        }
    }

    async fn page_order(&self, tn: &str) -> Result<OrderRow, Page> {
        let unknown = || {
            refused_page(
                404,
                "No such payment",
                "No order has this transaction number (TN). Ask the merchant to start again.",
                None,
            )
        };
        if tn.len() != 21 || !tn.bytes().all(|b| b.is_ascii_digit()) {
            return Err(unknown());
        }
        match self.store.order_by_tn(tn).await {
            Ok(Some(order)) if order.kind == "consume" => Ok(order),
            Ok(_) => Err(unknown()),
            Err(error) => {
                tracing::error!(error = %error, "gateway: the order book failed for a page");
                Err(refused_page(
                    503,
                    "Try again shortly",
                    "The order book is not available right now.",
                    Some(RespCode::Busy),
                ))
            }
        }
    }

    pub(crate) fn payable(&self, order: &OrderRow) -> bool {
        order.status == OrderStatus::Issued.as_str()
            && self.merchant_now_seconds(&order.mer_id) <= order.pay_timeout
    }

    /// The order `tn` for a page, refused when the SDK's WAP pay brought the payer and the
    /// merchant lacks the SDK-WAP permission.
    async fn sdk_page_order(&self, tn: &str, sdk: Option<&SdkVisit>) -> Result<OrderRow, Page> {
        let order = self.page_order(tn).await?;
        if sdk.is_some_and(|visit| visit.flow == SdkFlow::Wap) {
            let merchant = self.merchant(&order.mer_id).await.ok().flatten();
            if !merchant.is_some_and(|merchant| merchant.permissions.sdk_wap) {
                let back = sdk.map(|visit| sdk::return_link(&visit.return_url, "fail", None));
                return Err(render(
                    403,
                    &RefusedPage {
                        title: "This merchant cannot take WAP pay 商户未开通 WAP 支付",
                        message: "The merchant has not been granted WAP pay through the payment \
                                  SDK (SDK WAP). Go back and pay another way, or with the Cloud \
                                  QuickPass app.",
                        resp_code: Some(RespCode::NoPermission.code()),
                        back,
                    },
                ));
            }
        }
        Ok(order)
    }

    async fn view(&self, order: &OrderRow, sdk: Option<&SdkVisit>) -> OrderView {
        let merchant = self.merchant(&order.mer_id).await.ok().flatten();
        OrderView {
            tn: order.tn.clone(),
            merchant_name: merchant
                .map(|merchant| merchant.name.clone())
                .unwrap_or_else(|| order.mer_id.clone()),
            mer_id: order.mer_id.clone(),
            order_id: order.order_id.clone(),
            amount: format!("{}.{:02}", order.amount / 100, order.amount % 100),
            sdk: sdk.cloned(),
            sdk_query: sdk.map(SdkVisit::query).unwrap_or_default(),
            sdk_back: sdk.map(|visit| self.sdk_return(order, visit)),
        }
    }

    fn card_kind_of(&self, card_number: &str) -> Option<(Pan, CardKind)> {
        let pan = Pan::parse(card_number.trim()).ok()?;
        let kind = self.payer.card_kind(&pan)?;
        Some((pan, kind))
    }

    fn card_page(&self, order: &OrderView, error: Option<&str>) -> Page {
        let test_cards = self
            .payer
            .test_cards()
            .into_iter()
            .map(|card: TestCard| TestCardRow {
                number: card.number,
                kind: match card.kind {
                    CardKind::Debit => "debit",
                    CardKind::Credit => "credit",
                },
                sms_code: card.sms_code,
                then: card.then,
                holder: card.holder,
            })
            .collect();
        render(
            if error.is_some() { 422 } else { 200 },
            &CardPage {
                order,
                card_path: card_path(&order.tn),
                error,
                test_cards,
            },
        )
    }

    /// The second step; `sent` says where a code just went.
    fn details_page(
        &self,
        order: &OrderView,
        pan: &Pan,
        kind: CardKind,
        error: Option<&str>,
        sent: Option<String>,
    ) -> Page {
        let published = self.payer.published_sms_codes(pan);
        let holder = self.payer.holder(pan);
        let sms_hint = match published.first() {
            Some(code) => Some(format!("Sandbox: this test card's SMS code is {code}")),
            None => Some(sent.unwrap_or_else(|| {
                "The code was texted to the phone the card's bank holds.".to_owned()
            })),
        };
        render(
            if error.is_some() { 422 } else { 200 },
            &DetailsPage {
                order,
                page_path: format!("{}{}", page_path(&order.tn), order.sdk_query),
                confirm_path: confirm_path(&order.tn),
                card_number: pan.expose(),
                card_masked: mask_digits(pan.expose()),
                kind_label: kind_label(kind),
                debit: kind == CardKind::Debit,
                error,
                sms_hint,
                resend_path: published.is_empty().then(|| card_path(&order.tn)),
                asks_identity: holder.is_some(),
                asks_id_number: holder.is_some_and(|holder| holder.id_number.is_some()),
            },
        )
    }

    /// The page an order's state calls for: the card step while it can be paid, else its
    /// result (`note` says why a payment just asked for was not taken).
    async fn page_for(&self, order: &OrderRow, note: Option<&str>, sdk: Option<&SdkVisit>) -> Page {
        let view = self.view(order, sdk).await;
        let card_details = self.card_details(&order.mer_id).await;
        if self.payable(order) {
            return self.card_page(&view, note);
        }
        let status = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Failed);
        let result = |title, message, tone, code| {
            result_page(&view, title, message, tone, code, order.front_url.clone())
        };
        match status {
            OrderStatus::Paid
            | OrderStatus::PartlyRefunded
            | OrderStatus::Refunded
            | OrderStatus::Undoing
            | OrderStatus::Undone => {
                let front = order.front_url.as_ref().map(|url| FrontReturn {
                    url: url.clone(),
                    fields: self
                        .success_form(order, None, card_details)
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                });
                let page = ResultPage {
                    front,
                    back_link: None,
                    ..result(
                        "Payment successful 支付成功",
                        "The merchant has been told; you may return to it.",
                        "good",
                        Some(RespCode::Success),
                    )
                };
                let mut page = render(200, &page);
                page.form_origin = order.front_url.as_deref().and_then(origin);
                page
            }
            OrderStatus::Paying => render(
                200,
                &result(
                    "Payment being confirmed 处理中",
                    "The card's bank has not answered yet. The merchant will learn the result; do not pay again.",
                    "wait",
                    Some(RespCode::AcceptedQueryLater),
                ),
            ),
            OrderStatus::Failed => {
                let code = order
                    .pay_response_code
                    .as_deref()
                    .map(crate::query::trade_code);
                let reason = code.map_or("the payment was declined", |(_, text)| text);
                let message = format!(
                    "{}. This order is over; the merchant can start a new one.",
                    capitalized(reason)
                );
                render(
                    200,
                    &result(
                        "Payment failed 支付失败",
                        &message,
                        "bad",
                        code.map(|(code, _)| code),
                    ),
                )
            }
            OrderStatus::Issued | OrderStatus::Closed => render(
                200,
                &result(
                    "Payment time is over 订单已关闭",
                    "The order was not paid before its payment deadline. Ask the merchant for a new one.",
                    "bad",
                    None,
                ),
            ),
        }
    }
}

/// The SDK visit a page's form carried on.
fn posted_visit(form: &Form) -> Option<SdkVisit> {
    SdkVisit::read(form.get(sdk::FLOW_FIELD), form.get(sdk::RETURN_FIELD))
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn result_page<'a>(
    order: &'a OrderView,
    title: &'a str,
    message: &'a str,
    tone: &'static str,
    code: Option<RespCode>,
    back_link: Option<String>,
) -> ResultPage<'a> {
    ResultPage {
        order,
        title,
        message,
        tone,
        resp_code: code.map(RespCode::code),
        front: None,
        back_link,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_scheme_and_authority() {
        assert_eq!(
            origin("https://shop.example:8443/return?x=1").as_deref(),
            Some("https://shop.example:8443")
        );
        assert_eq!(
            origin("http://127.0.0.1:9000").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(origin("not a url"), None);
    }
}

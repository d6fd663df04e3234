//! The demo shop's pages and the two addresses the network calls: `notify` (the gateway's
//! back notification) and the order page's POST (its front notification).

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cloudpass_core::{Currency, Money, hex};
use cloudpass_http::pages::{self, Scripts, cookie_in as cookie};
use cloudpass_upacp::Form;
use cloudpass_upacp::app_result::ResultData;

use super::words::{Words, words};
use super::{CATALOG, DemoShop, Item, Method, ShopOrder, Storefront};

const VISITOR_COOKIE: &str = "cp_shop_visitor";
const LANGUAGE_COOKIE: &str = "cp_shop_lang";

pub fn router(shop: Arc<DemoShop>) -> Router {
    Router::new()
        .route("/demo-merchant", get(home))
        .route("/demo-merchant/orders", post(create))
        .route(
            "/demo-merchant/orders/{id}",
            get(order_page).post(front_return),
        )
        .route("/demo-merchant/orders/{id}/checkout", get(checkout))
        .route("/demo-merchant/orders/{id}/balance", post(pay_balance))
        .route("/demo-merchant/orders/{id}/quickpass", post(quickpass))
        .route("/demo-merchant/orders/{id}/card", post(card))
        .route("/demo-merchant/orders/{id}/app-result", post(app_result))
        .route("/demo-merchant/orders/{id}/refund", post(refund))
        .route("/demo-merchant/notify", post(notify))
        .route("/demo-merchant/static/shop.js", get(script))
        .merge(super::bound_cards::routes())
        .with_state(shop)
}

/// The browser's visitor number and language, and the cookies to set.
pub(super) struct Visit {
    pub(super) visitor: String,
    pub(super) w: &'static Words,
    set_cookies: Vec<String>,
}

impl Visit {
    pub(super) fn read(shop: &DemoShop, headers: &HeaderMap, lang: Option<&str>) -> Visit {
        let cookies = headers.get(COOKIE).and_then(|v| v.to_str().ok());
        let mut set_cookies = Vec::new();
        let visitor = match cookie(cookies, VISITOR_COOKIE).filter(|v| v.len() == 32) {
            Some(visitor) => visitor.to_owned(),
            None => {
                let mut bytes = [0u8; 16];
                shop.random.fill(&mut bytes);
                let visitor = hex::encode(&bytes);
                set_cookies.push(shop_cookie(VISITOR_COOKIE, &visitor));
                visitor
            }
        };
        let code = match lang {
            Some(code @ ("zh" | "en")) => {
                set_cookies.push(shop_cookie(LANGUAGE_COOKIE, code));
                code
            }
            _ => cookie(cookies, LANGUAGE_COOKIE).unwrap_or("zh"),
        };
        Visit {
            visitor,
            w: words(code),
            set_cookies,
        }
    }

    pub(super) fn page(self, status: StatusCode, template: &impl Template) -> Response {
        let answer = pages::html(status, template.render(), Scripts::OwnOrigin, "demo shop");
        self.finish(answer)
    }

    pub(super) fn redirect(self, to: &str) -> Response {
        let mut response = StatusCode::SEE_OTHER.into_response();
        if let Ok(location) = HeaderValue::from_str(to) {
            response.headers_mut().insert(LOCATION, location);
        }
        self.finish(response)
    }

    fn finish(self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        pages::secure_page(headers, Scripts::OwnOrigin);
        for cookie in self.set_cookies {
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                headers.append(SET_COOKIE, value);
            }
        }
        response
    }

    /// The order `id` when it is this visitor's.
    pub(super) fn order(&self, shop: &DemoShop, id: &str) -> Option<ShopOrder> {
        shop.order(id).filter(|o| o.visitor == self.visitor)
    }
}

fn shop_cookie(name: &str, value: &str) -> String {
    format!("{name}={value}; Path=/demo-merchant; Max-Age=2592000; HttpOnly; SameSite=Lax")
}

/// Whether a posted form came from a page of this site (the browser's `Sec-Fetch-Site`; a
/// client that sends none is not a browser another site can drive).
pub(super) fn from_this_site(headers: &HeaderMap) -> bool {
    !matches!(
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        Some("cross-site" | "same-site")
    )
}

pub(super) fn fields(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

pub(super) fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

pub(super) fn yuan(fen: u64) -> String {
    Money::new(fen, Currency::CNY).to_decimal_string()
}

pub(super) fn item_name(w: &Words, item: &Item) -> &'static str {
    if w.lang == "en" {
        item.name_en
    } else {
        item.name_zh
    }
}

#[derive(serde::Deserialize)]
pub(super) struct LangQuery {
    pub(super) lang: Option<String>,
}

/// An order as the list shows it.
struct OrderLine {
    id: String,
    name: &'static str,
    amount: String,
    method: &'static str,
}

#[derive(Template)]
#[template(path = "demo_shop.html")]
struct HomePage<'a> {
    w: &'a Words,
    balance: String,
    items: Vec<(&'static str, &'static str, String)>,
    orders: Vec<OrderLine>,
}

async fn home(
    State(shop): State<Arc<DemoShop>>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&shop, &headers, query.lang.as_deref());
    let w = visit.w;
    let orders = shop
        .orders_of(&visit.visitor)
        .into_iter()
        .map(|o| OrderLine {
            name: item_name(w, o.item),
            amount: yuan(o.item.price_fen),
            method: o.method.map_or("", Method::code),
            id: o.id,
        })
        .collect();
    let page = HomePage {
        w,
        balance: yuan(shop.balance(&visit.visitor)),
        items: CATALOG
            .iter()
            .map(|i| (i.id, item_name(w, i), yuan(i.price_fen)))
            .collect(),
        orders,
    };
    visit.page(StatusCode::OK, &page)
}

async fn create(State(shop): State<Arc<DemoShop>>, headers: HeaderMap, body: Bytes) -> Response {
    let visit = Visit::read(&shop, &headers, None);
    let form = fields(&body);
    let item = CATALOG.iter().find(|i| i.id == field(&form, "item"));
    let (Some(item), true) = (item, from_this_site(&headers)) else {
        return visit.redirect("/demo-merchant");
    };
    let storefront = match field(&form, "storefront") {
        "no-sdk-wap" => Storefront::NoSdkWap,
        _ => Storefront::Main,
    };
    let id = shop.new_order(&visit.visitor, item, storefront);
    visit.redirect(&format!("/demo-merchant/orders/{id}/checkout"))
}

#[derive(Template)]
#[template(path = "demo_checkout.html")]
struct CheckoutPage<'a> {
    w: &'a Words,
    order: ShopOrder,
    name: &'static str,
    amount: String,
    balance: String,
    balance_enough: bool,
    mer_id: String,
    sdk_wap: bool,
    /// The visitor's bound cards: token and label.
    cards: Vec<(String, String)>,
}

async fn checkout(
    State(shop): State<Arc<DemoShop>>,
    Path(id): Path<String>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&shop, &headers, query.lang.as_deref());
    let Some(order) = visit.order(&shop, &id) else {
        return no_order(visit);
    };
    if order.method.is_some() {
        return visit.redirect(&format!("/demo-merchant/orders/{id}"));
    }
    let balance = shop.balance(&visit.visitor);
    let page = CheckoutPage {
        w: visit.w,
        name: item_name(visit.w, order.item),
        amount: yuan(order.item.price_fen),
        balance: yuan(balance),
        balance_enough: balance >= order.item.price_fen,
        mer_id: shop.merchant(order.storefront).mer_id.clone(),
        sdk_wap: order.storefront == Storefront::Main,
        cards: super::bound_cards::labelled(visit.w, &shop.cards_of(&visit.visitor)),
        order,
    };
    visit.page(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "demo_problem.html")]
pub(super) struct ProblemPage<'a> {
    pub(super) w: &'a Words,
    pub(super) message: String,
}

pub(super) fn no_order(visit: Visit) -> Response {
    let message = visit.w.no_order.to_owned();
    let w = visit.w;
    visit.page(StatusCode::NOT_FOUND, &ProblemPage { w, message })
}

pub(super) fn gateway_problem(visit: Visit, error: &super::client::ShopClientError) -> Response {
    let w = visit.w;
    let message = format!("{}{error}", w.gateway_failed);
    visit.page(StatusCode::BAD_GATEWAY, &ProblemPage { w, message })
}

async fn pay_balance(
    State(shop): State<Arc<DemoShop>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&shop, &headers, None);
    if visit.order(&shop, &id).is_some() && from_this_site(&headers) {
        shop.pay_from_balance(&id);
    }
    visit.redirect(&format!("/demo-merchant/orders/{id}"))
}

#[derive(Template)]
#[template(path = "demo_start.html")]
struct StartPage<'a> {
    w: &'a Words,
    /// Cloud QuickPass: the TN and the page to come back to.
    tn: Option<String>,
    return_url: String,
    /// A bank card: the signed form for `frontTransReq.do`.
    front_fields: Vec<(String, String)>,
}

/// The consume every way of paying through the gateway starts from.
pub(super) fn consume_form(shop: &DemoShop, order: &ShopOrder, channel: &str) -> Form {
    Form::new()
        .with("version", "5.1.0")
        .with("encoding", "UTF-8")
        .with("txnType", "01")
        .with("txnSubType", "01")
        .with("bizType", "000201")
        .with("channelType", channel)
        .with("accessType", "0")
        .with("merId", shop.merchant(order.storefront).mer_id.clone())
        .with("orderId", order.upacp_order_id())
        .with("txnTime", order.txn_time.clone())
        .with("txnAmt", order.item.price_fen.to_string())
        .with("currencyCode", "156")
        .with("backUrl", shop.notify_address())
}

/// The visitor's order `id`, claimed for `method` by a form of this site; else the order's
/// page (it has a way of paying already) or the page that says there is no such order.
pub(super) fn claim(
    shop: &DemoShop,
    headers: &HeaderMap,
    id: &str,
    method: Method,
) -> Result<(Visit, ShopOrder), Response> {
    let visit = Visit::read(shop, headers, None);
    let Some(order) = visit.order(shop, id) else {
        return Err(no_order(visit));
    };
    if !from_this_site(headers) || !shop.choose(id, method) {
        return Err(visit.redirect(&format!("/demo-merchant/orders/{id}")));
    }
    Ok((visit, order))
}

/// Cloud QuickPass: a TN from `appTransReq.do`, then the SDK on the next page.
async fn quickpass(
    State(shop): State<Arc<DemoShop>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (visit, order) = match claim(&shop, &headers, &id, Method::QuickPass) {
        Ok(claimed) => claimed,
        Err(answer) => return answer,
    };
    let tn = match order.tn.clone() {
        Some(tn) => tn,
        None => match issue_tn(&shop, &order).await {
            Ok(tn) => tn,
            Err(error) => return gateway_problem(visit, &error),
        },
    };
    let w = visit.w;
    let page = StartPage {
        w,
        tn: Some(tn),
        return_url: shop.order_address(&id),
        front_fields: Vec::new(),
    };
    visit.page(StatusCode::OK, &page)
}

async fn issue_tn(
    shop: &DemoShop,
    order: &ShopOrder,
) -> Result<String, super::client::ShopClientError> {
    let merchant = shop.merchant(order.storefront);
    let answer = shop
        .client
        .post(
            merchant,
            "/gateway/api/appTransReq.do",
            consume_form(shop, order, "08"),
            shop.now_seconds(),
        )
        .await?;
    match (answer.get("respCode"), answer.non_blank("tn")) {
        (Some("00"), Some(tn)) => {
            let tn = tn.to_owned();
            shop.update(&order.id, |o| o.tn = Some(tn.clone()));
            Ok(tn)
        }
        _ => Err(super::client::ShopClientError::Refused(
            answer.get("respCode").unwrap_or("").to_owned(),
            answer.get("respMsg").unwrap_or("").to_owned(),
        )),
    }
}

/// A bank card: the signed `frontTransReq.do` form the browser posts to the gateway (API
/// WAP), which sends the payer back to the order's page.
async fn card(
    State(shop): State<Arc<DemoShop>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (visit, order) = match claim(&shop, &headers, &id, Method::Card) {
        Ok(claimed) => claimed,
        Err(answer) => return answer,
    };
    let form = consume_form(&shop, &order, "08").with("frontUrl", shop.order_address(&id));
    let front_fields = match shop
        .client
        .front_form(shop.merchant(order.storefront), form)
    {
        Ok(fields) => fields,
        Err(error) => return gateway_problem(visit, &error),
    };
    let w = visit.w;
    let page = StartPage {
        w,
        tn: None,
        return_url: String::new(),
        front_fields,
    };
    visit.page(StatusCode::OK, &page)
}

/// What `queryTrans.do` says of an order.
enum QueryState {
    Paid {
        query_id: String,
        /// What the shop is settled (`settleAmt`), fen.
        settled: u64,
        /// A campaign's discount the payer got (`couponInfo`), paid for by its sponsor.
        coupon: Option<Coupon>,
    },
    Unpaid,
    Pending,
    Failed(String),
    Unknown(String),
}

async fn query(shop: &DemoShop, order: &ShopOrder) -> QueryState {
    let form = Form::new()
        .with("version", "5.1.0")
        .with("encoding", "UTF-8")
        .with("txnType", "00")
        .with("txnSubType", "00")
        .with("bizType", "000000")
        .with("accessType", "0")
        .with("merId", shop.merchant(order.storefront).mer_id.clone())
        .with("orderId", order.upacp_order_id())
        .with("txnTime", order.txn_time.clone());
    let answer = match shop
        .client
        .post(
            shop.merchant(order.storefront),
            "/gateway/api/queryTrans.do",
            form,
            shop.now_seconds(),
        )
        .await
    {
        Ok(answer) => answer,
        Err(error) => return QueryState::Unknown(error.to_string()),
    };
    let text = |name: &str| answer.get(name).unwrap_or("").to_owned();
    match (text("respCode").as_str(), text("origRespCode").as_str()) {
        ("00", "00") => QueryState::Paid {
            query_id: text("queryId"),
            settled: text("settleAmt").parse().unwrap_or(0),
            coupon: answer.get("couponInfo").and_then(Coupon::parse),
        },
        ("00", "03" | "04" | "05") => QueryState::Pending,
        ("00", code) => QueryState::Failed(format!("{} ({code})", text("origRespMsg"))),
        ("34", _) => QueryState::Unpaid,
        (code, _) => QueryState::Unknown(format!("{} ({code})", text("respMsg"))),
    }
}

/// A discount as `couponInfo` tells it: a JSON array of what each sponsor put in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Coupon {
    /// `offstAmt` of every sponsor, summed, fen.
    pub offset_fen: u64,
    /// `desc`, or `id` without one.
    pub name: String,
    /// `spnsrId` of the first sponsor.
    pub sponsor: String,
}

impl Coupon {
    pub fn offset_yuan(&self) -> String {
        yuan(self.offset_fen)
    }

    fn parse(info: &str) -> Option<Coupon> {
        let entries: Vec<serde_json::Value> = serde_json::from_str(info).ok()?;
        let text = |entry: &serde_json::Value, key: &str| {
            entry
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let first = entries.first()?;
        let offset_fen = entries
            .iter()
            .map(|entry| text(entry, "offstAmt").parse::<u64>().ok())
            .sum::<Option<u64>>()?;
        let name = match text(first, "desc") {
            desc if desc.is_empty() => text(first, "id"),
            desc => desc,
        };
        Some(Coupon {
            offset_fen,
            name,
            sponsor: text(first, "spnsrId"),
        })
    }
}

#[derive(Template)]
#[template(path = "demo_order.html")]
struct OrderPage<'a> {
    w: &'a Words,
    order: ShopOrder,
    name: &'static str,
    amount: String,
    mer_id: String,
    /// `paid`, `unpaid`, `pending`, `failed`, `refunded` or `unknown`.
    state: &'static str,
    state_text: String,
    query_id: Option<String>,
    refundable: bool,
    method_label: &'static str,
    /// The discount the payer got, and what the shop is settled, once paid.
    coupon: Option<Coupon>,
    /// `settleAmt`, fen and yuan.
    settled: Option<(u64, String)>,
}

async fn order_page(
    State(shop): State<Arc<DemoShop>>,
    Path(id): Path<String>,
    Query(query_string): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&shop, &headers, query_string.lang.as_deref());
    let Some(order) = visit.order(&shop, &id) else {
        return no_order(visit);
    };
    let w = visit.w;
    let (mut coupon, mut settled) = (None, None);
    let (state, state_text, query_id) = match order.method {
        Some(Method::Balance) => ("paid", w.state_paid.to_owned(), None),
        None => ("unpaid", w.state_unpaid.to_owned(), None),
        Some(_) => match query(&shop, &order).await {
            QueryState::Paid {
                query_id,
                settled: settle_amt,
                coupon: discount,
            } => {
                (coupon, settled) = (discount, Some((settle_amt, yuan(settle_amt))));
                if order.refunded_fen >= order.item.price_fen {
                    ("refunded", w.state_refunded.to_owned(), None)
                } else {
                    ("paid", w.state_paid.to_owned(), Some(query_id))
                }
            }
            QueryState::Unpaid => ("unpaid", w.state_unpaid.to_owned(), None),
            QueryState::Pending => ("pending", w.state_pending.to_owned(), None),
            QueryState::Failed(why) => ("failed", format!("{} · {why}", w.state_failed), None),
            QueryState::Unknown(why) => ("unknown", format!("{} · {why}", w.state_unknown), None),
        },
    };
    let page = OrderPage {
        w,
        name: item_name(w, order.item),
        amount: yuan(order.item.price_fen),
        mer_id: shop.merchant(order.storefront).mer_id.clone(),
        state,
        state_text,
        refundable: query_id.is_some(),
        query_id,
        method_label: match order.method {
            Some(Method::Balance) => w.by_balance,
            Some(Method::QuickPass) => w.by_quickpass,
            Some(Method::BoundCard) => w.by_bound_card,
            Some(Method::Card) => w.by_card,
            None => "",
        },
        coupon,
        settled,
        order,
    };
    visit.page(StatusCode::OK, &page)
}

/// The gateway's front notification (the payer clicked back to the shop): believed only
/// when its signature verifies, then the order's page.
async fn front_return(
    State(shop): State<Arc<DemoShop>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let visit = Visit::read(&shop, &headers, None);
    if let Ok(form) = Form::parse_urlencoded(&body)
        && shop.client.verify(&form, shop.now_seconds()).is_err()
    {
        tracing::warn!(order = %id, "demo shop: a front notification failed its signature check");
    }
    visit.redirect(&format!("/demo-merchant/orders/{id}"))
}

/// The gateway's back notification: recorded when its signature verifies, answered 200 so
/// the gateway stops sending it; anything else is answered 400 and sent again.
async fn notify(State(shop): State<Arc<DemoShop>>, body: Bytes) -> Response {
    let Ok(form) = Form::parse_urlencoded(&body) else {
        return (StatusCode::BAD_REQUEST, "not a form").into_response();
    };
    if let Err(error) = shop.client.verify(&form, shop.now_seconds()) {
        tracing::warn!(error = %error, "demo shop: a notification failed its signature check");
        return (StatusCode::BAD_REQUEST, "signature check failed").into_response();
    }
    let (Some(order_id), Some(code)) = (form.get("orderId"), form.get("respCode")) else {
        return (StatusCode::BAD_REQUEST, "no orderId or respCode").into_response();
    };
    let code = code.to_owned();
    let discount = form
        .get("couponInfo")
        .and_then(Coupon::parse)
        .map(|coupon| coupon.offset_fen);
    shop.update(super::shop_order_id(order_id), |o| {
        o.notified = Some(code);
        o.notified_discount = discount;
    });
    (StatusCode::OK, "ok").into_response()
}

/// The SDK's synchronous result, from the order page's script: checked with the platform's
/// signing certificate and the order's TN before the shop records it.
async fn app_result(
    State(shop): State<Arc<DemoShop>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let visit = Visit::read(&shop, &headers, None);
    let order = visit.order(&shop, &id);
    let form = fields(&body);
    let verified = match (order, shop.client.platform_signer()) {
        (Some(order), Some(signer)) if from_this_site(&headers) => {
            ResultData::from_json(field(&form, "result_data"))
                .ok()
                .and_then(|data| data.verify(&signer).ok())
                .filter(|result| order.tn.as_deref() == Some(result.tn.as_str()))
        }
        _ => None,
    };
    let answer = match verified {
        Some(result) => {
            let code = result.pay_result.as_str();
            shop.update(&id, |o| o.app_result = Some(code.to_owned()));
            serde_json::json!({"verified": true, "pay_result": code})
        }
        None => serde_json::json!({"verified": false}),
    };
    let mut response = axum::Json(answer).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A full refund (`backTransReq.do`, txnType 04) of a paid order.
async fn refund(
    State(shop): State<Arc<DemoShop>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&shop, &headers, None);
    let Some(order) = visit.order(&shop, &id) else {
        return no_order(visit);
    };
    let back = format!("/demo-merchant/orders/{id}");
    let remaining = order.item.price_fen.saturating_sub(order.refunded_fen);
    if !from_this_site(&headers) || remaining == 0 {
        return visit.redirect(&back);
    }
    let QueryState::Paid { query_id, .. } = query(&shop, &order).await else {
        return visit.redirect(&back);
    };
    let now = shop.now_seconds();
    let txn_time = cloudpass_upacp::time::format_beijing(now);
    let merchant = shop.merchant(order.storefront);
    let form = Form::new()
        .with("version", "5.1.0")
        .with("encoding", "UTF-8")
        .with("txnType", "04")
        .with("txnSubType", "00")
        .with("bizType", "000201")
        .with("channelType", "07")
        .with("accessType", "0")
        .with("merId", merchant.mer_id.clone())
        .with(
            "orderId",
            format!("DR{txn_time}{:06}", shop.random.below(1_000_000)),
        )
        .with("txnTime", txn_time)
        .with("txnAmt", remaining.to_string())
        .with("currencyCode", "156")
        .with("backUrl", shop.notify_address())
        .with("origQryId", query_id);
    match shop
        .client
        .post(merchant, "/gateway/api/backTransReq.do", form, now)
        .await
    {
        Ok(answer) if answer.get("respCode") == Some("00") => {
            shop.update(&id, |o| o.refunded_fen += remaining);
            visit.redirect(&back)
        }
        Ok(answer) => gateway_problem(
            visit,
            &super::client::ShopClientError::Refused(
                answer.get("respCode").unwrap_or("").to_owned(),
                answer.get("respMsg").unwrap_or("").to_owned(),
            ),
        ),
        Err(error) => gateway_problem(visit, &error),
    }
}

async fn script() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../../static/shop.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::Coupon;

    #[test]
    fn coupon_info_is_read_as_a_sum_over_its_sponsors() {
        let one = r#"[{"id":"CQP202612001","offstAmt":"500","spnsrId":"00010000","type":"CP01","desc":"满50减5"}]"#;
        assert_eq!(
            Coupon::parse(one),
            Some(Coupon {
                offset_fen: 500,
                name: "满50减5".into(),
                sponsor: "00010000".into()
            })
        );
        // UnionPay's example: one campaign, two sponsors, no desc read from the second.
        let two = r#"[{"type":"DD01","spnsrId":"00010000","offstAmt":"500","id":"cupcp01000023"},{"type":"DD01","spnsrId":"848120048712365","offstAmt":"500","id":"cupcp01000023"}]"#;
        let coupon = Coupon::parse(two).unwrap();
        assert_eq!(
            (coupon.offset_fen, coupon.name.as_str()),
            (1_000, "cupcp01000023")
        );
        assert_eq!(Coupon::parse("[]"), None);
        assert_eq!(Coupon::parse(r#"[{"offstAmt":"five"}]"#), None);
        assert_eq!(Coupon::parse("not json"), None);
    }
}

//! The story's browser steps: a visitor to the demo institution — its pages reach the gateway
//! over UPACP with the shop's own certificate — the payment SDK's routing, the gateway's
//! hosted page, and the operator console. The visitor is a plain HTTP client that keeps its
//! cookies and follows nothing by itself, so every hop is one the story checks.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use super::{DEBIT, DEBIT_PIN, Demo, StepResult};

/// A browser without a script engine: cookies kept, redirects taken one at a time.
pub(crate) struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
}

/// An answer: its status, where it sends the visitor, its page.
pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<String>,
    pub(crate) html: String,
}

impl Visitor {
    pub(crate) fn new(base: &str) -> Result<Visitor, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Visitor {
            http,
            base: base.to_owned(),
            cookies: BTreeMap::new(),
        })
    }

    /// The value of the cookie `name`, once set.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.get(name).cloned()
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Result<Page, String> {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = request
            .header(COOKIE, cookie)
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        for value in response.headers().get_all(SET_COOKIE) {
            if let Some((name, rest)) = value.to_str().ok().and_then(|v| v.split_once('=')) {
                let value = rest.split(';').next().unwrap_or_default();
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let html = response.text().await.map_err(|e| e.to_string())?;
        Ok(Page {
            status,
            location,
            html,
        })
    }

    pub(crate) async fn get(&mut self, path: &str) -> Result<Page, String> {
        let request = self.http.get(self.url(path));
        self.send(request).await
    }

    pub(crate) async fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Result<Page, String> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }
}

/// The value of the first `attribute="…"` after `marker` in `html`, unescaped.
pub(crate) fn attribute(html: &str, marker: &str, attribute: &str) -> Option<String> {
    let after = &html[html.find(marker)?..];
    let start = after.find(&format!("{attribute}=\""))? + attribute.len() + 2;
    let value = &after[start..];
    let value = &value[..value.find('"')?];
    Some(
        value
            .replace("&#38;", "&")
            .replace("&amp;", "&")
            .replace("&#34;", "\"")
            .replace("&#39;", "'"),
    )
}

pub(crate) fn expect(page: &Page, status: StatusCode, what: &str) -> Result<(), String> {
    if page.status == status {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected HTTP {status}, got {}",
            page.status
        ))
    }
}

/// Buys a latte at the shop and chooses Cloud QuickPass: the order's number and its TN.
pub(crate) async fn buy_with_quickpass(
    visitor: &mut Visitor,
    item: &str,
) -> Result<(String, String), String> {
    visitor.get("/demo-merchant").await?;
    let created = visitor
        .post(
            "/demo-merchant/orders",
            &[("item", item), ("storefront", "main")],
        )
        .await?;
    let checkout = created.location.ok_or("the shop made no order")?;
    let order_id = checkout
        .trim_start_matches("/demo-merchant/orders/")
        .trim_end_matches("/checkout")
        .to_owned();
    let start = visitor
        .post(&format!("/demo-merchant/orders/{order_id}/quickpass"), &[])
        .await?;
    expect(&start, StatusCode::OK, "the shop's Cloud QuickPass page")?;
    let tn = attribute(&start.html, "id=\"start-pay\"", "data-tn")
        .ok_or("the shop's page carries no TN (appTransReq.do failed?)")?;
    Ok((order_id, tn))
}

/// The shop's page of `order_id`: its state (from the shop's query) and the notification's
/// respCode, once the shop has one.
pub(crate) async fn shop_order(
    visitor: &mut Visitor,
    order_id: &str,
) -> Result<(String, String), String> {
    let page = visitor
        .get(&format!("/demo-merchant/orders/{order_id}"))
        .await?;
    expect(&page, StatusCode::OK, "the shop's order page")?;
    Ok((
        attribute(&page.html, "id=\"order\"", "data-state").unwrap_or_default(),
        attribute(&page.html, "id=\"notification\"", "data-code").unwrap_or_default(),
    ))
}

pub(crate) async fn wap_pay(demo: &mut Demo) -> StepResult {
    let before = demo.balance(DEBIT).await?;
    let mut visitor = Visitor::new(&demo.base)?;
    let (order_id, tn) = buy_with_quickpass(&mut visitor, "latte").await?;
    let return_url = format!("{}/demo-merchant/orders/{order_id}", demo.base);
    // CloudPass.startPay: cloudpass's page, then the route it moves on to.
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("tn", tn.as_str()), ("mode", "01"), ("return", &return_url)])
        .finish();
    let start = visitor.get(&format!("/sdk/start?{query}")).await?;
    let next =
        attribute(&start.html, "id=\"continue\"", "href").ok_or("no way on from /sdk/start")?;
    let routed = visitor.get(&next).await?;
    let hosted = routed
        .location
        .ok_or("/sdk/route sent the visitor nowhere")?;
    if !hosted.contains("sdk_flow=wap") {
        return Err(format!(
            "the app is not installed: expected WAP pay, went to {hosted}"
        ));
    }
    let paid = pay_on_hosted_page(&mut visitor, &tn, "wap", &return_url).await?;
    let back = attribute(&paid, "id=\"return\"", "href")
        .ok_or("the hosted page's result has no way back to the shop")?;
    if !back.contains("#pay_result=unknown") {
        return Err(format!(
            "WAP pay's result should be asynchronous (unknown): {back}"
        ));
    }
    let (state, _) = shop_order(&mut visitor, &order_id).await?;
    if state != "paid" {
        return Err(format!("the shop's query should say paid, says {state}"));
    }
    let notified = wait_for_notification(&mut visitor, &order_id).await?;
    if before - demo.balance(DEBIT).await? != 1_250 {
        return Err("the bank's ledger did not move 12.50".into());
    }
    demo.shop_orders.push((order_id.clone(), tn.clone()));
    demo.visitor = Some(visitor);
    Ok(format!(
        "the shop gets TN …{} over appTransReq.do; the SDK finds no app on this phone and sends the payer to WAP pay; paid by card number on the hosted page; back at the shop, its query says paid and its verified notification says respCode {notified}; 12.50 left the card",
        &tn[tn.len() - 4..]
    ))
}

/// Pays `tn` on the gateway's hosted page with the CMB debit card (its SMS code, its holder
/// as UnionPay's test data has them, its PIN), in the SDK's `flow`; the result page.
pub(crate) async fn pay_on_hosted_page(
    visitor: &mut Visitor,
    tn: &str,
    flow: &str,
    return_url: &str,
) -> Result<String, String> {
    let sdk = [("sdk_flow", flow), ("sdk_return", return_url)];
    let card = visitor
        .post(
            &format!("/gateway/pay/{tn}/card"),
            &[[("card_number", DEBIT)].as_slice(), &sdk].concat(),
        )
        .await?;
    expect(&card, StatusCode::OK, "the hosted page's card step")?;
    let paid = visitor
        .post(
            &format!("/gateway/pay/{tn}/confirm"),
            &[
                [
                    ("card_number", DEBIT),
                    ("sms_code", "111111"),
                    ("holder_name", "张三"),
                    ("phone", "18100000000"),
                    ("id_number", "510265790128303"),
                    ("pin", DEBIT_PIN),
                ]
                .as_slice(),
                &sdk,
            ]
            .concat(),
        )
        .await?;
    expect(&paid, StatusCode::OK, "the hosted page's payment")?;
    Ok(paid.html)
}

/// Reloads the shop's order page until the gateway's notification has reached the shop.
async fn wait_for_notification(visitor: &mut Visitor, order_id: &str) -> Result<String, String> {
    for _ in 0..100 {
        let (_, code) = shop_order(visitor, order_id).await?;
        if !code.is_empty() {
            return Ok(code);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err("the shop received no notification within 10 seconds".into())
}

pub(crate) async fn refund(demo: &mut Demo) -> StepResult {
    let (order_id, _) = demo.shop_orders.last().cloned().ok_or("no paid order")?;
    // The order is the visitor's who bought it: the shop's cookie says who that is.
    let mut visitor = demo.visitor.take().ok_or("no visitor")?;
    let before = demo.balance(DEBIT).await?;
    let refunded = visitor
        .post(&format!("/demo-merchant/orders/{order_id}/refund"), &[])
        .await?;
    expect(&refunded, StatusCode::SEE_OTHER, "the shop's refund")?;
    let (state, _) = shop_order(&mut visitor, &order_id).await?;
    demo.visitor = Some(visitor);
    if state != "refunded" {
        return Err(format!(
            "after the refund the shop's order should be refunded, is {state}"
        ));
    }
    if demo.balance(DEBIT).await? - before != 1_250 {
        return Err("the refund did not give the card its 12.50 back".into());
    }
    Ok("the shop refunds the order in full (backTransReq.do, txnType 04): its page says refunded and the card has its 12.50 back".into())
}

pub(crate) async fn console(demo: &mut Demo) -> StepResult {
    let (_, tn) = demo.shop_orders.last().cloned().ok_or("no order")?;
    let key = demo
        .app
        .sandbox
        .as_ref()
        .map(|s| s.operator_key.to_string())
        .ok_or("no sandbox")?;
    let mut operator = Visitor::new(&demo.base)?;
    let refused = operator
        .post("/console/login", &[("operator_key", "not the key")])
        .await?;
    expect(&refused, StatusCode::UNAUTHORIZED, "a wrong operator key")?;
    let signed_in = operator
        .post("/console/login", &[("operator_key", key.as_str())])
        .await?;
    expect(&signed_in, StatusCode::SEE_OTHER, "the operator's login")?;
    let mut pages = Vec::new();
    for path in [
        "/console".to_owned(),
        "/console/orders".to_owned(),
        format!("/console/orders/{tn}"),
        "/console/journal".to_owned(),
        "/console/tokens".to_owned(),
        "/console/merchants".to_owned(),
    ] {
        let page = operator.get(&path).await?;
        expect(&page, StatusCode::OK, &path)?;
        pages.push(page.html);
    }
    if attribute(&pages[2], "id=\"order\"", "data-state").as_deref() != Some("refunded") {
        return Err("the console's order view should show the order refunded".into());
    }
    if !pages[2].contains("data-state=\"delivered\"") {
        return Err("the console's order view should show the notification delivered".into());
    }
    let approvals = pages[3].matches("class=\"response-code\">00<").count();
    if approvals < 5 {
        return Err(format!(
            "the console's journal should show at least the story's 5 approvals (taps, the WAP payment, the refund), shows {approvals}"
        ));
    }
    if pages.iter().any(|html| {
        html.contains(DEBIT) || html.contains(super::REISSUED) || html.contains(super::CREDIT)
    }) {
        return Err("a console page shows a full card number".into());
    }
    Ok(format!(
        "a wrong operator key is refused; with the right one the console shows the counters, the order (refunded, its notification delivered), {approvals} approvals in the switch's journal, the tokens and the merchants — no page shows a full card number"
    ))
}

//! The browser side of the institution gateway, in a real headless Chromium: a merchant's
//! checkout page auto-posts a signed `frontTransReq.do` (as UnionPay's SDKs'
//! `createAutoFormHtml` does), the payer lands on the hosted payment page, types a card
//! number, the SMS code and the PIN or CVN2, pays — a real authorization through the switch
//! to the sandbox bank, whose ledger is read before and after — and returns to the merchant
//! with the signed front notification, which the merchant verifies through our root and
//! middle CA. The merchant here is a small HTTP server of the test's own. Refused requests
//! are checked without a browser. Screenshots land in `target/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use cloudpass_crypto::upacp::RsaSigningKey;
use cloudpass_upacp::{Certificate, Form, signing};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use support::app::*;
use support::browser::{self, Browser};
use support::network::{balance, reissued_card};
use support::upacp::verify_from_platform;

on_both_backends!(
    a_payer_pays_on_the_hosted_page_and_returns_to_the_merchant,
    a_declined_card_is_explained_and_nothing_moves,
    a_card_without_a_published_code_is_texted_one_on_the_page,
    browser_consumes_are_refused_with_their_resp_codes,
);

const MER_ID: &str = "777290058110048";

/// The merchant's side: its key and certificate from the sandbox's files, the checkout form
/// it serves, and what came back to its `frontUrl`.
struct Shop {
    base: String,
    key: RsaSigningKey,
    certificate: Certificate,
    checkout: Mutex<String>,
    returned: Mutex<Vec<Form>>,
    notified: Mutex<Vec<Form>>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Shop {
    async fn open(app: &TestApp) -> Arc<Shop> {
        let upacp = app.data_dir.join("upacp");
        let key = PrivatePkcs8KeyDer::from_pem_file(upacp.join(format!("merchant-{MER_ID}.key")))
            .unwrap();
        let certificate = Certificate::from_pem(
            &std::fs::read_to_string(upacp.join(format!("merchant-{MER_ID}.pem"))).unwrap(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shop = Arc::new(Shop {
            base,
            key: RsaSigningKey::from_pkcs8_der(key.secret_pkcs8_der()).unwrap(),
            certificate,
            checkout: Mutex::new(String::new()),
            returned: Mutex::new(Vec::new()),
            notified: Mutex::new(Vec::new()),
            server: Mutex::new(None),
        });
        let router = axum::Router::new()
            .route("/checkout", get(checkout))
            .route("/return", post(front_return))
            .route("/notify", post(back_notify))
            .with_state(Arc::clone(&shop));
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        *shop.server.lock().unwrap() = Some(server);
        shop
    }

    /// A signed browser consume (`frontTransReq.do`) for `amount` fen.
    fn consume(&self, order_id: &str, amount: u64, channel: &str) -> Form {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut form = Form::new()
            .with("version", "5.1.0")
            .with("encoding", "UTF-8")
            .with("txnType", "01")
            .with("txnSubType", "01")
            .with("bizType", "000201")
            .with("channelType", channel)
            .with("accessType", "0")
            .with("merId", MER_ID)
            .with("orderId", order_id)
            .with("txnTime", cloudpass_upacp::time::format_beijing(now))
            .with("txnAmt", amount.to_string())
            .with("currencyCode", "156")
            .with("frontUrl", format!("{}/return", self.base))
            .with("backUrl", format!("{}/notify", self.base))
            .with("certId", self.certificate.cert_id());
        signing::sign_rsa(&mut form, &self.key).unwrap();
        form
    }

    /// Makes `/checkout` the auto-submitting form UnionPay's SDKs make.
    fn prepare_checkout(&self, app: &TestApp, form: &Form) {
        let inputs: String = form
            .iter()
            .map(|(name, value)| {
                format!(
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                    escape(name),
                    escape(value)
                )
            })
            .collect();
        *self.checkout.lock().unwrap() = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>\
             <form id=\"pay_form\" action=\"{}/gateway/api/frontTransReq.do\" method=\"post\">{inputs}</form>\
             <script>document.getElementById('pay_form').submit();</script></body></html>",
            app.base
        );
    }

    fn stop(&self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            server.abort();
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn checkout(State(shop): State<Arc<Shop>>) -> Html<String> {
    Html(shop.checkout.lock().unwrap().clone())
}

async fn front_return(State(shop): State<Arc<Shop>>, body: axum::body::Bytes) -> Html<String> {
    let form = Form::parse_urlencoded(&body).unwrap();
    let order = form.get("orderId").unwrap_or_default().to_owned();
    shop.returned.lock().unwrap().push(form);
    Html(format!(
        "<!DOCTYPE html><html><body><h1 id=\"thanks\">Thank you: order {order}</h1></body></html>"
    ))
}

async fn back_notify(State(shop): State<Arc<Shop>>, body: axum::body::Bytes) -> &'static str {
    if let Ok(form) = Form::parse_urlencoded(&body) {
        shop.notified.lock().unwrap().push(form);
    }
    "ok"
}

/// An orderId of 8 to 40 letters and digits, unique in this process.
fn order_id(prefix: &str) -> String {
    format!("{prefix}{:0>10}", unique_suffix().replace('-', ""))
}

async fn a_payer_pays_on_the_hosted_page_and_returns_to_the_merchant(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open(&app).await;
    let start = balance(&app, CMB_DEBIT).await;
    let order = order_id("WEB");
    shop.prepare_checkout(&app, &shop.consume(&order, 2599, "08"));

    let chromium = Browser::launch().await;
    let page = chromium.open(&format!("{}/checkout", shop.base)).await;
    // The checkout form posts itself; the gateway sends the browser to the TN's page.
    assert_eq!(browser::wait_for(&page, "#amount").await, "¥25.99");
    assert_eq!(browser::text(&page, "#order-id").await.unwrap(), order);
    let url = page.url().await.unwrap().unwrap();
    let tn = url.rsplit('/').next().unwrap().to_owned();
    assert!(
        url.contains("/gateway/pay/") && tn.len() == 21,
        "on the hosted page: {url}"
    );
    let hint = browser::text(&page, ".hint summary").await.unwrap();
    assert!(hint.contains("test cards"), "{hint}");
    browser::screenshot(&page, &format!("gateway-1-card-{backend:?}")).await;

    browser::fill(&page, "#card_number", CMB_DEBIT).await;
    browser::click_to(&page, "#next", "#sms_code").await;
    let card = browser::text(&page, "#card").await.unwrap();
    assert!(
        card.contains("622609******0048") && card.contains("debit"),
        "{card}"
    );
    assert!(
        browser::text(&page, "#cvn2").await.is_none(),
        "a debit card asks for its PIN"
    );
    let hint = browser::text(&page, "#sms-hint").await.unwrap();
    assert!(hint.contains("111111"), "{hint}");
    browser::screenshot(&page, &format!("gateway-2-details-{backend:?}")).await;

    // A wrong SMS code: the step again, saying so, without the code typed.
    fill_identity(&page, ZHANG_SAN_PHONE).await;
    browser::fill(&page, "#sms_code", "987654").await;
    browser::fill(&page, "#pin", "111101").await;
    let error = browser::click_to(&page, "#pay", "#error").await;
    assert!(error.contains("SMS code is wrong"), "{error}");
    let html = page.content().await.unwrap();
    assert!(
        !html.contains("987654") && !html.contains("111101"),
        "{html}"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start, "nothing moved");

    // A phone number the bank does not hold for the card: said, and not repeated.
    fill_identity(&page, "18100000009").await;
    browser::fill(&page, "#sms_code", "111111").await;
    browser::fill(&page, "#pin", "111101").await;
    let error = browser::click_to(&page, "#pay", "#error").await;
    assert!(error.contains("does not match"), "{error}");
    assert!(!page.content().await.unwrap().contains("18100000009"));
    assert_eq!(balance(&app, CMB_DEBIT).await, start, "nothing moved");

    fill_identity(&page, ZHANG_SAN_PHONE).await;
    browser::fill(&page, "#sms_code", "111111").await;
    browser::fill(&page, "#pin", "111101").await;
    let result = browser::click_to(&page, "#pay", "#result").await;
    assert!(result.contains("Payment successful"), "{result}");
    browser::screenshot(&page, &format!("gateway-3-paid-{backend:?}")).await;
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 2599);

    // Back to the merchant with the signed front notification.
    let thanks = browser::click_to(&page, "#return", "#thanks").await;
    assert!(thanks.contains(&order), "{thanks}");
    let returned = shop.returned.lock().unwrap().clone();
    assert_eq!(returned.len(), 1);
    let front = &returned[0];
    verify_from_platform(&app.data_dir, front);
    assert_eq!(front.get("respCode"), Some("00"));
    assert_eq!(front.get("orderId"), Some(order.as_str()));
    assert_eq!(front.get("txnAmt"), Some("2599"));
    assert_eq!(front.get("tn"), Some(tn.as_str()));
    assert_eq!(front.get("queryId").map(str::len), Some(21));

    // The page of a paid TN shows the result again, and nothing is charged twice.
    let again = chromium
        .open(&format!("{}/gateway/pay/{tn}", app.base))
        .await;
    let result = browser::wait_for(&again, "#result").await;
    assert!(result.contains("Payment successful"), "{result}");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 2599);

    chromium.close().await;
    shop.stop();
    app.stop().await;
}

/// The phone UnionPay publishes for its 招商 and 华夏 test cards' holder, 张三.
const ZHANG_SAN_PHONE: &str = "18100000000";

/// Fills the identity fields the page asks for the published cards of 张三.
async fn fill_identity(page: &chromiumoxide::Page, phone: &str) {
    browser::fill(page, "#holder_name", "张三").await;
    browser::fill(page, "#phone", phone).await;
    browser::fill(page, "#id_number", "510265790128303").await;
}

async fn a_declined_card_is_explained_and_nothing_moves(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open(&app).await;
    let start = balance(&app, HUAXIA_CREDIT).await;
    shop.prepare_checkout(&app, &shop.consume(&order_id("DECL"), 800, "07"));

    let chromium = Browser::launch().await;
    let page = chromium.open(&format!("{}/checkout", shop.base)).await;
    browser::wait_for(&page, "#card_number").await;
    // Not a card number: said plainly, nothing repeated.
    browser::fill(&page, "#card_number", "6226388000000096").await;
    let error = browser::click_to(&page, "#next", "#error").await;
    assert!(error.contains("not a valid card number"), "{error}");
    assert!(!page.content().await.unwrap().contains("6226388000000096"));

    browser::fill(&page, "#card_number", HUAXIA_CREDIT).await;
    browser::click_to(&page, "#next", "#cvn2").await;
    assert!(
        browser::text(&page, "#pin").await.is_none(),
        "a credit card asks for CVN2"
    );
    fill_identity(&page, ZHANG_SAN_PHONE).await;
    browser::fill(&page, "#sms_code", "111111").await;
    browser::fill(&page, "#cvn2", "247").await;
    browser::fill(&page, "#expiry", "2912").await;
    let result = browser::click_to(&page, "#pay", "#result").await;
    assert!(result.contains("Payment failed"), "{result}");
    let message = browser::text(&page, "#message").await.unwrap();
    assert!(message.starts_with("The CVN2 was wrong"), "{message}");
    let html = page.content().await.unwrap();
    assert!(html.contains("respCode 65"), "{html}");
    assert!(
        !html.contains("name=\"signature\""),
        "no signed front notification for a failed payment"
    );
    browser::screenshot(&page, &format!("gateway-4-declined-{backend:?}")).await;
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start, "nothing moved");

    chromium.close().await;
    shop.stop();
    app.stop().await;
}

/// A card the bank reissued: entering it texts a code to the card's phone, the step says
/// where, and the code from the sandbox's SMS inbox pays.
async fn a_card_without_a_published_code_is_texted_one_on_the_page(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (reissued, phone) = reissued_card(&app).await;
    let start = balance(&app, reissued).await;
    let shop = Shop::open(&app).await;
    shop.prepare_checkout(&app, &shop.consume(&order_id("SMS"), 1999, "08"));

    let chromium = Browser::launch().await;
    let page = chromium.open(&format!("{}/checkout", shop.base)).await;
    browser::wait_for(&page, "#card_number").await;
    browser::fill(&page, "#card_number", reissued).await;
    browser::click_to(&page, "#next", "#sms_code").await;
    assert!(
        browser::text(&page, "#holder_name").await.is_none(),
        "a card without a named holder is not asked for one"
    );
    let hint = browser::text(&page, "#sms-hint").await.unwrap();
    assert!(hint.contains("135****5506"), "{hint}");
    assert!(browser::text(&page, "#resend").await.is_some());
    browser::screenshot(&page, &format!("gateway-5-sms-sent-{backend:?}")).await;
    let code = app.latest_otp(phone).await;
    browser::fill(&page, "#sms_code", &code).await;
    browser::fill(&page, "#pin", "123456").await;
    let result = browser::click_to(&page, "#pay", "#result").await;
    assert!(result.contains("Payment successful"), "{result}");
    assert_eq!(balance(&app, reissued).await, start - 1999);

    chromium.close().await;
    shop.stop();
    app.stop().await;
}

async fn browser_consumes_are_refused_with_their_resp_codes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = Shop::open(&app).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let front = format!("{}/gateway/api/frontTransReq.do", app.base);
    let send = |form: Form| {
        let http = http.clone();
        let front = front.clone();
        async move {
            let response = http
                .post(&front)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.to_urlencoded())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, location, response.text().await.unwrap())
        }
    };

    // Accepted: 302 to the TN's page; the same bytes again find the same TN.
    let form = shop.consume(&order_id("OK"), 100, "07");
    let (status, location, _) = send(form.clone()).await;
    assert_eq!(status, 302);
    let page_location = location.unwrap();
    assert!(
        page_location.starts_with("/gateway/pay/"),
        "{page_location}"
    );
    assert_eq!(send(form).await.1.as_deref(), Some(page_location.as_str()));

    // Tampered after signing: 11.
    let mut tampered = shop.consume(&order_id("TAMP"), 100, "08");
    tampered.set("txnAmt", "1");
    let (status, location, html) = send(tampered).await;
    assert_eq!((status, location), (400, None));
    assert!(html.contains("respCode 11"), "{html}");

    // No frontUrl: 13 (a browser payment returns the payer there).
    let mut no_front = shop.consume(&order_id("NOFR"), 100, "08");
    no_front.remove("frontUrl");
    signing::sign_rsa(&mut no_front, &shop.key).unwrap();
    let (status, _, html) = send(no_front).await;
    assert_eq!(status, 400);
    assert!(
        html.contains("respCode 13") && html.contains("frontUrl"),
        "{html}"
    );

    // An order id reused with other bytes: 12.
    // The same txnTime too: an order is merId + orderId + txnTime, and two forms
    // built a second apart would be two orders.
    let first = shop.consume(&order_id("DUP"), 100, "08");
    send(first.clone()).await;
    let mut other_bytes = first;
    other_bytes.set("txnAmt", "200");
    signing::sign_rsa(&mut other_bytes, &shop.key).unwrap();
    let (status, _, html) = send(other_bytes).await;
    assert_eq!(status, 400);
    assert!(html.contains("respCode 12"), "{html}");

    // Not a form at all: 10, and the page does not repeat it.
    let response = http.post(&front).body("%zz=<script>").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("respCode 10") && !html.contains("<script>"),
        "{html}"
    );

    // The page: an unknown TN is a 404 page; a real one is never cached, framed or scripted.
    let response = http
        .get(format!("{}/gateway/pay/123456789012345678901", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let response = http
        .get(format!("{}{page_location}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-frame-options"], "DENY");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );

    shop.stop();
    app.stop().await;
}

//! The payment SDK's three flows from the demo institution's checkout, in a real headless
//! Chromium: the shop (`/demo-merchant`) gets a TN over UPACP with its own certificate, its
//! page calls `CloudPass.startPay`, and cloudpass picks the flow by itself — WAP pay when the
//! app is not installed on the phone (the phone simulator's setting), control pay in the app
//! when it is installed and logged in, the cashier when installed and logged out (by card
//! number, or by logging in). Each payment is checked where it counts: the order's state
//! from the shop's query, the notification the shop verified, the synchronous result the
//! shop's server verified, and the bank's ledger. A merchant without the SDK-WAP permission
//! is refused, and a refund gives the money back. Screenshots land in `target/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use chromiumoxide::Page;
use support::app::*;
use support::browser::{self, Browser};
use support::network::balance;
use support::wallet::{CMB_DEBIT, PASSWORD, sign_up_with_a_card};

on_both_backends!(
    the_three_sdk_flows_pay_from_the_demo_shop_s_checkout,
    the_sdk_refuses_what_it_cannot_trust,
    result_data_verifies_from_outside_as_the_docs_say,
    one_wap_permission_without_the_other_is_refused_clearly,
    a_campaign_takes_its_discount_off_in_the_app_and_the_shop_is_paid_in_full,
    a_spent_campaign_changes_the_amount_before_anything_is_charged,
    a_card_bound_at_the_shop_pays_by_token_and_is_removed,
);

const CMB_PIN: &str = "111101";
const LATTE_FEN: i64 = 1_250;
const NOTEBOOK_FEN: i64 = 5_800;
/// The sandbox campaign's discount on app payments of 50.00 or more.
const CAMPAIGN_OFF_FEN: i64 = 500;

/// The value of `expression` on `page`, polled until it is `expected` (reloading the page
/// between polls when `reload`), or a panic that says what it was.
async fn wait_until(page: &Page, expression: &str, expected: &str, reload: bool) {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(value) = page.evaluate(expression).await
            && let Ok(value) = value.into_value::<String>()
        {
            if value == expected {
                return;
            }
            last = value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if reload {
            let _ = page.reload().await;
        }
    }
    let html = page.content().await.unwrap_or_default();
    panic!("{expression} stayed {last:?}, not {expected:?}:\n{html}");
}

const ORDER_STATE: &str = "document.querySelector('#order').dataset.state";
const APP_RESULT: &str = "document.querySelector('#app-result').dataset.result";
const NOTIFIED: &str = "document.querySelector('#notification').dataset.code";

/// From the shop's front page: buys `item` under `storefront` and chooses Cloud QuickPass,
/// which leads to a page that shows `expect`; the checkout's screenshot as `screenshot`.
async fn buy_with_quickpass(
    page: &Page,
    app: &TestApp,
    item: &str,
    storefront: &str,
    expect: &str,
    screenshot: Option<&str>,
) {
    page.goto(format!("{}/demo-merchant?lang=en", app.base))
        .await
        .unwrap();
    browser::wait_for(page, &format!("#buy-{item}")).await;
    page.evaluate(format!(
        "document.querySelector('#storefront-{item}').value = '{storefront}'"
    ))
    .await
    .unwrap();
    browser::click_to(page, &format!("#buy-{item}"), "#way-quickpass").await;
    if let Some(name) = screenshot {
        browser::screenshot(page, name).await;
    }
    browser::click_to(page, "#pay-quickpass", expect).await;
}

/// On the gateway's hosted page: pays with the CMB debit card (its SMS code, its holder as
/// UnionPay's test data has them, and its PIN).
async fn pay_by_card_number(page: &Page) {
    browser::fill(page, "#card_number", CMB_DEBIT).await;
    browser::click_to(page, "#next", "#sms_code").await;
    browser::fill(page, "#sms_code", "111111").await;
    browser::fill(page, "#holder_name", "张三").await;
    browser::fill(page, "#phone", "18100000000").await;
    browser::fill(page, "#id_number", "510265790128303").await;
    browser::fill(page, "#pin", CMB_PIN).await;
    let result = browser::click_to(page, "#pay", "#result").await;
    assert!(result.starts_with("Payment successful"), "{result}");
}

/// Back at the shop: the order is paid (the shop's query says so) and the shop's server
/// verified the synchronous result `app_result` ("" when there is none, as for WAP pay).
async fn shop_says_paid(page: &Page, app_result: &str) {
    wait_until(page, ORDER_STATE, "paid", false).await;
    wait_until(page, APP_RESULT, app_result, false).await;
    // The notification arrives on its own; the page shows it once it has.
    wait_until(page, NOTIFIED, "00", true).await;
}

/// In the app: the app itself as a device, with the debit card (control pay pays with it).
async fn put_the_card_on_the_app(page: &Page) {
    browser::click_to(page, "#devices", "#devices-empty").await;
    page.evaluate("document.querySelector('#choice').value = 'app'")
        .await
        .unwrap();
    browser::click_to(page, "#add-device", "#notice").await;
    browser::click_to(page, "#device-1 button.add-to-device", "#notice").await;
}

/// What the console's overview says the sandbox campaign has spent, in fen.
async fn campaign_spent(page: &Page, app: &TestApp) -> i64 {
    page.goto(format!("{}/console?lang=en", app.base))
        .await
        .unwrap();
    if page.find_element("#operator_key").await.is_ok() {
        browser::fill(page, "#operator_key", app.operator_key()).await;
        browser::click_to(page, "#log-in", "#counters").await;
    }
    browser::wait_for(page, "#campaigns").await;
    page.evaluate(
        "document.querySelector('#campaigns dd[data-campaign=CQP202612001]').dataset.spent",
    )
    .await
    .unwrap()
    .into_value::<String>()
    .unwrap()
    .parse()
    .unwrap()
}

async fn the_three_sdk_flows_pay_from_the_demo_shop_s_checkout(backend: Backend) {
    let app = TestApp::start(backend).await;
    let chromium = Browser::launch().await;
    let page = sign_up_with_a_card(&app, &chromium, "13900000201").await;
    put_the_card_on_the_app(&page).await;
    let start = balance(&app, CMB_DEBIT).await;

    // Not installed: WAP pay on the gateway's page; the result is asynchronous.
    buy_with_quickpass(
        &page,
        &app,
        "latte",
        "main",
        "#card_number",
        Some(&format!("sdk-0-checkout-{backend:?}")),
    )
    .await;
    let url = page.url().await.unwrap().unwrap();
    assert!(url.contains("sdk_flow=wap"), "{url}");
    browser::screenshot(&page, &format!("sdk-1-wap-{backend:?}")).await;
    pay_by_card_number(&page).await;
    browser::click_to(&page, "#return", "#order").await;
    shop_says_paid(&page, "").await;
    browser::screenshot(&page, &format!("sdk-2-shop-order-paid-{backend:?}")).await;
    assert_eq!(balance(&app, CMB_DEBIT).await, start - LATTE_FEN);

    // Installed (on the phone simulator) and logged in: control pay in the app.
    page.goto(format!("{}/phone", app.base)).await.unwrap();
    browser::click_to(&page, "#install", "#uninstall").await;
    buy_with_quickpass(&page, &app, "latte", "main", "#pay", None).await;
    assert!(browser::text(&page, "#cancel").await.is_some());
    browser::screenshot(&page, &format!("sdk-3-control-pay-{backend:?}")).await;
    let result = browser::click_to(&page, "#pay", "#result").await;
    assert!(
        result.contains("Paid") && result.contains("debit"),
        "{result}"
    );
    browser::click_to(&page, "#return", "#order").await;
    shop_says_paid(&page, "success").await;
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 2 * LATTE_FEN);

    // Control pay given up: the shop hears `cancel`, signed, and nothing moves.
    buy_with_quickpass(&page, &app, "latte", "main", "#pay", None).await;
    browser::click_to(&page, "#cancel", "#order").await;
    wait_until(&page, APP_RESULT, "cancel", false).await;
    wait_until(&page, ORDER_STATE, "unpaid", false).await;
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 2 * LATTE_FEN);

    // Installed, logged out: the cashier — by card number on the gateway's page ...
    page.goto(format!("{}/wallet", app.base)).await.unwrap();
    browser::click_to(&page, "#log-out", "#submit").await;
    buy_with_quickpass(&page, &app, "latte", "main", "#cashier", None).await;
    browser::screenshot(&page, &format!("sdk-4-cashier-{backend:?}")).await;
    // The language switch keeps the payment (a page without its TN would be a dead end).
    let switch = page
        .evaluate("document.querySelector('#language').getAttribute('href')")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap();
    assert!(
        switch.contains("&tn=") && switch.contains("&return="),
        "{switch}"
    );
    browser::click_to(&page, "#by-card", "#card_number").await;
    let url = page.url().await.unwrap().unwrap();
    assert!(url.contains("sdk_flow=cashier"), "{url}");
    pay_by_card_number(&page).await;
    browser::click_to(&page, "#return", "#order").await;
    shop_says_paid(&page, "success").await;
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 3 * LATTE_FEN);

    // ... or by logging in and paying with the app's card.
    buy_with_quickpass(&page, &app, "latte", "main", "#cashier", None).await;
    browser::click_to(&page, "#log-in", "#phone").await;
    // Someone without an account signs up from here and comes back to the payment too.
    let sign_up = page
        .evaluate("document.querySelector('#to-sign-up').getAttribute('href')")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap();
    assert!(
        sign_up.starts_with("/wallet/signup?next=/wallet/pay%3Ftn%3D"),
        "{sign_up}"
    );
    browser::fill(&page, "#phone", "13900000201").await;
    browser::fill(&page, "#password", PASSWORD).await;
    browser::click_to(&page, "#submit", "#pay").await;
    browser::click_to(&page, "#pay", "#result").await;
    browser::click_to(&page, "#return", "#order").await;
    shop_says_paid(&page, "success").await;
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 4 * LATTE_FEN);

    // The shop refunds the last order in full: the card gets it back, once.
    browser::click_to(&page, "#refund", "#refunded").await;
    wait_until(&page, ORDER_STATE, "refunded", false).await;
    assert!(browser::text(&page, "#refund").await.is_none());
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 3 * LATTE_FEN);

    // Not installed, and the merchant lacks SDK WAP: refused, with the way back.
    page.goto(format!("{}/phone", app.base)).await.unwrap();
    browser::click_to(&page, "#uninstall", "#install").await;
    buy_with_quickpass(&page, &app, "latte", "no-sdk-wap", "#resp-code", None).await;
    assert_eq!(
        browser::text(&page, "#resp-code").await.unwrap(),
        "respCode 32"
    );
    let why = browser::text(&page, "#message").await.unwrap();
    assert!(why.contains("SDK WAP"), "{why}");
    browser::screenshot(&page, &format!("sdk-5-no-sdk-wap-{backend:?}")).await;
    browser::click_to(&page, "#return", "#order").await;
    wait_until(&page, ORDER_STATE, "unpaid", false).await;
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 3 * LATTE_FEN);

    let html = page.content().await.unwrap();
    assert!(!html.contains(CMB_DEBIT) && !html.contains(CMB_PIN));

    // The operator finds every step in the console: a wrong key is refused; the orders, the
    // refunded one with its notification sent and acknowledged, the refund that returns it.
    // In Chinese first (the default), then in English.
    page.goto(format!("{}/console", app.base)).await.unwrap();
    browser::fill(&page, "#operator_key", "not the key").await;
    let error = browser::click_to(&page, "#log-in", "#error").await;
    assert!(error.starts_with("运营密钥不正确"), "{error}");
    browser::click_to(&page, "#language", "#operator_key").await;
    browser::fill(&page, "#operator_key", "not the key").await;
    let error = browser::click_to(&page, "#log-in", "#error").await;
    assert!(error.starts_with("That is not the operator key"), "{error}");
    browser::fill(&page, "#operator_key", app.operator_key()).await;
    browser::click_to(&page, "#log-in", "#counters").await;
    let paid = browser::text(&page, "#count-orders dd[data-label=refunded]").await;
    assert_eq!(paid.as_deref(), Some("1"), "one consume refunded in full");
    browser::click_to(&page, "#nav-orders", "#orders").await;
    browser::screenshot(&page, &format!("console-1-orders-{backend:?}")).await;
    let refund_tn = page
        .evaluate("[...document.querySelectorAll('#orders tr[data-tn]')].find(r => r.children[4].textContent === 'refund').dataset.tn")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap();
    page.goto(format!("{}/console/orders/{refund_tn}", app.base))
        .await
        .unwrap();
    browser::wait_for(&page, "#order").await;
    // The refund links to the consume it returns: open that.
    browser::click_to(
        &page,
        "#order a[href^='/console/orders/']",
        "#notifications",
    )
    .await;
    assert_eq!(browser::text(&page, "#state").await.unwrap(), "refunded");
    assert_eq!(browser::text(&page, "#amount").await.unwrap(), "12.50 CNY");
    let card = browser::text(&page, "#card").await.unwrap();
    // Paid in the app: the order keeps the device card's number, masked.
    assert!(
        card.starts_with("623118******") && card.ends_with("debit"),
        "{card}"
    );
    let delivered = page
        .evaluate("document.querySelectorAll('#notifications tr.notification[data-state=delivered]').length")
        .await
        .unwrap()
        .into_value::<i64>()
        .unwrap();
    assert!(
        delivered >= 1,
        "the shop acknowledged the payment's notification"
    );
    browser::screenshot(&page, &format!("console-2-order-{backend:?}")).await;
    browser::click_to(&page, "#nav-journal", "#journal").await;
    let journal = page.content().await.unwrap();
    assert!(!journal.contains(CMB_DEBIT));
    browser::click_to(&page, "#nav-merchants", "#merchants").await;
    let merchants = browser::text(&page, "#merchants").await.unwrap();
    assert!(merchants.contains("777290058110101"), "{merchants}");
    chromium.close().await;
    app.stop().await;
}

/// The SDK's addresses from outside: the script is served; a return address that is not one,
/// a production mode in the sandbox, an unknown TN — each refused on a page that says so, and
/// nobody is sent to an address without an order's TN.
async fn the_sdk_refuses_what_it_cannot_trust(backend: Backend) {
    let app = TestApp::start(backend).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", app.base);
        async move { http.get(url).send().await.unwrap() }
    };
    let script = get("/sdk/cloudpass.js".into()).await;
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.text().await.unwrap().contains("startPay"));

    let evil = "https%3A%2F%2Fevil.example%2F";
    let unknown = get(format!(
        "/sdk/return?tn=123456789012345678901&return={evil}"
    ))
    .await;
    assert_eq!(unknown.status(), 404);
    assert!(unknown.headers().get("location").is_none());

    let bad_return = get("/sdk/route?tn=1&mode=01&return=javascript%3Aalert(1)".into()).await;
    assert_eq!(bad_return.status(), 400);
    let page = bad_return.text().await.unwrap();
    assert!(page.contains("id=\"error\"") && !page.contains("javascript:alert"));

    let production = get(format!("/sdk/route?tn=1&mode=00&return={evil}")).await;
    assert_eq!(production.status(), 409);
    assert!(
        production
            .text()
            .await
            .unwrap()
            .contains("https://evil.example/#pay_result=fail")
    );
    let no_order = get(format!(
        "/sdk/route?tn=123456789012345678901&mode=01&return={evil}"
    ))
    .await;
    assert_eq!(no_order.status(), 404);
    app.stop().await;
}

/// `result_data` checked by an independent client written from docs/sdk.md (Python,
/// PyPI `cryptography`): a TN issued over UPACP and given up in the app comes back `cancel`,
/// signed; the same result with its data changed does not verify.
async fn result_data_verifies_from_outside_as_the_docs_say(backend: Backend) {
    let app = TestApp::start(backend).await;
    let merchant = support::upacp::Merchant::sandbox(&app.base, &app.data_dir);
    let answer = merchant
        .post(
            "/gateway/api/appTransReq.do",
            merchant.consume("SDKRESULT01", 1_250),
        )
        .await;
    let tn = answer.get("tn").unwrap().to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = http
        .get(format!(
            "{}/sdk/return?tn={tn}&return=https%3A%2F%2Fshop.example%2Fr",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 303);
    let location = back.headers()["location"].to_str().unwrap().to_owned();
    let (page, fragment) = location.split_once('#').unwrap();
    assert_eq!(page, "https://shop.example/r");
    let fields: std::collections::HashMap<String, String> =
        form_urlencoded::parse(fragment.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(fields["pay_result"], "cancel");
    let result_data = &fields["result_data"];
    let verify = |data: &str| {
        std::process::Command::new(support::interop_python())
            .arg(support::interop_dir().join("verify_app_result.py"))
            .arg(app.data_dir.join("upacp").join("sign.pem"))
            .arg(&tn)
            .arg(data)
            .output()
            .unwrap()
    };
    let verified = verify(result_data);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&verified.stdout).trim(), "cancel");
    let forged = result_data.replace("pay_result=cancel", "pay_result=success");
    assert_ne!(&forged, result_data);
    let refused = verify(&forged);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("signature does not verify"));
    app.stop().await;
}

/// A merchant registered with `permissions`, its certificate issued by the platform into
/// `dir`, as an integration would use it.
async fn registered_merchant(
    app: &TestApp,
    mer_id: &str,
    permissions: &str,
    dir: &std::path::Path,
) -> support::upacp::Merchant {
    use cloudpass_store::{GatewayStore, MerchantRow};
    let now = support::upacp::now_seconds();
    let (pem, _) =
        cloudpass::sandbox_upacp::issue_merchant(&app.data_dir, mer_id, dir, now, "000000")
            .unwrap();
    let row = MerchantRow {
        mer_id: mer_id.into(),
        name: format!("shop {mer_id}"),
        certificate_pem: std::fs::read_to_string(pem).unwrap(),
        permissions: permissions.into(),
        secure_key_sealed: None,
        created_at: now * 1000,
        updated_at: now * 1000,
    };
    assert!(app.running.tsp.store().insert_merchant(&row).await.unwrap());
    support::upacp::Merchant::from_files(&app.base, &app.data_dir, mer_id, dir)
}

/// The hosted page as the SDK sends a payer without the app to it, for a new order of
/// `merchant`.
async fn sdk_wap_page(
    app: &TestApp,
    merchant: &support::upacp::Merchant,
    order: &str,
) -> reqwest::Response {
    let answer = merchant
        .post(
            "/gateway/api/appTransReq.do",
            merchant.consume(order, 1_250),
        )
        .await;
    let tn = answer.get("tn").unwrap();
    reqwest::get(format!(
        "{}/gateway/pay/{tn}?sdk_flow=wap&sdk_return=https%3A%2F%2Fshop.example%2Fr",
        app.base
    ))
    .await
    .unwrap()
}

/// SDK WAP and API WAP are two permissions: a merchant with one and not the other is refused
/// on the route it lacks — with respCode 32 and a page that names the permission — and
/// served on the other.
async fn one_wap_permission_without_the_other_is_refused_clearly(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = app.data_dir.join("wap-merchants");
    std::fs::create_dir_all(&dir).unwrap();
    let all_but = |lacking: &str| {
        [
            "app_consume",
            "back_consume",
            "pc_consume",
            "api_wap",
            "sdk_wap",
            "undo",
            "refund",
            "query",
            "card_details",
        ]
        .into_iter()
        .filter(|name| *name != lacking)
        .collect::<Vec<_>>()
        .join(",")
    };
    let sdk_only = registered_merchant(&app, "777290058119001", &all_but("api_wap"), &dir).await;
    let api_only = registered_merchant(&app, "777290058119002", &all_but("sdk_wap"), &dir).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let front = |merchant: &support::upacp::Merchant, order: &str| {
        let form = merchant.sign(
            merchant
                .consume(order, 1_250)
                .with("frontUrl", "https://shop.example/back"),
        );
        http.post(format!("{}/gateway/api/frontTransReq.do", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_urlencoded())
            .send()
    };
    // API WAP: the merchant's own form to frontTransReq.do.
    let refused = front(&sdk_only, "WAPSDKONLY01").await.unwrap();
    assert_eq!(refused.status(), 400);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("respCode 32") && page.contains("API WAP"),
        "{page}"
    );
    let served = front(&api_only, "WAPAPIONLY01").await.unwrap();
    assert_eq!(served.status(), 302);
    // SDK WAP: the hosted page the SDK sends a payer without the app to.
    assert_eq!(
        sdk_wap_page(&app, &sdk_only, "WAPSDKONLY02").await.status(),
        200
    );
    let refused = sdk_wap_page(&app, &api_only, "WAPAPIONLY02").await;
    assert_eq!(refused.status(), 403);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("respCode 32") && page.contains("SDK WAP"),
        "{page}"
    );
    app.stop().await;
}

/// The sandbox campaign (5.00 off app payments of 50.00 or more, paid for by UnionPay): the
/// app's confirm screen shows it and charges the card the rest; the shop's query and
/// notification carry it in `couponInfo` and settle the shop the whole amount; three partial
/// refunds give the card what it paid and the campaign its 5.00, the last fen the campaign's
/// alone; paying by card number in the cashier gets no discount.
async fn a_campaign_takes_its_discount_off_in_the_app_and_the_shop_is_paid_in_full(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let chromium = Browser::launch().await;
    let page = sign_up_with_a_card(&app, &chromium, "13900000202").await;
    put_the_card_on_the_app(&page).await;
    page.goto(format!("{}/phone", app.base)).await.unwrap();
    browser::click_to(&page, "#install", "#uninstall").await;
    let start = balance(&app, CMB_DEBIT).await;

    // Control pay of a 58.00 notebook: 53.00 to pay, the discount named.
    buy_with_quickpass(&page, &app, "notebook", "main", "#pay", None).await;
    assert_eq!(browser::text(&page, "#amount").await.unwrap(), "53.00 CNY");
    let discount = browser::text(&page, "#discount").await.unwrap();
    assert!(
        discount.contains("58.00") && discount.contains("−5.00"),
        "{discount}"
    );
    browser::screenshot(&page, &format!("sdk-6-control-pay-discount-{backend:?}")).await;
    let result = browser::click_to(&page, "#pay", "#result").await;
    assert!(
        result.contains("Paid") && result.contains("53.00"),
        "{result}"
    );
    browser::click_to(&page, "#return", "#order").await;
    shop_says_paid(&page, "success").await;
    assert_eq!(
        balance(&app, CMB_DEBIT).await,
        start - (NOTEBOOK_FEN - CAMPAIGN_OFF_FEN)
    );
    // The shop's query: couponInfo from UnionPay's campaign, and the whole 58.00 settled.
    let coupon = page
        .evaluate("document.querySelector('#coupon').dataset.offset")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap();
    assert_eq!(coupon, CAMPAIGN_OFF_FEN.to_string());
    // The notification the shop verified says the same.
    let notified = page
        .evaluate("document.querySelector('#notification').dataset.discount")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap();
    assert_eq!(notified, CAMPAIGN_OFF_FEN.to_string());
    let sponsor = browser::text(&page, "#coupon").await.unwrap();
    assert!(sponsor.contains("00010000"), "{sponsor}");
    assert_eq!(
        browser::text(&page, "#settled").await.unwrap(),
        "Settled to the shop: 58.00 CNY"
    );
    browser::screenshot(&page, &format!("sdk-7-shop-order-discount-{backend:?}")).await;
    let query_id = page
        .evaluate("document.querySelector('#method').textContent.match(/queryId (\\d+)/)[1]")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap();
    assert_eq!(campaign_spent(&page, &app).await, CAMPAIGN_OFF_FEN);

    // Refunded by the shop in three parts over UPACP, with its own key: each part gives the
    // card its share of what it paid and the campaign the rest (26.50 + 2.50, 26.50 + 2.49);
    // the last fen is all the campaign's, so it succeeds without a message to the bank.
    let shop = support::upacp::Merchant::from_files(
        &app.base,
        &app.data_dir,
        "777290058110100",
        &app.data_dir.join("upacp"),
    );
    for (n, (refund, to_card)) in [(2_900, 2_650), (2_899, 2_650), (1, 0)]
        .into_iter()
        .enumerate()
    {
        let before = balance(&app, CMB_DEBIT).await;
        let answer = shop
            .post(
                "/gateway/api/backTransReq.do",
                shop.back("04", &format!("DISCOUNTREFUND{n}"), refund, &query_id),
            )
            .await;
        assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
        assert_eq!(
            balance(&app, CMB_DEBIT).await - before,
            to_card,
            "refund {n}"
        );
    }
    assert_eq!(balance(&app, CMB_DEBIT).await, start);
    assert_eq!(campaign_spent(&page, &app).await, 0);

    // Logged out, the cashier's card-number payment: no discount, 58.00 from the card.
    page.goto(format!("{}/wallet", app.base)).await.unwrap();
    browser::click_to(&page, "#log-out", "#submit").await;
    buy_with_quickpass(&page, &app, "notebook", "main", "#cashier", None).await;
    browser::click_to(&page, "#by-card", "#card_number").await;
    pay_by_card_number(&page).await;
    browser::click_to(&page, "#return", "#order").await;
    shop_says_paid(&page, "success").await;
    assert!(browser::text(&page, "#coupon").await.is_none());
    let notified = page
        .evaluate("document.querySelector('#notification').dataset.discount")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap();
    assert_eq!(notified, "", "no couponInfo without a discount");
    assert_eq!(
        browser::text(&page, "#settled").await.unwrap(),
        "Settled to the shop: 58.00 CNY"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start - NOTEBOOK_FEN);
    assert_eq!(campaign_spent(&page, &app).await, 0);
    chromium.close().await;
    app.stop().await;
}

/// A campaign with budget for one discount, two payers' confirm screens open at once, both
/// showing 53.00: the first pays 53.00; the second, confirmed on a screen the budget no
/// longer backs, is charged nothing and told the new amount; confirmed again, it pays 58.00.
async fn a_spent_campaign_changes_the_amount_before_anything_is_charged(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        for campaign in &mut config.gateway.campaigns {
            campaign.budget = 500;
        }
    })
    .await;
    let chromium = Browser::launch().await;
    let first = sign_up_with_a_card(&app, &chromium, "13900000203").await;
    put_the_card_on_the_app(&first).await;
    first.goto(format!("{}/phone", app.base)).await.unwrap();
    browser::click_to(&first, "#install", "#uninstall").await;
    let start = balance(&app, CMB_DEBIT).await;
    buy_with_quickpass(&first, &app, "notebook", "main", "#pay", None).await;
    // The same browser, a second tab: the same app session and phone. (Each tab navigates
    // in front: a tab behind may never finish loading in headless Chromium.)
    let second = chromium.open(&format!("{}/demo-merchant", app.base)).await;
    buy_with_quickpass(&second, &app, "notebook", "main", "#pay", None).await;
    for page in [&first, &second] {
        assert_eq!(browser::text(page, "#amount").await.unwrap(), "53.00 CNY");
    }

    first.bring_to_front().await.unwrap();
    let result = browser::click_to(&first, "#pay", "#result").await;
    assert!(result.contains("53.00"), "{result}");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 5_300);

    second.bring_to_front().await.unwrap();
    let error = browser::click_to(&second, "#pay", "#error").await;
    assert!(error.starts_with("The discount has changed"), "{error}");
    assert_eq!(
        browser::text(&second, "#amount").await.unwrap(),
        "58.00 CNY"
    );
    assert!(browser::text(&second, "#discount").await.is_none());
    assert_eq!(
        balance(&app, CMB_DEBIT).await,
        start - 5_300,
        "nothing was charged"
    );
    browser::screenshot(&second, &format!("sdk-8-discount-changed-{backend:?}")).await;
    let result = browser::click_to(&second, "#pay", "#result").await;
    assert!(result.contains("58.00"), "{result}");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 5_300 - NOTEBOOK_FEN);
    assert_eq!(campaign_spent(&second, &app).await, 500);
    chromium.close().await;
    app.stop().await;
}

/// The shop's third way to pay: a card bound at the shop. The visitor binds the Huaxia
/// credit card from the checkout (a wrong SMS code first, then the right one), pays the
/// notebook with it by token (a wrong code first: the shop makes the next try a new UPACP
/// order), the bank's ledger moves and the notification comes; the shop refunds it; removing
/// the card deletes its token at the gateway. No page shows the card number.
async fn a_card_bound_at_the_shop_pays_by_token_and_is_removed(backend: Backend) {
    use cloudpass_store::CardTokenStore;

    let app = TestApp::start(backend).await;
    let chromium = Browser::launch().await;
    let page = chromium
        .open(&format!("{}/demo-merchant?lang=en", app.base))
        .await;
    let start = balance(&app, HUAXIA_CREDIT).await;
    browser::click_to(&page, "#buy-notebook", "#way-bound").await;
    browser::click_to(&page, "#bind-a-card", "#card-number").await;
    browser::fill(&page, "#card-number", HUAXIA_CREDIT).await;
    browser::fill(&page, "#expiry", "2912").await;
    browser::click_to(&page, "#send-code", "#sms-code").await;
    browser::fill(&page, "#sms-code", "000000").await;
    let error = browser::click_to(&page, "#bind", "#error").await;
    assert!(error.contains("(71)"), "{error}");
    browser::fill(&page, "#sms-code", "111111").await;
    browser::click_to(&page, "#bind", ".pay-bound").await;
    let listed = browser::text(&page, "#way-bound").await.unwrap();
    assert!(listed.contains("ending 0095 (credit)"), "{listed}");
    browser::screenshot(&page, &format!("shop-bound-card-checkout-{backend:?}")).await;
    let token = page
        .evaluate("document.querySelector('.pay-bound').dataset.token")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap();

    // A wrong code is refused before any money moves; the next try is a new UPACP order.
    browser::click_to(&page, ".pay-bound", "#cvn2").await;
    let first_try = data_order(&page).await;
    browser::fill(&page, "#sms-code", "000000").await;
    browser::fill(&page, "#cvn2", "248").await;
    let error = browser::click_to(&page, "#pay-bound", "#error").await;
    assert!(error.contains("(71)"), "{error}");
    assert_eq!(data_order(&page).await, format!("{first_try}R1"));
    browser::screenshot(&page, &format!("shop-bound-card-pay-{backend:?}")).await;
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start);
    browser::fill(&page, "#sms-code", "111111").await;
    browser::fill(&page, "#cvn2", "248").await;
    browser::click_to(&page, "#pay-bound", "#order").await;
    wait_until(&page, ORDER_STATE, "paid", false).await;
    wait_until(&page, NOTIFIED, "00", true).await;
    let method = browser::text(&page, "#method").await.unwrap();
    assert!(method.starts_with("A card bound at this shop"), "{method}");
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start - NOTEBOOK_FEN);

    browser::click_to(&page, "#refund", "#refunded").await;
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start);

    // Removing the card deletes its token at the gateway.
    page.goto(format!("{}/demo-merchant/cards", app.base))
        .await
        .unwrap();
    browser::wait_for(&page, ".bound-card").await;
    let html = page.content().await.unwrap();
    assert!(
        !html.contains(HUAXIA_CREDIT),
        "no page shows the card number"
    );
    browser::click_to(&page, ".bound-card button", "#no-cards").await;
    let store = app.running.tsp.store().clone();
    let row = store.card_token(&token).await.unwrap().unwrap();
    assert_eq!(row.status, "deleted");
    chromium.close().await;
    app.stop().await;
}

/// The UPACP orderId of the bound-card payment page's current try.
async fn data_order(page: &Page) -> String {
    page.evaluate("document.querySelector('#bound-pay').dataset.order")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap()
}

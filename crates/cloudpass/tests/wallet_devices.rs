//! A person's whole path from the app to a shop's POS, in a real headless Chromium: sign up,
//! bind a card (the bank's texted code), add a phone, put the card onto it (空中发卡 through
//! the token service and the bank), then tap it on the phone simulator's POS — under the
//! no-PIN limit, over it with the PIN pad, and over it with the fingerprint (CDCVM) — through
//! the switch's ISO 8583 port to the bank. Each step asserts what the person sees and what
//! the bank's ledger says; suspending the device card in the app makes the next tap decline,
//! resuming it makes it pay again; the bank deleting it takes it off the phone (the token
//! service's notification to the app), and signing out of the device forgets the device.
//! Screenshots land in `target/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use support::app::*;
use support::browser::{self, Browser};
use support::network::balance;
use support::wallet::{CARD_PHONE, CMB_DEBIT, sign_up_with_a_card};

on_both_backends!(
    a_card_bound_in_the_app_goes_onto_a_phone_and_pays_at_a_pos,
    the_app_itself_pays_by_hce_after_the_banks_code_and_a_lost_report_stops_it,
    the_app_pays_a_tn_with_its_own_card_and_asks_the_password_over_the_limit,
);

const CMB_PIN: &str = "111101";
/// 华夏贷记: its bank wants a texted code before it goes onto a device (yellow).
const HUAXIA_CREDIT: &str = "6226388000000095";

/// Taps `amount` with the first device's default card on the phone simulator; returns the
/// field 39 the POS got (after the PIN pad, when `pin` is given and the POS asks).
async fn tap(
    page: &chromiumoxide::Page,
    amount: &str,
    fingerprint: bool,
    pin: Option<&str>,
) -> String {
    browser::fill(page, "#handset-1 input[name=amount]", amount).await;
    let button = if fingerprint {
        "#handset-1 button.tap-fingerprint"
    } else {
        "#handset-1 button.tap"
    };
    match pin {
        Some(pin) => {
            browser::click_to(page, button, "#pin-pad").await;
            browser::fill(page, "#pin", pin).await;
            browser::click_to(page, "#pay", "#result").await;
        }
        None => {
            browser::click_to(page, button, "#result").await;
        }
    }
    page.evaluate("document.querySelector('#result').dataset.code")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap()
}

async fn a_card_bound_in_the_app_goes_onto_a_phone_and_pays_at_a_pos(backend: Backend) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("cloudpass_wallet=debug,cloudpass_tsp=info")
        .try_init();
    let app = TestApp::start(backend).await;
    // The app takes only notifications the token service signed.
    let (status, body) = app
        .post(
            QUICKPASS,
            "/wallet/tsp/notifications",
            serde_json::json!({"token": {"token_id": "tok_x", "status": "deleted", "is_default": false}}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("BAD_SIGNATURE"))
    );
    let chromium = Browser::launch().await;
    let page = sign_up_with_a_card(&app, &chromium, "13900000101").await;

    // No device yet; add a Huawei phone, then put the bound card onto it.
    browser::click_to(&page, "#devices", "#devices-empty").await;
    page.evaluate("document.querySelector('#choice').value = 'huawei'")
        .await
        .unwrap();
    let notice = browser::click_to(&page, "#add-device", "#notice").await;
    assert_eq!(notice, "The device is added.");
    assert_eq!(
        browser::text(&page, "#device-1 h2").await.unwrap(),
        "Huawei"
    );
    let notice = browser::click_to(&page, "#device-1 button.add-to-device", "#notice").await;
    assert_eq!(notice, "The card is on the device and ready to pay.");
    let line = browser::text(&page, "#device-1 .device-card")
        .await
        .unwrap();
    assert!(
        line.contains("…0048") && line.contains("active") && line.contains("default"),
        "{line}"
    );
    let html = page.content().await.unwrap();
    assert!(!html.contains(CMB_DEBIT), "no page shows the card number");
    browser::screenshot(&page, &format!("wallet-5-devices-{backend:?}")).await;

    // The same card again on the same phone: refused, said so.
    let error = browser::click_to(&page, "#device-1 button.add-to-device", "#error").await;
    assert_eq!(error, "This card is on this device already.");

    // Tap on the phone simulator: under the POS's no-PIN limit (1,000.00), no PIN.
    let before = balance(&app, CMB_DEBIT).await;
    browser::click_to(&page, "#phone-link", "#handset-1").await;
    assert_eq!(tap(&page, "12.50", false, None).await, "00");
    assert_eq!(browser::text(&page, "#headline").await.unwrap(), "Approved");
    assert_eq!(balance(&app, CMB_DEBIT).await, before - 1_250);
    browser::screenshot(&page, &format!("phone-0-approved-{backend:?}")).await;

    // Over the limit: the POS asks for the PIN; a wrong one is declined and moves nothing.
    let before = balance(&app, CMB_DEBIT).await;
    assert_eq!(tap(&page, "1500.00", false, Some("999999")).await, "55");
    assert_eq!(browser::text(&page, "#headline").await.unwrap(), "Declined");
    assert_eq!(balance(&app, CMB_DEBIT).await, before);
    assert_eq!(tap(&page, "1500.00", false, Some(CMB_PIN)).await, "00");
    assert_eq!(balance(&app, CMB_DEBIT).await, before - 150_000);
    // The fingerprint (CDCVM) instead of the PIN.
    assert_eq!(tap(&page, "1500.00", true, None).await, "00");
    assert_eq!(balance(&app, CMB_DEBIT).await, before - 300_000);
    let html = page.content().await.unwrap();
    assert!(!html.contains(CMB_DEBIT) && !html.contains(CMB_PIN));

    // Suspended in the app: the next tap is declined and moves nothing; resumed, it pays.
    browser::click_to(&page, "#open-app", "#device-1").await;
    browser::click_to(&page, "#device-1 button[value=suspend]", "#notice").await;
    let line = browser::text(&page, "#device-1 .device-card")
        .await
        .unwrap();
    assert!(line.contains("suspended (suspended by you)"), "{line}");
    let before = balance(&app, CMB_DEBIT).await;
    browser::click_to(&page, "#phone-link", "#handset-1").await;
    // 57: not permitted to the cardholder (the switch refuses a suspended token itself).
    assert_eq!(tap(&page, "8.00", false, None).await, "57");
    assert_eq!(browser::text(&page, "#headline").await.unwrap(), "Declined");
    assert_eq!(balance(&app, CMB_DEBIT).await, before);
    browser::screenshot(&page, &format!("phone-1-declined-{backend:?}")).await;
    browser::click_to(&page, "#open-app", "#device-1").await;
    browser::click_to(&page, "#device-1 button[value=resume]", "#notice").await;
    browser::click_to(&page, "#phone-link", "#handset-1").await;
    assert_eq!(tap(&page, "8.00", false, None).await, "00");
    assert_eq!(balance(&app, CMB_DEBIT).await, before - 800);

    // The bank deletes the device card: the token service notifies the app, which takes the
    // card off the phone.
    browser::click_to(&page, "#open-app", "#device-1").await;
    let token_id = page
        .evaluate("document.querySelector('#device-1 .device-card').dataset.token")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap();
    let (status, body) = app
        .post(
            BANK,
            &format!("/tsp/v1/tokens/{token_id}/delete"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    browser::click_to(&page, "#phone-link", "#handset-1").await;
    let mut cards_left = true;
    for _ in 0..100 {
        page.reload().await.unwrap();
        browser::wait_for(&page, "#handset-1").await;
        cards_left = browser::text(&page, "#handset-1 .tap-form").await.is_some();
        if !cards_left {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, notes) = app
        .get(
            QUICKPASS,
            &format!("/tsp/v1/tokens/{token_id}/notifications"),
        )
        .await;
    assert!(
        !cards_left,
        "the deleted card is still on the phone: {notes}"
    );
    browser::click_to(&page, "#open-app", "#device-1").await;
    assert!(
        browser::text(&page, "#device-1 .device-card")
            .await
            .is_none()
    );

    // Signing out of the device; the phone is no longer the account's.
    let notice = browser::click_to(&page, "#device-1 button[value=sign_out]", "#notice").await;
    assert_eq!(notice, "Signed out of the device; its cards were deleted.");
    assert!(browser::text(&page, "#device-1").await.is_none());
    browser::click_to(&page, "#phone-link", "#no-devices").await;
    app.stop().await;
}

async fn the_app_itself_pays_by_hce_after_the_banks_code_and_a_lost_report_stops_it(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let chromium = Browser::launch().await;
    let page = sign_up_with_a_card(&app, &chromium, "13900000102").await;
    // Bind the credit card too (its CVN2 once, at binding; never kept).
    browser::click_to(&page, "#bind", "#card_number").await;
    browser::fill(&page, "#card_number", HUAXIA_CREDIT).await;
    browser::fill(&page, "#expiry", "2912").await;
    browser::fill(&page, "#cvn2", "248").await;
    browser::click_to(&page, "#next", "#code").await;
    let code = app.latest_otp(CARD_PHONE).await;
    browser::fill(&page, "#code", &code).await;
    browser::click_to(&page, "#confirm", "#notice").await;

    // The app itself as the device; the credit card onto it: the bank texts a code first.
    browser::click_to(&page, "#devices", "#devices-empty").await;
    page.evaluate("document.querySelector('#choice').value = 'app'")
        .await
        .unwrap();
    browser::click_to(&page, "#add-device", "#notice").await;
    page.evaluate("document.querySelector('#device-1 select[name=card]').selectedIndex = 1")
        .await
        .unwrap();
    let sent = browser::click_to(&page, "#device-1 button.add-to-device", "#sent").await;
    assert!(sent.contains("181****0000"), "{sent}");
    assert_eq!(browser::text(&page, "#card").await.unwrap(), "…0095");
    let code = app.latest_otp(CARD_PHONE).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    browser::fill(&page, "#code", wrong).await;
    let error = browser::click_to(&page, "#confirm", "#error").await;
    assert!(error.starts_with("The code is wrong"), "{error}");
    browser::fill(&page, "#code", &code).await;
    let notice = browser::click_to(&page, "#confirm", "#notice").await;
    assert_eq!(notice, "The card is on the device and ready to pay.");
    let line = browser::text(&page, "#device-1 .device-card")
        .await
        .unwrap();
    assert!(line.contains("…0095") && line.contains("active"), "{line}");

    // An HCE card holds 10 limited-use keys; 12 taps pay only if the phone fetched more.
    let before = balance(&app, HUAXIA_CREDIT).await;
    browser::click_to(&page, "#phone-link", "#handset-1").await;
    for _ in 0..12 {
        assert_eq!(tap(&page, "1.00", false, None).await, "00");
    }
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, before - 1_200);

    // Reported lost in the app: the card stops paying; found, it pays again.
    browser::click_to(&page, "#open-app", "#device-1").await;
    browser::click_to(&page, "#device-1 button[value=lost]", "#device-1-lost").await;
    let line = browser::text(&page, "#device-1 .device-card")
        .await
        .unwrap();
    assert!(line.contains("(the device is reported lost)"), "{line}");
    assert!(
        browser::text(&page, "#device-1 button[value=resume]")
            .await
            .is_none(),
        "a lost device's cards come back when it is found, not one by one"
    );
    browser::click_to(&page, "#phone-link", "#handset-1").await;
    assert_eq!(tap(&page, "1.00", false, None).await, "57");
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, before - 1_200);
    browser::click_to(&page, "#open-app", "#device-1").await;
    browser::click_to(&page, "#device-1 button[value=found]", "#notice").await;
    assert!(browser::text(&page, "#device-1-lost").await.is_none());
    browser::click_to(&page, "#phone-link", "#handset-1").await;
    assert_eq!(tap(&page, "1.00", false, None).await, "00");
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, before - 1_300);

    // In Chinese (the app's language switch holds for the phone simulator too).
    browser::click_to(&page, "#open-app", "#device-1").await;
    browser::click_to(&page, "#language", "#device-1").await;
    assert_eq!(browser::text(&page, "h1").await.unwrap(), "我的设备");
    let line = browser::text(&page, "#device-1 .device-card")
        .await
        .unwrap();
    assert!(line.contains("正常") && line.contains("默认"), "{line}");
    browser::screenshot(&page, &format!("wallet-6-devices-zh-{backend:?}")).await;
    browser::click_to(&page, "#phone-link", "#handset-1").await;
    assert_eq!(tap(&page, "1.00", false, None).await, "00");
    assert_eq!(browser::text(&page, "#headline").await.unwrap(), "支付成功");
    assert_eq!(
        browser::text(&page, "#response").await.unwrap(),
        "00（交易成功）"
    );
    browser::screenshot(&page, &format!("phone-2-approved-zh-{backend:?}")).await;
    app.stop().await;
}

/// A TN of the sandbox merchant for `amount` fen, issued over UPACP (appTransReq.do).
async fn issue_tn(app: &TestApp, order_id: &str, amount: u64) -> String {
    let merchant = support::upacp::Merchant::sandbox(&app.base, &app.data_dir);
    let answer = merchant
        .post(
            "/gateway/api/appTransReq.do",
            merchant.consume(order_id, amount),
        )
        .await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    answer.get("tn").unwrap().to_owned()
}

/// Opens the app's payment screen of `tn` and pays with the first card, typing `password`
/// when the app asks for it; returns the page's `data-status` of the result.
async fn pay_in_app(
    page: &chromiumoxide::Page,
    app: &TestApp,
    tn: &str,
    password: Option<&str>,
) -> String {
    page.goto(format!("{}/wallet/pay?tn={tn}", app.base))
        .await
        .unwrap();
    browser::wait_for(page, "#pay").await;
    match password {
        Some(password) => {
            browser::click_to(page, "#pay", "#password").await;
            browser::fill(page, "#password", password).await;
            browser::click_to(page, "#pay", "#result").await;
        }
        None => {
            browser::click_to(page, "#pay", "#result").await;
        }
    }
    page.evaluate("document.querySelector('#result').dataset.status")
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap()
}

async fn the_app_pays_a_tn_with_its_own_card_and_asks_the_password_over_the_limit(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let chromium = Browser::launch().await;
    let page = sign_up_with_a_card(&app, &chromium, "13900000103").await;
    // No card on the app yet: the payment screen says where to add one.
    let tn = issue_tn(&app, "APPPAY0001", 1_250).await;
    page.goto(format!("{}/wallet/pay?tn={tn}", app.base))
        .await
        .unwrap();
    browser::wait_for(&page, "#no-cards").await;
    // The app itself as a device, the debit card on it.
    browser::click_to(&page, "a[href='/wallet/devices']", "#devices-empty").await;
    page.evaluate("document.querySelector('#choice').value = 'app'")
        .await
        .unwrap();
    browser::click_to(&page, "#add-device", "#notice").await;
    browser::click_to(&page, "#device-1 button.add-to-device", "#notice").await;

    // Within the card's online no-PIN limit (500.00): paid at once, debit told apart.
    let before = balance(&app, CMB_DEBIT).await;
    assert_eq!(pay_in_app(&page, &app, &tn, None).await, "paid");
    assert_eq!(browser::text(&page, "#headline").await.unwrap(), "Paid");
    assert_eq!(browser::text(&page, "#amount").await.unwrap(), "12.50 CNY");
    let used = browser::text(&page, "#card-used").await.unwrap();
    assert!(used.starts_with("…0048 debit · device card …"), "{used}");
    assert_eq!(balance(&app, CMB_DEBIT).await, before - 1_250);
    browser::screenshot(&page, &format!("wallet-7-paid-in-app-{backend:?}")).await;
    // Paid once: the same TN again is no longer payable.
    page.goto(format!("{}/wallet/pay?tn={tn}", app.base))
        .await
        .unwrap();
    let error = browser::wait_for(&page, "#error").await;
    assert!(error.starts_with("No payable order"), "{error}");

    // Over the limit: the app asks for the payment password; a wrong one is refused by the
    // bank and moves nothing, the right one pays.
    let tn = issue_tn(&app, "APPPAY0002", 80_000).await;
    assert_eq!(pay_in_app(&page, &app, &tn, Some("999999")).await, "failed");
    assert_eq!(balance(&app, CMB_DEBIT).await, before - 1_250);
    let tn = issue_tn(&app, "APPPAY0003", 80_000).await;
    assert_eq!(pay_in_app(&page, &app, &tn, Some(CMB_PIN)).await, "paid");
    // 800.00 less the sandbox campaign's 5.00 (app payments of 50.00 or more).
    assert_eq!(browser::text(&page, "#amount").await.unwrap(), "795.00 CNY");
    assert_eq!(balance(&app, CMB_DEBIT).await, before - 1_250 - 79_500);
    let html = page.content().await.unwrap();
    assert!(!html.contains(CMB_DEBIT) && !html.contains(CMB_PIN));
    app.stop().await;
}

//! The Cloud QuickPass app's account pages, as a person uses them in a real headless
//! Chromium (sign up, the language switch, log out, a wrong password, log in), and as an
//! attacker would try them without a browser: a form posted without the page's CSRF token,
//! a password guessed over and over. The database is read afterwards to show what it keeps:
//! an Argon2id hash, never the password, and a session's SHA-256, never its token. Binding a
//! card goes to the sandbox bank through the token service (the card checked, a code texted
//! to the card's phone and read back from the bank's SMS inbox).
//! Screenshots land in `target/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use cloudpass_store::WalletStore;
use support::app::*;
use support::browser::{self, Browser};

on_both_backends!(
    a_person_signs_up_logs_out_and_logs_in_again,
    forms_need_their_token_and_guessing_locks_the_account,
    a_person_binds_a_card_with_the_code_the_bank_texts,
);

const PASSWORD: &str = "quick pass 2026";

async fn a_person_signs_up_logs_out_and_logs_in_again(backend: Backend) {
    let app = TestApp::start(backend).await;
    let phone = "13900000001";
    let chromium = Browser::launch().await;
    let page = chromium.open(&format!("{}/wallet", app.base)).await;
    // Not signed in: the log-in page, in Chinese first.
    let title = browser::wait_for(&page, "h1").await;
    assert_eq!(title, "登录云闪付");
    browser::screenshot(&page, &format!("wallet-0-log-in-zh-{backend:?}")).await;
    browser::click_to(&page, "#language", "#to-sign-up").await;
    assert_eq!(
        browser::text(&page, "h1").await.unwrap(),
        "Log in to Cloud QuickPass"
    );
    browser::click_to(&page, "#to-sign-up", "#password_again").await;
    browser::screenshot(&page, &format!("wallet-1-sign-up-{backend:?}")).await;

    // Two different passwords: said, and nothing typed comes back.
    browser::fill(&page, "#phone", phone).await;
    browser::fill(&page, "#password", PASSWORD).await;
    browser::fill(&page, "#password_again", "quick pass 2027").await;
    let error = browser::click_to(&page, "#submit", "#error").await;
    assert!(error.contains("The two passwords differ"), "{error}");
    let html = page.content().await.unwrap();
    assert!(!html.contains(PASSWORD) && !html.contains(phone), "{html}");

    browser::fill(&page, "#phone", phone).await;
    browser::fill(&page, "#password", PASSWORD).await;
    browser::fill(&page, "#password_again", PASSWORD).await;
    let shown = browser::click_to(&page, "#submit", "#phone").await;
    assert_eq!(shown, "139****0001");
    browser::screenshot(&page, &format!("wallet-2-home-{backend:?}")).await;

    // What the database keeps of the account.
    let store = app.running.tsp.store();
    let account = store.account_by_phone(phone).await.unwrap().unwrap();
    assert!(
        account
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
    assert!(!account.password_hash.contains(PASSWORD));

    browser::click_to(&page, "#log-out", "#to-sign-up").await;
    let opened = chromium.open(&format!("{}/wallet", app.base)).await;
    assert_eq!(
        browser::wait_for(&opened, "h1").await,
        "Log in to Cloud QuickPass",
        "logged out: the app asks to log in again"
    );

    browser::fill(&opened, "#phone", phone).await;
    browser::fill(&opened, "#password", "quick pass 2025").await;
    let error = browser::click_to(&opened, "#submit", "#error").await;
    assert_eq!(error, "The phone number or password is wrong.");
    browser::fill(&opened, "#phone", phone).await;
    browser::fill(&opened, "#password", PASSWORD).await;
    let shown = browser::click_to(&opened, "#submit", "#phone").await;
    assert_eq!(shown, "139****0001");

    chromium.close().await;
    app.stop().await;
}

/// The value of cookie `name` among a response's `Set-Cookie` headers, with its attributes.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(|value| {
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            (pair[name.len() + 1..].to_owned(), attributes.to_owned())
        })
}

/// Posts a form as a browser would, without following the answer's redirect.
async fn post(app: &TestApp, path: &str, cookie: &str, body: String) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn forms_need_their_token_and_guessing_locks_the_account(backend: Backend) {
    let app = TestApp::start(backend).await;
    let phone = "13900000002";
    let page = app
        .http
        .get(format!("{}/wallet/signup?lang=en", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let (csrf, attributes) = set_cookie(&page, "cp_wallet_csrf").unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(attribute), "{attributes}");
    }
    let cookies = format!("cp_wallet_csrf={csrf}; cp_wallet_lang=en");
    let form = format!("phone={phone}&password=quick+pass+1&password_again=quick+pass+1");

    // Without the page's token (another site's form), or with another token: refused, and
    // no account is made.
    for token in ["", "&csrf=forged"] {
        let refused = post(&app, "/wallet/signup", &cookies, format!("{form}{token}")).await;
        assert_eq!(refused.status().as_u16(), 403);
        assert!(
            refused
                .text()
                .await
                .unwrap()
                .contains("This page has expired")
        );
    }
    let store = app.running.tsp.store();
    assert!(store.account_by_phone(phone).await.unwrap().is_none());

    let signed_up = post(
        &app,
        "/wallet/signup",
        &cookies,
        format!("{form}&csrf={csrf}"),
    )
    .await;
    assert_eq!(signed_up.status().as_u16(), 303);
    let (token, attributes) = set_cookie(&signed_up, "cp_wallet").unwrap();
    assert!(attributes.contains("HttpOnly") && attributes.contains("Secure"));
    // The store knows the session by its hash only.
    let hash = cloudpass_wallet::session::token_hash(&token);
    assert!(
        store
            .wallet_session(&token, i64::MAX / 2)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.wallet_session(&hash, 0).await.unwrap().is_some());

    // The same phone again: refused, saying what to do.
    let again = post(
        &app,
        "/wallet/signup",
        &cookies,
        format!("{form}&csrf={csrf}"),
    )
    .await;
    assert_eq!(again.status().as_u16(), 422);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("has an account already; log in instead")
    );

    // Five wrong passwords lock the account; then even the right one waits.
    let login = |password: &str| format!("phone={phone}&password={password}&csrf={csrf}");
    for attempt in 1..=5 {
        let answer = post(&app, "/wallet/login", &cookies, login("wrong+pass+9")).await;
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        if attempt < 5 {
            assert_eq!(status, 401, "attempt {attempt}");
            assert!(text.contains("The phone number or password is wrong."));
        } else {
            assert_eq!(status, 429, "attempt {attempt}");
            assert!(text.contains("locked for 15 more minutes"), "{text}");
        }
        assert!(!text.contains("wrong pass 9"));
    }
    let locked = post(&app, "/wallet/login", &cookies, login("quick+pass+1")).await;
    assert_eq!(locked.status().as_u16(), 429);

    // An unknown phone number is told apart from a wrong password by nothing.
    let unknown = post(
        &app,
        "/wallet/login",
        &cookies,
        format!("phone=13900000003&password=quick+pass+1&csrf={csrf}"),
    )
    .await;
    assert_eq!(unknown.status().as_u16(), 401);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("The phone number or password is wrong.")
    );

    // Failed logins from one address are bounded too (20 a minute), whatever the phone
    // numbers: the 7 above, 13 more, then even a right password from there waits.
    for n in 0..13 {
        let guess = post(
            &app,
            "/wallet/login",
            &cookies,
            format!(
                "phone=1390000010{}&password=quick+pass+1&csrf={csrf}",
                n % 10
            ),
        )
        .await;
        assert_eq!(guess.status().as_u16(), 401, "guess {n}");
    }
    let throttled = post(&app, "/wallet/login", &cookies, login("quick+pass+1")).await;
    assert_eq!(throttled.status().as_u16(), 429);
    assert!(
        throttled
            .text()
            .await
            .unwrap()
            .contains("Too many failed logins from your network address")
    );
    app.stop().await;
}

/// Signs up `phone` in the browser and lands on the person's page.
async fn sign_up(app: &TestApp, chromium: &Browser, phone: &str) -> chromiumoxide::Page {
    let page = chromium
        .open(&format!("{}/wallet/signup?lang=en", app.base))
        .await;
    browser::wait_for(&page, "#password_again").await;
    browser::fill(&page, "#phone", phone).await;
    browser::fill(&page, "#password", PASSWORD).await;
    browser::fill(&page, "#password_again", PASSWORD).await;
    browser::click_to(&page, "#submit", "#bind").await;
    page
}

async fn a_person_binds_a_card_with_the_code_the_bank_texts(backend: Backend) {
    const CMB_DEBIT: &str = "6226090000000048";
    const HUAXIA_CREDIT: &str = "6226388000000095";
    const CARD_PHONE: &str = "18100000000";
    let app = TestApp::start(backend).await;
    let chromium = Browser::launch().await;
    let page = sign_up(&app, &chromium, "13900000004").await;
    assert_eq!(
        browser::text(&page, "#cards").await.unwrap(),
        "No card is bound yet."
    );

    // A credit card whose CVN2 is wrong: the bank declines, nothing is texted or kept.
    browser::click_to(&page, "#bind", "#card_number").await;
    browser::fill(&page, "#card_number", HUAXIA_CREDIT).await;
    browser::fill(&page, "#expiry", "2912").await;
    browser::fill(&page, "#cvn2", "247").await;
    let error = browser::click_to(&page, "#next", "#error").await;
    assert!(
        error.starts_with("The bank did not accept this card"),
        "{error}"
    );
    assert!(!page.content().await.unwrap().contains(HUAXIA_CREDIT));

    browser::fill(&page, "#card_number", CMB_DEBIT).await;
    browser::fill(&page, "#expiry", "2912").await;
    let sent = browser::click_to(&page, "#next", "#sent").await;
    assert!(sent.contains("181****0000"), "{sent}");
    assert_eq!(
        browser::text(&page, "#card").await.unwrap(),
        "622609******0048"
    );
    browser::screenshot(&page, &format!("wallet-3-bind-code-{backend:?}")).await;
    let code = app.latest_otp(CARD_PHONE).await;
    let (_, body) = app
        .get(
            app.operator_key(),
            &format!("/sim/issuer/v1/sms?phone={CARD_PHONE}"),
        )
        .await;
    let text = body["messages"][0]["text"].as_str().unwrap().to_owned();
    assert!(
        text.contains("to bind the card ending 0048 to your Cloud QuickPass account"),
        "{text}"
    );

    // A wrong code: said, with the tries left, and the step stays.
    let wrong = if code == "000000" { "000001" } else { "000000" };
    browser::fill(&page, "#code", wrong).await;
    let error = browser::click_to(&page, "#confirm", "#error").await;
    assert_eq!(error, "The code is wrong; 2 tries left.");
    browser::fill(&page, "#code", &code).await;
    let notice = browser::click_to(&page, "#confirm", "#notice").await;
    assert_eq!(notice, "The card is bound.");
    let cards = browser::text(&page, "#cards").await.unwrap();
    assert!(
        cards.contains("622609******0048") && cards.contains("debit"),
        "{cards}"
    );
    browser::screenshot(&page, &format!("wallet-4-cards-{backend:?}")).await;

    // The same card again: the bank texts a code, and the binding says it is bound already.
    browser::click_to(&page, "#bind", "#card_number").await;
    browser::fill(&page, "#card_number", CMB_DEBIT).await;
    browser::fill(&page, "#expiry", "2912").await;
    browser::click_to(&page, "#next", "#code").await;
    let code = app.latest_otp(CARD_PHONE).await;
    browser::fill(&page, "#code", &code).await;
    let error = browser::click_to(&page, "#confirm", "#error").await;
    assert_eq!(error, "This card is bound to your account already.");

    // Three cards asked about so far; two more, then the account must wait.
    for _ in 0..2 {
        browser::click_to(&page, "#start-again", "#card_number").await;
        browser::fill(&page, "#card_number", HUAXIA_CREDIT).await;
        browser::fill(&page, "#expiry", "2912").await;
        browser::fill(&page, "#cvn2", "247").await;
        browser::click_to(&page, "#next", "#error").await;
    }
    browser::fill(&page, "#card_number", CMB_DEBIT).await;
    browser::fill(&page, "#expiry", "2912").await;
    let error = browser::click_to(&page, "#next", "#error").await;
    assert_eq!(
        error,
        "Too many cards were tried from this account; try again in 10 minutes."
    );

    // What is kept: the card sealed and masked, never in clear.
    let store = app.running.tsp.store();
    let account = store
        .account_by_phone("13900000004")
        .await
        .unwrap()
        .unwrap();
    let bound = store.bound_wallet_cards(&account.id).await.unwrap();
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].funding, "debit");
    assert!(
        !bound[0]
            .pan_sealed
            .windows(CMB_DEBIT.len())
            .any(|w| w == CMB_DEBIT.as_bytes())
    );

    // Unbinding (解绑): the card goes from the list and from the store.
    let opened = chromium.open(&format!("{}/wallet", app.base)).await;
    browser::wait_for(&opened, "#remove-1").await;
    let notice = browser::click_to(&opened, "#remove-1", "#notice").await;
    assert_eq!(notice, "The card is removed.");
    assert_eq!(
        browser::text(&opened, "#cards").await.unwrap(),
        "No card is bound yet."
    );
    assert!(
        store
            .bound_wallet_cards(&account.id)
            .await
            .unwrap()
            .is_empty()
    );

    chromium.close().await;
    app.stop().await;
}

//! The token service as its users see it: the real app on a random port, driven through the
//! `/tsp/v1` API by wallets and the bank, with the issuer host stand-in answering
//! eligibility, approval and passcode calls and the sandbox receivers collecting
//! notifications. Every scenario runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;

use cloudpass::sandbox;
use cloudpass_crypto::card_profile::{self, DeviceKeys};
use cloudpass_crypto::{DeviceEnvelope, DeviceKeyPair};
use serde_json::{Value, json};
use support::app::*;

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let app = super::TestApp::start(super::Backend::Sqlite).await;
                super::$name(&app).await;
                app.stop().await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let app = super::TestApp::start(super::Backend::Postgres).await;
                super::$name(&app).await;
                app.stop().await;
            })*
        }
    };
}

on_both_backends!(
    one_card_on_three_devices,
    yellow_path_with_an_sms_code,
    red_paths_and_bad_input,
    default_card_rules,
    device_lost_and_found_resumes_only_its_own_suspensions,
    card_lost_found_reissued_closed,
    device_wiped_signed_out_unlock_removed,
    cvm_limits_travel_as_metadata,
    idempotency_keys,
    notifications_are_signed_and_ordered,
    concurrent_loads_and_defaults,
    push_provisioning_and_hce_keys,
    card_testing_is_bounded,
    device_keys_of_small_order_are_refused,
);

fn open_profile(keys: &DeviceKeyPair, envelope: &Value, token_id: &str) -> (Value, DeviceKeys) {
    let hex = |field: &str| cloudpass_core::hex::decode(envelope[field].as_str().unwrap()).unwrap();
    let sealed = DeviceEnvelope {
        ephemeral_public_key: hex("ephemeral_public_key").try_into().unwrap(),
        nonce: hex("nonce").try_into().unwrap(),
        ciphertext: hex("ciphertext"),
    };
    let plaintext = keys
        .open(&sealed, token_id.as_bytes())
        .expect("the device opens its own card profile");
    let (profile, device_keys) = card_profile::parse(&plaintext).unwrap();
    (serde_json::from_slice(&profile).unwrap(), device_keys)
}

async fn one_card_on_three_devices(app: &TestApp) {
    let phone = app.device(APPLE, "iphone", "handset_se").await;
    let watch = app.device(APPLE, "watch", "wearable").await;
    let hce = app.device(QUICKPASS, "android-hce", "hce").await;
    let mut tokens = Vec::new();
    for (wallet, device, keys) in [
        (APPLE, "iphone", &phone),
        (APPLE, "watch", &watch),
        (QUICKPASS, "android-hce", &hce),
    ] {
        let (status, body) = app.provision(wallet, device, CMB_DEBIT, "2912", None).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["decision"], "green");
        let token = &body["token"];
        assert_eq!(token["status"], "active");
        assert_eq!(
            token["is_default"], true,
            "the first card on a device is its default"
        );
        assert_eq!(token["card_last4"], "0048");
        let token_id = token["token_id"].as_str().unwrap();
        let (profile, keys) = open_profile(keys, &body["card_profile"], token_id);
        let number = profile["token_number"].as_str().unwrap().to_owned();
        assert!(number.starts_with("623118"), "{number}");
        assert!(cloudpass_core::luhn_valid(number.as_bytes()));
        assert_eq!(
            &number[number.len() - 4..],
            token["token_last4"].as_str().unwrap()
        );
        assert_eq!(profile["cvm_limits"]["contactless_no_pin_limit"], "1000.00");
        match (device, keys) {
            ("android-hce", DeviceKeys::LimitedUse { first_atc, keys }) => {
                assert_eq!((first_atc, keys.len()), (1, 10))
            }
            (_, DeviceKeys::DeviceUnique { .. }) => assert_ne!(device, "android-hce"),
            (device, other) => panic!("{device} got {other:?}"),
        }
        tokens.push((
            number,
            token["par"].as_str().unwrap().to_owned(),
            token_id.to_owned(),
        ));
    }
    let numbers: HashSet<&String> = tokens.iter().map(|t| &t.0).collect();
    assert_eq!(numbers.len(), 3, "three different tokens");
    let pars: HashSet<&String> = tokens.iter().map(|t| &t.1).collect();
    assert_eq!(pars.len(), 1, "one PAR for one card");
    let par = pars.into_iter().next().unwrap();
    assert_eq!(par.len(), 29);

    // The same card again on the same device is refused, naming the live token.
    let (status, body) = app
        .provision(APPLE, "iphone", CMB_DEBIT, "2912", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("TOKEN_ALREADY_EXISTS"))
    );
    assert_eq!(body["token_id"], tokens[0].2.as_str());

    // Detokenization: every token maps back to the one card.
    for (number, _, _) in &tokens {
        let entry = app
            .running
            .tsp
            .vault
            .detokenize(number)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cloudpass_core::AccountNumber::expose(&entry.pan), CMB_DEBIT);
    }
    // The bank sees the card with its three tokens.
    let (status, body) = app
        .post(
            BANK,
            "/tsp/v1/issuer/cards/tokens",
            json!({"card_number": CMB_DEBIT}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tokens"].as_array().unwrap().len(), 3);
    // A wallet sees only its own tokens.
    let (status, _) = app
        .get(HUAWEI, &format!("/tsp/v1/tokens/{}", tokens[0].2))
        .await;
    assert_eq!(status, 404);
}

async fn yellow_path_with_an_sms_code(app: &TestApp) {
    app.device(APPLE, "iphone", "handset_se").await;
    let (status, body) = app
        .provision(APPLE, "iphone", HUAXIA_CREDIT, "2912", Some("248"))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["decision"], "yellow");
    assert_eq!(body["token"]["status"], "pending");
    assert_eq!(body["step_up"]["destination"], "181****0000");
    assert_eq!(body["step_up"]["sent"], true);
    assert!(body["card_profile"].is_null());
    let token_id = body["token"]["token_id"].as_str().unwrap().to_owned();
    let otp = app.latest_otp("18100000000").await;

    let wrong = if otp == "000000" { "111111" } else { "000000" };
    let (status, body) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{token_id}/activate"),
            json!({"otp": wrong}),
        )
        .await;
    assert_eq!(
        (
            status,
            body["code"].as_str(),
            body["attempts_left"].as_i64()
        ),
        (422, Some("OTP_INVALID"), Some(2))
    );
    let (status, body) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{token_id}/activate"),
            json!({"otp": otp}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token"]["status"], "active");
    assert!(body["card_profile"]["ciphertext"].is_string());
    let (status, body) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{token_id}/activate"),
            json!({"otp": otp}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("NO_PENDING_STEP_UP"))
    );

    // Three wrong codes delete the pending token.
    app.device(APPLE, "ipad", "handset_se").await;
    let (status, body) = app
        .provision(APPLE, "ipad", HUAXIA_CREDIT, "2912", Some("248"))
        .await;
    assert_eq!(status, 202, "{body}");
    let pending = body["token"]["token_id"].as_str().unwrap().to_owned();
    let otp = app.latest_otp("18100000000").await;
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    for attempts_left in [2, 1] {
        let (_, body) = app
            .post(
                APPLE,
                &format!("/tsp/v1/tokens/{pending}/activate"),
                json!({"otp": wrong}),
            )
            .await;
        assert_eq!(body["attempts_left"], attempts_left, "{body}");
    }
    let (status, body) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{pending}/activate"),
            json!({"otp": wrong}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("OTP_ATTEMPTS_EXHAUSTED"))
    );
    let token = app.token(APPLE, &pending).await;
    assert_eq!(
        (token["status"].as_str(), token["status_reason"].as_str()),
        (Some("deleted"), Some("STEP_UP_FAILED"))
    );
    // The right code no longer helps.
    let (status, _) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{pending}/activate"),
            json!({"otp": otp}),
        )
        .await;
    assert_eq!(status, 409);

    // Resends are bounded.
    app.device(APPLE, "mac", "handset_se").await;
    let (_, body) = app
        .provision(APPLE, "mac", HUAXIA_CREDIT, "2912", Some("248"))
        .await;
    let token_id = body["token"]["token_id"].as_str().unwrap().to_owned();
    for resends_left in [2, 1, 0] {
        let (status, body) = app
            .post(APPLE, &format!("/tsp/v1/tokens/{token_id}/otp"), json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["step_up"]["resends_left"], resends_left);
    }
    let (status, body) = app
        .post(APPLE, &format!("/tsp/v1/tokens/{token_id}/otp"), json!({}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("OTP_RESENDS_EXHAUSTED"))
    );
    // The latest code works.
    let otp = app.latest_otp("18100000000").await;
    let (status, body) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{token_id}/activate"),
            json!({"otp": otp}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn red_paths_and_bad_input(app: &TestApp) {
    app.device(APPLE, "iphone", "handset_se").await;
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        (
            HUAXIA_CREDIT,
            "2912",
            Some("249"),
            422,
            "PROVISIONING_DECLINED",
        ),
        (
            HUAXIA_CREDIT,
            "2811",
            Some("248"),
            422,
            "PROVISIONING_DECLINED",
        ),
        ("6226090000000049", "2912", None, 400, "INVALID_CARD_NUMBER"),
        ("4111111111111111", "2912", None, 422, "NO_ISSUER_FOR_CARD"),
        (CMB_DEBIT, "2913", None, 400, "INVALID_EXPIRY"),
        (CMB_DEBIT, "2912", Some("12"), 400, "INVALID_REQUEST"),
    ];
    for (card, expiry, cvn2, status, code) in cases {
        let (got, body) = app.provision(APPLE, "iphone", card, expiry, *cvn2).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (*status, Some(*code)),
            "{card} {expiry}: {body}"
        );
        assert!(
            !body.to_string().contains(card),
            "an error must not echo the card number: {body}"
        );
    }
    // The wallet hears one decline whatever the reason; the bank sees the reasons.
    let (_, wrong_cvn2) = app
        .provision(APPLE, "iphone", HUAXIA_CREDIT, "2912", Some("249"))
        .await;
    let (_, wrong_expiry) = app
        .provision(APPLE, "iphone", HUAXIA_CREDIT, "2811", Some("248"))
        .await;
    assert_eq!(wrong_cvn2, wrong_expiry);
    assert!(wrong_cvn2.get("reason").is_none(), "{wrong_cvn2}");
    let (status, declines) = app
        .post(
            BANK,
            "/tsp/v1/issuer/cards/declines",
            json!({"card_number": HUAXIA_CREDIT}),
        )
        .await;
    assert_eq!(status, 200, "{declines}");
    let reasons: Vec<&str> = declines["declines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "EXPIRY_MISMATCH",
            "CVN2_MISMATCH",
            "EXPIRY_MISMATCH",
            "CVN2_MISMATCH"
        ]
    );
    assert!(
        app.device_tokens(APPLE, "iphone").await.is_empty(),
        "red means no token"
    );

    // Devices that may not take cards.
    app.device(APPLE, "old-sim", "sim_se").await;
    let (status, body) = app
        .provision(APPLE, "old-sim", CMB_DEBIT, "2912", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("DEVICE_RETIRED"))
    );
    let (status, body) = app
        .provision(APPLE, "nowhere", CMB_DEBIT, "2912", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DEVICE_NOT_FOUND"))
    );

    // Authentication and malformed bodies.
    let (status, body) = app
        .provision("sk_wrong", "iphone", CMB_DEBIT, "2912", None)
        .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHORIZED")));
    let (status, body) = app
        .post(APPLE, "/tsp/v1/tokens", json!({"device_id": 7}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
    let (status, body) = app.post(BANK, "/tsp/v1/tokens", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("FORBIDDEN")));
}

async fn default_card_rules(app: &TestApp) {
    app.device(APPLE, "iphone", "handset_se").await;
    let first = app.green(APPLE, "iphone", CMB_DEBIT).await;
    let second = app.green(APPLE, "iphone", PINGAN_DEBIT).await;
    let third = app.green(APPLE, "iphone", ABC_CREDIT).await;
    let default_of = |tokens: &[Value]| {
        tokens
            .iter()
            .filter(|t| t["is_default"] == true)
            .map(|t| t["token_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        default_of(&app.device_tokens(APPLE, "iphone").await),
        vec![first.clone()]
    );

    let (status, body) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{second}/default"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        default_of(&app.device_tokens(APPLE, "iphone").await),
        vec![second.clone()]
    );

    // A temporary suspension keeps the default; a suspended token cannot be made default.
    let (status, _) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{second}/suspend"),
            json!({"reason": "LOST"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        default_of(&app.device_tokens(APPLE, "iphone").await),
        vec![second.clone()]
    );
    let (status, body) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{second}/default"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("TOKEN_NOT_ACTIVE"))
    );
    // A fraud suspension by the bank moves it to the oldest active token.
    let (status, _) = app
        .post(
            BANK,
            &format!("/tsp/v1/tokens/{second}/suspend"),
            json!({"reason": "FRAUDULENT"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        default_of(&app.device_tokens(APPLE, "iphone").await),
        vec![first.clone()]
    );
    // Deleting the default promotes another.
    let (status, body) = app
        .post(APPLE, &format!("/tsp/v1/tokens/{first}/delete"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "deleted");
    assert_eq!(body["is_default"], false);
    assert_eq!(
        default_of(&app.device_tokens(APPLE, "iphone").await),
        vec![third.clone()]
    );
    // Deleting everything leaves no default.
    for token in [&second, &third] {
        let (status, _) = app
            .post(APPLE, &format!("/tsp/v1/tokens/{token}/delete"), json!({}))
            .await;
        assert_eq!(status, 200);
    }
    assert!(app.device_tokens(APPLE, "iphone").await.is_empty());
    let (status, body) = app
        .post(APPLE, &format!("/tsp/v1/tokens/{third}/resume"), json!({}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("TOKEN_DELETED"))
    );
}

async fn device_lost_and_found_resumes_only_its_own_suspensions(app: &TestApp) {
    app.device(APPLE, "iphone", "handset_se").await;
    let by_bank = app.green(APPLE, "iphone", CMB_DEBIT).await;
    let plain = app.green(APPLE, "iphone", PINGAN_DEBIT).await;
    let (status, _) = app
        .post(
            BANK,
            &format!("/tsp/v1/tokens/{by_bank}/suspend"),
            json!({"reason": "OTHER"}),
        )
        .await;
    assert_eq!(status, 200);

    let (status, body) = app
        .post(
            APPLE,
            "/tsp/v1/devices/iphone/events",
            json!({"event": "lost"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device"]["state"], "lost");
    for token in body["tokens"].as_array().unwrap() {
        assert_eq!(token["status"], "suspended");
    }
    // A lost device takes no new cards.
    let (status, body) = app
        .provision(APPLE, "iphone", ABC_CREDIT, "2911", Some("123"))
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("DEVICE_STATE")));

    let (status, body) = app
        .post(
            APPLE,
            "/tsp/v1/devices/iphone/events",
            json!({"event": "found"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.token(APPLE, &plain).await["status"],
        "active",
        "found resumes what lost suspended"
    );
    let held = app.token(APPLE, &by_bank).await;
    assert_eq!(
        held["status"], "suspended",
        "but not what the bank suspended"
    );
    assert_eq!(held["holds"], json!(["issuer"]));

    // The phone cannot undo the bank's suspension; the bank can.
    let (status, body) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{by_bank}/resume"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("SUSPENDED_BY_OTHER_PARTY"))
    );
    assert_eq!(
        body["message"],
        "the token was suspended by the bank; only the bank can resume it"
    );
    let (status, body) = app
        .post(
            BANK,
            &format!("/tsp/v1/tokens/{by_bank}/resume"),
            json!({"reason": "FRAUD_CLEARED"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "active");
    // The bank can also lift the cardholder's own suspension.
    app.post(
        APPLE,
        &format!("/tsp/v1/tokens/{plain}/suspend"),
        json!({"reason": "LOST"}),
    )
    .await;
    let (status, body) = app
        .post(
            BANK,
            &format!("/tsp/v1/tokens/{plain}/resume"),
            json!({"reason": "FOUND"}),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")));

    let (status, body) = app
        .get(APPLE, &format!("/tsp/v1/tokens/{by_bank}/history"))
        .await;
    assert_eq!(status, 200);
    let events: Vec<&str> = body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "provision",
            "default",
            "suspend",
            "device_lost",
            "device_found",
            "resume"
        ]
    );
}

async fn card_lost_found_reissued_closed(app: &TestApp) {
    app.device(APPLE, "iphone", "handset_se").await;
    app.device(HUAWEI, "mate", "handset_se").await;
    let on_iphone = app.green(APPLE, "iphone", PINGAN_DEBIT).await;
    let on_mate = app.green(HUAWEI, "mate", PINGAN_DEBIT).await;
    let other_card = app.green(APPLE, "iphone", CMB_DEBIT).await;
    let back_office = |path: &str, body: Value| {
        let http = app.http.clone();
        let url = format!("{}{path}", app.base);
        async move {
            let response = http
                .post(url)
                .bearer_auth(BANK)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };

    // The counter pays money into a card's account once per reference; the same deposit
    // again is answered as a repeat, the reference for another amount is refused, and the
    // back office wants the bank's key.
    let deposit = json!({"card_number": CMB_DEBIT, "amount": 10_000, "reference": "counter-1"});
    let (status, paid) = back_office("/sim/issuer/v1/cards/deposits", deposit.clone()).await;
    assert_eq!(status, 201, "{paid}");
    assert_eq!(paid["repeated"], false);
    let (status, again) = back_office("/sim/issuer/v1/cards/deposits", deposit.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (&again["repeated"], &again["balance"]),
        (&json!(true), &paid["balance"])
    );
    let (status, refused) = back_office(
        "/sim/issuer/v1/cards/deposits",
        json!({"card_number": CMB_DEBIT, "amount": 20_000, "reference": "counter-1"}),
    )
    .await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("CONFLICT")));
    assert!(!refused.to_string().contains(CMB_DEBIT));
    let anonymous = app
        .http
        .post(format!("{}/sim/issuer/v1/cards/deposits", app.base))
        .json(&deposit)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    // The bank reports the card lost: its tokens on both devices are suspended, the other
    // card's token is not.
    let (status, body) = back_office(
        "/sim/issuer/v1/cards/events",
        json!({"card_number": PINGAN_DEBIT, "event": "lost"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["card"]["status"], "lost");
    assert_eq!(
        app.token(APPLE, &on_iphone).await["holds"],
        json!(["card_lost"])
    );
    assert_eq!(app.token(HUAWEI, &on_mate).await["status"], "suspended");
    assert_eq!(app.token(APPLE, &other_card).await["status"], "active");
    // The wallet cannot resume a token whose card is lost.
    let (status, _) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{on_iphone}/resume"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = back_office(
        "/sim/issuer/v1/cards/events",
        json!({"card_number": PINGAN_DEBIT, "event": "found"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(app.token(APPLE, &on_iphone).await["status"], "active");

    // Reissued with a new number and expiry: every token survives with its number and now
    // maps to the new card.
    let before = app
        .running
        .tsp
        .vault
        .detokenize(&token_number(app, &on_iphone).await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.card_expiry.to_wire(), "2912");
    let new_number = "6216261000000000026";
    let (status, body) = back_office(
        "/sim/issuer/v1/cards/reissue",
        json!({"card_number": PINGAN_DEBIT, "new_card_number": new_number, "new_expiry": "3112"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["card"]["last4"], "0026");
    assert_eq!(body["card"]["expiry"], "3112");
    for (wallet, token) in [(APPLE, &on_iphone), (HUAWEI, &on_mate)] {
        let view = app.token(wallet, token).await;
        assert_eq!(
            (view["status"].as_str(), view["card_last4"].as_str()),
            (Some("active"), Some("0026"))
        );
        let after = app
            .running
            .tsp
            .vault
            .detokenize(&token_number(app, token).await)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            cloudpass_core::AccountNumber::expose(&after.pan),
            new_number
        );
        assert_eq!(after.card_expiry.to_wire(), "3112");
    }
    // Created, suspended (lost), active (found), PAN updated.
    let updates = app
        .notifications(sandbox::WALLETS[0].id, &on_iphone, 4)
        .await;
    assert!(
        updates
            .iter()
            .any(|n| n["event_type"] == "PAN_UPDATED" && n["body"]["card"]["last4"] == "0026"),
        "{updates:?}"
    );
    // The reissued card can be provisioned by its new number and maps to the same card.
    app.device(APPLE, "ipad", "handset_se").await;
    let (status, body) = app.provision(APPLE, "ipad", new_number, "3112", None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["token"]["par"],
        app.token(APPLE, &on_iphone).await["par"]
    );

    // Closed: every token of the card is deleted.
    let (status, body) = back_office(
        "/sim/issuer/v1/cards/events",
        json!({"card_number": new_number, "event": "closed"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.token(APPLE, &on_iphone).await["status"], "deleted");
    assert_eq!(
        app.token(HUAWEI, &on_mate).await["status_reason"],
        "ACCOUNT_CLOSED"
    );
    assert_eq!(app.token(APPLE, &other_card).await["status"], "active");
    // The closed card's default on the iPhone moved to the other card.
    assert_eq!(app.token(APPLE, &other_card).await["is_default"], true);
}

async fn token_number(app: &TestApp, token_id: &str) -> String {
    use cloudpass_store::TokenStore;
    app.running
        .tsp
        .store()
        .token(token_id)
        .await
        .unwrap()
        .unwrap()
        .token_number
}

async fn device_wiped_signed_out_unlock_removed(app: &TestApp) {
    for (device, event) in [
        ("wiped", "wiped"),
        ("signed-out", "signed_out"),
        ("unlocked", "unlock_removed"),
    ] {
        app.device(APPLE, device, "handset_se").await;
        let token = app.green(APPLE, device, CMB_DEBIT).await;
        let (status, body) = app
            .post(
                APPLE,
                &format!("/tsp/v1/devices/{device}/events"),
                json!({"event": event}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let view = app.token(APPLE, &token).await;
        assert_eq!(view["status"], "deleted", "{event}");
        assert_eq!(view["is_default"], false);
    }
    // A wiped device takes cards again once restored and signed in.
    let (status, body) = app.provision(APPLE, "wiped", CMB_DEBIT, "2912", None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("DEVICE_STATE")));
    let (status, _) = app
        .post(
            APPLE,
            "/tsp/v1/devices/wiped/events",
            json!({"event": "restored"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = app.provision(APPLE, "wiped", CMB_DEBIT, "2912", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("DEVICE_NOT_SIGNED_IN"))
    );
    let (status, body) = app
        .post(
            APPLE,
            "/tsp/v1/devices/wiped/events",
            json!({"event": "signed_in", "account_id": sandbox::ACCOUNT_ID}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.green(APPLE, "wiped", CMB_DEBIT).await;
    // Without a passcode, no cards.
    let (status, body) = app
        .provision(APPLE, "unlocked", CMB_DEBIT, "2912", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("DEVICE_UNLOCK_NOT_SET"))
    );
    // A device event that does not apply is refused.
    let (status, body) = app
        .post(
            APPLE,
            "/tsp/v1/devices/wiped/events",
            json!({"event": "found"}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("DEVICE_STATE")));
    let (status, body) = app
        .post(
            APPLE,
            "/tsp/v1/devices/wiped/events",
            json!({"event": "exploded"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
}

async fn cvm_limits_travel_as_metadata(app: &TestApp) {
    let keys = app.device(APPLE, "iphone", "handset_se").await;
    let token = app.green(APPLE, "iphone", CMB_DEBIT).await;
    let (status, body) = app
        .put(
            BANK,
            "/tsp/v1/issuer/products/debit/cvm-limits",
            json!({"contactless_no_pin_limit": "300.00", "online_no_pin_limit": "200"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tokens_notified"], 1);
    assert_eq!(body["online_no_pin_limit"], "200.00");
    let notes = app.notifications(sandbox::WALLETS[0].id, &token, 2).await;
    let metadata = notes
        .iter()
        .find(|n| n["event_type"] == "METADATA_UPDATED")
        .expect("METADATA_UPDATED");
    assert_eq!(
        metadata["body"]["cvm_limits"]["contactless_no_pin_limit"],
        "300.00"
    );
    let (status, body) = app
        .get(APPLE, &format!("/tsp/v1/tokens/{token}/card-profile"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (profile, _) = open_profile(&keys, &body["card_profile"], &token);
    assert_eq!(profile["cvm_limits"]["online_no_pin_limit"], "200.00");
    let (status, body) = app
        .put(
            BANK,
            "/tsp/v1/issuer/products/debit/cvm-limits",
            json!({"contactless_no_pin_limit": "3.005", "online_no_pin_limit": "1"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
    let (status, body) = app
        .put(
            BANK,
            "/tsp/v1/issuer/products/platinum/cvm-limits",
            json!({"contactless_no_pin_limit": "1", "online_no_pin_limit": "1"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("PRODUCT_NOT_FOUND"))
    );
    let (status, _) = app
        .put(
            APPLE,
            "/tsp/v1/issuer/products/debit/cvm-limits",
            json!({"contactless_no_pin_limit": "1", "online_no_pin_limit": "1"}),
        )
        .await;
    assert_eq!(status, 403, "a wallet is not an issuer");
}

async fn idempotency_keys(app: &TestApp) {
    app.device(APPLE, "iphone", "handset_se").await;
    let body = json!({"device_id": "iphone", "account_id": sandbox::ACCOUNT_ID, "card": {"number": CMB_DEBIT, "expiry": "2912"}});
    let (first_status, first) = app
        .post_with_key(APPLE, "/tsp/v1/tokens", body.clone(), "same-key")
        .await;
    assert_eq!(first_status, 201, "{first}");
    let (again_status, again) = app
        .post_with_key(APPLE, "/tsp/v1/tokens", body.clone(), "same-key")
        .await;
    assert_eq!(
        (again_status, &again),
        (201, &first),
        "same key, same body: the same answer"
    );
    assert_eq!(
        app.device_tokens(APPLE, "iphone").await.len(),
        1,
        "and nothing done twice"
    );
    let mut other = body.clone();
    other["card"]["number"] = json!(PINGAN_DEBIT);
    let (status, error) = app
        .post_with_key(APPLE, "/tsp/v1/tokens", other, "same-key")
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    // Keys belong to their caller: another wallet may use the same key.
    app.device(HUAWEI, "mate", "handset_se").await;
    let mut mate = body.clone();
    mate["device_id"] = json!("mate");
    let (status, _) = app
        .post_with_key(HUAWEI, "/tsp/v1/tokens", mate, "same-key")
        .await;
    assert_eq!(status, 201);
    // No key, no mutation.
    let response = app
        .http
        .post(format!("{}/tsp/v1/tokens", app.base))
        .bearer_auth(APPLE)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}

/// A process killed after committing a change but before writing its answer leaves the key
/// claimed, its change marked committed and no answer. The claim holds the key for its lease
/// (a retry is told the request is in progress); a retry after it gets the change's answer,
/// and the change is not made again.
async fn a_key_whose_answer_died_with_its_process(backend: Backend) {
    let (app, clock) = TestApp::start_on_manual_clock(backend, |_| {}).await;
    app.device(APPLE, "iphone", "handset_se").await;
    let token = app.green(APPLE, "iphone", CMB_DEBIT).await;
    let path = format!("/tsp/v1/tokens/{token}/delete");
    let (status, _) = app
        .post_with_key(APPLE, &path, json!({}), "delete-once")
        .await;
    assert_eq!(status, 200);
    let history_before = app
        .get(APPLE, &format!("/tsp/v1/tokens/{token}/history"))
        .await
        .1;
    let lost = app
        .execute_sql(
            "UPDATE idempotency SET response_status = NULL, response_body = NULL \
             WHERE idempotency_key = 'delete-once'",
        )
        .await;
    assert_eq!(lost, 1);

    let (status, body) = app
        .post_with_key(APPLE, &path, json!({}), "delete-once")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("REQUEST_IN_PROGRESS"))
    );
    clock.advance(cloudpass_tsp::http::CLAIM_LEASE_MS + 1);
    let (status, answer) = app
        .post_with_key(APPLE, &path, json!({}), "delete-once")
        .await;
    assert_eq!(
        status, 200,
        "the retry after the lease is answered: {answer}"
    );
    assert_eq!(answer["status"], "deleted");
    let (status, replay) = app
        .post_with_key(APPLE, &path, json!({}), "delete-once")
        .await;
    assert_eq!((status, &replay), (200, &answer), "and that answer is kept");
    assert_eq!(
        app.get(APPLE, &format!("/tsp/v1/tokens/{token}/history"))
            .await
            .1,
        history_before,
        "the deletion was not made twice"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_whose_answer_died_with_its_process_on_sqlite() {
    a_key_whose_answer_died_with_its_process(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_whose_answer_died_with_its_process_on_postgres() {
    a_key_whose_answer_died_with_its_process(Backend::Postgres).await;
}

async fn notifications_are_signed_and_ordered(app: &TestApp) {
    app.device(APPLE, "iphone", "handset_se").await;
    let token = app.green(APPLE, "iphone", CMB_DEBIT).await;
    for action in ["suspend", "resume", "suspend", "resume"] {
        let (status, body) = app
            .post(
                APPLE,
                &format!("/tsp/v1/tokens/{token}/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = app
        .post(APPLE, &format!("/tsp/v1/tokens/{token}/delete"), json!({}))
        .await;
    assert_eq!(status, 200);
    for subscriber in [sandbox::WALLETS[0].id, sandbox::ISSUER_ID] {
        let received = app.notifications(subscriber, &token, 6).await;
        let kinds: Vec<(&str, &str)> = received
            .iter()
            .map(|n| {
                (
                    n["event_type"].as_str().unwrap(),
                    n["body"]["token"]["status"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("TOKEN_CREATED", "active"),
                ("TOKEN_STATUS_UPDATED", "suspended"),
                ("TOKEN_STATUS_UPDATED", "active"),
                ("TOKEN_STATUS_UPDATED", "suspended"),
                ("TOKEN_STATUS_UPDATED", "active"),
                ("TOKEN_STATUS_UPDATED", "deleted"),
            ],
            "{subscriber}"
        );
        assert!(received.iter().all(|n| n["signature_valid"] == true));
        let ids: HashSet<&str> = received
            .iter()
            .map(|n| n["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 6);
    }
    // The token's notifications with their delivery state, through the API. The worker
    // records a delivery after the receiver has answered, so the last one may still show
    // pending for a moment after the receiver has it.
    let all_delivered = |body: &serde_json::Value| {
        body["notifications"].as_array().is_some_and(|list| {
            list.len() == 6
                && list.iter().all(|n| {
                    n["delivery"] == "delivered" && n["subscriber_id"] == sandbox::WALLETS[0].id
                })
        })
    };
    let mut body = serde_json::Value::Null;
    for _ in 0..100 {
        let (status, now) = app
            .get(APPLE, &format!("/tsp/v1/tokens/{token}/notifications"))
            .await;
        assert_eq!(status, 200);
        body = now;
        if all_delivered(&body) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(all_delivered(&body), "{body}");
}

async fn concurrent_loads_and_defaults(app: &TestApp) {
    app.device(APPLE, "iphone", "handset_se").await;
    // Many simultaneous loads of one card onto one device: exactly one live token.
    let mut loads = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let http = app.http.clone();
        let base = app.base.clone();
        loads.spawn(async move {
            let response = http
                .post(format!("{base}/tsp/v1/tokens"))
                .bearer_auth(APPLE)
                .header("idempotency-key", format!("load-{}", rand_key()))
                .json(&json!({"device_id": "iphone", "account_id": sandbox::ACCOUNT_ID, "card": {"number": CMB_DEBIT, "expiry": "2912"}}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        });
    }
    let mut created = 0;
    while let Some(result) = loads.join_next().await {
        let (status, body) = result.unwrap();
        match status {
            201 => created += 1,
            409 => assert_eq!(body["code"], "TOKEN_ALREADY_EXISTS", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(app.device_tokens(APPLE, "iphone").await.len(), 1);

    // Many simultaneous set-default calls: exactly one default.
    let mut tokens = vec![
        app.device_tokens(APPLE, "iphone").await[0]["token_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    for card in [PINGAN_DEBIT, ABC_CREDIT] {
        let (status, body) = app
            .provision(
                APPLE,
                "iphone",
                card,
                if card == ABC_CREDIT { "2911" } else { "2912" },
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        tokens.push(body["token"]["token_id"].as_str().unwrap().to_owned());
    }
    let mut calls = tokio::task::JoinSet::new();
    for round in 0..18 {
        let http = app.http.clone();
        let base = app.base.clone();
        let token = tokens[round % tokens.len()].clone();
        calls.spawn(async move {
            let response = http
                .post(format!("{base}/tsp/v1/tokens/{token}/default"))
                .bearer_auth(APPLE)
                .header("idempotency-key", format!("default-{}", rand_key()))
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        });
    }
    while let Some(status) = calls.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let defaults = app
        .device_tokens(APPLE, "iphone")
        .await
        .iter()
        .filter(|t| t["is_default"] == true)
        .count();
    assert_eq!(defaults, 1);
}

fn rand_key() -> u64 {
    use cloudpass_core::Random;
    cloudpass_crypto::OsRandom.next_u64()
}

async fn push_provisioning_and_hce_keys(app: &TestApp) {
    let keys = app.device(QUICKPASS, "hce-phone", "hce").await;
    let quickpass_id = sandbox::WALLETS[4].id;
    let (status, body) = app
        .post(
            BANK,
            "/tsp/v1/issuer/push-receipts",
            json!({"card_number": HUAXIA_CREDIT, "expiry": "2912", "token_requestor_id": quickpass_id, "device_id": "hce-phone"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let receipt = body["push_receipt"].as_str().unwrap().to_owned();
    assert!(!receipt.contains(HUAXIA_CREDIT));
    let push = |wallet: &'static str, device: &'static str, receipt: &str| {
        let body = json!({"device_id": device, "account_id": sandbox::ACCOUNT_ID, "push_receipt": receipt});
        async move { app.post(wallet, "/tsp/v1/tokens", body).await }
    };
    // Bound to its wallet and its device: another wallet, or another device, is refused.
    for (wallet, device) in [(APPLE, "iphone"), (QUICKPASS, "other-phone")] {
        let (status, body) = push(wallet, device, &receipt).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("INVALID_PUSH_RECEIPT")),
            "{wallet} {device}"
        );
    }
    // The yellow card goes green when the bank's own app pushes it.
    let (status, body) = push(QUICKPASS, "hce-phone", &receipt).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["decision"], "green");
    // Once: the same receipt again (after the token is deleted, or anywhere) is refused.
    let (again, refused) = push(QUICKPASS, "hce-phone", &receipt).await;
    assert_eq!(
        (again, refused["code"].as_str()),
        (422, Some("INVALID_PUSH_RECEIPT")),
        "a receipt provisions once"
    );
    let token = body["token"]["token_id"].as_str().unwrap().to_owned();
    let (_, first_keys) = open_profile(&keys, &body["card_profile"], &token);
    assert!(matches!(
        first_keys,
        DeviceKeys::LimitedUse { first_atc: 1, .. }
    ));
    // Replenishment moves the ATC range on.
    for expected_first in [11u16, 21] {
        let (status, body) = app
            .post(
                QUICKPASS,
                &format!("/tsp/v1/tokens/{token}/keys"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (_, keys) = open_profile(&keys, &body["card_profile"], &token);
        match keys {
            DeviceKeys::LimitedUse { first_atc, keys } => {
                assert_eq!((first_atc, keys.len()), (expected_first, 10))
            }
            other => panic!("{other:?}"),
        }
    }
    let (status, body) = app.post(QUICKPASS, "/tsp/v1/tokens", json!({"device_id": "hce-phone", "account_id": sandbox::ACCOUNT_ID, "push_receipt": "00ff"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("INVALID_PUSH_RECEIPT"))
    );
    // An SE token has no limited-use keys to replenish.
    app.device(APPLE, "iphone", "handset_se").await;
    let se = app.green(APPLE, "iphone", CMB_DEBIT).await;
    let (status, body) = app
        .post(APPLE, &format!("/tsp/v1/tokens/{se}/keys"), json!({}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("NOT_HCE_TOKEN"))
    );
}

/// Fifteen wrong CVN2s and then the right one: the card is declined from the sixth attempt on
/// without asking the bank (so the right CVN2 no longer tells anything), the wallet hears one
/// decline throughout, and the bank sees every reason. Another card of the same wallet
/// account is cut off once the account has collected its own bound.
async fn card_testing_is_bounded(app: &TestApp) {
    app.device(APPLE, "iphone", "handset_se").await;
    let mut answers = Vec::new();
    for _ in 0..15 {
        let (status, body) = app
            .provision(APPLE, "iphone", HUAXIA_CREDIT, "2912", Some("249"))
            .await;
        assert_eq!(status, 422, "{body}");
        answers.push(body);
    }
    let (status, body) = app
        .provision(APPLE, "iphone", HUAXIA_CREDIT, "2912", Some("248"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("PROVISIONING_DECLINED")),
        "the right CVN2 after the bound: {body}"
    );
    assert!(
        answers.iter().all(|a| *a == body),
        "one answer for every decline"
    );
    assert!(app.device_tokens(APPLE, "iphone").await.is_empty());
    let (_, declines) = app
        .post(
            BANK,
            "/tsp/v1/issuer/cards/declines",
            json!({"card_number": HUAXIA_CREDIT}),
        )
        .await;
    let declines = declines["declines"].as_array().unwrap();
    assert_eq!(
        declines.len(),
        5,
        "the bank was asked five times: {declines:?}"
    );
    assert!(declines.iter().all(|d| d["reason"] == "CVN2_MISMATCH"));

    // The wallet account's bound (10) over other cards: five more declines of another card
    // reach it, and then even a good card is refused for this account.
    for _ in 0..5 {
        let (status, _) = app
            .provision(APPLE, "iphone", ABC_CREDIT, "2811", None)
            .await;
        assert_eq!(status, 422);
    }
    let (status, body) = app
        .provision(APPLE, "iphone", CMB_DEBIT, "2912", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("PROVISIONING_DECLINED")),
        "{body}"
    );
    // Another wallet account is not held back by this one.
    let _ = app.device(HUAWEI, "mate", "handset_se").await;
    let (status, body) = app.provision(HUAWEI, "mate", CMB_DEBIT, "2912", None).await;
    assert_eq!(status, 201, "{body}");
}

/// An all-zero or small-order X25519 key is refused at registration; a device that holds
/// one from before (written straight into the store here) gets no token.
async fn device_keys_of_small_order_are_refused(app: &TestApp) {
    for key in [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    ] {
        let (status, body) = app
            .post(
                APPLE,
                "/tsp/v1/devices",
                json!({"device_id": "zero", "kind": "handset_se", "brand": "test", "account_id": sandbox::ACCOUNT_ID, "unlock_set": true, "public_key": key}),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{body}"
        );
    }
    use cloudpass_store::TokenStore;
    let store = app.running.tsp.store();
    let wallet = sandbox::WALLETS[0].id;
    let user = store
        .user_by_account(wallet, sandbox::ACCOUNT_ID)
        .await
        .unwrap()
        .unwrap();
    store
        .insert_device(&cloudpass_store::DeviceRow {
            id: "dev_zero_key".into(),
            token_requestor_id: wallet.into(),
            external_id: "zero".into(),
            kind: "handset_se".into(),
            brand: "test".into(),
            state: "active".into(),
            user_id: Some(user.id),
            unlock_set: true,
            public_key: vec![0; 32],
            created_at: 0,
            updated_at: 0,
            version: 0,
        })
        .await
        .unwrap();
    let (status, body) = app.provision(APPLE, "zero", CMB_DEBIT, "2912", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{body}"
    );
    // Nothing committed, so nothing to notify: the bug was a token written before sealing.
    assert!(
        store
            .tokens_by_device("dev_zero_key")
            .await
            .unwrap()
            .is_empty()
    );
}

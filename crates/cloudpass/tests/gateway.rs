//! The institution gateway from outside: an independent UPACP merchant in Python
//! (tests/interop/upacp_merchant.py, PyPI `cryptography` and `requests`) signs its requests
//! with the sandbox merchant's key, and verifies every answer through our root and middle CA
//! as UnionPay's SDKs do; the payment goes through the switch to the sandbox bank, whose
//! ledger is read before and after. The payment control's JSON API is exercised here for each
//! of its refusals. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use serde_json::{Value, json};
use support::app::*;
use support::network::{balance, reissued_card};

on_both_backends!(
    a_merchant_issues_a_tn_it_is_paid_and_the_query_says_so,
    malformed_and_foreign_requests_get_their_resp_codes,
    refunds_and_undos_return_money_once_and_never_more,
    notifications_are_signed_and_resent_until_acknowledged,
    a_merchant_that_never_answers_holds_back_no_other_notification,
    unpaid_orders_close_at_their_pay_timeout,
    the_reconciliation_file_agrees_with_the_ledger,
    the_payment_control_refuses_clearly_and_counts_tries,
    trigger_cards_decline_on_demand,
    a_payment_whose_answer_was_lost_is_reversed_and_fails,
    a_refund_whose_answer_was_lost_is_sent_again,
    a_notification_drill_counts_the_first_sends_as_failed,
    a_merchants_sandbox_clock_moves_its_orders_time,
    a_back_consume_pays_with_the_card_data_encrypted,
    a_card_without_a_published_code_is_texted_one,
    the_pending_trigger_card_leaves_a_trade_pending_then_paid,
    notifications_repeat_the_access_of_the_request,
    a_back_consume_of_a_card_without_a_published_code_sends_one_first,
    a_card_opened_for_token_payment_is_paid_by_its_token_until_deleted,
    a_token_of_a_card_without_a_published_code_is_opened_and_paid_with_texted_codes,
);

fn merchant(app: &TestApp, scenario: &str) -> Value {
    let script = support::interop_dir().join("upacp_merchant.py");
    let upacp = app.data_dir.join("upacp");
    let output = std::process::Command::new(support::interop_python())
        .arg(script)
        .arg(&app.base)
        .arg(&upacp)
        .arg(scenario)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "upacp_merchant.py {scenario}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn a_merchant_issues_a_tn_it_is_paid_and_the_query_says_so(backend: Backend) {
    let app = TestApp::start(backend).await;
    let start = balance(&app, HUAXIA_CREDIT).await;
    let result = merchant(&app, "pay");
    let issued = &result["issued"];
    assert_eq!(issued["respCode"], "00", "{issued}");
    assert_eq!(issued["respMsg"], "成功[0000000]");
    let tn = issued["tn"].as_str().unwrap();
    assert_eq!(tn.len(), 21);
    assert_eq!(
        issued["reqReserved"], "{basket=7&note=x}",
        "reqReserved is echoed"
    );
    assert_eq!(
        result["before"]["respCode"], "34",
        "not paid yet: {}",
        result["before"]
    );
    assert_eq!(result["paid"]["status"], "paid", "{}", result["paid"]);
    assert_eq!(result["paid"]["pay_card_type"], "02");
    let after = &result["after"];
    assert_eq!(
        (after["respCode"].as_str(), after["origRespCode"].as_str()),
        (Some("00"), Some("00")),
        "{after}"
    );
    assert_eq!(after["queryId"], result["paid"]["query_id"]);
    assert_eq!(after["txnAmt"], "1250");
    assert_eq!(after["accNo"], "622638******0095");
    assert_eq!(after["traceNo"].as_str().unwrap().len(), 6);
    // The bank's ledger moved, once.
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, start - 1250);
    app.stop().await;
}

async fn refunds_and_undos_return_money_once_and_never_more(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (credit, debit) = (
        balance(&app, HUAXIA_CREDIT).await,
        balance(&app, CMB_DEBIT).await,
    );
    let result = merchant(&app, "returns");
    let code = |case: &str| {
        result[case]["respCode"]
            .as_str()
            .unwrap_or("none")
            .to_owned()
    };
    assert_eq!(code("refund_300"), "00", "{}", result["refund_300"]);
    let query_id = result["refund_300"]["queryId"].as_str().unwrap();
    assert_eq!(query_id.len(), 21);
    assert_eq!(
        result["refund_300_again"]["queryId"], query_id,
        "a repeat gets the first answer"
    );
    assert_eq!(
        code("refund_800"),
        "36",
        "above what remains: {}",
        result["refund_800"]
    );
    assert_eq!(code("refund_700"), "00");
    assert_eq!(code("undo_refunded"), "45", "{}", result["undo_refunded"]);
    let query = &result["query_refund"];
    assert_eq!(
        (query["respCode"].as_str(), query["origRespCode"].as_str()),
        (Some("00"), Some("00"))
    );
    assert_eq!(query["queryId"], query_id);
    assert_eq!(code("undo_partial"), "36");
    assert_eq!(code("undo"), "00", "{}", result["undo"]);
    assert_eq!(code("refund_undone"), "45");
    assert_eq!(code("unknown_original"), "35");
    // Paid 10.00 and refunded it in two parts; paid 5.00 and undid it: the cards are whole.
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, credit);
    assert_eq!(balance(&app, CMB_DEBIT).await, debit);
    let (debits, credits) = app.bank().ledger_totals().await.unwrap();
    assert_eq!(debits, credits);
    app.stop().await;
}

async fn malformed_and_foreign_requests_get_their_resp_codes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let result = merchant(&app, "refusals");
    let code = |case: &str| {
        result[case]["respCode"]
            .as_str()
            .unwrap_or("none")
            .to_owned()
    };
    assert_eq!(code("tampered"), "11", "{}", result["tampered"]);
    assert_eq!(result["retry_same_tn"], true);
    assert_eq!(code("reused"), "12", "{}", result["reused"]);
    assert_eq!(code("missing"), "13");
    assert_eq!(result["missing"]["respMsg"], "要素缺失[backUrl is missing]");
    assert_eq!(code("unknown_merchant"), "31");
    assert_eq!(
        result["reused"]["orderId"].as_str().map(str::len),
        Some(18),
        "a valid field is echoed"
    );
    assert!(result["missing"].get("backUrl").is_none());
    assert_eq!(code("unknown_order"), "34");
    // A body that is not a form at all still gets a signed UPACP answer.
    let answer = app
        .http
        .post(format!("{}/gateway/api/appTransReq.do", app.base))
        .body("%%%")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        answer.contains("respCode=10") && answer.contains("signature="),
        "{answer}"
    );
    // The encryption certificate (txnType 95) is the one in the data directory.
    let query = consume_form("CERT00000001", "1")
        .with("txnType", "95")
        .with("txnSubType", "00")
        .with("bizType", "000000")
        .with("certType", "01");
    let answer = post_signed(&app, "/gateway/api/backTransReq.do", query).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    let given =
        cloudpass_upacp::Certificate::from_pem(answer.get("encryptPubKeyCert").unwrap()).unwrap();
    let on_disk = cloudpass_upacp::Certificate::from_pem(
        &std::fs::read_to_string(app.data_dir.join("upacp").join("encrypt.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(given, on_disk);
    // A refused field is not echoed; the others are.
    let refused = post_signed(
        &app,
        "/gateway/api/appTransReq.do",
        consume_form("BAD-ORDER-1", "100"),
    )
    .await;
    assert_eq!(refused.get("respCode"), Some("10"));
    assert_eq!(refused.get("orderId"), None, "{refused:?}");
    assert_eq!(refused.get("txnAmt"), Some("100"));
    app.stop().await;
}

/// A query form of the sandbox merchant for the order `order_id` of `txn_time`.
fn query_form(order_id: &str, txn_time: &str) -> cloudpass_upacp::Form {
    cloudpass_upacp::Form::new()
        .with("version", "5.1.0")
        .with("encoding", "UTF-8")
        .with("txnType", "00")
        .with("txnSubType", "00")
        .with("bizType", "000000")
        .with("accessType", "0")
        .with("merId", "777290058110048")
        .with("orderId", order_id)
        .with("txnTime", txn_time)
}

/// An undo (31) or refund (04) form of the sandbox merchant for the consume `orig_qry_id`.
fn back_form(
    txn_type: &str,
    order_id: &str,
    amount: &str,
    orig_qry_id: &str,
) -> cloudpass_upacp::Form {
    let mut form = consume_form(order_id, amount);
    form.set("txnType", txn_type)
        .set("txnSubType", "00")
        .set("origQryId", orig_qry_id);
    form
}

/// A consume form of the sandbox merchant, for now.
fn consume_form(order_id: &str, amount: &str) -> cloudpass_upacp::Form {
    let txn_time = cloudpass_upacp::time::format_beijing(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    cloudpass_upacp::Form::new()
        .with("version", "5.1.0")
        .with("encoding", "UTF-8")
        .with("txnType", "01")
        .with("txnSubType", "01")
        .with("bizType", "000201")
        .with("channelType", "07")
        .with("accessType", "0")
        .with("merId", "777290058110048")
        .with("orderId", order_id)
        .with("txnTime", txn_time)
        .with("txnAmt", amount)
        .with("currencyCode", "156")
        .with("backUrl", "https://merchant.example/notify")
}

/// Signs `form` with the sandbox merchant's key (`cloudpass upacp sign`'s way, checked
/// elsewhere against Python) and posts it; the answer, parsed.
async fn post_signed(
    app: &TestApp,
    path: &str,
    mut form: cloudpass_upacp::Form,
) -> cloudpass_upacp::Form {
    let dir = app.data_dir.join("upacp");
    let cert = cloudpass_upacp::Certificate::from_pem(
        &std::fs::read_to_string(dir.join("merchant-777290058110048.pem")).unwrap(),
    )
    .unwrap();
    form.set("certId", cert.cert_id());
    use rustls_pki_types::pem::PemObject;
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(
        dir.join("merchant-777290058110048.key"),
    )
    .unwrap();
    let key =
        cloudpass_crypto::upacp::RsaSigningKey::from_pkcs8_der(key.secret_pkcs8_der()).unwrap();
    cloudpass_upacp::signing::sign_rsa(&mut form, &key).unwrap();
    let answer = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_urlencoded())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    cloudpass_upacp::Form::parse_raw(&answer).unwrap()
}

/// Issues a TN over the API.
async fn issue(app: &TestApp, order_id: &str, amount: &str) -> String {
    let answer = post_signed(
        app,
        "/gateway/api/appTransReq.do",
        consume_form(order_id, amount),
    )
    .await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    answer.get("tn").unwrap().to_owned()
}

/// Issues the order `form` describes and pays it with the CMB debit card; its TN and the
/// payment's answer.
async fn issued_and_paid(app: &TestApp, form: cloudpass_upacp::Form) -> (String, Value) {
    let answer = post_signed(app, "/gateway/api/appTransReq.do", form).await;
    let tn = answer.get("tn").unwrap().to_owned();
    let (_, paid) = pay(
        app,
        &tn,
        json!({"card_number": CMB_DEBIT, "sms_code": "123456", "pin": "111101"}),
    )
    .await;
    assert_eq!(paid["status"], "paid", "{paid}");
    (tn, paid)
}

async fn pay(app: &TestApp, tn: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}/gateway/pay/{tn}", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Moves the sandbox merchant's clock forward: the answer's status and body.
async fn advance_sandbox_clock(app: &TestApp, seconds: i64) -> (u16, Value) {
    let response = app
        .http
        .post(format!(
            "{}/gateway/merchants/777290058110048/clock",
            app.base
        ))
        .json(&json!({"advance_seconds": seconds}))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json::<Value>().await.unwrap(),
    )
}

/// The order of `tn` once it is no longer `paying` (waiting up to 10 s for the gateway's
/// sweeps), or `None`.
async fn settled(app: &TestApp, tn: &str) -> Option<cloudpass_store::OrderRow> {
    use cloudpass_store::GatewayStore;
    for _ in 0..200 {
        let order = app
            .running
            .tsp
            .store()
            .order_by_tn(tn)
            .await
            .unwrap()
            .unwrap();
        if order.status != "paying" {
            return Some(order);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    None
}

async fn the_payment_control_refuses_clearly_and_counts_tries(backend: Backend) {
    let app = TestApp::start(backend).await;
    let debit_start = balance(&app, CMB_DEBIT).await;
    let tn = issue(&app, "RUST000000001", "300").await;
    let card = |extra: Value| {
        let mut body = json!({"card_number": CMB_DEBIT, "sms_code": "123456"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (status, body) = pay(
        &app,
        "100000000000000000000",
        card(json!({"pin": "111101"})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("tn_not_found")));
    let (status, body) = pay(&app, &tn, card(json!({}))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("input_missing")),
        "{body}"
    );
    assert_eq!(body["message"], "a debit card needs its PIN");
    let (_, body) = pay(
        &app,
        &tn,
        json!({"card_number": "6226090000000049", "sms_code": "1", "pin": "1"}),
    )
    .await;
    assert_eq!(body["code"], "card_number_invalid");
    assert!(
        !body.to_string().contains("6226090000000049"),
        "the number is not echoed"
    );
    let (_, body) = pay(
        &app,
        &tn,
        json!({"card_number": "6212345678901232", "sms_code": "111111"}),
    )
    .await;
    assert_eq!(body["code"], "card_unknown", "{body}");
    let (_, body) = pay(
        &app,
        &tn,
        card(json!({"pin": "111101", "sms_code": "999999"})),
    )
    .await;
    assert_eq!(body["code"], "sms_code_wrong");
    assert_eq!(body["message"], "the SMS code is wrong; tries left: 1");
    let (_, body) = pay(
        &app,
        &tn,
        card(json!({"pin": "111101", "sms_code": "999998"})),
    )
    .await;
    assert_eq!(body["message"], "the SMS code is wrong; tries left: 0");
    // Five tries in all: the fifth mistake was the last.
    let (status, body) = pay(&app, &tn, card(json!({"pin": "111101"}))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_tries")),
        "{body}"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, debit_start);

    // A wrong PIN reaches the issuer, which declines: the order fails, nothing moves.
    let tn = issue(&app, "RUST000000002", "300").await;
    let (status, body) = pay(&app, &tn, card(json!({"pin": "999999"}))).await;
    assert_eq!(
        (status, body["status"].as_str(), body["resp_code"].as_str()),
        (200, Some("failed"), Some("65")),
        "{body}"
    );
    let (status, body) = pay(&app, &tn, card(json!({"pin": "111101"}))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("order_not_payable"))
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, debit_start);

    // Identity fields given must be the holder's (the published test data): 422, a try.
    let tn = issue(&app, "RUST000000003", "300").await;
    let (status, body) = pay(
        &app,
        &tn,
        card(json!({"pin": "111101", "phone": "18100000001", "holder_name": "张三"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("identity_mismatch")),
        "{body}"
    );
    assert!(!body.to_string().contains("18100000001"));
    // The right PIN and the holder's own identity pay; a second payment of the TN is refused.
    let (_, body) = pay(
        &app,
        &tn,
        card(json!({"pin": "111101", "phone": "18100000000", "holder_name": "张三", "id_number": "510265790128303"})),
    )
    .await;
    assert_eq!(body["status"], "paid", "{body}");
    assert_eq!(body["pay_card_type"], "01");
    assert_eq!(balance(&app, CMB_DEBIT).await, debit_start - 300);
    let (status, _) = pay(&app, &tn, card(json!({"pin": "111101"}))).await;
    assert_eq!(status, 409);
    assert_eq!(balance(&app, CMB_DEBIT).await, debit_start - 300);
    app.stop().await;
}

/// A merchant's backUrl: records every POST and answers with the status it is told.
struct Receiver {
    url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

async fn receiver() -> Receiver {
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::{Arc, Mutex};
    let received = Arc::new(Mutex::new(Vec::new()));
    let status = Arc::new(AtomicU16::new(500));
    let (r, s) = (Arc::clone(&received), Arc::clone(&status));
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |body: String| {
            let (r, s) = (Arc::clone(&r), Arc::clone(&s));
            async move {
                r.lock().unwrap().push(body);
                axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url,
        received,
        status,
    }
}

/// Notifications of one look are sent side by side: a merchant whose `backUrl` takes the
/// connection and never answers costs its own notification the 10 s timeout, and no one
/// else's. (Sent one after another, the second would wait those 10 s.)
async fn a_merchant_that_never_answers_holds_back_no_other_notification(backend: Backend) {
    use std::sync::atomic::Ordering;
    let (app, _clock) = TestApp::start_on_manual_clock(backend, |_| {}).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/notify", silent.local_addr().unwrap());
    // Takes connections and reads nothing, answers nothing.
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            open.push(connection);
        }
    });
    let prompt = receiver().await;
    prompt.status.store(200, Ordering::SeqCst);
    for (order_id, url) in [("SILENT000001", &silent_url), ("PROMPT000001", &prompt.url)] {
        let form = consume_form(order_id, "310").with("backUrl", url.clone());
        issued_and_paid(&app, form).await;
    }
    let started = std::time::Instant::now();
    {
        let pass = app.run_workers();
        tokio::pin!(pass);
        let arrived = loop {
            tokio::select! {
                _ = &mut pass => break !prompt.received.lock().unwrap().is_empty(),
                _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                    if !prompt.received.lock().unwrap().is_empty() {
                        break true;
                    }
                }
            }
        };
        assert!(
            arrived,
            "the prompt merchant's notification was sent in the pass"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "it did not wait for the silent merchant: {:?}",
            started.elapsed()
        );
        pass.await;
    }
    held.abort();
    app.stop().await;
}

async fn notifications_are_signed_and_resent_until_acknowledged(backend: Backend) {
    use std::sync::atomic::Ordering;
    // UnionPay's schedule (1, 2, 4, 5 minutes), on a clock the test moves.
    let (app, clock) = TestApp::start_on_manual_clock(backend, |_| {}).await;
    let backend_url = receiver().await;
    let sent = || backend_url.received.lock().unwrap().len();
    let form = consume_form("NOTIFY0000001", "880").with("backUrl", backend_url.url.clone());
    let (tn, paid) = issued_and_paid(&app, form).await;
    // The merchant answers 500 twice, then 200: three sends, each at its time, then no more.
    app.run_workers().await;
    assert_eq!(sent(), 1, "sent at once");
    clock.advance(60_000 - 1);
    app.run_workers().await;
    assert_eq!(sent(), 1, "not a millisecond before the first minute");
    clock.advance(1);
    app.run_workers().await;
    assert_eq!(sent(), 2, "again after a minute");
    backend_url.status.store(200, Ordering::SeqCst);
    clock.advance(120_000 - 1);
    app.run_workers().await;
    assert_eq!(sent(), 2, "not before the next two minutes");
    clock.advance(1);
    app.run_workers().await;
    assert_eq!(sent(), 3, "again after two minutes, and acknowledged");
    clock.advance(3_600_000);
    app.run_workers().await;
    let received = backend_url.received.lock().unwrap().clone();
    assert_eq!(
        received.len(),
        3,
        "sent until acknowledged, then not again: {}",
        received.len()
    );
    assert!(
        received.iter().all(|body| body == &received[0]),
        "every send is the same notification"
    );
    // What the merchant receives verifies through our root and middle CA.
    let form = cloudpass_upacp::Form::parse_urlencoded(received[0].as_bytes()).unwrap();
    let dir = app.data_dir.join("upacp");
    let read = |name: &str| {
        cloudpass_upacp::Certificate::from_pem(&std::fs::read_to_string(dir.join(name)).unwrap())
            .unwrap()
    };
    let (root, middle) = (read("root.pem"), read("middle.pem"));
    let trust = cloudpass_upacp::Trust {
        chain: Some((&root, &middle)),
        signer_name: Some("00040000:SIGN"),
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        ..Default::default()
    };
    assert!(cloudpass_upacp::signing::verify(&form, &trust).fully_verified());
    assert_eq!(form.get("respCode"), Some("00"));
    assert_eq!(form.get("queryId"), paid["query_id"].as_str());
    assert_eq!(form.get("orderId"), Some("NOTIFY0000001"));
    assert_eq!(form.get("accNo"), Some("622609******0048"));
    assert_eq!(form.get("tn"), Some(tn.as_str()));
    // Certification saw the notification acknowledged after failed sends.
    let (status, report) = app
        .get("", "/gateway/merchants/777290058110048/certification")
        .await;
    assert_eq!(status, 200, "{report}");
    let passed = |name: &str| {
        report["cases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|case| case["case"] == name && case["passed"] == true)
    };
    assert!(
        passed("notification_acknowledged") && passed("notification_retried"),
        "{report}"
    );
    app.stop().await;
}

async fn unpaid_orders_close_at_their_pay_timeout(backend: Backend) {
    use cloudpass_core::Clock;
    use cloudpass_store::GatewayStore;
    let (app, clock) = TestApp::start_on_manual_clock(backend, |config| {
        config.gateway.default_pay_timeout_seconds = 60;
    })
    .await;
    // Sent at the app's time (its manual clock): the payTimeout counts from it. The
    // machine's own time may be seconds ahead when the app was slow to start.
    let form = consume_form("TIMEOUT000001", "100").with(
        "txnTime",
        cloudpass_upacp::time::format_beijing(clock.now_millis().div_euclid(1_000)),
    );
    let txn_time = form.get("txnTime").unwrap().to_owned();
    let answer = post_signed(&app, "/gateway/api/appTransReq.do", form).await;
    let tn = answer.get("tn").unwrap().to_owned();
    let store = app.running.tsp.store().clone();
    let status = || async { store.order_by_tn(&tn).await.unwrap().unwrap().status };
    // Open through its last second; closed by the first sweep after it.
    let open_for = (store.order_by_tn(&tn).await.unwrap().unwrap().pay_timeout
        - clock.now_millis().div_euclid(1_000))
        * 1_000;
    assert!((0..=61_000).contains(&open_for), "{open_for}");
    clock.advance(open_for);
    app.run_workers().await;
    assert_ne!(status().await, "closed", "open at its payTimeout's second");
    clock.advance(1_000);
    app.run_workers().await;
    assert_eq!(status().await, "closed", "closed after its payTimeout");
    let (status, body) = pay(
        &app,
        &tn,
        json!({"card_number": CMB_DEBIT, "sms_code": "123456", "pin": "111101"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("order_not_payable")),
        "{body}"
    );
    assert_eq!(body["message"], "the order is closed and cannot be paid");
    let query = cloudpass_upacp::Form::new()
        .with("version", "5.1.0")
        .with("encoding", "UTF-8")
        .with("txnType", "00")
        .with("txnSubType", "00")
        .with("bizType", "000000")
        .with("accessType", "0")
        .with("merId", "777290058110048")
        .with("orderId", "TIMEOUT000001")
        .with("txnTime", txn_time);
    let answer = post_signed(&app, "/gateway/api/queryTrans.do", query).await;
    assert_eq!(
        (answer.get("respCode"), answer.get("origRespCode")),
        (Some("00"), Some("01")),
        "{answer:?}"
    );
    app.stop().await;
}

async fn the_reconciliation_file_agrees_with_the_ledger(backend: Backend) {
    let app = TestApp::start(backend).await;
    let before = balance(&app, HUAXIA_CREDIT).await + balance(&app, PINGAN_DEBIT).await;
    let result = merchant(&app, "recon");
    assert_eq!(result["file"]["respCode"], "00", "{}", result["file"]);
    let lines = result["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let field = |line: &Value, i: usize| line[i].as_str().unwrap().to_owned();
    let query_ids: Vec<String> = lines.iter().map(|l| field(l, 0)).collect();
    assert!(query_ids.contains(&result["consumes"][0].as_str().unwrap().to_owned()));
    assert!(query_ids.contains(&result["consumes"][1].as_str().unwrap().to_owned()));
    let refund = lines.iter().find(|l| field(l, 1) == "04").unwrap();
    assert_eq!(field(refund, 0), result["refund"].as_str().unwrap());
    assert_eq!(
        field(refund, 10),
        result["consumes"][0].as_str().unwrap(),
        "origQryId"
    );
    // Every line agrees with the bank's books: consumes took, refunds gave back.
    let net: i64 = lines
        .iter()
        .map(|l| {
            let amount: i64 = field(l, 4).parse().unwrap();
            if field(l, 1) == "01" { amount } else { -amount }
        })
        .sum();
    let after = balance(&app, HUAXIA_CREDIT).await + balance(&app, PINGAN_DEBIT).await;
    assert_eq!(before - after, net);
    assert_eq!(net, 1000 - 250 + 300);
    assert!(
        lines.iter().all(|l| field(l, 9).contains("******")),
        "card numbers masked"
    );
    app.stop().await;
}

/// The sandbox's trigger cards make the issuer decline on demand (docs/upacp.md §0), and the
/// certification checklist counts the failure.
async fn trigger_cards_decline_on_demand(backend: Backend) {
    use cloudpass::sandbox::{EXPIRED_CARD, INSUFFICIENT_FUNDS_CARD};
    let app = TestApp::start(backend).await;
    for (order_id, card, resp_code) in [
        (
            "TRIGGER000001",
            json!({"card_number": INSUFFICIENT_FUNDS_CARD, "sms_code": "111111", "pin": "111101"}),
            "64",
        ),
        (
            "TRIGGER000002",
            json!({"card_number": EXPIRED_CARD, "sms_code": "111111", "cvn2": "248", "expiry": "2001"}),
            "65",
        ),
    ] {
        let answer = post_signed(
            &app,
            "/gateway/api/appTransReq.do",
            consume_form(order_id, "500"),
        )
        .await;
        let tn = answer.get("tn").unwrap().to_owned();
        let (status, paid) = pay(&app, &tn, card).await;
        assert_eq!(status, 200, "{paid}");
        assert_eq!(
            (paid["status"].as_str(), paid["resp_code"].as_str()),
            (Some("failed"), Some(resp_code)),
            "{paid}"
        );
    }
    let (_, report) = app
        .get("", "/gateway/merchants/777290058110048/certification")
        .await;
    assert!(
        report["cases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|case| case["case"] == "consume_failure" && case["passed"] == true),
        "{report}"
    );
    app.stop().await;
}

/// A payment whose answer was lost — here, as the gateway leaves it when it dies with the
/// authorization in flight: `paying`, with the STAN and time it recorded before sending —
/// is reversed by the sweep and fails; the issuer's posting is undone. The authorization
/// itself reached the issuer: another terminal of the gateway's acquirer sent it with that
/// STAN. A payment the switch never saw is settled the same way, and nothing moves.
async fn a_payment_whose_answer_was_lost_is_reversed_and_fails(backend: Backend) {
    use std::time::Duration;

    use cloudpass_store::GatewayStore;
    use support::network::Shop;

    let app = TestApp::start_with(backend, |config| {
        // The stuck rows this test writes were last touched at the epoch; an hour is
        // long enough that no payment the test makes itself is swept while in flight.
        config.gateway.unanswered_after_seconds = 3_600;
        config.gateway.notify.poll = Duration::from_millis(50);
    })
    .await;
    let store = app.running.tsp.store().clone();
    let start = balance(&app, CMB_DEBIT).await;
    let shop = Shop::open_ecommerce(&app, "CPWEB002", Duration::from_secs(5)).await;
    let mut lost = Vec::new();
    for (order_id, reached_the_issuer) in [("LOSTANSWER01", true), ("LOSTANSWER02", false)] {
        let form = consume_form(order_id, "4200");
        let txn_time = form.get("txnTime").unwrap().to_owned();
        let answer = post_signed(&app, "/gateway/api/appTransReq.do", form).await;
        let tn = answer.get("tn").unwrap().to_owned();
        let (stan, time) = if reached_the_issuer {
            let sent = shop
                .card_not_present(CMB_DEBIT, None, "42.00", None, Some("111101"))
                .await;
            assert_eq!(sent.response_code.as_deref(), Some("00"), "{sent:?}");
            (sent.stan, sent.transmission_time)
        } else {
            ("999999".to_owned(), "1202120000".to_owned())
        };
        let mut order = store.order_by_tn(&tn).await.unwrap().unwrap();
        order.status = "paying".into();
        order.auth_stan = Some(stan);
        order.auth_transmission_time = Some(time);
        order.updated_at = 0;
        order.version += 1;
        store.update_order(&order, None).await.unwrap();
        lost.push((order_id, txn_time, tn));
    }
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 4200);

    for (order_id, txn_time, tn) in &lost {
        let settled = settled(&app, tn)
            .await
            .expect("the sweep settles the payment");
        assert_eq!(settled.status, "failed");
        assert_eq!(settled.pay_response_code.as_deref(), Some("68"));
        let query = post_signed(
            &app,
            "/gateway/api/queryTrans.do",
            query_form(order_id, txn_time),
        )
        .await;
        assert_eq!(
            (query.get("respCode"), query.get("origRespCode")),
            (Some("00"), Some("60")),
            "{query:?}"
        );
    }
    // The issuer hears of the reversal through the switch's store and forward.
    let mut restored = false;
    for _ in 0..200 {
        if balance(&app, CMB_DEBIT).await == start {
            restored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(restored, "the posting was reversed at the issuer");
    app.stop().await;
}

/// A refund whose answer was lost — as the gateway leaves it when it dies with the refund in
/// flight: the refund's order `paying` with the STAN and time it recorded before sending,
/// its amount reserved on the consume — is sent again by the sweep, the same message; the
/// issuer posts it once, the consume is refunded by that amount, and the merchant is told.
async fn a_refund_whose_answer_was_lost_is_sent_again(backend: Backend) {
    use std::time::Duration;

    use cloudpass_store::GatewayStore;

    let app = TestApp::start_with(backend, |config| {
        // The stuck rows this test writes were last touched at the epoch; an hour is
        // long enough that no payment the test makes itself is swept while in flight.
        config.gateway.unanswered_after_seconds = 3_600;
        config.gateway.notify.poll = Duration::from_millis(50);
    })
    .await;
    let store = app.running.tsp.store().clone();
    let start = balance(&app, CMB_DEBIT).await;
    let answer = post_signed(
        &app,
        "/gateway/api/appTransReq.do",
        consume_form("LOSTREFUND00", "3000"),
    )
    .await;
    let tn = answer.get("tn").unwrap().to_owned();
    let (_, paid) = pay(
        &app,
        &tn,
        json!({"card_number": CMB_DEBIT, "sms_code": "111111", "pin": "111101"}),
    )
    .await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 3000);

    // The state a crash in flight leaves: 1000 reserved on the consume, the refund's order
    // paying with its STAN and time.
    let mut consume = store.order_by_tn(&tn).await.unwrap().unwrap();
    consume.refund_reserved = 1000;
    consume.version += 1;
    store.update_order(&consume, None).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let beijing = cloudpass_upacp::time::format_beijing(now);
    let refund = cloudpass_store::OrderRow {
        tn: "900000000000000000001".into(),
        order_id: "LOSTREFUND01".into(),
        txn_time: beijing.clone(),
        amount: 1000,
        status: "paying".into(),
        refunded: 0,
        refund_reserved: 0,
        paid_at: None,
        query_id: None,
        pay_response_code: None,
        auth_stan: Some("888888".into()),
        // MMDDhhmmss.
        auth_transmission_time: Some(beijing[4..14].to_owned()),
        request_digest: "lost".into(),
        created_at: 0,
        updated_at: 0,
        version: 1,
        kind: "refund".into(),
        original_tn: Some(tn.clone()),
        ..consume.clone()
    };
    assert_eq!(
        store.insert_order(&refund).await.unwrap(),
        cloudpass_store::OrderInsert::Inserted
    );

    let settled = settled(&app, &refund.tn)
        .await
        .expect("the sweep sends the refund again");
    assert_eq!(settled.status, "paid", "{settled:?}");
    assert_eq!(settled.pay_response_code.as_deref(), Some("00"));
    let consume = store.order_by_tn(&tn).await.unwrap().unwrap();
    assert_eq!(
        (
            consume.status.as_str(),
            consume.refunded,
            consume.refund_reserved
        ),
        ("partly_refunded", 1000, 0)
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 2000);
    assert_eq!(store.notifications_of(&refund.tn).await.unwrap().len(), 1);
    app.stop().await;
}

/// A merchant's notification drill (`cloudpass merchant set --failed-notification-sends 2`):
/// the merchant answers 200 every time, yet the first two sends count as failed, so it
/// receives the same notification three times on the schedule, then no more.
async fn a_notification_drill_counts_the_first_sends_as_failed(backend: Backend) {
    use std::sync::atomic::Ordering;

    use cloudpass_store::GatewayStore;

    let (app, clock) = TestApp::start_on_manual_clock(backend, |_| {}).await;
    let store = app.running.tsp.store().clone();
    store
        .set_failed_notification_sends("777290058110048", 2)
        .await
        .unwrap();
    let merchant = receiver().await;
    merchant.status.store(200, Ordering::SeqCst);
    let form = consume_form("DRILL0000001", "700").with("backUrl", merchant.url.clone());
    let answer = post_signed(&app, "/gateway/api/appTransReq.do", form).await;
    let tn = answer.get("tn").unwrap().to_owned();
    let (_, paid) = pay(
        &app,
        &tn,
        json!({"card_number": CMB_DEBIT, "sms_code": "111111", "pin": "111101"}),
    )
    .await;
    assert_eq!(paid["status"], "paid", "{paid}");
    // Sent at once, after a minute and after two more, though answered 200 each time.
    for wait in [0, 60_000, 120_000] {
        clock.advance(wait);
        app.run_workers().await;
    }
    let sent = store.notifications_of(&tn).await.unwrap();
    let delivered = sent.first().expect("the notification");
    assert_eq!(delivered.attempts, 3);
    assert!(
        delivered.delivered_at.is_some(),
        "acknowledged after the drill"
    );
    clock.advance(3_600_000);
    app.run_workers().await;
    let received = merchant.received.lock().unwrap().clone();
    assert_eq!(received.len(), 3, "three sends, then no more");
    assert!(received.iter().all(|body| body == &received[0]));
    app.stop().await;
}

/// A merchant's sandbox clock moves the time its orders live by, and only theirs: advanced
/// 16 minutes, an unpaid order closes at its payTimeout and a failed notification is sent
/// again after the schedule's minute; advanced a day, an undo of yesterday's payment is
/// refused while a refund is taken. The platform's own clock stands still meanwhile, so
/// only the merchant's offset moves the orders.
async fn a_merchants_sandbox_clock_moves_its_orders_time(backend: Backend) {
    use cloudpass_store::GatewayStore;

    let (app, _clock) = TestApp::start_on_manual_clock(backend, |_| {}).await;
    let store = app.running.tsp.store().clone();
    let clock_url = format!("{}/gateway/merchants/777290058110048/clock", app.base);
    let advance = |seconds: i64| advance_sandbox_clock(&app, seconds);
    let merchant = receiver().await;
    let sent = || merchant.received.lock().unwrap().len();
    let unpaid = post_signed(
        &app,
        "/gateway/api/appTransReq.do",
        consume_form("CLOCKUNPAID1", "100"),
    )
    .await;
    let unpaid_tn = unpaid.get("tn").unwrap().to_owned();
    let form = consume_form("CLOCKPAID001", "900").with("backUrl", merchant.url.clone());
    let issued = post_signed(&app, "/gateway/api/appTransReq.do", form).await;
    let tn = issued.get("tn").unwrap().to_owned();
    let (_, paid) = pay(
        &app,
        &tn,
        json!({"card_number": CMB_DEBIT, "sms_code": "111111", "pin": "111101"}),
    )
    .await;
    assert_eq!(paid["status"], "paid", "{paid}");
    let query_id = paid["query_id"].as_str().unwrap().to_owned();
    app.run_workers().await;
    assert_eq!(sent(), 1, "the first send (answered 500)");
    app.run_workers().await;
    assert_eq!(sent(), 1, "the retry waits a minute");

    let (status, clock) = advance(16 * 60).await;
    assert_eq!(
        (status, clock["offset_seconds"].as_i64()),
        (200, Some(960)),
        "{clock}"
    );
    app.run_workers().await;
    assert_eq!(
        sent(),
        2,
        "the minute passed on the merchant's clock: sent again"
    );
    assert_eq!(
        store.order_by_tn(&unpaid_tn).await.unwrap().unwrap().status,
        "closed",
        "the unpaid order closed at its payTimeout"
    );

    // A day later on the merchant's clock: no undo, but a refund.
    let (status, _) = advance(86_400).await;
    assert_eq!(status, 200);
    let undo = post_signed(
        &app,
        "/gateway/api/backTransReq.do",
        back_form("31", "CLOCKUNDO001", "900", &query_id),
    )
    .await;
    assert_eq!(undo.get("respCode"), Some("35"), "{undo:?}");
    let refund = post_signed(
        &app,
        "/gateway/api/backTransReq.do",
        back_form("04", "CLOCKREFUND1", "300", &query_id),
    )
    .await;
    assert_eq!(refund.get("respCode"), Some("00"), "{refund:?}");

    // Bad advances are refused plainly; other merchants keep real time.
    let (status, body) = advance(0).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("input_invalid")),
        "{body}"
    );
    let response = app
        .http
        .get(format!(
            "{}/gateway/merchants/898310048990099/clock",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let clock: Value = app
        .http
        .get(&clock_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(clock["offset_seconds"], 960 + 86_400);
    app.stop().await;
}

/// The "no redirect" consume at backTransReq.do (txnType 01): the card number and the
/// payer's checks encrypted to the platform's encryption certificate as UnionPay's SDKs do
/// (RSA PKCS#1 v1.5, the PIN as a format 0 block), paid at once through the switch; the
/// ledger moves; nothing in clear is echoed; what cannot be opened is refused 10.
async fn a_back_consume_pays_with_the_card_data_encrypted(backend: Backend) {
    use base64::Engine;
    use cloudpass_crypto::upacp::encrypt_base64;

    let app = TestApp::start(backend).await;
    let certificate = cloudpass_upacp::Certificate::from_pem(
        &std::fs::read_to_string(app.data_dir.join("upacp").join("encrypt.pem")).unwrap(),
    )
    .unwrap();
    let public = certificate.public_key_info_der().unwrap();
    let seal = |text: &[u8]| encrypt_base64(&public, text).unwrap();
    let customer_info =
        |inner: String| base64::engine::general_purpose::STANDARD.encode(format!("{{{inner}}}"));
    let back_consume = |order_id: &str, amount: &str, acc_no: String, info: String| {
        let mut form = consume_form(order_id, amount);
        form.set("bizType", "000301")
            .set("accNo", acc_no)
            .set("customerInfo", info)
            .set("encryptCertId", certificate.cert_id());
        form
    };
    let debit_start = balance(&app, CMB_DEBIT).await;
    let credit_start = balance(&app, HUAXIA_CREDIT).await;

    // A debit card with its PIN block.
    let pin = cloudpass_crypto::Pin::parse("111101").unwrap();
    let block = cloudpass_crypto::pin::format0_encode(&pin, CMB_DEBIT).unwrap();
    let info = customer_info(format!("smsCode=111111&pin={}", seal(block.as_slice())));
    let form = back_consume("BACKPAY00001", "1500", seal(CMB_DEBIT.as_bytes()), info);
    let answer = post_signed(&app, "/gateway/api/backTransReq.do", form).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    assert_eq!(answer.get("queryId").map(str::len), Some(21));
    assert!(!answer.to_raw().contains(CMB_DEBIT) && answer.get("accNo").is_none());
    assert_eq!(balance(&app, CMB_DEBIT).await, debit_start - 1500);

    // A credit card with its CVN2 and expiry in encryptedInfo.
    let sealed = seal(b"phoneNo=18100000000&cvn2=248&expired=2912");
    let info = customer_info(format!("smsCode=111111&encryptedInfo={sealed}"));
    let form = back_consume("BACKPAY00002", "2500", seal(HUAXIA_CREDIT.as_bytes()), info);
    let answer = post_signed(&app, "/gateway/api/backTransReq.do", form).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, credit_start - 2500);

    // The holder's phone in encryptedInfo and name and ID in customerInfo, not the card's:
    // 66, nothing moves.
    let wrong_phone = seal(b"phoneNo=18100000001&cvn2=248&expired=2912");
    for (order_id, info) in [
        (
            "BACKPAY00006",
            format!("smsCode=111111&encryptedInfo={wrong_phone}"),
        ),
        (
            "BACKPAY00007",
            format!(
                "smsCode=111111&customerNm=李四&certifTp=01&certifId=510265790128303&encryptedInfo={sealed}"
            ),
        ),
        (
            "BACKPAY00008",
            format!(
                "smsCode=111111&customerNm=张三&certifTp=01&certifId=110101199003071234&encryptedInfo={sealed}"
            ),
        ),
    ] {
        let form = back_consume(
            order_id,
            "700",
            seal(HUAXIA_CREDIT.as_bytes()),
            customer_info(info),
        );
        let answer = post_signed(&app, "/gateway/api/backTransReq.do", form).await;
        assert_eq!(answer.get("respCode"), Some("66"), "{order_id}: {answer:?}");
    }
    let info = customer_info(format!(
        "smsCode=111111&customerNm=张三&certifTp=01&certifId=510265790128303&encryptedInfo={sealed}"
    ));
    let form = back_consume("BACKPAY00009", "300", seal(HUAXIA_CREDIT.as_bytes()), info);
    let answer = post_signed(&app, "/gateway/api/backTransReq.do", form).await;
    assert_eq!(
        answer.get("respCode"),
        Some("00"),
        "the holder's own: {answer:?}"
    );
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, credit_start - 2800);

    // A wrong SMS code: 71, nothing moves.
    let info = customer_info(format!("smsCode=999999&encryptedInfo={sealed}"));
    let unpaid = back_consume("BACKPAY00003", "700", seal(HUAXIA_CREDIT.as_bytes()), info);
    let answer = post_signed(&app, "/gateway/api/backTransReq.do", unpaid.clone()).await;
    assert_eq!(answer.get("respCode"), Some("71"), "{answer:?}");
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, credit_start - 2800);

    // The card number in clear, or the wrong certificate: 10, and not repeated.
    let info = customer_info(format!("smsCode=111111&encryptedInfo={sealed}"));
    let form = back_consume(
        "BACKPAY00004",
        "700",
        HUAXIA_CREDIT.to_owned(),
        info.clone(),
    );
    let answer = post_signed(&app, "/gateway/api/backTransReq.do", form).await;
    assert_eq!(answer.get("respCode"), Some("10"), "{answer:?}");
    assert!(!answer.to_raw().contains(HUAXIA_CREDIT));
    let mut form = back_consume("BACKPAY00005", "700", seal(HUAXIA_CREDIT.as_bytes()), info);
    form.set("encryptCertId", "12345");
    let answer = post_signed(&app, "/gateway/api/backTransReq.do", form).await;
    assert_eq!(answer.get("respCode"), Some("10"), "{answer:?}");

    // The independent Python merchant, from docs/upacp.md: the certificate from txnType 95,
    // its own PIN block and encryption.
    let debit_before = balance(&app, CMB_DEBIT).await;
    let credit_before = balance(&app, HUAXIA_CREDIT).await;
    let result = merchant(&app, "backpay");
    for (name, origin) in [("debit", "00"), ("credit", "00")] {
        let answer = &result[name]["answer"];
        assert_eq!(answer["respCode"], "00", "{name}: {answer}");
        let query = &result[name]["query"];
        assert_eq!(
            (query["respCode"].as_str(), query["origRespCode"].as_str()),
            (Some("00"), Some(origin)),
            "{name}: {query}"
        );
        assert_eq!(query["queryId"], answer["queryId"]);
    }
    assert_eq!(result["wrong_sms"]["answer"]["respCode"], "71");
    assert_eq!(result["wrong_sms"]["query"]["respCode"], "34");
    assert_eq!(balance(&app, CMB_DEBIT).await, debit_before - 600);
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, credit_before - 601);

    // Past its payTimeout the unpaid order is over: the same request again is answered 35.
    let (status, _) = advance_sandbox_clock(&app, 16 * 60).await;
    assert_eq!(status, 200);
    let again = post_signed(&app, "/gateway/api/backTransReq.do", unpaid).await;
    assert_eq!(again.get("respCode"), Some("35"), "{again:?}");
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, credit_before - 601);
    app.stop().await;
}

/// A card the bank reissued has no published SMS code: the payer asks for one, the bank texts
/// it to the phone it holds (its SMS inbox), and the payment takes it once; a code is good for
/// five minutes on the merchant's clock, another may be asked for after a minute, and the
/// hosted page sends one when the card is entered.
async fn a_card_without_a_published_code_is_texted_one(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (reissued, phone) = reissued_card(&app).await;
    let start = balance(&app, reissued).await;
    let tn = issue(&app, "SMSCODE00001", "880").await;
    let ask = |tn: &str| {
        let (http, url) = (
            app.http.clone(),
            format!("{}/gateway/pay/{tn}/sms", app.base),
        );
        async move {
            let response = http
                .post(url)
                .json(&json!({"card_number": reissued}))
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let shared = &app;
    let advance = |seconds: i64| async move {
        let (status, body) = advance_sandbox_clock(shared, seconds).await;
        assert_eq!(status, 200, "{body}");
    };
    let with_code =
        |code: &str| json!({"card_number": reissued, "sms_code": code, "pin": "123456"});

    let (status, body) = pay(&app, &tn, with_code("111111")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("sms_code_not_sent")),
        "{body}"
    );

    let (status, sent) = ask(&tn).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(
        (
            sent["status"].as_str(),
            sent["sent_to"].as_str(),
            sent["valid_seconds"].as_i64()
        ),
        (Some("sent"), Some("135****5506"), Some(300))
    );
    let (status, inbox) = app
        .get(
            app.operator_key(),
            &format!("/sim/issuer/v1/sms?phone={phone}"),
        )
        .await;
    assert_eq!(status, 200);
    let text = inbox["messages"][0]["text"].as_str().unwrap();
    assert!(text.contains("8.80") && text.contains("0026"), "{text}");
    assert!(
        !text.contains(reissued),
        "the text never holds the card number"
    );
    let first = app.latest_otp(phone).await;

    let (status, body) = ask(&tn).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("sms_too_soon")),
        "{body}"
    );
    let wrong = if first == "000000" {
        "000001"
    } else {
        "000000"
    };
    let (status, body) = pay(&app, &tn, with_code(wrong)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("sms_code_wrong")),
        "{body}"
    );

    // Past its five minutes the code is refused; a new one is sent and pays.
    advance(301).await;
    let (status, body) = pay(&app, &tn, with_code(&first)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("sms_code_expired")),
        "{body}"
    );
    let (status, sent) = ask(&tn).await;
    assert_eq!(status, 200, "{sent}");
    let second = app.latest_otp(phone).await;
    let (status, paid) = pay(&app, &tn, with_code(&second)).await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("paid")),
        "{paid}"
    );
    assert_eq!(balance(&app, reissued).await, start - 880);
    let (status, body) = ask(&tn).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("order_not_payable")),
        "{body}"
    );

    // Five codes per TN, a minute apart at the least; the sixth is refused.
    let limited = issue(&app, "SMSCODE00003", "130").await;
    for send in 1..=5 {
        let (status, body) = ask(&limited).await;
        assert_eq!(status, 200, "send {send}: {body}");
        advance(61).await;
    }
    let (status, body) = ask(&limited).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_sms_codes")),
        "{body}"
    );

    // A published test card is not texted: its fixed code stands.
    let other = issue(&app, "SMSCODE00002", "120").await;
    let response = app
        .http
        .post(format!("{}/gateway/pay/{other}/sms", app.base))
        .json(&json!({"card_number": CMB_DEBIT}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "published", "{body}");

    // The hosted page texts a code when the card is entered, and offers another.
    let page = app
        .http
        .post(format!("{}/gateway/pay/{other}/card", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("card_number={reissued}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("135****5506") && html.contains("id=\"resend\""),
        "{html}"
    );
    let code = app.latest_otp(phone).await;
    let confirmed = app
        .http
        .post(format!("{}/gateway/pay/{other}/confirm", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("card_number={reissued}&sms_code={code}&pin=123456"))
        .send()
        .await
        .unwrap();
    let html = confirmed.text().await.unwrap();
    assert!(html.contains("Payment successful"), "{html}");
    assert_eq!(balance(&app, reissued).await, start - 1000);
    app.stop().await;
}

/// The pending trigger card: its payment is held before it is sent, so the payer hears
/// `unknown` and a query answers `origRespCode=05`; once the hold is over (here the merchant's
/// sandbox clock is moved past it) the payment is sent, the order is paid, the bank's ledger
/// moves and the merchant is notified.
async fn the_pending_trigger_card_leaves_a_trade_pending_then_paid(backend: Backend) {
    use std::time::Duration;

    use cloudpass::sandbox::{PENDING_CARD, PENDING_SECONDS};
    use cloudpass_store::GatewayStore;

    let app = TestApp::start_with(backend, |config| {
        config.gateway.notify.poll = Duration::from_millis(50);
    })
    .await;
    let store = app.running.tsp.store().clone();
    let start = balance(&app, PENDING_CARD).await;
    let form = consume_form("PENDING00001", "4321");
    let txn_time = form.get("txnTime").unwrap().to_owned();
    let answer = post_signed(&app, "/gateway/api/appTransReq.do", form).await;
    let tn = answer.get("tn").unwrap().to_owned();
    let (status, paid) = pay(
        &app,
        &tn,
        json!({"card_number": PENDING_CARD, "sms_code": "111111", "pin": "111101"}),
    )
    .await;
    assert_eq!(
        (status, paid["status"].as_str(), paid["resp_code"].as_str()),
        (200, Some("unknown"), Some("05")),
        "{paid}"
    );
    let query_pending = || {
        post_signed(
            &app,
            "/gateway/api/queryTrans.do",
            query_form("PENDING00001", &txn_time),
        )
    };
    let pending = query_pending().await;
    assert_eq!(
        (pending.get("respCode"), pending.get("origRespCode")),
        (Some("00"), Some("05")),
        "{pending:?}"
    );
    assert_eq!(balance(&app, PENDING_CARD).await, start, "nothing sent yet");

    let (status, body) = advance_sandbox_clock(&app, PENDING_SECONDS + 1).await;
    assert_eq!(status, 200, "{body}");
    let settled = settled(&app, &tn)
        .await
        .expect("the held payment is sent once its time comes");
    assert_eq!(settled.status, "paid", "{settled:?}");
    let done = query_pending().await;
    assert_eq!(
        (done.get("respCode"), done.get("origRespCode")),
        (Some("00"), Some("00")),
        "{done:?}"
    );
    assert_eq!(balance(&app, PENDING_CARD).await, start - 4321);
    assert_eq!(store.notifications_of(&tn).await.unwrap().len(), 1);
    app.stop().await;
}

/// A platform's request for a sub-merchant (accessType 2) and an acquirer's for its merchant
/// (accessType 1): the notifications of their trades say the same accessType, bizType and
/// merchant fields, so the merchant can route them as it routed the request.
async fn notifications_repeat_the_access_of_the_request(backend: Backend) {
    use cloudpass_store::GatewayStore;

    let app = TestApp::start(backend).await;
    let store = app.running.tsp.store().clone();
    let platform = [
        ("accessType", "2"),
        ("subMerId", "SUBSHOP0001"),
        ("subMerName", "小店 & Co"),
        ("subMerAbbr", "小店"),
    ];
    let acquirer = [
        ("accessType", "1"),
        ("acqInsCode", "48022000"),
        ("merCatCode", "5812"),
        ("merName", "茶餐厅"),
        ("merAbbr", "茶"),
    ];
    for (order_id, fields, biz_type) in [
        ("ACCESS000002", &platform[..], "000201"),
        ("ACCESS000001", &acquirer[..], "000202"),
    ] {
        let mut form = consume_form(order_id, "150");
        form.set("bizType", biz_type);
        for (key, value) in fields {
            form.set(key, *value);
        }
        let answer = post_signed(&app, "/gateway/api/appTransReq.do", form).await;
        assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
        let tn = answer.get("tn").unwrap().to_owned();
        let (_, paid) = pay(
            &app,
            &tn,
            json!({"card_number": CMB_DEBIT, "sms_code": "111111", "pin": "111101"}),
        )
        .await;
        assert_eq!(paid["status"], "paid", "{paid}");
        let notifications = store.notifications_of(&tn).await.unwrap();
        assert_eq!(notifications.len(), 1);
        let sent =
            cloudpass_upacp::Form::parse_urlencoded(notifications[0].body.as_bytes()).unwrap();
        assert_eq!(sent.get("bizType"), Some(biz_type));
        for (key, value) in fields {
            assert_eq!(sent.get(key), Some(*value), "{key}");
        }
        support::upacp::verify_from_platform(&app.data_dir, &sent);
    }
    app.stop().await;
}

/// The back consume of a card without a published SMS code: txnType 77 texts a code for the
/// order to come (its orderId and txnTime), and the consume of that order takes it. Without
/// it the consume is refused 71; asked again at once, 77 is refused 38.
async fn a_back_consume_of_a_card_without_a_published_code_sends_one_first(backend: Backend) {
    use base64::Engine;
    use cloudpass_crypto::upacp::encrypt_base64;

    let app = TestApp::start(backend).await;
    let (reissued, phone) = reissued_card(&app).await;
    let start = balance(&app, reissued).await;
    let certificate = cloudpass_upacp::Certificate::from_pem(
        &std::fs::read_to_string(app.data_dir.join("upacp").join("encrypt.pem")).unwrap(),
    )
    .unwrap();
    let public = certificate.public_key_info_der().unwrap();
    let seal = |text: &[u8]| encrypt_base64(&public, text).unwrap();
    let pin = cloudpass_crypto::Pin::parse("123456").unwrap();
    let pin_block = seal(
        cloudpass_crypto::pin::format0_encode(&pin, reissued)
            .unwrap()
            .as_slice(),
    );
    let customer_info = |code: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(format!("{{smsCode={code}&pin={pin_block}}}"))
    };
    let card_data = |mut form: cloudpass_upacp::Form| {
        form.set("bizType", "000301")
            .set("accNo", seal(reissued.as_bytes()))
            .set("encryptCertId", certificate.cert_id());
        form
    };
    let as_sms_request = |consume: &cloudpass_upacp::Form| {
        let mut form = consume.clone();
        form.set("txnType", "77").set("txnSubType", "02");
        form
    };
    let back = "/gateway/api/backTransReq.do";

    // No code asked for: 71.
    let mut consume = card_data(consume_form("BACKSMS00001", "990"));
    consume.set("customerInfo", customer_info("111111"));
    let answer = post_signed(&app, back, consume).await;
    assert_eq!(answer.get("respCode"), Some("71"), "{answer:?}");

    // 77 for the order, then its consume with the code from the card's phone.
    let consume = card_data(consume_form("BACKSMS00002", "990"));
    let answer = post_signed(&app, back, as_sms_request(&consume)).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    assert_eq!(answer.get("txnType"), Some("77"));
    let code = app.latest_otp(phone).await;
    let again = post_signed(&app, back, as_sms_request(&consume)).await;
    assert_eq!(again.get("respCode"), Some("38"), "{again:?}");
    let mut consume = consume;
    consume.set("customerInfo", customer_info(&code));
    let answer = post_signed(&app, back, consume).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    assert_eq!(balance(&app, reissued).await, start - 990);

    // The independent Python merchant, from docs/upacp.md: the JSON API's SMS step, then 77
    // and the back consume, each code read from the sandbox SMS inbox.
    let result = merchant(&app, "sms");
    assert_eq!(result["sent"]["sent_to"], phone_masked(phone), "{result}");
    assert_eq!(result["paid"]["status"], "paid", "{result}");
    assert_eq!(result["sms_77"]["respCode"], "00", "{result}");
    assert_eq!(result["back_consume"]["respCode"], "00", "{result}");
    assert_eq!(balance(&app, reissued).await, start - 990 - 321 - 654);
    app.stop().await;
}

fn phone_masked(phone: &str) -> String {
    format!("{}****{}", &phone[..3], &phone[phone.len() - 4..])
}

/// The sandbox merchant's token requestor id in these tests.
const TR_ID: &str = "62000000001";

/// Signs and seals for token payment (bizType 000902) as the sandbox merchant.
struct TokenPay {
    certificate: cloudpass_upacp::Certificate,
    public: Vec<u8>,
}

impl TokenPay {
    fn new(app: &TestApp) -> TokenPay {
        let certificate = cloudpass_upacp::Certificate::from_pem(
            &std::fs::read_to_string(app.data_dir.join("upacp").join("encrypt.pem")).unwrap(),
        )
        .unwrap();
        let public = certificate.public_key_info_der().unwrap();
        TokenPay {
            certificate,
            public,
        }
    }

    fn seal(&self, text: &[u8]) -> String {
        cloudpass_crypto::upacp::encrypt_base64(&self.public, text).unwrap()
    }

    fn customer_info(inner: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{{{inner}}}"))
    }

    /// txnType 79 (or 77/00 with `sub_type` "00" and `txn_type` "77") for `card`.
    fn opening(
        &self,
        txn_type: &str,
        order_id: &str,
        card: &str,
        info: Option<&str>,
    ) -> cloudpass_upacp::Form {
        let mut form = consume_form(order_id, "1");
        form.remove("txnAmt");
        form.remove("currencyCode");
        form.remove("backUrl");
        form.set("txnType", txn_type)
            .set("txnSubType", "00")
            .set("bizType", "000902")
            .set("accNo", self.seal(card.as_bytes()))
            .set("encryptCertId", self.certificate.cert_id())
            .set("tokenPayData", format!("{{trId={TR_ID}&tokenType=01}}"));
        if let Some(info) = info {
            form.set("customerInfo", Self::customer_info(info));
        }
        form
    }

    /// A request of `txn_type` (01 a consume, 74 a deletion) naming the card by `token`.
    fn consume(
        &self,
        txn_type: &str,
        order_id: &str,
        amount: &str,
        token: &str,
        tr_id: &str,
    ) -> cloudpass_upacp::Form {
        let mut form = consume_form(order_id, amount);
        form.set("txnType", txn_type)
            .set("bizType", "000902")
            .set("encryptCertId", self.certificate.cert_id())
            .set("tokenPayData", format!("{{token={token}&trId={tr_id}}}"));
        form
    }

    fn pin_block(&self, pin: &str, account: &str) -> String {
        let pin = cloudpass_crypto::Pin::parse(pin).unwrap();
        self.seal(
            cloudpass_crypto::pin::format0_encode(&pin, account)
                .unwrap()
                .as_slice(),
        )
    }
}

/// The token of an opening's answer.
fn token_of(answer: &cloudpass_upacp::Form) -> String {
    let data = answer
        .get("tokenPayData")
        .unwrap_or_else(|| panic!("{answer:?}"));
    let inner = data
        .strip_prefix('{')
        .and_then(|d| d.strip_suffix('}'))
        .unwrap();
    let fields = cloudpass_upacp::Form::parse_raw(inner).unwrap();
    assert_eq!(fields.get("trId"), Some(TR_ID));
    assert_eq!(fields.get("tokenType"), Some("01"));
    fields.get("token").unwrap().to_owned()
}

/// Token payment with published test cards: a credit card is opened with its SMS code and
/// expiry and gets a token (the same request again gets the same one; another request under
/// the same names is refused 12); the token pays with the CVN2 alone, the ledger moves, and
/// the card is kept sealed, never in clear. A debit card's token pays with a PIN block formed
/// with the token. A wrong trId or another's token is refused 61; a deleted token 63, and
/// deleting it again is refused 63 too.
async fn a_card_opened_for_token_payment_is_paid_by_its_token_until_deleted(backend: Backend) {
    use cloudpass_store::CardTokenStore;

    let app = TestApp::start(backend).await;
    let store = app.running.tsp.store().clone();
    let kit = TokenPay::new(&app);
    let back = "/gateway/api/backTransReq.do";
    let credit_start = balance(&app, HUAXIA_CREDIT).await;
    let debit_start = balance(&app, CMB_DEBIT).await;

    // A wrong SMS code opens nothing.
    let wrong = kit.opening("79", "OPENTOKEN001", HUAXIA_CREDIT, Some("smsCode=000000"));
    let answer = post_signed(&app, back, wrong).await;
    assert_eq!(answer.get("respCode"), Some("71"), "{answer:?}");
    assert_eq!(answer.get("tokenPayData"), None);

    let sealed_expiry = kit.seal(b"expired=2912");
    let opening = kit.opening(
        "79",
        "OPENTOKEN002",
        HUAXIA_CREDIT,
        Some(&format!(
            "smsCode=111111&customerNm=张三&encryptedInfo={sealed_expiry}"
        )),
    );
    let answer = post_signed(&app, back, opening.clone()).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    assert_eq!(answer.get("accNo"), Some("622638******0095"));
    assert_eq!(answer.get("payCardType"), Some("02"));
    support::upacp::verify_from_platform(&app.data_dir, &answer);
    let token = token_of(&answer);
    assert_eq!(token.len(), 19);
    assert!(cloudpass_core::luhn_valid(token.as_bytes()));
    let row = store.card_token(&token).await.unwrap().unwrap();
    assert!(
        !row.sealed_card
            .windows(HUAXIA_CREDIT.len())
            .any(|w| w == HUAXIA_CREDIT.as_bytes()),
        "the card is sealed"
    );
    // The same request again: the same token. Another under the same names: 12.
    let again = post_signed(&app, back, opening.clone()).await;
    assert_eq!(token_of(&again), token);
    let mut other = opening.clone();
    other.set("accNo", kit.seal(CMB_DEBIT.as_bytes()));
    let answer = post_signed(&app, back, other).await;
    assert_eq!(answer.get("respCode"), Some("12"), "{answer:?}");

    // The token pays: the CVN2 in customerInfo, the expiry kept with the token.
    let mut consume = kit.consume("01", "TOKENPAY0001", "2300", &token, TR_ID);
    let cvn2 = kit.seal(b"cvn2=248");
    consume.set(
        "customerInfo",
        TokenPay::customer_info(&format!("smsCode=111111&encryptedInfo={cvn2}")),
    );
    let answer = post_signed(&app, back, consume.clone()).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    assert!(answer.get("queryId").is_some());
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, credit_start - 2300);

    // Only with the trId it was opened with.
    let mut foreign = kit.consume("01", "TOKENPAY0002", "100", &token, "62000000002");
    foreign.set(
        "customerInfo",
        consume.get("customerInfo").unwrap().to_owned(),
    );
    let answer = post_signed(&app, back, foreign).await;
    assert_eq!(answer.get("respCode"), Some("61"), "{answer:?}");
    assert!(!answer.get("respMsg").unwrap_or("").contains(&token));
    // The card number and a token together: 10.
    let mut both = consume.clone();
    both.set("orderId", "TOKENPAY0003")
        .set("accNo", kit.seal(HUAXIA_CREDIT.as_bytes()));
    let answer = post_signed(&app, back, both).await;
    assert_eq!(answer.get("respCode"), Some("10"), "{answer:?}");

    // A debit card's token pays with a PIN block formed with the token.
    let opening = kit.opening("79", "OPENTOKEN003", CMB_DEBIT, Some("smsCode=111111"));
    let answer = post_signed(&app, back, opening).await;
    assert_eq!(answer.get("payCardType"), Some("01"), "{answer:?}");
    let debit_token = token_of(&answer);
    assert_ne!(debit_token, token);
    let mut consume = kit.consume("01", "TOKENPAY0004", "1200", &debit_token, TR_ID);
    let info = format!(
        "smsCode=111111&pin={}",
        kit.pin_block("111101", &debit_token)
    );
    consume.set("customerInfo", TokenPay::customer_info(&info));
    let answer = post_signed(&app, back, consume).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    assert_eq!(balance(&app, CMB_DEBIT).await, debit_start - 1200);

    // Deleted: refused 63 from then on, and nothing moves.
    let mut delete = kit.consume("74", "DELTOKEN0001", "1", &token, TR_ID);
    delete.set("txnSubType", "01");
    for key in ["txnAmt", "currencyCode", "backUrl", "encryptCertId"] {
        delete.remove(key);
    }
    let answer = post_signed(&app, back, delete.clone()).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    let mut again = delete;
    again.set("orderId", "DELTOKEN0002");
    let answer = post_signed(&app, back, again).await;
    assert_eq!(answer.get("respCode"), Some("63"), "{answer:?}");
    let mut after = kit.consume("01", "TOKENPAY0005", "100", &token, TR_ID);
    after.set(
        "customerInfo",
        TokenPay::customer_info(&format!("smsCode=111111&encryptedInfo={cvn2}")),
    );
    let answer = post_signed(&app, back, after).await;
    assert_eq!(answer.get("respCode"), Some("63"), "{answer:?}");
    assert_eq!(balance(&app, HUAXIA_CREDIT).await, credit_start - 2300);

    // The independent Python merchant, written from docs/upacp.md, does the same.
    let result = merchant(&app, "token");
    for step in [
        "debit_open",
        "debit_pay",
        "credit_open",
        "credit_pay",
        "delete",
    ] {
        assert_eq!(result[step]["respCode"], "00", "{step}: {result}");
    }
    assert_eq!(result["credit_open"]["payCardType"], "02", "{result}");
    assert_eq!(result["after_delete"]["respCode"], "63", "{result}");
    assert_eq!(balance(&app, CMB_DEBIT).await, debit_start - 1200 - 701);
    assert_eq!(
        balance(&app, HUAXIA_CREDIT).await,
        credit_start - 2300 - 702
    );
    app.stop().await;
}

/// A card without a published SMS code: 77/00 texts the opening's code, 79 opens it; then
/// 77/02 names the card by its token and texts the payment's code, which the consume takes.
async fn a_token_of_a_card_without_a_published_code_is_opened_and_paid_with_texted_codes(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let (reissued, phone) = reissued_card(&app).await;
    let start = balance(&app, reissued).await;
    let kit = TokenPay::new(&app);
    let back = "/gateway/api/backTransReq.do";

    let sms = kit.opening("77", "OPENSMS00001", reissued, None);
    let answer = post_signed(&app, back, sms.clone()).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    let code = app.latest_otp(phone).await;
    let mut opening = sms;
    opening.set("txnType", "79").set(
        "customerInfo",
        TokenPay::customer_info(&format!("smsCode={code}")),
    );
    let answer = post_signed(&app, back, opening.clone()).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    let token = token_of(&answer);
    // The code was used: the same opening again is its repeat, another is refused 71.
    let again = post_signed(&app, back, opening.clone()).await;
    assert_eq!(again.get("respCode"), Some("00"), "{again:?}");
    assert_eq!(token_of(&again), token, "a repeat gets the same token");
    let mut other = opening;
    other.set("orderId", "OPENSMS00002");
    let answer = post_signed(&app, back, other).await;
    assert_eq!(answer.get("respCode"), Some("71"), "{answer:?}");

    // The SMS request names the order the consume will make: same orderId and txnTime.
    let mut consume = kit.consume("01", "TOKENSMS0001", "880", &token, TR_ID);
    let mut sms = consume.clone();
    sms.set("txnType", "77").set("txnSubType", "02");
    let answer = post_signed(&app, back, sms).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    let code = app.latest_otp(phone).await;
    let info = format!("smsCode={code}&pin={}", kit.pin_block("123456", &token));
    consume.set("customerInfo", TokenPay::customer_info(&info));
    let answer = post_signed(&app, back, consume).await;
    assert_eq!(answer.get("respCode"), Some("00"), "{answer:?}");
    assert_eq!(balance(&app, reissued).await, start - 880);
    app.stop().await;
}

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
use support::network::balance;

on_both_backends!(
    a_merchant_issues_a_tn_it_is_paid_and_the_query_says_so,
    malformed_and_foreign_requests_get_their_resp_codes,
    refunds_and_undos_return_money_once_and_never_more,
    notifications_are_signed_and_resent_until_acknowledged,
    unpaid_orders_close_at_their_pay_timeout,
    the_reconciliation_file_agrees_with_the_ledger,
    the_payment_control_refuses_clearly_and_counts_tries,
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

    // The right PIN pays; a second payment of the same TN is refused.
    let tn = issue(&app, "RUST000000003", "300").await;
    let (_, body) = pay(&app, &tn, card(json!({"pin": "111101"}))).await;
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

async fn notifications_are_signed_and_resent_until_acknowledged(backend: Backend) {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let app = TestApp::start_with(backend, |config| {
        config.gateway.notify.retry_delays = vec![Duration::from_millis(400); 4];
        config.gateway.notify.poll = Duration::from_millis(50);
    })
    .await;
    let backend_url = receiver().await;
    let form = consume_form("NOTIFY0000001", "880").with("backUrl", backend_url.url.clone());
    let answer = post_signed(&app, "/gateway/api/appTransReq.do", form).await;
    let tn = answer.get("tn").unwrap().to_owned();
    let (_, paid) = pay(
        &app,
        &tn,
        json!({"card_number": CMB_DEBIT, "sms_code": "123456", "pin": "111101"}),
    )
    .await;
    assert_eq!(paid["status"], "paid", "{paid}");
    // The merchant fails twice, then acknowledges: three sends, then no more.
    for _ in 0..100 {
        if backend_url.received.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    backend_url.status.store(200, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
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
    app.stop().await;
}

async fn unpaid_orders_close_at_their_pay_timeout(backend: Backend) {
    use std::time::Duration;
    let app = TestApp::start_with(backend, |config| {
        config.gateway.default_pay_timeout_seconds = 1;
        config.gateway.notify.poll = Duration::from_millis(50);
    })
    .await;
    let form = consume_form("TIMEOUT000001", "100");
    let txn_time = form.get("txnTime").unwrap().to_owned();
    let answer = post_signed(&app, "/gateway/api/appTransReq.do", form).await;
    let tn = answer.get("tn").unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
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

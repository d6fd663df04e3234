//! A crash between an order's change and its notification: the real `cloudpass serve` pays a
//! TN, its notifier starts posting the notification to the merchant's `backUrl` — which
//! holds the request without answering — and the process is killed (SIGKILL) right then.
//! Restarted on the same data directory, it sends the notification again, because the
//! notification was written in the same transaction as the payment and never marked
//! delivered; the merchant receives it, signed, and the query says paid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use cloudpass_upacp::Form;
use serde_json::json;
use support::upacp::Merchant;

/// How long the test waits for a process or a notification.
const PATIENCE: Duration = Duration::from_secs(60);

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Ports {
    http: SocketAddr,
    iso: SocketAddr,
    issuer: SocketAddr,
}

fn serve(data_dir: &Path, ports: &Ports) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cloudpass"))
        .args(["serve", "--listen", &ports.http.to_string()])
        .args(["--iso8583-listen", &ports.iso.to_string()])
        .args(["--issuer-iso8583-listen", &ports.issuer.to_string()])
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("CLOUDPASS_MASTER_KEY")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The merchant's `backUrl`: holds every request unanswered until `answering`, then answers
/// 200 and keeps the bodies.
#[derive(Default)]
struct Receiver {
    answering: AtomicBool,
    arrived: AtomicUsize,
    bodies: std::sync::Mutex<Vec<String>>,
}

async fn receive(State(receiver): State<Arc<Receiver>>, body: String) -> &'static str {
    receiver.arrived.fetch_add(1, Ordering::SeqCst);
    if !receiver.answering.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    receiver.bodies.lock().unwrap().push(body);
    "ok"
}

async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{what} did not happen in {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_survives_a_kill_between_the_payment_and_its_delivery() {
    cloudpass_http::tls::install_provider();
    let data_dir =
        std::env::temp_dir().join(format!("cloudpass-crash-{}", support::app::unique_suffix()));
    let ports = Ports {
        http: free_port(),
        iso: free_port(),
        issuer: free_port(),
    };
    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let back_url = format!("http://{}/notify", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route("/notify", axum::routing::post(receive))
        .with_state(Arc::clone(&receiver));
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let mut platform = serve(&data_dir, &ports);
    let base = format!("http://{}", ports.http);
    let http = reqwest::Client::new();
    until("serve starting", async || {
        http.get(format!("{base}/gateway/pay/000000000000000000000"))
            .send()
            .await
            .ok()
    })
    .await;
    let merchant = Merchant::sandbox(&base, &data_dir);
    let order_id = format!(
        "CRASH{:0>10}",
        support::app::unique_suffix().replace('-', "")
    );
    let mut consume = merchant.consume(&order_id, 4200);
    consume.set("backUrl", back_url);
    let txn_time = consume.get("txnTime").unwrap().to_owned();
    let issued = merchant.post("/gateway/api/appTransReq.do", consume).await;
    let tn = issued.get("tn").unwrap().to_owned();
    let card = json!({"card_number": "6226090000000048", "sms_code": "111111", "pin": "111101"});
    // The gateway's terminal signs on just after the port opens: retry while it is not ready.
    let paid: serde_json::Value = until("the payment", async || {
        let response = http
            .post(format!("{base}/gateway/pay/{tn}"))
            .json(&card)
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())?;
        response.json().await.ok()
    })
    .await;
    assert_eq!(paid["status"], "paid", "{paid}");

    // The notification is on its way and held: kill the platform now.
    until("the notification's first send", async || {
        (receiver.arrived.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    platform.kill().unwrap();
    platform.wait().unwrap();
    assert!(receiver.bodies.lock().unwrap().is_empty());

    receiver.answering.store(true, Ordering::SeqCst);
    let mut platform = serve(&data_dir, &ports);
    let body = until("the notification after the restart", async || {
        receiver.bodies.lock().unwrap().first().cloned()
    })
    .await;
    let notification = Form::parse_urlencoded(body.as_bytes()).unwrap();
    support::upacp::verify_from_platform(&data_dir, &notification);
    assert_eq!(notification.get("orderId"), Some(order_id.as_str()));
    assert_eq!(notification.get("respCode"), Some("00"));
    assert_eq!(notification.get("queryId"), paid["query_id"].as_str());

    let query = merchant
        .post(
            "/gateway/api/queryTrans.do",
            merchant.query(&order_id, &txn_time),
        )
        .await;
    assert_eq!(
        (query.get("respCode"), query.get("origRespCode")),
        (Some("00"), Some("00")),
        "{query:?}"
    );
    platform.kill().unwrap();
    platform.wait().unwrap();
    server.abort();
    let _ = std::fs::remove_dir_all(&data_dir);
}

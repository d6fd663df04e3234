//! `cloudpass pos` as a new user runs it against a running network: the first tap
//! provisions the phone and is approved; after the token is suspended through the token
//! service API the next tap is declined; an in-app purchase over the online limit asks for
//! the password. The real executable, the real app on random ports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Output};

use serde_json::json;
use support::app::*;
use support::network::balance;

async fn pos(app: &TestApp, args: &[&str]) -> Output {
    let mut full: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    full.extend([
        "--switch".to_owned(),
        app.running.switch_addr.to_string(),
        "--data-dir".to_owned(),
        app.data_dir.display().to_string(),
    ]);
    if args.get(1) != Some(&"upload") {
        full.extend(["--api".to_owned(), app.base.clone()]);
    }
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_cloudpass"))
            .args(&full)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tap_from_the_command_line_then_a_suspension() {
    let app = TestApp::start(Backend::Sqlite).await;
    let start = balance(&app, CMB_DEBIT).await;

    let first = pos(
        &app,
        &["pos", "tap", "--device", "demo", "--amount", "12.50"],
    )
    .await;
    let said = text(&first);
    assert!(first.status.success(), "{said}");
    assert!(said.contains("provisioned card …0048 onto demo"), "{said}");
    assert!(said.contains("APPROVED: 00 (approved)"), "{said}");
    assert!(
        !said.contains(CMB_DEBIT),
        "the card number is never printed: {said}"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 1250);

    let over = pos(
        &app,
        &["pos", "tap", "--device", "demo", "--amount", "1500"],
    )
    .await;
    let said = text(&over);
    assert!(said.contains("the terminal asks for the PIN"), "{said}");
    assert!(said.contains("DECLINED: 65"), "{said}");
    let with_pin = pos(
        &app,
        &[
            "pos", "tap", "--device", "demo", "--amount", "1500", "--pin", "111101",
        ],
    )
    .await;
    assert!(text(&with_pin).contains("APPROVED"), "{}", text(&with_pin));

    let in_app = pos(
        &app,
        &["pos", "in-app", "--device", "demo", "--amount", "800"],
    )
    .await;
    assert!(!in_app.status.success());
    assert!(
        text(&in_app).contains("asks for the payment password"),
        "{}",
        text(&in_app)
    );

    // UPCash: load 100.00 online, spend 30.00 offline, upload the terminal's batch.
    let load = pos(
        &app,
        &[
            "pos",
            "ecash-load",
            "--device",
            "demo",
            "--amount",
            "100",
            "--password",
            "111101",
        ],
    )
    .await;
    let said = text(&load);
    assert!(said.contains("APPROVED"), "{said}");
    assert!(said.contains("e-cash balance is now 100.00 CNY"), "{said}");
    let offline = pos(
        &app,
        &["pos", "offline", "--device", "demo", "--amount", "30"],
    )
    .await;
    let said = text(&offline);
    assert!(said.contains("APPROVED OFFLINE"), "{said}");
    assert!(said.contains("balance now 70.00 CNY"), "{said}");
    let issuer = &app.bank();
    assert_eq!(issuer.ecash_balance(CMB_DEBIT).await.unwrap(), 10_000);
    let upload = pos(&app, &["pos", "upload"]).await;
    let said = text(&upload);
    assert!(said.contains("30.00 CNY  cleared (00)"), "{said}");
    assert!(said.contains("0 spend(s) left"), "{said}");
    for _ in 0..100 {
        if issuer.ecash_balance(CMB_DEBIT).await.unwrap() == 7_000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(issuer.ecash_balance(CMB_DEBIT).await.unwrap(), 7_000);
    let again = pos(&app, &["pos", "upload"]).await;
    assert!(
        text(&again).contains("no offline spends"),
        "{}",
        text(&again)
    );

    // Suspend the token through the token service API, as the wallet would.
    let phone: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(app.data_dir.join("phones/demo.json")).unwrap(),
    )
    .unwrap();
    let token_id = phone["token_id"].as_str().unwrap();
    let (status, body) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{token_id}/suspend"),
            json!({"reason": "LOST"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let declined = pos(
        &app,
        &["pos", "tap", "--device", "demo", "--amount", "12.50"],
    )
    .await;
    assert!(
        text(&declined).contains("DECLINED: 57"),
        "{}",
        text(&declined)
    );
    assert_eq!(
        balance(&app, CMB_DEBIT).await,
        start - 1250 - 150_000 - 10_000
    );

    // Nobody listening: a clear error.
    let nowhere = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_cloudpass"))
            .args([
                "pos",
                "tap",
                "--amount",
                "1",
                "--switch",
                "127.0.0.1:9",
                "--api",
                "http://127.0.0.1:9",
                "--data-dir",
                "/nonexistent-cloudpass",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!nowhere.status.success());
    assert!(
        text(&nowhere).contains("is `cloudpass serve` running?"),
        "{}",
        text(&nowhere)
    );
    app.stop().await;
}

/// `cloudpass switch` in a process of its own, reading tokens from the platform's store and
/// linked to the running bank: a tap through it approves, and a suspension made through the
/// token service (another process) is seen by the next tap (the switch's cache is set to
/// read every token afresh).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_switch_alone() {
    use std::time::Duration;
    use support::network::{Shop, phone};

    let app = TestApp::start(Backend::Sqlite).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cloudpass"))
        .args([
            "switch",
            "--listen",
            &address.to_string(),
            "--issuer",
            &app.running
                .sandbox
                .as_ref()
                .unwrap()
                .issuer_iso_addr
                .to_string(),
            "--data-dir",
            &app.data_dir.display().to_string(),
            // Every token read afresh, so the suspension below is seen at once; how stale
            // a cache may be is tested on a manual clock (cloudpass-tsp/tests/clock.rs).
            "--vault-cache-ms",
            "0",
        ])
        .env_remove("CLOUDPASS_MASTER_KEY")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut phone = phone(&app, APPLE, "iphone", "handset_se", CMB_DEBIT).await;
    let start = balance(&app, CMB_DEBIT).await;
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shop = Shop::open_at(
        &app,
        address,
        "CPPOS012",
        cloudpass::sandbox::MERCHANT_CATEGORY,
        Duration::from_secs(5),
    )
    .await;
    let approved = shop.tap(&mut phone, "33.00", None, false).await;
    assert_eq!(
        approved.response_code.as_deref(),
        Some("00"),
        "{approved:?}"
    );
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 3300);
    let (status, _) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{}/suspend", phone.token_id()),
            json!({"reason": "LOST"}),
        )
        .await;
    assert_eq!(status, 200);
    let declined = shop.tap(&mut phone, "33.00", None, false).await;
    assert_eq!(
        declined.response_code.as_deref(),
        Some("57"),
        "{declined:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    app.stop().await;
}

/// `cloudpass issuer-sim` alone: its ISO 8583 port answers, and it publishes its zone PIN key
/// for a switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_alone() {
    use std::time::Duration;

    use cloudpass_iso8583::link::Link;
    use cloudpass_iso8583::{Message, Mti};

    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (iso, http) = (free(), free());
    let dir = std::env::temp_dir().join(format!("cloudpass-bank-{}", std::process::id()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cloudpass"))
        .args([
            "issuer-sim",
            "--iso8583-listen",
            &iso.to_string(),
            "--listen",
            &http.to_string(),
            "--data-dir",
            &dir.display().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let link = Link::start(iso, Duration::from_secs(5), stopped);
    for _ in 0..300 {
        if link.is_up().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut echo = Message::new(Mti::NETWORK_REQUEST);
    echo.set_text(7, "1125080000")
        .set_text(11, "000001")
        .set_text(32, "00010000")
        .set_text(70, "301");
    let answer = link.request(&echo).await.expect("the bank answers");
    assert_eq!(answer.mti(), Mti::NETWORK_RESPONSE);
    assert_eq!(answer.get_str(39), Some("00"));
    let published = std::fs::read_to_string(dir.join("zone-pin-key.txt")).unwrap();
    assert_eq!(published.split_whitespace().count(), 2, "{published}");
    // The SMS inbox is the sandbox operator's: refused without its key, open with it.
    let inbox = format!("http://{http}/sim/issuer/v1/sms?phone=18100000000");
    let anonymous = reqwest::get(&inbox).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let key = std::fs::read_to_string(dir.join(cloudpass::app::SANDBOX_OPERATOR_KEY_FILE)).unwrap();
    let sms = reqwest::Client::new()
        .get(&inbox)
        .bearer_auth(key.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(sms.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

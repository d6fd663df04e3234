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
        "--api".to_owned(),
        app.base.clone(),
        "--data-dir".to_owned(),
        app.data_dir.display().to_string(),
    ]);
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
    assert_eq!(balance(&app, CMB_DEBIT).await, start - 1250 - 150_000);

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

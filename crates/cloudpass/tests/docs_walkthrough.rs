//! docs/tsp-api.md promises its walkthrough can be pasted as it is. This test pastes it:
//! every `sh` block but the one that starts the server runs in bash against a fresh
//! instance, and must succeed and show what the page says it shows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::app::{Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tsp_walkthrough_runs_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let page = std::fs::read_to_string(root.join("docs/tsp-api.md")).unwrap();
    let mut script = String::from("set -euo pipefail\n");
    for block in page.split("```sh\n").skip(1) {
        let block = block.split("```").next().unwrap();
        if block.contains("cargo run --release -- serve") {
            continue;
        }
        script.push_str(block);
    }
    let app = TestApp::start(Backend::Sqlite).await;
    let output = tokio::task::spawn_blocking({
        let base = app.base.clone();
        let data_dir = app.data_dir.clone();
        move || {
            Command::new("bash")
                .arg("-c")
                .arg(&script)
                .env("B", base)
                .env("CLOUDPASS", env!("CARGO_BIN_EXE_cloudpass"))
                .env("DATA_DIR", data_dir)
                .current_dir(root)
                .output()
                .expect("bash runs")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walkthrough failed:\n{stdout}\n{stderr}"
    );
    for expected in [
        "\"decision\":\"green\"",
        "\"mk_ac_check_value\"",
        "the watch cannot open the iPhone's profile",
        "TOKEN_ALREADY_EXISTS",
        "\"decision\":\"yellow\"",
        "is your code to add the card ending 0095",
        "\"holds\":[\"device_lost\"]",
        "the token was suspended by the bank; only the bank can resume it",
        "\"card_last4\":\"0055\"",
        "PAN_UPDATED",
        "\"signature_valid\":true",
    ] {
        assert!(
            stdout.contains(expected),
            "the walkthrough's output lacks {expected:?}:\n{stdout}"
        );
    }
    // Three tokens, one PAR.
    let pars: std::collections::HashSet<&str> = stdout
        .lines()
        .filter_map(|line| line.split("\"par\":\"").nth(1))
        .map(|rest| &rest[..29])
        .collect();
    assert_eq!(pars.len(), 1, "{stdout}");
    app.stop().await;
}

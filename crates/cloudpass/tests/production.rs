//! A production start (`serve --no-sandbox`): the platform alone, with its parties from a
//! file, the key ceremony's files and the master key kept outside the data directory. No
//! sandbox endpoint answers, no sandbox key opens anything, the file's wallet works and the
//! file's terminal signs on; a file that names an http webhook or an acquirer without MACs,
//! or keys kept beside the data, is refused. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloudpass::app::{self, AppConfig};
use cloudpass::master_key::{FileKey, KeyProvider};
use cloudpass_core::hex;
use cloudpass_crypto::primitives::{tdes_check_value, tdes_encrypt};
use cloudpass_crypto::{MasterKey, OsRandom};
use cloudpass_iso8583::{Message, Mti};
use serde_json::json;
use support::app::*;
use support::pki::Pki;

on_both_backends!(the_platform_runs_alone_with_its_parties);

const WALLET_KEY: &str = "sk_live_wallet_0123456789abcdef";

/// The operator's side: a directory of key files, a master key and a parties file, all
/// outside the data directory.
fn operator_files(root: &Path, webhook: &str, mac_required: bool) -> (PathBuf, PathBuf, PathBuf) {
    let keys = root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let zone_master = [0x1Fu8; 16];
    let zone_pin = [0x3Du8; 16];
    let mut encrypted = Vec::new();
    for half in zone_pin.chunks(8) {
        encrypted.extend_from_slice(&tdes_encrypt(&zone_master, half.try_into().unwrap()));
    }
    std::fs::write(keys.join("zone-master.key"), hex::encode(&zone_master)).unwrap();
    std::fs::write(
        keys.join("zone-pin-key.txt"),
        format!(
            "{} {}\n",
            hex::encode(&encrypted),
            hex::encode(&tdes_check_value(&zone_pin))
        ),
    )
    .unwrap();
    std::fs::write(keys.join("terminal-master.key"), hex::encode(&[0x5Bu8; 16])).unwrap();
    let master = root.join("master.key");
    std::fs::write(&master, MasterKey::generate(&OsRandom).to_hex()).unwrap();
    std::fs::write(root.join("bank.secret"), "whsec_live_bank_0123456789").unwrap();
    std::fs::write(root.join("wallet.secret"), "whsec_live_wallet_0123456789").unwrap();
    let sha = |key: &str| {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(key.as_bytes()))
    };
    let parties = json!({
        "issuers": [{
            "id": "iss_live", "name": "Live Bank", "api_url": "https://bank.example/issuer/v1",
            "api_key_sha256": sha("sk_live_bank_0123456789abcdef"), "webhook_url": webhook,
            "secret_file": root.join("bank.secret"),
            "card_bins": [{"prefix": "622609", "product": "debit"}],
            "token_bins": [{"prefix": "623118", "product": "debit"}],
            "products": [{"product": "debit", "currency": 156, "contactless_no_pin_limit": "1000.00", "online_no_pin_limit": "500.00"}]
        }],
        "token_requestors": [{
            "id": "40010039999", "name": "Live Wallet", "wallet": "live",
            "api_key_sha256": sha(WALLET_KEY), "webhook_url": "https://wallet.example/hooks",
            "secret_file": root.join("wallet.secret")
        }],
        "acquirers": [{
            "id": "48030000", "name": "Live Acquirer", "mac_required": mac_required,
            "merchants": [{"id": "898310048993001", "terminals": ["PRODT001"]}]
        }]
    });
    let file = root.join("parties.json");
    std::fs::write(&file, parties.to_string()).unwrap();
    (keys, master, file)
}

fn production(config: &mut AppConfig, keys: PathBuf, master: PathBuf, parties: PathBuf) {
    let pki = Pki::open_or_make(&keys.join("..").join("pki"));
    config.http_tls = Some(pki.server(false));
    config.switch_tls = Some(pki.server(true));
    config.production = true;
    config.keys_dir = Some(keys);
    config.parties = Some(parties);
    config.master_key = Some(Arc::new(FileKey(master)) as Arc<dyn KeyProvider>);
    config.issuer_link_override = Some("127.0.0.1:9".parse().unwrap());
}

async fn sign_on(
    app: &TestApp,
    acquirer: &str,
    merchant: &str,
    terminal: &str,
) -> Message<'static> {
    let mut message = Message::new(Mti::NETWORK_REQUEST);
    message
        .set_text(7, "1202101500")
        .set_text(11, "000001")
        .set_text(32, acquirer)
        .set_text(41, terminal)
        .set_text(42, merchant)
        .set_text(70, "001");
    app.running.switch.handle(&message).await
}

async fn the_platform_runs_alone_with_its_parties(backend: Backend) {
    let root =
        std::env::temp_dir().join(format!("cloudpass-prod-{}-{backend:?}", std::process::id()));
    let (keys, master, parties) = operator_files(&root, "https://bank.example/hooks", true);
    let app = TestApp::start_with(backend, |config| {
        production(config, keys.clone(), master.clone(), parties.clone())
    })
    .await
    .with_http(Pki::open_or_make(&root.join("pki")).client());
    assert!(app.running.sandbox.is_none());
    assert!(app.base.starts_with("https://"));
    // No sandbox endpoint, no sandbox key.
    for path in [
        "/sim/issuer/v1/sms?phone=18100000000",
        "/sandbox/v1/webhooks",
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    let (status, _) = app.get(APPLE, "/tsp/v1/devices/iphone").await;
    assert_eq!(status, 401, "the sandbox's wallet keys open nothing");
    // The file's wallet works.
    let (status, body) = app
        .post(WALLET_KEY, "/tsp/v1/users", json!({"account_id": "carol"}))
        .await;
    assert_eq!(status, 201, "{body}");
    // The file's terminal signs on; the sandbox's terminals are strangers.
    let answer = sign_on(&app, "48030000", "898310048993001", "PRODT001").await;
    assert_eq!(answer.get_str(39), Some("00"));
    assert_eq!(answer.get(62).map(<[u8]>::len), Some(40));
    let stranger = sign_on(
        &app,
        cloudpass::sandbox::ACQUIRER_ID,
        cloudpass::sandbox::MERCHANT_ID,
        "CPPOS001",
    )
    .await;
    assert_eq!(stranger.get_str(39), Some("03"));
    // A restart loads the same file again without complaint (parties already there).
    let app = app
        .restart_with(|config| production(config, keys.clone(), master.clone(), parties.clone()))
        .await
        .with_http(Pki::open_or_make(&root.join("pki")).client());
    let (status, _) = app
        .post(WALLET_KEY, "/tsp/v1/users", json!({"account_id": "dave"}))
        .await;
    assert_eq!(status, 201);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsafe_production_files_are_refused() {
    let root = std::env::temp_dir().join(format!("cloudpass-prod-refused-{}", std::process::id()));
    let data_dir = root.join("data");
    let start = |keys: PathBuf, master: PathBuf, parties: PathBuf| {
        let mut config = AppConfig::new("127.0.0.1:0".parse().unwrap(), data_dir.clone());
        production(&mut config, keys, master, parties);
        app::start(config)
    };
    // TLS is not optional in production.
    let (keys, master, parties) =
        operator_files(&root.join("notls"), "https://bank.example/hooks", true);
    let mut config = AppConfig::new("127.0.0.1:0".parse().unwrap(), data_dir.clone());
    production(&mut config, keys, master, parties);
    config.http_tls = None;
    let refused = app::start(config).await.err().unwrap();
    assert!(refused.contains("TLS on both ports"), "{refused}");
    let (keys, master, parties) =
        operator_files(&root.join("http"), "http://bank.example/hooks", true);
    let refused = start(keys, master, parties).await.err().unwrap();
    assert!(refused.contains("https to a public host"), "{refused}");
    let (keys, master, parties) =
        operator_files(&root.join("plain"), "https://bank.example/hooks", false);
    let refused = start(keys, master, parties).await.err().unwrap();
    assert!(refused.contains("does not require MACs"), "{refused}");
    let (_, master, parties) =
        operator_files(&root.join("inside"), "https://bank.example/hooks", true);
    let (inside, _, _) = operator_files(&data_dir, "https://bank.example/hooks", true);
    let refused = start(inside, master, parties).await.err().unwrap();
    assert!(refused.contains("outside the data directory"), "{refused}");
    let _ = std::fs::remove_dir_all(&root);
}

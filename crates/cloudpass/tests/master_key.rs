//! The master key kept apart from the data, and rotated: a production start refuses a key
//! inside the data directory or no key at all; the sandbox's key file is used (and named)
//! only outside production; rotation re-wraps every stored key so that the platform starts
//! with the new key, finds the cards it holds and loads them onto new devices, and no
//! longer starts with the old one. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use std::sync::Arc;

use cloudpass::app::{self, AppConfig};
use cloudpass::master_key::{self, FileKey, KeyProvider};
use cloudpass_crypto::{MasterKey, OsRandom};
use support::app::*;

on_both_backends!(rotation_moves_every_key_to_the_new_master_key);

fn key_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, MasterKey::generate(&OsRandom).to_hex().as_bytes()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_production_start_keeps_the_key_out_of_the_data_directory() {
    let scratch = std::env::temp_dir().join(format!("cloudpass-mk-{}", std::process::id()));
    let data_dir = scratch.join("data");
    let keys = scratch.join("keys");
    // The rest of a production configuration: no parties, the key ceremony's files.
    std::fs::create_dir_all(&keys).unwrap();
    let parties = keys.join("parties.json");
    std::fs::write(&parties, "{}").unwrap();
    let zone_master = [0x1Fu8; 16];
    let zone_pin = [0x3Du8; 16];
    let mut encrypted = Vec::new();
    for half in zone_pin.chunks(8) {
        encrypted.extend_from_slice(&cloudpass_crypto::primitives::tdes_encrypt(
            &zone_master,
            half.try_into().unwrap(),
        ));
    }
    let hex = cloudpass_core::hex::encode;
    std::fs::write(keys.join("zone-master.key"), hex(&zone_master)).unwrap();
    let check = cloudpass_crypto::primitives::tdes_check_value(&zone_pin);
    std::fs::write(
        keys.join("zone-pin-key.txt"),
        format!("{} {}", hex(&encrypted), hex(&check)),
    )
    .unwrap();
    std::fs::write(keys.join("terminal-master.key"), hex(&[0x5Bu8; 16])).unwrap();
    let start = |key: Option<std::path::PathBuf>| {
        let mut config = AppConfig::new("127.0.0.1:0".parse().unwrap(), data_dir.clone());
        config.production = true;
        let pki = support::pki::Pki::open_or_make(&keys.join("pki"));
        config.http_tls = Some(pki.server(false));
        config.switch_tls = Some(pki.server(true));
        config.parties = Some(parties.clone());
        config.keys_dir = Some(keys.clone());
        config.issuer_link_override = Some("127.0.0.1:9".parse().unwrap());
        config.master_key = key.map(|path| Arc::new(FileKey(path)) as Arc<dyn KeyProvider>);
        app::start(config)
    };
    let refused = start(None)
        .await
        .err()
        .expect("no key, no production start");
    assert!(refused.contains("without a master key"), "{refused}");
    std::fs::create_dir_all(&data_dir).unwrap();
    let inside = key_file(&data_dir, "master.key");
    let refused = start(Some(inside))
        .await
        .err()
        .expect("a key beside the data is refused");
    assert!(refused.contains("inside the data directory"), "{refused}");
    let outside = key_file(&keys, "master.key");
    let running = start(Some(outside.clone()))
        .await
        .expect("a key kept elsewhere starts");
    assert!(
        running
            .master_key_origin
            .contains(&outside.display().to_string())
    );
    running.stop().await;

    // The sandbox says where its key is, and that it is not for production.
    let sandbox = TestApp::start(Backend::Sqlite).await;
    assert!(
        sandbox
            .running
            .master_key_origin
            .starts_with("SANDBOX key file")
    );
    sandbox.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
}

async fn rotation_moves_every_key_to_the_new_master_key(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.device(APPLE, "iphone", "handset_se").await;
    let token = app.green(APPLE, "iphone", CMB_DEBIT).await;
    let old = master_key::load(None, &app.data_dir, false).unwrap().0;
    let old_check = old.check_value().to_string();
    let new_file = key_file(
        &app.data_dir.join("..").join(format!("{}-keys", token)),
        "new.key",
    );
    let new = FileKey(new_file.clone()).master_key().unwrap();
    let store = app.running.tsp.store().clone();
    let moved = master_key::rotate(&store, old, &new).await.unwrap();
    assert!(
        moved >= 4,
        "data, fingerprint, OTP, request and issuer keys: {moved}"
    );
    // A second rotation from the old key finds nothing that opens: nothing changes.
    let again = master_key::rotate(
        &store,
        master_key::load(None, &app.data_dir, false).unwrap().0,
        &new,
    )
    .await;
    assert!(again.unwrap_err().contains("does not open"));

    let app = app
        .restart_with(|config| {
            config.master_key = Some(Arc::new(FileKey(new_file.clone())));
        })
        .await;
    assert_ne!(app.running.master_check_value, old_check);
    // The card is found by its fingerprint and decrypts: the same card on a second device.
    app.device(HUAWEI, "mate", "handset_se").await;
    let second = app.green(HUAWEI, "mate", CMB_DEBIT).await;
    assert_ne!(second, token);
    let (status, _) = app
        .get(APPLE, &format!("/tsp/v1/tokens/{token}/card-profile"))
        .await;
    assert_eq!(status, 200);
    // The old key (the sandbox's file) no longer starts the platform.
    let stale = app
        .try_restart()
        .await
        .err()
        .expect("the old key opens nothing");
    assert!(stale.contains("unwrap") || stale.contains("key"), "{stale}");
    let _ = std::fs::remove_dir_all(new_file.parent().unwrap());
}

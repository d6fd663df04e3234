//! Merchants registered with the gateway (`cloudpass merchant add|grant|revoke`) and how
//! they are kept apart: a registered merchant signs with the certificate the platform issued
//! it, takes a payment, and is refused what its permissions do not allow; no merchant can
//! query, refund or undo another's orders. On SQLite the merchant is registered by the CLI
//! against the data directory `serve` uses; on PostgreSQL through the store, as the CLI
//! does (the store's contract suite covers both). The gateway reads merchants without a
//! cache here (`merchant_cache_millis = 0`), so each change is seen at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

use std::path::Path;
use std::process::Command;

use cloudpass_store::{GatewayStore, MerchantRow};
use cloudpass_upacp::Form;
use serde_json::json;
use support::app::*;
use support::upacp::Merchant;

on_both_backends!(
    a_registered_merchant_is_kept_to_its_own_orders_and_permissions,
    a_registered_merchant_signs_with_its_secure_key,
);

const SHOP: &str = "898310048990011";
const APP: &str = "/gateway/api/appTransReq.do";
const QUERY: &str = "/gateway/api/queryTrans.do";
const BACK: &str = "/gateway/api/backTransReq.do";

/// `cloudpass merchant ARGS --data-dir DATA_DIR`, as run.
fn run_cli(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cloudpass"))
        .arg("merchant")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

/// What a `cloudpass merchant` command that must succeed printed.
fn cli(data_dir: &Path, args: &[&str]) -> String {
    let output = run_cli(data_dir, args);
    assert!(
        output.status.success(),
        "cloudpass merchant {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Registers `SHOP` with a certificate the platform issues into `dir`.
async fn register(app: &TestApp, dir: &Path, permissions: &str) {
    match app.backend {
        Backend::Sqlite => {
            let out = cli(
                &app.data_dir,
                &[
                    "add",
                    "--mer-id",
                    SHOP,
                    "--name",
                    "Test shop",
                    "--issue-to",
                    dir.to_str().unwrap(),
                    "--permissions",
                    permissions,
                ],
            );
            assert!(
                out.contains("registered") && out.contains("certId"),
                "{out}"
            );
            // The PFX beside the PEM files, under a fresh password of its own.
            let password =
                std::fs::read_to_string(dir.join(format!("merchant-{SHOP}.pfx-password"))).unwrap();
            assert_eq!(password.len(), 20);
            assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
            assert!(dir.join(format!("merchant-{SHOP}.pfx")).exists());
            assert!(!out.contains(&password), "{out}");
            // A merchant's files already in the directory are never overwritten.
            let other = "898310048990099";
            let kept = dir.join(format!("merchant-{other}.pfx-password"));
            std::fs::write(&kept, "an earlier password").unwrap();
            let refused = run_cli(
                &app.data_dir,
                &[
                    "add",
                    "--mer-id",
                    other,
                    "--name",
                    "Other shop",
                    "--issue-to",
                    dir.to_str().unwrap(),
                ],
            );
            assert!(!refused.status.success());
            let stderr = String::from_utf8_lossy(&refused.stderr);
            assert!(stderr.contains("exists; it is not overwritten"), "{stderr}");
            assert_eq!(
                std::fs::read_to_string(&kept).unwrap(),
                "an earlier password"
            );
            assert!(!dir.join(format!("merchant-{other}.key")).exists());
        }
        Backend::Postgres => {
            let now = support::upacp::now_seconds();
            let (pem_path, _) =
                cloudpass::sandbox_upacp::issue_merchant(&app.data_dir, SHOP, dir, now, "000000")
                    .unwrap();
            let row = MerchantRow {
                mer_id: SHOP.into(),
                name: "Test shop".into(),
                certificate_pem: std::fs::read_to_string(pem_path).unwrap(),
                permissions: permissions.into(),
                secure_key_sealed: None,
                created_at: now * 1000,
                updated_at: now * 1000,
            };
            assert!(app.running.tsp.store().insert_merchant(&row).await.unwrap());
        }
    }
}

/// Grants (`on`) or revokes permissions of `SHOP`.
async fn permit(app: &TestApp, names: &str, on: bool) {
    match app.backend {
        Backend::Sqlite => {
            let out = cli(
                &app.data_dir,
                &[if on { "grant" } else { "revoke" }, SHOP, names],
            );
            assert!(out.contains("permissions"), "{out}");
        }
        Backend::Postgres => {
            let store = app.running.tsp.store();
            let mut row = store.merchant(SHOP).await.unwrap().unwrap();
            let mut permissions = cloudpass_gateway::Permissions::parse(&row.permissions).unwrap();
            for name in names.split(',') {
                permissions.set(name, on).unwrap();
            }
            row.permissions = permissions.to_text();
            assert!(store.update_merchant(&row).await.unwrap());
        }
    }
}

/// Issues and pays an order of `merchant`; its orderId, txnTime and queryId.
async fn paid_order(
    app: &TestApp,
    merchant: &Merchant,
    prefix: &str,
    card: serde_json::Value,
) -> (String, String, String) {
    let order_id = format!("{prefix}{:0>10}", unique_suffix().replace('-', ""));
    let form = merchant.consume(&order_id, 3000);
    let txn_time = form.get("txnTime").unwrap().to_owned();
    let issued = merchant.post(APP, form).await;
    assert_eq!(issued.get("respCode"), Some("00"), "{issued:?}");
    let tn = issued.get("tn").unwrap();
    let paid: serde_json::Value = app
        .http
        .post(format!("{}/gateway/pay/{tn}", app.base))
        .json(&card)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paid["status"], "paid", "{paid}");
    (
        order_id,
        txn_time,
        paid["query_id"].as_str().unwrap().to_owned(),
    )
}

fn code(answer: &Form) -> (&str, &str) {
    (
        answer.get("respCode").unwrap_or(""),
        answer.get("respMsg").unwrap_or(""),
    )
}

async fn a_registered_merchant_is_kept_to_its_own_orders_and_permissions(backend: Backend) {
    let app = TestApp::start_with(backend, |config| config.gateway.merchant_cache_millis = 0).await;
    let keys = app.data_dir.join(format!("shop-keys-{}", unique_suffix()));
    std::fs::create_dir_all(&keys).unwrap();
    register(&app, &keys, "app_consume,query").await;
    let shop = Merchant::from_files(&app.base, &app.data_dir, SHOP, &keys);
    let sandbox = Merchant::sandbox(&app.base, &app.data_dir);
    if backend == Backend::Sqlite {
        let listed = cli(&app.data_dir, &["list"]);
        assert!(
            listed.contains(SHOP) && listed.contains("Test shop"),
            "{listed}"
        );
        let set = cli(
            &app.data_dir,
            &["set", SHOP, "--failed-notification-sends", "2"],
        );
        assert!(set.contains("first 2 sends"), "{set}");
        let shown = cli(&app.data_dir, &["show", SHOP]);
        assert!(shown.contains(&shop.certificate.cert_id()), "{shown}");
        assert!(shown.contains("app_consume,query"), "{shown}");
    }

    // The registered merchant takes a payment with its own certificate.
    let debit = json!({"card_number": CMB_DEBIT, "sms_code": "111111", "pin": "111101"});
    let (own_order, own_time, own_qry) = paid_order(&app, &shop, "SHOP", debit.clone()).await;
    let own = shop.post(QUERY, shop.query(&own_order, &own_time)).await;
    assert_eq!((code(&own).0, own.get("origRespCode")), ("00", Some("00")));

    // Another merchant's order is not there for it, whatever it asks.
    let (their_order, their_time, their_qry) = paid_order(&app, &sandbox, "SBX", debit).await;
    let query = shop
        .post(QUERY, shop.query(&their_order, &their_time))
        .await;
    assert_eq!(code(&query).0, "34", "{query:?}");
    let refund = shop
        .post(BACK, shop.back("04", "SHOPREF0001", 100, &their_qry))
        .await;
    assert_eq!(
        code(&refund).0,
        "32",
        "no refund permission yet: {refund:?}"
    );
    permit(&app, "refund,undo", true).await;
    let refund = shop
        .post(BACK, shop.back("04", "SHOPREF0002", 100, &their_qry))
        .await;
    assert_eq!(code(&refund).0, "35", "not its order: {refund:?}");
    let undo = shop
        .post(BACK, shop.back("31", "SHOPUND0001", 3000, &their_qry))
        .await;
    assert_eq!(code(&undo).0, "35", "not its order: {undo:?}");
    // …and its own refund is taken once granted.
    let refund = shop
        .post(BACK, shop.back("04", "SHOPREF0003", 100, &own_qry))
        .await;
    assert_eq!(code(&refund).0, "00", "{refund:?}");
    // The sandbox merchant cannot reach the registered merchant's order either.
    let query = sandbox
        .post(QUERY, sandbox.query(&own_order, &own_time))
        .await;
    assert_eq!(code(&query).0, "34", "{query:?}");

    // Signed with another merchant's key: 11. Revoked: 32. Unknown merId: 31.
    let mut forged = sandbox.sign(shop.consume("SHOPFORGED01", 100));
    forged.set("certId", shop.certificate.cert_id());
    let answer = shop.post_signed(APP, forged).await;
    assert_eq!(code(&answer).0, "11", "{answer:?}");
    permit(&app, "app_consume", false).await;
    let answer = shop.post(APP, shop.consume("SHOPREVOKED1", 100)).await;
    assert_eq!(code(&answer).0, "32", "{answer:?}");
    let mut stranger = shop.consume("STRANGER0001", 100);
    stranger.set("merId", "898310048990099");
    let answer = shop.post(APP, stranger).await;
    assert_eq!(
        code(&answer),
        (
            "31",
            "商户状态不正确[merId is not a merchant of this gateway]"
        )
    );

    // Its traffic so far passed these certification cases, and no others.
    let report: serde_json::Value = app
        .http
        .get(format!(
            "{}/gateway/merchants/{SHOP}/certification",
            app.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let passed: Vec<&str> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|case| case["passed"] == true)
        .map(|case| case["case"].as_str().unwrap())
        .collect();
    assert_eq!(
        passed,
        [
            "consume_success",
            "query_paid",
            "query_unknown",
            "partial_refund",
            "bad_signature"
        ],
        "{report}"
    );
    assert_eq!(
        (report["passed"].as_u64(), report["total"].as_u64()),
        (Some(5), Some(13))
    );
    if backend == Backend::Sqlite {
        let printed = cli(&app.data_dir, &["certification", "--mer-id", SHOP]);
        assert!(printed.contains("5 of 13 cases passed"), "{printed}");
        assert!(printed.contains("[x] partial_refund"), "{printed}");
        assert!(printed.contains("[ ] undo"), "{printed}");
    }
    let response = app
        .http
        .get(format!(
            "{}/gateway/merchants/898310048990099/certification",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "merchant_not_found");
    // The JSON endpoints' document is served, its schemas those of the types.
    let document: serde_json::Value = app
        .http
        .get(format!("{}/gateway/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/gateway/merchants/{mer_id}/certification"]["get"].is_object());
    assert!(
        document["components"]["schemas"]["PayRequest"]["properties"]["card_number"].is_object()
    );

    app.stop().await;
}

/// Gives `SHOP` the secure key `key`, sealed by the platform, or takes it away (`None`).
async fn set_secure_key(app: &TestApp, key: Option<&str>) {
    match app.backend {
        Backend::Sqlite => {
            let out = match key {
                Some(key) => {
                    let file = app.data_dir.join(format!("secure-key-{}", unique_suffix()));
                    std::fs::write(&file, format!("{key}\n")).unwrap();
                    cli(
                        &app.data_dir,
                        &["secure-key", SHOP, "--file", file.to_str().unwrap()],
                    )
                }
                None => cli(&app.data_dir, &["secure-key", SHOP, "--remove"]),
            };
            assert!(out.contains("secure key"), "{out}");
            assert!(
                !key.is_some_and(|key| out.contains(key)),
                "the key is not printed"
            );
        }
        Backend::Postgres => {
            let store = app.running.tsp.store();
            let mut row = store.merchant(SHOP).await.unwrap().unwrap();
            row.secure_key_sealed = key.map(|key| {
                app.running
                    .tsp
                    .seal_secret(&cloudpass_gateway::secret_owner(SHOP), key.as_bytes())
                    .unwrap()
            });
            assert!(store.update_merchant(&row).await.unwrap());
        }
    }
}

/// A registered merchant given a secure key (`cloudpass merchant secure-key`) signs with
/// signMethod 11 and 12; a request signed with another key is refused 11, and so is every
/// secure-key request once the key is taken away. The key is stored sealed, never in clear.
async fn a_registered_merchant_signs_with_its_secure_key(backend: Backend) {
    use cloudpass_upacp::signing::{self, SignMethod};

    let app = TestApp::start_with(backend, |config| config.gateway.merchant_cache_millis = 0).await;
    let keys = app.data_dir.join(format!("shop-keys-{}", unique_suffix()));
    std::fs::create_dir_all(&keys).unwrap();
    register(&app, &keys, "app_consume,query").await;
    let shop = Merchant::from_files(&app.base, &app.data_dir, SHOP, &keys);
    let with_key = |order_id: &str, method: SignMethod, key: &str| {
        let mut form = shop.consume(order_id, 100);
        form.set("signMethod", method.code());
        signing::sign_secure_key(&mut form, method, key.as_bytes());
        form
    };
    let answer = shop
        .post_signed(
            APP,
            with_key("SECKEY000001", SignMethod::SecureKeySha256, "shop-secret-1"),
        )
        .await;
    assert_eq!(code(&answer).0, "11", "no key yet: {answer:?}");

    set_secure_key(&app, Some("shop-secret-1")).await;
    let stored = app
        .running
        .tsp
        .store()
        .merchant(SHOP)
        .await
        .unwrap()
        .unwrap();
    let sealed = stored.secure_key_sealed.expect("the key is kept");
    assert!(
        !sealed
            .windows(b"shop-secret-1".len())
            .any(|w| w == b"shop-secret-1"),
        "sealed, not in clear"
    );
    for (order_id, method) in [
        ("SECKEY000002", SignMethod::SecureKeySha256),
        ("SECKEY000003", SignMethod::SecureKeySm3),
    ] {
        let answer = shop
            .post_signed(APP, with_key(order_id, method, "shop-secret-1"))
            .await;
        assert_eq!(code(&answer).0, "00", "{method:?}: {answer:?}");
    }
    let answer = shop
        .post_signed(
            APP,
            with_key("SECKEY000004", SignMethod::SecureKeySha256, "shop-secret-2"),
        )
        .await;
    assert_eq!(code(&answer).0, "11", "another key: {answer:?}");
    if backend == Backend::Sqlite {
        let shown = cli(&app.data_dir, &["show", SHOP]);
        assert!(shown.contains("secure key   set"), "{shown}");
    }

    set_secure_key(&app, None).await;
    let answer = shop
        .post_signed(
            APP,
            with_key("SECKEY000005", SignMethod::SecureKeySha256, "shop-secret-1"),
        )
        .await;
    assert_eq!(
        code(&answer),
        (
            "11",
            "验证签名失败[the merchant has no secure key for signMethod 11 or 12]"
        )
    );
    app.stop().await;
}

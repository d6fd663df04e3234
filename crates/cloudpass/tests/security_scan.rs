//! No card number in clear at rest or in logs. The test runs provisioning scenarios with
//! every sandbox card (green, yellow, red, reissue) and payments through the switch (taps
//! with and without PIN, a wrong PIN, a duplicate, a reversal; card-not-present payments,
//! a refund and a void), with every log line of every crate
//! captured at TRACE level, then scans the SQLite files (database, WAL, issuer host), the
//! PostgreSQL tables (every row of every table, as text) and the captured logs for each card
//! number — as ASCII digits and as the hex of those digits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::json;
use sqlx::Connection;
use support::app::*;

const CARDS: &[&str] = &[
    CMB_DEBIT,
    HUAXIA_CREDIT,
    PINGAN_DEBIT,
    ABC_CREDIT,
    "6216261000000000026",
];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test process, at TRACE.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn find_card_numbers(haystack: &[u8], place: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(haystack).to_lowercase();
    let mut found = Vec::new();
    for card in CARDS {
        if haystack.windows(card.len()).any(|w| w == card.as_bytes())
            || text.contains(&hex_of(card))
        {
            found.push(format!("{card} in {place}"));
        }
    }
    found
}

async fn exercise(app: &TestApp) {
    app.device(APPLE, "iphone", "handset_se").await;
    app.device(HUAWEI, "mate", "hce").await;
    app.green(APPLE, "iphone", CMB_DEBIT).await;
    app.green(HUAWEI, "mate", CMB_DEBIT).await;
    app.green(APPLE, "iphone", ABC_CREDIT).await;
    // Payments: the switch journals, forwards, translates PINs and queues reversals.
    {
        use support::network::{Shop, phone};
        let shop = Shop::open(app, "CPPOS015").await;
        let mut payer = phone(app, QUICKPASS, "payer", "handset_se", ABC_CREDIT).await;
        assert_eq!(
            shop.tap(&mut payer, "12.00", None, false)
                .await
                .response_code
                .as_deref(),
            Some("00")
        );
        shop.tap(&mut payer, "1500.00", Some("111111"), false).await;
        shop.tap(&mut payer, "1500.00", Some("222222"), false).await;
        let amount = support::network::cny("20.00");
        let tap = payer.tap(&shop.pos.terminal_data(amount), false).unwrap();
        let purchase = cloudpass_sim::pos::Purchase {
            account: payer.token(),
            expiry: Some(payer.expiry()),
            amount,
            field55: &tap.field55,
            presentment: cloudpass_sim::pos::Presentment::Contactless {
                track2: &tap.track2,
            },
            pin: None,
        };
        shop.pos.purchase(&purchase).await.unwrap();
        shop.pos.purchase(&purchase).await.unwrap();
    }
    // Card-not-present: the card number itself crosses the switch (journaled, translated,
    // returned), with a wrong CVN2, a PIN, a refund and a void.
    {
        use cloudpass_sim::pos::ReturnKind;
        use support::network::{Shop, cny};
        let web = Shop::open_ecommerce(app, "CPWEB001", std::time::Duration::from_secs(5)).await;
        let paid = web
            .card_not_present(HUAXIA_CREDIT, Some("2912"), "40.00", Some("248"), None)
            .await;
        assert_eq!(paid.response_code.as_deref(), Some("00"));
        web.card_not_present(HUAXIA_CREDIT, Some("2912"), "40.00", Some("111"), None)
            .await;
        let debit = web
            .card_not_present(CMB_DEBIT, None, "15.00", None, Some("111101"))
            .await;
        let terminal = web.pos.terminal();
        let credit_card = cloudpass_core::Pan::parse(HUAXIA_CREDIT).unwrap();
        let refund = terminal
            .card_return(
                ReturnKind::Refund,
                (&paid).into(),
                Some(&credit_card),
                cny("10.00"),
            )
            .unwrap();
        assert_eq!(
            terminal
                .send_return(&refund)
                .await
                .unwrap()
                .response_code
                .as_deref(),
            Some("00")
        );
        let void = terminal
            .card_return(ReturnKind::Void, (&debit).into(), None, cny("15.00"))
            .unwrap();
        assert_eq!(
            terminal
                .send_return(&void)
                .await
                .unwrap()
                .response_code
                .as_deref(),
            Some("00")
        );
    }
    // Yellow, with a wrong code first.
    let (status, body) = app
        .provision(APPLE, "iphone", HUAXIA_CREDIT, "2912", Some("248"))
        .await;
    assert_eq!(status, 202, "{body}");
    let token = body["token"]["token_id"].as_str().unwrap().to_owned();
    app.post(
        APPLE,
        &format!("/tsp/v1/tokens/{token}/activate"),
        json!({"otp": "999999"}),
    )
    .await;
    let otp = app.latest_otp("18100000000").await;
    let (status, _) = app
        .post(
            APPLE,
            &format!("/tsp/v1/tokens/{token}/activate"),
            json!({"otp": otp}),
        )
        .await;
    assert_eq!(status, 200);
    // Red: a wrong CVN2, a card the bank does not know, a bad check digit.
    app.provision(APPLE, "iphone", HUAXIA_CREDIT, "2912", Some("111"))
        .await;
    app.provision(APPLE, "iphone", "6226090000000055", "2912", None)
        .await;
    app.provision(APPLE, "iphone", "6226090000000049", "2912", None)
        .await;
    // The bank's side: queries, card events and a reissue with a new number.
    app.post(
        BANK,
        "/tsp/v1/issuer/cards/tokens",
        json!({"card_number": PINGAN_DEBIT}),
    )
    .await;
    app.green(APPLE, "iphone", PINGAN_DEBIT).await;
    let response = app
        .http
        .post(format!("{}/sim/issuer/v1/cards/reissue", app.base))
        .bearer_auth(BANK)
        .json(&json!({"card_number": PINGAN_DEBIT, "new_card_number": "6216261000000000026", "new_expiry": "3112"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    app.post(
        BANK,
        "/tsp/v1/issuer/cards/events",
        json!({"card_number": CMB_DEBIT, "event": "lost"}),
    )
    .await;
    app.post(
        BANK,
        "/tsp/v1/issuer/push-receipts",
        json!({"card_number": HUAXIA_CREDIT, "expiry": "2912", "token_requestor_id": cloudpass::sandbox::WALLETS[0].id, "device_id": "iphone"}),
    )
    .await;
    // Error paths: card data sent with the wrong JSON type, to the token service and to
    // the bank; the answers (which the idempotency table keeps) must not carry it.
    let mut answers = Vec::new();
    let activate = format!("/tsp/v1/tokens/{token}/activate");
    for (key, path, body) in [
        (
            APPLE,
            "/tsp/v1/tokens",
            json!({"device_id": "iphone", "card": {"number": 6216261000000000018u64, "expiry": "2912"}}),
        ),
        (
            APPLE,
            "/tsp/v1/tokens",
            json!({"device_id": "iphone", "card": {"number": CMB_DEBIT, "expiry": 2912, "cvn2": 248}}),
        ),
        (
            APPLE,
            "/tsp/v1/tokens",
            json!({"device_id": "iphone", "card": [CMB_DEBIT]}),
        ),
        (APPLE, activate.as_str(), json!({"otp": 9_999_999_999u64})),
        (
            BANK,
            "/tsp/v1/issuer/cards/tokens",
            json!({"card_number": 5200831111111113u64}),
        ),
    ] {
        let (status, answer) = app.post(key, path, body).await;
        assert_eq!(status, 400, "{answer}");
        answers.push(answer.to_string());
    }
    for body in [
        json!({"card_number": 6226388000000095u64, "new_card_number": "6216261000000000026", "new_expiry": "3112"}),
        json!({"card_number": HUAXIA_CREDIT, "new_card_number": 6216261000000000026u64}),
    ] {
        let response = app
            .http
            .post(format!("{}/sim/issuer/v1/cards/reissue", app.base))
            .bearer_auth(BANK)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        answers.push(response.text().await.unwrap());
    }
    let found = find_card_numbers(answers.join("\n").as_bytes(), "error answers");
    assert!(found.is_empty(), "{found:?}: {answers:?}");
    for answer in &answers {
        assert!(
            !answer.contains("9999999999") && !answer.contains("248"),
            "{answer}"
        );
    }
    // The notifications go out (their bodies and logs are scanned too).
    use cloudpass_store::BacklogStore;
    for _ in 0..500 {
        let backlogs = app.running.tsp.store().backlogs().await.unwrap();
        if backlogs.outbox.pending == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the token service's notifications were not all delivered within 10 s");
}

/// Scans every file of the data directory for card numbers, and checks on the way that the
/// directory is 0700 and each file 0600 (the test process's umask is the usual 022).
fn scan_files(app: &TestApp) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&app.data_dir), 0o700, "the data directory");
    let mut found = Vec::new();
    let mut scanned = 0;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&app.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_eq!(mode(&path), 0o700, "{}", path.display());
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            files.push(path);
        }
    }
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    assert!(
        names.iter().any(|n| n.ends_with(".sqlite-wal"))
            && names.iter().any(|n| n.ends_with("zone-pin-key.txt")),
        "the WAL and the key files are there to check: {names:?}"
    );
    for path in files {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        found.extend(find_card_numbers(&bytes, &path.display().to_string()));
    }
    assert!(scanned > 0);
    found
}

async fn scan_postgres(schema: &str) -> Vec<String> {
    let mut connection = sqlx::PgConnection::connect(&cloudpass_store::testing::postgres_url())
        .await
        .unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(schema)
    .fetch_all(&mut connection)
    .await
    .unwrap();
    assert!(tables.len() >= 10, "{tables:?}");
    let mut found = Vec::new();
    let mut rows = 0;
    for (table,) in tables {
        let dump: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(t AS TEXT) FROM \"{schema}\".\"{table}\" t"
        )))
        .fetch_all(&mut connection)
        .await
        .unwrap();
        rows += dump.len();
        let text: String = dump
            .into_iter()
            .map(|(row,)| row)
            .collect::<Vec<_>>()
            .join("\n");
        found.extend(find_card_numbers(
            text.as_bytes(),
            &format!("table {table}"),
        ));
    }
    assert!(rows > 20, "the scan read {rows} rows");
    found
}

#[test]
fn the_scanner_finds_what_it_looks_for() {
    assert_eq!(find_card_numbers(b"x 6226090000000048 y", "a").len(), 1);
    assert_eq!(
        find_card_numbers(hex_of("6226388000000095").as_bytes(), "b").len(),
        1
    );
    assert_eq!(
        find_card_numbers(
            format!("\\x{}", hex_of("5200831111111113").to_uppercase()).as_bytes(),
            "c"
        )
        .len(),
        1
    );
    assert!(find_card_numbers(b"622609******0048", "d").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_card_number_in_clear_on_sqlite() {
    let logs = logs();
    let app = TestApp::start(Backend::Sqlite).await;
    exercise(&app).await;
    let mut found = scan_files(&app);
    app.stop().await;
    let captured = logs.0.lock().unwrap().clone();
    assert!(
        captured.len() > 1000,
        "logs were captured ({} bytes)",
        captured.len()
    );
    let text = String::from_utf8_lossy(&captured);
    for expected in ["sqlx::query", "INSERT INTO tokens", "hyper", "reqwest"] {
        assert!(
            text.contains(expected),
            "the captured logs lack {expected:?}: the scan would prove nothing"
        );
    }
    found.extend(find_card_numbers(&captured, "the logs"));
    assert!(found.is_empty(), "card numbers in clear: {found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_card_number_in_clear_on_postgres() {
    let logs = logs();
    let app = TestApp::start(Backend::Postgres).await;
    exercise(&app).await;
    let schema = app.postgres_schema().unwrap().to_owned();
    let mut found = scan_postgres(&schema).await;
    found.extend(scan_files(&app));
    app.stop().await;
    let captured = logs.0.lock().unwrap().clone();
    found.extend(find_card_numbers(&captured, "the logs"));
    assert!(found.is_empty(), "card numbers in clear: {found:?}");
}

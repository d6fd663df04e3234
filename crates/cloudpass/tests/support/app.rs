//! A real cloudpass instance for black-box tests: the whole app on a random port with a fresh
//! database — an SQLite file in a new directory, or a new schema on the PostgreSQL test
//! server — and an HTTP client that speaks to it as a wallet, a bank or the sandbox.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloudpass::app::{self, AppConfig, RunningApp, Workers, WorkersPass};
use cloudpass::sandbox;
use cloudpass_core::{Clock, ManualClock, SystemClock};
use cloudpass_crypto::DeviceKeyPair;
use cloudpass_store::testing::{TestStore, fresh_postgres, postgres_url};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub running: RunningApp,
    pub http: reqwest::Client,
    pub base: String,
    pub data_dir: PathBuf,
    pub backend: Backend,
    postgres: Option<TestStore>,
}

/// A `ManualClock` set to the system's time.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now_millis()))
}

/// `config` on `clock`, with the queue workers run by hand ([`TestApp::run_workers`]).
pub fn workers_by_hand(config: &mut AppConfig, clock: &Arc<ManualClock>) {
    config.clock = Arc::clone(clock) as Arc<dyn Clock>;
    config.workers = Workers::Manual;
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A suffix no other test of this process uses (for directories, profiles).
pub fn unique_suffix() -> String {
    unique()
}

fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub const APPLE: &str = sandbox::WALLETS[0].api_key;
pub const HUAWEI: &str = sandbox::WALLETS[1].api_key;
pub const QUICKPASS: &str = sandbox::WALLETS[4].api_key;
pub const BANK: &str = sandbox::ISSUER_API_KEY;

/// A green debit card, a yellow credit card, another green debit card.
pub const CMB_DEBIT: &str = "6226090000000048";
pub const HUAXIA_CREDIT: &str = "6226388000000095";
pub const PINGAN_DEBIT: &str = "6216261000000000018";
pub const ABC_CREDIT: &str = "5200831111111113";

impl TestApp {
    pub async fn start(backend: Backend) -> TestApp {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts with the configuration adjusted by `adjust`.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut AppConfig)) -> TestApp {
        let data_dir = std::env::temp_dir().join(format!("cloudpass-app-{}", unique()));
        Self::start_in(backend, data_dir, None, adjust).await
    }

    /// Starts on a `ManualClock` (set to the system's time) with the queue workers run by
    /// hand ([`TestApp::run_workers`]); the clock, for the test to move.
    pub async fn start_on_manual_clock(
        backend: Backend,
        adjust: impl FnOnce(&mut AppConfig),
    ) -> (TestApp, Arc<ManualClock>) {
        let clock = manual_clock();
        let app = Self::start_with(backend, |config| {
            workers_by_hand(config, &clock);
            adjust(config);
        })
        .await;
        (app, clock)
    }

    /// One pass of each queue worker (an app started by [`TestApp::start_on_manual_clock`]).
    pub async fn run_workers(&self) -> WorkersPass {
        self.running
            .run_workers_once()
            .await
            .expect("the workers run by hand and their queues can be read")
    }

    /// Stops this instance and starts another on the same data directory and database, as
    /// a process restart would.
    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// [`TestApp::restart`] with the configuration adjusted by `adjust`.
    pub async fn restart_with(self, adjust: impl FnOnce(&mut AppConfig)) -> TestApp {
        self.try_restart_with(adjust).await.expect("the app starts")
    }

    /// Stops this instance and tries to start another on the same data; the start's error
    /// if it fails (the data and the database are cleaned up then).
    pub async fn try_restart(self) -> Result<TestApp, String> {
        self.try_restart_with(|_| {}).await
    }

    async fn try_restart_with(
        self,
        adjust: impl FnOnce(&mut AppConfig),
    ) -> Result<TestApp, String> {
        let TestApp {
            running,
            data_dir,
            backend,
            postgres,
            ..
        } = self;
        running.stop().await;
        Self::try_start_in(backend, data_dir, postgres, adjust).await
    }

    async fn start_in(
        backend: Backend,
        data_dir: PathBuf,
        postgres: Option<TestStore>,
        adjust: impl FnOnce(&mut AppConfig),
    ) -> TestApp {
        Self::try_start_in(backend, data_dir, postgres, adjust)
            .await
            .expect("the app starts")
    }

    async fn try_start_in(
        backend: Backend,
        data_dir: PathBuf,
        postgres: Option<TestStore>,
        adjust: impl FnOnce(&mut AppConfig),
    ) -> Result<TestApp, String> {
        let mut config = AppConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), data_dir.clone());
        config.notifier.idle_poll = Duration::from_millis(20);
        config.notifier.first_backoff = Duration::from_millis(50);
        config.switch.saf_poll = Duration::from_millis(50);
        adjust(&mut config);
        let postgres = match (backend, postgres) {
            (Backend::Sqlite, _) => None,
            (Backend::Postgres, reused) => {
                let fresh = match reused {
                    Some(reused) => reused,
                    None => fresh_postgres()
                        .await
                        .expect("the PostgreSQL test server must be reachable"),
                };
                config.database_url = Some(postgres_url());
                config.postgres_schema = fresh.schema().map(str::to_owned);
                Some(fresh)
            }
        };
        match app::start(config).await {
            Ok(running) => {
                let base = running.base_url();
                Ok(TestApp {
                    running,
                    http: reqwest::Client::new(),
                    base,
                    data_dir,
                    backend,
                    postgres,
                })
            }
            Err(error) => {
                let _ = std::fs::remove_dir_all(&data_dir);
                if let Some(fresh) = postgres {
                    fresh.cleanup().await;
                }
                Err(error)
            }
        }
    }

    /// The sandbox's stand-in bank.
    pub fn bank(&self) -> &std::sync::Arc<cloudpass_sim::issuer_host::IssuerHost> {
        self.running.stand_in_bank().expect("a sandbox")
    }

    /// The sandbox operator's key.
    pub fn operator_key(&self) -> &str {
        self.running
            .sandbox
            .as_ref()
            .expect("a sandbox")
            .operator_key
            .as_str()
    }

    /// The same instance, spoken to with another HTTP client (one that trusts a test CA).
    pub fn with_http(self, http: reqwest::Client) -> TestApp {
        TestApp { http, ..self }
    }

    /// The PostgreSQL schema this instance uses, if it runs on PostgreSQL.
    pub fn postgres_schema(&self) -> Option<&str> {
        self.postgres.as_ref().and_then(TestStore::schema)
    }

    /// Runs one statement on this instance's own database, from outside the application (as
    /// an operator's console would): how a test leaves what a killed process leaves.
    pub async fn execute_sql(&self, statement: &str) -> u64 {
        use sqlx::Connection;
        let statement = sqlx::AssertSqlSafe(statement.to_owned());
        match self.postgres_schema() {
            Some(schema) => {
                let mut connection =
                    sqlx::PgConnection::connect(&cloudpass_store::testing::postgres_url())
                        .await
                        .expect("PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SET search_path TO \"{schema}\""
                )))
                .execute(&mut connection)
                .await
                .expect("search_path");
                sqlx::query(statement)
                    .execute(&mut connection)
                    .await
                    .expect("statement")
                    .rows_affected()
            }
            None => {
                let path = self.data_dir.join("cloudpass.sqlite");
                let mut connection =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .expect("SQLite");
                sqlx::query(statement)
                    .execute(&mut connection)
                    .await
                    .expect("statement")
                    .rows_affected()
            }
        }
    }

    pub async fn stop(self) {
        self.running.stop().await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some(fresh) = self.postgres {
            fresh.cleanup().await;
        }
    }

    /// A mutating call with a fresh idempotency key.
    pub async fn post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        self.post_with_key(key, path, body, &format!("test-{}", unique()))
            .await
    }

    pub async fn post_with_key(
        &self,
        key: &str,
        path: &str,
        body: Value,
        idempotency_key: &str,
    ) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("idempotency-key", idempotency_key)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("idempotency-key", format!("test-{}", unique()))
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Registers a device for the sandbox account; returns its key pair.
    pub async fn device(&self, wallet: &str, device_id: &str, kind: &str) -> DeviceKeyPair {
        let keys = DeviceKeyPair::generate(&cloudpass_crypto::OsRandom);
        let (status, body) = self
            .post(
                wallet,
                "/tsp/v1/devices",
                json!({"device_id": device_id, "kind": kind, "brand": "test", "account_id": sandbox::ACCOUNT_ID, "unlock_set": true,
                       "public_key": cloudpass_core::hex::encode(&keys.public_key())}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        keys
    }

    pub async fn provision(
        &self,
        wallet: &str,
        device_id: &str,
        card: &str,
        expiry: &str,
        cvn2: Option<&str>,
    ) -> (u16, Value) {
        let mut card_data = json!({"number": card, "expiry": expiry});
        if let Some(cvn2) = cvn2 {
            card_data["cvn2"] = json!(cvn2);
        }
        self.post(
            wallet,
            "/tsp/v1/tokens",
            json!({"device_id": device_id, "account_id": sandbox::ACCOUNT_ID, "card": card_data}),
        )
        .await
    }

    /// Provisions a green card and returns the token ID.
    pub async fn green(&self, wallet: &str, device_id: &str, card: &str) -> String {
        let expiry = if card == ABC_CREDIT { "2911" } else { "2912" };
        let (status, body) = self.provision(wallet, device_id, card, expiry, None).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["decision"], "green");
        body["token"]["token_id"].as_str().unwrap().to_owned()
    }

    pub async fn token(&self, key: &str, token_id: &str) -> Value {
        let (status, body) = self.get(key, &format!("/tsp/v1/tokens/{token_id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn device_tokens(&self, wallet: &str, device_id: &str) -> Vec<Value> {
        let (status, body) = self
            .get(wallet, &format!("/tsp/v1/devices/{device_id}/tokens"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["tokens"].as_array().unwrap().clone()
    }

    /// The latest step-up code texted to a phone.
    pub async fn latest_otp(&self, phone: &str) -> String {
        let (status, body) = self
            .get(
                self.operator_key(),
                &format!("/sim/issuer/v1/sms?phone={phone}"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let text = body["messages"][0]["text"]
            .as_str()
            .expect("an SMS was sent")
            .to_owned();
        text.split_whitespace()
            .find(|word| word.len() >= 6 && word.chars().rev().take(6).all(|c| c.is_ascii_digit()))
            .map(|w| w[w.len() - 6..].to_owned())
            .expect("a code in the SMS")
    }

    /// Waits until the sandbox's receivers got `count` notifications about `token_id` for
    /// `subscriber`, and returns them.
    pub async fn notifications(
        &self,
        subscriber: &str,
        token_id: &str,
        count: usize,
    ) -> Vec<Value> {
        for _ in 0..200 {
            let (_, body) = self
                .get(
                    self.operator_key(),
                    &format!("/sandbox/v1/webhooks?subscriber={subscriber}&token_id={token_id}"),
                )
                .await;
            let list = body["notifications"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if list.len() >= count {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let (_, body) = self
            .get(
                self.operator_key(),
                &format!("/sandbox/v1/webhooks?subscriber={subscriber}&token_id={token_id}"),
            )
            .await;
        panic!("expected {count} notifications for {token_id} at {subscriber}, got {body}");
    }
}

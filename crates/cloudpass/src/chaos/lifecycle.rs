//! Provisioning and lifecycle changes under the faults: a wallet keeps adding a card to a new
//! device, paying with it, suspending it (挂失), resuming it and deleting it, through the
//! token service's API, each call retried under its Idempotency-Key until the platform
//! answers. After a suspension or a deletion is acknowledged, the phone taps once more: the
//! switch must refuse it. The audit then holds every token's state against the last change
//! acknowledged for it (`audit`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudpass::sandbox;
use cloudpass_core::{Random, SeededRandom};
use cloudpass_crypto::{DeviceKeyPair, OsRandom};
use cloudpass_sim::pos::Pos;
use tokio::sync::watch;

use super::load::{CARDS, ChaosPhone, Record, Worker};
use crate::wallet_phone::{self, PhoneCard};

/// How long a call is retried while the platform is down before the change is given up as
/// unknown.
const RETRY_FOR: Duration = Duration::from_secs(90);

/// A token's state as the token service reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Active,
    Suspended,
    Deleted,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Suspended => "suspended",
            TokenState::Deleted => "deleted",
        }
    }
}

/// One churned token's story.
#[derive(Debug, Clone)]
pub struct TokenLife {
    pub device_id: String,
    pub token_id: String,
    /// The state its last acknowledged change left it in.
    pub acknowledged: TokenState,
    /// A change sent whose answer never came (the platform was down for all of
    /// `RETRY_FOR`): the token may be in this state instead.
    pub unsure: Option<TokenState>,
    /// A change the token service refused (its code), which the sequence never should be.
    pub refused: Option<String>,
    /// Changes acknowledged (suspend, resume, delete).
    pub changes: u32,
    /// Purchases tapped after a suspension or deletion was acknowledged (attempt indices).
    pub barred_taps: Vec<usize>,
}

/// What the churn did, for the audit.
#[derive(Default)]
pub struct Lives {
    pub tokens: Mutex<Vec<TokenLife>>,
    /// Devices whose provisioning never got an answer (the token may or may not exist).
    pub unsure_provisionings: Mutex<Vec<String>>,
}

impl Lives {
    pub fn snapshot(&self) -> (Vec<TokenLife>, Vec<String>) {
        (
            self.tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            self.unsure_provisionings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The wallet churning tokens at one terminal.
pub struct Churn {
    pub base: String,
    pub pos: Arc<Pos>,
    pub terminal: &'static str,
    pub random: SeededRandom,
    pub record: Arc<Record>,
    pub lives: Arc<Lives>,
}

impl Churn {
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let mut round = 0_u64;
        let mut stop_waiting = stop.clone();
        while !*stop.borrow() {
            round += 1;
            self.one_token(&http, round, &stop).await;
            // A wallet's customers come one at a time; the payments load stays the larger.
            let pause = Duration::from_millis(50 + self.random.below(200));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop_waiting.changed() => {}
            }
        }
    }

    /// Provisions a card to a new device, then pays, suspends, resumes and deletes.
    async fn one_token(&self, http: &reqwest::Client, round: u64, stop: &watch::Receiver<bool>) {
        let device_id = format!("chaos-life-{round}");
        let card = (round as usize) % CARDS.len();
        // The same keys on every try, so that a retry is the same request.
        let keys = DeviceKeyPair::generate(&OsRandom);
        let provisioned = retry(stop, || {
            wallet_phone::provision_with(
                http,
                &self.base,
                &device_id,
                PhoneCard {
                    number: CARDS[card].number,
                    expiry: CARDS[card].expiry,
                    ecash: false,
                },
                &keys,
            )
        })
        .await;
        let phone = match provisioned {
            Some(phone) => phone,
            None => {
                self.lives
                    .unsure_provisionings
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(device_id);
                return;
            }
        };
        let mut life = TokenLife {
            device_id: device_id.clone(),
            token_id: phone.token_id().to_owned(),
            acknowledged: TokenState::Active,
            unsure: None,
            refused: None,
            changes: 0,
            barred_taps: Vec::new(),
        };
        let mut worker = Worker {
            phone: ChaosPhone { phone, card },
            pos: Arc::clone(&self.pos),
            terminal: self.terminal,
            random: SeededRandom::new(self.random.next_u64()),
            record: Arc::clone(&self.record),
            link_down: false,
            batch: Vec::new(),
        };
        worker.tap_once(1 + self.random.below(50)).await;
        for (action, state) in [
            ("suspend", TokenState::Suspended),
            ("resume", TokenState::Active),
            ("delete", TokenState::Deleted),
        ] {
            match retry(stop, || self.change(http, &life, action)).await {
                Some(Ok(())) => {
                    life.acknowledged = state;
                    life.changes += 1;
                }
                Some(Err(code)) => {
                    life.refused = Some(format!("{action}: {code}"));
                    break;
                }
                None => {
                    life.unsure = Some(state);
                    break;
                }
            }
            if state != TokenState::Active
                && let Some(index) = worker.tap_once(1 + self.random.below(50)).await
            {
                life.barred_taps.push(index);
            }
        }
        self.lives
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(life);
    }

    /// One lifecycle call: `Ok(Ok(()))` when the token service made the change,
    /// `Ok(Err(code))` when it refused it, `Err` when it did not answer (to be retried).
    async fn change(
        &self,
        http: &reqwest::Client,
        life: &TokenLife,
        action: &str,
    ) -> Result<Result<(), String>, String> {
        let answer = http
            .post(format!(
                "{}/tsp/v1/tokens/{}/{action}",
                self.base, life.token_id
            ))
            .bearer_auth(sandbox::WALLETS[0].api_key)
            .header("Idempotency-Key", format!("{}-{action}", life.device_id))
            .json(&serde_json::json!({}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status();
        if status.is_success() {
            return Ok(Ok(()));
        }
        // A platform starting or stopping answers 5xx: try again.
        if status.is_server_error() {
            return Err(format!("HTTP {status}"));
        }
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        // The first try may still hold the Idempotency-Key (or died holding it): try again;
        // if it never clears the change is counted unanswered (docs/reliability.md).
        if body["code"] == "REQUEST_IN_PROGRESS" {
            return Err("REQUEST_IN_PROGRESS".into());
        }
        Ok(Err(format!(
            "HTTP {status} {}",
            body["code"].as_str().unwrap_or("no code")
        )))
    }
}

/// Calls `attempt` until it gives an answer (`Ok`), the load stops, or `RETRY_FOR` passes;
/// `None` when no answer came.
async fn retry<T, E, F, Fut>(stop: &watch::Receiver<bool>, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        if let Ok(answer) = attempt().await {
            return Some(answer);
        }
        if Instant::now() >= deadline || *stop.borrow() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

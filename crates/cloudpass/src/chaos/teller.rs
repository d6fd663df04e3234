//! The bank's counter during a run: when the terminals see a chaos card declined 51
//! (insufficient funds), the teller pays money into its account through the issuer host's
//! back office (`POST /sim/issuer/v1/cards/deposits`), from the bank's funding account — the
//! books stay balanced. Each deposit has a reference of its own and is retried under it
//! while the issuer host is down, so it is paid in once. The audit holds the bank's
//! deposits against the teller's.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudpass::sandbox;
use tokio::sync::watch;

use super::load::{CARDS, Record};

/// What one deposit pays in, in fen (2,000 CNY): several thousand of the load's purchases.
pub const DEPOSIT_FEN: i64 = 200_000;
/// How long a deposit is retried before it is given up as unknown.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// A deposit the teller made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deposit {
    pub reference: String,
    pub card: usize,
    pub amount: i64,
    /// The bank answered it (201, or 200 for a repeat of the same reference).
    pub acknowledged: bool,
}

pub struct Teller {
    /// The issuer host's HTTP port.
    pub bank: SocketAddr,
    pub seed: u64,
    pub record: Arc<Record>,
    pub deposits: Arc<Mutex<Vec<Deposit>>>,
}

impl Teller {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let mut seen = [0_u64; CARDS.len()];
        let mut made = 0_u64;
        while !*stop.borrow() {
            for (card, low) in self.record.low_funds.iter().enumerate() {
                let declined = low.load(Ordering::Relaxed);
                if declined > seen[card] {
                    seen[card] = declined;
                    made += 1;
                    let reference = format!("chaos-{}-{made}", self.seed);
                    let acknowledged = self.deposit(&http, card, &reference, &stop).await;
                    self.deposits
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Deposit {
                            reference,
                            card,
                            amount: DEPOSIT_FEN,
                            acknowledged,
                        });
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Pays `DEPOSIT_FEN` into `card`'s account under `reference`, retried until the bank
    /// answers; whether it did.
    async fn deposit(
        &self,
        http: &reqwest::Client,
        card: usize,
        reference: &str,
        stop: &watch::Receiver<bool>,
    ) -> bool {
        let deadline = Instant::now() + RETRY_FOR;
        let body = serde_json::json!({
            "card_number": CARDS[card].number,
            "amount": DEPOSIT_FEN,
            "reference": reference,
        });
        loop {
            let answer = http
                .post(format!("http://{}/sim/issuer/v1/cards/deposits", self.bank))
                .bearer_auth(sandbox::ISSUER_API_KEY)
                .json(&body)
                .send()
                .await;
            if answer.is_ok_and(|answer| answer.status().is_success()) {
                return true;
            }
            if Instant::now() >= deadline || *stop.borrow() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

//! The load: phones tapping at sandbox terminals through the acquirer link's fault proxy —
//! without PIN and with it, replays of a cryptogram already approved, voids (acquirer
//! reversals) of approved sales, in-app purchases (with the payment password above the
//! card's online no-PIN limit), loads of the card's e-cash (UPCash) and offline e-cash spends
//! the terminal uploads in batches for clearing — each attempt recorded as the terminal saw
//! it, for the audit. The terminals are the platform's own acquirer client (`cloudpass-acquirer`): a
//! purchase left unanswered is kept as a reversal and sent until the switch acknowledges it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudpass::sandbox;
use cloudpass_acquirer::{AcquirerError, PreparedPurchase};
use cloudpass_core::{Currency, Money, Random, SeededRandom, SystemClock};
use cloudpass_crypto::{OsRandom, Pin};
use cloudpass_iso8583::Message;
use cloudpass_iso8583::link::Link;
use cloudpass_sim::phone::Phone;
use cloudpass_sim::pos::{Outcome, Pos, Presentment, Purchase, TerminalConfig};
use tokio::sync::watch;

use crate::wallet_phone::{self, PhoneCard};

/// The sandbox bank's cards the phones carry: funded, green for provisioning, PIN published.
pub struct ChaosCard {
    pub number: &'static str,
    pub expiry: &'static str,
    pub pin: &'static str,
}

pub const CARDS: [ChaosCard; 3] = [
    ChaosCard {
        number: sandbox::DEFAULT_PHONE_CARD,
        expiry: "2912",
        pin: "111101",
    },
    ChaosCard {
        number: sandbox::PINGAN_DEBIT_CARD,
        expiry: "2912",
        pin: "123456",
    },
    ChaosCard {
        number: sandbox::ABC_CREDIT_CARD,
        expiry: "2911",
        pin: "111111",
    },
];

/// How long a terminal waits for an answer before it reverses.
const TERMINAL_TIMEOUT: Duration = Duration::from_secs(4);
/// The terminals' no-PIN limit: taps above it carry the PIN. Amounts are small so that the
/// sandbox cards' balances and daily limits last a default run (about 20,000 purchases).
const NO_PIN_LIMIT_FEN: u64 = 100;
/// The most a tap without PIN takes.
const MOST_WITHOUT_PIN_FEN: u64 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tap,
    TapWithPin,
    /// A cryptogram the switch approved once, sent again under a new STAN.
    Replay,
    /// An in-app purchase: the app's cryptogram, the payment password above the card's
    /// online no-PIN limit.
    InApp,
    /// A load of the card's e-cash from its account, with the payment password.
    EcashLoad,
}

/// An offline e-cash spend the phone approved, and what its clearing said.
#[derive(Debug, Clone)]
pub struct OfflineSpend {
    pub terminal: &'static str,
    pub card: usize,
    pub stan: String,
    pub transmission_time: String,
    pub amount: u64,
    /// The switch's answer to its upload; none while no final answer came.
    pub cleared: Option<String>,
}

/// Offline spends a terminal has not had a final answer to: their index in the record and
/// their advice.
pub type Batch = Vec<(usize, Message<'static>)>;

/// What a worker leaves when the load stops.
pub struct WorkerEnd {
    pub owed_voids: Vec<(Arc<Pos>, usize)>,
    pub pos: Arc<Pos>,
    pub batch: Batch,
    /// The phone's card and the e-cash it holds.
    pub ecash: Option<(usize, u64)>,
}

/// What the terminal saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approved,
    Declined(String),
    /// No answer in time: the terminal keeps a reversal until the switch acknowledges it.
    Unanswered,
    /// The link was down: nothing was sent.
    NotSent,
}

/// A void (acquirer reversal) of an approved sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Void {
    Acknowledged(String),
    /// Not acknowledged yet: sent again when the load stops.
    Owed,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub terminal: &'static str,
    pub card: usize,
    pub kind: Kind,
    pub stan: String,
    pub transmission_time: String,
    pub amount: u64,
    pub answer: Answer,
    pub void: Option<Void>,
}

#[derive(Default)]
pub struct Tally {
    pub approved: AtomicU64,
    pub declined: AtomicU64,
    pub unanswered: AtomicU64,
    pub not_sent: AtomicU64,
    pub voids: AtomicU64,
}

/// Everything the load did, shared by its workers.
#[derive(Default)]
pub struct Record {
    pub attempts: Mutex<Vec<Attempt>>,
    pub offline: Mutex<Vec<OfflineSpend>>,
    pub tally: Tally,
    /// Purchases declined 51 (insufficient funds), by chaos card: the teller tops up.
    pub low_funds: [AtomicU64; CARDS.len()],
}

impl Record {
    fn push(&self, attempt: Attempt) -> usize {
        let counter = match attempt.answer {
            Answer::Approved => &self.tally.approved,
            Answer::Declined(_) => &self.tally.declined,
            Answer::Unanswered => &self.tally.unanswered,
            Answer::NotSent => &self.tally.not_sent,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if attempt.answer == Answer::Declined("51".into())
            && let Some(low) = self.low_funds.get(attempt.card)
        {
            low.fetch_add(1, Ordering::Relaxed);
        }
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        attempts.push(attempt);
        attempts.len() - 1
    }

    fn set_void(&self, index: usize, void: Void) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(attempt) = attempts.get_mut(index) {
            attempt.void = Some(void);
        }
    }

    fn push_offline(&self, spend: OfflineSpend) -> usize {
        let mut spends = self.offline.lock().unwrap_or_else(|p| p.into_inner());
        spends.push(spend);
        spends.len() - 1
    }

    fn set_cleared(&self, index: usize, code: String) {
        let mut spends = self.offline.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(spend) = spends.get_mut(index) {
            spend.cleared = Some(code);
        }
    }

    pub fn offline_snapshot(&self) -> Vec<OfflineSpend> {
        self.offline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn snapshot(&self) -> Vec<Attempt> {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A phone with its card, provisioned through the token service's API.
pub struct ChaosPhone {
    pub phone: Phone,
    pub card: usize,
}

/// Provisions `count` phones (one device each) with the chaos cards in turn.
pub async fn provision_phones(base: &str, count: usize) -> Result<Vec<ChaosPhone>, String> {
    let http = reqwest::Client::new();
    let mut phones = Vec::with_capacity(count);
    for index in 0..count {
        let card = index % CARDS.len();
        let chaos_card = PhoneCard {
            number: CARDS[card].number,
            expiry: CARDS[card].expiry,
            ecash: true,
        };
        let phone =
            wallet_phone::provision(&http, base, &format!("chaos-{index}"), chaos_card).await?;
        if phone.ecash_balance().is_none() {
            return Err(format!("chaos-{index}: the token service gave no e-cash"));
        }
        phones.push(ChaosPhone { phone, card });
    }
    Ok(phones)
}

/// Sandbox terminals reaching the switch at `switch` (the acquirer link's proxy), signed on.
pub async fn terminals(
    switch: std::net::SocketAddr,
    count: usize,
    master_key: &[u8],
    stopped: watch::Receiver<bool>,
) -> Result<Vec<Arc<Pos>>, String> {
    let mut terminals = Vec::with_capacity(count);
    for terminal_id in sandbox::TERMINALS.iter().take(count) {
        let link = Link::start(switch, TERMINAL_TIMEOUT, stopped.clone());
        let pos = Pos::new(
            TerminalConfig {
                terminal_id: (*terminal_id).into(),
                merchant_id: sandbox::MERCHANT_ID.into(),
                merchant_category: sandbox::MERCHANT_CATEGORY.into(),
                merchant_name: sandbox::MERCHANT_NAME.into(),
                acquirer_id: sandbox::ACQUIRER_ID.into(),
                no_pin_limit: Money::new(NO_PIN_LIMIT_FEN, Currency::CNY),
                reversal_attempts: 3,
            },
            master_key,
            link,
            Arc::new(SystemClock),
            Arc::new(OsRandom),
        )
        .map_err(|e| e.to_string())?;
        let mut signed_on = false;
        for _ in 0..100 {
            if pos.sign_on().await.is_ok() {
                signed_on = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !signed_on {
            return Err(format!("terminal {terminal_id} could not sign on"));
        }
        terminals.push(Arc::new(pos));
    }
    Ok(terminals)
}

/// A cryptogram the switch approved, kept to be replayed.
struct Approved {
    track2: String,
    field55: Vec<u8>,
    amount: u64,
}

/// One phone paying at one terminal until told to stop.
pub struct Worker {
    pub phone: ChaosPhone,
    pub pos: Arc<Pos>,
    pub terminal: &'static str,
    pub random: SeededRandom,
    pub record: Arc<Record>,
    /// The last purchase could not be sent.
    pub link_down: bool,
    /// Offline spends not cleared yet.
    pub batch: Batch,
}

impl Worker {
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> WorkerEnd {
        let mut last_approved: Option<(usize, Approved)> = None;
        let mut owed_voids = Vec::new();
        while !*stop.borrow() {
            let roll = self.random.below(100);
            match (roll, &last_approved) {
                (0..8, Some((index, _))) => {
                    let index = *index;
                    last_approved = None;
                    if !self.void(index).await {
                        owed_voids.push((Arc::clone(&self.pos), index));
                    }
                }
                (8..12, Some((_, approved))) => {
                    let (track2, field55, amount) = (
                        approved.track2.clone(),
                        approved.field55.clone(),
                        approved.amount,
                    );
                    let prepared = self.prepare(amount, &track2, &field55, None);
                    self.send(Kind::Replay, amount, prepared).await;
                }
                (12..17, _) => self.in_app(1 + self.random.below(300)).await,
                (17..19, _) => self.load(500 + self.random.below(1_500)).await,
                (19..27, _) => {
                    self.offline(1 + self.random.below(MOST_WITHOUT_PIN_FEN))
                        .await
                }
                _ => {
                    let with_pin = self.random.below(5) == 0;
                    let amount = if with_pin {
                        NO_PIN_LIMIT_FEN + 1 + self.random.below(200)
                    } else {
                        1 + self.random.below(MOST_WITHOUT_PIN_FEN)
                    };
                    if let Some(approved) = self.tap(amount, with_pin).await {
                        last_approved = Some(approved);
                    }
                }
            }
            // A little time between customers, more when the link is down; a stop ends the
            // wait.
            let pause =
                Duration::from_millis(self.random.below(40) + if self.link_down { 200 } else { 0 });
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
        WorkerEnd {
            owed_voids,
            pos: Arc::clone(&self.pos),
            batch: std::mem::take(&mut self.batch),
            ecash: self
                .phone
                .phone
                .ecash_balance()
                .map(|balance| (self.phone.card, balance.minor_units())),
        }
    }

    /// A tap without PIN, whatever its answer; the index of its attempt in the record.
    pub async fn tap_once(&mut self, amount: u64) -> Option<usize> {
        let tap = self.phone_tap(amount)?;
        let prepared = self.prepare(amount, &tap.track2, &tap.field55, None);
        self.send(Kind::Tap, amount, prepared)
            .await
            .map(|(index, _)| index)
    }

    /// The phone's cryptogram for `amount` fen at this terminal.
    fn phone_tap(&mut self, amount: u64) -> Option<cloudpass_sim::phone::Tap> {
        let money = Money::new(amount, Currency::CNY);
        self.phone
            .phone
            .tap(&self.pos.terminal_data(money), false)
            .ok()
    }

    /// A fresh tap; the approved one's cryptogram, to replay.
    async fn tap(&mut self, amount: u64, with_pin: bool) -> Option<(usize, Approved)> {
        let tap = self.phone_tap(amount)?;
        let pin = with_pin
            .then(|| Pin::parse(CARDS[self.phone.card].pin).ok())
            .flatten();
        let kind = if with_pin {
            Kind::TapWithPin
        } else {
            Kind::Tap
        };
        let prepared = self.prepare(amount, &tap.track2, &tap.field55, pin.as_ref());
        let (index, approved) = self.send(kind, amount, prepared).await?;
        if !approved {
            return None;
        }
        Some((
            index,
            Approved {
                track2: tap.track2,
                field55: tap.field55,
                amount,
            },
        ))
    }

    /// A contactless purchase of `amount` fen with `track2` and `field55`, numbered.
    fn prepare(
        &self,
        amount: u64,
        track2: &str,
        field55: &[u8],
        pin: Option<&Pin>,
    ) -> Result<PreparedPurchase, AcquirerError> {
        self.pos.terminal().prepare_purchase(&Purchase {
            account: self.phone.phone.token(),
            expiry: Some(self.phone.phone.expiry()),
            amount: Money::new(amount, Currency::CNY),
            field55,
            presentment: Presentment::Contactless { track2 },
            pin,
        })
    }

    /// An in-app purchase: the payment password (the card's PIN here) when the app asks.
    async fn in_app(&mut self, amount: u64) {
        let money = Money::new(amount, Currency::CNY);
        let terminal_data = self.pos.terminal_data(money);
        let Ok(cryptogram) = self.phone.phone.in_app(&terminal_data, false) else {
            return;
        };
        let password = cryptogram
            .needs_password
            .then(|| Pin::parse(CARDS[self.phone.card].pin).ok())
            .flatten();
        let prepared = self.pos.terminal().prepare_purchase(&Purchase {
            account: self.phone.phone.token(),
            expiry: Some(self.phone.phone.expiry()),
            amount: money,
            field55: &cryptogram.field55,
            presentment: Presentment::InApp,
            pin: password.as_ref(),
        });
        self.send(Kind::InApp, amount, prepared).await;
    }

    /// A load of the phone's e-cash from the card's account, with the payment password; the
    /// phone takes the money only when the load is approved.
    async fn load(&mut self, amount: u64) {
        let money = Money::new(amount, Currency::CNY);
        let terminal_data = self.pos.terminal_data(money);
        let Ok(cryptogram) = self.phone.phone.in_app(&terminal_data, false) else {
            return;
        };
        let password = Pin::parse(CARDS[self.phone.card].pin).ok();
        let prepared = self.pos.terminal().prepare_ecash_load(&Purchase {
            account: self.phone.phone.token(),
            expiry: Some(self.phone.phone.expiry()),
            amount: money,
            field55: &cryptogram.field55,
            presentment: Presentment::InApp,
            pin: password.as_ref(),
        });
        if let Some((_, true)) = self.send(Kind::EcashLoad, amount, prepared).await {
            let _ = self.phone.phone.credit_ecash(money);
        }
    }

    /// An offline spend from the phone's e-cash, kept in the terminal's batch; the batch is
    /// uploaded once it holds a few.
    async fn offline(&mut self, amount: u64) {
        let money = Money::new(amount, Currency::CNY);
        let terminal_data = self.pos.terminal_data(money);
        let Some(before) = self.phone.phone.ecash_balance() else {
            return;
        };
        let Ok(spend) = self.phone.phone.offline_tap(&terminal_data) else {
            return;
        };
        let mut advice =
            self.pos
                .offline_advice(self.phone.phone.token(), self.phone.phone.expiry(), &spend);
        if advice.is_err() {
            let _ = self.pos.sign_on().await;
            advice = self.pos.offline_advice(
                self.phone.phone.token(),
                self.phone.phone.expiry(),
                &spend,
            );
        }
        let Ok(advice) = advice else {
            // The terminal could not take the spend: it did not happen, the card keeps its
            // money.
            self.phone.phone.restore_ecash(before.minor_units());
            return;
        };
        let index = self.record.push_offline(OfflineSpend {
            terminal: self.terminal,
            card: self.phone.card,
            stan: advice.get_str(11).unwrap_or_default().to_owned(),
            transmission_time: advice.get_str(7).unwrap_or_default().to_owned(),
            amount,
            cleared: None,
        });
        self.batch.push((index, advice));
        if self.batch.len() >= 4 {
            let batch = std::mem::take(&mut self.batch);
            self.batch = upload(&self.pos, &self.record, batch).await;
        }
    }

    /// Sends one purchase and records what the terminal saw; the attempt's index and whether
    /// it was approved (none when the terminal could not prepare it).
    async fn send(
        &mut self,
        kind: Kind,
        amount: u64,
        prepared: Result<PreparedPurchase, AcquirerError>,
    ) -> Option<(usize, bool)> {
        let terminal = self.pos.terminal();
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(_) => {
                let _ = self.pos.sign_on().await;
                return None;
            }
        };
        let (stan, transmission_time) = (
            prepared.stan().to_owned(),
            prepared.transmission_time().to_owned(),
        );
        let answer = match terminal.send_prepared(prepared).await {
            Ok(outcome) => answer_of(&outcome),
            Err(_) => Answer::NotSent,
        };
        if answer == Answer::Declined("A0".into()) {
            let _ = self.pos.sign_on().await;
        }
        let approved = answer == Answer::Approved;
        self.link_down = answer == Answer::NotSent;
        let index = self.record.push(Attempt {
            terminal: self.terminal,
            card: self.phone.card,
            kind,
            stan,
            transmission_time,
            amount,
            answer,
            void: None,
        });
        Some((index, approved))
    }

    /// Voids an approved sale; whether the switch acknowledged it.
    async fn void(&self, index: usize) -> bool {
        void(&self.pos, &self.record, index).await
    }
}

/// Uploads `batch` once; what is left without a final answer (none, A0 or 96: sent again
/// after signing on).
pub async fn upload(pos: &Pos, record: &Record, batch: Batch) -> Batch {
    if batch.is_empty() {
        return batch;
    }
    let messages: Vec<Message<'static>> = batch.iter().map(|(_, advice)| advice.clone()).collect();
    let answers = pos.upload(&messages).await;
    let mut left = Vec::new();
    let mut sign_on = false;
    for ((index, advice), answer) in batch.into_iter().zip(answers) {
        match answer {
            Some(code) if code != "A0" && code != "96" => record.set_cleared(index, code),
            Some(_) => {
                sign_on = true;
                left.push((index, advice));
            }
            None => left.push((index, advice)),
        }
    }
    if sign_on {
        let _ = pos.sign_on().await;
    }
    left
}

/// Sends the void of attempt `index` once (the terminal repeats it a few times); whether the
/// switch acknowledged it.
pub async fn void(pos: &Pos, record: &Record, index: usize) -> bool {
    let Some(attempt) = record.snapshot().get(index).cloned() else {
        return true;
    };
    let answer = pos
        .terminal()
        .reverse_purchase(
            &attempt.stan,
            &attempt.transmission_time,
            Money::new(attempt.amount, Currency::CNY),
        )
        .await;
    match answer {
        Some(code) if code != "A0" && code != "96" => {
            record.tally.voids.fetch_add(1, Ordering::Relaxed);
            record.set_void(index, Void::Acknowledged(code));
            true
        }
        _ => {
            record.set_void(index, Void::Owed);
            false
        }
    }
}

fn answer_of(outcome: &Outcome) -> Answer {
    match &outcome.response_code {
        Some(code) if code == "00" => Answer::Approved,
        Some(code) => Answer::Declined(code.clone()),
        None => Answer::Unanswered,
    }
}

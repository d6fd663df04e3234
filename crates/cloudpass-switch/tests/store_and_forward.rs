//! The switch inside its own crate: the real acquirer terminal and the real issuer host, each
//! reached through the port handler its TCP port runs (`InProcess`), on a manual clock — so
//! that what depends on time (store and forward's waits) is tested without waiting, and a
//! fault on the issuer link happens exactly where the test puts it.
//!
//! Every test runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cloudpass_acquirer::{EcommerceTerminal, Presentment, Purchase, Terminal, TerminalConfig};
use cloudpass_core::{Clock, Currency, Expiry, ManualClock, Money, Pan, Random, SeededRandom};
use cloudpass_crypto::{Hsm, KeyUsage, MasterKey, SoftHsm};
use cloudpass_iso8583::Message;
use cloudpass_iso8583::exchange::{Answer, Exchange, LinkError};
use cloudpass_iso8583::in_process::InProcess;
use cloudpass_sim::issuer_host::{IssuerHost, IssuerHostConfig, SimCard};
use cloudpass_store::TokenStore;
use cloudpass_store::testing::{Backend, TestStore, fresh};
use cloudpass_switch::participants::{Acquirer, Merchant};
use cloudpass_switch::vault::{BoxFuture, TokenVault, VaultError, VaultRecord};
use cloudpass_switch::{ForwardPass, Switch, SwitchConfig, SwitchParts};

/// 2026-12-01 00:00 UTC.
const START: i64 = 1_796_083_200_000;
/// A credit card from UnionPay's published test cards, with its CVN2: card-not-present
/// payments with it need no PIN and no token.
const CARD: &str = "6226388000000095";
const CVN2: &str = "248";
const CREDIT_LIMIT: i64 = 1_000_000;

const ACQUIRER: &str = "48021000";
const MERCHANT: &str = "777290058110097";
const TERMINAL: &str = "CPTEST01";

/// Store and forward's first wait and its longest.
const POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// The issuer link as the test sets it: passing messages, down (nothing is sent), or losing
/// the issuer's answers (the issuer acts; the switch hears nothing and times out).
struct IssuerLine {
    issuer: InProcess<IssuerHost>,
    state: AtomicU8,
}

const PASS: u8 = 0;
const DOWN: u8 = 1;
const LOSE_ANSWERS: u8 = 2;

impl IssuerLine {
    fn set(&self, state: u8) {
        self.state.store(state, Ordering::SeqCst);
    }
}

impl Exchange for IssuerLine {
    fn request<'a>(&'a self, message: &'a Message<'_>) -> Answer<'a> {
        Box::pin(async move {
            match self.state.load(Ordering::SeqCst) {
                DOWN => Err(LinkError::Down),
                LOSE_ANSWERS => {
                    let _lost = self.issuer.request(message).await;
                    Err(LinkError::Timeout)
                }
                _ => self.issuer.request(message).await,
            }
        })
    }

    fn is_up(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move { self.state.load(Ordering::SeqCst) != DOWN })
    }
}

/// A card-not-present purchase of `amount` (minor units) at `terminal`.
async fn pay_at(terminal: &Terminal, amount: u64) -> cloudpass_acquirer::Outcome {
    let pan = Pan::parse(CARD).unwrap();
    terminal
        .purchase(&Purchase {
            account: &pan,
            expiry: Some("3012".parse::<Expiry>().unwrap()),
            amount: Money::new(amount, Currency::CNY),
            field55: &[],
            presentment: Presentment::CardNotPresent {
                cvn2: Some(CVN2),
                terminal_type: EcommerceTerminal::Pc,
            },
            pin: None,
        })
        .await
        .expect("the purchase is sent")
}

/// The acquirer's line to the switch, which can hold back purchases (0200): the terminal
/// hears nothing and reverses, and the test delivers the held purchase afterwards — a
/// reversal overtaking its original, as when the original waited in a congested connection.
struct AcquirerLine {
    switch: InProcess<Switch>,
    hold_purchases: std::sync::atomic::AtomicBool,
    held: std::sync::Mutex<Vec<Message<'static>>>,
}

impl Exchange for AcquirerLine {
    fn request<'a>(&'a self, message: &'a Message<'_>) -> Answer<'a> {
        Box::pin(async move {
            if self.hold_purchases.load(Ordering::SeqCst) && message.mti().as_str() == "0200" {
                self.held.lock().unwrap().push(message.clone().into_owned());
                return Err(LinkError::Timeout);
            }
            self.switch.request(message).await
        })
    }

    fn is_up(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async { true })
    }
}

/// These tests pay with typed card numbers: the switch never looks a token up.
struct NoTokens;

impl TokenVault for NoTokens {
    fn lookup<'a>(
        &'a self,
        _token_number: &'a str,
    ) -> BoxFuture<'a, Result<Option<VaultRecord>, VaultError>> {
        Box::pin(async { Ok(None) })
    }
}

struct Network {
    clock: Arc<ManualClock>,
    random: Arc<dyn Random>,
    bank: Arc<IssuerHost>,
    line: Arc<IssuerLine>,
    hsm: Arc<SoftHsm>,
    store: TestStore,
    switch: Arc<Switch>,
    terminal: Terminal,
    bank_dir: std::path::PathBuf,
}

static DIRECTORIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Network {
    async fn start(backend: Backend) -> Network {
        let clock = Arc::new(ManualClock::new(START));
        let random: Arc<dyn Random> = Arc::new(SeededRandom::new(7));
        let bank_dir = std::env::temp_dir().join(format!(
            "cloudpass-switch-test-{}-{}",
            std::process::id(),
            DIRECTORIES.fetch_add(1, Ordering::Relaxed)
        ));
        let bank = Arc::new(
            IssuerHost::open(
                &bank_dir.join("bank.sqlite"),
                MasterKey::generate(random.as_ref()),
                bank_config(),
                Arc::clone(&clock) as Arc<dyn Clock>,
                Arc::clone(&random),
            )
            .await
            .expect("the issuer host opens"),
        );
        bank.add_card(&card()).await.expect("the card is issued");
        let line = Arc::new(IssuerLine {
            issuer: InProcess::new(Arc::clone(&bank)),
            state: AtomicU8::new(PASS),
        });
        let hsm = Arc::new(SoftHsm::new(
            MasterKey::generate(random.as_ref()),
            Arc::clone(&random),
        ));
        let store = fresh(backend).await.expect("a fresh store");
        let switch = new_switch(&clock, &bank, &line, &hsm, &store, random.as_ref());
        let terminal = Terminal::new(
            terminal_config(),
            terminal_master(),
            Arc::new(InProcess::new(Arc::clone(&switch))),
            Arc::clone(&clock) as Arc<dyn Clock>,
            Arc::clone(&random),
        )
        .expect("a terminal");
        terminal.sign_on().await.expect("the terminal signs on");
        Network {
            clock,
            random,
            bank,
            line,
            hsm,
            store,
            switch,
            terminal,
            bank_dir,
        }
    }

    /// The switch stopped and started again on the same store (its memory lost, as after a
    /// crash).
    fn restart_switch(&mut self) {
        self.switch = new_switch(
            &self.clock,
            &self.bank,
            &self.line,
            &self.hsm,
            &self.store,
            self.random.as_ref(),
        );
    }

    async fn pay(&self, amount: u64) -> cloudpass_acquirer::Outcome {
        pay_at(&self.terminal, amount).await
    }

    /// What the card has spent at the bank (minor units).
    async fn spent(&self) -> i64 {
        let (balance, _) = self.bank.card_balance(CARD).await.unwrap();
        -balance
    }

    async fn forward(&self) -> ForwardPass {
        self.switch
            .forward_due_advices()
            .await
            .expect("the queue is read")
    }

    fn advance(&self, by: Duration) {
        self.clock
            .advance(i64::try_from(by.as_millis()).expect("a short wait"));
    }

    async fn books_balance(&self) {
        let (debits, credits) = self.bank.ledger_totals().await.unwrap();
        assert_eq!(debits, credits, "the bank's ledger balances");
    }

    async fn stop(self) {
        self.store.cleanup().await;
        let _ = std::fs::remove_dir_all(&self.bank_dir);
    }
}

fn new_switch(
    clock: &Arc<ManualClock>,
    bank: &IssuerHost,
    line: &Arc<IssuerLine>,
    hsm: &Arc<SoftHsm>,
    store: &TestStore,
    random: &dyn Random,
) -> Arc<Switch> {
    // The key ceremony: the bank's zone PIN key reaches the switch under a zone master key
    // both hold.
    let mut zone_master = [0u8; 16];
    random.fill(&mut zone_master);
    let bank_kek = bank.import_zone_master_key(&zone_master).unwrap();
    let (wrapped, check_value) = bank.export_zone_pin_key(bank_kek).unwrap();
    let switch_kek = hsm
        .import_clear(KeyUsage::ZoneMaster, &zone_master)
        .unwrap();
    let issuer_pin_key = hsm
        .import_under_kek(
            switch_kek,
            KeyUsage::PinEncryption,
            &wrapped,
            Some(check_value),
        )
        .unwrap();
    let switch = Arc::new(Switch::new(SwitchParts {
        vault: Arc::new(NoTokens),
        hsm: Arc::clone(hsm) as Arc<dyn Hsm>,
        issuer: Arc::clone(line) as Arc<dyn Exchange>,
        issuer_pin_key,
        store: store.store.clone(),
        clock: Arc::clone(clock) as Arc<dyn Clock>,
        config: SwitchConfig {
            saf_poll: POLL,
            saf_max_backoff: MAX_BACKOFF,
            ..SwitchConfig::default()
        },
    }));
    switch
        .register_acquirer(Acquirer {
            id: ACQUIRER.into(),
            name: "switch test acquirer".into(),
            mac_required: true,
            card_not_present: true,
        })
        .unwrap();
    switch
        .register_merchant(Merchant {
            id: MERCHANT.into(),
            acquirer_id: ACQUIRER.into(),
        })
        .unwrap();
    let master = hsm
        .import_clear(KeyUsage::TerminalMaster, terminal_master())
        .unwrap();
    switch
        .register_terminal(ACQUIRER, MERCHANT, TERMINAL, master)
        .unwrap();
    switch
}

/// The terminal's master key from the key ceremony (fixed: only this test holds it).
fn terminal_master() -> &'static [u8] {
    static KEY: OnceLock<[u8; 16]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 16];
        SeededRandom::new(11).fill(&mut key);
        key
    })
}

fn terminal_config() -> TerminalConfig {
    TerminalConfig {
        terminal_id: TERMINAL.into(),
        merchant_id: MERCHANT.into(),
        merchant_category: "5999".into(),
        merchant_name: "switch test shop         Shanghai    CHN".into(),
        acquirer_id: ACQUIRER.into(),
        no_pin_limit: Money::new(0, Currency::CNY),
        reversal_attempts: 3,
    }
}

fn bank_config() -> IssuerHostConfig {
    IssuerHostConfig {
        issuer_id: "switch-test-bank".into(),
        bank_name: "Switch Test Bank".into(),
        shared_secret: b"not used: no token service here".to_vec(),
        tsp_url: "http://127.0.0.1:9".into(),
        tsp_api_key: "not used".into(),
        signature_tolerance_seconds: 300,
        extra_root: None,
        operator_key: "not used".into(),
    }
}

fn card() -> SimCard {
    SimCard {
        number: CARD.into(),
        expiry: "3012".into(),
        cvn2: Some(CVN2.into()),
        phone: "18100000000".into(),
        holder_name: "Test Holder".into(),
        funding: "credit".into(),
        product: "credit".into(),
        provisioning: "green".into(),
        pin: None,
        currency: 156,
        opening_balance: 0,
        credit_limit: CREDIT_LIMIT,
        daily_limit: CREDIT_LIMIT,
    }
}

cloudpass_store::on_both_stores!(
    an_answer_lost_on_its_way_back_is_reversed_once,
    a_reversal_waits_longer_after_each_failure_and_is_delivered_once,
    queued_advices_survive_a_switch_restart,
    a_reversal_that_overtakes_its_original_bars_it,
    a_return_whose_answer_was_lost_is_asked_again_and_posted_once,
);

/// A refund the issuer posts while its answer is lost: the acquirer hears 68 — not a
/// refusal, since the issuer did act — and sends the same refund again. The switch asks the
/// issuer again instead of repeating its own 68; the issuer answers from its record and posts
/// nothing twice; the journal then holds the issuer's 00, and a third repeat is answered from
/// it. (Chaos seeds 3 and 4 found refunds recorded as failed that the issuer had posted.)
async fn a_return_whose_answer_was_lost_is_asked_again_and_posted_once(backend: Backend) {
    use cloudpass_acquirer::ReturnKind;
    let network = Network::start(backend).await;
    let paid = network.pay(50_00).await;
    assert_eq!(paid.response_code.as_deref(), Some("00"), "{paid:?}");
    let refund = network
        .terminal
        .card_return(
            ReturnKind::Refund,
            (&paid).into(),
            None,
            Money::new(20_00, Currency::CNY),
        )
        .unwrap();

    network.line.set(LOSE_ANSWERS);
    let lost = network.terminal.send_return(&refund).await.unwrap();
    assert_eq!(lost.response_code.as_deref(), Some("68"), "{lost:?}");
    assert_eq!(network.spent().await, 30_00, "the issuer posted the refund");

    network.line.set(PASS);
    let again = network.terminal.send_return(&refund).await.unwrap();
    assert_eq!(again.response_code.as_deref(), Some("00"), "{again:?}");
    assert_eq!(network.spent().await, 30_00, "posted once");
    let journaled = network
        .store
        .store
        .journal_entry(&format!(
            "0220:{ACQUIRER}:{}:{}",
            refund.stan(),
            refund.transmission_time()
        ))
        .await
        .unwrap()
        .expect("the refund is journaled");
    assert_eq!(journaled.response_code.as_deref(), Some("00"));
    assert_eq!(journaled.issuer_outcome.as_deref(), Some("answered"));

    // Decided now: a repeat is answered from the journal, even with the issuer unreachable.
    network.line.set(DOWN);
    let third = network.terminal.send_return(&refund).await.unwrap();
    assert_eq!(third.response_code.as_deref(), Some("00"), "{third:?}");
    assert_eq!(network.spent().await, 30_00);
    network.books_balance().await;
    network.stop().await;
}

/// The issuer approves and posts, its answer is lost: the acquirer hears 68, and the switch
/// undoes the payment at the issuer by a reversal advice — once, however often the queue is
/// looked at afterwards.
async fn an_answer_lost_on_its_way_back_is_reversed_once(backend: Backend) {
    let network = Network::start(backend).await;
    let paid = network.pay(12_00).await;
    assert_eq!(paid.response_code.as_deref(), Some("00"), "{paid:?}");
    assert_eq!(network.spent().await, 12_00);

    network.line.set(LOSE_ANSWERS);
    let lost = network.pay(30_00).await;
    assert_eq!(lost.response_code.as_deref(), Some("68"), "{lost:?}");
    assert_eq!(network.spent().await, 42_00, "the issuer posted it");

    network.line.set(PASS);
    assert_eq!(
        network.forward().await,
        ForwardPass {
            acknowledged: 1,
            retried: 0
        }
    );
    assert_eq!(network.spent().await, 12_00, "reversed at the issuer");
    network.advance(Duration::from_secs(3_600));
    assert_eq!(network.forward().await, ForwardPass::default());
    assert_eq!(network.spent().await, 12_00, "reversed once");
    network.books_balance().await;
    network.stop().await;
}

/// An acquirer's reversal while the issuer is unreachable is acknowledged at once and kept:
/// each failed delivery doubles the wait (1, 2, 4, 8 s, then 8 s), an advice is never sent
/// before it is due, and once the issuer is back the payment is undone exactly once — a
/// repeated reversal from the terminal queues nothing more.
async fn a_reversal_waits_longer_after_each_failure_and_is_delivered_once(backend: Backend) {
    let network = Network::start(backend).await;
    let paid = network.pay(50_00).await;
    assert_eq!(paid.response_code.as_deref(), Some("00"), "{paid:?}");
    assert_eq!(network.spent().await, 50_00);

    network.line.set(DOWN);
    let amount = Money::new(50_00, Currency::CNY);
    let reversed = network
        .terminal
        .reverse_purchase(&paid.stan, &paid.transmission_time, amount)
        .await;
    assert_eq!(reversed.as_deref(), Some("00"), "acknowledged while down");

    let failed_once = ForwardPass {
        acknowledged: 0,
        retried: 1,
    };
    assert_eq!(network.forward().await, failed_once, "the first try");
    for wait in [1, 2, 4, 8, 8] {
        let wait = Duration::from_secs(wait);
        network.advance(wait - Duration::from_millis(1));
        assert_eq!(
            network.forward().await,
            ForwardPass::default(),
            "not due before {wait:?}"
        );
        network.advance(Duration::from_millis(1));
        assert_eq!(network.forward().await, failed_once, "due after {wait:?}");
    }
    assert_eq!(network.spent().await, 50_00, "nothing reached the issuer");

    // The terminal, unsure, sends the reversal again: answered as before, nothing queued.
    let again = network
        .terminal
        .reverse_purchase(&paid.stan, &paid.transmission_time, amount)
        .await;
    assert_eq!(again.as_deref(), Some("00"));

    network.line.set(PASS);
    network.advance(MAX_BACKOFF);
    assert_eq!(
        network.forward().await,
        ForwardPass {
            acknowledged: 1,
            retried: 0
        }
    );
    assert_eq!(network.spent().await, 0, "the payment is undone");
    network.advance(Duration::from_secs(3_600));
    assert_eq!(network.forward().await, ForwardPass::default());
    assert_eq!(network.spent().await, 0, "undone once");
    network.books_balance().await;
    network.stop().await;
}

/// The queue is in the store, not the switch's memory: advices taken while the issuer was
/// down are delivered by the switch that starts after a crash.
async fn queued_advices_survive_a_switch_restart(backend: Backend) {
    let mut network = Network::start(backend).await;
    network.line.set(LOSE_ANSWERS);
    let lost = network.pay(20_00).await;
    assert_eq!(lost.response_code.as_deref(), Some("68"), "{lost:?}");
    network.line.set(DOWN);
    assert_eq!(network.forward().await.retried, 1);
    assert_eq!(network.spent().await, 20_00);

    network.restart_switch();
    network.line.set(PASS);
    network.advance(POLL);
    assert_eq!(network.forward().await.acknowledged, 1);
    assert_eq!(network.spent().await, 0);
    network.books_balance().await;
    network.stop().await;
}

/// A reversal that reaches the switch before its original (seed 6 of the chaos run: both
/// waited in a connection while the platform restarted, and the reversal was worked first)
/// is answered 25 and bars the original: when the purchase arrives after all it is answered
/// 94 and never reaches the issuer, so the terminal's "no sale" holds at the bank.
async fn a_reversal_that_overtakes_its_original_bars_it(backend: Backend) {
    let network = Network::start(backend).await;
    let line = Arc::new(AcquirerLine {
        switch: InProcess::new(Arc::clone(&network.switch)),
        hold_purchases: std::sync::atomic::AtomicBool::new(true),
        held: std::sync::Mutex::new(Vec::new()),
    });
    let terminal = Terminal::new(
        terminal_config(),
        terminal_master(),
        Arc::clone(&line) as Arc<dyn Exchange>,
        Arc::clone(&network.clock) as Arc<dyn Clock>,
        Arc::clone(&network.random),
    )
    .expect("a terminal");
    terminal.sign_on().await.expect("the terminal signs on");
    let unanswered = pay_at(&terminal, 36_00).await;
    assert_eq!(unanswered.response_code, None, "{unanswered:?}");
    assert_eq!(
        unanswered.reversal.as_deref(),
        Some("25"),
        "the switch never saw the original"
    );

    let held = line.held.lock().unwrap().pop().expect("the held purchase");
    let late = line.switch.request(&held).await.expect("an answer");
    assert_eq!(late.get_str(39), Some("94"), "the late original is refused");
    assert_eq!(network.spent().await, 0, "nothing reached the issuer");
    network.advance(Duration::from_secs(3_600));
    assert_eq!(network.forward().await, ForwardPass::default());
    assert_eq!(network.spent().await, 0);
    network.books_balance().await;
    network.stop().await;
}

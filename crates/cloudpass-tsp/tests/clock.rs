//! The token service in its own crate, on a manual clock: the real issuer host answers its
//! questions in the same process (`BankInProcess`, the very methods its HTTP endpoints call),
//! and what depends on time — a step-up code's life, how long a vault cache may serve what
//! another instance has changed — is tested by moving the clock, not by waiting.
//!
//! Every test runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloudpass_core::lifecycle::{LifecycleEvent, SuspendReason, TokenStatus};
use cloudpass_core::{Clock, ManualClock, Random, SeededRandom};
use cloudpass_crypto::{DeviceKeyPair, Hsm, MasterKey, SoftHsm};
use cloudpass_issuer_api::{
    ApprovalRequest, ApprovalResponse, EligibilityRequest, EligibilityResponse, PasscodeRequest,
    PasscodeResponse,
};
use cloudpass_sim::issuer_host::{IssuerHost, IssuerHostConfig, SimCard};
use cloudpass_store::testing::{Backend, TestStore, fresh};
use cloudpass_store::{BinRangeRow, IssuerRow, ProductRow, TokenRequestorRow, TokenStore};
use cloudpass_tsp::http::api_key_hash;
use cloudpass_tsp::issuer_client::{BoxFuture, IssuerClient, IssuerEndpoint};
use cloudpass_tsp::service::{CardData, ProvisionRequest};
use cloudpass_tsp::{Principal, Tsp, TspConfig, TspError, TspResult};

/// 2026-12-01 00:00 UTC.
const START: i64 = 1_796_083_200_000;
const ISSUER: &str = "clock-test-bank";
const WALLET: &str = "40010030273";
const ACCOUNT: &str = "holder@clock-test";
const PHONE: &str = "18100000000";
/// UnionPay's published test cards: a debit card the bank provisions at once (green) and a
/// credit card it asks a code for (yellow).
const GREEN_CARD: &str = "6226090000000048";
const YELLOW_CARD: &str = "6226388000000095";
const YELLOW_CVN2: &str = "248";

/// The bank's side of the issuer protocol, called in this process.
struct BankInProcess(Arc<IssuerHost>);

fn unavailable(error: cloudpass_sim::issuer_host::SimError) -> TspError {
    TspError::IssuerUnavailable(error.to_string())
}

impl IssuerClient for BankInProcess {
    fn check_eligibility<'a>(
        &'a self,
        _issuer: &'a IssuerEndpoint,
        request: &'a EligibilityRequest,
    ) -> BoxFuture<'a, TspResult<EligibilityResponse>> {
        Box::pin(async move { self.0.check_eligibility(request).await.map_err(unavailable) })
    }

    fn approve_provision<'a>(
        &'a self,
        _issuer: &'a IssuerEndpoint,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, TspResult<ApprovalResponse>> {
        Box::pin(async move { self.0.approve_provision(request).await.map_err(unavailable) })
    }

    fn send_passcode<'a>(
        &'a self,
        _issuer: &'a IssuerEndpoint,
        request: &'a PasscodeRequest,
    ) -> BoxFuture<'a, TspResult<PasscodeResponse>> {
        Box::pin(async move { self.0.send_passcode(request).await.map_err(unavailable) })
    }
}

struct Setup {
    clock: Arc<ManualClock>,
    random: Arc<dyn Random>,
    hsm: Arc<SoftHsm>,
    bank: Arc<IssuerHost>,
    store: TestStore,
    tsp: Tsp,
    wallet: TokenRequestorRow,
    device_id: String,
    bank_dir: std::path::PathBuf,
}

static DIRECTORIES: AtomicU64 = AtomicU64::new(0);

impl Setup {
    async fn start(backend: Backend, config: TspConfig) -> Setup {
        let clock = Arc::new(ManualClock::new(START));
        let random: Arc<dyn Random> = Arc::new(SeededRandom::new(5));
        let bank_dir = std::env::temp_dir().join(format!(
            "cloudpass-tsp-test-{}-{}",
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
        for card in cards() {
            bank.add_card(&card).await.expect("the card is issued");
        }
        let store = fresh(backend).await.expect("a fresh store");
        let hsm = Arc::new(SoftHsm::new(
            MasterKey::generate(random.as_ref()),
            Arc::clone(&random),
        ));
        let tsp = new_tsp(&store, &hsm, &bank, &clock, &random, config).await;
        let wallet = enrol(&tsp).await;
        tsp.register_user(&wallet, ACCOUNT).await.unwrap();
        let device_key = DeviceKeyPair::generate(random.as_ref());
        let public_hex = cloudpass_core::hex::encode(&device_key.public_key());
        let device = tsp
            .register_device(
                &wallet,
                "clock-test-phone",
                "handset_se",
                "Clock Test Phone",
                Some(ACCOUNT),
                true,
                &public_hex,
            )
            .await
            .unwrap();
        Setup {
            clock,
            random,
            hsm,
            bank,
            store,
            tsp,
            wallet,
            device_id: device.device_id,
            bank_dir,
        }
    }

    /// Another token service instance on the same store and HSM (a second platform process).
    async fn second_instance(&self, config: TspConfig) -> Tsp {
        new_tsp(
            &self.store,
            &self.hsm,
            &self.bank,
            &self.clock,
            &self.random,
            config,
        )
        .await
    }

    fn provision_request(
        &self,
        number: &str,
        expiry: &str,
        cvn2: Option<&str>,
    ) -> ProvisionRequest {
        ProvisionRequest {
            device_id: self.device_id.clone(),
            account_id: ACCOUNT.into(),
            card: Some(CardData {
                number: number.into(),
                expiry: expiry.into(),
                cvn2: cvn2.map(Into::into),
            }),
            push_receipt: None,
            domains: None,
            ecash: false,
        }
    }

    /// The code in the bank's latest text to the cardholder.
    async fn latest_code(&self) -> String {
        let texts = self.bank.sms(PHONE).await.unwrap();
        let latest = texts.first().expect("a text was sent");
        latest
            .text
            .split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() == 6)
            .expect("a six-digit code")
            .to_owned()
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(i64::try_from(by.as_millis()).unwrap());
    }

    async fn stop(self) {
        self.store.cleanup().await;
        let _ = std::fs::remove_dir_all(&self.bank_dir);
    }
}

async fn new_tsp(
    store: &TestStore,
    hsm: &Arc<SoftHsm>,
    bank: &Arc<IssuerHost>,
    clock: &Arc<ManualClock>,
    random: &Arc<dyn Random>,
    config: TspConfig,
) -> Tsp {
    Tsp::new(
        store.store.clone(),
        Arc::clone(hsm) as Arc<dyn Hsm>,
        Arc::new(BankInProcess(Arc::clone(bank))),
        Arc::clone(clock) as Arc<dyn Clock>,
        Arc::clone(random),
        config,
    )
    .await
    .expect("the token service starts")
}

/// The bank, its BIN ranges and products, and one wallet, as an operator enrols them.
async fn enrol(tsp: &Tsp) -> TokenRequestorRow {
    let now = tsp.now();
    let issuer = IssuerRow {
        id: ISSUER.into(),
        name: "Clock Test Bank".into(),
        api_url: "in-process".into(),
        api_key_hash: api_key_hash("clock-test-bank-key"),
        webhook_url: None,
        webhook_secret: None,
        created_at: now,
    };
    let ranges = [
        ("622609", "card", "debit"),
        ("622638", "card", "credit"),
        ("623118", "token", "debit"),
        ("623128", "token", "credit"),
    ]
    .map(|(prefix, kind, product)| BinRangeRow {
        prefix: prefix.into(),
        kind: kind.into(),
        issuer_id: ISSUER.into(),
        product: product.into(),
        funding: product.into(),
    });
    let products = ["debit", "credit"].map(|product| ProductRow {
        issuer_id: ISSUER.into(),
        product: product.into(),
        currency: 156,
        contactless_no_pin_limit: 100_000,
        online_no_pin_limit: 50_000,
        updated_at: now,
        version: 0,
    });
    tsp.store()
        .insert_issuer(&issuer, &ranges, &products)
        .await
        .unwrap();
    let wallet = TokenRequestorRow {
        id: WALLET.into(),
        name: "Clock Test Pay".into(),
        wallet: "clocktestpay".into(),
        api_key_hash: api_key_hash("clock-test-wallet-key"),
        webhook_url: None,
        webhook_secret: None,
        created_at: now,
    };
    tsp.store().insert_token_requestor(&wallet).await.unwrap();
    tsp.reload_bins().await.unwrap();
    wallet
}

fn bank_config() -> IssuerHostConfig {
    IssuerHostConfig {
        issuer_id: ISSUER.into(),
        bank_name: "Clock Test Bank".into(),
        shared_secret: b"not used: called in process".to_vec(),
        tsp_url: "http://127.0.0.1:9".into(),
        tsp_api_key: "not used".into(),
        signature_tolerance_seconds: 300,
        extra_root: None,
        operator_key: "not used".into(),
    }
}

fn cards() -> [SimCard; 2] {
    let card = |number: &str, cvn2: Option<&str>, funding: &str, provisioning: &str| SimCard {
        number: number.into(),
        expiry: "3012".into(),
        cvn2: cvn2.map(Into::into),
        phone: PHONE.into(),
        holder_name: "Test Holder".into(),
        funding: funding.into(),
        product: funding.into(),
        provisioning: provisioning.into(),
        pin: Some("111101".into()),
        currency: 156,
        opening_balance: 100_000,
        credit_limit: 100_000,
        daily_limit: 100_000,
    };
    [
        card(GREEN_CARD, None, "debit", "green"),
        card(YELLOW_CARD, Some(YELLOW_CVN2), "credit", "yellow"),
    ]
}

cloudpass_store::on_both_stores!(
    a_step_up_code_lives_exactly_its_validity,
    another_instance_sees_a_change_within_its_cache_ttl,
);

/// A yellow card's code works until `otp_validity_ms` has passed and not a millisecond
/// after; a new code then gets a new life of its own.
async fn a_step_up_code_lives_exactly_its_validity(backend: Backend) {
    let config = TspConfig::default();
    let validity = Duration::from_millis(u64::try_from(config.otp_validity_ms).unwrap());
    let setup = Setup::start(backend, config).await;
    let outcome = setup
        .tsp
        .provision(
            &setup.wallet,
            setup.provision_request(YELLOW_CARD, "3012", Some(YELLOW_CVN2)),
        )
        .await
        .unwrap();
    assert_eq!(outcome.decision, "yellow");
    let step_up = outcome.step_up.expect("a step-up");
    assert_eq!(
        step_up.expires_at,
        START + i64::try_from(validity.as_millis()).unwrap()
    );
    let token_id = outcome.token.token_id;
    let first_code = setup.latest_code().await;

    setup.advance(validity + Duration::from_millis(1));
    let expired = setup
        .tsp
        .activate(&setup.wallet, &token_id, &first_code)
        .await;
    assert!(matches!(expired, Err(TspError::OtpExpired)), "{expired:?}");

    setup
        .tsp
        .resend_otp(&setup.wallet, &token_id)
        .await
        .unwrap();
    let second_code = setup.latest_code().await;
    setup.advance(validity);
    let activated = setup
        .tsp
        .activate(&setup.wallet, &token_id, &second_code)
        .await
        .expect("the new code works to the end of its life");
    assert_eq!(activated.token.status, "active");
    setup.stop().await;
}

/// Two instances on one store: a suspension made by one is seen by the other's vault once
/// its cache entry is older than the time to live — and not before, which is what the time
/// to live promises and no more.
async fn another_instance_sees_a_change_within_its_cache_ttl(backend: Backend) {
    let ttl = Duration::from_secs(5);
    let config = || TspConfig {
        vault_cache_ttl: Some(ttl),
        ..TspConfig::default()
    };
    let setup = Setup::start(backend, config()).await;
    let other = setup.second_instance(config()).await;
    let outcome = setup
        .tsp
        .provision(
            &setup.wallet,
            setup.provision_request(GREEN_CARD, "3012", None),
        )
        .await
        .unwrap();
    assert_eq!(outcome.decision, "green");
    let token_id = outcome.token.token_id;
    let number = setup
        .tsp
        .store()
        .token(&token_id)
        .await
        .unwrap()
        .unwrap()
        .token_number;
    assert_eq!(token_status(&other, &number).await, TokenStatus::Active);

    setup
        .tsp
        .token_event(
            &Principal::Wallet(setup.wallet.clone()),
            &token_id,
            LifecycleEvent::Suspend(SuspendReason::Lost),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        token_status(&setup.tsp, &number).await,
        TokenStatus::Suspended
    );
    setup.advance(ttl - Duration::from_millis(1));
    assert_eq!(
        token_status(&other, &number).await,
        TokenStatus::Active,
        "served from the other instance's cache within its time to live"
    );
    setup.advance(Duration::from_millis(1));
    assert_eq!(token_status(&other, &number).await, TokenStatus::Suspended);
    setup.stop().await;
}

async fn token_status(tsp: &Tsp, token_number: &str) -> TokenStatus {
    tsp.vault
        .detokenize(token_number)
        .await
        .unwrap()
        .expect("a known token")
        .token_status
}

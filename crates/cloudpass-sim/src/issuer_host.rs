//! The issuer host stand-in: a bank's side of the token service's issuer protocol
//! (checkEligibility, approveProvision, sendPasscode), its sandbox SMS inbox, and the bank's
//! back office reporting card events to the token service.
//!
//! It is another party, so it keeps its own database (an SQLite file) and its own keys (a
//! `SoftHsm` under its own master key): card numbers are stored encrypted and found by
//! fingerprint, CVN2s only as keyed hashes. Every call from the token service must carry a
//! valid signature under the shared secret.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloudpass_core::{AccountNumber, Clock, Expiry, Pan, Random};
use cloudpass_crypto::{Hsm, KeyHandle, KeyUsage, MasterKey, SoftHsm, WrappedKey, signature};
use cloudpass_issuer_api::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// How the stand-in is set up.
#[derive(Clone)]
pub struct IssuerHostConfig {
    /// The bank's ID at the token service.
    pub issuer_id: String,
    /// Signs text messages.
    pub bank_name: String,
    /// Shared with the token service: verifies its calls.
    pub shared_secret: Vec<u8>,
    /// Base URL of the token service, for the back office's card events.
    pub tsp_url: String,
    /// The bank's API key at the token service.
    pub tsp_api_key: String,
    /// How far a signed request's timestamp may be from now.
    pub signature_tolerance_seconds: i64,
    /// A PEM certificate trusted beside the platform's roots (the token service's, when the
    /// sandbox serves TLS).
    pub extra_root: Option<Vec<u8>>,
    /// The sandbox operator's key: reading the SMS inbox (every cardholder's one-time codes)
    /// needs it.
    pub operator_key: String,
}

/// A card to put on the bank's books.
#[derive(Debug, Clone, Deserialize)]
pub struct SimCard {
    pub number: String,
    pub expiry: String,
    pub cvn2: Option<String>,
    pub phone: String,
    pub holder_name: String,
    pub funding: String,
    pub product: String,
    /// `green` or `yellow`: how the bank answers a provisioning request for this card.
    pub provisioning: String,
    /// The card's PIN (its transaction password), if it has one.
    pub pin: Option<String>,
    /// ISO 4217 numeric currency of the account.
    pub currency: u16,
    /// Opening balance in minor units (debit cards).
    pub opening_balance: i64,
    /// Credit limit in minor units (credit cards).
    pub credit_limit: i64,
    /// Most the card may spend in a day, in minor units.
    pub daily_limit: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("issuer host database: {0}")]
    Database(String),
    #[error("issuer host keys: {0}")]
    Crypto(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("card not found")]
    CardNotFound,
    #[error("token service: {0}")]
    Tsp(String),
    /// The request contradicts one made before (a deposit reference reused).
    #[error("{0}")]
    Conflict(String),
}

impl From<sqlx::Error> for SimError {
    fn from(error: sqlx::Error) -> Self {
        SimError::Database(error.to_string())
    }
}

impl From<cloudpass_crypto::HsmError> for SimError {
    fn from(error: cloudpass_crypto::HsmError) -> Self {
        SimError::Crypto(error.to_string())
    }
}

/// A card as the bank holds it.
pub(crate) struct CardRecord {
    pub(crate) id: String,
    pub(crate) pan_last4: String,
    expiry: String,
    cvn2_hash: Option<Vec<u8>>,
    phone: String,
    funding: String,
    product: String,
    status: String,
    provisioning: String,
}

/// A text message the bank sent.
#[derive(Debug, Clone, Serialize)]
pub struct Sms {
    pub phone: String,
    pub text: String,
    pub sent_at: i64,
}

pub struct IssuerHost {
    pub(crate) pool: SqlitePool,
    pub(crate) hsm: SoftHsm,
    data_key: KeyHandle,
    fingerprint_key: KeyHandle,
    /// The zone PIN key: PIN blocks arrive encrypted under it, built with the card number.
    pub(crate) zone_pin_key: KeyHandle,
    /// The PIN verification key.
    pub(crate) pin_verification_key: KeyHandle,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn Random>,
    config: IssuerHostConfig,
    http: reqwest::Client,
    /// ISO 8583 messages waiting for the next group commit (see `issuer_iso`).
    pub(crate) waiting: std::sync::Mutex<Vec<crate::issuer_iso::Waiting>>,
    /// Held by whoever is committing a group.
    pub(crate) committer: tokio::sync::Mutex<()>,
}

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < 3 || i >= chars.len() - 4 {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

impl IssuerHost {
    /// Opens (or creates) the bank's database at `path`, under its own master key.
    pub async fn open(
        path: &Path,
        master: MasterKey,
        config: IssuerHostConfig,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Result<Self, SimError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                SimError::Database(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| SimError::Database(e.to_string()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        MIGRATIONS
            .run(&pool)
            .await
            .map_err(|e| SimError::Database(e.to_string()))?;
        let hsm = SoftHsm::new(master, Arc::clone(&random));
        let data_key = Self::key(&pool, &hsm, "data", KeyUsage::DataEncryption).await?;
        let fingerprint_key = Self::key(&pool, &hsm, "fingerprint", KeyUsage::Fingerprint).await?;
        let zone_pin_key = Self::key(&pool, &hsm, "zpk", KeyUsage::PinEncryption).await?;
        let pin_verification_key = Self::key(&pool, &hsm, "pvk", KeyUsage::PinVerification).await?;
        let http = cloudpass_http::client::builder(
            std::time::Duration::from_secs(10),
            config.extra_root.as_deref(),
        )
        .map_err(|e| SimError::Tsp(e.to_string()))?
        .build()
        .map_err(|e| SimError::Tsp(e.to_string()))?;
        Ok(Self {
            pool,
            hsm,
            data_key,
            fingerprint_key,
            zone_pin_key,
            pin_verification_key,
            clock,
            random,
            config,
            http,
            waiting: std::sync::Mutex::new(Vec::new()),
            committer: tokio::sync::Mutex::new(()),
        })
    }

    async fn key(
        pool: &SqlitePool,
        hsm: &SoftHsm,
        name: &str,
        usage: KeyUsage,
    ) -> Result<KeyHandle, SimError> {
        let stored: Option<String> = sqlx::query("SELECT wrapped FROM sim_keys WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?
            .map(|row| row.try_get("wrapped"))
            .transpose()?;
        let wrapped = match stored {
            Some(text) => WrappedKey::from_text(&text)?,
            None => {
                let fresh = hsm.generate_key(usage)?;
                let wrapped = hsm.wrap(fresh)?;
                hsm.release(fresh)?;
                sqlx::query("INSERT INTO sim_keys (name, wrapped) VALUES ($1, $2)")
                    .bind(name)
                    .bind(wrapped.to_text())
                    .execute(pool)
                    .await?;
                wrapped
            }
        };
        Ok(hsm.load_wrapped(&wrapped)?)
    }

    pub fn config(&self) -> &IssuerHostConfig {
        &self.config
    }

    pub(crate) fn fingerprint(&self, pan: &Pan) -> Result<Vec<u8>, SimError> {
        Ok(self
            .hsm
            .fingerprint(self.fingerprint_key, pan.expose().as_bytes())?
            .to_vec())
    }

    pub(crate) fn cvn2_hash(&self, card_id: &str, cvn2: &str) -> Result<Vec<u8>, SimError> {
        Ok(self
            .hsm
            .fingerprint(
                self.fingerprint_key,
                format!("cvn2:{card_id}:{cvn2}").as_bytes(),
            )?
            .to_vec())
    }

    /// Puts a card on the books (once: a card already there is left as it is).
    pub async fn add_card(&self, card: &SimCard) -> Result<(), SimError> {
        let pan = Pan::parse(&card.number).map_err(|e| SimError::BadRequest(e.to_string()))?;
        let _: Expiry = card
            .expiry
            .parse()
            .map_err(|_| SimError::BadRequest("expiry must be YYMM".into()))?;
        if self.find(&pan).await?.is_some() {
            return Ok(());
        }
        let id = format!("simcard_{}", self.random.next_u64());
        let now = self.clock.now_millis();
        let cvn2_hash = card
            .cvn2
            .as_deref()
            .map(|cvn2| self.cvn2_hash(&id, cvn2))
            .transpose()?;
        sqlx::query(
            "INSERT INTO sim_cards (id, pan_fingerprint, pan_encrypted, pan_last4, expiry, cvn2_hash, phone, holder_name, funding, product, status, \
             provisioning, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active', $11, $12, $12)",
        )
        .bind(&id)
        .bind(self.fingerprint(&pan)?)
        .bind(self.hsm.encrypt(self.data_key, pan.expose().as_bytes(), id.as_bytes())?)
        .bind(pan.last4())
        .bind(&card.expiry)
        .bind(cvn2_hash)
        .bind(&card.phone)
        .bind(&card.holder_name)
        .bind(&card.funding)
        .bind(&card.product)
        .bind(&card.provisioning)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.open_account(&id, card, now).await
    }

    /// Opens the card's account (funded through the ledger, so the books balance from the
    /// first entry) and issues its PIN.
    async fn open_account(&self, card_id: &str, card: &SimCard, now: i64) -> Result<(), SimError> {
        let account_id = format!("account:{card_id}");
        let pvv = match &card.pin {
            Some(pin) => {
                let pin = cloudpass_crypto::Pin::parse(pin)
                    .map_err(|e| SimError::BadRequest(e.to_string()))?;
                Some(
                    self.hsm
                        .issue_pin(self.pin_verification_key, &pin, card_id.as_bytes())?
                        .0
                        .to_vec(),
                )
            }
            None => None,
        };
        let mut connection = self.pool.acquire().await?;
        let opened =
            Self::insert_account(&mut connection, card_id, &account_id, pvv, card, now).await;
        if opened.is_err() {
            // As for a group commit (issuer_iso): a connection whose transaction failed is
            // not trusted again.
            connection.close_on_drop();
        }
        opened
    }

    async fn insert_account(
        connection: &mut sqlx::SqliteConnection,
        card_id: &str,
        account_id: &str,
        pvv: Option<Vec<u8>>,
        card: &SimCard,
        now: i64,
    ) -> Result<(), SimError> {
        use sqlx::Connection;
        let mut tx = connection.begin().await?;
        sqlx::query("INSERT INTO sim_accounts (id, currency, balance, credit_limit, daily_limit, daily_spent, spent_day) VALUES ($1, $2, $3, $4, $5, 0, 0)")
            .bind(account_id)
            .bind(i64::from(card.currency))
            .bind(card.opening_balance)
            .bind(card.credit_limit)
            .bind(card.daily_limit)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE sim_cards SET account_id = $2, pvv = $3 WHERE id = $1")
            .bind(card_id)
            .bind(account_id)
            .bind(pvv)
            .execute(&mut *tx)
            .await?;
        if card.opening_balance > 0 {
            let opening = sqlx::query("INSERT INTO sim_transactions (mti, acquirer, stan, transmission_time, rrn, card_id, amount, currency, response_code, day, created_at) VALUES ('OPEN', 'bank', '', '', $1, $2, $3, $4, '00', 0, $5) RETURNING id")
                .bind(card_id)
                .bind(card_id)
                .bind(card.opening_balance)
                .bind(i64::from(card.currency))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            let transaction_id: i64 = opening.try_get("id")?;
            for (account, debit) in [(crate::bank::FUNDING_ACCOUNT, true), (account_id, false)] {
                sqlx::query("INSERT INTO sim_ledger (transaction_id, account, debit, amount, posted_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(transaction_id)
                    .bind(account)
                    .bind(debit)
                    .bind(card.opening_balance)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The card with number `pan`, as the bank holds it.
    pub(crate) async fn find_card(&self, pan: &Pan) -> Result<Option<CardRecord>, SimError> {
        self.find(pan).await
    }

    async fn find(&self, pan: &Pan) -> Result<Option<CardRecord>, SimError> {
        let row = sqlx::query(
            "SELECT id, pan_last4, expiry, cvn2_hash, phone, funding, product, status, provisioning FROM sim_cards WHERE pan_fingerprint = $1",
        )
        .bind(self.fingerprint(pan)?)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(CardRecord {
                id: row.try_get("id")?,
                pan_last4: row.try_get("pan_last4")?,
                expiry: row.try_get("expiry")?,
                cvn2_hash: row.try_get("cvn2_hash")?,
                phone: row.try_get("phone")?,
                funding: row.try_get("funding")?,
                product: row.try_get("product")?,
                status: row.try_get("status")?,
                provisioning: row.try_get("provisioning")?,
            })
        })
        .transpose()
    }

    /// The bank's checks on card data; the reason code when they fail.
    async fn verify_card(
        &self,
        number: &str,
        expiry: &str,
        cvn2: Option<&str>,
    ) -> Result<Result<CardRecord, &'static str>, SimError> {
        let Ok(pan) = Pan::parse(number) else {
            return Ok(Err("CARD_NOT_FOUND"));
        };
        let Some(card) = self.find(&pan).await? else {
            return Ok(Err("CARD_NOT_FOUND"));
        };
        if card.expiry != expiry {
            return Ok(Err("EXPIRY_MISMATCH"));
        }
        let (year, month) = self.clock.year_month();
        if card
            .expiry
            .parse::<Expiry>()
            .map(|e| e.is_expired_in(year, month))
            .unwrap_or(true)
        {
            return Ok(Err("CARD_EXPIRED"));
        }
        if let (Some(cvn2), Some(expected)) = (cvn2, &card.cvn2_hash)
            && &self.cvn2_hash(&card.id, cvn2)? != expected
        {
            return Ok(Err("CVN2_MISMATCH"));
        }
        if card.status != "active" {
            return Ok(Err("CARD_BLOCKED"));
        }
        Ok(Ok(card))
    }

    pub async fn check_eligibility(
        &self,
        request: &EligibilityRequest,
    ) -> Result<EligibilityResponse, SimError> {
        Ok(
            match self
                .verify_card(
                    &request.card_number,
                    &request.expiry,
                    request.cvn2.as_deref(),
                )
                .await?
            {
                Ok(card) => EligibilityResponse {
                    eligible: true,
                    reason: None,
                    funding: Some(card.funding),
                    product: Some(card.product),
                    reserved_phone_masked: Some(mask_phone(&card.phone)),
                },
                Err(reason) => EligibilityResponse {
                    eligible: false,
                    reason: Some(reason.into()),
                    funding: None,
                    product: None,
                    reserved_phone_masked: None,
                },
            },
        )
    }

    pub async fn approve_provision(
        &self,
        request: &ApprovalRequest,
    ) -> Result<ApprovalResponse, SimError> {
        Ok(
            match self
                .verify_card(&request.card_number, &request.expiry, None)
                .await?
            {
                Err(reason) => ApprovalResponse {
                    decision: Decision::Red,
                    reason: Some(reason.into()),
                    step_up_methods: Vec::new(),
                },
                // The bank's own app pushed the card: the cardholder is already authenticated.
                Ok(_) if request.issuer_push => ApprovalResponse {
                    decision: Decision::Green,
                    reason: None,
                    step_up_methods: Vec::new(),
                },
                Ok(card) if card.provisioning == "yellow" => ApprovalResponse {
                    decision: Decision::Yellow,
                    reason: Some("STEP_UP_REQUIRED".into()),
                    step_up_methods: vec!["sms".into()],
                },
                Ok(_) => ApprovalResponse {
                    decision: Decision::Green,
                    reason: None,
                    step_up_methods: Vec::new(),
                },
            },
        )
    }

    pub async fn send_passcode(
        &self,
        request: &PasscodeRequest,
    ) -> Result<PasscodeResponse, SimError> {
        let Ok(pan) = Pan::parse(&request.card_number) else {
            return Ok(PasscodeResponse {
                sent: false,
                destination_masked: None,
                reason: Some("CARD_NOT_FOUND".into()),
            });
        };
        let Some(card) = self.find(&pan).await? else {
            return Ok(PasscodeResponse {
                sent: false,
                destination_masked: None,
                reason: Some("CARD_NOT_FOUND".into()),
            });
        };
        if request.method != "sms"
            || request.otp.len() != 6
            || !request.otp.bytes().all(|b| b.is_ascii_digit())
        {
            return Ok(PasscodeResponse {
                sent: false,
                destination_masked: None,
                reason: Some("UNSUPPORTED_METHOD".into()),
            });
        }
        let text = match request.purpose.as_deref() {
            Some("bind") => format!(
                "【{}】{} is your code to bind the card ending {} to your {} account. It expires in 5 minutes. Do not share it.",
                self.config.bank_name, request.otp, card.pan_last4, request.wallet
            ),
            _ => format!(
                "【{}】{} is your code to add the card ending {} to {} (device card ending {}). It expires in 10 minutes. Do not share it.",
                self.config.bank_name,
                request.otp,
                card.pan_last4,
                request.wallet,
                request.token_last4
            ),
        };
        self.text_phone(&card.phone, &text).await?;
        Ok(PasscodeResponse {
            sent: true,
            destination_masked: Some(mask_phone(&card.phone)),
            reason: None,
        })
    }

    /// Texts `text` to the phone the bank holds for the card: the payment network's SMS
    /// codes for card-not-present payments go out this way. The phone, masked; `None` when
    /// the bank has no such card.
    pub async fn send_text(&self, pan: &Pan, text: &str) -> Result<Option<String>, SimError> {
        let Some(card) = self.find(pan).await? else {
            return Ok(None);
        };
        self.text_phone(&card.phone, text).await?;
        Ok(Some(mask_phone(&card.phone)))
    }

    async fn text_phone(&self, phone: &str, text: &str) -> Result<(), SimError> {
        sqlx::query("INSERT INTO sim_sms (phone, text, sent_at) VALUES ($1, $2, $3)")
            .bind(phone)
            .bind(text)
            .bind(self.clock.now_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The latest text messages to a phone, newest first (at most 50).
    pub async fn sms(&self, phone: &str) -> Result<Vec<Sms>, SimError> {
        let rows = sqlx::query(
            "SELECT phone, text, sent_at FROM sim_sms WHERE phone = $1 ORDER BY id DESC LIMIT 50",
        )
        .bind(phone)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Sms {
                    phone: row.try_get("phone")?,
                    text: row.try_get("text")?,
                    sent_at: row.try_get("sent_at")?,
                })
            })
            .collect()
    }

    /// The text messages to a phone in an issuer host's database file, without opening the
    /// bank (no keys needed): the sandbox console's view.
    pub async fn read_sms(path: &Path, phone: &str) -> Result<Vec<Sms>, SimError> {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| SimError::Database(e.to_string()))?
            .filename(path)
            .read_only(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let rows = sqlx::query(
            "SELECT phone, text, sent_at FROM sim_sms WHERE phone = $1 ORDER BY id DESC LIMIT 50",
        )
        .bind(phone)
        .fetch_all(&pool)
        .await?;
        let messages = rows
            .iter()
            .map(|row| {
                Ok(Sms {
                    phone: row.try_get("phone")?,
                    text: row.try_get("text")?,
                    sent_at: row.try_get("sent_at")?,
                })
            })
            .collect();
        pool.close().await;
        messages
    }

    async fn tell_tsp(&self, path: &str, body: &Value) -> Result<(StatusCode, Value), SimError> {
        let url = format!("{}{path}", self.config.tsp_url.trim_end_matches('/'));
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.config.tsp_api_key)
            .header(
                "idempotency-key",
                format!("issuer-host-{:016x}", self.random.next_u64()),
            )
            .json(body)
            .send()
            .await
            .map_err(|e| {
                SimError::Tsp(if e.is_connect() {
                    "connection refused".into()
                } else {
                    e.to_string()
                })
            })?;
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let value = response
            .json::<Value>()
            .await
            .map_err(|e| SimError::Tsp(e.to_string()))?;
        Ok((status, value))
    }

    /// The back office reports a card lost, stolen, found or closed: the bank's books change,
    /// then the token service is told.
    pub async fn card_event(
        &self,
        number: &str,
        event: &str,
    ) -> Result<(StatusCode, Value), SimError> {
        let status = match event {
            "lost" => "lost",
            "stolen" => "stolen",
            "found" => "active",
            "closed" => "closed",
            _ => {
                return Err(SimError::BadRequest(
                    "event must be lost, stolen, found or closed".into(),
                ));
            }
        };
        let pan = Pan::parse(number).map_err(|e| SimError::BadRequest(e.to_string()))?;
        let card = self.find(&pan).await?.ok_or(SimError::CardNotFound)?;
        sqlx::query("UPDATE sim_cards SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(&card.id)
            .bind(status)
            .bind(self.clock.now_millis())
            .execute(&self.pool)
            .await?;
        self.tell_tsp(
            "/tsp/v1/issuer/cards/events",
            &json!({"card_number": pan.expose(), "event": event}),
        )
        .await
    }

    /// The back office reissues a card with a new number and/or expiry.
    pub async fn reissue(
        &self,
        number: &str,
        new_number: Option<&str>,
        new_expiry: &str,
    ) -> Result<(StatusCode, Value), SimError> {
        let old = Pan::parse(number).map_err(|e| SimError::BadRequest(e.to_string()))?;
        let _: Expiry = new_expiry
            .parse()
            .map_err(|_| SimError::BadRequest("new_expiry must be YYMM".into()))?;
        let new = match new_number {
            Some(number) => {
                Some(Pan::parse(number).map_err(|e| SimError::BadRequest(e.to_string()))?)
            }
            None => None,
        };
        // A retry after the books already changed finds the card under its new number.
        let card = match self.find(&old).await? {
            Some(card) => Some(card),
            None => match &new {
                Some(new) => self.find(new).await?,
                None => None,
            },
        }
        .ok_or(SimError::CardNotFound)?;
        let now = self.clock.now_millis();
        match &new {
            Some(new) => {
                sqlx::query("UPDATE sim_cards SET pan_fingerprint = $2, pan_encrypted = $3, pan_last4 = $4, expiry = $5, status = 'active', updated_at = $6 WHERE id = $1")
                    .bind(&card.id)
                    .bind(self.fingerprint(new)?)
                    .bind(self.hsm.encrypt(self.data_key, new.expose().as_bytes(), card.id.as_bytes())?)
                    .bind(new.last4())
                    .bind(new_expiry)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
            }
            None => {
                sqlx::query("UPDATE sim_cards SET expiry = $2, status = 'active', updated_at = $3 WHERE id = $1").bind(&card.id).bind(new_expiry).bind(now).execute(&self.pool).await?;
            }
        }
        let mut body = json!({"card_number": old.expose(), "new_expiry": new_expiry});
        if let Some(new) = &new {
            body["new_card_number"] = json!(new.expose());
        }
        self.tell_tsp("/tsp/v1/issuer/cards/reissue", &body).await
    }

    fn verify_signature(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(timestamp), Some(signature_value)) = (
            header(signature::TIMESTAMP_HEADER).and_then(|t| t.parse::<i64>().ok()),
            header(signature::SIGNATURE_HEADER),
        ) else {
            return false;
        };
        signature::verify(
            &self.config.shared_secret,
            timestamp,
            body,
            signature_value,
            self.clock.now_millis() / 1000,
            self.config.signature_tolerance_seconds,
        )
    }

    /// The stand-in's routes: the issuer protocol, the SMS inbox, the back office.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/sim/issuer/v1/checkEligibility", post(check_eligibility))
            .route("/sim/issuer/v1/approveProvision", post(approve_provision))
            .route("/sim/issuer/v1/sendPasscode", post(send_passcode))
            .route("/sim/issuer/v1/sms", get(sms))
            .route("/sim/issuer/v1/cards/events", post(card_event))
            .route("/sim/issuer/v1/cards/reissue", post(reissue))
            .route("/sim/issuer/v1/cards/deposits", post(deposit))
            .with_state(self)
    }
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message.to_string()})),
    )
        .into_response()
}

fn sim_error(failure: SimError) -> Response {
    match failure {
        SimError::BadRequest(message) => error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message),
        SimError::CardNotFound => error(
            StatusCode::NOT_FOUND,
            "CARD_NOT_FOUND",
            "no such card at this bank",
        ),
        SimError::Tsp(message) => error(StatusCode::BAD_GATEWAY, "TSP_UNAVAILABLE", message),
        SimError::Conflict(message) => error(StatusCode::CONFLICT, "CONFLICT", message),
        other => {
            tracing::error!(error = %other, "issuer host failure");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "internal error",
            )
        }
    }
}

/// A request's JSON body; the error names no value (see `cloudpass_http::body`).
fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    cloudpass_http::parse_json(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e))
}

/// Verifies the token service's signature and parses its request.
fn signed<T: serde::de::DeserializeOwned>(
    host: &IssuerHost,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Response> {
    if !host.verify_signature(headers, body) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "BAD_SIGNATURE",
            "the request is not signed with the shared secret, or its timestamp is too far from now",
        ));
    }
    json_body(body)
}

async fn check_eligibility(
    State(host): State<Arc<IssuerHost>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: EligibilityRequest = match signed(&host, &headers, &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match host.check_eligibility(&request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => sim_error(e),
    }
}

async fn approve_provision(
    State(host): State<Arc<IssuerHost>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: ApprovalRequest = match signed(&host, &headers, &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match host.approve_provision(&request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => sim_error(e),
    }
}

async fn send_passcode(
    State(host): State<Arc<IssuerHost>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: PasscodeRequest = match signed(&host, &headers, &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match host.send_passcode(&request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => sim_error(e),
    }
}

#[derive(Deserialize)]
struct PhoneQuery {
    phone: String,
}

async fn sms(
    State(host): State<Arc<IssuerHost>>,
    headers: HeaderMap,
    Query(query): Query<PhoneQuery>,
) -> Response {
    if !cloudpass_http::auth::bearer_is(&headers, &host.config.operator_key) {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the SMS inbox needs the sandbox operator's key (Authorization: Bearer <key>; the key \
             is in sandbox-operator.key in the data directory)",
        );
    }
    match host.sms(&query.phone).await {
        Ok(messages) => Json(json!({"messages": messages})).into_response(),
        Err(e) => sim_error(e),
    }
}

/// The back office is the bank's own staff: it authenticates with the bank's API key.
fn back_office(host: &IssuerHost, headers: &HeaderMap) -> Result<(), Response> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(host.config.tsp_api_key.as_str()) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the back office needs the bank's API key",
        ))
    }
}

#[derive(Deserialize)]
struct CardEventBody {
    card_number: String,
    event: String,
}

async fn card_event(
    State(host): State<Arc<IssuerHost>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = back_office(&host, &headers) {
        return response;
    }
    let body: CardEventBody = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    match host.card_event(&body.card_number, &body.event).await {
        Ok((status, value)) => (status, Json(value)).into_response(),
        Err(e) => sim_error(e),
    }
}

#[derive(Deserialize)]
struct ReissueBody {
    card_number: String,
    new_card_number: Option<String>,
    new_expiry: String,
}

async fn reissue(State(host): State<Arc<IssuerHost>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(response) = back_office(&host, &headers) {
        return response;
    }
    let body: ReissueBody = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    match host
        .reissue(
            &body.card_number,
            body.new_card_number.as_deref(),
            &body.new_expiry,
        )
        .await
    {
        Ok((status, value)) => (status, Json(value)).into_response(),
        Err(e) => sim_error(e),
    }
}

#[derive(Deserialize)]
struct DepositBody {
    card_number: String,
    /// Fen.
    amount: i64,
    reference: String,
}

async fn deposit(State(host): State<Arc<IssuerHost>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(response) = back_office(&host, &headers) {
        return response;
    }
    let body: DepositBody = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    match host
        .deposit(&body.card_number, body.amount, &body.reference)
        .await
    {
        Ok((status, value)) => (status, Json(value)).into_response(),
        Err(e) => sim_error(e),
    }
}

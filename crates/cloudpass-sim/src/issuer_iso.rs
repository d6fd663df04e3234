//! The issuer host's ISO 8583 side: the bank's authorization host as the switch reaches it
//! over TCP in the cloudpass profile.
//!
//! - 0200 (financial request): the card by fingerprint, the PIN against its verification
//!   value, then [`crate::bank::authorize`]; an approval posts balanced ledger entries and
//!   updates the account in one transaction, committed before the 0210 is written.
//! - 0220 (financial advice: the network approved on the bank's behalf): posted unless the
//!   original 0200 it names in field 90 was already approved here.
//! - 0400 / 0420 (reversal, reversal advice): the original by field 90 (its 0200, or the
//!   0220 that posted it); its postings are undone once; a reversal of something unknown is
//!   answered 25.
//! - A message seen before (same MTI, acquirer, STAN, transmission time and RRN) is answered
//!   from the record and posts nothing.
//! - 0800 echo and sign-on are answered 00; other message types 12.

use std::sync::Arc;
use std::time::Duration;

use cloudpass_core::{Expiry, Pan, ResponseCode};
use cloudpass_crypto::{
    CheckValue, Hsm, HsmError, KeyHandle, PinBlockFormat, PinBlockRef, PinVerificationValue,
};
use cloudpass_iso8583::private::{FIELD_60, FIELD_61, OriginalData, Positional, values};
use cloudpass_iso8583::server::{self, FrameAnswer, FrameHandler, PortLimits};
use cloudpass_iso8583::{Message, Mti, profile};
use sqlx::{Row, Sqlite, Transaction};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::bank::{self, AccountFacts, CardFacts, Payment, PinCheck};
use crate::issuer_host::{IssuerHost, SimError};
use crate::issuer_returns;

/// A message waiting for the next group commit, and where its answer goes.
pub(crate) struct Waiting {
    request: Message<'static>,
    reply: oneshot::Sender<Message<'static>>,
}

/// Messages in flight on one connection.
const IN_FLIGHT_PER_CONNECTION: usize = 256;
/// Connections at once.
const MAX_CONNECTIONS: usize = 64;

/// Fields a response echoes from its request.
const ECHOED: &[u8] = &[2, 3, 4, 7, 11, 12, 13, 25, 32, 33, 37, 41, 42, 49, 90, 100];

pub(crate) fn respond(
    request: &Message<'_>,
    code: ResponseCode,
    auth_code: Option<&str>,
) -> Message<'static> {
    let mti = request.mti().response().unwrap_or(request.mti());
    let mut response = Message::new(mti);
    for &field in ECHOED {
        if let Some(value) = request.get(field) {
            response.set(field, value.to_vec());
        }
    }
    if let Some(code) = auth_code {
        response.set_text(38, code);
    }
    response.set_text(39, code.code());
    response
}

pub(crate) fn text<'m>(message: &'m Message<'_>, field: u8) -> &'m str {
    message.get_str(field).unwrap_or("")
}

/// Processing code 60xxxx: a load of the card's e-cash from its account.
fn is_ecash_load(request: &Message<'_>) -> bool {
    text(request, 3).starts_with("60")
}

/// 61.4 of a card-not-present payment: the CVN2 (3 digits), then `0000`.
fn cvn2_of(request: &Message<'_>) -> Option<String> {
    request
        .get_str(61)
        .and_then(|value| Positional::parse(61, FIELD_61, value).ok())
        .and_then(|field| {
            field
                .get("61.4")
                .map(|v| v.get(..3).unwrap_or("").to_owned())
        })
        .filter(|cvn2| cvn2.len() == 3 && cvn2.bytes().all(|b| b.is_ascii_digit()))
}

/// A typed card number: field 60 says no card was there (60.3.6 = 7).
fn is_card_not_present(request: &Message<'_>) -> bool {
    request
        .get_str(60)
        .and_then(|value| Positional::parse(60, FIELD_60, value).ok())
        .is_some_and(|field| field.get("60.3.6") == Some(values::MEDIUM_NO_CARD))
}

/// An advice whose field 60 names the e-cash application (60.3.7 = 3): an offline spend to
/// clear.
fn is_ecash_clearing(request: &Message<'_>) -> bool {
    request
        .get_str(60)
        .and_then(|value| Positional::parse(60, FIELD_60, value).ok())
        .is_some_and(|field| field.get("60.3.7") == Some(values::IC_APPLICATION_ECASH))
}

fn transaction_kind(request: &Message<'_>) -> &'static str {
    match request.mti().as_str() {
        "0220" | "0221" if is_ecash_clearing(request) => "ecash_clearing",
        "0220" | "0221" => "advice",
        "0400" | "0420" | "0421" => "reversal",
        "0100" => "authorization",
        _ if is_ecash_load(request) => "ecash_load",
        _ => "purchase",
    }
}

/// An account as the banking rules see it, from a row with its columns.
pub(crate) fn account_facts(row: &sqlx::sqlite::SqliteRow) -> Result<AccountFacts, SimError> {
    Ok(AccountFacts {
        currency: u16::try_from(row.try_get::<i64, _>("currency")?).unwrap_or(0),
        balance: row.try_get("balance")?,
        credit_limit: row.try_get("credit_limit")?,
        daily_limit: row.try_get("daily_limit")?,
        daily_spent: row.try_get("daily_spent")?,
        spent_day: row.try_get("spent_day")?,
    })
}

/// Days since the epoch of a millisecond timestamp.
pub(crate) fn day_of(millis: i64) -> i64 {
    millis.div_euclid(86_400_000)
}

impl IssuerHost {
    /// Exports the zone PIN key under a zone master key for the switch, with its check value.
    pub fn export_zone_pin_key(
        &self,
        zone_master_key: KeyHandle,
    ) -> Result<(Vec<u8>, CheckValue), SimError> {
        Ok((
            self.hsm
                .export_under_kek(self.zone_pin_key, zone_master_key)?,
            self.hsm.check_value(self.zone_pin_key)?,
        ))
    }

    /// Loads the zone master key shared with the switch (from the key ceremony).
    pub fn import_zone_master_key(&self, clear: &[u8]) -> Result<KeyHandle, SimError> {
        Ok(self
            .hsm
            .import_clear(cloudpass_crypto::KeyUsage::ZoneMaster, clear)?)
    }

    /// Answers one request. Messages that change the books are committed in groups: each
    /// caller queues its message, and whoever holds the committer runs every queued message
    /// in one transaction (each in its own savepoint, so one failure undoes only itself),
    /// commits once, and only then hands out the answers. Under load one fsync covers many
    /// messages; alone, a message waits for nobody.
    pub async fn process(&self, request: &Message<'_>) -> Message<'static> {
        if request.mti().as_str() == "0800" {
            return respond(request, ResponseCode::Approved, None);
        }
        let (reply, answer) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Waiting {
                request: request.clone().into_owned(),
                reply,
            });
        {
            let _committer = self.committer.lock().await;
            let group =
                std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()));
            if !group.is_empty() {
                self.commit_group(group).await;
            }
        }
        answer
            .await
            .unwrap_or_else(|_| respond(request, ResponseCode::SystemMalfunction, None))
    }

    async fn commit_group(&self, group: Vec<Waiting>) {
        let mut connection = match self.pool.acquire().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::error!(error = %error, "issuer host: no database connection");
                for waiting in group {
                    let answer = respond(&waiting.request, ResponseCode::SystemMalfunction, None);
                    let _ = waiting.reply.send(answer);
                }
                return;
            }
        };
        let (answers, clean) = self.run_group(&mut connection, group).await;
        if !clean {
            // After a failed statement or commit (a full disk, an I/O error) SQLite may have
            // rolled the transaction back under sqlx's feet, leaving the connection's idea of
            // its transaction wrong: every later "commit" on it stayed inside a transaction
            // no other connection could see. The connection goes; the pool opens a fresh one.
            connection.close_on_drop();
        }
        for (waiting, answer) in answers {
            let _ = waiting.reply.send(answer);
        }
    }

    /// Works a group in one transaction on `connection`, each message in its own savepoint;
    /// the answers to give (all 96 unless the commit succeeded), and whether everything,
    /// the commit included, went without a database error.
    async fn run_group(
        &self,
        connection: &mut sqlx::SqliteConnection,
        group: Vec<Waiting>,
    ) -> (Vec<(Waiting, Message<'static>)>, bool) {
        let refused = |group: Vec<Waiting>| {
            group
                .into_iter()
                .map(|waiting| {
                    let answer = respond(&waiting.request, ResponseCode::SystemMalfunction, None);
                    (waiting, answer)
                })
                .collect()
        };
        let mut tx = match sqlx::Connection::begin(connection).await {
            Ok(tx) => tx,
            Err(error) => {
                tracing::error!(error = %error, "issuer host: cannot begin a transaction");
                return (refused(group), false);
            }
        };
        let mut answers = Vec::with_capacity(group.len());
        let mut clean = true;
        for waiting in group {
            let result = match sqlx::Acquire::begin(&mut tx).await {
                Ok(savepoint) => self.dispatch(savepoint, &waiting.request).await,
                Err(error) => Err(error.into()),
            };
            let answer = result.unwrap_or_else(|error| {
                clean = false;
                tracing::error!(error = %error, mti = %waiting.request.mti(), "issuer host could not process a message");
                respond(&waiting.request, ResponseCode::SystemMalfunction, None)
            });
            answers.push((waiting, answer));
        }
        if let Err(error) = tx.commit().await {
            tracing::error!(error = %error, "issuer host: a group commit failed; nothing of it was posted");
            let waiting = answers.into_iter().map(|(waiting, _)| waiting).collect();
            return (refused(waiting), false);
        }
        (answers, clean)
    }

    async fn dispatch(
        &self,
        tx: Transaction<'_, Sqlite>,
        request: &Message<'_>,
    ) -> Result<Message<'static>, SimError> {
        match request.mti().as_str() {
            "0200" | "0220" if issuer_returns::is_return(request) => {
                self.card_return(tx, request).await
            }
            "0100" if issuer_returns::is_return(request) => {
                Ok(respond(request, ResponseCode::InvalidTransaction, None))
            }
            "0100" | "0200" => self.financial(tx, request).await,
            "0220" | "0221" => self.advice(tx, request).await,
            "0400" | "0420" | "0421" => self.reversal(tx, request).await,
            _ => Ok(respond(request, ResponseCode::InvalidTransaction, None)),
        }
    }

    /// The record of an earlier identical message, if any.
    pub(crate) async fn seen(
        &self,
        connection: &mut sqlx::SqliteConnection,
        request: &Message<'_>,
    ) -> Result<Option<Message<'static>>, SimError> {
        let row = sqlx::query("SELECT response_code, auth_code FROM sim_transactions WHERE mti = $1 AND acquirer = $2 AND stan = $3 AND transmission_time = $4 AND rrn = $5")
            .bind(request.mti().as_str())
            .bind(text(request, 32))
            .bind(text(request, 11))
            .bind(text(request, 7))
            .bind(text(request, 37))
            .fetch_optional(&mut *connection)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let code: String = row.try_get("response_code")?;
        let auth: Option<String> = row.try_get("auth_code")?;
        let code = ResponseCode::parse(&code).unwrap_or(ResponseCode::SystemMalfunction);
        Ok(Some(respond(request, code, auth.as_deref())))
    }

    /// A purchase, decided and recorded in one transaction: the account is read inside it,
    /// so concurrent messages on one account never decide from the same stale balance.
    async fn financial(
        &self,
        mut tx: Transaction<'_, Sqlite>,
        request: &Message<'_>,
    ) -> Result<Message<'static>, SimError> {
        if let Some(answer) = self.seen(&mut tx, request).await? {
            return Ok(answer);
        }
        let now = self.clock.now_millis();
        let amount: i64 = text(request, 4).parse().unwrap_or(-1);
        let currency: u16 = text(request, 49).parse().unwrap_or(0);
        let Ok(pan) = Pan::parse(text(request, 2)) else {
            return self
                .record(
                    tx,
                    request,
                    None,
                    amount,
                    currency,
                    ResponseCode::InvalidCard,
                    None,
                    now,
                    None,
                )
                .await;
        };
        let card = sqlx::query("SELECT c.id, c.expiry, c.status, c.pvv, c.pin_tries, c.cvn2_hash, c.account_id, a.currency, a.balance, a.credit_limit, a.daily_limit, a.daily_spent, a.spent_day FROM sim_cards c JOIN sim_accounts a ON a.id = c.account_id WHERE c.pan_fingerprint = $1")
            .bind(self.fingerprint(&pan)?)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(card) = card else {
            return self
                .record(
                    tx,
                    request,
                    None,
                    amount,
                    currency,
                    ResponseCode::InvalidCard,
                    None,
                    now,
                    None,
                )
                .await;
        };
        let card_id: String = card.try_get("id")?;
        let account_id: String = card.try_get("account_id")?;
        let expiry: Expiry = card
            .try_get::<String, _>("expiry")?
            .parse()
            .map_err(|_| SimError::Database("card expiry".into()))?;
        let status: String = card.try_get("status")?;
        let pvv: Option<Vec<u8>> = card.try_get("pvv")?;
        let facts = CardFacts {
            status: &status,
            expiry,
            pin_tries: card.try_get("pin_tries")?,
        };
        let account = account_facts(&card)?;
        let pin = match (request.get(52), pvv) {
            (None, _) => PinCheck::Absent,
            (Some(_), None) => PinCheck::Wrong,
            (Some(block), Some(pvv)) => {
                let expected = PinVerificationValue(
                    pvv.as_slice()
                        .try_into()
                        .map_err(|_| SimError::Database("PIN verification value".into()))?,
                );
                let block_ref = PinBlockRef {
                    key: self.zone_pin_key,
                    format: PinBlockFormat::Iso0,
                    block,
                    account: &pan,
                };
                match self.hsm.verify_pin(
                    self.pin_verification_key,
                    &block_ref,
                    card_id.as_bytes(),
                    &expected,
                ) {
                    Ok(true) => PinCheck::Correct,
                    Ok(false) => PinCheck::Wrong,
                    Err(HsmError::PinBlock(_) | HsmError::PinBlockLength { .. }) => {
                        return self
                            .record(
                                tx,
                                request,
                                Some(&card_id),
                                amount,
                                currency,
                                ResponseCode::PinFormatError,
                                None,
                                now,
                                None,
                            )
                            .await;
                    }
                    Err(other) => return Err(other.into()),
                }
            }
        };
        let cryptogram_failed = request
            .get_str(61)
            .and_then(|value| Positional::parse(61, FIELD_61, value).ok())
            .and_then(|field| field.get("61.5").map(|result| result == "2"))
            .unwrap_or(false);
        let (year, month) = self.clock.year_month();
        let payment = Payment {
            amount,
            currency,
            expiry: request.get_str(14).and_then(|e| e.parse().ok()),
            pin,
            cryptogram_failed,
            card_not_present: self.card_not_present(
                request,
                &card_id,
                card.try_get("cvn2_hash")?,
            )?,
            acquirer_id: text(request, 32),
            ecash_load: is_ecash_load(request),
            today: day_of(now),
            year,
            month,
        };
        let mut decision = bank::authorize(&facts, &account, &account_id, &payment);
        if request.mti() == Mti::AUTHORIZATION_REQUEST {
            // Authorization only: decided (the PIN counter included), nothing posted.
            decision.account = account;
            decision.postings.clear();
        }
        let auth_code = decision
            .response
            .is_approved()
            .then(|| format!("{:06}", self.random.below(1_000_000)));
        self.record(
            tx,
            request,
            Some(&card_id),
            amount,
            currency,
            decision.response,
            auth_code.as_deref(),
            now,
            Some((&account_id, &decision)),
        )
        .await
    }

    /// What proves the holder of a card that is not present: its CVN2 checked against the
    /// keyed hash on file. `None` when the card was present (a token payment).
    fn card_not_present(
        &self,
        request: &Message<'_>,
        card_id: &str,
        cvn2_on_file: Option<Vec<u8>>,
    ) -> Result<Option<bank::CardNotPresent>, SimError> {
        if !is_card_not_present(request) {
            return Ok(None);
        }
        let cvn2 = match (cvn2_of(request), &cvn2_on_file) {
            (None, _) => bank::Cvn2Check::Absent,
            (Some(_), None) => bank::Cvn2Check::NotOnFile,
            (Some(cvn2), Some(expected)) => {
                if &self.cvn2_hash(card_id, &cvn2)? == expected {
                    bank::Cvn2Check::Matched
                } else {
                    bank::Cvn2Check::Wrong
                }
            }
        };
        Ok(Some(bank::CardNotPresent {
            cvn2,
            cvn2_on_file: cvn2_on_file.is_some(),
        }))
    }

    /// Records a message and its answer — with the account, PIN counter and postings of an
    /// approval — in one transaction, then returns the answer.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        mut tx: Transaction<'_, Sqlite>,
        request: &Message<'_>,
        card_id: Option<&str>,
        amount: i64,
        currency: u16,
        code: ResponseCode,
        auth_code: Option<&str>,
        now: i64,
        decision: Option<(&str, &bank::Decision)>,
    ) -> Result<Message<'static>, SimError> {
        let inserted = sqlx::query(
            "INSERT INTO sim_transactions (mti, acquirer, stan, transmission_time, rrn, card_id, amount, currency, response_code, auth_code, day, created_at, kind) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(request.mti().as_str())
        .bind(text(request, 32))
        .bind(text(request, 11))
        .bind(text(request, 7))
        .bind(text(request, 37))
        .bind(card_id)
        .bind(amount)
        .bind(i64::from(currency))
        .bind(code.code())
        .bind(auth_code)
        .bind(day_of(now))
        .bind(now)
        .bind(transaction_kind(request))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(inserted) = inserted else {
            // Recorded meanwhile: the first answer stands.
            return Ok(self
                .seen(&mut tx, request)
                .await?
                .unwrap_or_else(|| respond(request, ResponseCode::DuplicateTransmission, None)));
        };
        let transaction_id: i64 = inserted.try_get("id")?;
        if let (Some(card_id), Some((account_id, decision))) = (card_id, decision) {
            sqlx::query("UPDATE sim_cards SET pin_tries = $2 WHERE id = $1")
                .bind(card_id)
                .bind(decision.pin_tries)
                .execute(&mut *tx)
                .await?;
            if decision.response.is_approved() {
                self.post(
                    &mut tx,
                    transaction_id,
                    account_id,
                    &decision.account,
                    &decision.postings,
                    now,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(respond(request, code, auth_code))
    }

    pub(crate) async fn post(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        transaction_id: i64,
        account_id: &str,
        account: &AccountFacts,
        postings: &[bank::Posting],
        now: i64,
    ) -> Result<(), SimError> {
        if !bank::balanced(postings) {
            return Err(SimError::Database("refusing unbalanced postings".into()));
        }
        sqlx::query(
            "UPDATE sim_accounts SET balance = $2, daily_spent = $3, spent_day = $4 WHERE id = $1",
        )
        .bind(account_id)
        .bind(account.balance)
        .bind(account.daily_spent)
        .bind(account.spent_day)
        .execute(&mut **tx)
        .await?;
        for posting in postings {
            sqlx::query("INSERT INTO sim_ledger (transaction_id, account, debit, amount, posted_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(transaction_id)
                .bind(&posting.account)
                .bind(posting.debit)
                .bind(posting.amount)
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A stand-in approval to post, in one transaction.
    async fn advice(
        &self,
        mut tx: Transaction<'_, Sqlite>,
        request: &Message<'_>,
    ) -> Result<Message<'static>, SimError> {
        if let Some(answer) = self.seen(&mut tx, request).await? {
            return Ok(answer);
        }
        let now = self.clock.now_millis();
        let amount: i64 = text(request, 4).parse().unwrap_or(-1);
        let currency: u16 = text(request, 49).parse().unwrap_or(0);
        let original = request
            .get_str(90)
            .and_then(|value| OriginalData::parse(value).ok());
        let card = match Pan::parse(text(request, 2)) {
            Ok(pan) => sqlx::query("SELECT c.id, c.pin_tries, c.account_id, a.currency, a.balance, a.credit_limit, a.daily_limit, a.daily_spent, a.spent_day FROM sim_cards c JOIN sim_accounts a ON a.id = c.account_id WHERE c.pan_fingerprint = $1")
                .bind(self.fingerprint(&pan)?)
                .fetch_optional(&mut *tx)
                .await?,
            Err(_) => None,
        };
        let (Some(original), Some(card), true) = (original, card, amount > 0) else {
            return self
                .record(
                    tx,
                    request,
                    None,
                    amount,
                    currency,
                    ResponseCode::InvalidTransaction,
                    None,
                    now,
                    None,
                )
                .await;
        };
        let card_id: String = card.try_get("id")?;
        if is_ecash_clearing(request) {
            // An offline spend the card approved: cleared from the e-cash account. The switch
            // clears each spend once; a repeated advice is answered from the record above.
            let account_id: String = card.try_get("account_id")?;
            let account = account_facts(&card)?;
            let decision = bank::clear_offline(
                &account,
                &account_id,
                text(request, 32),
                amount,
                card.try_get("pin_tries")?,
            );
            return self
                .record(
                    tx,
                    request,
                    Some(&card_id),
                    amount,
                    currency,
                    ResponseCode::Approved,
                    None,
                    now,
                    Some((&account_id, &decision)),
                )
                .await;
        }
        let already = sqlx::query(
            "SELECT 1 FROM sim_transactions WHERE mti = $1 AND stan = $2 AND transmission_time = $3 AND ltrim(acquirer, '0') = $4 AND response_code = '00'",
        )
        .bind(&original.mti)
        .bind(&original.stan)
        .bind(&original.transmission_time)
        .bind(original.acquirer.trim_start_matches('0'))
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if already {
            // The original reached the bank and was approved: posted once already.
            return self
                .record(
                    tx,
                    request,
                    Some(&card_id),
                    amount,
                    currency,
                    ResponseCode::Approved,
                    None,
                    now,
                    None,
                )
                .await;
        }
        let account_id: String = card.try_get("account_id")?;
        let account = account_facts(&card)?;
        let decision = bank::post_advice(
            &account,
            &account_id,
            text(request, 32),
            amount,
            day_of(now),
            card.try_get("pin_tries")?,
        );
        self.record(
            tx,
            request,
            Some(&card_id),
            amount,
            currency,
            ResponseCode::Approved,
            None,
            now,
            Some((&account_id, &decision)),
        )
        .await
    }

    /// A reversal, in one transaction with the original's state and the account.
    async fn reversal(
        &self,
        mut tx: Transaction<'_, Sqlite>,
        request: &Message<'_>,
    ) -> Result<Message<'static>, SimError> {
        if let Some(answer) = self.seen(&mut tx, request).await? {
            return Ok(answer);
        }
        let now = self.clock.now_millis();
        let amount: i64 = text(request, 4).parse().unwrap_or(0);
        let currency: u16 = text(request, 49).parse().unwrap_or(0);
        let Some(original) = request
            .get_str(90)
            .and_then(|value| OriginalData::parse(value).ok())
        else {
            return self
                .record(
                    tx,
                    request,
                    None,
                    amount,
                    currency,
                    ResponseCode::FormatError,
                    None,
                    now,
                    None,
                )
                .await;
        };
        let acquirer = original.acquirer.trim_start_matches('0');
        // The original, or the advice that posted it in the original's name; an approved one
        // first.
        let row = sqlx::query(
            "SELECT t.id, t.card_id, t.amount, t.response_code, t.reversed, t.day, t.acquirer, t.kind, c.account_id, \
             (SELECT COALESCE(SUM(r.amount), 0) FROM sim_transactions r WHERE r.original_id = t.id AND r.kind = 'refund' AND r.response_code = '00') AS refunded \
             FROM sim_transactions t LEFT JOIN sim_cards c ON c.id = t.card_id \
             WHERE t.mti IN ($1, '0220') AND t.stan = $2 AND t.transmission_time = $3 AND ltrim(t.acquirer, '0') = $4 \
             ORDER BY t.response_code = '00' DESC, t.id LIMIT 1",
        )
        .bind(&original.mti)
        .bind(&original.stan)
        .bind(&original.transmission_time)
        .bind(acquirer)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return self
                .record(
                    tx,
                    request,
                    None,
                    amount,
                    currency,
                    ResponseCode::OriginalNotFound,
                    None,
                    now,
                    None,
                )
                .await;
        };
        let original_id: i64 = row.try_get("id")?;
        let approved = row.try_get::<String, _>("response_code")? == "00";
        let reversed: bool = row.try_get("reversed")?;
        let card_id: Option<String> = row.try_get("card_id")?;
        if !approved || reversed {
            // Nothing (more) to undo: the reversal is acknowledged.
            return self
                .record(
                    tx,
                    request,
                    card_id.as_deref(),
                    amount,
                    currency,
                    ResponseCode::Approved,
                    None,
                    now,
                    None,
                )
                .await;
        }
        if matches!(
            row.try_get::<String, _>("kind")?.as_str(),
            "void" | "refund"
        ) {
            // A return is not reversed: it is repeated (it is idempotent) or left as it is.
            return self
                .record(
                    tx,
                    request,
                    card_id.as_deref(),
                    amount,
                    currency,
                    ResponseCode::InvalidTransaction,
                    None,
                    now,
                    None,
                )
                .await;
        }
        // What refunds already gave back is not given back again.
        let original_amount: i64 =
            row.try_get::<i64, _>("amount")? - row.try_get::<i64, _>("refunded")?;
        // An authorization posted nothing, and a purchase refunded in full has nothing left:
        // acknowledged, nothing to undo.
        if row.try_get::<String, _>("kind")? == "authorization" || original_amount <= 0 {
            sqlx::query("UPDATE sim_transactions SET reversed = 1 WHERE id = $1")
                .bind(original_id)
                .execute(&mut *tx)
                .await?;
            return self
                .record(
                    tx,
                    request,
                    card_id.as_deref(),
                    amount,
                    currency,
                    ResponseCode::Approved,
                    None,
                    now,
                    None,
                )
                .await;
        }
        let account_id: String = row.try_get("account_id")?;
        let original_acquirer: String = row.try_get("acquirer")?;
        let original_day: i64 = row.try_get("day")?;
        let account_row = sqlx::query("SELECT currency, balance, credit_limit, daily_limit, daily_spent, spent_day FROM sim_accounts WHERE id = $1")
            .bind(&account_id)
            .fetch_one(&mut *tx)
            .await?;
        let account = account_facts(&account_row)?;
        // A load is undone from the e-cash account; a purchase from the acquirer.
        let counter_account = if row.try_get::<String, _>("kind")? == "ecash_load" {
            bank::ecash_account(&account_id)
        } else {
            bank::acquirer_account(&original_acquirer)
        };
        let decision = bank::reverse(
            &account,
            &account_id,
            &counter_account,
            original_amount,
            original_day,
        );
        // Claim the original: if another reversal got there, nothing is posted twice.
        let claimed =
            sqlx::query("UPDATE sim_transactions SET reversed = 1 WHERE id = $1 AND reversed = 0")
                .bind(original_id)
                .execute(&mut *tx)
                .await?;
        if claimed.rows_affected() == 1 {
            let inserted = sqlx::query(
                "INSERT INTO sim_transactions (mti, acquirer, stan, transmission_time, rrn, card_id, amount, currency, response_code, day, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '00', $9, $10) RETURNING id",
            )
            .bind(request.mti().as_str())
            .bind(text(request, 32))
            .bind(text(request, 11))
            .bind(text(request, 7))
            .bind(text(request, 37))
            .bind(card_id.as_deref())
            .bind(original_amount)
            .bind(i64::from(currency))
            .bind(day_of(now))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let transaction_id: i64 = inserted.try_get("id")?;
            self.post(
                &mut tx,
                transaction_id,
                &account_id,
                &decision.account,
                &decision.postings,
                now,
            )
            .await?;
            tx.commit().await?;
        }
        Ok(respond(request, ResponseCode::Approved, None))
    }

    /// Sum of all ledger debits and credits (equal when the books balance).
    pub async fn ledger_totals(&self) -> Result<(i64, i64), SimError> {
        let row = sqlx::query("SELECT COALESCE(SUM(CASE WHEN debit THEN amount ELSE 0 END), 0) AS debits, COALESCE(SUM(CASE WHEN debit THEN 0 ELSE amount END), 0) AS credits FROM sim_ledger")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("debits")?, row.try_get("credits")?))
    }

    /// A card's account balance and PIN try counter.
    pub async fn card_balance(&self, card_number: &str) -> Result<(i64, i64), SimError> {
        let pan = Pan::parse(card_number).map_err(|e| SimError::BadRequest(e.to_string()))?;
        let row = sqlx::query("SELECT a.balance, c.pin_tries FROM sim_cards c JOIN sim_accounts a ON a.id = c.account_id WHERE c.pan_fingerprint = $1")
            .bind(self.fingerprint(&pan)?)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(SimError::CardNotFound)?;
        Ok((row.try_get("balance")?, row.try_get("pin_tries")?))
    }

    /// The e-cash loaded onto a card's account and not yet cleared (minor units): the
    /// balance of its e-cash ledger account.
    pub async fn ecash_balance(&self, card_number: &str) -> Result<i64, SimError> {
        let pan = Pan::parse(card_number).map_err(|e| SimError::BadRequest(e.to_string()))?;
        let row = sqlx::query("SELECT account_id FROM sim_cards WHERE pan_fingerprint = $1")
            .bind(self.fingerprint(&pan)?)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(SimError::CardNotFound)?;
        let account_id: String = row.try_get("account_id")?;
        let sums = sqlx::query("SELECT COALESCE(SUM(CASE WHEN debit THEN 0 ELSE amount END), 0) - COALESCE(SUM(CASE WHEN debit THEN amount ELSE 0 END), 0) AS balance FROM sim_ledger WHERE account = $1")
            .bind(bank::ecash_account(&account_id))
            .fetch_one(&self.pool)
            .await?;
        Ok(sums.try_get("balance")?)
    }

    /// Serves the ISO 8583 port until `shutdown` fires, through the network's one server loop
    /// (each connection carries many messages in flight, answered in any order). The bank's
    /// only client is the switch, whose link stays open without echoes and sends nothing
    /// until someone pays: a connection may wait a day for its first message, and idle a
    /// day between messages (the default 10 s admission dropped the quiet link every 10 s).
    pub async fn serve_iso8583(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: watch::Receiver<bool>,
    ) {
        let limits = PortLimits {
            max_connections: MAX_CONNECTIONS,
            max_connections_per_peer: MAX_CONNECTIONS,
            in_flight_per_connection: IN_FLIGHT_PER_CONNECTION,
            admission: QUIET_LINK,
            idle: QUIET_LINK,
            ..PortLimits::default()
        };
        let held = limits.connection_limits();
        server::serve("issuer host", self, listener, limits, held, None, shutdown).await
    }
}

/// How long the switch's link may stay silent, before its first message and between two.
const QUIET_LINK: Duration = Duration::from_secs(86_400);

impl FrameHandler for IssuerHost {
    async fn answer_frame(&self, frame: Vec<u8>) -> FrameAnswer {
        let answer = match profile::cloudpass().decode(&frame) {
            Ok(request) => self.process(&request).await,
            Err(error) => {
                tracing::warn!(error = %error, "issuer host: undecodable message");
                let mut reject = Message::new(Mti::NETWORK_RESPONSE);
                reject.set_text(39, ResponseCode::FormatError.code());
                reject
            }
        };
        match profile::cloudpass().encode(&answer) {
            Ok(bytes) => FrameAnswer::Answer {
                bytes,
                admits: true,
            },
            Err(_) => FrameAnswer::Close,
        }
    }
}

//! Deposits at the bank's counter (back office): money paid into a card's account, moved
//! from the bank's funding account so the books stay balanced, once per reference. A repeat
//! of a reference (the teller's retry after a lost answer) is answered from the first
//! deposit and moves nothing; a reference used for another card or amount is refused.
//!
//! A deposit holds the committer, as the ISO 8583 side's groups do, so it never races a
//! payment deciding from the same balance.

use axum::http::StatusCode;
use cloudpass_core::Pan;
use serde_json::{Value, json};
use sqlx::Row;

use crate::bank;
use crate::issuer_host::{IssuerHost, SimError};

/// The most one deposit may pay in, in fen (1,000,000 CNY).
const MOST: i64 = 100_000_000;

/// A reference: 1 to 64 letters, digits, `-` or `_`.
fn valid_reference(reference: &str) -> bool {
    (1..=64).contains(&reference.len())
        && reference
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

impl IssuerHost {
    /// Pays `amount` fen into the account of card `number`, once per `reference`: 201 with
    /// the new balance, or, for a repeat of the same deposit, 200 with the balance now.
    pub async fn deposit(
        &self,
        number: &str,
        amount: i64,
        reference: &str,
    ) -> Result<(StatusCode, Value), SimError> {
        if !(1..=MOST).contains(&amount) {
            return Err(SimError::BadRequest(format!(
                "amount must be 1 to {MOST} fen"
            )));
        }
        if !valid_reference(reference) {
            return Err(SimError::BadRequest(
                "reference must be 1 to 64 letters, digits, - or _".into(),
            ));
        }
        let pan = Pan::parse(number).map_err(|e| SimError::BadRequest(e.to_string()))?;
        let card = self.find_card(&pan).await?.ok_or(SimError::CardNotFound)?;
        let _committer = self.committer.lock().await;
        let mut connection = self.pool.acquire().await?;
        let paid = self
            .pay_in(&mut connection, &card.id, amount, reference)
            .await;
        match paid {
            Ok(Some(balance)) => Ok((
                StatusCode::CREATED,
                json!({"card_last4": card.pan_last4, "amount": amount, "reference": reference,
                       "balance": balance, "repeated": false}),
            )),
            Ok(None) => {
                drop(connection);
                self.repeated_deposit(&card.id, amount, reference, &card.pan_last4)
                    .await
            }
            Err(error) => {
                // As for a group commit (issuer_iso): a connection whose transaction failed
                // is not trusted again.
                connection.close_on_drop();
                Err(error)
            }
        }
    }

    /// The deposit's postings in one transaction on `connection`: the balance after it, or
    /// none when the reference is already in the books.
    async fn pay_in(
        &self,
        connection: &mut sqlx::SqliteConnection,
        card_id: &str,
        amount: i64,
        reference: &str,
    ) -> Result<Option<i64>, SimError> {
        let mut tx = sqlx::Connection::begin(connection).await?;
        let account = sqlx::query("SELECT account_id FROM sim_cards WHERE id = $1")
            .bind(card_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<String, _>("account_id")?;
        let now = self.clock.now_millis();
        let inserted = sqlx::query(
            "INSERT INTO sim_transactions (mti, acquirer, stan, transmission_time, rrn, card_id, amount, currency, response_code, day, created_at) \
             SELECT 'DEPOSIT', 'bank', '', '', $1, $2, $3, currency, '00', 0, $4 FROM sim_accounts WHERE id = $5 \
             ON CONFLICT (mti, acquirer, stan, transmission_time, rrn) DO NOTHING RETURNING id",
        )
        .bind(reference)
        .bind(card_id)
        .bind(amount)
        .bind(now)
        .bind(&account)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(inserted) = inserted else {
            tx.rollback().await?;
            return Ok(None);
        };
        let transaction_id: i64 = inserted.try_get("id")?;
        for (ledger_account, debit) in [(bank::FUNDING_ACCOUNT, true), (account.as_str(), false)] {
            sqlx::query("INSERT INTO sim_ledger (transaction_id, account, debit, amount, posted_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(transaction_id)
                .bind(ledger_account)
                .bind(debit)
                .bind(amount)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let balance: i64 = sqlx::query(
            "UPDATE sim_accounts SET balance = balance + $2 WHERE id = $1 RETURNING balance",
        )
        .bind(&account)
        .bind(amount)
        .fetch_one(&mut *tx)
        .await?
        .try_get("balance")?;
        tx.commit().await?;
        Ok(Some(balance))
    }

    /// The answer to a reference already used: the same deposit again is answered with the
    /// balance now; another card or amount is a conflict.
    async fn repeated_deposit(
        &self,
        card_id: &str,
        amount: i64,
        reference: &str,
        last4: &str,
    ) -> Result<(StatusCode, Value), SimError> {
        let first = sqlx::query(
            "SELECT card_id, amount FROM sim_transactions WHERE mti = 'DEPOSIT' AND acquirer = 'bank' AND rrn = $1",
        )
        .bind(reference)
        .fetch_one(&self.pool)
        .await?;
        let same = first.try_get::<Option<String>, _>("card_id")?.as_deref() == Some(card_id)
            && first.try_get::<i64, _>("amount")? == amount;
        if !same {
            return Err(SimError::Conflict(
                "the reference was used for another deposit".into(),
            ));
        }
        let balance: i64 = sqlx::query(
            "SELECT a.balance FROM sim_cards c JOIN sim_accounts a ON a.id = c.account_id WHERE c.id = $1",
        )
        .bind(card_id)
        .fetch_one(&self.pool)
            .await?
            .try_get("balance")?;
        Ok((
            StatusCode::OK,
            json!({"card_last4": last4, "amount": amount, "reference": reference,
                   "balance": balance, "repeated": true}),
        ))
    }
}

//! Returns of an approved purchase, each naming it in field 90 (processing code 20xxxx):
//!
//! - a **void** (撤销), 0200: the whole amount, on the day of the purchase, before anything
//!   of it was refunded; the purchase is then as if reversed.
//! - a **refund** (退货), 0220: part or all of what has not been returned yet, any day;
//!   several refunds may follow one purchase.
//!
//! Each is decided and posted in one transaction with its record, so a repeat (the same
//! acquirer, STAN, transmission time and RRN) is answered from the record and posts nothing
//! twice; two returns racing for one purchase are serialized by the group commit and the
//! second sees the first.

use cloudpass_core::ResponseCode;
use cloudpass_iso8583::Message;
use cloudpass_iso8583::private::OriginalData;
use sqlx::{Row, Sqlite, Transaction};

use crate::bank;
use crate::issuer_host::{IssuerHost, SimError};
use crate::issuer_iso::{account_facts, day_of, respond, text};

/// Field 3 of a return (goods returned, 20xxxx).
pub(crate) fn is_return(request: &Message<'_>) -> bool {
    text(request, 3).starts_with("20")
}

/// The purchase a return names, as the books hold it.
struct Original {
    id: i64,
    card_id: Option<String>,
    account_id: String,
    acquirer: String,
    amount: i64,
    day: i64,
    /// Reversed or voided: nothing of it is left to return.
    reversed: bool,
    /// Refunded so far.
    refunded: i64,
}

impl IssuerHost {
    /// A void (0200) or refund (0220) of an approved purchase.
    pub(crate) async fn card_return(
        &self,
        mut tx: Transaction<'_, Sqlite>,
        request: &Message<'_>,
    ) -> Result<Message<'static>, SimError> {
        if let Some(answer) = self.seen(&mut tx, request).await? {
            return Ok(answer);
        }
        let now = self.clock.now_millis();
        let amount: i64 = text(request, 4).parse().unwrap_or(0);
        let void = request.mti().as_str() == "0200";
        let original = match self.original_of(&mut tx, request).await? {
            Ok(original) => original,
            Err(code) => return self.record_return(tx, request, None, None, code, now).await,
        };
        let kind = if void {
            bank::Return::Void
        } else {
            bank::Return::Refund
        };
        let returnable = bank::Returnable {
            amount: original.amount,
            refunded: original.refunded,
            reversed: original.reversed,
            day: original.day,
        };
        let refusal = bank::return_refusal(kind, amount, &returnable, day_of(now));
        if let Some(code) = refusal {
            return self
                .record_return(tx, request, Some(&original), None, code, now)
                .await;
        }
        if void {
            sqlx::query("UPDATE sim_transactions SET reversed = 1 WHERE id = $1")
                .bind(original.id)
                .execute(&mut *tx)
                .await?;
        }
        let account_row = sqlx::query("SELECT currency, balance, credit_limit, daily_limit, daily_spent, spent_day FROM sim_accounts WHERE id = $1")
            .bind(&original.account_id)
            .fetch_one(&mut *tx)
            .await?;
        let decision = bank::reverse(
            &account_facts(&account_row)?,
            &original.account_id,
            &bank::acquirer_account(&original.acquirer),
            amount,
            original.day,
        );
        self.record_return(
            tx,
            request,
            Some(&original),
            Some(&decision),
            ResponseCode::Approved,
            now,
        )
        .await
    }

    /// The approved purchase field 90 names, or the code when there is none.
    async fn original_of(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        request: &Message<'_>,
    ) -> Result<Result<Original, ResponseCode>, SimError> {
        let Some(original) = request
            .get_str(90)
            .and_then(|value| OriginalData::parse(value).ok())
        else {
            return Ok(Err(ResponseCode::FormatError));
        };
        let row = sqlx::query(
            "SELECT t.id, t.card_id, t.amount, t.reversed, t.day, t.acquirer, c.account_id, \
             (SELECT COALESCE(SUM(r.amount), 0) FROM sim_transactions r WHERE r.original_id = t.id AND r.kind = 'refund' AND r.response_code = '00') AS refunded \
             FROM sim_transactions t JOIN sim_cards c ON c.id = t.card_id \
             WHERE t.mti = $1 AND t.stan = $2 AND t.transmission_time = $3 AND ltrim(t.acquirer, '0') = $4 \
             AND t.kind = 'purchase' AND t.response_code = '00'",
        )
        .bind(&original.mti)
        .bind(&original.stan)
        .bind(&original.transmission_time)
        .bind(original.acquirer.trim_start_matches('0'))
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else {
            return Ok(Err(ResponseCode::OriginalNotFound));
        };
        Ok(Ok(Original {
            id: row.try_get("id")?,
            card_id: row.try_get("card_id")?,
            account_id: row.try_get("account_id")?,
            acquirer: row.try_get("acquirer")?,
            amount: row.try_get("amount")?,
            day: row.try_get("day")?,
            reversed: row.try_get("reversed")?,
            refunded: row.try_get("refunded")?,
        }))
    }

    /// Records the return with its answer (and, approved, its postings) and commits.
    async fn record_return(
        &self,
        mut tx: Transaction<'_, Sqlite>,
        request: &Message<'_>,
        original: Option<&Original>,
        decision: Option<&bank::Decision>,
        code: ResponseCode,
        now: i64,
    ) -> Result<Message<'static>, SimError> {
        let kind = if request.mti().as_str() == "0200" {
            "void"
        } else {
            "refund"
        };
        let auth_code = code
            .is_approved()
            .then(|| format!("{:06}", self.random.below(1_000_000)));
        let inserted = sqlx::query(
            "INSERT INTO sim_transactions (mti, acquirer, stan, transmission_time, rrn, card_id, amount, currency, response_code, auth_code, day, created_at, kind, original_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(request.mti().as_str())
        .bind(text(request, 32))
        .bind(text(request, 11))
        .bind(text(request, 7))
        .bind(text(request, 37))
        .bind(original.and_then(|o| o.card_id.as_deref()))
        .bind(text(request, 4).parse::<i64>().unwrap_or(0))
        .bind(text(request, 49).parse::<i64>().unwrap_or(0))
        .bind(code.code())
        .bind(auth_code.as_deref())
        .bind(day_of(now))
        .bind(now)
        .bind(kind)
        .bind(original.map(|o| o.id))
        .fetch_one(&mut *tx)
        .await?;
        if let (Some(original), Some(decision)) = (original, decision) {
            let transaction_id: i64 = inserted.try_get("id")?;
            self.post(
                &mut tx,
                transaction_id,
                &original.account_id,
                &decision.account,
                &decision.postings,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(respond(request, code, auth_code.as_deref()))
    }
}

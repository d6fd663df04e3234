//! Reversals from acquirers (0400/0401, 0420/0421 advice), matched to their originals by
//! field 90 and taken into store and forward.

use cloudpass_core::ResponseCode;
use cloudpass_core::card_number::mask_digits;
use cloudpass_iso8583::private::OriginalData;
use cloudpass_iso8583::{Message, Mti};
use cloudpass_store::{JournalAnswer, JournalOp, JournalOutcome, JournalRow, SafRow, TokenStore};

use super::{IssuerOutcome, Repeat, Switch, answer, journal_id, text};

impl Switch {
    /// A reversal from an acquirer (0400, or 0420 advice), matched to its original by field
    /// 90. The switch takes it into store and forward — the issuer receives a 0420 however
    /// long it is unreachable — and acknowledges it at once. A reversal of something the
    /// switch never saw is answered 25, and that original is barred: should it arrive later
    /// (a reversal can overtake its original on another connection), it is answered 94 and
    /// never reaches the issuer. A reversal of something declined is acknowledged with
    /// nothing to undo.
    pub(super) async fn reversal(&self, request: &Message<'_>) -> Message<'static> {
        let id = match self.begin(request, Repeat::AnswerAsBefore).await {
            Ok(id) => id,
            Err(early) => return *early,
        };
        let now = self.clock.now_millis();
        let (code, advice) = self.match_reversal(request, now).await;
        let mut ops = vec![JournalOp::Answer(JournalAnswer {
            id,
            response_code: code.code().to_owned(),
            auth_code: None,
            issuer_outcome: IssuerOutcome::NotSent.as_str().to_owned(),
            answered_at: now,
        })];
        if let Some(advice) = advice {
            ops.push(JournalOp::Enqueue(advice));
        }
        if let Err(error) = self.journal.record_answer(ops).await {
            tracing::error!(error = %error, "switch: a reversal cannot be journaled");
            return answer(request, ResponseCode::SystemMalfunction);
        }
        let mut response = answer(request, code);
        if let Some(original) = request.get(90) {
            response.set(90, original.to_vec());
        }
        response
    }

    async fn match_reversal(
        &self,
        request: &Message<'_>,
        now: i64,
    ) -> (ResponseCode, Option<SafRow>) {
        let Some(original) = request
            .get_str(90)
            .and_then(|value| OriginalData::parse(value).ok())
        else {
            return (ResponseCode::FormatError, None);
        };
        let acquirer = text(request, 32);
        if original.acquirer.trim_start_matches('0') != acquirer.trim_start_matches('0') {
            // An acquirer reverses only its own transactions.
            return (ResponseCode::OriginalNotFound, None);
        }
        let original_id = journal_id(
            &original.mti,
            acquirer,
            &original.stan,
            &original.transmission_time,
        );
        // At most two reads: a bar that finds the original journaled meanwhile means the
        // second read sees it; should it not, the answer is 96 and the terminal repeats.
        let mut reads = 0;
        let entry = loop {
            reads += 1;
            if reads > 2 {
                tracing::error!("switch: an original both journaled and missing; refusing");
                return (ResponseCode::SystemMalfunction, None);
            }
            match self.store.journal_entry(&original_id).await {
                Ok(Some(entry)) => break entry,
                Ok(None) => match self
                    .bar_late_original(request, &original, &original_id, now)
                    .await
                {
                    Ok(true) => return (ResponseCode::OriginalNotFound, None),
                    // It arrived meanwhile: reverse it like any other.
                    Ok(false) => continue,
                    Err(error) => {
                        tracing::error!(error = %error, "switch: cannot bar a late original");
                        return (ResponseCode::SystemMalfunction, None);
                    }
                },
                Err(error) => {
                    tracing::error!(error = %error, "switch: journal lookup failed");
                    return (ResponseCode::SystemMalfunction, None);
                }
            }
        };
        // Field 90 names the original; field 2, when the acquirer still has it (a reversal
        // after a restart may not), and the amount must agree with it.
        let account_differs =
            request.get(2).is_some() && entry.token_masked != mask_digits(text(request, 2));
        if account_differs || entry.amount != text(request, 4).parse::<i64>().unwrap_or(-1) {
            return (ResponseCode::OriginalNotFound, None);
        }
        let undo = match (
            entry.response_code.as_deref(),
            entry.issuer_outcome.as_deref(),
        ) {
            // Still in flight, or approved: the issuer must hear of it.
            (None, _) | (Some("00"), _) => true,
            // Declined, but sent and not answered: the issuer may have acted on it.
            (Some(_), Some("timeout")) => true,
            (Some(_), _) => false,
        };
        if !undo {
            return (ResponseCode::Approved, None);
        }
        let Ok(original_mti) = Mti::parse(&original.mti) else {
            return (ResponseCode::FormatError, None);
        };
        let mut original_request = Message::new(original_mti);
        for (field, value) in [
            (4, text(request, 4)),
            (7, original.transmission_time.as_str()),
            (11, original.stan.as_str()),
            (32, acquirer),
            (37, entry.rrn.as_str()),
            (41, entry.terminal_id.as_str()),
            (42, text(request, 42)),
            (49, text(request, 49)),
        ] {
            original_request.set_text(field, value.to_owned());
        }
        // An original still in flight may yet reach the issuer; the reversal waits until the
        // issuer would have answered it.
        let due = if entry.response_code.is_none() {
            now + i64::try_from(self.config.issuer_timeout.as_millis()).unwrap_or(i64::MAX)
        } else {
            now
        };
        (
            ResponseCode::Approved,
            Some(self.advice(Mti::REVERSAL_ADVICE, "reversal", &original_request, due)),
        )
    }

    /// Journals the original a reversal names but the switch has not seen, answered 25 and
    /// never sent, so that the original, should it still arrive, is a repeat (94) and moves
    /// no money. `false` when the original was journaled meanwhile (it is then reversed
    /// normally).
    async fn bar_late_original(
        &self,
        request: &Message<'_>,
        original: &OriginalData,
        original_id: &str,
        now: i64,
    ) -> Result<bool, crate::journal::JournalError> {
        let acquirer = text(request, 32);
        let barred = JournalRow {
            id: original_id.to_owned(),
            mti: original.mti.clone(),
            acquirer_id: acquirer.to_owned(),
            stan: original.stan.clone(),
            transmission_time: original.transmission_time.clone(),
            rrn: text(request, 37).to_owned(),
            terminal_id: text(request, 41).to_owned(),
            token_masked: mask_digits(text(request, 2)),
            amount: text(request, 4).parse().unwrap_or(0),
            currency: text(request, 49).parse().unwrap_or(0),
            received_at: now,
            // Answered in the same commit that records it: a barred original must never look
            // in flight, or a repeated reversal would queue an advice of it.
            response_code: Some(ResponseCode::OriginalNotFound.code().to_owned()),
            auth_code: None,
            issuer_outcome: Some(IssuerOutcome::NotSent.as_str().to_owned()),
            answered_at: Some(now),
        };
        let outcomes = self.journal.record(vec![JournalOp::Begin(barred)]).await?;
        Ok(!matches!(
            outcomes.first(),
            Some(JournalOutcome::Duplicate(_))
        ))
    }
}

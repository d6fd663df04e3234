//! The journal rows and store-and-forward advices a message leaves behind, and the
//! journaling of a request on arrival (where repeats are caught).

use cloudpass_core::ResponseCode;
use cloudpass_core::card_number::mask_digits;
use cloudpass_iso8583::{Message, Mti};
use cloudpass_store::{JournalOp, JournalOutcome, JournalRow, SafRow};

use super::{Repeat, Switch, answer, journal_id, text};

impl Switch {
    /// Journals a request on arrival; its journal id, or the answer to give at once: to a
    /// repeat (94, or the first one's answer for advices and reversals, which are
    /// idempotent), or 96 when the journal cannot record.
    pub(super) async fn begin(
        &self,
        request: &Message<'_>,
        repeat: Repeat,
    ) -> Result<String, Box<Message<'static>>> {
        let row = self.journal_row(request);
        let id = row.id.clone();
        match self.journal.record(vec![JournalOp::Begin(row)]).await {
            Ok(outcomes) => match outcomes.into_iter().next() {
                // An idempotent request whose first arrival has no answer on record (still
                // in flight, or its answer was lost) is simply worked again.
                Some(JournalOutcome::Duplicate(earlier)) if repeat.works_again(&earlier) => Ok(id),
                Some(JournalOutcome::Duplicate(earlier)) => {
                    let code = match repeat {
                        Repeat::Duplicate => ResponseCode::DuplicateTransmission,
                        Repeat::AnswerAsBefore | Repeat::AnswerAsDecided => earlier
                            .response_code
                            .as_deref()
                            .and_then(ResponseCode::parse)
                            .unwrap_or(ResponseCode::DuplicateTransmission),
                    };
                    Err(Box::new(answer(request, code)))
                }
                _ => Ok(id),
            },
            Err(error) => {
                tracing::error!(error = %error, "switch: the journal cannot record; refusing");
                Err(Box::new(answer(request, ResponseCode::SystemMalfunction)))
            }
        }
    }

    /// The journal row of a request as it arrives.
    pub(super) fn journal_row(&self, request: &Message<'_>) -> JournalRow {
        let currency = text(request, 49).parse().unwrap_or(0);
        JournalRow {
            id: journal_id(
                request.mti().as_str(),
                text(request, 32),
                text(request, 11),
                text(request, 7),
            ),
            mti: request.mti().as_str().to_owned(),
            acquirer_id: text(request, 32).to_owned(),
            stan: text(request, 11).to_owned(),
            transmission_time: text(request, 7).to_owned(),
            rrn: text(request, 37).to_owned(),
            terminal_id: text(request, 41).to_owned(),
            token_masked: mask_digits(text(request, 2)),
            amount: text(request, 4).parse().unwrap_or(0),
            currency,
            received_at: self.clock.now_millis(),
            response_code: None,
            auth_code: None,
            issuer_outcome: None,
            answered_at: None,
        }
    }

    /// An advice about the request `request` (a 0200, or an acquirer's 0220 of an offline
    /// spend) for the store-and-forward queue. A reversal advice keeps no account number: the
    /// issuer finds the original by field 90, and a card number (card-not-present payments)
    /// must not rest in the queue. Stand-in and e-cash advices keep the token, which the
    /// vault turns back into the card when the advice is sent.
    pub(super) fn advice(
        &self,
        mti: Mti,
        kind: &str,
        request: &Message<'_>,
        due_at: i64,
    ) -> SafRow {
        let original_mti = request.mti().as_str().to_owned();
        SafRow {
            id: format!(
                "{}:{}",
                mti.as_str(),
                journal_id(
                    &original_mti,
                    text(request, 32),
                    text(request, 11),
                    text(request, 7)
                )
            ),
            mti: mti.as_str().to_owned(),
            kind: kind.to_owned(),
            token_number: if mti == Mti::REVERSAL_ADVICE {
                String::new()
            } else {
                text(request, 2).to_owned()
            },
            original_mti,
            stan: text(request, 11).to_owned(),
            transmission_time: text(request, 7).to_owned(),
            acquirer_id: text(request, 32).to_owned(),
            rrn: text(request, 37).to_owned(),
            terminal_id: text(request, 41).to_owned(),
            merchant_id: text(request, 42).to_owned(),
            amount: text(request, 4).parse().unwrap_or(0),
            currency: text(request, 49).parse().unwrap_or(0),
            attempts: 0,
            next_attempt_at: due_at,
            created_at: self.clock.now_millis(),
            acknowledged_at: None,
            response_code: None,
        }
    }
}

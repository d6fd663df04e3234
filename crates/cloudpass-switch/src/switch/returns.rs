//! Returns of card-not-present purchases (processing code 20xxxx, the purchase named in
//! field 90), from the e-commerce acquirers allowed to send them: a **void** (撤销, 0200: the
//! whole amount, on the day) or a **refund** (退货, 0220: part of what is left, repeatedly).
//!
//! The switch checks the sender and that the journal holds the purchase, approved, for the
//! same card and acquirer; then it forwards the return to the issuer and answers with the
//! issuer's code. The issuer decides what may be returned and posts each return once. No
//! stand-in and no advice: an acquirer that heard nothing, or heard 68 (no answer in time)
//! or 91 (the issuer unreachable), sends the same return again. The switch answers a repeat
//! from its journal when the issuer decided the first, and asks the issuer again when it did
//! not — the issuer answers a repeat from its record, so a return is posted once however
//! often it is asked.

use cloudpass_core::card_number::mask_digits;
use cloudpass_core::{AccountNumber, Pan, ResponseCode};
use cloudpass_iso8583::exchange::LinkError;
use cloudpass_iso8583::private::OriginalData;
use cloudpass_iso8583::{Message, Mti};
use cloudpass_store::{JournalAnswer, JournalOp, TokenStore};

use super::{IssuerOutcome, Repeat, Switch, answer, journal_id, text};

/// Fields of the acquirer's return the issuer's does not copy: the MAC (64, 128); a return
/// carries no PIN (52, 53) or card-holder data (61).
const NOT_COPIED: [u8; 5] = [52, 53, 61, 64, 128];

/// Processing code 20xxxx: goods returned.
pub(super) fn is_return(request: &Message<'_>) -> bool {
    text(request, 3).starts_with("20")
}

impl Switch {
    pub(super) async fn card_return(&self, request: &Message<'_>) -> Message<'static> {
        let id = match self.begin(request, Repeat::AnswerAsDecided).await {
            Ok(id) => id,
            Err(early) => return *early,
        };
        let mut outcome = IssuerOutcome::NotSent;
        let response = match self.forward_return(request, &mut outcome).await {
            Ok(response) => response,
            Err(code) => answer(request, code),
        };
        let journaled = JournalOp::Answer(JournalAnswer {
            id,
            response_code: response.get_str(39).unwrap_or("96").to_owned(),
            auth_code: response.get_str(38).map(str::to_owned),
            issuer_outcome: outcome.as_str().to_owned(),
            answered_at: self.clock.now_millis(),
        });
        if let Err(error) = self.journal.record_answer(vec![journaled]).await {
            // The issuer has decided; the acquirer hears it. A repeat is worked again and
            // the issuer answers it from its record.
            tracing::error!(error = %error, stan = %text(request, 11), "switch: a return's answer cannot be journaled");
        }
        response
    }

    async fn forward_return(
        &self,
        request: &Message<'_>,
        outcome: &mut IssuerOutcome,
    ) -> Result<Message<'static>, ResponseCode> {
        let acquirer = text(request, 32);
        let allowed = self
            .participants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .acquirers()
            .any(|a| a.id == acquirer && a.card_not_present);
        if !allowed {
            return Err(ResponseCode::NotPermittedToTerminal);
        }
        // Field 2 is optional: a return names its purchase by field 90, and an acquirer that
        // keeps no card numbers (the institution gateway) sends none.
        let pan = match request.get_str(2) {
            Some(text) => Some(Pan::parse(text).map_err(|_| ResponseCode::InvalidCard)?),
            None => None,
        };
        self.check_original(request, pan.as_ref()).await?;
        let mut issuer_request = Message::new(request.mti());
        for (field, value) in request.fields() {
            if !NOT_COPIED.contains(&field) {
                issuer_request.set(field, value.to_vec());
            }
        }
        match self.issuer.request(&issuer_request).await {
            Ok(issuer_answer) => {
                *outcome = IssuerOutcome::Answered;
                let code = issuer_answer
                    .get_str(39)
                    .and_then(ResponseCode::parse)
                    .unwrap_or(ResponseCode::SystemMalfunction);
                let mut response = answer(request, code);
                if let Some(auth_code) = issuer_answer.get(38) {
                    response.set(38, auth_code.to_vec());
                }
                Ok(response)
            }
            Err(LinkError::Timeout) => {
                *outcome = IssuerOutcome::Timeout;
                Err(ResponseCode::ResponseReceivedTooLate)
            }
            Err(_) => {
                *outcome = IssuerOutcome::Down;
                Err(ResponseCode::IssuerInoperative)
            }
        }
    }

    /// The purchase field 90 names: journaled, approved, from this acquirer, and for this
    /// card when the return names one.
    async fn check_original(
        &self,
        request: &Message<'_>,
        pan: Option<&Pan>,
    ) -> Result<(), ResponseCode> {
        let original = request
            .get_str(90)
            .and_then(|value| OriginalData::parse(value).ok())
            .ok_or(ResponseCode::FormatError)?;
        let acquirer = text(request, 32);
        if original.acquirer.trim_start_matches('0') != acquirer.trim_start_matches('0')
            || original.mti != Mti::FINANCIAL_REQUEST.as_str()
        {
            return Err(ResponseCode::OriginalNotFound);
        }
        let original_id = journal_id(
            &original.mti,
            acquirer,
            &original.stan,
            &original.transmission_time,
        );
        let entry = match self.store.journal_entry(&original_id).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return Err(ResponseCode::OriginalNotFound),
            Err(error) => {
                tracing::error!(error = %error, "switch: journal lookup failed");
                return Err(ResponseCode::SystemMalfunction);
            }
        };
        let approved = entry.response_code.as_deref() == Some(ResponseCode::Approved.code());
        let same_card = pan.is_none_or(|pan| entry.token_masked == mask_digits(pan.expose()));
        if !approved || !same_card {
            return Err(ResponseCode::OriginalNotFound);
        }
        Ok(())
    }
}

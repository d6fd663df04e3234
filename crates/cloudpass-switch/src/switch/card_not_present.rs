//! Card-not-present payments: a card number its holder typed on an acquirer's payment page
//! (the institution gateway is such an acquirer), sent as e-commerce with 60.3.6 = `7`.
//!
//! The switch cannot check any of what proves the holder here — the CVN2 and expiry in
//! 61.4, the PIN in 52 — so it checks who may send such payments and passes the rest to the
//! issuer: the PIN translated from the acquirer's key to the zone key (the card number on
//! both sides), 61.4 as sent, 61.5 = `3` (no cryptogram to check). It never stands in for
//! the issuer, and an advice about such a payment never carries the card number: the issuer
//! finds the original by field 90.

use cloudpass_core::{AccountNumber, Pan, ResponseCode};
use cloudpass_iso8583::Message;
use cloudpass_iso8583::private::{FIELD_61, Positional, values};

use super::request::{FinancialRequest, Processing};
use super::to_issuer::copied_for_issuer;
use super::{IssuerOutcome, Switch};

impl Switch {
    pub(super) async fn authorize_card_not_present(
        &self,
        request: &FinancialRequest<'_>,
        pan: &Pan,
        check_value: Option<&str>,
        outcome: &mut IssuerOutcome,
    ) -> Result<Message<'static>, ResponseCode> {
        if !self.accepts_card_not_present(request.acquirer) {
            return Err(ResponseCode::NotPermittedToTerminal);
        }
        // A card-not-present load of e-cash has no card to load.
        if request.processing != Processing::Purchase {
            return Err(ResponseCode::InvalidTransaction);
        }
        let issuer_request = self.card_not_present_issuer_request(request, pan, check_value)?;
        let issuer_answer = self.ask_issuer(request, &issuer_request, outcome).await?;
        Ok(self.answer_acquirer(request, &issuer_answer, None))
    }

    fn accepts_card_not_present(&self, acquirer_id: &str) -> bool {
        self.participants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .acquirers()
            .any(|a| a.id == acquirer_id && a.card_not_present)
    }

    /// The issuer's message: the acquirer's, with the PIN block under the zone key and 61
    /// rewritten (61.4 passed on, 61.5 = not checked).
    fn card_not_present_issuer_request(
        &self,
        request: &FinancialRequest<'_>,
        pan: &Pan,
        check_value: Option<&str>,
    ) -> Result<Message<'static>, ResponseCode> {
        let mut issuer_request = copied_for_issuer(request);
        issuer_request.set_text(2, pan.expose());
        if let Some(expiry) = request.message.get(14) {
            issuer_request.set(14, expiry.to_vec());
        }
        if let Some(block) = request.pin_block {
            issuer_request
                .set(52, self.pin_block_for_issuer(request, pan, pan, block)?)
                .set_text(53, "2600000000000000");
        }
        if let Some(field60) = request.message.get(60) {
            issuer_request.set(60, field60.to_vec());
        }
        let mut field61 = Positional::new(61, FIELD_61);
        if let Some(value) = check_value {
            field61
                .set("61.4", value)
                .map_err(|_| ResponseCode::FormatError)?;
        }
        let _ = field61.set("61.5", values::ARQC_NOT_CHECKED);
        issuer_request.set_text(61, field61.to_string());
        Ok(issuer_request)
    }
}

//! Offline e-cash spends an acquirer uploads (0220, in a batch), taken into clearing once per
//! token and ATC.

use cloudpass_core::{Currency, Money, ResponseCode, Token};
use cloudpass_crypto::CryptogramRef;
use cloudpass_crypto::emv::SessionKeyInput;
use cloudpass_iso8583::emv_data::{CID_TC, CVR_TC, ChipRequest};
use cloudpass_iso8583::{Message, Mti};
use cloudpass_store::{JournalAnswer, JournalOp};

use super::{IssuerOutcome, Repeat, Switch, answer, text};

impl Switch {
    /// An offline e-cash spend an acquirer uploads (0220, in a batch): the phone approved it
    /// with a TC. The switch checks the token has e-cash, the TC was made by the token's keys
    /// over this amount, and clears each spend (token and ATC) once — a batch uploaded twice
    /// debits once — by queueing a 0220 for the issuer, who moves the money from the card's
    /// e-cash account to the acquirer. Answered 00 when the spend is (or already was) taken
    /// into clearing.
    pub(super) async fn offline_clearing(&self, request: &Message<'_>) -> Message<'static> {
        let id = match self.begin(request, Repeat::AnswerAsBefore).await {
            Ok(id) => id,
            Err(early) => return *early,
        };
        let now = self.clock.now_millis();
        let (code, clear) = match self.check_offline_spend(request).await {
            Ok(atc) => (
                ResponseCode::Approved,
                Some(JournalOp::ClearOffline {
                    token_number: text(request, 2).to_owned(),
                    atc: i64::from(atc),
                    advice: self.advice(Mti::FINANCIAL_ADVICE, "ecash", request, now),
                }),
            ),
            Err(code) => (code, None),
        };
        let mut ops: Vec<JournalOp> = clear.into_iter().collect();
        ops.push(JournalOp::Answer(JournalAnswer {
            id,
            response_code: code.code().to_owned(),
            auth_code: None,
            issuer_outcome: IssuerOutcome::NotSent.as_str().to_owned(),
            answered_at: now,
        }));
        if let Err(error) = self.journal.record_answer(ops).await {
            tracing::error!(error = %error, "switch: an offline spend cannot be journaled");
            return answer(request, ResponseCode::SystemMalfunction);
        }
        answer(request, code)
    }

    /// The checks of an offline spend; its ATC.
    async fn check_offline_spend(&self, request: &Message<'_>) -> Result<u16, ResponseCode> {
        let token_number = text(request, 2);
        let record = match self.vault.lookup(token_number).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(ResponseCode::InvalidCard),
            Err(error) => {
                tracing::error!(error = %error, "vault lookup failed");
                return Err(ResponseCode::SystemMalfunction);
            }
        };
        if !record.ecash_enabled {
            return Err(ResponseCode::InvalidTransaction);
        }
        let token = Token::parse(token_number).map_err(|_| ResponseCode::InvalidCard)?;
        let currency = Currency::parse_numeric(text(request, 49))
            .map_err(|_| ResponseCode::InvalidTransaction)?;
        let amount = Money::from_wire(text(request, 4), currency)
            .map_err(|_| ResponseCode::InvalidAmount)?;
        let chip = ChipRequest::parse(request.get(55).ok_or(ResponseCode::FormatError)?)
            .map_err(|_| ResponseCode::FormatError)?;
        if chip.cryptogram_information != CID_TC
            || chip.card.cvr[0] & CVR_TC == 0
            || chip.terminal.amount != amount.minor_units()
            || chip.terminal.currency != currency.numeric()
        {
            return Err(ResponseCode::SecurityViolation);
        }
        if record.atc_issued_until > 0 && i64::from(chip.card.atc) > record.atc_issued_until {
            return Err(ResponseCode::SecurityViolation);
        }
        let data = chip.cryptogram_input();
        let cryptogram = CryptogramRef {
            issuer_master_key: record.issuer_master_key,
            account: &token,
            pan_sequence: record.pan_sequence,
            session: SessionKeyInput::Atc { atc: chip.card.atc },
            data: &data,
            cryptogram: chip.arqc,
        };
        match self.hsm.verify_arqc(&cryptogram) {
            Ok(true) => Ok(chip.card.atc),
            Ok(false) => Err(ResponseCode::SecurityViolation),
            Err(error) => {
                tracing::error!(error = %error, "TC verification failed to run");
                Err(ResponseCode::SystemMalfunction)
            }
        }
    }
}

//! Financial requests (0100, 0200): journaled on arrival, authorized as a sequence of checks
//! each of which can end it with a field 39 code, answered and journaled. A token payment
//! takes the path below; a card-not-present one `card_not_present`'s.
//!
//! Parse (`request`) → detokenize → token state and domain → cryptogram (and ATC) → no-PIN
//! rules → the issuer's message, PIN translated from the token to the card (`to_issuer`) →
//! the answer to the acquirer with the token in place of the card and the ARPC in field 55.
//! The acquirer never sees the card number.

use cloudpass_core::authorization::{self, AcquirerNoPin, PaymentChannel, Verification};
use cloudpass_core::{AccountNumber, Money, ResponseCode, Token};
use cloudpass_crypto::emv::SessionKeyInput;
use cloudpass_crypto::{ArpcMethod, CryptogramRef};
use cloudpass_iso8583::emv_data::{self, CID_ARQC, CVR_ARQC, ChipRequest};
use cloudpass_iso8583::exchange::LinkError;
use cloudpass_iso8583::{Message, Mti};
use cloudpass_store::{JournalAnswer, JournalOp, JournalOutcome, SafDelivery, SafRow};

use super::request::{FinancialRequest, Presented, Processing};
use super::{IssuerOutcome, Repeat, StandInPolicy, Switch, answer, text};
use crate::vault::VaultRecord;
impl Switch {
    /// A 0200: journaled on arrival (a second arrival is a duplicate, 94), authorized, its
    /// answer journaled — with any advice the issuer must still receive — before it leaves.
    pub(super) async fn financial(&self, request: &Message<'_>) -> Message<'static> {
        let id = match self.begin(request, Repeat::Duplicate).await {
            Ok(id) => id,
            Err(early) => return *early,
        };
        let mut outcome = IssuerOutcome::NotSent;
        let response = match self.authorize(request, &mut outcome).await {
            Ok(response) => response,
            Err(code) => answer(request, code),
        };
        let code = response.get_str(39).unwrap_or("96").to_owned();
        let now = self.clock.now_millis();
        let mut ops = vec![JournalOp::Answer(JournalAnswer {
            id,
            response_code: code.clone(),
            auth_code: response.get_str(38).map(str::to_owned),
            issuer_outcome: outcome.as_str().to_owned(),
            answered_at: now,
        })];
        let approved = code == ResponseCode::Approved.code();
        match outcome {
            // The issuer may have approved: a stand-in approval tells it to post (unless it
            // already has), a decline reverses whatever it did.
            IssuerOutcome::Timeout if approved => {
                ops.push(JournalOp::Enqueue(self.advice(
                    Mti::FINANCIAL_ADVICE,
                    "stand_in",
                    request,
                    now,
                )));
            }
            IssuerOutcome::Timeout => {
                ops.push(JournalOp::Enqueue(self.advice(
                    Mti::REVERSAL_ADVICE,
                    "reversal",
                    request,
                    now,
                )));
            }
            IssuerOutcome::Down if approved => {
                ops.push(JournalOp::Enqueue(self.advice(
                    Mti::FINANCIAL_ADVICE,
                    "stand_in",
                    request,
                    now,
                )));
            }
            _ => {}
        }
        let advices: Vec<SafRow> = ops
            .iter()
            .filter_map(|op| match op {
                JournalOp::Enqueue(advice) => Some(advice.clone()),
                _ => None,
            })
            .collect();
        if let Err(error) = self.journal.record_answer(ops).await {
            // The journal's retries are spent. The issuer has decided; the acquirer must hear
            // what it decided, or money moves without goods. The journal keeps the request
            // (recorded on arrival) for reconciliation; an advice that could not be queued is
            // sent once, now.
            tracing::error!(error = %error, stan = %text(request, 11), "switch: the answer cannot be journaled; answering anyway");
            for advice in advices {
                let delivery = self.deliver(&advice, self.clock.now_millis()).await;
                if !matches!(delivery, SafDelivery::Acknowledged { .. }) {
                    tracing::error!(advice = %advice.mti, stan = %advice.stan, "switch: an advice was neither queued nor delivered; reconcile by hand");
                }
            }
        }
        response
    }
    /// The answer to a financial request, or the code that ends it; `outcome` says how far
    /// it got towards the issuer.
    async fn authorize(
        &self,
        message: &Message<'_>,
        outcome: &mut IssuerOutcome,
    ) -> Result<Message<'static>, ResponseCode> {
        let request = FinancialRequest::parse(message)?;
        match &request.presented {
            Presented::Token { token, chip } => {
                self.authorize_token(&request, token, chip, outcome).await
            }
            Presented::CardNotPresent { pan, check_value } => {
                self.authorize_card_not_present(&request, pan, check_value.as_deref(), outcome)
                    .await
            }
        }
    }

    /// A token payment: the token's state and domain, its cryptogram and ATC, the no-PIN
    /// rules, then the issuer with the card in the token's place.
    async fn authorize_token(
        &self,
        request: &FinancialRequest<'_>,
        token: &Token,
        chip: &ChipRequest,
        outcome: &mut IssuerOutcome,
    ) -> Result<Message<'static>, ResponseCode> {
        let record = self.token_record(token.expose()).await?;
        let (year, month) = self.clock.year_month();
        authorization::check_token(&record.facts, request.channel, year, month)?;
        let cryptogram_input = chip.cryptogram_input();
        let cryptogram = CryptogramRef {
            issuer_master_key: record.issuer_master_key,
            account: token,
            pan_sequence: record.pan_sequence,
            session: SessionKeyInput::Atc { atc: chip.card.atc },
            data: &cryptogram_input,
            cryptogram: chip.arqc,
        };
        self.verify_cryptogram(request, chip, &record, &cryptogram)?;
        self.accept_atc(token.expose(), chip.card.atc).await?;
        let verification = self.cardholder_verification(request, chip, &record)?;
        let issuer_request = self.issuer_request(request, token, &record, verification)?;
        let issuer_answer = self.ask_issuer(request, &issuer_request, outcome).await?;
        Ok(self.answer_acquirer(request, &issuer_answer, Some(&cryptogram)))
    }

    /// The token's record in the vault; 14 for a token the vault does not know.
    async fn token_record(&self, token_number: &str) -> Result<VaultRecord, ResponseCode> {
        match self.vault.lookup(token_number).await {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(ResponseCode::InvalidCard),
            Err(error) => {
                tracing::error!(error = %error, "vault lookup failed");
                Err(ResponseCode::SystemMalfunction)
            }
        }
    }

    /// The cryptogram: present, about this payment, an online request (an ARQC: a TC was
    /// approved offline and is cleared by advice, never authorized again), within the ATCs
    /// issued to the device, and made by this token's keys.
    fn verify_cryptogram(
        &self,
        request: &FinancialRequest<'_>,
        chip: &ChipRequest,
        record: &VaultRecord,
        cryptogram: &CryptogramRef<'_>,
    ) -> Result<(), ResponseCode> {
        if chip.terminal.amount != request.amount.minor_units()
            || chip.terminal.currency != request.amount.currency().numeric()
        {
            return Err(ResponseCode::SecurityViolation);
        }
        if chip.cryptogram_information != CID_ARQC || chip.card.cvr[0] & CVR_ARQC == 0 {
            return Err(ResponseCode::SecurityViolation);
        }
        if record.atc_issued_until > 0 && i64::from(chip.card.atc) > record.atc_issued_until {
            return Err(ResponseCode::SecurityViolation);
        }
        match self.hsm.verify_arqc(cryptogram) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ResponseCode::SecurityViolation),
            Err(error) => {
                tracing::error!(error = %error, "ARQC verification failed to run");
                Err(ResponseCode::SystemMalfunction)
            }
        }
    }

    /// How the cardholder was verified, by the rules of the channel; the code when the rules
    /// want more than was done.
    fn cardholder_verification(
        &self,
        request: &FinancialRequest<'_>,
        chip: &ChipRequest,
        record: &VaultRecord,
    ) -> Result<Verification, ResponseCode> {
        let cdcvm = chip.card.cdcvm();
        match (request.processing, request.channel) {
            // A load of e-cash moves money off the account: always the PIN (or password).
            (Processing::EcashLoad, _) => {
                if !record.ecash_enabled {
                    return Err(ResponseCode::InvalidTransaction);
                }
                if !request.pin_entered() {
                    return Err(ResponseCode::ExceedsFrequencyLimit);
                }
                Ok(Verification::OnlinePin)
            }
            (Processing::Purchase, PaymentChannel::Nfc) => {
                let acquirer = AcquirerNoPin {
                    terminal_capable: self.config.no_pin_terminals,
                    merchant_eligible: self
                        .config
                        .no_pin_mccs
                        .iter()
                        .any(|mcc| mcc == request.merchant_category),
                    limit: self.config.acquirer_no_pin_limit,
                };
                authorization::contactless_verification(
                    request.amount,
                    request.pin_entered(),
                    cdcvm,
                    &acquirer,
                    record.contactless_no_pin_limit,
                )
            }
            (Processing::Purchase, _) => authorization::in_app_verification(
                request.amount,
                request.pin_entered(),
                cdcvm,
                record.online_no_pin_limit,
            ),
        }
    }

    /// Sends the issuer its message; its answer, or the code the switch answers in its place
    /// (stand-in) when the issuer cannot be asked.
    pub(super) async fn ask_issuer(
        &self,
        request: &FinancialRequest<'_>,
        issuer_request: &Message<'_>,
        outcome: &mut IssuerOutcome,
    ) -> Result<Message<'static>, ResponseCode> {
        match self.issuer.request(issuer_request).await {
            Ok(answer) => {
                *outcome = IssuerOutcome::Answered;
                Ok(answer)
            }
            Err(error) => {
                *outcome = if error == LinkError::Timeout {
                    IssuerOutcome::Timeout
                } else {
                    IssuerOutcome::Down
                };
                // An authorization only (0100) is never stood in for: nothing would post it;
                // nor is a card-not-present payment: only the issuer can check its CVN2, PIN
                // and expiry.
                if request.mti == Mti::AUTHORIZATION_REQUEST || request.token().is_none() {
                    return Err(if error == LinkError::Timeout {
                        ResponseCode::ResponseReceivedTooLate
                    } else {
                        ResponseCode::IssuerInoperative
                    });
                }
                Err(self.stand_in(request.amount, &error))
            }
        }
    }

    /// The acquirer's answer: the issuer's code, approval code and balances, with the account
    /// number the acquirer sent in field 2 (for a token, never the card) and, for a token,
    /// the ARPC (method 1, the response code as ARC) in 55.
    pub(super) fn answer_acquirer(
        &self,
        request: &FinancialRequest<'_>,
        issuer_answer: &Message<'_>,
        cryptogram: Option<&CryptogramRef<'_>>,
    ) -> Message<'static> {
        let code = issuer_answer
            .get_str(39)
            .and_then(ResponseCode::parse)
            .unwrap_or(ResponseCode::SystemMalfunction);
        let mut response = answer(request.message, code);
        for field in [38, 54] {
            if let Some(value) = issuer_answer.get(field) {
                response.set(field, value.to_vec());
            }
        }
        let Some(cryptogram) = cryptogram else {
            return response;
        };
        let mut arc = [b'0'; 2];
        arc.copy_from_slice(&code.code().as_bytes()[..2]);
        if let Ok(arpc) = self.hsm.generate_arpc(
            cryptogram,
            ArpcMethod::One {
                authorisation_response_code: arc,
            },
        ) {
            response.set(55, emv_data::response_field55(&arpc, code.code()));
        }
        response
    }

    /// Accepts a verified cryptogram's ATC, durably and once across every switch instance on
    /// the store: an ATC at or below one accepted before is a replay (63). Only verified
    /// cryptograms get here, so nobody can burn a token's ATCs with forged ones.
    pub(super) async fn accept_atc(
        &self,
        token_number: &str,
        atc: u16,
    ) -> Result<(), ResponseCode> {
        let op = JournalOp::AcceptAtc {
            token_number: token_number.to_owned(),
            atc: i64::from(atc),
            at: self.clock.now_millis(),
        };
        match self.journal.record(vec![op]).await {
            Ok(outcomes) if outcomes.first() == Some(&JournalOutcome::Recorded) => Ok(()),
            Ok(_) => Err(ResponseCode::SecurityViolation),
            Err(error) => {
                tracing::error!(error = %error, "switch: cannot record an ATC; refusing");
                Err(ResponseCode::SystemMalfunction)
            }
        }
    }

    /// The answer when the issuer cannot be asked.
    pub(super) fn stand_in(&self, amount: Money, error: &LinkError) -> ResponseCode {
        match (self.config.stand_in, error) {
            (StandInPolicy::ApproveUpTo(limit), _) if amount.minor_units() <= limit => {
                ResponseCode::Approved
            }
            (_, LinkError::Timeout) => ResponseCode::ResponseReceivedTooLate,
            _ => ResponseCode::IssuerInoperative,
        }
    }
}

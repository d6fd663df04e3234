//! The authorization path: what happens to an acquirer's message between the switch's port
//! and the issuer, as a sequence of checks each of which can end it with a field 39 code.
//!
//! 0200 with a token: detokenize → token state and domain → cryptogram (and ATC) → no-PIN
//! rules → PIN translation from the token to the card number → the issuer's 0200 with the
//! card, its expiry and the token channel marked (60, 61.5, 56 `PR`, 63 `TK`) → the 0210 back
//! to the acquirer with the token in place of the card and the ARPC in field 55. The
//! acquirer never sees the card number.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cloudpass_core::authorization::{
    self, AcquirerNoPin, PaymentChannel, PosEntryMode, Verification,
};
use cloudpass_core::card_number::mask_digits;
use cloudpass_core::{AccountNumber, Clock, Currency, Money, ResponseCode, Token};
use cloudpass_crypto::emv::SessionKeyInput;
use cloudpass_crypto::{
    ArpcMethod, CryptogramRef, Hsm, KeyHandle, KeyUsage, PinBlockFormat, PinBlockRef,
};
use cloudpass_iso8583::emv_data::{self, CID_ARQC, CID_TC, CVR_ARQC, CVR_TC, ChipRequest};
use cloudpass_iso8583::private::{
    FIELD_60, FIELD_61, OriginalData, Positional, TaggedData, Usages, token_tags, values,
};
use cloudpass_iso8583::{Message, Mti, profile};
use cloudpass_store::{
    AnyStore, JournalAnswer, JournalOp, JournalOutcome, JournalRow, SafDelivery, SafRow, TokenStore,
};

use crate::participants::{Acquirer, Merchant, Participants, RegistrationError, Sender};
use tokio::sync::watch;

use cloudpass_iso8583::link::{Link, LinkError};

use crate::journal::Journal;
use crate::vault::TokenVault;

/// What the switch does when the issuer cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandInPolicy {
    /// Decline with 91 (issuer down) or 68 (issuer timed out).
    Decline,
    /// Approve on the issuer's behalf up to this amount (minor units), else decline.
    ApproveUpTo(u64),
}

/// The switch's own settings.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    pub issuer_timeout: Duration,
    /// The acquirer side of the contactless no-PIN rule.
    pub no_pin_terminals: bool,
    pub no_pin_mccs: Vec<String>,
    pub acquirer_no_pin_limit: Money,
    pub stand_in: StandInPolicy,
    /// Store and forward: how often the queue is looked at, and the longest wait between
    /// attempts at one advice.
    pub saf_poll: Duration,
    pub saf_max_backoff: Duration,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        Self {
            issuer_timeout: Duration::from_secs(10),
            no_pin_terminals: true,
            no_pin_mccs: authorization::DEFAULT_NO_PIN_MCCS
                .iter()
                .map(|m| (*m).to_owned())
                .collect(),
            acquirer_no_pin_limit: Money::new(100_000, Currency::CNY),
            stand_in: StandInPolicy::Decline,
            saf_poll: Duration::from_millis(250),
            saf_max_backoff: Duration::from_secs(60),
        }
    }
}

/// What a switch is built from.
pub struct SwitchParts {
    pub vault: Arc<dyn TokenVault>,
    pub hsm: Arc<dyn Hsm>,
    pub issuer: Arc<Link>,
    /// The zone PIN key shared with the issuer (from the key exchange under the zone master
    /// key).
    pub issuer_pin_key: KeyHandle,
    /// Where the journal and the store-and-forward queue live.
    pub store: AnyStore,
    pub clock: Arc<dyn Clock>,
    pub config: SwitchConfig,
}

pub struct Switch {
    vault: Arc<dyn TokenVault>,
    hsm: Arc<dyn Hsm>,
    issuer: Arc<Link>,
    /// The zone PIN key shared with the issuer.
    issuer_pin_key: KeyHandle,
    /// Registered acquirers, merchants and terminals, with the terminals' keys.
    participants: RwLock<Participants>,
    clock: Arc<dyn Clock>,
    config: SwitchConfig,
    store: AnyStore,
    journal: Journal,
}

/// How far a request got towards the issuer, for the journal and the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IssuerOutcome {
    /// Decided by the switch; the issuer never saw it.
    NotSent,
    Answered,
    /// Sent, no answer in time: the issuer may or may not have acted on it.
    Timeout,
    /// The link was down; nothing was sent.
    Down,
}

impl IssuerOutcome {
    fn as_str(self) -> &'static str {
        match self {
            IssuerOutcome::NotSent => "not_sent",
            IssuerOutcome::Answered => "answered",
            IssuerOutcome::Timeout => "timeout",
            IssuerOutcome::Down => "down",
        }
    }
}

/// How a repeated request is answered.
#[derive(Debug, Clone, Copy)]
enum Repeat {
    /// 94: a purchase is never authorized twice.
    Duplicate,
    /// The first one's answer: advices and reversals are idempotent.
    AnswerAsBefore,
}

/// The journal id of a request: MTI, acquirer, STAN, transmission time.
fn journal_id(mti: &str, acquirer: &str, stan: &str, transmission_time: &str) -> String {
    format!("{mti}:{acquirer}:{stan}:{transmission_time}")
}

/// Fields an answer echoes from its request.
const ECHOED: &[u8] = &[3, 4, 7, 11, 12, 13, 25, 32, 33, 37, 41, 42, 49];

/// The answer to `request` with `code`, the token (not the card) in field 2.
pub fn answer(request: &Message<'_>, code: ResponseCode) -> Message<'static> {
    let mut response = Message::new(request.mti().response().unwrap_or(request.mti()));
    for &field in std::iter::once(&2u8).chain(ECHOED) {
        if let Some(value) = request.get(field) {
            response.set(field, value.to_vec());
        }
    }
    response.set_text(39, code.code());
    response
}

fn text<'m>(message: &'m Message<'_>, field: u8) -> &'m str {
    message.get_str(field).unwrap_or("")
}

/// The answer to a network-management message: [`answer`] with the terminal, merchant and
/// function code echoed.
fn network_answer(request: &Message<'_>, code: ResponseCode) -> Message<'static> {
    let mut response = answer(request, code);
    for field in [41, 42, 70] {
        if let Some(value) = request.get(field) {
            response.set(field, value.to_vec());
        }
    }
    response
}

/// What the acquirers' port does with one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameAnswer {
    Answer {
        bytes: Vec<u8>,
        /// Whether the frame came from a registered terminal, authenticated as its acquirer
        /// requires: a connection that sends one is admitted (see `server`).
        from_registered_sender: bool,
    },
    /// Nothing the sender could match an answer to: close the connection.
    Close,
}

/// The fields an acquirer matches an answer by (see `link`): without all of them an answer
/// could be taken for another request's.
const MATCHED_BY: [u8; 3] = [7, 11, 32];

/// The answer to a message the codec refuses: 30 (format error) when its MTI and the fields
/// the acquirer matches answers by can be read from the part before the fault; otherwise
/// nothing can be matched, and the connection is closed.
fn undecodable(raw: &[u8]) -> FrameAnswer {
    let Some(readable) = profile::cloudpass().decode_leading(raw) else {
        return FrameAnswer::Close;
    };
    let Some(mti) = readable.mti().response() else {
        return FrameAnswer::Close;
    };
    if MATCHED_BY.iter().any(|field| !readable.contains(*field)) {
        return FrameAnswer::Close;
    }
    let mut reject = Message::new(mti);
    for field in [7u8, 11, 32, 41, 42] {
        if let Some(value) = readable.get(field) {
            reject.set(field, value.to_vec());
        }
    }
    reject.set_text(39, ResponseCode::FormatError.code());
    match profile::cloudpass().encode(&reject) {
        Ok(bytes) => FrameAnswer::Answer {
            bytes,
            from_registered_sender: false,
        },
        Err(_) => FrameAnswer::Close,
    }
}

impl Switch {
    /// A switch; its journal writer starts here (inside a Tokio runtime).
    pub fn new(parts: SwitchParts) -> Self {
        Self {
            vault: parts.vault,
            hsm: parts.hsm,
            issuer: parts.issuer,
            issuer_pin_key: parts.issuer_pin_key,
            participants: RwLock::new(Participants::default()),
            clock: parts.clock,
            config: parts.config,
            journal: Journal::start(parts.store.clone()),
            store: parts.store,
        }
    }

    /// Whether the link to the issuer is connected now.
    pub async fn issuer_link_up(&self) -> bool {
        self.issuer.is_up().await
    }

    /// Registers an acquirer (field 32). One whose terminals need not MAC is logged loudly.
    pub fn register_acquirer(&self, acquirer: Acquirer) -> Result<(), RegistrationError> {
        self.participants_mut().add_acquirer(acquirer)
    }

    /// Registers a merchant (field 42) of a registered acquirer.
    pub fn register_merchant(&self, merchant: Merchant) -> Result<(), RegistrationError> {
        self.participants_mut().add_merchant(merchant)
    }

    /// Registers a terminal (field 41) of a registered merchant, with its master key from the
    /// key ceremony.
    pub fn register_terminal(
        &self,
        acquirer_id: &str,
        merchant_id: &str,
        terminal_id: &str,
        master: KeyHandle,
    ) -> Result<(), RegistrationError> {
        self.participants_mut()
            .add_terminal(acquirer_id, merchant_id, terminal_id, master)
    }

    fn participants_mut(&self) -> std::sync::RwLockWriteGuard<'_, Participants> {
        self.participants.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers one framed message from an acquirer. See [`FrameAnswer`] for what the port
    /// does with the result.
    pub async fn handle_frame(&self, raw: &[u8]) -> FrameAnswer {
        let request = match profile::cloudpass().decode(raw) {
            Ok(request) => request,
            Err(error) => {
                // Naming the codec's complaint (field and offset), never a value.
                tracing::warn!(error = %error, "switch: undecodable message");
                return undecodable(raw);
            }
        };
        let (response, registered) = self.answer_message(&request, raw).await;
        match profile::cloudpass().encode(&response) {
            Ok(bytes) => FrameAnswer::Answer {
                bytes,
                from_registered_sender: registered,
            },
            Err(error) => {
                tracing::error!(error = %error, "switch: an answer could not be encoded");
                FrameAnswer::Close
            }
        }
    }

    /// Answers one acquirer message, exactly as if it had arrived on the port (the same
    /// admission and MAC checks: the message's own encoding is what a MAC covers).
    pub async fn handle(&self, request: &Message<'_>) -> Message<'static> {
        match profile::cloudpass().encode(request) {
            Ok(raw) => self.answer_message(request, &raw).await.0,
            Err(_) => answer(request, ResponseCode::FormatError),
        }
    }

    /// The answer to a decoded message whose encoding is `raw`, and whether it came from a
    /// registered terminal that authenticated as its acquirer requires.
    ///
    /// Echo (70 = 301) and sign-off (002) carry no money and are answered to anyone. Every
    /// other message must come from a registered acquirer, merchant and terminal
    /// ([`Participants::admit`]); a message carrying a MAC (field 64, or 128 with a
    /// secondary bitmap; over everything before it) must verify under the terminal's MAC
    /// key, and one without is refused A0 when the acquirer requires MACs (sign-on excepted:
    /// it is how a terminal gets its MAC key). The answer to a MACed request is MACed in
    /// turn.
    async fn answer_message(&self, request: &Message<'_>, raw: &[u8]) -> (Message<'static>, bool) {
        let network = request.mti() == Mti::NETWORK_REQUEST;
        if network && text(request, 70) != "001" {
            return (network_answer(request, ResponseCode::Approved), false);
        }
        // A message is known by its acquirer, STAN and transmission time: without them it
        // cannot be journaled, matched or reversed.
        if !network
            && MATCHED_BY
                .iter()
                .any(|field| text(request, *field).is_empty())
        {
            return (answer(request, ResponseCode::FormatError), false);
        }
        let sender = Sender {
            acquirer: text(request, 32),
            terminal: text(request, 41),
            merchant: text(request, 42),
        };
        let admitted = self
            .participants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .admit(sender);
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(code) if network => return (network_answer(request, code), false),
            Err(code) => return (answer(request, code), false),
        };
        let mac_field = [128u8, 64].into_iter().find(|f| request.contains(*f));
        let mac_key = admitted.mac;
        let authenticated = match (mac_field, mac_key) {
            (Some(field), Some(key)) => {
                let mac = request.get(field).unwrap_or_default();
                let body = &raw[..raw.len().saturating_sub(8)];
                self.hsm.verify_mac(key, body, mac).unwrap_or(false)
            }
            // A MAC from a terminal that holds no MAC key from us.
            (Some(_), None) => false,
            (None, _) => network || !admitted.mac_required,
        };
        if !authenticated {
            return (answer(request, ResponseCode::MacFailure), false);
        }
        let mut response = match request.mti().as_str() {
            "0800" => self.sign_on(request, sender, admitted.master),
            "0100" | "0200" => self.financial(request).await,
            "0220" | "0221" => self.offline_clearing(request).await,
            "0400" | "0401" | "0420" | "0421" => self.reversal(request).await,
            _ => answer(request, ResponseCode::InvalidTransaction),
        };
        // The answer is MACed under the key the request was checked with (not a sign-on's:
        // its keys have just changed).
        if let (Some(_), Some(key)) = (mac_field, mac_key)
            && !network
        {
            self.mac_answer(&mut response, key);
        }
        (response, true)
    }

    fn mac_answer(&self, response: &mut Message<'static>, key: KeyHandle) {
        let field = if response.fields().any(|(number, _)| number > 64) {
            128
        } else {
            64
        };
        response.set(field, vec![0u8; 8]);
        if let Ok(bytes) = profile::cloudpass().encode(response)
            && let Ok(mac) = self.hsm.generate_mac(key, &bytes[..bytes.len() - 8])
        {
            response.set(field, mac.to_vec());
        }
    }

    /// Sign-on (70 = 001) of an admitted terminal: new PIN and MAC keys under its master
    /// key, in field 62 (key ‖ check value ‖ key ‖ check value, 40 bytes).
    fn sign_on(
        &self,
        request: &Message<'_>,
        terminal: Sender<'_>,
        master: KeyHandle,
    ) -> Message<'static> {
        let mut response = network_answer(request, ResponseCode::Approved);
        let issue = || -> Result<(KeyHandle, KeyHandle, Vec<u8>), cloudpass_crypto::HsmError> {
            let pin = self.hsm.generate_key(KeyUsage::PinEncryption)?;
            let mac = self.hsm.generate_key(KeyUsage::MessageAuthentication)?;
            let mut field62 = Vec::with_capacity(40);
            for key in [pin, mac] {
                field62.extend_from_slice(&self.hsm.export_under_kek(key, master)?);
                field62.extend_from_slice(&self.hsm.check_value(key)?.0);
                field62.push(0);
            }
            Ok((pin, mac, field62))
        };
        match issue() {
            Ok((pin, mac, field62)) => {
                let replaced = self.participants_mut().set_working_keys(
                    terminal.acquirer,
                    terminal.terminal,
                    pin,
                    mac,
                );
                for key in replaced {
                    let _ = self.hsm.release(key);
                }
                response.set(62, field62);
            }
            Err(error) => {
                tracing::error!(error = %error, "sign-on: key generation failed");
                response.set_text(39, ResponseCode::SystemMalfunction.code());
            }
        }
        response
    }

    /// Journals a request on arrival; its journal id, or the answer to give at once: to a
    /// repeat (94, or the first one's answer for advices and reversals, which are
    /// idempotent), or 96 when the journal cannot record.
    async fn begin(
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
                Some(JournalOutcome::Duplicate(earlier))
                    if matches!(repeat, Repeat::AnswerAsBefore)
                        && earlier.response_code.is_none() =>
                {
                    Ok(id)
                }
                Some(JournalOutcome::Duplicate(earlier)) => {
                    let code = match repeat {
                        Repeat::Duplicate => ResponseCode::DuplicateTransmission,
                        Repeat::AnswerAsBefore => earlier
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
    fn journal_row(&self, request: &Message<'_>) -> JournalRow {
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
    /// spend) for the store-and-forward queue.
    fn advice(&self, mti: Mti, kind: &str, request: &Message<'_>, due_at: i64) -> SafRow {
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
            token_number: text(request, 2).to_owned(),
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

    /// A 0200: journaled on arrival (a second arrival is a duplicate, 94), authorized, its
    /// answer journaled — with any advice the issuer must still receive — before it leaves.
    async fn financial(&self, request: &Message<'_>) -> Message<'static> {
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
        if let Err(error) = self.journal.record(ops).await {
            // The issuer has decided; the acquirer must hear what it decided, or money moves
            // without goods. The journal keeps the request (recorded on arrival) for
            // reconciliation; an advice that could not be queued is sent once, now.
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

    /// An offline e-cash spend an acquirer uploads (0220, in a batch): the phone approved it
    /// with a TC. The switch checks the token has e-cash, the TC was made by the token's keys
    /// over this amount, and clears each spend (token and ATC) once — a batch uploaded twice
    /// debits once — by queueing a 0220 for the issuer, who moves the money from the card's
    /// e-cash account to the acquirer. Answered 00 when the spend is (or already was) taken
    /// into clearing.
    async fn offline_clearing(&self, request: &Message<'_>) -> Message<'static> {
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
        if let Err(error) = self.journal.record(ops).await {
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

    /// A reversal from an acquirer (0400, or 0420 advice), matched to its original by field
    /// 90. The switch takes it into store and forward — the issuer receives a 0420 however
    /// long it is unreachable — and acknowledges it at once. A reversal of something the
    /// switch never saw is answered 25; of something declined, acknowledged with nothing to
    /// undo.
    async fn reversal(&self, request: &Message<'_>) -> Message<'static> {
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
        if let Err(error) = self.journal.record(ops).await {
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
        let entry = match self.store.journal_entry(&original_id).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return (ResponseCode::OriginalNotFound, None),
            Err(error) => {
                tracing::error!(error = %error, "switch: journal lookup failed");
                return (ResponseCode::SystemMalfunction, None);
            }
        };
        if entry.token_masked != mask_digits(text(request, 2))
            || entry.amount != text(request, 4).parse::<i64>().unwrap_or(-1)
        {
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
            (2, text(request, 2)),
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

    async fn authorize(
        &self,
        request: &Message<'_>,
        outcome: &mut IssuerOutcome,
    ) -> Result<Message<'static>, ResponseCode> {
        let token_number = text(request, 2);
        let record = match self.vault.lookup(token_number).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(ResponseCode::InvalidCard),
            Err(error) => {
                tracing::error!(error = %error, "vault lookup failed");
                return Err(ResponseCode::SystemMalfunction);
            }
        };
        let token = Token::parse(token_number).map_err(|_| ResponseCode::InvalidCard)?;
        if !track2_agrees(request.get_str(35), token_number) {
            return Err(ResponseCode::FormatError);
        }
        let entry = PosEntryMode::parse(text(request, 22)).ok_or(ResponseCode::FormatError)?;
        let field60 = request
            .get_str(60)
            .and_then(|value| Positional::parse(60, FIELD_60, value).ok());
        let eci = field60
            .as_ref()
            .and_then(|f| f.get("60.2.8").map(str::to_owned));
        let channel = authorization::payment_channel(entry, text(request, 25), eci.as_deref());
        let (year, month) = self.clock.year_month();
        authorization::check_token(&record.facts, channel, year, month)?;

        let currency = Currency::parse_numeric(text(request, 49))
            .map_err(|_| ResponseCode::InvalidTransaction)?;
        let amount = Money::from_wire(text(request, 4), currency)
            .map_err(|_| ResponseCode::InvalidAmount)?;

        // The cryptogram: present, about this payment, made by this token's keys, fresh.
        let chip = ChipRequest::parse(request.get(55).ok_or(ResponseCode::FormatError)?)
            .map_err(|_| ResponseCode::FormatError)?;
        if chip.terminal.amount != amount.minor_units()
            || chip.terminal.currency != currency.numeric()
        {
            return Err(ResponseCode::SecurityViolation);
        }
        // Online, the card asks the issuer (an ARQC); a TC was approved offline and is cleared
        // by advice, never authorized again.
        if chip.cryptogram_information != CID_ARQC || chip.card.cvr[0] & CVR_ARQC == 0 {
            return Err(ResponseCode::SecurityViolation);
        }
        let atc = chip.card.atc;
        if record.atc_issued_until > 0 && i64::from(atc) > record.atc_issued_until {
            return Err(ResponseCode::SecurityViolation);
        }
        let data = chip.cryptogram_input();
        let cryptogram = CryptogramRef {
            issuer_master_key: record.issuer_master_key,
            account: &token,
            pan_sequence: record.pan_sequence,
            session: SessionKeyInput::Atc { atc },
            data: &data,
            cryptogram: chip.arqc,
        };
        match self.hsm.verify_arqc(&cryptogram) {
            Ok(true) => {}
            Ok(false) => return Err(ResponseCode::SecurityViolation),
            Err(error) => {
                tracing::error!(error = %error, "ARQC verification failed to run");
                return Err(ResponseCode::SystemMalfunction);
            }
        }
        self.accept_atc(token_number, atc).await?;

        // Cardholder verification.
        let pin_block = request.get(52);
        let pin_entered = pin_block.is_some();
        let ecash_load = text(request, 3).starts_with("60");
        let verification = match channel {
            // A load of e-cash moves money off the account: always the PIN (or password).
            _ if ecash_load => {
                if !record.ecash_enabled {
                    return Err(ResponseCode::InvalidTransaction);
                }
                if !pin_entered {
                    return Err(ResponseCode::ExceedsFrequencyLimit);
                }
                Verification::OnlinePin
            }
            PaymentChannel::Nfc => {
                let acquirer = AcquirerNoPin {
                    terminal_capable: self.config.no_pin_terminals,
                    merchant_eligible: self
                        .config
                        .no_pin_mccs
                        .iter()
                        .any(|mcc| mcc == text(request, 18)),
                    limit: self.config.acquirer_no_pin_limit,
                };
                authorization::contactless_verification(
                    amount,
                    pin_entered,
                    chip.card.cdcvm(),
                    &acquirer,
                    record.contactless_no_pin_limit,
                )?
            }
            _ => authorization::in_app_verification(
                amount,
                pin_entered,
                chip.card.cdcvm(),
                record.online_no_pin_limit,
            )?,
        };

        // The issuer's message: the card, not the token; the PIN block rebuilt for the card.
        // 0100 (authorization only) or 0200 (financial), as the acquirer sent it.
        let mut issuer_request = Message::new(request.mti());
        for (field, value) in request.fields() {
            if !matches!(field, 2 | 14 | 35 | 52 | 56 | 60 | 61 | 63 | 64 | 128) {
                issuer_request.set(field, value.to_vec());
            }
        }
        issuer_request
            .set_text(2, record.pan.expose())
            .set_text(14, record.card_expiry.to_wire());
        if let Some(block) = pin_block {
            let terminal_pin_key = self
                .participants
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .pin_key(text(request, 32), text(request, 41));
            let Some(terminal_pin_key) = terminal_pin_key else {
                return Err(ResponseCode::NotPermittedToTerminal);
            };
            let from = PinBlockRef {
                key: terminal_pin_key,
                format: PinBlockFormat::Iso0,
                block,
                account: &token,
            };
            let translated = self
                .hsm
                .translate_pin_block(
                    &from,
                    self.issuer_pin_key,
                    PinBlockFormat::Iso0,
                    &record.pan,
                )
                .map_err(|_| ResponseCode::PinFormatError)?;
            issuer_request
                .set(52, translated)
                .set_text(53, "2600000000000000");
        }
        issuer_request.set_text(56, usages("PR", &[(token_tags::PAR, record.par.as_str())]));
        issuer_request.set_text(60, marked_field60(field60, channel, verification));
        let mut field61 = Positional::new(61, FIELD_61);
        let _ = field61.set("61.5", values::ARQC_PASSED);
        issuer_request.set_text(61, field61.to_string());
        let scenario = if channel == PaymentChannel::Nfc {
            "NF"
        } else {
            "IA"
        };
        issuer_request.set_text(
            63,
            usages(
                "TK",
                &[
                    (token_tags::VERIFIED, "1"),
                    (token_tags::TOKEN, token_number),
                    (token_tags::TOKEN_EXPIRY, &record.token_expiry.to_wire()),
                    (token_tags::SCENARIO, scenario),
                    (token_tags::REQUESTOR_ID, &record.token_requestor_id),
                    (token_tags::DEVICE_KIND, record.device_kind),
                    (token_tags::WALLET, &record.wallet),
                ],
            ),
        );

        let issuer_answer = match self.issuer.request(&issuer_request).await {
            Ok(answer) => {
                *outcome = IssuerOutcome::Answered;
                answer
            }
            Err(error) => {
                *outcome = if error == LinkError::Timeout {
                    IssuerOutcome::Timeout
                } else {
                    IssuerOutcome::Down
                };
                // An authorization only (0100) is never stood in for: nothing would post it.
                if request.mti() == Mti::AUTHORIZATION_REQUEST {
                    return Err(if error == LinkError::Timeout {
                        ResponseCode::ResponseReceivedTooLate
                    } else {
                        ResponseCode::IssuerInoperative
                    });
                }
                return Err(self.stand_in(amount, &error));
            }
        };
        let code = issuer_answer
            .get_str(39)
            .and_then(ResponseCode::parse)
            .unwrap_or(ResponseCode::SystemMalfunction);
        let mut response = answer(request, code);
        if let Some(auth_code) = issuer_answer.get(38) {
            response.set(38, auth_code.to_vec());
        }
        if let Some(balances) = issuer_answer.get(54) {
            response.set(54, balances.to_vec());
        }
        // The ARPC answers the cryptogram (method 1, the response code as ARC).
        let mut arc = [b'0'; 2];
        arc.copy_from_slice(&code.code().as_bytes()[..2]);
        if let Ok(arpc) = self.hsm.generate_arpc(
            &cryptogram,
            ArpcMethod::One {
                authorisation_response_code: arc,
            },
        ) {
            response.set(55, emv_data::response_field55(&arpc, code.code()));
        }
        Ok(response)
    }

    /// Delivers queued advices to the issuer until `shutdown` fires: each is sent until the
    /// issuer answers it (any answer acknowledges it), waiting longer after each failure.
    pub async fn run_store_and_forward(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let now = self.clock.now_millis();
            match self.store.saf_due(now, 64).await {
                Ok(due) => {
                    for advice in due {
                        let delivery = self.deliver(&advice, now).await;
                        if let SafDelivery::Acknowledged { response_code, .. } = &delivery {
                            tracing::info!(advice = %advice.mti, stan = %advice.stan, response_code = %response_code, "store and forward: advice acknowledged");
                        }
                        if let Err(error) = self.store.saf_record(&advice.id, &delivery).await {
                            tracing::error!(error = %error, "store and forward: cannot record a delivery");
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(error = %error, "store and forward: cannot read the queue")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.saf_poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn deliver(&self, advice: &SafRow, now: i64) -> SafDelivery {
        let backoff = self
            .config
            .saf_poll
            .saturating_mul(1u32 << advice.attempts.clamp(0, 16))
            .min(self.config.saf_max_backoff);
        let retry = SafDelivery::Retry {
            next_attempt_at: now + i64::try_from(backoff.as_millis()).unwrap_or(60_000),
        };
        let record = match self.vault.lookup(&advice.token_number).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                tracing::error!(advice = %advice.mti, stan = %advice.stan, "store and forward: the token is unknown; retrying");
                return retry;
            }
            Err(error) => {
                tracing::warn!(error = %error, "store and forward: vault lookup failed");
                return retry;
            }
        };
        let Ok(mti) = Mti::parse(&advice.mti) else {
            return retry;
        };
        let original = OriginalData {
            mti: advice.original_mti.clone(),
            stan: advice.stan.clone(),
            transmission_time: advice.transmission_time.clone(),
            acquirer: advice.acquirer_id.clone(),
            forwarder: String::new(),
        };
        let Ok(field90) = original.to_wire() else {
            return retry;
        };
        let mut message = Message::new(mti);
        let mut field60 = Positional::new(60, FIELD_60);
        let _ = field60.set(
            "60.1",
            if mti == Mti::REVERSAL_ADVICE {
                "4021"
            } else {
                "0000"
            },
        );
        if advice.kind == "ecash" {
            // An offline spend of the e-cash application: the issuer clears it from the
            // card's e-cash account.
            let _ = field60.set("60.3.6", values::MEDIUM_IC);
            let _ = field60.set("60.3.7", values::IC_APPLICATION_ECASH);
        }
        message
            .set_text(2, record.pan.expose())
            .set_text(3, "000000")
            .set_text(4, format!("{:012}", advice.amount))
            .set_text(7, advice.transmission_time.clone())
            .set_text(11, advice.stan.clone())
            .set_text(14, record.card_expiry.to_wire())
            .set_text(32, advice.acquirer_id.clone())
            .set_text(37, advice.rrn.clone())
            .set_text(41, advice.terminal_id.clone())
            .set_text(42, advice.merchant_id.clone())
            .set_text(49, format!("{:03}", advice.currency))
            .set_text(60, field60.to_string())
            .set_text(90, field90);
        match self.issuer.request(&message).await {
            Ok(answer) => SafDelivery::Acknowledged {
                response_code: answer.get_str(39).unwrap_or("").to_owned(),
                at: self.clock.now_millis(),
            },
            Err(_) => retry,
        }
    }

    /// Accepts a verified cryptogram's ATC, durably and once across every switch instance on
    /// the store: an ATC at or below one accepted before is a replay (63). Only verified
    /// cryptograms get here, so nobody can burn a token's ATCs with forged ones.
    async fn accept_atc(&self, token_number: &str, atc: u16) -> Result<(), ResponseCode> {
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
    fn stand_in(&self, amount: Money, error: &LinkError) -> ResponseCode {
        match (self.config.stand_in, error) {
            (StandInPolicy::ApproveUpTo(limit), _) if amount.minor_units() <= limit => {
                ResponseCode::Approved
            }
            (_, LinkError::Timeout) => ResponseCode::ResponseReceivedTooLate,
            _ => ResponseCode::IssuerInoperative,
        }
    }
}

/// Whether track 2 equivalent data (field 35), when present, names the same account number
/// as field 2: the number before the separator (`=`, or `D` from BCD).
fn track2_agrees(track2: Option<&str>, account: &str) -> bool {
    track2.is_none_or(|track2| track2.split(['=', 'D']).next() == Some(account))
}

fn usages(usage: &str, tags: &[(&str, &str)]) -> String {
    let mut data = TaggedData::default();
    for (tag, value) in tags {
        let _ = data.set(tag, value);
    }
    let mut field = Usages::default();
    let _ = field.set(usage, &data.to_string());
    field.to_string()
}

/// Field 60 for the issuer: the acquirer's, with the token channel marked.
fn marked_field60(
    from_acquirer: Option<Positional>,
    channel: PaymentChannel,
    verification: Verification,
) -> String {
    let mut field = from_acquirer.unwrap_or_else(|| Positional::new(60, FIELD_60));
    if field.get("60.1").is_none() {
        let _ = field.set("60.1", "0000");
    }
    let (terminal_type, medium, application, eci) = match channel {
        PaymentChannel::Nfc => (
            field
                .get("60.2.5")
                .unwrap_or(values::TERMINAL_TYPE_POS)
                .to_owned(),
            values::MEDIUM_IC,
            values::IC_APPLICATION_PBOC,
            "00",
        ),
        _ => (
            values::TERMINAL_TYPE_MOBILE.to_owned(),
            values::MEDIUM_VIRTUAL,
            values::IC_APPLICATION_PBOC,
            values::ECI_DEVICE_CRYPTOGRAM,
        ),
    };
    let _ = field.set("60.2.5", &terminal_type);
    let _ = field.set(
        "60.2.6",
        if verification == Verification::NoPin {
            "1"
        } else {
            "0"
        },
    );
    let _ = field.set("60.2.8", eci);
    let _ = field.set("60.3.6", medium);
    let _ = field.set("60.3.7", application);
    field.to_string()
}

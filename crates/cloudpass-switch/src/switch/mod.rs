//! The switch: what happens to an acquirer's message between the switch's port and the
//! issuer. This module admits a message (registered sender, MAC) and hands it to the file of
//! its message class:
//!
//! - `sign_on`: 0800 with 70 = 001, new working keys for a terminal;
//! - `financial` (with `request`, the typed 0100/0200, and `to_issuer`): authorizations;
//!   `card_not_present`: typed card numbers from e-commerce acquirers; `returns`: their
//!   voids and refunds;
//! - `clearing`: 0220 offline e-cash spends uploaded in batches;
//! - `reversal`: 0400/0420 from acquirers;
//! - `store_and_forward`: advices the issuer must receive;
//! - `record`: the journal rows and advices the others leave behind.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cloudpass_core::authorization;
use cloudpass_core::{Clock, Currency, Money, ResponseCode};
use cloudpass_crypto::{Hsm, KeyHandle};
use cloudpass_iso8583::{Message, Mti, profile};
use cloudpass_store::{AnyStore, JournalRow};

use cloudpass_iso8583::exchange::Exchange;
use cloudpass_iso8583::server::{FrameAnswer, FrameHandler};

use crate::journal::Journal;
use crate::participants::{Acquirer, Merchant, Participants, RegistrationError, Sender};
use crate::vault::TokenVault;

mod card_not_present;
mod clearing;
mod financial;
mod record;
mod request;
mod returns;
mod reversal;
mod sign_on;
mod store_and_forward;
mod to_issuer;

pub use store_and_forward::ForwardPass;

/// The switch's port inside one process (the gateway's link to it, tests' terminals).
pub type InProcess = cloudpass_iso8583::in_process::InProcess<Switch>;

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
    pub issuer: Arc<dyn Exchange>,
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
    issuer: Arc<dyn Exchange>,
    /// The zone PIN key shared with the issuer.
    issuer_pin_key: KeyHandle,
    /// Registered acquirers, merchants and terminals, with the terminals' keys.
    participants: RwLock<Participants>,
    clock: Arc<dyn Clock>,
    config: SwitchConfig,
    store: AnyStore,
    journal: Journal,
    metrics: crate::metrics::SwitchMetrics,
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
    /// The first one's answer when it is a decision — the issuer's, or the switch's refusal;
    /// worked again when the issuer's answer never came (a timeout, the link down), since the
    /// issuer may have posted it and answers a repeat from its record. Returns: they have no
    /// advice of their own, so the acquirer's repeat is how their outcome becomes known.
    AnswerAsDecided,
}

impl Repeat {
    /// Whether a repeat whose first arrival is journaled as `earlier` is worked again.
    fn works_again(self, earlier: &JournalRow) -> bool {
        let undecided = matches!(
            earlier.issuer_outcome.as_deref(),
            Some(outcome) if outcome == IssuerOutcome::Timeout.as_str() || outcome == IssuerOutcome::Down.as_str()
        );
        match self {
            Repeat::Duplicate => false,
            Repeat::AnswerAsBefore => earlier.response_code.is_none(),
            Repeat::AnswerAsDecided => earlier.response_code.is_none() || undecided,
        }
    }
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
            admits: false,
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
            metrics: crate::metrics::SwitchMetrics::default(),
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

    /// Answers one framed message from an acquirer: a registered terminal's message admits
    /// its connection (see [`FrameAnswer`]).
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
                admits: registered,
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

    /// [`Switch::decide`], counted and timed for operators (`metrics`).
    async fn answer_message(&self, request: &Message<'_>, raw: &[u8]) -> (Message<'static>, bool) {
        let started = std::time::Instant::now();
        let (response, registered) = self.decide(request, raw).await;
        self.metrics.record(request, &response, started.elapsed());
        (response, registered)
    }

    /// The switch's counters, for `/metrics`.
    pub fn metrics(&self) -> &crate::metrics::SwitchMetrics {
        &self.metrics
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
    async fn decide(&self, request: &Message<'_>, raw: &[u8]) -> (Message<'static>, bool) {
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
            "0800" => self.sign_on(request, sender, admitted.master).await,
            "0200" | "0220" if returns::is_return(request) => self.card_return(request).await,
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
}

impl FrameHandler for Switch {
    async fn answer_frame(&self, frame: Vec<u8>) -> FrameAnswer {
        self.handle_frame(&frame).await
    }
}

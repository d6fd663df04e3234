//! Paying a TN — what UnionPay's payment control does in its test environment: the payer
//! gives a card number and the SMS code, then the PIN (debit card) or the CVN2 and expiry
//! (credit card). The payment is a real card-not-present authorization through the switch's
//! ISO 8583 port, the gateway acting as an e-commerce acquirer (`cloudpass-acquirer`), and
//! the issuer's ledger moves; the order follows `cloudpass-core::order`.
//!
//! Before anything reaches the network the order is marked `paying` (by version), so a TN is
//! never paid twice. Mistakes that stop before the network (a wrong SMS code, a missing PIN)
//! count against a bounded number of tries per TN; a decline by the issuer ends the order.

use std::sync::Arc;

use cloudpass_acquirer::{
    AcquirerError, EcommerceTerminal, Outcome, Presentment, Purchase, Terminal,
};
use cloudpass_core::card_number::mask_digits;
use cloudpass_core::order::{OrderEvent, OrderStatus};
use cloudpass_core::{AccountNumber, Currency, Expiry, Money, Pan};
use cloudpass_crypto::Pin;
use cloudpass_store::{GatewayStore, OrderRow, StoreError};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::certification::Case;
use crate::identity::{self, GivenIdentity, Holder};
use crate::orders::RecordError;
use crate::query::trade_code;
use crate::sms::Expected;
use crate::{Gateway, tn};

/// Tries a payer gets on one TN before the gateway stops taking them.
pub const MAX_TRIES_PER_TN: u32 = 5;
/// TNs whose tries are remembered at once; the oldest are forgotten past it.
const TRIES_REMEMBERED: usize = 10_000;

/// Debit or credit, as the card's BIN range says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKind {
    Debit,
    Credit,
}

impl CardKind {
    /// `payCardType`.
    pub fn code(self) -> &'static str {
        match self {
            CardKind::Debit => "01",
            CardKind::Credit => "02",
        }
    }
}

/// A boxed future, for the object-safe [`PayerChecks`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The checks the payment control makes before the network is asked, and its one errand
/// outside: the card's kind by its BIN, the SMS codes published for a test card, and a text
/// message to the phone the card's bank holds (see `sms`). The sandbox implements it from
/// its bank.
pub trait PayerChecks: Send + Sync {
    fn card_kind(&self, pan: &Pan) -> Option<CardKind>;
    /// The fixed SMS codes a published test card takes; empty for every other card, which
    /// gets a code sent.
    fn published_sms_codes(&self, pan: &Pan) -> Vec<String>;
    /// Texts `text` to the phone the card's bank holds for `pan`; the phone, masked, or
    /// `None` when the bank has no phone for the card (or no such card).
    fn send_text<'a>(&'a self, pan: &'a Pan, text: &'a str) -> BoxFuture<'a, Option<String>>;
    /// What the card's test data says of its holder, for checking the identity fields a
    /// payer gives (see `identity`).
    fn holder(&self, _pan: &Pan) -> Option<Holder> {
        None
    }
    /// A sandbox trigger: seconds a payment with this card is held before it is sent, so
    /// the trade is seen pending (see `pending`).
    fn pending_seconds(&self, _pan: &Pan) -> Option<i64> {
        None
    }
    /// Published test cards the hosted page may list for the payer (a sandbox has them).
    fn test_cards(&self) -> Vec<TestCard> {
        Vec::new()
    }
}

/// A published test card as the sandbox's hosted page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCard {
    pub number: String,
    pub kind: CardKind,
    pub sms_code: String,
    /// What the card asks after the SMS code, e.g. `PIN 111101` or `CVN2 248, expiry 2912`.
    pub then: String,
    /// The holder's name, phone and ID number the page asks for, as the card's data has
    /// them; empty when it names no holder.
    pub holder: String,
}

/// The payer's input (JSON).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// The card's number, 13 to 19 digits (spaces are ignored).
    pub card_number: String,
    /// The SMS code sent to the card's phone (the sandbox: 111111 or 123456 for its test
    /// cards).
    pub sms_code: String,
    /// A debit card's PIN, 4 to 12 digits.
    #[serde(default)]
    pub pin: Option<String>,
    /// A credit card's CVN2, the 3 digits on its back.
    #[serde(default)]
    pub cvn2: Option<String>,
    /// A credit card's expiry, YYMM.
    #[serde(default)]
    pub expiry: Option<String>,
    /// The holder's name, when the payer gives it: checked against the card's test data.
    #[serde(default)]
    pub holder_name: Option<String>,
    /// The phone the bank holds for the card, when given: checked likewise.
    #[serde(default)]
    pub phone: Option<String>,
    /// The holder's ID card number, when given: checked likewise.
    #[serde(default)]
    pub id_number: Option<String>,
}

impl PayRequest {
    /// The identity fields given.
    pub fn identity(&self) -> GivenIdentity<'_> {
        fn given(field: &Option<String>) -> Option<&str> {
            field
                .as_deref()
                .map(str::trim)
                .filter(|value| !value.is_empty())
        }
        GivenIdentity {
            name: given(&self.holder_name),
            phone: given(&self.phone),
            id_number: given(&self.id_number),
        }
    }
}

impl Drop for PayRequest {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.card_number.zeroize();
        self.sms_code.zeroize();
        self.pin.zeroize();
        self.cvn2.zeroize();
        self.holder_name.zeroize();
        self.phone.zeroize();
        self.id_number.zeroize();
    }
}

/// What became of a payment (JSON).
#[derive(Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct PayResult {
    pub tn: String,
    /// `paid`, `failed`, or `unknown` when the issuer's answer never came and the payment
    /// could not be reversed (a query will tell).
    pub status: &'static str,
    /// The trade's UPACP code (`origRespCode` in a query).
    pub resp_code: &'static str,
    pub message: String,
    pub query_id: Option<String>,
    /// `01` debit, `02` credit.
    pub pay_card_type: &'static str,
}

/// Why a payment was not taken; each is a JSON `{code, message}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayError {
    #[error("no order has this TN")]
    UnknownTn,
    #[error("the order is {0} and cannot be paid")]
    NotPayable(&'static str),
    #[error("the order's payTimeout has passed")]
    TimedOut,
    #[error("too many tries on this TN; the merchant must issue a new order")]
    TooManyTries,
    #[error("the card number is not a valid card number")]
    BadCardNumber,
    #[error("the card is not a card of this network")]
    UnknownCard,
    #[error("the SMS code is wrong; tries left: {0}")]
    WrongSmsCode(u32),
    #[error("the card's bank holds no phone for this card, so no SMS code can be sent")]
    SmsUnavailable,
    #[error("no SMS code was sent for this card on this order; ask for one first")]
    SmsNotSent,
    #[error("the SMS code has expired; ask for a new one")]
    SmsExpired,
    #[error("a code was sent moments ago; ask for another in {0} seconds")]
    SmsTooSoon(i64),
    #[error("enough SMS codes were sent for this order; the merchant must issue a new one")]
    TooManySmsCodes,
    #[error("the name, phone number or ID number does not match the card's")]
    IdentityMismatch,
    #[error("{0}")]
    MissingInput(&'static str),
    #[error("{0}")]
    BadInput(&'static str),
    #[error("the payment network is not ready; try again shortly")]
    NetworkNotReady,
    #[error("the discount shown is no longer available; look at the amount again and confirm")]
    DiscountChanged,
    #[error("the order book is not available; try again")]
    Unavailable,
}

impl PayError {
    /// The stable code of the JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            PayError::UnknownTn => "tn_not_found",
            PayError::NotPayable(_) => "order_not_payable",
            PayError::TimedOut => "order_timed_out",
            PayError::TooManyTries => "too_many_tries",
            PayError::BadCardNumber => "card_number_invalid",
            PayError::UnknownCard => "card_unknown",
            PayError::WrongSmsCode(_) => "sms_code_wrong",
            PayError::SmsUnavailable => "sms_unavailable",
            PayError::SmsNotSent => "sms_code_not_sent",
            PayError::SmsExpired => "sms_code_expired",
            PayError::SmsTooSoon(_) => "sms_too_soon",
            PayError::TooManySmsCodes => "too_many_sms_codes",
            PayError::IdentityMismatch => "identity_mismatch",
            PayError::MissingInput(_) => "input_missing",
            PayError::BadInput(_) => "input_invalid",
            PayError::NetworkNotReady => "network_not_ready",
            PayError::DiscountChanged => "discount_changed",
            PayError::Unavailable => "unavailable",
        }
    }
}

pub(crate) fn unavailable(error: StoreError) -> PayError {
    tracing::error!(error = %error, "gateway: the order book failed during a payment");
    PayError::Unavailable
}

/// What became of sending the authorization.
pub(crate) enum Sending {
    Answered(Outcome),
    /// The link failed after the request may have left.
    Unknown,
    /// The request never left.
    NeverLeft,
}

/// The card-not-present purchase of `order` with `card`.
fn purchase_of<'c>(order: &OrderRow, card: &'c Card) -> Purchase<'c> {
    Purchase {
        account: &card.pan,
        expiry: card.expiry,
        amount: Money::new(u64::try_from(order.amount).unwrap_or(0), Currency::CNY),
        field55: &[],
        presentment: Presentment::CardNotPresent {
            cvn2: card.cvn2.as_ref().map(|c| c.as_str()),
            terminal_type: if order.channel == "07" {
                EcommerceTerminal::Pc
            } else {
                EcommerceTerminal::Mobile
            },
        },
        pin: card.pin.as_ref(),
    }
}

/// The payer's card, checked before the network is asked.
pub(crate) struct Card {
    pan: Pan,
    kind: CardKind,
    pin: Option<Pin>,
    cvn2: Option<Zeroizing<String>>,
    expiry: Option<Expiry>,
}

impl Card {
    pub(crate) fn paid_with(&self) -> PaidWith {
        PaidWith {
            masked: mask_digits(self.pan.expose()),
            kind: self.kind,
        }
    }
}

/// What the order keeps of what paid it: the card number (or device card number) masked,
/// and debit or credit.
pub(crate) struct PaidWith {
    pub(crate) masked: String,
    pub(crate) kind: CardKind,
}

impl Gateway {
    /// Pays the order `tn` with the payer's card.
    pub async fn pay(&self, tn: &str, request: &PayRequest) -> Result<PayResult, PayError> {
        let order = self.payable_order(tn).await?;
        let now = self.merchant_now_millis(&order.mer_id);
        let card = match self.check_payer(tn, request, now) {
            Ok(card) => card,
            Err(error) => {
                self.count_try(tn);
                return Err(error);
            }
        };
        let terminal = self
            .acquirer
            .get()
            .cloned()
            .ok_or(PayError::NetworkNotReady)?;
        let prepared = terminal
            .prepare_purchase(&purchase_of(&order, &card))
            .map_err(|error| {
                tracing::warn!(error = %error, tn = %order.tn, "gateway: the authorization could not be built");
                PayError::NetworkNotReady
            })?;
        // The authorization's STAN and time are recorded before it leaves: whatever happens
        // to this process, the unanswered-payment sweep can reverse it by them.
        let (stan, time) = (
            prepared.stan().to_owned(),
            prepared.transmission_time().to_owned(),
        );
        let paying = self
            .record(order, OrderEvent::PaymentSent, |row| {
                row.auth_stan = Some(stan);
                row.auth_transmission_time = Some(time);
                // A card number pays the whole amount: no discount (an earlier app payment
                // that never left may have set one).
                row.discount = 0;
                row.campaign_id = None;
            })
            .await?;
        if let Some(seconds) = self.payer.pending_seconds(&card.pan)
            && self.may_hold()
        {
            let kind = card.kind;
            let tn = paying.tn.clone();
            self.hold_payment(paying, card, prepared, seconds);
            return Ok(PayResult {
                tn,
                status: "unknown",
                resp_code: cloudpass_upacp::code::RespCode::AcceptedQueryLater.code(),
                message: "the bank is processing the payment; the merchant learns the result by notification or query".to_owned(),
                query_id: None,
                pay_card_type: kind.code(),
            });
        }
        let outcome = match terminal.send_prepared(prepared).await {
            Ok(outcome) => Sending::Answered(outcome),
            // The link failed: the request may have reached the switch.
            Err(AcquirerError::Link(error)) => {
                tracing::warn!(error = %error, tn = %paying.tn, "gateway: the authorization's fate is unknown");
                Sending::Unknown
            }
            Err(error) => {
                tracing::warn!(error = %error, tn = %paying.tn, "gateway: the authorization could not be sent");
                Sending::NeverLeft
            }
        };
        self.settle(paying, &card.paid_with(), outcome).await
    }

    /// The card number a payer typed for `tn`, parsed and of a known kind; a mistake counts
    /// against the TN's tries (the hosted page's card step and the SMS step).
    pub(crate) fn checked_card(
        &self,
        tn: &str,
        card_number: &str,
    ) -> Result<(Pan, CardKind), PayError> {
        if self.tries(tn) >= MAX_TRIES_PER_TN {
            return Err(PayError::TooManyTries);
        }
        let checked = Pan::parse(card_number.trim())
            .map_err(|_| PayError::BadCardNumber)
            .and_then(|pan| match self.payer.card_kind(&pan) {
                Some(kind) => Ok((pan, kind)),
                None => Err(PayError::UnknownCard),
            });
        if checked.is_err() {
            self.count_try(tn);
        }
        checked
    }

    /// The order of `tn` while it can be paid.
    pub(crate) async fn payable_order(&self, tn: &str) -> Result<OrderRow, PayError> {
        let order = self
            .store
            .order_by_tn(tn)
            .await
            .map_err(unavailable)?
            .ok_or(PayError::UnknownTn)?;
        let status = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Failed);
        if status != OrderStatus::Issued {
            return Err(PayError::NotPayable(status.as_str()));
        }
        if self.merchant_now_seconds(&order.mer_id) > order.pay_timeout {
            return Err(PayError::TimedOut);
        }
        Ok(order)
    }

    /// The card's number, kind, SMS code and the verification its kind needs (`now` on the
    /// merchant's clock, for the sent code's age).
    fn check_payer(&self, tn: &str, request: &PayRequest, now: i64) -> Result<Card, PayError> {
        if self.tries(tn) >= MAX_TRIES_PER_TN {
            return Err(PayError::TooManyTries);
        }
        let pan = Pan::parse(request.card_number.trim()).map_err(|_| PayError::BadCardNumber)?;
        let kind = self.payer.card_kind(&pan).ok_or(PayError::UnknownCard)?;
        let given = request.sms_code.trim();
        let correct = match self.expected_sms_code(&pan) {
            Expected::Published(codes) => codes.iter().any(|code| code == given),
            Expected::Sent => self.check_sent_code(tn, &pan, given, now)?,
        };
        if !correct {
            let left = MAX_TRIES_PER_TN.saturating_sub(self.tries(tn) + 1);
            return Err(PayError::WrongSmsCode(left));
        }
        if let Some(holder) = self.payer.holder(&pan)
            && !identity::agrees(&holder, request.identity())
        {
            return Err(PayError::IdentityMismatch);
        }
        let mut card = Card {
            pan,
            kind,
            pin: None,
            cvn2: None,
            expiry: None,
        };
        match kind {
            CardKind::Debit => {
                let pin = request
                    .pin
                    .as_deref()
                    .ok_or(PayError::MissingInput("a debit card needs its PIN"))?;
                card.pin = Some(
                    Pin::parse(pin).map_err(|_| PayError::BadInput("a PIN is 4 to 12 digits"))?,
                );
            }
            CardKind::Credit => {
                let cvn2 = request
                    .cvn2
                    .as_deref()
                    .ok_or(PayError::MissingInput("a credit card needs its CVN2"))?;
                if cvn2.len() != 3 || !cvn2.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PayError::BadInput(
                        "a CVN2 is the 3 digits on the back of the card",
                    ));
                }
                let expiry = request.expiry.as_deref().ok_or(PayError::MissingInput(
                    "a credit card needs its expiry (YYMM)",
                ))?;
                card.expiry = Some(
                    expiry
                        .parse()
                        .map_err(|_| PayError::BadInput("the expiry is YYMM"))?,
                );
                card.cvn2 = Some(Zeroizing::new(cvn2.to_owned()));
            }
        }
        Ok(card)
    }

    /// The order after the issuer's answer: paid, failed, or left paying when nobody can
    /// tell (no answer and the reversal unacknowledged, or the link failed) — the
    /// unanswered-payment sweep settles it then.
    pub(crate) async fn settle(
        &self,
        order: OrderRow,
        card: &PaidWith,
        sent: Sending,
    ) -> Result<PayResult, PayError> {
        let tn = order.tn.clone();
        let tn_merchant = order.mer_id.clone();
        let result =
            |status, code: cloudpass_upacp::code::RespCode, message: &str, query_id| PayResult {
                tn: tn.clone(),
                status,
                resp_code: code.code(),
                message: message.to_owned(),
                query_id,
                pay_card_type: card.kind.code(),
            };
        let unknown = || {
            result(
                "unknown",
                cloudpass_upacp::code::RespCode::AcceptedQueryLater,
                "the issuer's answer did not come; query the order",
                None,
            )
        };
        let outcome = match sent {
            Sending::Answered(outcome) => outcome,
            Sending::Unknown => return Ok(unknown()),
            Sending::NeverLeft => {
                // Nothing reached the network: the order may be paid again.
                let _ = self
                    .record(order, OrderEvent::PaymentNotSent, |_| {})
                    .await?;
                return Ok(result(
                    "failed",
                    cloudpass_upacp::code::RespCode::IssuerFailed,
                    "the payment could not be sent",
                    None,
                ));
            }
        };
        let masked = card.masked.clone();
        let field39 = outcome.response_code.clone();
        match field39.as_deref() {
            Some("00") => {
                let query_id = tn::draw(&*self.random);
                let now = self.merchant_now_millis(&order.mer_id);
                let paid = self
                    .record(
                        order,
                        OrderEvent::PaymentApproved {
                            at: now.div_euclid(1_000),
                        },
                        |row| {
                            row.paid_at = Some(now);
                            row.query_id = Some(query_id.clone());
                            row.pay_response_code = Some("00".into());
                            row.pay_card_masked = Some(masked.clone());
                            row.pay_card_type = Some(card.kind.code().into());
                            row.auth_stan = Some(outcome.stan.clone());
                            row.auth_transmission_time = Some(outcome.transmission_time.clone());
                        },
                    )
                    .await?;
                self.certify(&paid.mer_id, Case::ConsumeSucceeded).await;
                Ok(result(
                    "paid",
                    cloudpass_upacp::code::RespCode::Success,
                    "paid",
                    paid.query_id,
                ))
            }
            None if outcome.reversal.is_none() => {
                // Sent, unanswered, and the reversal not acknowledged: the order stays
                // paying until the sweep's reversal is (a query answers 05 meanwhile).
                Ok(unknown())
            }
            code => {
                let code = code.unwrap_or("68").to_owned();
                let (resp_code, message) = trade_code(&code);
                self.record(order, OrderEvent::PaymentDeclined, |row| {
                    row.pay_response_code = Some(code.clone());
                    row.pay_card_masked = Some(masked.clone());
                    row.pay_card_type = Some(card.kind.code().into());
                    row.auth_stan = Some(outcome.stan.clone());
                    row.auth_transmission_time = Some(outcome.transmission_time.clone());
                })
                .await?;
                self.certify(&tn_merchant, Case::ConsumeFailed).await;
                Ok(result("failed", resp_code, message, None))
            }
        }
    }

    /// [`Gateway::apply_event`] for the payer: whatever stops it means the order cannot be
    /// paid (now).
    pub(crate) async fn record(
        &self,
        order: OrderRow,
        event: OrderEvent,
        fill: impl FnOnce(&mut OrderRow),
    ) -> Result<OrderRow, PayError> {
        let status = order.status.clone();
        // A payment approved is announced to the merchant, in the same write.
        let moved = if matches!(event, OrderEvent::PaymentApproved { .. }) {
            self.apply_event_notifying(order, event, fill, None).await
        } else {
            self.apply_event(order, event, fill).await
        };
        match moved {
            Ok(row) => Ok(row),
            Err(RecordError::Refused(_)) => Err(PayError::NotPayable(
                OrderStatus::parse(&status)
                    .unwrap_or(OrderStatus::Failed)
                    .as_str(),
            )),
            // Someone else moved the order first (another payer on the same TN).
            Err(RecordError::Conflict) => Err(PayError::NotPayable("being paid")),
            Err(RecordError::Store(error)) => Err(unavailable(error)),
        }
    }

    pub(crate) fn tries(&self, tn: &str) -> u32 {
        self.tries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tn)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn count_try(&self, tn: &str) {
        let mut tries = self.tries.lock().unwrap_or_else(|p| p.into_inner());
        if tries.len() >= TRIES_REMEMBERED && !tries.contains_key(tn) {
            tries.clear();
        }
        *tries.entry(tn.to_owned()).or_insert(0) += 1;
    }

    /// Gives the gateway its acquirer terminal, signed on to the switch.
    pub fn set_acquirer(&self, terminal: Arc<Terminal>) {
        let _ = self.acquirer.set(terminal);
    }
}

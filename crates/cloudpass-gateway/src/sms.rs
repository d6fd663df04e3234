//! SMS codes for cards that have no published one. UnionPay's test environment takes fixed
//! codes for its published test cards; every other card — one the sandbox bank issued or
//! reissued — gets a fresh code, as in production: the payer asks for it
//! (`POST /gateway/pay/{tn}/sms`, or the hosted page's card step), the gateway draws six
//! digits and asks the card's bank to text them to the phone it holds for the card (the
//! sandbox bank's SMS inbox), and the payment checks them.
//!
//! A code belongs to one TN and one card, is good for [`CODE_VALID_SECONDS`] on the
//! merchant's clock (so the sandbox clock ages it), and is used once. A new code replaces
//! the old one, at most [`MAX_SENDS_PER_TN`] per TN and not within [`RESEND_AFTER_SECONDS`]
//! of the last. Codes live in memory only: after a restart the payer asks again. Neither a
//! code nor the card number is ever logged or returned.

use std::collections::HashMap;

use cloudpass_core::{AccountNumber, Currency, Money, Pan};
use serde::Serialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Gateway;
use crate::pay::PayError;

/// How long a sent code is good for.
pub const CODE_VALID_SECONDS: i64 = 300;
/// How soon after a send the payer may ask for another.
pub const RESEND_AFTER_SECONDS: i64 = 60;
/// Codes sent for one TN, at most.
pub const MAX_SENDS_PER_TN: u32 = 5;
/// TNs whose codes are remembered at once; the oldest half is forgotten past it.
const CODES_REMEMBERED: usize = 10_000;

/// The code last sent for a TN, and the sends asked for it.
pub(crate) struct SentCode {
    /// The card the code was sent for; none until a first code went out.
    pan: Option<Pan>,
    code: Zeroizing<String>,
    /// When the code went out, merchant-clock milliseconds: its age.
    sent_at: i64,
    /// Sends asked for, counted before each goes out, so that payers asking at once
    /// cannot pass the limits together.
    sends: u32,
    /// When the last send was asked for, merchant-clock milliseconds.
    asked_at: i64,
    /// A payment took it: it is good for nothing more.
    used: bool,
}

impl SentCode {
    /// A first send asked for at `now`, before any code went out: nothing to check yet.
    fn first_asked(now: i64) -> SentCode {
        SentCode {
            pan: None,
            code: Zeroizing::new(String::new()),
            sent_at: now,
            sends: 1,
            asked_at: now,
            used: true,
        }
    }
}

/// The codes sent, by TN.
pub(crate) type SentCodes = HashMap<String, SentCode>;

/// What asking for a code did (JSON).
#[derive(Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct SmsSent {
    /// `sent`, or `published` for a published test card, whose fixed code is used instead.
    pub status: &'static str,
    /// The phone the code went to, masked (`181****0000`).
    pub sent_to: Option<String>,
    /// Seconds the code is good for.
    pub valid_seconds: Option<i64>,
    /// Seconds before another code may be asked for.
    pub resend_after_seconds: Option<i64>,
    pub message: String,
}

/// What a code is sent for: its text says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeFor {
    /// A payment of `amount` fen.
    Payment { amount: i64 },
    /// Opening the card for token payment at the merchant.
    Opening,
}

/// What the payer's code is checked against.
pub(crate) enum Expected {
    /// The card's published test codes.
    Published(Vec<String>),
    /// The code the gateway sent for this TN.
    Sent,
}

impl Gateway {
    /// `POST /gateway/pay/{tn}/sms`: a fresh code texted to the card's phone.
    pub async fn send_sms_code(&self, tn: &str, card_number: &str) -> Result<SmsSent, PayError> {
        let order = self.payable_order(tn).await?;
        let (pan, _) = self.checked_card(tn, card_number)?;
        if let Some(code) = self.payer.published_sms_codes(&pan).first() {
            return Ok(SmsSent {
                status: "published",
                sent_to: None,
                valid_seconds: None,
                resend_after_seconds: None,
                message: format!("a published test card: no code is sent; its SMS code is {code}"),
            });
        }
        self.send_code(
            tn,
            pan,
            &order.mer_id,
            CodeFor::Payment {
                amount: order.amount,
            },
        )
        .await
    }

    /// Texts a fresh code for `pan` to the card's phone, kept under `key` (a TN, or a back
    /// consume's or an opening's request to come, [`order_key`]), for `purpose` at `mer_id`.
    pub(crate) async fn send_code(
        &self,
        key: &str,
        pan: Pan,
        mer_id: &str,
        purpose: CodeFor,
    ) -> Result<SmsSent, PayError> {
        let now = self.merchant_now_millis(mer_id);
        self.reserve_send(key, now)?;
        let code = Zeroizing::new(format!("{:06}", self.random.below(1_000_000)));
        let merchant = match self.merchant(mer_id).await {
            Ok(Some(merchant)) => merchant.name.clone(),
            _ => mer_id.to_owned(),
        };
        let minutes = CODE_VALID_SECONDS / 60;
        let text = Zeroizing::new(match purpose {
            CodeFor::Payment { amount } => {
                let amount = Money::new(u64::try_from(amount).unwrap_or(0), Currency::CNY)
                    .to_decimal_string();
                format!(
                    "【中国银联】验证码{code}，您正在向{merchant}支付{amount}元，{minutes}分钟内有效，请勿泄露。\
                     Your code is {code} for paying CNY {amount} to {merchant} with the card ending \
                     {last4}. It expires in {minutes} minutes. Do not share it.",
                    code = code.as_str(),
                    last4 = pan.last4(),
                )
            }
            CodeFor::Opening => format!(
                "【中国银联】验证码{code}，您正在{merchant}开通银联无跳转支付（尾号{last4}的卡），{minutes}分钟内有效，请勿泄露。\
                 Your code is {code} for letting {merchant} keep the card ending {last4} for \
                 payments. It expires in {minutes} minutes. Do not share it.",
                code = code.as_str(),
                last4 = pan.last4(),
            ),
        });
        let Some(sent_to) = self.payer.send_text(&pan, &text).await else {
            return Err(PayError::SmsUnavailable);
        };
        self.remember_code(key, pan, code, now);
        Ok(SmsSent {
            status: "sent",
            sent_to: Some(sent_to.clone()),
            valid_seconds: Some(CODE_VALID_SECONDS),
            resend_after_seconds: Some(RESEND_AFTER_SECONDS),
            message: format!(
                "a code was sent to {sent_to}; it is good for {} minutes",
                CODE_VALID_SECONDS / 60
            ),
        })
    }

    /// Counts a send under `key` when one may be made now, in one step under the lock; a
    /// code already sent stays good meanwhile.
    fn reserve_send(&self, key: &str, now: i64) -> Result<(), PayError> {
        let mut codes = self.sms_codes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = codes.get_mut(key) {
            if last.sends >= MAX_SENDS_PER_TN {
                return Err(PayError::TooManySmsCodes);
            }
            let wait = RESEND_AFTER_SECONDS - (now - last.asked_at).div_euclid(1_000);
            if wait > 0 {
                return Err(PayError::SmsTooSoon(wait));
            }
            last.sends += 1;
            last.asked_at = now;
            return Ok(());
        }
        if codes.len() >= CODES_REMEMBERED {
            let mut oldest: Vec<(i64, String)> = codes
                .iter()
                .map(|(key, sent)| (sent.asked_at, key.clone()))
                .collect();
            oldest.sort();
            for (_, key) in oldest.into_iter().take(CODES_REMEMBERED / 2) {
                codes.remove(&key);
            }
        }
        codes.insert(key.to_owned(), SentCode::first_asked(now));
        Ok(())
    }

    /// The code that went out under `key` for `pan`: it replaces the one before.
    fn remember_code(&self, key: &str, pan: Pan, code: Zeroizing<String>, now: i64) {
        let mut codes = self.sms_codes.lock().unwrap_or_else(|p| p.into_inner());
        let sent = codes
            .entry(key.to_owned())
            .or_insert_with(|| SentCode::first_asked(now));
        sent.pan = Some(pan);
        sent.code = code;
        sent.sent_at = now;
        sent.used = false;
    }

    /// Moves a code sent under `from` to `to`: a back consume's code, sent before its order
    /// had a TN, to the TN.
    pub(crate) fn rekey_code(&self, from: &str, to: &str) {
        let mut codes = self.sms_codes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sent) = codes.remove(from) {
            codes.insert(to.to_owned(), sent);
        }
    }

    /// What the code for `pan` is checked against.
    pub(crate) fn expected_sms_code(&self, pan: &Pan) -> Expected {
        let published = self.payer.published_sms_codes(pan);
        if published.is_empty() {
            Expected::Sent
        } else {
            Expected::Published(published)
        }
    }

    /// Checks `given` against the code sent for `tn` to `pan`, using it up when it matches.
    /// `Ok(false)` is a wrong code (the caller counts the try).
    pub(crate) fn check_sent_code(
        &self,
        tn: &str,
        pan: &Pan,
        given: &str,
        now: i64,
    ) -> Result<bool, PayError> {
        let mut codes = self.sms_codes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sent) = codes.get_mut(tn) else {
            return Err(PayError::SmsNotSent);
        };
        if sent.used || sent.pan.as_ref().map(AccountNumber::expose) != Some(pan.expose()) {
            return Err(PayError::SmsNotSent);
        }
        if now - sent.sent_at > CODE_VALID_SECONDS * 1_000 {
            return Err(PayError::SmsExpired);
        }
        let matches: bool = sent.code.as_bytes().ct_eq(given.as_bytes()).into();
        // Used once; the entry stays, so the TN's send limit holds.
        sent.used |= matches;
        Ok(matches)
    }
}

/// The key of the code sent for a back consume to come: its merchant, orderId and txnTime,
/// which name its order.
pub(crate) fn order_key(mer_id: &str, order_id: &str, txn_time: &str) -> String {
    format!("order {mer_id} {order_id} {txn_time}")
}

//! Token payment (无跳转支付, bizType 000902) at `backTransReq.do`: a merchant opens a
//! payer's card once and keeps a token instead of the card number.
//!
//! - txnType 77, txnSubType 00: the SMS code of an opening, texted to the card's phone (a
//!   published test card takes its fixed code and nothing is sent).
//! - txnType 79: the opening. The card is checked as a payment's is before the network — a
//!   card of this network, the SMS code, the holder's fields when given — and a 19-digit
//!   token is drawn; the card number (and the expiry, when given) is sealed by the platform
//!   bound to the token, and the answer carries `tokenPayData {token, trId, tokenType}`, the
//!   card masked and its type. The same request again gets the same token.
//! - txnType 01 and 77/02 with bizType 000902 name the card by `tokenPayData {token, trId}`
//!   (see `back_consume`): a token is good only for the merchant and `trId` that opened it,
//!   and only while it is not deleted. The issuer still checks the PIN or CVN2 of each
//!   payment; a token payment's PIN block is formed with the token's digits.
//! - txnType 74: the token deleted; later payments with it are refused 63.

use cloudpass_core::card_number::{luhn_check_digit, mask_digits};
use cloudpass_core::{AccountNumber, Pan};
use cloudpass_store::{CardTokenInsert, CardTokenRow, CardTokenStore};
use cloudpass_upacp::Form;
use cloudpass_upacp::code::RespCode;
use cloudpass_upacp::request::{OpenSms, Refusal, TokenDelete, TokenOpen, refuse};
use zeroize::Zeroizing;

use crate::back_consume::{open_text, pay_error_code, sms_refusal};
use crate::consume::{request_digest, store_failure};
use crate::identity::{self, GivenIdentity};
use crate::merchant::Merchant;
use crate::pay::MAX_TRIES_PER_TN;
use crate::sms::{CodeFor, Expected, order_key};
use crate::{Gateway, PayError};

/// Tokens start with this: no card of the sandbox's banks does.
const TOKEN_PREFIX: &str = "629900";
/// Draws of a fresh token before giving up.
const TOKEN_DRAWS: usize = 8;
const ACTIVE: &str = "active";

/// The card behind a request from a merchant's server.
pub(crate) struct OpenedCard {
    pub(crate) pan: Pan,
    /// The expiry (YYMM) kept with a token, when its opening gave one.
    pub(crate) expiry: Option<String>,
    /// The digits a PIN block is formed with: the card number, or the token.
    pub(crate) pin_account: Zeroizing<String>,
}

/// What the platform seals for a token: the card number, and the expiry when known.
fn sealed_text(pan: &Pan, expiry: Option<&str>) -> Zeroizing<String> {
    Zeroizing::new(format!("{}|{}", pan.expose(), expiry.unwrap_or("")))
}

fn unsealed_text(text: &str) -> Option<(Pan, Option<String>)> {
    let (number, expiry) = text.split_once('|')?;
    let pan = Pan::parse(number).ok()?;
    let expiry = (!expiry.is_empty()).then(|| expiry.to_owned());
    Some((pan, expiry))
}

/// The refusal of a token that is not the merchant's (or not anyone's): one answer for all,
/// so a merchant cannot probe for others' tokens.
fn not_this_merchants() -> Refusal {
    refuse(
        RespCode::InvalidCard,
        "tokenPayData.token is not a token this merchant opened with this trId",
    )
}

impl Gateway {
    /// txnType 77, txnSubType 00: the SMS code of the opening to come (same `orderId` and
    /// `txnTime`).
    pub(crate) async fn open_sms_code(
        &self,
        form: &Form,
        merchant: &Merchant,
    ) -> Result<String, Refusal> {
        let request = OpenSms::parse(form)?;
        self.may_pay_from_server(merchant, &request.encrypt_cert_id)?;
        self.check_txn_time(&request.header)?;
        let pan = self.card_number_of(&request.acc_no)?;
        if self.payer.published_sms_codes(&pan).is_empty() {
            let key = order_key(
                &request.header.mer_id,
                &request.order_id,
                &request.header.txn_time_text,
            );
            self.send_code(&key, pan, &request.header.mer_id, CodeFor::Opening)
                .await
                .map_err(sms_refusal)?;
        }
        Ok(self.answer(Some(form), RespCode::Success, "", Form::new()))
    }

    /// txnType 79: the opening.
    pub(crate) async fn open_token(
        &self,
        form: &Form,
        merchant: &Merchant,
    ) -> Result<String, Refusal> {
        let request = TokenOpen::parse(form)?;
        self.may_pay_from_server(merchant, &request.encrypt_cert_id)?;
        self.check_txn_time(&request.header)?;
        let header = &request.header;
        let digest = request_digest(form);
        let key = order_key(&header.mer_id, &request.order_id, &header.txn_time_text);
        // A repeat of an opening already made is answered from it before any check: its SMS
        // code was spent by the first request, and the merchant must get the same token back.
        if let Some(existing) = self
            .store
            .card_token_of_opening(&header.mer_id, &request.order_id, &header.txn_time_text)
            .await
            .map_err(store_failure)?
        {
            return if existing.request_digest == digest {
                Ok(self.opened(form, &existing))
            } else {
                Err(refuse(
                    RespCode::Duplicate,
                    "this orderId and txnTime already name another opening of this merchant",
                ))
            };
        }
        let pan = self.card_number_of(&request.acc_no)?;
        let kind = self
            .payer
            .card_kind(&pan)
            .ok_or_else(|| refuse(RespCode::InvalidCard, "accNo is not a card of this network"))?;
        let customer = self.customer_fields(&request.customer_info)?;
        if let Err(error) = self.check_opening(&key, &pan, &request, &customer) {
            self.count_try(&key);
            return Err(refuse(pay_error_code(&error), error.to_string()));
        }
        let now = self.merchant_now_millis(&header.mer_id);
        for _ in 0..TOKEN_DRAWS {
            let token = self.draw_token();
            let sealed = self
                .secrets
                .seal_card(
                    &token,
                    sealed_text(&pan, customer.expiry.as_deref()).as_bytes(),
                )
                .ok_or_else(|| {
                    tracing::error!("gateway: a card could not be sealed for its token");
                    refuse(RespCode::Busy, "the card could not be kept; send again")
                })?;
            let row = CardTokenRow {
                token,
                mer_id: header.mer_id.clone(),
                tr_id: request.tr_id.clone(),
                order_id: request.order_id.clone(),
                txn_time: header.txn_time_text.clone(),
                request_digest: digest.clone(),
                sealed_card: sealed,
                card_masked: mask_digits(pan.expose()),
                card_type: kind.code().to_owned(),
                status: ACTIVE.to_owned(),
                opened_at: now,
                deleted_at: None,
            };
            match self
                .store
                .insert_card_token(&row)
                .await
                .map_err(store_failure)?
            {
                CardTokenInsert::Inserted => return Ok(self.opened(form, &row)),
                CardTokenInsert::Exists(existing) if existing.request_digest == digest => {
                    return Ok(self.opened(form, &existing));
                }
                CardTokenInsert::Exists(_) => {
                    return Err(refuse(
                        RespCode::Duplicate,
                        "this orderId and txnTime already name another opening of this merchant",
                    ));
                }
                CardTokenInsert::TokenTaken => continue,
            }
        }
        Err(refuse(
            RespCode::Busy,
            "no token could be drawn; send again",
        ))
    }

    /// The checks of an opening before a token is drawn: tries, the SMS code, the holder.
    fn check_opening(
        &self,
        key: &str,
        pan: &Pan,
        request: &TokenOpen,
        customer: &crate::back_consume::CustomerFields,
    ) -> Result<(), PayError> {
        if self.tries(key) >= MAX_TRIES_PER_TN {
            return Err(PayError::TooManyTries);
        }
        let given = request
            .customer_info
            .get("smsCode")
            .ok_or(PayError::MissingInput("customerInfo has no smsCode"))?;
        let now = self.merchant_now_millis(&request.header.mer_id);
        let correct = match self.expected_sms_code(pan) {
            Expected::Published(codes) => codes.iter().any(|code| code == given),
            Expected::Sent => self.check_sent_code(key, pan, given, now)?,
        };
        if !correct {
            let left = MAX_TRIES_PER_TN.saturating_sub(self.tries(key) + 1);
            return Err(PayError::WrongSmsCode(left));
        }
        let given = GivenIdentity {
            name: customer.name.as_deref(),
            phone: customer.phone.as_deref(),
            id_number: customer.id_number.as_deref(),
        };
        if let Some(holder) = self.payer.holder(pan)
            && !identity::agrees(&holder, given)
        {
            return Err(PayError::IdentityMismatch);
        }
        if let Some(expiry) = customer.expiry.as_deref()
            && expiry.parse::<cloudpass_core::Expiry>().is_err()
        {
            return Err(PayError::BadInput("the expiry is YYMM"));
        }
        Ok(())
    }

    /// The answer to an opening: its token, the card masked and its type.
    fn opened(&self, form: &Form, row: &CardTokenRow) -> String {
        let fields = Form::new()
            .with(
                "tokenPayData",
                format!("{{token={}&trId={}&tokenType=01}}", row.token, row.tr_id),
            )
            .with("accNo", row.card_masked.clone())
            .with("payCardType", row.card_type.clone());
        self.answer(Some(form), RespCode::Success, "", fields)
    }

    /// txnType 74: the token deleted.
    pub(crate) async fn delete_token(
        &self,
        form: &Form,
        merchant: &Merchant,
    ) -> Result<String, Refusal> {
        let request = TokenDelete::parse(form)?;
        if !merchant.permissions.back_consume {
            return Err(refuse(
                RespCode::NoPermission,
                "the merchant may not use token payment (backTransReq.do, bizType 000902)",
            ));
        }
        let row = self
            .merchants_token(&request.header.mer_id, &request.token, &request.tr_id)
            .await?;
        let now = self.merchant_now_millis(&request.header.mer_id);
        let deleted = self
            .store
            .delete_card_token(&row.token, now)
            .await
            .map_err(store_failure)?;
        if !deleted {
            return Err(refuse(
                RespCode::CardStatus,
                "the token was deleted already",
            ));
        }
        Ok(self.answer(Some(form), RespCode::Success, "", Form::new()))
    }

    /// The card behind a merchant's active token.
    pub(crate) async fn card_of_token(
        &self,
        mer_id: &str,
        token: &str,
        tr_id: &str,
    ) -> Result<OpenedCard, Refusal> {
        let row = self.merchants_token(mer_id, token, tr_id).await?;
        if row.status != ACTIVE {
            return Err(refuse(
                RespCode::CardStatus,
                "the token was deleted; open the card again (txnType 79)",
            ));
        }
        let opened = self
            .secrets
            .open_card(&row.token, &row.sealed_card)
            .and_then(|plain| {
                let text = std::str::from_utf8(&plain).ok()?;
                unsealed_text(text)
            })
            .ok_or_else(|| {
                tracing::error!(token = %row.token, "gateway: a token's card could not be opened");
                refuse(RespCode::GeneralError, "the token's card could not be read")
            })?;
        Ok(OpenedCard {
            pan: opened.0,
            expiry: opened.1,
            pin_account: Zeroizing::new(row.token),
        })
    }

    /// The token when it is this merchant's with this `trId`.
    async fn merchants_token(
        &self,
        mer_id: &str,
        token: &str,
        tr_id: &str,
    ) -> Result<CardTokenRow, Refusal> {
        self.store
            .card_token(token)
            .await
            .map_err(store_failure)?
            .filter(|row| row.mer_id == mer_id && row.tr_id == tr_id)
            .ok_or_else(not_this_merchants)
    }

    /// `accNo` decrypted and parsed as a card number of this network.
    fn card_number_of(&self, acc_no: &str) -> Result<Pan, Refusal> {
        let number = open_text(
            &self.signer.decryption_key,
            acc_no,
            "accNo could not be decrypted with the platform's encryption key",
        )?;
        Pan::parse(number.trim())
            .ok()
            .filter(|pan| self.payer.card_kind(pan).is_some())
            .ok_or_else(|| refuse(RespCode::InvalidCard, "accNo is not a card of this network"))
    }

    /// A fresh 19-digit token: the prefix, 12 random digits, the Luhn check digit.
    fn draw_token(&self) -> String {
        let body = format!("{TOKEN_PREFIX}{:012}", self.random.below(1_000_000_000_000));
        let check = luhn_check_digit(body.as_bytes()).map_or('0', char::from);
        format!("{body}{check}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sealed_text_holds_the_number_and_the_expiry_when_known() {
        let pan = Pan::parse("6226388000000095").unwrap();
        let text = sealed_text(&pan, Some("2912"));
        let (opened, expiry) = unsealed_text(&text).unwrap();
        assert_eq!(opened.expose(), pan.expose());
        assert_eq!(expiry.as_deref(), Some("2912"));
        let (_, none) = unsealed_text(&sealed_text(&pan, None)).unwrap();
        assert_eq!(none, None);
        assert!(unsealed_text("no separator").is_none());
    }
}

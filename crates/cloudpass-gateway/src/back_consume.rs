//! The "no redirect" consume (无跳转支付) at `backTransReq.do`, txnType 01: the merchant's
//! server sends the card number (`accNo`) and the payer's checks (`customerInfo`: the SMS
//! code, and the PIN block or the CVN2 and expiry) encrypted to the platform's encryption
//! certificate (`encryptCertId`, from txnType 95), and the payment is made at once — the
//! same checks and the same card-not-present authorization through the switch as the
//! payment control's ([`Gateway::pay`]). The answer is final: `00` with the payment's
//! `queryId`, or the trade's code; the notification follows as for any consume. What is
//! decrypted lives in memory for the payment only and is zeroized after; none of it is
//! stored, logged or echoed.

use cloudpass_core::{AccountNumber, Pan};
use cloudpass_crypto::pin::format0_decode;
use cloudpass_crypto::upacp::RsaDecryptingKey;
use cloudpass_store::{GatewayStore, OrderRow};
use cloudpass_upacp::Form;
use cloudpass_upacp::code::RespCode;
use cloudpass_upacp::request::{
    BackConsume, CardSource, ConsumeSms, CustomerInfo, Header, Refusal, refuse,
};
use zeroize::Zeroizing;

use crate::card_tokens::OpenedCard;
use crate::consume::store_failure;
use crate::merchant::Merchant;
use crate::query::trade_code;
use crate::sms::{CodeFor, order_key};
use crate::{Gateway, PayError, PayRequest};

/// The UTF-8 text of an encrypted field, or the refusal naming it.
pub(crate) fn open_text(
    key: &RsaDecryptingKey,
    sealed: &str,
    refusal: &str,
) -> Result<Zeroizing<String>, Refusal> {
    let bytes = key
        .decrypt_base64(sealed)
        .map_err(|_| refuse(RespCode::FormatError, refusal))?;
    String::from_utf8(bytes.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| refuse(RespCode::FormatError, refusal))
}

impl Gateway {
    pub(crate) async fn back_consume(
        &self,
        form: &Form,
        header: &Header,
        merchant: &Merchant,
    ) -> Result<String, Refusal> {
        let request = BackConsume::parse(form)?;
        self.may_pay_from_server(merchant, &request.encrypt_cert_id)?;
        let card = self.card_named(&request.card, &header.mer_id).await?;
        let payer = self.open_payer(&request.customer_info, &card)?;
        let order = self
            .record_consume(form, header, &request.consume)
            .await?
            .row()
            .clone();
        // A first request, or the same bytes again while its order is still unpaid.
        let error = if order.status == "issued" {
            // A code sent for this order (txnType 77) now belongs to its TN.
            let header = &request.consume.header;
            self.rekey_code(
                &order_key(
                    &header.mer_id,
                    &request.consume.order_id,
                    &header.txn_time_text,
                ),
                &order.tn,
            );
            self.pay(&order.tn, &payer).await.err()
        } else {
            None
        };
        let order = self
            .store
            .order_by_tn(&order.tn)
            .await
            .map_err(store_failure)?
            .unwrap_or(order);
        Ok(self.back_consume_answer(form, &order, error))
    }

    /// `backTransReq.do` txnType 77: a fresh SMS code texted to the card's phone for the back
    /// consume to come (the same `orderId` and `txnTime`); a published test card takes its
    /// fixed code and nothing is sent.
    pub(crate) async fn back_sms_code(
        &self,
        form: &Form,
        merchant: &Merchant,
    ) -> Result<String, Refusal> {
        if header_sub_type(form) == Some("00") {
            return self.open_sms_code(form, merchant).await;
        }
        let request = ConsumeSms::parse(form)?;
        self.may_pay_from_server(merchant, &request.encrypt_cert_id)?;
        let pan = self
            .card_named(&request.card, &request.header.mer_id)
            .await?
            .pan;
        if self.payer.published_sms_codes(&pan).is_empty() {
            let key = order_key(
                &request.header.mer_id,
                &request.order_id,
                &request.header.txn_time_text,
            );
            let amount = i64::try_from(request.amount).unwrap_or(i64::MAX);
            self.send_code(
                &key,
                pan,
                &request.header.mer_id,
                CodeFor::Payment { amount },
            )
            .await
            .map_err(sms_refusal)?;
        }
        Ok(self.answer(Some(form), RespCode::Success, "", Form::new()))
    }

    /// The card a request from the merchant's server names: its `accNo` decrypted, or the
    /// card behind its token (whose PIN blocks are formed with the token's digits, the
    /// merchant not knowing the card's number).
    pub(crate) async fn card_named(
        &self,
        source: &CardSource,
        mer_id: &str,
    ) -> Result<OpenedCard, Refusal> {
        match source {
            CardSource::AccNo(sealed) => {
                let number = open_text(
                    &self.signer.decryption_key,
                    sealed,
                    "accNo could not be decrypted with the platform's encryption key",
                )?;
                let pan = Pan::parse(number.trim())
                    .ok()
                    .filter(|pan| self.payer.card_kind(pan).is_some())
                    .ok_or_else(|| {
                        refuse(RespCode::InvalidCard, "accNo is not a card of this network")
                    })?;
                let pin_account = Zeroizing::new(pan.expose().to_owned());
                Ok(OpenedCard {
                    pan,
                    expiry: None,
                    pin_account,
                })
            }
            CardSource::Token { token, tr_id } => self.card_of_token(mer_id, token, tr_id).await,
        }
    }

    /// The checks of a request that carries the card's data from the merchant's server.
    pub(crate) fn may_pay_from_server(
        &self,
        merchant: &Merchant,
        encrypt_cert_id: &str,
    ) -> Result<(), Refusal> {
        if !merchant.permissions.back_consume {
            return Err(refuse(
                RespCode::NoPermission,
                "the merchant may not pay with the card's data (backTransReq.do, txnType 01 and 77)",
            ));
        }
        if encrypt_cert_id != self.signer.encryption_certificate.cert_id() {
            return Err(refuse(
                RespCode::FormatError,
                "encryptCertId is not the platform's encryption certificate (txnType 95 gives it)",
            ));
        }
        Ok(())
    }

    /// The payer's input: the card, and the checks of `customerInfo` decrypted. A PIN block
    /// is formed with `card.pin_account`; an expiry kept with a token stands when the
    /// request gives none.
    fn open_payer(&self, info: &CustomerInfo, card: &OpenedCard) -> Result<PayRequest, Refusal> {
        let key = &self.signer.decryption_key;
        let sms_code = info
            .get("smsCode")
            .ok_or_else(|| refuse(RespCode::MissingField, "customerInfo has no smsCode"))?;
        let pin = match info.get("pin") {
            None => None,
            Some(sealed) => {
                let block = key.decrypt_base64(sealed).map_err(|_| {
                    refuse(
                        RespCode::FormatError,
                        "customerInfo.pin could not be decrypted with the platform's encryption key",
                    )
                })?;
                let block: [u8; 8] = block.as_slice().try_into().map_err(|_| {
                    refuse(
                        RespCode::FormatError,
                        "customerInfo.pin must be an 8-byte ISO 9564 format 0 PIN block",
                    )
                })?;
                let pin = format0_decode(&block, &card.pin_account).map_err(|_| {
                    refuse(
                        RespCode::FormatError,
                        "customerInfo.pin is not a format 0 PIN block of this card (or token)",
                    )
                })?;
                Some(pin.expose().to_owned())
            }
        };
        let customer = self.customer_fields(info)?;
        Ok(PayRequest {
            card_number: card.pan.expose().to_owned(),
            sms_code: sms_code.to_owned(),
            pin,
            cvn2: customer.cvn2.clone(),
            expiry: customer.expiry.clone().or_else(|| card.expiry.clone()),
            holder_name: customer.name.clone(),
            phone: customer.phone.clone(),
            id_number: customer.id_number.clone(),
        })
    }

    /// The holder's fields of `customerInfo`, those in `encryptedInfo` decrypted.
    pub(crate) fn customer_fields(&self, info: &CustomerInfo) -> Result<CustomerFields, Refusal> {
        let mut fields = CustomerFields {
            cvn2: info.get("cvn2").map(str::to_owned),
            expiry: info.get("expired").map(str::to_owned),
            phone: info.get("phoneNo").map(str::to_owned),
            name: info.get("customerNm").map(str::to_owned),
            // certifTp 01 is the ID card; another type's number is not compared with it.
            id_number: match info.get("certifTp") {
                None | Some("01") => info.get("certifId").map(str::to_owned),
                Some(_) => None,
            },
        };
        if let Some(sealed) = info.get("encryptedInfo") {
            let text = open_text(
                &self.signer.decryption_key,
                sealed,
                "customerInfo.encryptedInfo could not be decrypted with the platform's encryption key",
            )?;
            let sealed_fields = Form::parse_raw(&text).map_err(|_| {
                refuse(
                    RespCode::FormatError,
                    "customerInfo.encryptedInfo must be key=value&… once decrypted",
                )
            })?;
            if let Some(value) = sealed_fields.non_blank("cvn2") {
                fields.cvn2 = Some(value.to_owned());
            }
            if let Some(value) = sealed_fields.non_blank("expired") {
                fields.expiry = Some(value.to_owned());
            }
            if let Some(value) = sealed_fields.non_blank("phoneNo") {
                fields.phone = Some(value.to_owned());
            }
            if let Some(value) = sealed_fields.non_blank("certifId") {
                fields.id_number = Some(value.to_owned());
            }
        }
        Ok(fields)
    }

    /// The final answer: by the order's state, or by why the payment was not taken.
    fn back_consume_answer(
        &self,
        form: &Form,
        order: &OrderRow,
        error: Option<PayError>,
    ) -> String {
        let mut fields = Form::new();
        let (code, detail): (RespCode, String) = match (order.status.as_str(), error) {
            ("paid" | "partly_refunded" | "refunded" | "undoing" | "undone", _) => {
                fields.set("queryId", order.query_id.clone().unwrap_or_default());
                (RespCode::Success, String::new())
            }
            ("failed", _) => {
                let (code, detail) = trade_code(order.pay_response_code.as_deref().unwrap_or("05"));
                (code, detail.to_owned())
            }
            ("closed", _) => (
                RespCode::OriginalNotFoundOrBadState,
                "the order was closed unpaid at its payTimeout".to_owned(),
            ),
            (_, Some(error)) => (pay_error_code(&error), error.to_string()),
            _ => (
                RespCode::AcceptedQueryLater,
                "the issuer has not answered yet; query the order".to_owned(),
            ),
        };
        self.answer(Some(form), code, &detail, fields)
    }
}

/// The holder's fields a merchant's server sent (`customerInfo`, `encryptedInfo` opened);
/// wiped when dropped.
pub(crate) struct CustomerFields {
    pub(crate) cvn2: Option<String>,
    pub(crate) expiry: Option<String>,
    pub(crate) phone: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) id_number: Option<String>,
}

impl Drop for CustomerFields {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.cvn2.zeroize();
        self.expiry.zeroize();
        self.phone.zeroize();
        self.name.zeroize();
        self.id_number.zeroize();
    }
}

/// `txnSubType` as sent, before the request is read by its type.
fn header_sub_type(form: &Form) -> Option<&str> {
    form.non_blank("txnSubType")
}

/// The refusal of an SMS code that could not be sent.
pub(crate) fn sms_refusal(error: PayError) -> Refusal {
    let code = match error {
        PayError::SmsUnavailable => RespCode::IdentityOrPhone,
        _ => RespCode::RiskLimited,
    };
    refuse(code, error.to_string())
}

/// The UPACP code of a payment the checks stopped before the network.
pub(crate) fn pay_error_code(error: &PayError) -> RespCode {
    match error {
        PayError::WrongSmsCode(_)
        | PayError::SmsUnavailable
        | PayError::SmsNotSent
        | PayError::SmsExpired
        | PayError::SmsTooSoon(_)
        | PayError::TooManySmsCodes => RespCode::WrongSmsCode,
        PayError::BadCardNumber | PayError::UnknownCard => RespCode::InvalidCard,
        PayError::IdentityMismatch => RespCode::IdentityOrPhone,
        PayError::MissingInput(_) => RespCode::MissingField,
        PayError::BadInput(_) => RespCode::FormatError,
        PayError::TooManyTries => RespCode::RiskLimited,
        PayError::NotPayable(_) | PayError::TimedOut | PayError::UnknownTn => {
            RespCode::OriginalNotFoundOrBadState
        }
        PayError::NetworkNotReady | PayError::Unavailable | PayError::DiscountChanged => {
            RespCode::Busy
        }
    }
}

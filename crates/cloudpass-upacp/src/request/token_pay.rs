//! Token payment (无跳转支付, bizType 000902): a merchant opens a payer's card once
//! (txnType 79, with the card number, the SMS code and the holder's checks) and gets a token
//! it may keep; later consumes, their SMS codes and the token's deletion (txnType 74) name
//! the card by the token in `tokenPayData`, so the merchant never keeps the card number.
//!
//! `tokenPayData` is `{key=value&…}` like `reserved`: `trId` (the merchant's token
//! requestor id, 11 digits), and `tokenType` 01 when opening, `token` afterwards.

use super::{
    CustomerInfo, Header, Refusal, TxnType, alphanumeric, digits, expect_type, header, refuse,
    required,
};
use crate::code::RespCode;
use crate::form::Form;

/// The bizType of token payment.
pub const TOKEN_PAY_BIZ_TYPE: &str = "000902";
/// At most this many bytes of `tokenPayData`.
const MAX_TOKEN_PAY_DATA: usize = 512;

/// `tokenPayData` read: the requestor and, after the opening, the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPayData {
    /// `trId`, 11 digits.
    pub tr_id: String,
    /// `token`, 13 to 19 digits; none in an opening.
    pub token: Option<String>,
}

impl TokenPayData {
    pub fn parse(form: &Form) -> Result<TokenPayData, Refusal> {
        let malformed = || {
            refuse(
                RespCode::FormatError,
                "tokenPayData must be {trId=…&token=…} (or {trId=…&tokenType=01} to open)",
            )
        };
        let text = required(form, "tokenPayData")?;
        if text.len() > MAX_TOKEN_PAY_DATA {
            return Err(malformed());
        }
        let inner = text
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            .ok_or_else(malformed)?;
        let fields = Form::parse_raw(inner).map_err(|_| malformed())?;
        let tr_id = digits(&fields, "trId", 11..=11)
            .map_err(|refusal| named_in_token_pay_data(refusal, "trId"))?;
        let token = match fields.non_blank("token") {
            None => None,
            Some(_) => Some(
                digits(&fields, "token", 13..=19)
                    .map_err(|refusal| named_in_token_pay_data(refusal, "token"))?,
            ),
        };
        match fields.non_blank("tokenType") {
            None | Some("01") => {}
            Some(_) => {
                return Err(refuse(
                    RespCode::FormatError,
                    "tokenPayData.tokenType must be 01",
                ));
            }
        }
        Ok(TokenPayData { tr_id, token })
    }

    /// The token, which every request after the opening names.
    fn token_required(self) -> Result<(String, String), Refusal> {
        match self.token {
            Some(token) => Ok((token, self.tr_id)),
            None => Err(refuse(
                RespCode::MissingField,
                "tokenPayData.token is missing",
            )),
        }
    }
}

/// A refusal of a field inside `tokenPayData`, named as such.
fn named_in_token_pay_data(refusal: Refusal, key: &str) -> Refusal {
    Refusal {
        code: refusal.code,
        detail: refusal
            .detail
            .replacen(key, &format!("tokenPayData.{key}"), 1),
    }
}

/// How a request from the merchant's server names the card it pays with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardSource {
    /// `accNo`: base64 RSA to the platform's encryption certificate.
    AccNo(String),
    /// bizType 000902: a token the merchant opened, with its requestor id.
    Token { token: String, tr_id: String },
}

impl CardSource {
    /// `accNo`, or with bizType 000902 the token of `tokenPayData` (and no `accNo`: an
    /// opening is its own request, txnType 79).
    pub fn parse(form: &Form, header: &Header) -> Result<CardSource, Refusal> {
        if header.biz_type != TOKEN_PAY_BIZ_TYPE {
            return Ok(CardSource::AccNo(required(form, "accNo")?.to_owned()));
        }
        if form.non_blank("accNo").is_some() {
            return Err(refuse(
                RespCode::FormatError,
                "with bizType 000902 the card is named by tokenPayData.token, not accNo (open the card first, txnType 79)",
            ));
        }
        let (token, tr_id) = TokenPayData::parse(form)?.token_required()?;
        Ok(CardSource::Token { token, tr_id })
    }
}

fn expect_token_pay(header: &Header, sub_type: &str, what: &str) -> Result<(), Refusal> {
    if header.txn_sub_type != sub_type {
        return Err(refuse(
            RespCode::FormatError,
            format!("txnSubType must be {sub_type} ({what})"),
        ));
    }
    if header.biz_type != TOKEN_PAY_BIZ_TYPE {
        return Err(refuse(
            RespCode::FormatError,
            format!("bizType must be 000902 ({what})"),
        ));
    }
    Ok(())
}

/// The SMS code of an opening (txnType 77, txnSubType 00, bizType 000902): sent to the phone
/// of the card (`accNo`) for the opening that will come with the same `orderId` and
/// `txnTime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSms {
    pub header: Header,
    pub order_id: String,
    pub acc_no: String,
    pub encrypt_cert_id: String,
}

impl OpenSms {
    pub fn parse(form: &Form) -> Result<OpenSms, Refusal> {
        let header = header(form)?;
        expect_type(&header, &[TxnType::SmsCode])?;
        expect_token_pay(&header, "00", "the SMS code of an opening")?;
        Ok(OpenSms {
            order_id: alphanumeric(form, "orderId", 8..=40)?,
            acc_no: required(form, "accNo")?.to_owned(),
            encrypt_cert_id: digits(form, "encryptCertId", 1..=40)?,
            header,
        })
    }
}

/// An opening (txnType 79, txnSubType 00, bizType 000902): the card (`accNo`), the payer's
/// checks (`customerInfo`: `smsCode`, and the holder's name, phone or ID when the merchant
/// has them) and the requestor (`tokenPayData` `{trId=…&tokenType=01}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOpen {
    pub header: Header,
    pub order_id: String,
    pub acc_no: String,
    pub customer_info: CustomerInfo,
    pub encrypt_cert_id: String,
    pub tr_id: String,
}

impl TokenOpen {
    pub fn parse(form: &Form) -> Result<TokenOpen, Refusal> {
        let header = header(form)?;
        expect_type(&header, &[TxnType::OpenToken])?;
        expect_token_pay(&header, "00", "an opening for token payment")?;
        let data = TokenPayData::parse(form)?;
        if data.token.is_some() {
            return Err(refuse(
                RespCode::FormatError,
                "an opening names no token: tokenPayData is {trId=…&tokenType=01}",
            ));
        }
        Ok(TokenOpen {
            order_id: alphanumeric(form, "orderId", 8..=40)?,
            acc_no: required(form, "accNo")?.to_owned(),
            customer_info: CustomerInfo::parse(required(form, "customerInfo")?)?,
            encrypt_cert_id: digits(form, "encryptCertId", 1..=40)?,
            tr_id: data.tr_id,
            header,
        })
    }
}

/// A token's deletion (txnType 74, txnSubType 01, bizType 000902): the token and its
/// requestor in `tokenPayData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDelete {
    pub header: Header,
    pub order_id: String,
    pub token: String,
    pub tr_id: String,
}

impl TokenDelete {
    pub fn parse(form: &Form) -> Result<TokenDelete, Refusal> {
        let header = header(form)?;
        expect_type(&header, &[TxnType::DeleteToken])?;
        expect_token_pay(&header, "01", "a token's deletion")?;
        let (token, tr_id) = TokenPayData::parse(form)?.token_required()?;
        Ok(TokenDelete {
            order_id: alphanumeric(form, "orderId", 8..=40)?,
            token,
            tr_id,
            header,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(txn_type: &str, sub_type: &str) -> Form {
        Form::new()
            .with("version", "5.1.0")
            .with("encoding", "UTF-8")
            .with("signMethod", "01")
            .with("certId", "68759663125")
            .with("signature", "x")
            .with("txnType", txn_type)
            .with("txnSubType", sub_type)
            .with("bizType", "000902")
            .with("accessType", "0")
            .with("channelType", "07")
            .with("merId", "777290058110048")
            .with("orderId", "TOKEN0001")
            .with("txnTime", "20261204120000")
            .with("encryptCertId", "68759622183")
    }

    #[test]
    fn an_opening_takes_the_requestor_and_no_token() {
        let form = base("79", "00")
            .with("accNo", "c2VhbGVk")
            .with("customerInfo", "e3Ntc0NvZGU9MTExMTExfQ==")
            .with("tokenPayData", "{trId=62000000001&tokenType=01}");
        let open = TokenOpen::parse(&form).unwrap();
        assert_eq!(open.tr_id, "62000000001");
        assert_eq!(open.customer_info.get("smsCode"), Some("111111"));

        let with_token = form.clone().with(
            "tokenPayData",
            "{trId=62000000001&token=6299000000000000001}",
        );
        let refusal = TokenOpen::parse(&with_token).unwrap_err();
        assert_eq!(refusal.code, RespCode::FormatError);

        let wrong_type = form.with("tokenPayData", "{trId=62000000001&tokenType=02}");
        assert_eq!(
            TokenOpen::parse(&wrong_type).unwrap_err().detail,
            "tokenPayData.tokenType must be 01"
        );
    }

    #[test]
    fn token_pay_data_fields_are_named_when_wrong_and_never_echoed() {
        let form = base("74", "01").with("tokenPayData", "{trId=62000000001&token=12ab}");
        let refusal = TokenDelete::parse(&form).unwrap_err();
        assert_eq!(refusal.code, RespCode::FormatError);
        assert_eq!(refusal.detail, "tokenPayData.token must be 13 to 19 digits");
        assert!(!refusal.detail.contains("12ab"));

        let no_braces = base("74", "01").with("tokenPayData", "trId=62000000001");
        assert!(
            TokenDelete::parse(&no_braces)
                .unwrap_err()
                .detail
                .starts_with("tokenPayData must be")
        );

        let no_token = base("74", "01").with("tokenPayData", "{trId=62000000001}");
        assert_eq!(
            TokenDelete::parse(&no_token).unwrap_err().code,
            RespCode::MissingField
        );
        let short_tr_id =
            base("74", "01").with("tokenPayData", "{trId=6200&token=6299000000000000001}");
        assert_eq!(
            TokenDelete::parse(&short_tr_id).unwrap_err().detail,
            "tokenPayData.trId must be 11 to 11 digits"
        );
    }

    #[test]
    fn a_token_payment_names_its_card_by_token_and_not_by_number() {
        let form = base("01", "01").with(
            "tokenPayData",
            "{trId=62000000001&token=6299000000000000001}",
        );
        let header = header(&form).unwrap();
        assert_eq!(
            CardSource::parse(&form, &header).unwrap(),
            CardSource::Token {
                token: "6299000000000000001".into(),
                tr_id: "62000000001".into()
            }
        );
        let both = form.with("accNo", "c2VhbGVk");
        assert_eq!(
            CardSource::parse(&both, &header).unwrap_err().code,
            RespCode::FormatError
        );
        let by_number = base("01", "01")
            .with("bizType", "000301")
            .with("accNo", "c2VhbGVk");
        let header = super::header(&by_number).unwrap();
        assert_eq!(
            CardSource::parse(&by_number, &header).unwrap(),
            CardSource::AccNo("c2VhbGVk".into())
        );
    }

    #[test]
    fn the_sms_code_of_an_opening_is_sub_type_00_of_biz_type_000902() {
        let form = base("77", "00").with("accNo", "c2VhbGVk");
        assert_eq!(OpenSms::parse(&form).unwrap().order_id, "TOKEN0001");
        let other_biz = form.with("bizType", "000201");
        assert_eq!(
            OpenSms::parse(&other_biz).unwrap_err().detail,
            "bizType must be 000902 (the SMS code of an opening)"
        );
    }
}

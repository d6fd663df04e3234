//! A merchant's request read once into what it asks for: the common header, then the fields
//! of its transaction type. Everything that is malformed or missing is refused here with the
//! `respCode` UPACP gives it (10 format, 13 missing) and a detail that names the field, never
//! its value. What needs the clock, the merchant's record or the order book (is `txnTime`
//! near now? is the merchant allowed? does the order exist?) is the gateway's.

use crate::code::RespCode;
use crate::form::Form;
use crate::signing::{SignMethod, Version};
use crate::time::parse_beijing;

/// A refused request: the code and what exactly is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {detail}", code.code())]
pub struct Refusal {
    pub code: RespCode,
    pub detail: String,
}

fn refuse(code: RespCode, detail: impl Into<String>) -> Refusal {
    Refusal {
        code,
        detail: detail.into(),
    }
}

/// `txnType`s the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnType {
    Query,
    Consume,
    Refund,
    Undo,
    FileTransfer,
    EncryptCertificate,
}

impl TxnType {
    pub fn parse(code: &str) -> Option<TxnType> {
        Some(match code {
            "00" => TxnType::Query,
            "01" => TxnType::Consume,
            "04" => TxnType::Refund,
            "31" => TxnType::Undo,
            "76" => TxnType::FileTransfer,
            "95" => TxnType::EncryptCertificate,
            _ => return None,
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            TxnType::Query => "00",
            TxnType::Consume => "01",
            TxnType::Refund => "04",
            TxnType::Undo => "31",
            TxnType::FileTransfer => "76",
            TxnType::EncryptCertificate => "95",
        }
    }
}

/// `accessType` with what each kind of access must say about the merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// 0: the merchant itself.
    Merchant,
    /// 1: an acquiring institution on a merchant's behalf.
    Acquirer {
        acq_ins_code: String,
        mer_cat_code: String,
        mer_name: String,
        mer_abbr: String,
    },
    /// 2: a platform merchant for one of its sub-merchants.
    Platform {
        sub_mer_id: String,
        sub_mer_name: String,
        sub_mer_abbr: String,
    },
}

/// `channelType`: where the payer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// 07: internet, a PC browser.
    Pc,
    /// 08: a phone.
    Mobile,
}

/// What every request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub sign_method: SignMethod,
    pub txn_type: TxnType,
    pub txn_sub_type: String,
    pub biz_type: String,
    pub access: Access,
    pub mer_id: String,
    /// `txnTime` as sent (the key of an order with `orderId`) and as unix seconds.
    pub txn_time_text: String,
    pub txn_time: i64,
    pub req_reserved: Option<String>,
    pub reserved: Option<String>,
}

/// A consume (txnType 01): the order a TN will stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consume {
    pub header: Header,
    pub order_id: String,
    /// `txnAmt`, fen.
    pub amount: u64,
    pub channel: Channel,
    pub back_url: String,
    pub front_url: Option<String>,
    /// `payTimeout` as unix seconds, when given.
    pub pay_timeout: Option<i64>,
    pub order_desc: Option<String>,
}

/// An undo (31) or refund (04) of a paid consume named by its `queryId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Return {
    pub header: Header,
    pub order_id: String,
    pub amount: u64,
    pub orig_qry_id: String,
    pub back_url: String,
}

/// A query (00) of the trade `orderId` + `txnTime` (the header's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub header: Header,
    pub order_id: String,
}

/// A file transfer (76): the merchant's reconciliation file of one clearing day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTransfer {
    pub header: Header,
    /// `settleDate`, MMDD.
    pub settle_month: u8,
    pub settle_day: u8,
}

impl FileTransfer {
    pub fn parse(form: &Form) -> Result<FileTransfer, Refusal> {
        let header = header(form)?;
        expect_type(&header, &[TxnType::FileTransfer])?;
        let date = digits(form, "settleDate", 4..=4)?;
        let month = date[..2]
            .parse::<u8>()
            .ok()
            .filter(|m| (1..=12).contains(m));
        let day = date[2..]
            .parse::<u8>()
            .ok()
            .filter(|d| (1..=31).contains(d));
        let (Some(settle_month), Some(settle_day)) = (month, day) else {
            return Err(refuse(RespCode::FormatError, "settleDate must be MMDD"));
        };
        match form.non_blank("fileType") {
            None | Some("00") => {}
            Some(_) => return Err(refuse(RespCode::FormatError, "fileType must be 00")),
        }
        Ok(FileTransfer {
            header,
            settle_month,
            settle_day,
        })
    }
}

/// The longest `reqReserved` UPACP passes through.
pub const MAX_REQ_RESERVED: usize = 1_024;
/// The longest URL we call back.
pub const MAX_URL: usize = 512;

fn required<'f>(form: &'f Form, key: &str) -> Result<&'f str, Refusal> {
    form.non_blank(key)
        .ok_or_else(|| refuse(RespCode::MissingField, format!("{key} is missing")))
}

fn digits(
    form: &Form,
    key: &str,
    lengths: std::ops::RangeInclusive<usize>,
) -> Result<String, Refusal> {
    let value = required(form, key)?;
    if !lengths.contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse(
            RespCode::FormatError,
            format!(
                "{key} must be {} to {} digits",
                lengths.start(),
                lengths.end()
            ),
        ));
    }
    Ok(value.to_owned())
}

fn alphanumeric(
    form: &Form,
    key: &str,
    lengths: std::ops::RangeInclusive<usize>,
) -> Result<String, Refusal> {
    let value = required(form, key)?;
    if !lengths.contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(refuse(
            RespCode::FormatError,
            format!(
                "{key} must be {} to {} letters or digits",
                lengths.start(),
                lengths.end()
            ),
        ));
    }
    Ok(value.to_owned())
}

fn optional_text(form: &Form, key: &str, max: usize) -> Result<Option<String>, Refusal> {
    match form.non_blank(key) {
        None => Ok(None),
        Some(value) if value.len() > max => Err(refuse(
            RespCode::FormatError,
            format!("{key} is longer than {max} bytes"),
        )),
        Some(value) => Ok(Some(value.to_owned())),
    }
}

fn url(form: &Form, key: &str) -> Result<String, Refusal> {
    let value = required(form, key)?;
    parse_url(key, value)
}

fn parse_url(key: &str, value: &str) -> Result<String, Refusal> {
    let scheme_ok = value.starts_with("http://") || value.starts_with("https://");
    if !scheme_ok
        || value.len() > MAX_URL
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(refuse(
            RespCode::FormatError,
            format!("{key} must be an http or https URL of at most {MAX_URL} characters"),
        ));
    }
    Ok(value.to_owned())
}

fn amount(form: &Form) -> Result<u64, Refusal> {
    let text = required(form, "txnAmt")?;
    let amount = (text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .filter(|amount| *amount > 0);
    amount.ok_or_else(|| {
        refuse(
            RespCode::FormatError,
            "txnAmt must be a whole number of fen from 1 to 12 digits",
        )
    })
}

fn currency(form: &Form) -> Result<(), Refusal> {
    if required(form, "currencyCode")? != "156" {
        return Err(refuse(
            RespCode::FormatError,
            "currencyCode must be 156 (CNY)",
        ));
    }
    Ok(())
}

fn beijing_time(form: &Form, key: &str) -> Result<(String, i64), Refusal> {
    let text = required(form, key)?;
    let at = parse_beijing(text).ok_or_else(|| {
        refuse(
            RespCode::FormatError,
            format!("{key} must be yyyyMMddHHmmss, Beijing time"),
        )
    })?;
    Ok((text.to_owned(), at))
}

fn access(form: &Form) -> Result<Access, Refusal> {
    let text = |key| {
        optional_text(form, key, 256).and_then(|v| {
            v.ok_or_else(|| refuse(RespCode::MissingField, format!("{key} is missing")))
        })
    };
    match required(form, "accessType")? {
        "0" => Ok(Access::Merchant),
        "1" => Ok(Access::Acquirer {
            acq_ins_code: text("acqInsCode")?,
            mer_cat_code: digits(form, "merCatCode", 4..=4)?,
            mer_name: text("merName")?,
            mer_abbr: text("merAbbr")?,
        }),
        "2" => Ok(Access::Platform {
            sub_mer_id: alphanumeric(form, "subMerId", 1..=30)?,
            sub_mer_name: text("subMerName")?,
            sub_mer_abbr: text("subMerAbbr")?,
        }),
        _ => Err(refuse(
            RespCode::FormatError,
            "accessType must be 0, 1 or 2",
        )),
    }
}

/// The common header of any request.
pub fn header(form: &Form) -> Result<Header, Refusal> {
    let version = Version::parse(required(form, "version")?)
        .ok_or_else(|| refuse(RespCode::FormatError, "version must be 5.1.0 or 5.0.0"))?;
    if !required(form, "encoding")?.eq_ignore_ascii_case("UTF-8") {
        return Err(refuse(RespCode::FormatError, "encoding must be UTF-8"));
    }
    let sign_method = SignMethod::parse(required(form, "signMethod")?)
        .ok_or_else(|| refuse(RespCode::FormatError, "signMethod must be 01, 11 or 12"))?;
    if sign_method == SignMethod::Rsa {
        digits(form, "certId", 1..=40)?;
    }
    required(form, "signature")?;
    let txn_type = TxnType::parse(required(form, "txnType")?).ok_or_else(|| {
        refuse(
            RespCode::NoPermission,
            "txnType is not one the gateway offers",
        )
    })?;
    let (txn_time_text, txn_time) = beijing_time(form, "txnTime")?;
    Ok(Header {
        version,
        sign_method,
        txn_type,
        txn_sub_type: digits(form, "txnSubType", 2..=2)?,
        biz_type: digits(form, "bizType", 6..=6)?,
        access: access(form)?,
        mer_id: alphanumeric(form, "merId", 15..=15)?,
        txn_time_text,
        txn_time,
        req_reserved: optional_text(form, "reqReserved", MAX_REQ_RESERVED)?,
        reserved: optional_text(form, "reserved", 2_048)?,
    })
}

fn expect_type(header: &Header, expected: &[TxnType]) -> Result<(), Refusal> {
    if expected.contains(&header.txn_type) {
        Ok(())
    } else {
        Err(refuse(
            RespCode::NoPermission,
            "this endpoint does not take that txnType",
        ))
    }
}

impl Consume {
    pub fn parse(form: &Form) -> Result<Consume, Refusal> {
        let header = header(form)?;
        expect_type(&header, &[TxnType::Consume])?;
        currency(form)?;
        let channel = match required(form, "channelType")? {
            "07" => Channel::Pc,
            "08" => Channel::Mobile,
            _ => {
                return Err(refuse(
                    RespCode::FormatError,
                    "channelType must be 07 or 08",
                ));
            }
        };
        let front_url = match form.non_blank("frontUrl") {
            Some(value) => Some(parse_url("frontUrl", value)?),
            None => None,
        };
        let pay_timeout = match form.non_blank("payTimeout") {
            Some(_) => Some(beijing_time(form, "payTimeout")?.1),
            None => None,
        };
        Ok(Consume {
            order_id: alphanumeric(form, "orderId", 8..=40)?,
            amount: amount(form)?,
            channel,
            back_url: url(form, "backUrl")?,
            front_url,
            pay_timeout,
            order_desc: optional_text(form, "orderDesc", 256)?,
            header,
        })
    }
}

impl Return {
    pub fn parse(form: &Form) -> Result<Return, Refusal> {
        let header = header(form)?;
        expect_type(&header, &[TxnType::Undo, TxnType::Refund])?;
        currency(form)?;
        Ok(Return {
            order_id: alphanumeric(form, "orderId", 8..=40)?,
            amount: amount(form)?,
            orig_qry_id: digits(form, "origQryId", 21..=21)?,
            back_url: url(form, "backUrl")?,
            header,
        })
    }
}

impl Query {
    pub fn parse(form: &Form) -> Result<Query, Refusal> {
        let header = header(form)?;
        expect_type(&header, &[TxnType::Query])?;
        Ok(Query {
            order_id: alphanumeric(form, "orderId", 8..=40)?,
            header,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consume() -> Form {
        Form::parse_raw(
            "version=5.1.0&encoding=UTF-8&certId=68759663125&signature=x&signMethod=01&txnType=01&txnSubType=01&bizType=000201&channelType=08&accessType=0&merId=777290058110048&orderId=20261202001&txnTime=20261202120000&txnAmt=100&currencyCode=156&backUrl=https://merchant.example/notify&payTimeout=20261202121500&reqReserved={a=b}",
        )
        .unwrap()
    }

    #[test]
    fn a_consume_parses_into_its_values() {
        let request = Consume::parse(&consume()).unwrap();
        assert_eq!(request.amount, 100);
        assert_eq!(request.channel, Channel::Mobile);
        assert_eq!(request.header.mer_id, "777290058110048");
        assert_eq!(request.header.access, Access::Merchant);
        assert_eq!(request.pay_timeout, Some(request.header.txn_time + 15 * 60));
        assert_eq!(request.header.req_reserved.as_deref(), Some("{a=b}"));
    }

    #[test]
    fn each_fault_gets_its_code_and_names_the_field_not_the_value() {
        let cases: &[(&str, Option<&str>, RespCode, &str)] = &[
            (
                "orderId",
                None,
                RespCode::MissingField,
                "orderId is missing",
            ),
            (
                "orderId",
                Some("ab-12345"),
                RespCode::FormatError,
                "orderId must be",
            ),
            (
                "txnAmt",
                Some("1.00"),
                RespCode::FormatError,
                "txnAmt must be",
            ),
            ("txnAmt", Some("0"), RespCode::FormatError, "txnAmt must be"),
            (
                "currencyCode",
                Some("840"),
                RespCode::FormatError,
                "currencyCode must be 156",
            ),
            (
                "txnTime",
                Some("20261302120000"),
                RespCode::FormatError,
                "txnTime must be",
            ),
            (
                "channelType",
                Some("05"),
                RespCode::FormatError,
                "channelType",
            ),
            (
                "backUrl",
                Some("ftp://x"),
                RespCode::FormatError,
                "backUrl must be",
            ),
            ("version", Some("4.0.0"), RespCode::FormatError, "version"),
            (
                "signature",
                None,
                RespCode::MissingField,
                "signature is missing",
            ),
            ("certId", None, RespCode::MissingField, "certId is missing"),
            ("txnType", Some("02"), RespCode::NoPermission, "txnType"),
            (
                "accessType",
                Some("1"),
                RespCode::MissingField,
                "acqInsCode is missing",
            ),
            (
                "merId",
                Some("6212345678901232"),
                RespCode::FormatError,
                "merId must be",
            ),
        ];
        for (key, value, code, detail) in cases {
            let mut form = consume();
            match value {
                Some(value) => form.set(key, *value),
                None => {
                    form.remove(key);
                    &mut form
                }
            };
            let refusal = Consume::parse(&form).unwrap_err();
            assert_eq!(refusal.code, *code, "{key}: {refusal:?}");
            assert!(refusal.detail.starts_with(detail), "{key}: {refusal:?}");
            if let Some(value) = value {
                assert!(!refusal.detail.contains(value), "{key} echoed");
            }
        }
        let mut long = consume();
        long.set("reqReserved", "x".repeat(MAX_REQ_RESERVED + 1));
        assert_eq!(
            Consume::parse(&long).unwrap_err().code,
            RespCode::FormatError
        );
    }

    #[test]
    fn returns_and_queries_take_their_own_types() {
        let mut refund = consume();
        refund
            .set("txnType", "04")
            .set("txnSubType", "00")
            .set("origQryId", "611854042060710157601");
        let parsed = Return::parse(&refund).unwrap();
        assert_eq!(parsed.header.txn_type, TxnType::Refund);
        assert_eq!(
            Consume::parse(&refund).unwrap_err().code,
            RespCode::NoPermission
        );
        refund.set("origQryId", "123");
        assert_eq!(
            Return::parse(&refund).unwrap_err().code,
            RespCode::FormatError
        );
        let mut query = consume();
        query
            .set("txnType", "00")
            .set("txnSubType", "00")
            .set("bizType", "000000");
        assert_eq!(Query::parse(&query).unwrap().order_id, "20261202001");
    }
}

//! A merchant's request read once into what it asks for: the common header, then the fields
//! of its transaction type. Everything that is malformed or missing is refused here with the
//! `respCode` UPACP gives it (10 format, 13 missing) and a detail that names the field, never
//! its value. What needs the clock, the merchant's record or the order book (is `txnTime`
//! near now? is the merchant allowed? does the order exist?) is the gateway's.

use crate::code::RespCode;
use crate::form::Form;
use crate::signing::{SignMethod, Version};
use crate::time::parse_beijing;

mod token_pay;
pub use token_pay::{
    CardSource, OpenSms, TOKEN_PAY_BIZ_TYPE, TokenDelete, TokenOpen, TokenPayData,
};

/// A refused request: the code and what exactly is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {detail}", code.code())]
pub struct Refusal {
    pub code: RespCode,
    pub detail: String,
}

/// A refusal with `code` and what exactly is wrong (never the value refused).
pub fn refuse(code: RespCode, detail: impl Into<String>) -> Refusal {
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
    /// 77: an SMS code sent to the card's phone, for a back consume or a token opening to
    /// come.
    SmsCode,
    /// 79: a card opened for token payment (开通), its token returned.
    OpenToken,
    /// 74: a token deleted (删除标记).
    DeleteToken,
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
            "77" => TxnType::SmsCode,
            "79" => TxnType::OpenToken,
            "74" => TxnType::DeleteToken,
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
            TxnType::SmsCode => "77",
            TxnType::OpenToken => "79",
            TxnType::DeleteToken => "74",
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

impl Header {
    /// What a notification about this request's trade repeats of it: `bizType`,
    /// `accessType` and the merchant fields its access type carries (an acquirer's
    /// `acqInsCode`, `merCatCode`, `merName`, `merAbbr`; a platform's `subMerId`,
    /// `subMerName`, `subMerAbbr`), so the merchant can route it as it routed the request.
    pub fn echo(&self) -> Form {
        let mut form = Form::new().with("bizType", self.biz_type.clone());
        match &self.access {
            Access::Merchant => {
                form.set("accessType", "0");
            }
            Access::Acquirer {
                acq_ins_code,
                mer_cat_code,
                mer_name,
                mer_abbr,
            } => {
                form.set("accessType", "1")
                    .set("acqInsCode", acq_ins_code.clone())
                    .set("merCatCode", mer_cat_code.clone())
                    .set("merName", mer_name.clone())
                    .set("merAbbr", mer_abbr.clone());
            }
            Access::Platform {
                sub_mer_id,
                sub_mer_name,
                sub_mer_abbr,
            } => {
                form.set("accessType", "2")
                    .set("subMerId", sub_mer_id.clone())
                    .set("subMerName", sub_mer_name.clone())
                    .set("subMerAbbr", sub_mer_abbr.clone());
            }
        }
        form
    }
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

/// A consume paid at once from the merchant's server (`backTransReq.do`, txnType 01, the
/// "no redirect" payment): the order as a [`Consume`], the card number (`accNo`) and the
/// payer's checks (`customerInfo`) as the merchant sent them. The encrypted values stay
/// sealed here; the gateway holds the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackConsume {
    pub consume: Consume,
    /// The card: `accNo`, or with bizType 000902 the token of `tokenPayData`.
    pub card: CardSource,
    pub customer_info: CustomerInfo,
    /// `encryptCertId`: the decimal serial of the certificate the fields are encrypted to.
    pub encrypt_cert_id: String,
}

/// `customerInfo`: base64 of `{key=value&…}` with `smsCode`, and `pin` (base64 RSA of the
/// ISO 9564 format 0 PIN block) or `encryptedInfo` (base64 RSA of `cvn2=…&expired=YYMM…`);
/// `cvn2` and `expired` may also come in clear. Its Debug output shows the keys only.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomerInfo {
    fields: Form,
}

impl std::fmt::Debug for CustomerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.fields.iter().map(|(key, _)| key).collect();
        f.debug_struct("CustomerInfo").field("keys", &keys).finish()
    }
}

/// At most this many bytes of `customerInfo`.
const MAX_CUSTOMER_INFO: usize = 4_096;

impl CustomerInfo {
    pub fn parse(text: &str) -> Result<CustomerInfo, Refusal> {
        use base64::Engine;
        let malformed = || {
            refuse(
                RespCode::FormatError,
                "customerInfo must be base64 of {key=value&…}",
            )
        };
        if text.len() > MAX_CUSTOMER_INFO {
            return Err(malformed());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| malformed())?;
        let text = String::from_utf8(bytes).map_err(|_| malformed())?;
        let inner = text
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            .ok_or_else(malformed)?;
        let fields = Form::parse_raw(inner).map_err(|_| malformed())?;
        Ok(CustomerInfo { fields })
    }

    /// A field, when given and not blank.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.non_blank(key)
    }
}

impl BackConsume {
    pub fn parse(form: &Form) -> Result<BackConsume, Refusal> {
        let consume = Consume::parse(form)?;
        Ok(BackConsume {
            card: CardSource::parse(form, &consume.header)?,
            customer_info: CustomerInfo::parse(required(form, "customerInfo")?)?,
            encrypt_cert_id: digits(form, "encryptCertId", 1..=40)?,
            consume,
        })
    }
}

/// A consume's SMS code (`backTransReq.do`, txnType 77, txnSubType 02): sent to the phone of
/// the card (`accNo`, encrypted as a back consume's, or a token) for the order the back
/// consume will make (`orderId`, `txnTime`, `txnAmt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeSms {
    pub header: Header,
    pub order_id: String,
    /// `txnAmt`, fen.
    pub amount: u64,
    /// The card: `accNo`, or with bizType 000902 the token of `tokenPayData`.
    pub card: CardSource,
    pub encrypt_cert_id: String,
}

impl ConsumeSms {
    pub fn parse(form: &Form) -> Result<ConsumeSms, Refusal> {
        let header = header(form)?;
        expect_type(&header, &[TxnType::SmsCode])?;
        if header.txn_sub_type != "02" {
            return Err(refuse(
                RespCode::FormatError,
                "txnSubType must be 02 (the SMS code of a consume)",
            ));
        }
        currency(form)?;
        Ok(ConsumeSms {
            order_id: alphanumeric(form, "orderId", 8..=40)?,
            amount: amount(form)?,
            card: CardSource::parse(form, &header)?,
            encrypt_cert_id: digits(form, "encryptCertId", 1..=40)?,
            header,
        })
    }
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

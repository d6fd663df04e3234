//! UPACP `respCode`s (reference/upacp.md §4) and the `respMsg` that goes with each: the
//! code's standard phrase, then what exactly is wrong — never the value that was refused.

/// A `respCode`, with its standard phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RespCode {
    Success,
    Failed,
    SystemNotOpen,
    Timeout,
    StatusUnknown,
    AcceptedQueryLater,
    Busy,
    FormatError,
    BadSignature,
    Duplicate,
    MissingField,
    NotApproved,
    MerchantStatus,
    NoPermission,
    AmountLimit,
    NoSuchTransaction,
    OriginalNotFoundOrBadState,
    OriginalMismatch,
    QueryTooOften,
    RiskLimited,
    PaidAfterTimeout,
    AlreadyReturned,
    IssuerFailed,
    InvalidCard,
    CardStatus,
    InsufficientFunds,
    PinExpiryOrCvn2,
    IdentityOrPhone,
    WrongSmsCode,
    ExpiredCard,
    IssuerProcessing,
    NoFile,
    GeneralError,
    DefectiveSuccess,
}

const TABLE: &[(RespCode, &str, &str)] = &[
    (RespCode::Success, "00", "成功"),
    (RespCode::Failed, "01", "交易失败"),
    (RespCode::SystemNotOpen, "02", "系统未开放"),
    (RespCode::Timeout, "03", "交易通讯超时，请发起查询交易"),
    (RespCode::StatusUnknown, "04", "交易状态未明"),
    (RespCode::AcceptedQueryLater, "05", "交易已受理，请稍后查询"),
    (RespCode::Busy, "06", "系统繁忙"),
    (RespCode::FormatError, "10", "报文格式错误"),
    (RespCode::BadSignature, "11", "验证签名失败"),
    (RespCode::Duplicate, "12", "重复交易"),
    (RespCode::MissingField, "13", "要素缺失"),
    (RespCode::NotApproved, "30", "交易未通过"),
    (RespCode::MerchantStatus, "31", "商户状态不正确"),
    (RespCode::NoPermission, "32", "无此交易权限"),
    (RespCode::AmountLimit, "33", "金额超限"),
    (RespCode::NoSuchTransaction, "34", "查无此交易"),
    (
        RespCode::OriginalNotFoundOrBadState,
        "35",
        "原交易不存在或状态不正确",
    ),
    (RespCode::OriginalMismatch, "36", "与原交易信息不符"),
    (RespCode::QueryTooOften, "37", "查询过于频繁"),
    (RespCode::RiskLimited, "38", "风险受限"),
    (RespCode::PaidAfterTimeout, "42", "扣款成功但超过支付时间"),
    (RespCode::AlreadyReturned, "45", "原交易已退货/撤销"),
    (RespCode::IssuerFailed, "60", "发卡行失败"),
    (RespCode::InvalidCard, "61", "卡号无效"),
    (RespCode::CardStatus, "63", "卡状态不正确"),
    (RespCode::InsufficientFunds, "64", "余额不足"),
    (RespCode::PinExpiryOrCvn2, "65", "密码/有效期/CVN2错"),
    (RespCode::IdentityOrPhone, "66", "身份或手机号错"),
    (RespCode::WrongSmsCode, "71", "短信码错"),
    (RespCode::ExpiredCard, "73", "卡过期"),
    (RespCode::IssuerProcessing, "83", "发卡行处理中"),
    (RespCode::NoFile, "98", "文件不存在"),
    (RespCode::GeneralError, "99", "通用错误"),
    (RespCode::DefectiveSuccess, "A6", "有缺陷的成功"),
];

impl RespCode {
    pub const ALL: &'static [RespCode] = &[
        RespCode::Success,
        RespCode::Failed,
        RespCode::SystemNotOpen,
        RespCode::Timeout,
        RespCode::StatusUnknown,
        RespCode::AcceptedQueryLater,
        RespCode::Busy,
        RespCode::FormatError,
        RespCode::BadSignature,
        RespCode::Duplicate,
        RespCode::MissingField,
        RespCode::NotApproved,
        RespCode::MerchantStatus,
        RespCode::NoPermission,
        RespCode::AmountLimit,
        RespCode::NoSuchTransaction,
        RespCode::OriginalNotFoundOrBadState,
        RespCode::OriginalMismatch,
        RespCode::QueryTooOften,
        RespCode::RiskLimited,
        RespCode::PaidAfterTimeout,
        RespCode::AlreadyReturned,
        RespCode::IssuerFailed,
        RespCode::InvalidCard,
        RespCode::CardStatus,
        RespCode::InsufficientFunds,
        RespCode::PinExpiryOrCvn2,
        RespCode::IdentityOrPhone,
        RespCode::WrongSmsCode,
        RespCode::ExpiredCard,
        RespCode::IssuerProcessing,
        RespCode::NoFile,
        RespCode::GeneralError,
        RespCode::DefectiveSuccess,
    ];

    fn row(self) -> (&'static str, &'static str) {
        TABLE
            .iter()
            .find(|(code, _, _)| *code == self)
            .map(|(_, code, phrase)| (*code, *phrase))
            .unwrap_or(("99", "通用错误"))
    }

    pub fn code(self) -> &'static str {
        self.row().0
    }

    /// The standard phrase (`成功`, `验证签名失败`, …).
    pub fn phrase(self) -> &'static str {
        self.row().1
    }

    pub fn parse(code: &str) -> Option<RespCode> {
        TABLE
            .iter()
            .find(|(_, c, _)| *c == code)
            .map(|(r, _, _)| *r)
    }

    /// A final success: 00, and A6 (defective success, which every official SDK treats as
    /// success).
    pub fn is_success(self) -> bool {
        matches!(self, RespCode::Success | RespCode::DefectiveSuccess)
    }

    /// The trade may yet succeed: ask again later (03, 04, 05).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            RespCode::Timeout | RespCode::StatusUnknown | RespCode::AcceptedQueryLater
        )
    }
}

/// `respMsg`: `成功[0000000]` for a success, as UnionPay writes it; otherwise the phrase and
/// what exactly is wrong, `报文格式错误[txnAmt must be a whole number of fen]`.
pub fn resp_msg(code: RespCode, detail: &str) -> String {
    if code == RespCode::Success {
        return "成功[0000000]".to_owned();
    }
    format!("{}[{detail}]", code.phrase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_and_is_in_the_table_once() {
        assert_eq!(RespCode::ALL.len(), TABLE.len());
        for code in RespCode::ALL {
            assert_eq!(RespCode::parse(code.code()), Some(*code));
        }
        assert_eq!(RespCode::parse("ZZ"), None);
        assert!(RespCode::DefectiveSuccess.is_success());
        assert!(RespCode::AcceptedQueryLater.is_pending() && !RespCode::Failed.is_pending());
        assert_eq!(resp_msg(RespCode::Success, "ignored"), "成功[0000000]");
        assert_eq!(
            resp_msg(RespCode::MissingField, "orderId is missing"),
            "要素缺失[orderId is missing]"
        );
    }
}

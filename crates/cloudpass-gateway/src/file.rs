//! File transfer (txnType 76): a merchant's reconciliation file for one clearing day
//! (`settleDate`, MMDD; the clearing day runs 23:00 to 23:00 Beijing time). One line per
//! consume, undo and refund that succeeded that day, fields separated by `|`:
//!
//! ```text
//! queryId|txnType|orderId|txnTime|txnAmt|currencyCode|settleDate|traceNo|traceTime|accNo|origQryId|discount
//! ```
//!
//! `txnType` is 01 (consume: money to the merchant), 31 (undo) or 04 (refund: money back to
//! the card); `accNo` is masked; `origQryId` is empty for a consume; `discount` is the part
//! of `txnAmt` a campaign's sponsor paid (or got back), 0 without one. The file is sent as
//! `fileContent` = base64(zlib deflate(UTF-8 text)), as UnionPay's SDKs read it.

use std::io::Write;

use base64::Engine;
use cloudpass_core::clock::{civil_from_days, days_from_civil};
use cloudpass_core::order::clearing_day;
use cloudpass_store::{GatewayStore, OrderRow};
use cloudpass_upacp::Form;
use cloudpass_upacp::code::RespCode;
use cloudpass_upacp::request::{FileTransfer, Refusal, refuse};

use crate::Gateway;
use crate::certification::Case;
use crate::consume::store_failure;

const DAY_SECONDS: i64 = 86_400;
/// A clearing day D starts at 23:00 Beijing on the calendar day before D: 15:00 UTC.
const CLEARING_START_OFFSET_SECONDS: i64 = 9 * 3_600;

/// The most recent clearing day, up to `today`, whose month and day are `month`/`day`.
fn settle_day(today: i64, month: u8, day: u8) -> Option<i64> {
    let (year, _, _) = civil_from_days(today);
    [year, year - 1].into_iter().find_map(|year| {
        let candidate = days_from_civil(year, month, day);
        (civil_from_days(candidate) == (year, month, day) && candidate <= today)
            .then_some(candidate)
    })
}

impl Gateway {
    pub(crate) async fn file_transfer(&self, form: &Form) -> Result<String, Refusal> {
        let request = FileTransfer::parse(form)?;
        let today = clearing_day(self.merchant_now_seconds(&request.header.mer_id));
        let day = settle_day(today, request.settle_month, request.settle_day).ok_or_else(|| {
            refuse(
                RespCode::FormatError,
                "settleDate must be a clearing day of the past year",
            )
        })?;
        let from = (day * DAY_SECONDS - CLEARING_START_OFFSET_SECONDS) * 1_000;
        let to = from + DAY_SECONDS * 1_000;
        let trades = self
            .store
            .succeeded_between(&request.header.mer_id, from, to)
            .await
            .map_err(store_failure)?;
        if trades.is_empty() {
            return Err(refuse(
                RespCode::NoFile,
                "no trade of this merchant succeeded on that settleDate",
            ));
        }
        let mut originals = std::collections::HashMap::new();
        for trade in trades.iter().filter(|t| t.kind != "consume") {
            if let Some(tn) = &trade.original_tn
                && let Ok(Some(original)) = self.store.order_by_tn(tn).await
            {
                originals.insert(tn.clone(), original.query_id.unwrap_or_default());
            }
        }
        let settle_date = format!("{:02}{:02}", request.settle_month, request.settle_day);
        let text: String = trades
            .iter()
            .map(|trade| line(trade, &settle_date, &originals))
            .collect();
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        let compressed = encoder
            .write_all(text.as_bytes())
            .and_then(|()| encoder.finish())
            .map_err(|_| refuse(RespCode::GeneralError, "the file could not be compressed"))?;
        let fields = Form::new()
            .with("settleDate", settle_date.clone())
            .with("fileType", "00")
            .with(
                "fileName",
                format!("{}_{settle_date}_cloudpass.txt", request.header.mer_id),
            )
            .with(
                "fileContent",
                base64::engine::general_purpose::STANDARD.encode(compressed),
            );
        self.certify(&request.header.mer_id, Case::ReconciliationDownloaded)
            .await;
        Ok(self.answer(Some(form), RespCode::Success, "", fields))
    }
}

fn line(
    trade: &OrderRow,
    settle_date: &str,
    originals: &std::collections::HashMap<String, String>,
) -> String {
    let txn_type = match trade.kind.as_str() {
        "undo" => "31",
        "refund" => "04",
        _ => "01",
    };
    let original = trade
        .original_tn
        .as_ref()
        .and_then(|tn| originals.get(tn))
        .cloned()
        .unwrap_or_default();
    format!(
        "{}|{txn_type}|{}|{}|{}|{:03}|{settle_date}|{}|{}|{}|{original}|{}\n",
        trade.query_id.clone().unwrap_or_default(),
        trade.order_id,
        trade.txn_time,
        trade.amount,
        trade.currency,
        trade.auth_stan.clone().unwrap_or_default(),
        trade.auth_transmission_time.clone().unwrap_or_default(),
        trade.pay_card_masked.clone().unwrap_or_default(),
        trade.discount,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_dates_are_the_latest_past_day() {
        let today = days_from_civil(2026, 12, 2);
        assert_eq!(settle_day(today, 12, 2), Some(today));
        assert_eq!(settle_day(today, 12, 1), Some(today - 1));
        assert_eq!(settle_day(today, 12, 3), Some(days_from_civil(2025, 12, 3)));
        assert_eq!(settle_day(today, 2, 30), None);
        // The clearing day 2026-12-02 begins at 2026-12-01T15:00:00Z.
        let start = days_from_civil(2026, 12, 2) * DAY_SECONDS - CLEARING_START_OFFSET_SECONDS;
        assert_eq!(clearing_day(start), days_from_civil(2026, 12, 2));
        assert_eq!(clearing_day(start - 1), days_from_civil(2026, 12, 1));
    }
}

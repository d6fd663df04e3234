//! Query (txnType 00) at `queryTrans.do`: the trade `orderId` + `txnTime` of the merchant.
//! `respCode` says how the query went; `origRespCode` how the trade went (reference/upacp.md
//! §4): a trade not paid yet is unknown to the network (34) until its `payTimeout`, then
//! failed; one in flight is pending (05); a paid one carries its `queryId` and trace data.

use cloudpass_core::order::OrderStatus;
use cloudpass_store::{GatewayStore, OrderRow};
use cloudpass_upacp::Form;
use cloudpass_upacp::code::{RespCode, resp_msg};
use cloudpass_upacp::request::{Query, Refusal, refuse};

use crate::Gateway;
use crate::certification::Case;
use crate::consume::store_failure;
use crate::merchant::Merchant;

/// The UPACP code of an authorization's field 39.
pub(crate) fn trade_code(field39: &str) -> (RespCode, &'static str) {
    match field39 {
        "00" => (RespCode::Success, ""),
        "51" => (
            RespCode::InsufficientFunds,
            "the card's funds do not cover the amount",
        ),
        "55" | "65" => (RespCode::PinExpiryOrCvn2, "the PIN was wrong or missing"),
        "N7" => (RespCode::PinExpiryOrCvn2, "the CVN2 was wrong or missing"),
        "54" => (
            RespCode::PinExpiryOrCvn2,
            "the expiry was wrong, missing or past",
        ),
        "14" | "15" => (
            RespCode::InvalidCard,
            "the card number is not a card of the network",
        ),
        "41" | "43" | "57" | "62" | "75" => (RespCode::CardStatus, "the card may not pay now"),
        "61" | "13" => (
            RespCode::AmountLimit,
            "the amount is above the card's limit",
        ),
        "68" | "91" | "96" => (RespCode::IssuerFailed, "the issuer did not answer"),
        _ => (RespCode::Failed, "the issuer declined the payment"),
    }
}

impl Gateway {
    pub(crate) async fn query(&self, form: &Form, merchant: &Merchant) -> Result<String, Refusal> {
        let request = Query::parse(form)?;
        if !merchant.permissions.query {
            return Err(refuse(RespCode::NoPermission, "the merchant may not query"));
        }
        let mer_id = &request.header.mer_id;
        let Some(order) = self
            .store
            .order(mer_id, &request.order_id, &request.header.txn_time_text)
            .await
            .map_err(store_failure)?
        else {
            self.certify(mer_id, Case::QueriedUnknown).await;
            return Err(refuse(
                RespCode::NoSuchTransaction,
                "no trade has this orderId and txnTime",
            ));
        };
        let status = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Failed);
        let now = self.merchant_now_seconds(mer_id);
        let (code, detail) = match status {
            OrderStatus::Issued if now <= order.pay_timeout => {
                self.certify(mer_id, Case::QueriedUnpaid).await;
                return Err(refuse(
                    RespCode::NoSuchTransaction,
                    "the order has not been paid yet",
                ));
            }
            OrderStatus::Issued | OrderStatus::Closed => {
                (RespCode::Failed, "not paid before payTimeout")
            }
            OrderStatus::Paying | OrderStatus::Undoing => (
                RespCode::AcceptedQueryLater,
                "the issuer has not answered yet",
            ),
            OrderStatus::Failed => trade_code(order.pay_response_code.as_deref().unwrap_or("05")),
            OrderStatus::Paid
            | OrderStatus::PartlyRefunded
            | OrderStatus::Refunded
            | OrderStatus::Undone => (RespCode::Success, ""),
        };
        if code == RespCode::Success {
            self.certify(mer_id, Case::QueriedPaid).await;
        }
        let mut fields = trade_fields(&order, merchant);
        if order.query_id.is_some()
            && let Some(coupon_info) = self.coupon_info(&order)
        {
            fields.set("couponInfo", coupon_info);
        }
        fields
            .set("origRespCode", code.code())
            .set("origRespMsg", resp_msg(code, detail));
        Ok(self.answer(Some(form), RespCode::Success, "", fields))
    }
}

/// What a query tells about a trade: its amounts and, once paid, its queryId and trace.
fn trade_fields(order: &OrderRow, merchant: &Merchant) -> Form {
    let mut fields = Form::new()
        .with("orderId", order.order_id.clone())
        .with("txnTime", order.txn_time.clone())
        .with("txnAmt", order.amount.to_string())
        .with("currencyCode", format!("{:03}", order.currency));
    if let Some(reserved) = &order.req_reserved {
        fields.set("reqReserved", reserved.clone());
    }
    if let (Some(query_id), Some(paid_at)) = (&order.query_id, order.paid_at) {
        let settle_day = cloudpass_core::order::clearing_day(paid_at.div_euclid(1_000));
        let (_, month, day) = cloudpass_core::clock::civil_from_days(settle_day);
        fields
            .set("queryId", query_id.clone())
            .set("settleAmt", order.amount.to_string())
            .set("settleCurrencyCode", format!("{:03}", order.currency))
            .set("settleDate", format!("{month:02}{day:02}"))
            .set("traceNo", order.auth_stan.clone().unwrap_or_default())
            .set(
                "traceTime",
                order.auth_transmission_time.clone().unwrap_or_default(),
            );
    }
    if merchant.permissions.card_details {
        if let Some(card) = &order.pay_card_masked {
            fields.set("accNo", card.clone());
        }
        if let Some(kind) = &order.pay_card_type {
            fields.set("payCardType", kind.clone());
        }
    }
    fields
}

//! Consume (txnType 01): an order and its TN, at `appTransReq.do` (the TN is answered to the
//! merchant's server) and at `frontTransReq.do` (the payer's browser is sent to the hosted
//! payment page of the TN). The order is the merchant's `orderId` + `txnTime`; a
//! byte-identical retry gets the same TN, another request reusing them gets 12.

use cloudpass_core::order::OrderStatus;
use cloudpass_store::{GatewayStore, OrderInsert, OrderRow, StoreError};
use cloudpass_upacp::Form;
use cloudpass_upacp::code::RespCode;
use cloudpass_upacp::request::{Channel, Consume, Header, Refusal, refuse};
use sha2::{Digest, Sha256};

use crate::certification::Case;
use crate::merchant::Merchant;
use crate::{Gateway, tn};

/// An order as inserted: new, or the one a byte-identical repeat found.
pub(crate) enum Recorded {
    Fresh(OrderRow),
    Repeat(OrderRow),
}

impl Recorded {
    pub(crate) fn row(&self) -> &OrderRow {
        match self {
            Recorded::Fresh(row) | Recorded::Repeat(row) => row,
        }
    }
}

/// TNs drawn for one order before giving up (a collision is one in 10^20).
const TN_DRAWS: usize = 4;

impl Gateway {
    pub(crate) async fn consume(
        &self,
        form: &Form,
        header: &Header,
        merchant: &Merchant,
    ) -> Result<String, Refusal> {
        let request = Consume::parse(form)?;
        if !merchant.permissions.app_consume {
            return Err(refuse(
                RespCode::NoPermission,
                "the merchant may not take app payments",
            ));
        }
        let order = self.record_consume(form, header, &request).await?;
        Ok(self.issued(form, &order.row().tn))
    }

    /// A browser consume (`frontTransReq.do`): the TN whose hosted payment page the payer's
    /// browser is sent to. It needs `frontUrl`, where the payer returns.
    pub(crate) async fn front_consume(
        &self,
        form: &Form,
        header: &Header,
        merchant: &Merchant,
    ) -> Result<String, Refusal> {
        let request = Consume::parse(form)?;
        let permitted = match request.channel {
            Channel::Pc => merchant.permissions.pc_consume,
            Channel::Mobile => merchant.permissions.api_wap,
        };
        if !permitted {
            return Err(refuse(
                RespCode::NoPermission,
                match request.channel {
                    Channel::Pc => "the merchant may not take PC browser payments (channelType 07)",
                    Channel::Mobile => {
                        "the merchant may not take WAP payments (channelType 08, API WAP)"
                    }
                },
            ));
        }
        if request.front_url.is_none() {
            return Err(refuse(
                RespCode::MissingField,
                "frontUrl is missing: a browser payment returns the payer there",
            ));
        }
        let order = self.record_consume(form, header, &request).await?;
        Ok(order.row().tn.clone())
    }

    /// Checks a consume's times and records its order under a fresh TN.
    pub(crate) async fn record_consume(
        &self,
        form: &Form,
        header: &Header,
        request: &Consume,
    ) -> Result<Recorded, Refusal> {
        self.check_txn_time(header)?;
        // The merchant's time (its sandbox clock may be ahead of the machine's).
        let now = self.merchant_now_seconds(&header.mer_id);
        let pay_timeout = request
            .pay_timeout
            .unwrap_or(header.txn_time.max(now) + self.config.default_pay_timeout_seconds);
        if pay_timeout <= now {
            return Err(refuse(
                RespCode::FormatError,
                "payTimeout has already passed",
            ));
        }
        let digest = request_digest(form);
        let now_millis = self.merchant_now_millis(&header.mer_id);
        self.insert_fresh(
            &digest,
            |tn| new_order(request, tn, pay_timeout, &digest, now_millis),
            None,
        )
        .await
    }

    /// `txnTime` must be the time of sending: the machine's, or the merchant's sandbox time.
    pub(crate) fn check_txn_time(&self, header: &Header) -> Result<(), Refusal> {
        let skew = self.config.txn_time_skew_seconds;
        let near = |now: i64| (now - header.txn_time).abs() <= skew;
        if near(self.now_seconds()) || near(self.merchant_now_seconds(&header.mer_id)) {
            Ok(())
        } else {
            Err(refuse(
                RespCode::FormatError,
                "txnTime must be the time of sending, Beijing time",
            ))
        }
    }

    /// Inserts the order `make` makes for a freshly drawn TN, drawing again while the TN is
    /// taken. A byte-identical repeat (the same `digest`) finds the first order; another
    /// request with the same `orderId` and `txnTime` is refused 12.
    ///
    /// With `original` (a return's consume as the return leaves it), the consume is written
    /// by version in the same transaction; if it moved meanwhile nothing is written and the
    /// return is refused.
    pub(crate) async fn insert_fresh(
        &self,
        digest: &str,
        make: impl Fn(String) -> OrderRow,
        original: Option<&OrderRow>,
    ) -> Result<Recorded, Refusal> {
        for _ in 0..TN_DRAWS {
            let order = make(tn::draw(&*self.random));
            let inserted = match original {
                None => self.store.insert_order(&order).await,
                Some(original) => self.store.insert_return(&order, original).await,
            };
            let inserted = match inserted {
                Err(StoreError::Conflict) => {
                    return Err(refuse(
                        RespCode::OriginalNotFoundOrBadState,
                        "another return of this consume is in progress",
                    ));
                }
                other => other.map_err(store_failure)?,
            };
            match inserted {
                OrderInsert::Inserted => return Ok(Recorded::Fresh(order)),
                OrderInsert::Exists(existing) if existing.request_digest == digest => {
                    return Ok(Recorded::Repeat(*existing));
                }
                OrderInsert::Exists(existing) => {
                    self.certify(&existing.mer_id, Case::DuplicateRefused).await;
                    return Err(refuse(
                        RespCode::Duplicate,
                        "this orderId and txnTime already name another order of this merchant",
                    ));
                }
                OrderInsert::TnTaken => continue,
            }
        }
        Err(refuse(
            RespCode::Busy,
            "no transaction number could be drawn; send again",
        ))
    }

    fn issued(&self, form: &Form, tn: &str) -> String {
        self.answer(
            Some(form),
            RespCode::Success,
            "",
            Form::new().with("tn", tn),
        )
    }
}

/// What identifies a request byte for byte: the digest of its string to sign and signature.
pub(crate) fn request_digest(form: &Form) -> String {
    cloudpass_core::hex::encode(&Sha256::digest(form.to_raw().as_bytes()))
}

fn new_order(
    request: &Consume,
    tn: String,
    pay_timeout: i64,
    digest: &str,
    now_millis: i64,
) -> OrderRow {
    OrderRow {
        tn,
        mer_id: request.header.mer_id.clone(),
        order_id: request.order_id.clone(),
        txn_time: request.header.txn_time_text.clone(),
        amount: i64::try_from(request.amount).unwrap_or(i64::MAX),
        currency: 156,
        channel: match request.channel {
            Channel::Pc => "07".into(),
            Channel::Mobile => "08".into(),
        },
        back_url: request.back_url.clone(),
        front_url: request.front_url.clone(),
        req_reserved: request.header.req_reserved.clone(),
        pay_timeout,
        request_digest: digest.to_owned(),
        status: OrderStatus::Issued.as_str().to_owned(),
        refunded: 0,
        refund_reserved: 0,
        paid_at: None,
        query_id: None,
        pay_response_code: None,
        pay_card_masked: None,
        pay_card_type: None,
        auth_stan: None,
        auth_transmission_time: None,
        created_at: now_millis,
        updated_at: now_millis,
        version: 1,
        kind: "consume".into(),
        original_tn: None,
        request_echo: request.header.echo().to_urlencoded(),
        discount: 0,
        campaign_id: None,
    }
}

pub(crate) fn store_failure(error: cloudpass_store::StoreError) -> Refusal {
    tracing::error!(error = %error, "gateway: the order book failed");
    refuse(
        RespCode::Busy,
        "the order book is not available; send again",
    )
}

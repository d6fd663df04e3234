//! Undo (撤销, txnType 31) and refund (退货, 04) at `backTransReq.do`, both naming a paid
//! consume by `origQryId`. Each is an order of its own (its own `orderId` and `txnTime`, a
//! `queryId` when it succeeds) and moves the consume by the core's rules first — a refund
//! reserves its amount, an undo takes the whole order — so a refund and an undo racing for
//! one consume cannot both go out. Then it goes to the issuer through the switch as a void
//! (0200) or refund (0220) naming the purchase in field 90, with no card number: the gateway
//! keeps none.

use cloudpass_acquirer::{CardReturn, OriginalPurchase, ReturnKind};
use cloudpass_core::discount;
use cloudpass_core::order::{self, OrderEvent, OrderRefusal};
use cloudpass_core::{Currency, Money};
use cloudpass_store::{GatewayStore, OrderRow};
use cloudpass_upacp::Form;
use cloudpass_upacp::code::RespCode;
use cloudpass_upacp::request::{Header, Refusal, Return, TxnType, refuse};

use crate::certification::Case;
use crate::consume::{Recorded, request_digest, store_failure};
use crate::discount::card_part;
use crate::merchant::Merchant;
use crate::orders::{RecordError, state_of};
use crate::query::trade_code;
use crate::{Gateway, tn};

/// Times a return is sent when no answer comes (it is idempotent at the switch and issuer).
const SENDS: usize = 3;

pub(crate) fn return_kind(undo: bool) -> ReturnKind {
    if undo {
        ReturnKind::Void
    } else {
        ReturnKind::Refund
    }
}

/// Whether `code`, the switch's answer to a return, is a decision. 68 (no answer in time),
/// 91 (the issuer unreachable) and 96 (a malfunction on the way) leave unknown whether the
/// issuer posted the return: it stays in flight and is sent again — the switch asks the
/// issuer again, and the issuer answers a repeat from its record, so it is posted once.
/// Taking 68 for a refusal let a refund the issuer had posted stand as failed (chaos seeds
/// 3, 4 and 5).
pub(crate) fn return_decided(code: &str) -> bool {
    !matches!(code, "68" | "91" | "96")
}

/// The certification case a successful return passes.
fn return_case(undo: bool, original: &OrderRow) -> Case {
    if undo {
        Case::Undone
    } else if original.refunded >= original.amount {
        Case::FullyRefunded
    } else {
        Case::PartlyRefunded
    }
}

/// The UPACP code of a refusal by the order rules.
fn refusal_code(refusal: OrderRefusal) -> Refusal {
    let code = match refusal {
        OrderRefusal::AlreadyReturned => RespCode::AlreadyReturned,
        OrderRefusal::AboveRefundable | OrderRefusal::UndoNotFullAmount => {
            RespCode::OriginalMismatch
        }
        OrderRefusal::ZeroAmount => RespCode::FormatError,
        _ => RespCode::OriginalNotFoundOrBadState,
    };
    Refusal {
        code,
        detail: refusal.to_string(),
    }
}

impl Gateway {
    pub(crate) async fn back_trans(
        &self,
        form: &Form,
        header: &Header,
        merchant: &Merchant,
    ) -> Result<String, Refusal> {
        match header.txn_type {
            TxnType::EncryptCertificate => return self.encryption_certificate(form),
            TxnType::SmsCode => return self.back_sms_code(form, merchant).await,
            TxnType::Consume => return self.back_consume(form, header, merchant).await,
            TxnType::OpenToken => return self.open_token(form, merchant).await,
            TxnType::DeleteToken => return self.delete_token(form, merchant).await,
            _ => {}
        }
        let request = Return::parse(form)?;
        let undo = request.header.txn_type == TxnType::Undo;
        let allowed = if undo {
            merchant.permissions.undo
        } else {
            merchant.permissions.refund
        };
        if !allowed {
            return Err(refuse(
                RespCode::NoPermission,
                "the merchant may not make this return",
            ));
        }
        self.check_txn_time(header)?;
        // The undo's same-day rule is the merchant's day (its sandbox clock may be ahead).
        let now = self.merchant_now_seconds(&header.mer_id);
        let original = self
            .store
            .order_by_query_id(&request.orig_qry_id)
            .await
            .map_err(store_failure)?
            .filter(|order| order.mer_id == header.mer_id && order.kind == "consume")
            .ok_or_else(|| {
                refuse(
                    RespCode::OriginalNotFoundOrBadState,
                    "origQryId names no paid consume of this merchant",
                )
            })?;
        // A repeat of a return already made gets its answer, whatever happened since.
        if let Some(existing) = self
            .store
            .order(
                &request.header.mer_id,
                &request.order_id,
                &request.header.txn_time_text,
            )
            .await
            .map_err(store_failure)?
        {
            if existing.request_digest != request_digest(form) {
                return Err(refuse(
                    RespCode::Duplicate,
                    "this orderId and txnTime already name another order of this merchant",
                ));
            }
            return Ok(self.return_answer(form, &existing, &original));
        }
        let amount = request.amount;
        let event = if undo {
            order::check_undo_amount(&state_of(&original), amount).map_err(refusal_code)?;
            OrderEvent::UndoSent { now }
        } else {
            OrderEvent::RefundSent { amount, now }
        };
        // Refused by the rules: nothing is stored. Otherwise the consume as the return
        // leaves it (its refund reserved, or its undo begun), written with the return.
        let reserved =
            self.moved(original.clone(), event, |_| {})
                .map_err(|error| match error {
                    RecordError::Refused(refusal) => refusal_code(refusal),
                    RecordError::Conflict | RecordError::Store(_) => refuse(
                        RespCode::OriginalNotFoundOrBadState,
                        "another return of this consume is in progress",
                    ),
                })?;
        // A discounted consume gives back to the card only what the card paid; the sponsor's
        // part goes back to its campaign (refunds of such an order go one at a time, so
        // `refunded` is final here).
        let sponsor = if undo {
            u64::try_from(original.discount).unwrap_or(0)
        } else {
            discount::sponsor_share(
                u64::try_from(original.amount).unwrap_or(0),
                u64::try_from(original.discount).unwrap_or(0),
                u64::try_from(original.refunded).unwrap_or(0),
                amount,
            )
        };
        let message = self.build_return(&original, undo, amount - sponsor)?;
        let row = match self
            .new_return(form, &request, &original, &reserved, &message, sponsor)
            .await?
        {
            Recorded::Fresh(row) => row,
            Recorded::Repeat(existing) => {
                return Ok(self.return_answer(form, &existing, &original));
            }
        };
        let original = reserved;
        let (row, original) = if card_part(&row) == 0 {
            // All of it the sponsor's: the card's bank has nothing to give back.
            self.record_return_answer(row, original, "00").await
        } else {
            self.send_return(row, original, &message).await
        };
        Ok(self.return_answer(form, &row, &original))
    }

    /// txnType 95: the platform's encryption certificate (`certType` 01), with its serial
    /// as `encryptCertId` would name it.
    fn encryption_certificate(&self, form: &Form) -> Result<String, Refusal> {
        match form.non_blank("certType") {
            None => return Err(refuse(RespCode::MissingField, "certType is missing")),
            Some("01") => {}
            Some(_) => {
                return Err(refuse(
                    RespCode::FormatError,
                    "certType must be 01 (encryption)",
                ));
            }
        }
        let certificate = &self.signer.encryption_certificate;
        let fields = Form::new()
            .with("certType", "01")
            .with("encryptPubKeyCert", certificate.to_pem_crlf());
        Ok(self.answer(Some(form), RespCode::Success, "", fields))
    }

    /// The return as an order of its own, written with `reserved` (the consume as the return
    /// leaves it) in one transaction; a byte-identical repeat finds the first.
    async fn new_return(
        &self,
        form: &Form,
        request: &Return,
        original: &OrderRow,
        reserved: &OrderRow,
        message: &CardReturn,
        sponsor: u64,
    ) -> Result<Recorded, Refusal> {
        let digest = request_digest(form);
        let now = self.merchant_now_millis(&request.header.mer_id);
        let kind = if request.header.txn_type == TxnType::Undo {
            "undo"
        } else {
            "refund"
        };
        let make = |tn: String| OrderRow {
            tn,
            mer_id: request.header.mer_id.clone(),
            order_id: request.order_id.clone(),
            txn_time: request.header.txn_time_text.clone(),
            amount: i64::try_from(request.amount).unwrap_or(i64::MAX),
            currency: original.currency,
            channel: original.channel.clone(),
            back_url: request.back_url.clone(),
            front_url: None,
            req_reserved: request.header.req_reserved.clone(),
            pay_timeout: original.pay_timeout,
            request_digest: digest.clone(),
            // A return is sent as soon as it is recorded.
            status: order::OrderStatus::Paying.as_str().to_owned(),
            refunded: 0,
            refund_reserved: 0,
            paid_at: None,
            query_id: None,
            pay_response_code: None,
            pay_card_masked: original.pay_card_masked.clone(),
            pay_card_type: original.pay_card_type.clone(),
            auth_stan: Some(message.stan().to_owned()),
            auth_transmission_time: Some(message.transmission_time().to_owned()),
            created_at: now,
            updated_at: now,
            version: 1,
            kind: kind.to_owned(),
            original_tn: Some(original.tn.clone()),
            request_echo: request.header.echo().to_urlencoded(),
            discount: i64::try_from(sponsor).unwrap_or(0),
            campaign_id: original.campaign_id.clone(),
        };
        self.insert_fresh(&digest, make, Some(reserved)).await
    }

    /// The return's message: a void or refund of `original` giving the card `amount`,
    /// numbered now. It is built before anything is stored, so the return's order records its
    /// STAN and time and can be sent again, the same message, whatever happens to this
    /// process.
    fn build_return(
        &self,
        original: &OrderRow,
        undo: bool,
        amount: u64,
    ) -> Result<CardReturn, Refusal> {
        let terminal = self.acquirer.get().ok_or_else(|| {
            refuse(
                RespCode::Busy,
                "the payment network is not ready; send again",
            )
        })?;
        let (Some(stan), Some(time)) = (&original.auth_stan, &original.auth_transmission_time)
        else {
            return Err(refuse(
                RespCode::OriginalNotFoundOrBadState,
                "origQryId names no paid consume of this merchant",
            ));
        };
        let purchase = OriginalPurchase {
            stan,
            transmission_time: time,
        };
        terminal
            .card_return(
                return_kind(undo),
                purchase,
                None,
                Money::new(amount, Currency::CNY),
            )
            .map_err(|error| {
                tracing::error!(error = %error, "gateway: a return could not be built");
                refuse(RespCode::Busy, "the return could not be built; send again")
            })
    }

    /// Sends the return and records the answer on both orders. Without a decision after
    /// [`SENDS`] tries both stay in flight: the merchant queries later, and the
    /// unanswered sweep sends it again.
    async fn send_return(
        &self,
        row: OrderRow,
        original: OrderRow,
        message: &CardReturn,
    ) -> (OrderRow, OrderRow) {
        let Some(terminal) = self.acquirer.get().cloned() else {
            return (row, original);
        };
        for _ in 0..SENDS {
            if let Ok(outcome) = terminal.send_return(message).await
                && let Some(code) = outcome.response_code
                && return_decided(&code)
            {
                return self.record_return_answer(row, original, &code).await;
            }
        }
        (row, original)
    }

    /// Records the issuer's answer `code` to the return `row` of `original` on both orders,
    /// in one transaction with the notification of an approved return: a crash leaves both
    /// in flight (the sweep sends the return again) or both answered, never one of them.
    pub(crate) async fn record_return_answer(
        &self,
        row: OrderRow,
        original: OrderRow,
        code: &str,
    ) -> (OrderRow, OrderRow) {
        let undo = row.kind == "undo";
        let amount = u64::try_from(row.amount).unwrap_or(0);
        let approved = code == "00";
        let answered = if undo {
            OrderEvent::UndoAnswered { approved }
        } else {
            OrderEvent::RefundAnswered { amount, approved }
        };
        let original_next = match self.moved(original.clone(), answered, |_| {}) {
            Ok(moved) => moved,
            Err(error) => {
                tracing::error!(error = ?error, tn = %original.tn, "gateway: a return's answer does not fit its consume; both left as they are");
                return (row, original);
            }
        };
        let now = self.merchant_now_millis(&row.mer_id);
        let query_id = tn::draw(&*self.random);
        let event = if approved {
            OrderEvent::PaymentApproved {
                at: now.div_euclid(1_000),
            }
        } else {
            OrderEvent::PaymentDeclined
        };
        let row_next = match self.moved(row.clone(), event, |r| {
            r.pay_response_code = Some(code.to_owned());
            if approved {
                r.paid_at = Some(now);
                r.query_id = Some(query_id.clone());
            }
        }) {
            Ok(moved) => moved,
            Err(error) => {
                tracing::error!(error = ?error, tn = %row.tn, "gateway: a return's answer does not fit it; both left as they are");
                return (row, original);
            }
        };
        // A return that succeeded is announced to the merchant, in the same write.
        let notification = if approved {
            let card_details = self.card_details(&row.mer_id).await;
            Some(self.notification(&row_next, Some(&original_next), card_details))
        } else {
            None
        };
        match self
            .store
            .update_orders(
                &[original_next.clone(), row_next.clone()],
                notification.as_ref(),
            )
            .await
        {
            Ok(()) => {
                if approved {
                    self.certify(&row.mer_id, return_case(undo, &original_next))
                        .await;
                }
                (row_next, original_next)
            }
            Err(error) => {
                // Another worker recorded it first, or the store failed: what is stored
                // now is the answer (the sweep sends a return still in flight again).
                tracing::warn!(error = %error, tn = %row.tn, "gateway: a return's answer was not recorded here");
                let current = |tn: String, fallback: OrderRow| async move {
                    self.store
                        .order_by_tn(&tn)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(fallback)
                };
                (
                    current(row.tn.clone(), row).await,
                    current(original.tn.clone(), original).await,
                )
            }
        }
    }

    /// The synchronous answer: 00 once the issuer took the return (its `queryId`), the
    /// issuer's code when it did not, 05 while nobody knows.
    fn return_answer(&self, form: &Form, row: &OrderRow, original: &OrderRow) -> String {
        let mut fields =
            Form::new().with("origQryId", original.query_id.clone().unwrap_or_default());
        let (code, detail) = match (row.status.as_str(), row.pay_response_code.as_deref()) {
            ("paid", _) => {
                fields.set("queryId", row.query_id.clone().unwrap_or_default());
                (RespCode::Success, "")
            }
            ("failed", Some(code)) => trade_code(code),
            _ => (
                RespCode::AcceptedQueryLater,
                "the issuer has not answered yet; query the return",
            ),
        };
        self.answer(Some(form), code, detail, fields)
    }
}

//! The pending-trade trigger: a payment with the sandbox's pending card is held before it is
//! sent, as a slow bank would leave it, so an integrator sees a trade pending — the payer's
//! answer `unknown`, a `backTransReq.do` consume answered `05`, a query answering
//! `origRespCode=05` — and then settle on its own, with its notification. The order is
//! `paying` from the start, with the STAN and time it will be sent under, exactly as any
//! payment in flight.
//!
//! Held payments live in memory (they hold the card data, which is never stored). A held
//! payment lost to a restart was never sent; the unanswered-payment sweep then settles its
//! order as failed (its reversal answered "never seen"), as for any payment whose answer was
//! lost. The hold is timed on the merchant's clock, so advancing the sandbox clock releases
//! it.

use cloudpass_acquirer::{AcquirerError, PreparedPurchase};
use cloudpass_store::OrderRow;

use crate::Gateway;
use crate::pay::{Card, Sending};

/// Payments held at once, at most; past it a pending-trigger payment is sent at once.
const HELD_MAX: usize = 1_000;

/// A payment held before sending.
pub(crate) struct HeldPayment {
    /// Merchant-clock milliseconds when it is sent.
    due_at: i64,
    order: OrderRow,
    card: Card,
    prepared: PreparedPurchase,
}

impl Gateway {
    /// Whether another payment may be held (the queue is bounded).
    pub(crate) fn may_hold(&self) -> bool {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).len() < HELD_MAX
    }

    /// Holds a prepared payment of `order` (already `paying`) for `seconds`.
    pub(crate) fn hold_payment(
        &self,
        order: OrderRow,
        card: Card,
        prepared: PreparedPurchase,
        seconds: i64,
    ) {
        let due_at = self.merchant_now_millis(&order.mer_id) + seconds * 1_000;
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(HeldPayment {
                due_at,
                order,
                card,
                prepared,
            });
    }

    /// Sends every held payment that is due and settles its order. Returns how many.
    pub async fn send_held_payments(&self) -> usize {
        let due: Vec<HeldPayment> = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let (due, waiting) = std::mem::take(&mut *held).into_iter().partition(|payment| {
                self.merchant_now_millis(&payment.order.mer_id) >= payment.due_at
            });
            *held = waiting;
            due
        };
        let Some(terminal) = self.acquirer.get().cloned() else {
            // Not signed on yet: they wait for the next round.
            self.held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(due);
            return 0;
        };
        let mut sent = 0;
        for payment in due {
            let tn = payment.order.tn.clone();
            let outcome = match terminal.send_prepared(payment.prepared).await {
                Ok(outcome) => Sending::Answered(outcome),
                Err(AcquirerError::Link(error)) => {
                    tracing::warn!(error = %error, tn = %tn, "gateway: a held payment's fate is unknown");
                    Sending::Unknown
                }
                Err(error) => {
                    tracing::warn!(error = %error, tn = %tn, "gateway: a held payment could not be sent");
                    Sending::NeverLeft
                }
            };
            match self
                .settle(payment.order, &payment.card.paid_with(), outcome)
                .await
            {
                Ok(_) => sent += 1,
                Err(error) => {
                    tracing::warn!(error = %error, tn = %tn, "gateway: a held payment could not be settled");
                }
            }
        }
        sent
    }
}

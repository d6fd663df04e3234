//! Payments and returns whose answer was lost — the link failed, the reversal was not
//! acknowledged, or the process died with the message in flight — stay `paying`. This sweep
//! settles them once they have been in flight longer than any answer could take
//! (`GatewayConfig::unanswered_after_seconds`), by the STAN and time each recorded before
//! it was sent:
//!
//! - a payment is reversed, and when the switch acknowledges (`00` reversed, `25` never
//!   seen) the order fails: whatever the issuer did is undone, so no money is taken for a
//!   sale the merchant was never told of;
//! - a return (void or refund) is sent again, the very same message, until an answer that is
//!   a decision comes (not 68, 91 or 96): the switch answers a repeat from its journal when
//!   the issuer decided it and asks the issuer again when it did not, and the issuer posts it
//!   once, so the answer recorded is the issuer's.
//!
//! What is not acknowledged is tried again at the next sweep.

use cloudpass_acquirer::{OriginalPurchase, Terminal};
use cloudpass_core::order::OrderEvent;
use cloudpass_core::{Currency, Money};
use cloudpass_store::{GatewayStore, OrderRow};

use crate::Gateway;
use crate::discount::card_part;
use crate::returns::{return_decided, return_kind};

/// Orders settled per sweep, at most.
const SWEEP_BATCH: i64 = 32;
/// What the settled order's trade says (ISO 8583 68: the answer came too late).
const LOST_ANSWER_CODE: &str = "68";

impl Gateway {
    /// One sweep: every payment unanswered for too long reversed and, once acknowledged,
    /// failed. Returns how many orders it settled.
    pub async fn settle_unanswered(&self) -> usize {
        let Some(terminal) = self.acquirer.get().cloned() else {
            return 0;
        };
        let before = self.clock.now_millis() - self.config.unanswered_after_seconds * 1_000;
        let stuck = match self.store.paying_since(before, SWEEP_BATCH).await {
            Ok(stuck) => stuck,
            Err(error) => {
                tracing::error!(error = %error, "gateway: cannot read unanswered payments");
                return 0;
            }
        };
        let mut settled = 0;
        for order in stuck {
            if order.kind != "consume" {
                settled += usize::from(self.send_return_again(&terminal, order).await);
                continue;
            }
            let (Some(stan), Some(time)) = (&order.auth_stan, &order.auth_transmission_time) else {
                tracing::error!(tn = %order.tn, "gateway: an unanswered payment has no STAN to reverse it by");
                continue;
            };
            // What the authorization asked of the card: the amount less any discount.
            let amount = Money::new(card_part(&order), Currency::CNY);
            let acknowledged = terminal.reverse_purchase(stan, time, amount).await;
            if !matches!(acknowledged.as_deref(), Some("00" | "25")) {
                tracing::warn!(tn = %order.tn, "gateway: the reversal of an unanswered payment was not acknowledged; trying again later");
                continue;
            }
            let tn = order.tn.clone();
            match self
                .apply_event(order, OrderEvent::PaymentDeclined, |row| {
                    row.pay_response_code = Some(LOST_ANSWER_CODE.to_owned());
                })
                .await
            {
                Ok(_) => settled += 1,
                Err(error) => {
                    tracing::warn!(error = ?error, tn = %tn, "gateway: an unanswered payment moved before it could be settled");
                }
            }
        }
        settled
    }
}

impl Gateway {
    /// Sends an unanswered return again and records its answer; true when one came.
    async fn send_return_again(&self, terminal: &Terminal, row: OrderRow) -> bool {
        let original = match &row.original_tn {
            Some(tn) => self.store.order_by_tn(tn).await.ok().flatten(),
            None => None,
        };
        let (Some(original), Some(stan), Some(time)) =
            (original, &row.auth_stan, &row.auth_transmission_time)
        else {
            tracing::error!(tn = %row.tn, "gateway: an unanswered return cannot be rebuilt");
            return false;
        };
        let (Some(original_stan), Some(original_time)) =
            (&original.auth_stan, &original.auth_transmission_time)
        else {
            return false;
        };
        // All of it the sponsor's: nothing goes to the card's bank (see `returns`).
        if card_part(&row) == 0 {
            self.record_return_answer(row, original, "00").await;
            return true;
        }
        let message = terminal.card_return_again(
            return_kind(row.kind == "undo"),
            OriginalPurchase {
                stan: original_stan,
                transmission_time: original_time,
            },
            Money::new(card_part(&row), Currency::CNY),
            OriginalPurchase {
                stan,
                transmission_time: time,
            },
        );
        let Ok(message) = message else {
            return false;
        };
        match terminal.send_return(&message).await {
            Ok(outcome) => match outcome.response_code {
                Some(code) if return_decided(&code) => {
                    self.record_return_answer(row, original, &code).await;
                    true
                }
                _ => false,
            },
            Err(error) => {
                tracing::warn!(error = %error, tn = %row.tn, "gateway: an unanswered return could not be sent again");
                false
            }
        }
    }
}

//! Store and forward: advices the issuer must receive (stand-in approvals, reversals,
//! offline clearings), sent until acknowledged, however long the issuer is unreachable.

use std::sync::Arc;

use cloudpass_core::AccountNumber;
use cloudpass_iso8583::private::{FIELD_60, OriginalData, Positional, values};
use cloudpass_iso8583::{Message, Mti};
use cloudpass_store::{SafDelivery, SafRow, StoreError, TokenStore};
use tokio::sync::watch;

use super::Switch;

/// What one pass over the store-and-forward queue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardPass {
    /// Advices the issuer answered: they leave the queue.
    pub acknowledged: usize,
    /// Advices it did not take (down, timed out, 96/91): tried again later.
    pub retried: usize,
}

/// Advices one pass takes from the queue.
const PASS_BATCH: i64 = 64;

impl Switch {
    /// Delivers queued advices to the issuer until `shutdown` fires: a
    /// [`Switch::forward_due_advices`] pass every `saf_poll`.
    pub async fn run_store_and_forward(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(error) = self.forward_due_advices().await {
                tracing::error!(error = %error, "store and forward: cannot read the queue");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.saf_poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass: each advice due by the switch's clock is sent; one the issuer takes (any
    /// answer but 96, 91 or none: see [`advice_taken`]) leaves the queue, any other is due
    /// again after a wait that doubles with each failure up to `saf_max_backoff`. An advice
    /// acknowledged whose acknowledgement cannot be recorded is sent again later; the issuer
    /// answers a repeat from its record and posts nothing.
    pub async fn forward_due_advices(&self) -> Result<ForwardPass, StoreError> {
        let now = self.clock.now_millis();
        let mut pass = ForwardPass::default();
        for advice in self.store.saf_due(now, PASS_BATCH).await? {
            let delivery = self.deliver(&advice, now).await;
            match &delivery {
                SafDelivery::Acknowledged { response_code, .. } => {
                    tracing::info!(advice = %advice.mti, stan = %advice.stan, response_code = %response_code, "store and forward: advice acknowledged");
                    pass.acknowledged += 1;
                }
                SafDelivery::Retry { .. } => pass.retried += 1,
            }
            if let Err(error) = self.store.saf_record(&advice.id, &delivery).await {
                tracing::error!(error = %error, "store and forward: cannot record a delivery");
            }
        }
        Ok(pass)
    }

    pub(super) async fn deliver(&self, advice: &SafRow, now: i64) -> SafDelivery {
        let backoff = self
            .config
            .saf_poll
            .saturating_mul(1u32 << advice.attempts.clamp(0, 16))
            .min(self.config.saf_max_backoff);
        let retry = SafDelivery::Retry {
            next_attempt_at: now + i64::try_from(backoff.as_millis()).unwrap_or(60_000),
        };
        // The card and its expiry, for advices that keep a token; a reversal advice names
        // only the original (field 90).
        let card = if advice.token_number.is_empty() {
            None
        } else {
            match self.vault.lookup(&advice.token_number).await {
                Ok(Some(record)) => Some((record.pan, record.card_expiry)),
                Ok(None) => {
                    tracing::error!(advice = %advice.mti, stan = %advice.stan, "store and forward: the token is unknown; retrying");
                    return retry;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "store and forward: vault lookup failed");
                    return retry;
                }
            }
        };
        let Ok(mti) = Mti::parse(&advice.mti) else {
            return retry;
        };
        let original = OriginalData {
            mti: advice.original_mti.clone(),
            stan: advice.stan.clone(),
            transmission_time: advice.transmission_time.clone(),
            acquirer: advice.acquirer_id.clone(),
            forwarder: String::new(),
        };
        let Ok(field90) = original.to_wire() else {
            return retry;
        };
        let mut message = Message::new(mti);
        let mut field60 = Positional::new(60, FIELD_60);
        let _ = field60.set(
            "60.1",
            if mti == Mti::REVERSAL_ADVICE {
                "4021"
            } else {
                "0000"
            },
        );
        if advice.kind == "ecash" {
            // An offline spend of the e-cash application: the issuer clears it from the
            // card's e-cash account.
            let _ = field60.set("60.3.6", values::MEDIUM_IC);
            let _ = field60.set("60.3.7", values::IC_APPLICATION_ECASH);
        }
        if let Some((pan, expiry)) = &card {
            message
                .set_text(2, pan.expose())
                .set_text(14, expiry.to_wire());
        }
        message
            .set_text(3, "000000")
            .set_text(4, format!("{:012}", advice.amount))
            .set_text(7, advice.transmission_time.clone())
            .set_text(11, advice.stan.clone())
            .set_text(32, advice.acquirer_id.clone())
            .set_text(37, advice.rrn.clone())
            .set_text(41, advice.terminal_id.clone())
            .set_text(42, advice.merchant_id.clone())
            .set_text(49, format!("{:03}", advice.currency))
            .set_text(60, field60.to_string())
            .set_text(90, field90);
        match self.issuer.request(&message).await {
            Ok(answer) if advice_taken(answer.get_str(39).unwrap_or("")) => {
                SafDelivery::Acknowledged {
                    response_code: answer.get_str(39).unwrap_or("").to_owned(),
                    at: self.clock.now_millis(),
                }
            }
            Ok(answer) => {
                tracing::warn!(advice = %advice.mti, stan = %advice.stan, response_code = answer.get_str(39).unwrap_or(""), "store and forward: the issuer could not take the advice; retrying");
                retry
            }
            Err(_) => retry,
        }
    }
}

/// Whether an advice's answer says the issuer took it. 96 (its system failed) and 91 (it is
/// inoperative) say it did not act on the advice, and an answer without field 39 says
/// nothing: the advice is sent again. Any other answer is the issuer's decision on it (00
/// done, 25 no such original, 12 refused) and ends the retries.
pub(crate) fn advice_taken(response_code: &str) -> bool {
    !matches!(response_code, "" | "96" | "91")
}

#[cfg(test)]
mod tests {
    use super::advice_taken;

    #[test]
    fn an_advice_the_issuer_could_not_act_on_is_sent_again() {
        for code in ["00", "25", "12", "94"] {
            assert!(advice_taken(code), "{code}");
        }
        for code in ["96", "91", ""] {
            assert!(!advice_taken(code), "{code:?}");
        }
    }
}

//! Reversals (0400): a request that got no answer may have been acted on; the reversal names
//! it in field 90 and is repeated, waiting longer each time, until the switch acknowledges.

use std::time::Duration;

use cloudpass_core::Money;
use cloudpass_iso8583::private::{FIELD_60, OriginalData, Positional};
use cloudpass_iso8583::{Message, Mti};

use crate::terminal::Terminal;

/// Fields a reversal copies from its original.
const COPIED: [u8; 8] = [2, 3, 4, 14, 22, 25, 37, 49];
/// The first wait between attempts; doubled each time, up to 32 times it.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Whether a reversal's answer says the switch does not know this terminal's keys (A0) or
/// could not decide (96): sign on again and repeat.
fn needs_sign_on(code: Option<&str>) -> bool {
    matches!(code, Some("A0" | "96"))
}

impl Terminal {
    /// Reverses a request that got no answer, repeating until acknowledged; the
    /// acknowledgement's field 39, or `None` if none came.
    pub async fn reverse(&self, original: &Message<'_>) -> Option<String> {
        let reversal = self.reversal_of(original)?;
        self.send_reversal(reversal).await
    }

    /// Reverses a purchase of this acquirer known only by its STAN, transmission time and
    /// amount — one whose answer was lost with the process that sent it. The reversal
    /// carries no card number (the switch finds the original by field 90). The
    /// acknowledgement's field 39 (`00` reversed, `25` the switch never saw it), or `None`.
    pub async fn reverse_purchase(
        &self,
        stan: &str,
        transmission_time: &str,
        amount: Money,
    ) -> Option<String> {
        let data = OriginalData {
            mti: Mti::FINANCIAL_REQUEST.as_str().to_owned(),
            stan: stan.to_owned(),
            transmission_time: transmission_time.to_owned(),
            acquirer: self.config.acquirer_id.clone(),
            forwarder: String::new(),
        };
        let field90 = data.to_wire().ok()?;
        let mut reversal = self.header(Mti::REVERSAL_REQUEST);
        reversal
            .set_text(3, "000000")
            .set_text(4, amount.to_wire().ok()?)
            .set_text(49, amount.currency().numeric_code());
        let mut field60 = Positional::new(60, FIELD_60);
        field60.set("60.1", "4021").ok()?;
        reversal
            .set_text(60, field60.to_string())
            .set_text(90, field90);
        self.send_reversal(reversal).await
    }

    /// Sends `reversal` until an answer comes. An answer of A0 (the MAC not recognised) or
    /// 96 (the switch could not decide) is not the end: the switch may have lost this
    /// terminal's keys, so the terminal signs on again and repeats it, once.
    async fn send_reversal(&self, reversal: Message<'static>) -> Option<String> {
        let mut signed_on_again = false;
        let mut attempt = 0;
        while attempt < self.config.reversal_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(FIRST_BACKOFF * (1 << attempt.min(5))).await;
            }
            attempt += 1;
            let Ok(answer) = self.send(reversal.clone()).await else {
                continue;
            };
            let code = answer.get_str(39).map(str::to_owned);
            if needs_sign_on(code.as_deref()) && !signed_on_again {
                signed_on_again = true;
                // Signed on, the repeat does not count as an attempt; otherwise the next
                // attempt repeats the reversal as it is.
                if self.sign_on().await.is_ok() {
                    attempt -= 1;
                }
                continue;
            }
            return code;
        }
        None
    }

    fn reversal_of(&self, original: &Message<'_>) -> Option<Message<'static>> {
        let data = OriginalData {
            mti: original.mti().as_str().to_owned(),
            stan: original.get_str(11).unwrap_or("").to_owned(),
            transmission_time: original.get_str(7).unwrap_or("").to_owned(),
            acquirer: self.config.acquirer_id.clone(),
            forwarder: String::new(),
        };
        let field90 = data.to_wire().ok()?;
        let mut reversal = self.header(Mti::REVERSAL_REQUEST);
        for field in COPIED {
            if let Some(value) = original.get(field) {
                reversal.set(field, value.to_vec());
            }
        }
        let mut field60 = Positional::new(60, FIELD_60);
        field60.set("60.1", "4021").ok()?;
        reversal
            .set_text(60, field60.to_string())
            .set_text(90, field90);
        Some(reversal)
    }
}

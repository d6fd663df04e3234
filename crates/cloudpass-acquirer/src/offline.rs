//! Offline e-cash spends: the phone approved them with a TC at the terminal; the acquirer
//! numbers each as a 0220 advice when it happens and uploads the batch later. The network
//! clears each spend once, so a batch may be sent again after a failure.

use cloudpass_core::{AccountNumber, Expiry, Money};
use cloudpass_iso8583::private::{FIELD_60, Positional, values};
use cloudpass_iso8583::{Message, Mti};

use crate::financial::rrn;
use crate::terminal::{AcquirerError, Terminal};

/// One offline spend as the phone handed it over.
pub struct OfflineSpendAdvice<'a> {
    pub account: &'a dyn AccountNumber,
    pub expiry: Expiry,
    pub amount: Money,
    /// Track 2 equivalent data.
    pub track2: &'a str,
    /// Field 55 with the TC.
    pub field55: &'a [u8],
}

impl Terminal {
    /// The advice of an offline e-cash spend (0220), numbered now, for the batch the
    /// acquirer uploads later.
    pub fn offline_advice(
        &self,
        spend: &OfflineSpendAdvice<'_>,
    ) -> Result<Message<'static>, AcquirerError> {
        let mut advice = self.header(Mti::FINANCIAL_ADVICE);
        let mut field60 = Positional::new(60, FIELD_60);
        for (name, value) in [
            ("60.1", "0000"),
            ("60.2.2", values::READ_CAPABILITY_CONTACTLESS),
            ("60.2.5", values::TERMINAL_TYPE_POS),
            ("60.3.6", values::MEDIUM_IC),
            ("60.3.7", values::IC_APPLICATION_ECASH),
        ] {
            field60.set(name, value).map_err(AcquirerError::message)?;
        }
        let stan = advice.get_str(11).unwrap_or("").to_owned();
        let time = advice.get_str(7).unwrap_or("").to_owned();
        advice
            .set_text(2, spend.account.expose())
            .set_text(3, "000000")
            .set_text(4, spend.amount.to_wire().map_err(AcquirerError::message)?)
            .set_text(14, spend.expiry.to_wire())
            .set_text(18, self.config.merchant_category.clone())
            .set_text(22, "072")
            .set_text(25, "00")
            .set_text(35, spend.track2.to_owned())
            .set_text(37, rrn(&time, &stan))
            .set_text(43, self.config.merchant_name.clone())
            .set_text(49, spend.amount.currency().numeric_code())
            .set(55, spend.field55.to_vec())
            .set_text(60, field60.to_string());
        Ok(advice)
    }

    /// Uploads a batch of offline advices; each one's field 39, `None` where no answer came
    /// (send the batch again: the network clears each spend once).
    pub async fn upload(&self, batch: &[Message<'static>]) -> Vec<Option<String>> {
        let mut answers = Vec::with_capacity(batch.len());
        for advice in batch {
            let mut advice = advice.clone();
            advice.remove(64);
            advice.remove(128);
            answers.push(match self.send(advice).await {
                Ok(answer) => answer.get_str(39).map(str::to_owned),
                Err(_) => None,
            });
        }
        answers
    }
}

//! Returns of a card-not-present purchase (processing code `200000`, the purchase in field
//! 90): a void (撤销, 0200, the whole amount on the day) or a refund (退货, 0220, part of what
//! is left). A return is never reversed: one that got no answer is sent again, the very same
//! message, and the switch and the issuer answer a repeat from their records.

use cloudpass_core::{AccountNumber, Money};
use cloudpass_iso8583::private::{FIELD_60, OriginalData, Positional, values};
use cloudpass_iso8583::{Message, Mti};

use crate::financial::{Outcome, rrn};
use crate::terminal::{AcquirerError, Terminal};

/// Field 3 of a return of goods.
const RETURN: &str = "200000";

/// Which return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnKind {
    Void,
    Refund,
}

/// A return, built once so that every attempt sends the same message (the same STAN).
#[derive(Debug, Clone)]
pub struct CardReturn {
    message: Message<'static>,
}

impl CardReturn {
    pub fn stan(&self) -> &str {
        self.message.get_str(11).unwrap_or("")
    }

    pub fn transmission_time(&self) -> &str {
        self.message.get_str(7).unwrap_or("")
    }
}

/// The purchase a return names: its STAN and transmission time as this acquirer sent them.
#[derive(Debug, Clone, Copy)]
pub struct OriginalPurchase<'a> {
    pub stan: &'a str,
    pub transmission_time: &'a str,
}

impl<'a> From<&'a Outcome> for OriginalPurchase<'a> {
    fn from(outcome: &'a Outcome) -> Self {
        OriginalPurchase {
            stan: &outcome.stan,
            transmission_time: &outcome.transmission_time,
        }
    }
}

impl Terminal {
    /// The return of `amount` of the purchase `original`, on the card `account` if the
    /// acquirer keeps it (field 2 is optional: the purchase is named by field 90).
    pub fn card_return(
        &self,
        kind: ReturnKind,
        original: OriginalPurchase<'_>,
        account: Option<&dyn AccountNumber>,
        amount: Money,
    ) -> Result<CardReturn, AcquirerError> {
        self.build_return(kind, original, account, amount, None)
    }

    /// The return [`Terminal::card_return`] built earlier with the STAN and transmission
    /// time it got — the very same message, for sending again after the first attempt's
    /// fate was lost (with the process that sent it). Without the card number.
    pub fn card_return_again(
        &self,
        kind: ReturnKind,
        original: OriginalPurchase<'_>,
        amount: Money,
        numbered: OriginalPurchase<'_>,
    ) -> Result<CardReturn, AcquirerError> {
        self.build_return(kind, original, None, amount, Some(numbered))
    }

    fn build_return(
        &self,
        kind: ReturnKind,
        original: OriginalPurchase<'_>,
        account: Option<&dyn AccountNumber>,
        amount: Money,
        numbered: Option<OriginalPurchase<'_>>,
    ) -> Result<CardReturn, AcquirerError> {
        let mti = match kind {
            ReturnKind::Void => Mti::FINANCIAL_REQUEST,
            ReturnKind::Refund => Mti::FINANCIAL_ADVICE,
        };
        let field90 = OriginalData {
            mti: Mti::FINANCIAL_REQUEST.as_str().to_owned(),
            stan: original.stan.to_owned(),
            transmission_time: original.transmission_time.to_owned(),
            acquirer: self.config.acquirer_id.clone(),
            forwarder: String::new(),
        }
        .to_wire()
        .map_err(AcquirerError::message)?;
        let mut field60 = Positional::new(60, FIELD_60);
        for (name, value) in [("60.1", "0000"), ("60.3.6", values::MEDIUM_NO_CARD)] {
            field60.set(name, value).map_err(AcquirerError::message)?;
        }
        let mut message = self.header(mti);
        if let Some(numbered) = numbered {
            message
                .set_text(7, numbered.transmission_time.to_owned())
                .set_text(11, numbered.stan.to_owned());
        }
        let stan = message.get_str(11).unwrap_or("").to_owned();
        let transmission_time = message.get_str(7).unwrap_or("").to_owned();
        if let Some(account) = account {
            message.set_text(2, account.expose());
        }
        message
            .set_text(3, RETURN)
            .set_text(4, amount.to_wire().map_err(AcquirerError::message)?)
            .set_text(18, self.config.merchant_category.clone())
            .set_text(22, "012")
            .set_text(25, "42")
            .set_text(37, rrn(&transmission_time, &stan))
            .set_text(49, amount.currency().numeric_code())
            .set_text(60, field60.to_string())
            .set_text(90, field90);
        Ok(CardReturn { message })
    }

    /// Sends a return (again, when an earlier attempt got no answer): the switch's field 39
    /// and approval code; `response_code` is `None` when no answer came.
    pub async fn send_return(&self, card_return: &CardReturn) -> Result<Outcome, AcquirerError> {
        let message = &card_return.message;
        let mut outcome = Outcome::unanswered(message);
        match self.send(message.clone()).await {
            Ok(answer) => {
                outcome.mac_ok = self.answer_mac_ok(&answer);
                outcome.response_code = answer.get_str(39).map(str::to_owned);
                outcome.auth_code = answer.get_str(38).map(str::to_owned);
            }
            Err(AcquirerError::Link(cloudpass_iso8583::exchange::LinkError::Timeout)) => {}
            Err(error) => return Err(error),
        }
        Ok(outcome)
    }
}

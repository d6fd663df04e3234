//! A financial request (0100, 0200) read once, at the start, into what the checks decide on.
//! Anything unreadable is a format error (30) here, before a single check runs: the checks
//! then work on values that are known to be well formed.
//!
//! Two kinds of request arrive: a token presented by a device (a tap or an in-app payment,
//! with its cryptogram in field 55), and — from acquirers allowed to send them — a card
//! number typed by its holder for a card-not-present e-commerce payment (60.3.6 = `7`, no
//! field 35 or 55; the CVN2 in 61.4 and the PIN block in 52 for the issuer to check).

use cloudpass_core::authorization::{self, PaymentChannel, PosEntryMode};
use cloudpass_core::{Currency, Money, Pan, ResponseCode, Token};
use cloudpass_iso8583::emv_data::ChipRequest;
use cloudpass_iso8583::private::{FIELD_60, FIELD_61, Positional, values};
use cloudpass_iso8583::{Message, Mti};

/// What a financial request asks for (field 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Processing {
    /// 00xxxx: goods and services.
    Purchase,
    /// 60xxxx: a load of the card's e-cash from its account (圈存).
    EcashLoad,
}

/// What field 2 names and how it was presented.
pub(crate) enum Presented {
    /// A device token, with the cryptogram its device computed.
    Token { token: Token, chip: ChipRequest },
    /// A card number without the card: the issuer checks what came with it.
    CardNotPresent {
        pan: Pan,
        /// 61.4 as sent (CVN2, then the expiry), passed to the issuer unread.
        check_value: Option<String>,
    },
}

/// A 0100 or 0200, parsed.
pub(crate) struct FinancialRequest<'m> {
    /// The message as it arrived: the issuer's message copies the fields the switch does not
    /// rewrite.
    pub message: &'m Message<'m>,
    pub mti: Mti,
    /// Field 2, and how it came.
    pub presented: Presented,
    pub processing: Processing,
    pub amount: Money,
    /// Field 18.
    pub merchant_category: &'m str,
    /// Field 60 as sent, if it parses; the issuer's field 60 starts from it.
    pub field60: Option<Positional>,
    pub channel: PaymentChannel,
    /// Field 52, encrypted under the terminal's PIN key.
    pub pin_block: Option<&'m [u8]>,
    /// Field 32 and 41: whose PIN key field 52 is under.
    pub acquirer: &'m str,
    pub terminal: &'m str,
}

fn text<'m>(message: &'m Message<'_>, field: u8) -> &'m str {
    message.get_str(field).unwrap_or("")
}

/// Whether track 2 equivalent data (field 35), when present, names the same account number
/// as field 2: the number before the separator (`=`, or `D` from BCD).
fn track2_agrees(track2: Option<&str>, account: &str) -> bool {
    track2.is_none_or(|track2| track2.split(['=', 'D']).next() == Some(account))
}

impl<'m> FinancialRequest<'m> {
    /// Reads `message`; the field 39 code of the first thing that is not well formed.
    pub fn parse(message: &'m Message<'m>) -> Result<Self, ResponseCode> {
        let field60 = message
            .get_str(60)
            .and_then(|value| Positional::parse(60, FIELD_60, value).ok());
        let no_card = field60
            .as_ref()
            .and_then(|f| f.get("60.3.6"))
            .is_some_and(|medium| medium == values::MEDIUM_NO_CARD);
        let presented = if no_card {
            card_not_present(message)?
        } else {
            presented_token(message)?
        };
        let processing = match text(message, 3).get(..2) {
            Some("00") => Processing::Purchase,
            Some("60") => Processing::EcashLoad,
            _ => return Err(ResponseCode::InvalidTransaction),
        };
        let entry = PosEntryMode::parse(text(message, 22)).ok_or(ResponseCode::FormatError)?;
        let eci = field60.as_ref().and_then(|f| f.get("60.2.8"));
        let channel = authorization::payment_channel(entry, text(message, 25), eci);
        let currency = Currency::parse_numeric(text(message, 49))
            .map_err(|_| ResponseCode::InvalidTransaction)?;
        let amount = Money::from_wire(text(message, 4), currency)
            .map_err(|_| ResponseCode::InvalidAmount)?;
        Ok(Self {
            message,
            mti: message.mti(),
            presented,
            processing,
            amount,
            merchant_category: text(message, 18),
            field60,
            channel,
            pin_block: message.get(52),
            acquirer: text(message, 32),
            terminal: text(message, 41),
        })
    }

    /// The token and its cryptogram; `None` for a card-not-present request.
    pub fn token(&self) -> Option<(&Token, &ChipRequest)> {
        match &self.presented {
            Presented::Token { token, chip } => Some((token, chip)),
            Presented::CardNotPresent { .. } => None,
        }
    }

    /// Whether the cardholder typed a PIN (field 52 is present).
    pub fn pin_entered(&self) -> bool {
        self.pin_block.is_some()
    }
}

/// A token with its track 2 (if any) naming it and its cryptogram in field 55.
fn presented_token(message: &Message<'_>) -> Result<Presented, ResponseCode> {
    let account = text(message, 2);
    let token = Token::parse(account).map_err(|_| ResponseCode::InvalidCard)?;
    if !track2_agrees(message.get_str(35), account) {
        return Err(ResponseCode::FormatError);
    }
    let chip = ChipRequest::parse(message.get(55).ok_or(ResponseCode::FormatError)?)
        .map_err(|_| ResponseCode::FormatError)?;
    Ok(Presented::Token { token, chip })
}

/// A typed card number: no track data and no chip data can come with it.
fn card_not_present(message: &Message<'_>) -> Result<Presented, ResponseCode> {
    if message.get(35).is_some() || message.get(55).is_some() {
        return Err(ResponseCode::FormatError);
    }
    let pan = Pan::parse(text(message, 2)).map_err(|_| ResponseCode::InvalidCard)?;
    let check_value = match message.get_str(61) {
        None => None,
        Some(value) => Positional::parse(61, FIELD_61, value)
            .map_err(|_| ResponseCode::FormatError)?
            .get("61.4")
            .filter(|v| !v.trim_matches(['0', ' ']).is_empty())
            .map(str::to_owned),
    };
    Ok(Presented::CardNotPresent { pan, check_value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track2_must_name_field_2s_account() {
        assert!(track2_agrees(None, "6212345678901232"));
        assert!(track2_agrees(
            Some("6212345678901232=30122010000000000"),
            "6212345678901232"
        ));
        assert!(track2_agrees(
            Some("6212345678901232D30122010000000000"),
            "6212345678901232"
        ));
        assert!(!track2_agrees(
            Some("6212345678901240=30122010000000000"),
            "6212345678901232"
        ));
    }
}

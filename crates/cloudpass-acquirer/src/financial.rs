//! Financial requests (0200): a purchase or an e-cash load, by how the card data reached the
//! terminal (field 22 entry mode, 25 condition code, 60 terminal and medium), with the PIN
//! block when the cardholder typed a PIN. A request that gets no answer in time is reversed.

use cloudpass_core::{AccountNumber, Expiry, Money, ResponseCode};
use cloudpass_crypto::{Hsm, Pin, PinBlockFormat};
use cloudpass_iso8583::exchange::LinkError;
use cloudpass_iso8583::private::{FIELD_60, FIELD_61, Positional, values};
use cloudpass_iso8583::tlv::{self, tags};
use cloudpass_iso8583::{Message, Mti};

use crate::pending::PendingReversal;
use crate::terminal::{AcquirerError, Terminal};

/// Field 3 of a purchase of goods and services.
const PURCHASE: &str = "000000";
/// Field 3 of a load of the card's e-cash from its account (圈存).
const ECASH_LOAD: &str = "600000";

/// How the card data reached the terminal.
#[derive(Debug, Clone, Copy)]
pub enum Presentment<'a> {
    /// A tap: track 2 equivalent data from the phone.
    Contactless { track2: &'a str },
    /// An in-app purchase: the device cryptogram, sent as e-commerce.
    InApp,
    /// A card number its holder typed on a payment page (no card, no cryptogram): e-commerce
    /// with 60.3.6 = `7`, the CVN2 in 61.4 for the issuer to check. Only acquirers the
    /// switch allows may send it.
    CardNotPresent {
        /// The three digits on the back of a credit card.
        cvn2: Option<&'a str>,
        /// Where the holder typed it: a phone (08) or a PC (07) browser.
        terminal_type: EcommerceTerminal,
    },
}

/// 60.2.5 of a card-not-present payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcommerceTerminal {
    Pc,
    Mobile,
}

/// 60.2.8 for e-commerce without cardholder authentication by the network.
const ECI_NON_AUTHENTICATED: &str = "07";

/// One purchase as the terminal sends it.
pub struct Purchase<'a> {
    /// Field 2: the token (or card number) the phone handed over.
    pub account: &'a dyn AccountNumber,
    /// Field 14 (a card-not-present debit card may come without one).
    pub expiry: Option<Expiry>,
    pub amount: Money,
    /// Field 55 from the phone (empty when no chip took part: card not present).
    pub field55: &'a [u8],
    pub presentment: Presentment<'a>,
    /// The PIN the cardholder typed, if asked.
    pub pin: Option<&'a Pin>,
}

/// What became of a purchase.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Field 39 as answered (`None`: no answer came).
    pub response_code: Option<String>,
    pub auth_code: Option<String>,
    pub stan: String,
    pub transmission_time: String,
    pub rrn: String,
    /// The issuer's answer to the cryptogram (field 55 tag 91) came back.
    pub arpc: bool,
    /// The answer carried a MAC that checked (or carried none).
    pub mac_ok: bool,
    /// After no answer: the reversal's field 39, `None` if it was never acknowledged.
    pub reversal: Option<String>,
}

impl Outcome {
    /// The outcome of `request` before any answer: its STAN, transmission time and RRN.
    pub(crate) fn unanswered(request: &Message<'_>) -> Outcome {
        let text = |field| request.get_str(field).unwrap_or("").to_owned();
        Outcome {
            response_code: None,
            auth_code: None,
            stan: text(11),
            transmission_time: text(7),
            rrn: text(37),
            arpc: false,
            mac_ok: true,
            reversal: None,
        }
    }

    pub fn approved(&self) -> bool {
        self.response_code.as_deref() == Some(ResponseCode::Approved.code())
    }

    /// The response code with its meaning, for people.
    pub fn describe(&self) -> String {
        match &self.response_code {
            Some(code) => match ResponseCode::parse(code) {
                Some(known) => known.to_string(),
                None => format!("{code} (unknown code)"),
            },
            None => "no answer".to_owned(),
        }
    }
}

/// A purchase built and numbered but not sent yet. Its STAN and transmission time are what a
/// reversal names (field 90): a caller records them before sending, so that a purchase whose
/// fate it lost (a crash in flight) can still be reversed by [`Terminal::reverse_purchase`].
pub struct PreparedPurchase {
    request: Message<'static>,
}

impl PreparedPurchase {
    pub fn stan(&self) -> &str {
        self.request.get_str(11).unwrap_or("")
    }

    pub fn transmission_time(&self) -> &str {
        self.request.get_str(7).unwrap_or("")
    }
}

impl Terminal {
    /// Sends one purchase and, if no answer comes, reverses it.
    pub async fn purchase(&self, purchase: &Purchase<'_>) -> Result<Outcome, AcquirerError> {
        self.financial(purchase, PURCHASE).await
    }

    /// Builds a purchase (with its PIN block) to send later with [`Terminal::send_prepared`].
    pub fn prepare_purchase(
        &self,
        purchase: &Purchase<'_>,
    ) -> Result<PreparedPurchase, AcquirerError> {
        Ok(PreparedPurchase {
            request: self.financial_with_pin(purchase, PURCHASE)?,
        })
    }

    /// Sends a prepared purchase and, if no answer comes, reverses it.
    pub async fn send_prepared(
        &self,
        prepared: PreparedPurchase,
    ) -> Result<Outcome, AcquirerError> {
        self.send_financial(prepared.request).await
    }

    /// Builds an e-cash load (with its PIN block) to send later with
    /// [`Terminal::send_prepared`].
    pub fn prepare_ecash_load(
        &self,
        load: &Purchase<'_>,
    ) -> Result<PreparedPurchase, AcquirerError> {
        Ok(PreparedPurchase {
            request: self.financial_with_pin(load, ECASH_LOAD)?,
        })
    }

    /// Loads the card's e-cash from its account: online, with the cardholder's PIN (or
    /// payment password in the app).
    pub async fn load_ecash(&self, load: &Purchase<'_>) -> Result<Outcome, AcquirerError> {
        self.financial(load, ECASH_LOAD).await
    }

    async fn financial(
        &self,
        purchase: &Purchase<'_>,
        processing_code: &str,
    ) -> Result<Outcome, AcquirerError> {
        let request = self.financial_with_pin(purchase, processing_code)?;
        self.send_financial(request).await
    }

    /// The 0200 of `purchase` with its PIN block, ready to send.
    fn financial_with_pin(
        &self,
        purchase: &Purchase<'_>,
        processing_code: &str,
    ) -> Result<Message<'static>, AcquirerError> {
        let mut request = self.financial_request(purchase, processing_code)?;
        if let Some(pin) = purchase.pin {
            let keys = self.working_keys().ok_or(AcquirerError::NotSignedOn)?;
            let block =
                self.hsm
                    .encrypt_pin(pin, keys.pin, PinBlockFormat::Iso0, purchase.account)?;
            request.set(52, block).set_text(53, "2600000000000000");
        }
        Ok(request)
    }

    async fn send_financial(&self, request: Message<'static>) -> Result<Outcome, AcquirerError> {
        // Reversals kept from before go first, as a terminal's store and forward does.
        if self.reversals_pending() {
            self.flush_reversals().await;
        }
        let mut outcome = Outcome::unanswered(&request);
        match self.send(request.clone()).await {
            Ok(answer) => {
                outcome.mac_ok = self.answer_mac_ok(&answer);
                outcome.response_code = answer.get_str(39).map(str::to_owned);
                outcome.auth_code = answer.get_str(38).map(str::to_owned);
                outcome.arpc = answer
                    .get(55)
                    .and_then(|data| tlv::parse(data).ok())
                    .is_some_and(|objects| {
                        tlv::find(&objects, tags::ISSUER_AUTHENTICATION_DATA).is_some()
                    });
            }
            Err(AcquirerError::Link(LinkError::Timeout)) => {
                outcome.reversal = self.reverse_unanswered(&request).await;
            }
            Err(error) => return Err(error),
        }
        Ok(outcome)
    }

    /// The 0200 of `purchase`, without PIN block or MAC.
    fn financial_request(
        &self,
        purchase: &Purchase<'_>,
        processing_code: &str,
    ) -> Result<Message<'static>, AcquirerError> {
        let mut request = self.header(Mti::FINANCIAL_REQUEST);
        let amount = purchase.amount.to_wire().map_err(AcquirerError::message)?;
        let mut field60 = Positional::new(60, FIELD_60);
        let pin_digit = if purchase.pin.is_some() { '1' } else { '2' };
        let subfields: &[(&str, &str)] = match purchase.presentment {
            Presentment::Contactless { track2 } => {
                request
                    .set_text(22, format!("07{pin_digit}"))
                    .set_text(25, "00")
                    .set_text(35, track2.to_owned());
                &[
                    ("60.2.2", values::READ_CAPABILITY_CONTACTLESS),
                    ("60.2.5", values::TERMINAL_TYPE_POS),
                    ("60.3.6", values::MEDIUM_IC),
                    ("60.3.7", values::IC_APPLICATION_PBOC),
                ]
            }
            Presentment::InApp => {
                request
                    .set_text(22, format!("01{pin_digit}"))
                    .set_text(25, "42");
                &[
                    ("60.2.5", values::TERMINAL_TYPE_MOBILE),
                    ("60.2.8", values::ECI_DEVICE_CRYPTOGRAM),
                    ("60.3.6", values::MEDIUM_VIRTUAL),
                ]
            }
            Presentment::CardNotPresent {
                cvn2,
                terminal_type,
            } => {
                request
                    .set_text(22, format!("01{pin_digit}"))
                    .set_text(25, "42");
                if let Some(cvn2) = cvn2 {
                    request.set_text(61, card_not_present_check_value(cvn2)?);
                }
                match terminal_type {
                    EcommerceTerminal::Pc => &[
                        ("60.2.5", values::TERMINAL_TYPE_PC),
                        ("60.2.8", ECI_NON_AUTHENTICATED),
                        ("60.3.6", values::MEDIUM_NO_CARD),
                    ],
                    EcommerceTerminal::Mobile => &[
                        ("60.2.5", values::TERMINAL_TYPE_MOBILE),
                        ("60.2.8", ECI_NON_AUTHENTICATED),
                        ("60.3.6", values::MEDIUM_NO_CARD),
                    ],
                }
            }
        };
        field60
            .set("60.1", "0000")
            .map_err(AcquirerError::message)?;
        for (name, value) in subfields {
            field60.set(name, value).map_err(AcquirerError::message)?;
        }
        let stan = request.get_str(11).unwrap_or("").to_owned();
        let transmission_time = request.get_str(7).unwrap_or("").to_owned();
        request
            .set_text(2, purchase.account.expose())
            .set_text(3, processing_code.to_owned())
            .set_text(4, amount);
        if let Some(expiry) = purchase.expiry {
            request.set_text(14, expiry.to_wire());
        }
        request
            .set_text(18, self.config.merchant_category.clone())
            .set_text(37, rrn(&transmission_time, &stan))
            .set_text(43, self.config.merchant_name.clone())
            .set_text(49, purchase.amount.currency().numeric_code())
            .set_text(60, field60.to_string());
        if !purchase.field55.is_empty() {
            request.set(55, purchase.field55.to_vec());
        }
        Ok(request)
    }
}

/// Field 61 carrying a CVN2 in 61.4: its three digits, then `0000`.
fn card_not_present_check_value(cvn2: &str) -> Result<String, AcquirerError> {
    if cvn2.len() != 3 || !cvn2.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AcquirerError::message("a CVN2 is three digits"));
    }
    let mut field61 = Positional::new(61, FIELD_61);
    field61
        .set("61.4", &format!("{cvn2}0000"))
        .map_err(AcquirerError::message)?;
    Ok(field61.to_string())
}

/// Field 37: the time of field 7 (hhmmss) then the STAN.
pub(crate) fn rrn(transmission_time: &str, stan: &str) -> String {
    format!("{}{stan}", transmission_time.get(4..10).unwrap_or("000000"))
}

impl Terminal {
    /// Reverses a request that got no answer, keeping the reversal first (by STAN, time and
    /// amount) and forgetting it once the switch acknowledges it.
    async fn reverse_unanswered(&self, request: &Message<'_>) -> Option<String> {
        let amount = request
            .get_str(4)
            .zip(request.get_str(49))
            .and_then(|(field4, field49)| {
                let currency = cloudpass_core::Currency::parse_numeric(field49).ok()?;
                cloudpass_core::Money::from_wire(field4, currency).ok()
            });
        let kept = amount.map(|amount| PendingReversal {
            stan: request.get_str(11).unwrap_or("").to_owned(),
            transmission_time: request.get_str(7).unwrap_or("").to_owned(),
            amount,
        });
        if let Some(kept) = &kept
            && let Err(error) = self.pending.keep(kept)
        {
            tracing::error!(error = %error, "terminal: a reversal could not be kept; it is sent now only");
        }
        let answer = self.reverse(request).await;
        if let Some(kept) = &kept
            && crate::pending::acknowledges(answer.as_deref())
            && let Err(error) = self
                .pending
                .acknowledged(&kept.stan, &kept.transmission_time)
        {
            tracing::warn!(error = %error, "terminal: an acknowledged reversal could not be forgotten; it will be sent again");
        }
        answer
    }
}

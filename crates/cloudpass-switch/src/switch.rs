//! The authorization path: what happens to an acquirer's message between the switch's port
//! and the issuer, as a sequence of checks each of which can end it with a field 39 code.
//!
//! 0200 with a token: detokenize → token state and domain → cryptogram (and ATC) → no-PIN
//! rules → PIN translation from the token to the card number → the issuer's 0200 with the
//! card, its expiry and the token channel marked (60, 61.5, 56 `PR`, 63 `TK`) → the 0210 back
//! to the acquirer with the token in place of the card and the ARPC in field 55. The
//! acquirer never sees the card number.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cloudpass_core::authorization::{
    self, AcquirerNoPin, PaymentChannel, PosEntryMode, Verification,
};
use cloudpass_core::{AccountNumber, Clock, Currency, Money, ResponseCode, Token};
use cloudpass_crypto::emv::SessionKeyInput;
use cloudpass_crypto::{
    ArpcMethod, CryptogramRef, Hsm, KeyHandle, KeyUsage, PinBlockFormat, PinBlockRef,
};
use cloudpass_iso8583::emv_data::{self, ChipRequest};
use cloudpass_iso8583::private::{
    FIELD_60, FIELD_61, Positional, TaggedData, Usages, token_tags, values,
};
use cloudpass_iso8583::{Message, Mti};

use cloudpass_iso8583::link::{Link, LinkError};
use crate::vault::TokenVault;

/// What the switch does when the issuer cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandInPolicy {
    /// Decline with 91 (issuer down) or 68 (issuer timed out).
    Decline,
    /// Approve on the issuer's behalf up to this amount (minor units), else decline.
    ApproveUpTo(u64),
}

/// The switch's own settings.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    pub issuer_timeout: Duration,
    /// The acquirer side of the contactless no-PIN rule.
    pub no_pin_terminals: bool,
    pub no_pin_mccs: Vec<String>,
    pub acquirer_no_pin_limit: Money,
    pub stand_in: StandInPolicy,
    /// Most tokens whose last ATC is remembered.
    pub atc_memory: usize,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        Self {
            issuer_timeout: Duration::from_secs(10),
            no_pin_terminals: true,
            no_pin_mccs: authorization::DEFAULT_NO_PIN_MCCS
                .iter()
                .map(|m| (*m).to_owned())
                .collect(),
            acquirer_no_pin_limit: Money::new(100_000, Currency::CNY),
            stand_in: StandInPolicy::Decline,
            atc_memory: 1_000_000,
        }
    }
}

/// A terminal's keys: its master key (configured), its working keys (from its last sign-on).
#[derive(Debug, Clone, Copy)]
pub struct TerminalKeys {
    pub master: KeyHandle,
    pub pin: Option<KeyHandle>,
    pub mac: Option<KeyHandle>,
}

pub struct Switch {
    vault: Arc<dyn TokenVault>,
    hsm: Arc<dyn Hsm>,
    issuer: Arc<Link>,
    /// The zone PIN key shared with the issuer.
    issuer_pin_key: KeyHandle,
    terminals: RwLock<HashMap<String, TerminalKeys>>,
    /// Token number → the highest ATC accepted: a cryptogram with this ATC or a lower one is a
    /// replay.
    atcs: Mutex<HashMap<String, u16>>,
    clock: Arc<dyn Clock>,
    config: SwitchConfig,
}

/// Fields an answer echoes from its request.
const ECHOED: &[u8] = &[3, 4, 7, 11, 12, 13, 25, 32, 33, 37, 41, 42, 49];

/// The answer to `request` with `code`, the token (not the card) in field 2.
pub fn answer(request: &Message<'_>, code: ResponseCode) -> Message<'static> {
    let mut response = Message::new(request.mti().response().unwrap_or(request.mti()));
    for &field in std::iter::once(&2u8).chain(ECHOED) {
        if let Some(value) = request.get(field) {
            response.set(field, value.to_vec());
        }
    }
    response.set_text(39, code.code());
    response
}

fn text<'m>(message: &'m Message<'_>, field: u8) -> &'m str {
    message.get_str(field).unwrap_or("")
}

impl Switch {
    pub fn new(
        vault: Arc<dyn TokenVault>,
        hsm: Arc<dyn Hsm>,
        issuer: Arc<Link>,
        issuer_pin_key: KeyHandle,
        clock: Arc<dyn Clock>,
        config: SwitchConfig,
    ) -> Self {
        Self {
            vault,
            hsm,
            issuer,
            issuer_pin_key,
            terminals: RwLock::new(HashMap::new()),
            atcs: Mutex::new(HashMap::new()),
            clock,
            config,
        }
    }

    /// Registers a terminal and its master key (from the key ceremony).
    pub fn add_terminal(&self, terminal_id: &str, master: KeyHandle) {
        self.terminals
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                terminal_id.to_owned(),
                TerminalKeys {
                    master,
                    pin: None,
                    mac: None,
                },
            );
    }

    /// Answers one acquirer message.
    pub async fn handle(&self, request: &Message<'_>) -> Message<'static> {
        match request.mti().as_str() {
            "0800" => self.network_management(request),
            "0200" => self.financial(request).await,
            _ => answer(request, ResponseCode::InvalidTransaction),
        }
    }

    /// Sign-on (70 = 001): new PIN and MAC keys for the terminal, under its master key, in
    /// field 62 (key ‖ check value ‖ key ‖ check value, 40 bytes). Echo (301) and sign-off
    /// (002) are acknowledged.
    fn network_management(&self, request: &Message<'_>) -> Message<'static> {
        let mut response = answer(request, ResponseCode::Approved);
        for field in [41, 42, 70] {
            if let Some(value) = request.get(field) {
                response.set(field, value.to_vec());
            }
        }
        if text(request, 70) != "001" {
            return response;
        }
        let terminal_id = text(request, 41).to_owned();
        let Some(keys) = self
            .terminals
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&terminal_id)
            .copied()
        else {
            response.set_text(39, ResponseCode::NotPermittedToTerminal.code());
            return response;
        };
        let issue = || -> Result<(KeyHandle, KeyHandle, Vec<u8>), cloudpass_crypto::HsmError> {
            let pin = self.hsm.generate_key(KeyUsage::PinEncryption)?;
            let mac = self.hsm.generate_key(KeyUsage::MessageAuthentication)?;
            let mut field62 = Vec::with_capacity(40);
            for key in [pin, mac] {
                field62.extend_from_slice(&self.hsm.export_under_kek(key, keys.master)?);
                field62.extend_from_slice(&self.hsm.check_value(key)?.0);
                field62.push(0);
            }
            Ok((pin, mac, field62))
        };
        match issue() {
            Ok((pin, mac, field62)) => {
                let old = self
                    .terminals
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        terminal_id,
                        TerminalKeys {
                            pin: Some(pin),
                            mac: Some(mac),
                            ..keys
                        },
                    );
                if let Some(old) = old {
                    for key in [old.pin, old.mac].into_iter().flatten() {
                        let _ = self.hsm.release(key);
                    }
                }
                response.set(62, field62);
            }
            Err(error) => {
                tracing::error!(error = %error, "sign-on: key generation failed");
                response.set_text(39, ResponseCode::SystemMalfunction.code());
            }
        }
        response
    }

    async fn financial(&self, request: &Message<'_>) -> Message<'static> {
        match self.authorize(request).await {
            Ok(response) => response,
            Err(code) => answer(request, code),
        }
    }

    async fn authorize(&self, request: &Message<'_>) -> Result<Message<'static>, ResponseCode> {
        let token_number = text(request, 2);
        let record = match self.vault.lookup(token_number).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(ResponseCode::InvalidCard),
            Err(error) => {
                tracing::error!(error = %error, "vault lookup failed");
                return Err(ResponseCode::SystemMalfunction);
            }
        };
        let token = Token::parse(token_number).map_err(|_| ResponseCode::InvalidCard)?;
        let entry = PosEntryMode::parse(text(request, 22)).ok_or(ResponseCode::FormatError)?;
        let field60 = request
            .get_str(60)
            .and_then(|value| Positional::parse(60, FIELD_60, value).ok());
        let eci = field60
            .as_ref()
            .and_then(|f| f.get("60.2.8").map(str::to_owned));
        let channel = authorization::payment_channel(entry, text(request, 25), eci.as_deref());
        let (year, month) = self.clock.year_month();
        authorization::check_token(&record.facts, channel, year, month)?;

        let currency = Currency::parse_numeric(text(request, 49))
            .map_err(|_| ResponseCode::InvalidTransaction)?;
        let amount = Money::from_wire(text(request, 4), currency)
            .map_err(|_| ResponseCode::InvalidAmount)?;

        // The cryptogram: present, about this payment, made by this token's keys, fresh.
        let chip = ChipRequest::parse(request.get(55).ok_or(ResponseCode::FormatError)?)
            .map_err(|_| ResponseCode::FormatError)?;
        if chip.terminal.amount != amount.minor_units()
            || chip.terminal.currency != currency.numeric()
        {
            return Err(ResponseCode::SecurityViolation);
        }
        let atc = chip.card.atc;
        if record.atc_issued_until > 0 && i64::from(atc) > record.atc_issued_until {
            return Err(ResponseCode::SecurityViolation);
        }
        if self
            .atcs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token_number)
            .is_some_and(|last| atc <= *last)
        {
            return Err(ResponseCode::SecurityViolation);
        }
        let data = chip.cryptogram_input();
        let cryptogram = CryptogramRef {
            issuer_master_key: record.issuer_master_key,
            account: &token,
            pan_sequence: record.pan_sequence,
            session: SessionKeyInput::Atc { atc },
            data: &data,
            cryptogram: chip.arqc,
        };
        match self.hsm.verify_arqc(&cryptogram) {
            Ok(true) => {}
            Ok(false) => return Err(ResponseCode::SecurityViolation),
            Err(error) => {
                tracing::error!(error = %error, "ARQC verification failed to run");
                return Err(ResponseCode::SystemMalfunction);
            }
        }
        self.remember_atc(token_number, atc);

        // Cardholder verification.
        let pin_block = request.get(52);
        let pin_entered = pin_block.is_some();
        let verification = match channel {
            PaymentChannel::Nfc => {
                let acquirer = AcquirerNoPin {
                    terminal_capable: self.config.no_pin_terminals,
                    merchant_eligible: self
                        .config
                        .no_pin_mccs
                        .iter()
                        .any(|mcc| mcc == text(request, 18)),
                    limit: self.config.acquirer_no_pin_limit,
                };
                authorization::contactless_verification(
                    amount,
                    pin_entered,
                    chip.card.cdcvm(),
                    &acquirer,
                    record.contactless_no_pin_limit,
                )?
            }
            _ => authorization::in_app_verification(
                amount,
                pin_entered,
                chip.card.cdcvm(),
                record.online_no_pin_limit,
            )?,
        };

        // The issuer's message: the card, not the token; the PIN block rebuilt for the card.
        let mut issuer_request = Message::new(Mti::FINANCIAL_REQUEST);
        for (field, value) in request.fields() {
            if !matches!(field, 2 | 14 | 35 | 52 | 56 | 60 | 61 | 63 | 64 | 128) {
                issuer_request.set(field, value.to_vec());
            }
        }
        issuer_request
            .set_text(2, record.pan.expose())
            .set_text(14, record.card_expiry.to_wire());
        if let Some(block) = pin_block {
            let terminal = self
                .terminals
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(text(request, 41))
                .copied();
            let Some(terminal_pin_key) = terminal.and_then(|t| t.pin) else {
                return Err(ResponseCode::NotPermittedToTerminal);
            };
            let from = PinBlockRef {
                key: terminal_pin_key,
                format: PinBlockFormat::Iso0,
                block,
                account: &token,
            };
            let translated = self
                .hsm
                .translate_pin_block(
                    &from,
                    self.issuer_pin_key,
                    PinBlockFormat::Iso0,
                    &record.pan,
                )
                .map_err(|_| ResponseCode::PinFormatError)?;
            issuer_request
                .set(52, translated)
                .set_text(53, "2600000000000000");
        }
        issuer_request.set_text(56, usages("PR", &[(token_tags::PAR, record.par.as_str())]));
        issuer_request.set_text(60, marked_field60(field60, channel, verification));
        let mut field61 = Positional::new(61, FIELD_61);
        let _ = field61.set("61.5", values::ARQC_PASSED);
        issuer_request.set_text(61, field61.to_string());
        let scenario = if channel == PaymentChannel::Nfc {
            "NF"
        } else {
            "IA"
        };
        issuer_request.set_text(
            63,
            usages(
                "TK",
                &[
                    (token_tags::VERIFIED, "1"),
                    (token_tags::TOKEN, token_number),
                    (token_tags::TOKEN_EXPIRY, &record.token_expiry.to_wire()),
                    (token_tags::SCENARIO, scenario),
                    (token_tags::REQUESTOR_ID, &record.token_requestor_id),
                    (token_tags::DEVICE_KIND, record.device_kind),
                    (token_tags::WALLET, &record.wallet),
                ],
            ),
        );

        let issuer_answer = match self.issuer.request(&issuer_request).await {
            Ok(answer) => answer,
            Err(error) => return Err(self.stand_in(amount, &error)),
        };
        let code = issuer_answer
            .get_str(39)
            .and_then(ResponseCode::parse)
            .unwrap_or(ResponseCode::SystemMalfunction);
        let mut response = answer(request, code);
        if let Some(auth_code) = issuer_answer.get(38) {
            response.set(38, auth_code.to_vec());
        }
        if let Some(balances) = issuer_answer.get(54) {
            response.set(54, balances.to_vec());
        }
        // The ARPC answers the cryptogram (method 1, the response code as ARC).
        let mut arc = [b'0'; 2];
        arc.copy_from_slice(&code.code().as_bytes()[..2]);
        if let Ok(arpc) = self.hsm.generate_arpc(
            &cryptogram,
            ArpcMethod::One {
                authorisation_response_code: arc,
            },
        ) {
            response.set(55, emv_data::response_field55(&arpc, code.code()));
        }
        Ok(response)
    }

    fn remember_atc(&self, token_number: &str, atc: u16) {
        let mut atcs = self.atcs.lock().unwrap_or_else(|p| p.into_inner());
        if atcs.len() >= self.config.atc_memory && !atcs.contains_key(token_number) {
            // A bound: forget the oldest knowledge wholesale rather than grow without end.
            atcs.clear();
        }
        let last = atcs.entry(token_number.to_owned()).or_insert(0);
        *last = (*last).max(atc);
    }

    /// The answer when the issuer cannot be asked.
    fn stand_in(&self, amount: Money, error: &LinkError) -> ResponseCode {
        match (self.config.stand_in, error) {
            (StandInPolicy::ApproveUpTo(limit), _) if amount.minor_units() <= limit => {
                ResponseCode::Approved
            }
            (_, LinkError::Timeout) => ResponseCode::ResponseReceivedTooLate,
            _ => ResponseCode::IssuerInoperative,
        }
    }
}

fn usages(usage: &str, tags: &[(&str, &str)]) -> String {
    let mut data = TaggedData::default();
    for (tag, value) in tags {
        let _ = data.set(tag, value);
    }
    let mut field = Usages::default();
    let _ = field.set(usage, &data.to_string());
    field.to_string()
}

/// Field 60 for the issuer: the acquirer's, with the token channel marked.
fn marked_field60(
    from_acquirer: Option<Positional>,
    channel: PaymentChannel,
    verification: Verification,
) -> String {
    let mut field = from_acquirer.unwrap_or_else(|| Positional::new(60, FIELD_60));
    if field.get("60.1").is_none() {
        let _ = field.set("60.1", "0000");
    }
    let (terminal_type, medium, application, eci) = match channel {
        PaymentChannel::Nfc => (
            field
                .get("60.2.5")
                .unwrap_or(values::TERMINAL_TYPE_POS)
                .to_owned(),
            values::MEDIUM_IC,
            values::IC_APPLICATION_ECASH,
            "00",
        ),
        _ => (
            values::TERMINAL_TYPE_MOBILE.to_owned(),
            values::MEDIUM_VIRTUAL,
            values::IC_APPLICATION_PBOC,
            values::ECI_DEVICE_CRYPTOGRAM,
        ),
    };
    let _ = field.set("60.2.5", &terminal_type);
    let _ = field.set(
        "60.2.6",
        if verification == Verification::NoPin {
            "1"
        } else {
            "0"
        },
    );
    let _ = field.set("60.2.8", eci);
    let _ = field.set("60.3.6", medium);
    let _ = field.set("60.3.7", application);
    field.to_string()
}

//! The acquirer and POS stand-in: a terminal with its own key store, linked to the switch.
//!
//! It signs on (0800, field 70 = 001) and loads the PIN and MAC keys field 62 brings under
//! its master key; it builds a 0200 from what the phone handed over (a tap: track 2 and
//! field 55; an in-app purchase: field 55 sent as e-commerce with ECI 05); it encrypts the PIN
//! the cardholder typed into a format-0 block built with the token; it MACs every message
//! once it has a MAC key (field 64, or 128 when a secondary bitmap is present); and when an
//! answer does not come in time it reverses the purchase (0400 with field 90), repeating
//! the reversal until the switch acknowledges it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cloudpass_core::{AccountNumber, Clock, Expiry, Money, Random, ResponseCode, Token};
use cloudpass_crypto::{
    CheckValue, Hsm, KeyHandle, KeyUsage, MasterKey, Pin, PinBlockFormat, SoftHsm,
};
use cloudpass_iso8583::emv_data::TerminalData;
use cloudpass_iso8583::link::{Link, LinkError};
use cloudpass_iso8583::private::{FIELD_60, OriginalData, Positional, values};
use cloudpass_iso8583::tlv::{self, tags};
use cloudpass_iso8583::{Message, Mti, profile};

use crate::phone::OfflineSpend;

/// A terminal's identity and its acquirer's rules.
#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// Field 41, 8 characters.
    pub terminal_id: String,
    /// Field 42, 15 characters.
    pub merchant_id: String,
    /// Field 18, the merchant category code.
    pub merchant_category: String,
    /// Field 43: name (25), city (12), country (3).
    pub merchant_name: String,
    /// Field 32, the acquirer's institution ID.
    pub acquirer_id: String,
    /// The acquirer's contactless no-PIN limit: above it the terminal asks for the PIN.
    pub no_pin_limit: Money,
    /// How many times an unacknowledged reversal is sent.
    pub reversal_attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PosError {
    #[error("the terminal has not signed on (no PIN key)")]
    NotSignedOn,
    #[error("sign-on refused: {0}")]
    SignOnRefused(String),
    #[error("sign-on answer malformed: {0}")]
    SignOnMalformed(&'static str),
    #[error("the switch did not answer: {0}")]
    Link(#[from] LinkError),
    #[error("terminal key store: {0}")]
    Hsm(#[from] cloudpass_crypto::HsmError),
    #[error("message: {0}")]
    Message(String),
}

/// How the card data reached the terminal.
#[derive(Debug, Clone, Copy)]
pub enum Presentment<'a> {
    /// A tap: track 2 equivalent data from the phone.
    Contactless { track2: &'a str },
    /// An in-app purchase: the device cryptogram, sent as e-commerce.
    InApp,
}

/// One purchase as the terminal sends it.
pub struct Purchase<'a> {
    pub token: &'a Token,
    pub token_expiry: Expiry,
    pub amount: Money,
    /// Field 55 from the phone.
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

#[derive(Clone, Copy)]
struct WorkingKeys {
    pin: KeyHandle,
    mac: KeyHandle,
}

pub struct Pos {
    config: TerminalConfig,
    hsm: SoftHsm,
    master: KeyHandle,
    keys: RwLock<Option<WorkingKeys>>,
    link: Arc<Link>,
    stan: AtomicU32,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
}

/// MMDDhhmmss (UTC) of a millisecond timestamp, and hhmmss / MMDD for fields 12 and 13.
fn wire_times(millis: i64) -> (String, String, String, [u8; 3]) {
    let seconds = millis.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = cloudpass_core::clock::civil_from_days(days);
    let (hour, minute, second) = (of_day / 3600, (of_day / 60) % 60, of_day % 60);
    let bcd = |n: i64| {
        let n = u8::try_from(n.rem_euclid(100)).unwrap_or(0);
        ((n / 10) << 4) | (n % 10)
    };
    (
        format!("{month:02}{day:02}{hour:02}{minute:02}{second:02}"),
        format!("{hour:02}{minute:02}{second:02}"),
        format!("{month:02}{day:02}"),
        [bcd(year), bcd(i64::from(month)), bcd(i64::from(day))],
    )
}

impl Pos {
    /// A terminal whose master key (from the key ceremony) is `master_key`.
    pub fn new(
        config: TerminalConfig,
        master_key: &[u8],
        link: Arc<Link>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Result<Self, PosError> {
        let hsm = SoftHsm::new(MasterKey::generate(random.as_ref()), Arc::clone(&random));
        let master = hsm.import_clear(KeyUsage::TerminalMaster, master_key)?;
        let mut first_stan = [0u8; 4];
        random.fill(&mut first_stan);
        Ok(Self {
            config,
            hsm,
            master,
            keys: RwLock::new(None),
            link,
            stan: AtomicU32::new(u32::from_be_bytes(first_stan) % 900_000),
            clock,
            random,
        })
    }

    pub fn config(&self) -> &TerminalConfig {
        &self.config
    }

    fn next_stan(&self) -> String {
        let stan = self.stan.fetch_add(1, Ordering::Relaxed) % 999_999 + 1;
        format!("{stan:06}")
    }

    /// The terminal's half of the cryptogram input for `amount`: today's date, a fresh
    /// unpredictable number.
    pub fn terminal_data(&self, amount: Money) -> TerminalData {
        let (_, _, _, date) = wire_times(self.clock.now_millis());
        let mut unpredictable_number = [0u8; 4];
        self.random.fill(&mut unpredictable_number);
        TerminalData {
            amount: amount.minor_units(),
            other_amount: 0,
            country: 156,
            currency: amount.currency().numeric(),
            tvr: [0; 5],
            date,
            transaction_type: 0,
            unpredictable_number,
        }
    }

    /// Whether the terminal asks for the PIN on a tap of `amount`: above the acquirer's
    /// no-PIN limit or the card's, unless the phone verified the cardholder (CDCVM).
    pub fn asks_for_pin(&self, amount: Money, card_limit: Option<Money>, cdcvm: bool) -> bool {
        if cdcvm {
            return false;
        }
        let over = |limit: Money| {
            limit.currency() != amount.currency() || amount.minor_units() > limit.minor_units()
        };
        over(self.config.no_pin_limit) || card_limit.is_none_or(over)
    }

    fn header(&self, mti: Mti) -> Message<'static> {
        let (transmission_time, local_time, local_date, _) = wire_times(self.clock.now_millis());
        let mut message = Message::new(mti);
        message
            .set_text(7, transmission_time)
            .set_text(11, self.next_stan())
            .set_text(12, local_time)
            .set_text(13, local_date)
            .set_text(32, self.config.acquirer_id.clone())
            .set_text(41, self.config.terminal_id.clone())
            .set_text(42, self.config.merchant_id.clone());
        message
    }

    /// Sends a message MACed under the terminal's MAC key (when it has one).
    async fn send(&self, mut message: Message<'static>) -> Result<Message<'static>, PosError> {
        let keys = *self.keys.read().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = keys {
            let field = if message.fields().any(|(number, _)| number > 64) {
                128
            } else {
                64
            };
            message.set(field, vec![0u8; 8]);
            let bytes = profile::cloudpass()
                .encode(&message)
                .map_err(|e| PosError::Message(e.to_string()))?;
            let mac = self.hsm.generate_mac(keys.mac, &bytes[..bytes.len() - 8])?;
            message.set(field, mac.to_vec());
        }
        Ok(self.link.request(&message).await?)
    }

    /// Whether an answer's MAC (if any) is right.
    fn answer_mac_ok(&self, answer: &Message<'_>) -> bool {
        let keys = *self.keys.read().unwrap_or_else(|p| p.into_inner());
        let (Some(keys), Some(field)) =
            (keys, [128u8, 64].into_iter().find(|f| answer.contains(*f)))
        else {
            return true;
        };
        let Some(mac) = answer.get(field) else {
            return true;
        };
        match profile::cloudpass().encode(answer) {
            Ok(bytes) => self
                .hsm
                .verify_mac(keys.mac, &bytes[..bytes.len() - 8], mac)
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Signs on: the switch sends new PIN and MAC keys under the terminal's master key.
    pub async fn sign_on(&self) -> Result<(), PosError> {
        let mut request = self.header(Mti::NETWORK_REQUEST);
        request.set_text(53, "2600000000000000").set_text(70, "001");
        let answer = self.link.request(&request).await?;
        let code = answer.get_str(39).unwrap_or("");
        if code != ResponseCode::Approved.code() {
            return Err(PosError::SignOnRefused(match ResponseCode::parse(code) {
                Some(known) => known.to_string(),
                None => format!("response code {code:?}"),
            }));
        }
        let field62 = answer
            .get(62)
            .ok_or(PosError::SignOnMalformed("no field 62"))?;
        if field62.len() != 40 {
            return Err(PosError::SignOnMalformed("field 62 is not 40 bytes"));
        }
        let load = |part: &[u8], usage| -> Result<KeyHandle, PosError> {
            let mut check = [0u8; 3];
            check.copy_from_slice(&part[16..19]);
            Ok(self.hsm.import_under_kek(
                self.master,
                usage,
                &part[..16],
                Some(CheckValue(check)),
            )?)
        };
        let keys = WorkingKeys {
            pin: load(&field62[..20], KeyUsage::PinEncryption)?,
            mac: load(&field62[20..], KeyUsage::MessageAuthentication)?,
        };
        let old = self
            .keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(keys);
        if let Some(old) = old {
            let _ = self.hsm.release(old.pin);
            let _ = self.hsm.release(old.mac);
        }
        Ok(())
    }

    /// Sends one purchase and, if no answer comes, reverses it.
    pub async fn purchase(&self, purchase: &Purchase<'_>) -> Result<Outcome, PosError> {
        self.financial(purchase, "000000").await
    }

    /// Loads the card's e-cash from its account (圈存, processing code 600000): online, with
    /// the cardholder's PIN (or payment password in the app).
    pub async fn load_ecash(&self, load: &Purchase<'_>) -> Result<Outcome, PosError> {
        self.financial(load, "600000").await
    }

    /// The advice of an offline e-cash spend (0220), numbered now, for the batch the
    /// acquirer uploads later.
    pub fn offline_advice(
        &self,
        token: &Token,
        token_expiry: Expiry,
        spend: &OfflineSpend,
    ) -> Result<Message<'static>, PosError> {
        let mut advice = self.header(Mti::FINANCIAL_ADVICE);
        let mut field60 = Positional::new(60, FIELD_60);
        for (name, value) in [
            ("60.1", "0000"),
            ("60.2.2", values::READ_CAPABILITY_CONTACTLESS),
            ("60.2.5", values::TERMINAL_TYPE_POS),
            ("60.3.6", values::MEDIUM_IC),
            ("60.3.7", values::IC_APPLICATION_ECASH),
        ] {
            field60
                .set(name, value)
                .map_err(|e| PosError::Message(e.to_string()))?;
        }
        let stan = advice.get_str(11).unwrap_or("").to_owned();
        let time = advice.get_str(7).unwrap_or("").to_owned();
        advice
            .set_text(2, token.expose())
            .set_text(3, "000000")
            .set_text(
                4,
                spend
                    .amount
                    .to_wire()
                    .map_err(|e| PosError::Message(e.to_string()))?,
            )
            .set_text(14, token_expiry.to_wire())
            .set_text(18, self.config.merchant_category.clone())
            .set_text(22, "072")
            .set_text(25, "00")
            .set_text(35, spend.track2.clone())
            .set_text(37, format!("{}{stan}", &time[4..10]))
            .set_text(43, self.config.merchant_name.clone())
            .set_text(49, spend.amount.currency().numeric_code())
            .set(55, spend.field55.clone())
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

    async fn financial(
        &self,
        purchase: &Purchase<'_>,
        processing_code: &str,
    ) -> Result<Outcome, PosError> {
        let mut request = self.header(Mti::FINANCIAL_REQUEST);
        let amount = purchase
            .amount
            .to_wire()
            .map_err(|e| PosError::Message(e.to_string()))?;
        let mut field60 = Positional::new(60, FIELD_60);
        let set = |field: &mut Positional, name: &str, value: &str| {
            field
                .set(name, value)
                .map(|_| ())
                .map_err(|e| PosError::Message(e.to_string()))
        };
        set(&mut field60, "60.1", "0000")?;
        let pin_digit = if purchase.pin.is_some() { '1' } else { '2' };
        match purchase.presentment {
            Presentment::Contactless { track2 } => {
                set(&mut field60, "60.2.2", values::READ_CAPABILITY_CONTACTLESS)?;
                set(&mut field60, "60.2.5", values::TERMINAL_TYPE_POS)?;
                set(&mut field60, "60.3.6", values::MEDIUM_IC)?;
                set(&mut field60, "60.3.7", values::IC_APPLICATION_PBOC)?;
                request
                    .set_text(22, format!("07{pin_digit}"))
                    .set_text(25, "00")
                    .set_text(35, track2.to_owned());
            }
            Presentment::InApp => {
                set(&mut field60, "60.2.5", values::TERMINAL_TYPE_MOBILE)?;
                set(&mut field60, "60.2.8", values::ECI_DEVICE_CRYPTOGRAM)?;
                set(&mut field60, "60.3.6", values::MEDIUM_VIRTUAL)?;
                request
                    .set_text(22, format!("01{pin_digit}"))
                    .set_text(25, "42");
            }
        }
        request
            .set_text(2, purchase.token.expose())
            .set_text(3, processing_code.to_owned())
            .set_text(4, amount)
            .set_text(14, purchase.token_expiry.to_wire())
            .set_text(18, self.config.merchant_category.clone())
            .set_text(43, self.config.merchant_name.clone())
            .set_text(49, purchase.amount.currency().numeric_code())
            .set(55, purchase.field55.to_vec())
            .set_text(60, field60.to_string());
        let stan = request.get_str(11).unwrap_or("").to_owned();
        let transmission_time = request.get_str(7).unwrap_or("").to_owned();
        let rrn = format!("{}{stan}", &transmission_time[4..10]);
        request.set_text(37, rrn.clone());
        if let Some(pin) = purchase.pin {
            let keys = (*self.keys.read().unwrap_or_else(|p| p.into_inner()))
                .ok_or(PosError::NotSignedOn)?;
            let block =
                self.hsm
                    .encrypt_pin(pin, keys.pin, PinBlockFormat::Iso0, purchase.token)?;
            request.set(52, block).set_text(53, "2600000000000000");
        }
        let mut outcome = Outcome {
            response_code: None,
            auth_code: None,
            stan,
            transmission_time,
            rrn,
            arpc: false,
            mac_ok: true,
            reversal: None,
        };
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
            Err(PosError::Link(LinkError::Timeout)) => {
                outcome.reversal = self.reverse(&request).await;
            }
            Err(error) => return Err(error),
        }
        Ok(outcome)
    }

    /// Reverses a request that got no answer, repeating until acknowledged; the
    /// acknowledgement's field 39, or `None` if none came.
    pub async fn reverse(&self, original: &Message<'_>) -> Option<String> {
        let data = OriginalData {
            mti: original.mti().as_str().to_owned(),
            stan: original.get_str(11).unwrap_or("").to_owned(),
            transmission_time: original.get_str(7).unwrap_or("").to_owned(),
            acquirer: self.config.acquirer_id.clone(),
            forwarder: String::new(),
        };
        let Ok(field90) = data.to_wire() else {
            return None;
        };
        let mut reversal = self.header(Mti::REVERSAL_REQUEST);
        for field in [2, 3, 4, 14, 22, 25, 37, 49] {
            if let Some(value) = original.get(field) {
                reversal.set(field, value.to_vec());
            }
        }
        let mut field60 = Positional::new(60, FIELD_60);
        let _ = field60.set("60.1", "4021");
        reversal
            .set_text(60, field60.to_string())
            .set_text(90, field90);
        for attempt in 0..self.config.reversal_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
            }
            if let Ok(answer) = self.send(reversal.clone()).await {
                return answer.get_str(39).map(str::to_owned);
            }
        }
        None
    }
}

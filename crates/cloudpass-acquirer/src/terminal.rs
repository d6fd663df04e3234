//! A terminal's identity, its key store and numbering, and how its messages are MACed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use cloudpass_core::{Clock, Money, Random, Stan};
use cloudpass_crypto::{Hsm, KeyHandle, KeyUsage, MasterKey, SoftHsm};
use cloudpass_iso8583::exchange::{Exchange, LinkError};
use cloudpass_iso8583::{Message, Mti, profile};

use crate::pending::{InMemoryReversals, PendingReversals};
use crate::wire_time::wire_times;

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
pub enum AcquirerError {
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

impl AcquirerError {
    pub(crate) fn message(error: impl std::fmt::Display) -> Self {
        AcquirerError::Message(error.to_string())
    }
}

/// The working keys a sign-on loads.
#[derive(Clone, Copy)]
pub(crate) struct WorkingKeys {
    pub pin: KeyHandle,
    pub mac: KeyHandle,
}

/// One terminal of an acquirer, linked to the switch.
pub struct Terminal {
    pub(crate) config: TerminalConfig,
    pub(crate) hsm: SoftHsm,
    pub(crate) master: KeyHandle,
    pub(crate) keys: RwLock<Option<WorkingKeys>>,
    pub(crate) link: Arc<dyn Exchange>,
    stan: AtomicU32,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn Random>,
    /// Reversals the switch has not acknowledged (see `pending`).
    pub(crate) pending: Arc<dyn PendingReversals>,
}

impl Terminal {
    /// A terminal whose master key (from the key ceremony) is `master_key`, reaching the
    /// switch through `link`.
    pub fn new(
        config: TerminalConfig,
        master_key: &[u8],
        link: Arc<dyn Exchange>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Result<Self, AcquirerError> {
        let hsm = SoftHsm::new(MasterKey::generate(random.as_ref()), Arc::clone(&random));
        let master = hsm.import_clear(KeyUsage::TerminalMaster, master_key)?;
        // Two terminals with the same acquirer ID (or a terminal restarted) must not reuse a
        // STAN at the same second: start somewhere random.
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
            pending: Arc::new(InMemoryReversals::default()),
        })
    }

    /// The same terminal keeping its unacknowledged reversals in `store` (in memory unless
    /// given).
    pub fn with_pending_reversals(mut self, store: Arc<dyn PendingReversals>) -> Self {
        self.pending = store;
        self
    }

    pub fn config(&self) -> &TerminalConfig {
        &self.config
    }

    /// The instant now, as the clock gives it.
    pub fn now_millis(&self) -> i64 {
        self.clock.now_millis()
    }

    /// The randomness the terminal was given (the POS uses it for unpredictable numbers).
    pub fn random(&self) -> &dyn Random {
        self.random.as_ref()
    }

    fn next_stan(&self) -> Stan {
        Stan::from_counter(self.stan.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn working_keys(&self) -> Option<WorkingKeys> {
        *self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A new message of `mti` with the fields every message of this terminal carries: times
    /// (7, 12, 13), a fresh STAN (11), acquirer (32), terminal (41) and merchant (42).
    pub(crate) fn header(&self, mti: Mti) -> Message<'static> {
        let times = wire_times(self.clock.now_millis());
        let mut message = Message::new(mti);
        message
            .set_text(7, times.transmission)
            .set_text(11, self.next_stan().to_string())
            .set_text(12, times.local_time)
            .set_text(13, times.local_date)
            .set_text(32, self.config.acquirer_id.clone())
            .set_text(41, self.config.terminal_id.clone())
            .set_text(42, self.config.merchant_id.clone());
        message
    }

    /// Sends a message MACed under the terminal's MAC key (when it has one): field 64, or
    /// 128 when a secondary bitmap is present, over everything before it.
    pub(crate) async fn send(
        &self,
        mut message: Message<'static>,
    ) -> Result<Message<'static>, AcquirerError> {
        if let Some(keys) = self.working_keys() {
            let field = if message.fields().any(|(number, _)| number > 64) {
                128
            } else {
                64
            };
            message.set(field, vec![0u8; 8]);
            let bytes = profile::cloudpass()
                .encode(&message)
                .map_err(AcquirerError::message)?;
            let mac = self.hsm.generate_mac(keys.mac, &bytes[..bytes.len() - 8])?;
            message.set(field, mac.to_vec());
        }
        Ok(self.link.request(&message).await?)
    }

    /// Whether an answer's MAC (if any) is right.
    pub(crate) fn answer_mac_ok(&self, answer: &Message<'_>) -> bool {
        let (Some(keys), Some(field)) = (
            self.working_keys(),
            [128u8, 64].into_iter().find(|f| answer.contains(*f)),
        ) else {
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
}

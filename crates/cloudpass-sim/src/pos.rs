//! The POS stand-in: a terminal device in front of the platform's acquirer client
//! (`cloudpass-acquirer`), which builds and sends every message. What is the device's own is
//! here: the terminal's half of the cryptogram input (today's date, an unpredictable
//! number) and whether it asks the cardholder for a PIN.

use std::sync::Arc;

use cloudpass_acquirer::Terminal;
pub use cloudpass_acquirer::{
    AcquirerError as PosError, CardReturn, EcommerceTerminal, Exchange, OfflineSpendAdvice,
    OriginalPurchase, Outcome, Presentment, Purchase, ReturnKind, TerminalConfig,
};
use cloudpass_core::{Clock, Expiry, Money, Random, Token};
use cloudpass_iso8583::Message;
use cloudpass_iso8583::emv_data::TerminalData;

use crate::phone::OfflineSpend;

pub struct Pos {
    terminal: Terminal,
}

impl Pos {
    /// A terminal whose master key (from the key ceremony) is `master_key`, reaching the
    /// switch through `link`.
    pub fn new(
        config: TerminalConfig,
        master_key: &[u8],
        link: Arc<dyn Exchange>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Result<Self, PosError> {
        Ok(Self {
            terminal: Terminal::new(config, master_key, link, clock, random)?,
        })
    }

    /// The acquirer's client inside the device: sign-on, purchases, reversals, uploads.
    pub fn terminal(&self) -> &Terminal {
        &self.terminal
    }

    pub fn config(&self) -> &TerminalConfig {
        self.terminal.config()
    }

    /// The terminal's half of the cryptogram input for `amount`: today's date, a fresh
    /// unpredictable number.
    pub fn terminal_data(&self, amount: Money) -> TerminalData {
        let days = self.terminal.now_millis().div_euclid(86_400_000);
        let (year, month, day) = cloudpass_core::clock::civil_from_days(days);
        let bcd = |n: i64| {
            let n = u8::try_from(n.rem_euclid(100)).unwrap_or(0);
            ((n / 10) << 4) | (n % 10)
        };
        let mut unpredictable_number = [0u8; 4];
        self.terminal.random().fill(&mut unpredictable_number);
        TerminalData {
            amount: amount.minor_units(),
            other_amount: 0,
            country: 156,
            currency: amount.currency().numeric(),
            tvr: [0; 5],
            date: [bcd(year), bcd(i64::from(month)), bcd(i64::from(day))],
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
        over(self.config().no_pin_limit) || card_limit.is_none_or(over)
    }

    pub async fn sign_on(&self) -> Result<(), PosError> {
        self.terminal.sign_on().await
    }

    pub async fn purchase(&self, purchase: &Purchase<'_>) -> Result<Outcome, PosError> {
        self.terminal.purchase(purchase).await
    }

    pub async fn load_ecash(&self, load: &Purchase<'_>) -> Result<Outcome, PosError> {
        self.terminal.load_ecash(load).await
    }

    /// The advice of an offline spend the phone approved, for the batch uploaded later.
    pub fn offline_advice(
        &self,
        token: &Token,
        token_expiry: Expiry,
        spend: &OfflineSpend,
    ) -> Result<Message<'static>, PosError> {
        self.terminal.offline_advice(&OfflineSpendAdvice {
            account: token,
            expiry: token_expiry,
            amount: spend.amount,
            track2: &spend.track2,
            field55: &spend.field55,
        })
    }

    pub async fn upload(&self, batch: &[Message<'static>]) -> Vec<Option<String>> {
        self.terminal.upload(batch).await
    }

    pub async fn reverse(&self, original: &Message<'_>) -> Option<String> {
        self.terminal.reverse(original).await
    }
}

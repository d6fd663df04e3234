//! The POS stand-in: a terminal device in front of the platform's acquirer client
//! (`cloudpass-acquirer`), which builds and sends every message. What is the device's own is
//! here: the terminal's half of the cryptogram input (today's date, an unpredictable
//! number) and whether it asks the cardholder for a PIN.

use std::sync::Arc;

use cloudpass_acquirer::Terminal;
pub use cloudpass_acquirer::{
    AcquirerError as PosError, CardReturn, EcommerceTerminal, Exchange, OfflineSpendAdvice,
    OriginalPurchase, Outcome, PendingReversal, PendingReversals, Presentment, Purchase,
    ReturnKind, TerminalConfig,
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

    /// The same device keeping its unacknowledged reversals in `store`.
    pub fn with_pending_reversals(self, store: Arc<dyn PendingReversals>) -> Self {
        Self {
            terminal: self.terminal.with_pending_reversals(store),
        }
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

/// A terminal's unacknowledged reversals in a JSON file (`[{stan, transmission_time,
/// amount, currency}]`, amounts in minor units), written whole to a temporary file and
/// renamed over the old one, so a crash leaves the old list or the new one. It names each
/// purchase by STAN, time and amount only.
pub struct FileReversals {
    path: std::path::PathBuf,
    kept: std::sync::Mutex<Vec<PendingReversal>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeptReversal {
    stan: String,
    transmission_time: String,
    amount: u64,
    currency: u16,
}

impl FileReversals {
    /// The reversals kept at `path` (none when there is no file yet).
    pub fn open(path: std::path::PathBuf) -> std::io::Result<FileReversals> {
        let kept = match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<KeptReversal> = serde_json::from_slice(&bytes)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                list.into_iter()
                    .map(|k| {
                        let currency = cloudpass_core::Currency::from_numeric(k.currency)
                            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                        Ok(PendingReversal {
                            stan: k.stan,
                            transmission_time: k.transmission_time,
                            amount: Money::new(k.amount, currency),
                        })
                    })
                    .collect::<std::io::Result<Vec<_>>>()?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        Ok(FileReversals {
            path,
            kept: std::sync::Mutex::new(kept),
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn save(&self, kept: &[PendingReversal]) -> std::io::Result<()> {
        let list: Vec<KeptReversal> = kept
            .iter()
            .map(|r| KeptReversal {
                stan: r.stan.clone(),
                transmission_time: r.transmission_time.clone(),
                amount: r.amount.minor_units(),
                currency: r.amount.currency().numeric(),
            })
            .collect();
        let bytes = serde_json::to_vec_pretty(&list)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = self.path.with_extension("json.new");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)
    }
}

impl PendingReversals for FileReversals {
    fn keep(&self, reversal: &PendingReversal) -> std::io::Result<()> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if !kept.contains(reversal) {
            kept.push(reversal.clone());
            self.save(&kept)?;
        }
        Ok(())
    }

    fn acknowledged(&self, stan: &str, transmission_time: &str) -> std::io::Result<()> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let before = kept.len();
        kept.retain(|r| !(r.stan == stan && r.transmission_time == transmission_time));
        if kept.len() != before {
            self.save(&kept)?;
        }
        Ok(())
    }

    fn pending(&self) -> Vec<PendingReversal> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod file_reversal_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cloudpass_core::Currency;

    #[test]
    fn kept_reversals_survive_a_reopen_and_go_once_acknowledged() {
        let dir = std::env::temp_dir().join(format!("cp-reversals-{}", std::process::id()));
        let path = dir.join("CPPOS001-reversals.json");
        let _ = std::fs::remove_file(&path);
        let first = PendingReversal {
            stan: "000123".into(),
            transmission_time: "1204123456".into(),
            amount: Money::new(1_250, Currency::CNY),
        };
        let second = PendingReversal {
            stan: "000124".into(),
            ..first.clone()
        };
        let store = FileReversals::open(path.clone()).unwrap();
        assert!(store.pending().is_empty());
        store.keep(&first).unwrap();
        store.keep(&second).unwrap();
        store.keep(&first).unwrap();
        let reopened = FileReversals::open(path.clone()).unwrap();
        assert_eq!(reopened.pending(), vec![first.clone(), second.clone()]);
        reopened.acknowledged("000123", "1204123456").unwrap();
        assert_eq!(
            FileReversals::open(path.clone()).unwrap().pending(),
            vec![second]
        );
        std::fs::write(&path, b"not json").unwrap();
        assert!(FileReversals::open(path.clone()).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}

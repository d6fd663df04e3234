//! `cloudpass pos …`: a sandbox terminal and a phone, against a running `cloudpass serve`.
//!
//! The phone is kept in `<data-dir>/phones/<device>.json`: its key pair, the sealed card
//! profiles the token service sent it and its ATC. The first payment with a new `--device`
//! registers that device with the token service (as the `--wallet`) and provisions `--card`
//! onto it; later ones reuse it. The terminal is a sandbox terminal: it signs on with the
//! sandbox terminal master key from the data directory, then sends one purchase.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use cloudpass::app::TERMINAL_MASTER_KEY_FILE;
use cloudpass::data_dir;
use cloudpass::sandbox;
use cloudpass_core::ResponseCode;
use cloudpass_core::{AccountNumber, Currency, Money, SystemClock, hex};
use cloudpass_crypto::{DeviceKeyPair, OsRandom, Pin};
use cloudpass_iso8583::link::Link;
use cloudpass_iso8583::{Message, profile};
use cloudpass_sim::phone::{Phone, envelope_from_json};
use cloudpass_sim::pos::{FileReversals, Outcome, Pos, Presentment, Purchase, TerminalConfig};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::CliResult;

#[derive(Subcommand)]
pub enum PosCommand {
    /// A phone taps the terminal (NFC); the terminal sends the purchase to the switch.
    Tap {
        #[command(flatten)]
        common: Common,
        /// The PIN the cardholder types when the terminal asks for it.
        #[arg(long)]
        pin: Option<String>,
        /// The cardholder unlocked the phone (passcode or biometric) for this payment.
        #[arg(long)]
        cdcvm: bool,
    },
    /// An in-app purchase: the phone's cryptogram, sent by the merchant's acquirer as
    /// e-commerce.
    InApp {
        #[command(flatten)]
        common: Common,
        /// The payment password, which the app asks for above the online no-PIN limit.
        #[arg(long)]
        password: Option<String>,
    },
    /// Loads the phone's e-cash (UPCash) from the card's account, online (圈存).
    EcashLoad {
        #[command(flatten)]
        common: Common,
        /// The payment password: a load always needs it.
        #[arg(long)]
        password: Option<String>,
    },
    /// An offline e-cash tap: the phone approves it from its e-cash balance; the terminal
    /// keeps it in its batch for `pos upload`.
    Offline {
        #[command(flatten)]
        common: Common,
    },
    /// The terminal uploads its batch of offline spends to the switch for clearing.
    Upload {
        #[arg(long, default_value = "CPPOS001")]
        terminal: String,
        #[arg(long, default_value = "127.0.0.1:8583")]
        switch: SocketAddr,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
}

#[derive(Args)]
pub struct Common {
    /// The phone (created and provisioned on first use).
    #[arg(long, default_value = "my-phone")]
    device: String,
    /// Amount in yuan, e.g. 12.50.
    #[arg(long)]
    amount: String,
    /// The card to provision onto a new device (a sandbox test card).
    #[arg(long, default_value = sandbox::DEFAULT_PHONE_CARD)]
    card: String,
    /// Its expiry, YYMM.
    #[arg(long, default_value = "2912")]
    expiry: String,
    /// The wallet of a new device: apple, huawei, xiaomi, samsung or quickpass.
    #[arg(long, default_value = "apple")]
    wallet: String,
    /// The kind of a new device: handset_se, wearable or hce.
    #[arg(long, default_value = "handset_se")]
    kind: String,
    /// The sandbox terminal.
    #[arg(long, default_value = "CPPOS001")]
    terminal: String,
    /// The switch's ISO 8583 port.
    #[arg(long, default_value = "127.0.0.1:8583")]
    switch: SocketAddr,
    /// The token service's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// `cloudpass serve`'s data directory (the sandbox terminal master key is there).
    #[arg(long, default_value = "cloudpass-data")]
    data_dir: PathBuf,
}

pub fn run(command: PosCommand) -> CliResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        match command {
            PosCommand::Tap { common, pin, cdcvm } => pay(&common, Mode::Tap { pin, cdcvm }).await,
            PosCommand::InApp { common, password } => pay(&common, Mode::InApp { password }).await,
            PosCommand::EcashLoad { common, password } => {
                pay(&common, Mode::Load { password }).await
            }
            PosCommand::Offline { common } => pay(&common, Mode::Offline).await,
            PosCommand::Upload {
                terminal,
                switch,
                data_dir,
            } => upload(&terminal, switch, &data_dir).await,
        }
    })
}

enum Mode {
    Tap { pin: Option<String>, cdcvm: bool },
    InApp { password: Option<String> },
    Load { password: Option<String> },
    Offline,
}

/// The phone as saved between runs.
struct SavedPhone {
    device_id: String,
    wallet_key: String,
    keys: DeviceKeyPair,
    token_id: String,
    envelopes: Vec<Value>,
    atc: u16,
    /// The e-cash balance in fen, if the card has e-cash.
    ecash: Option<u64>,
}

impl SavedPhone {
    fn path(data_dir: &Path, device: &str) -> PathBuf {
        data_dir.join("phones").join(format!("{device}.json"))
    }

    fn load(path: &Path) -> Result<Option<SavedPhone>, String> {
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        let bad = |what: &str| format!("{}: bad or missing \"{what}\"", path.display());
        let text_of = |name: &str| {
            value[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(name))
        };
        let secret: [u8; 32] = hex::decode_array(&text_of("device_secret_key")?)
            .map_err(|_| bad("device_secret_key"))?;
        Ok(Some(SavedPhone {
            device_id: text_of("device_id")?,
            wallet_key: text_of("wallet_api_key")?,
            keys: DeviceKeyPair::from_secret(secret),
            token_id: text_of("token_id")?,
            envelopes: value["card_profiles"]
                .as_array()
                .cloned()
                .filter(|list| !list.is_empty())
                .ok_or_else(|| bad("card_profiles"))?,
            atc: value["atc"]
                .as_u64()
                .and_then(|atc| u16::try_from(atc).ok())
                .ok_or_else(|| bad("atc"))?,
            ecash: value["ecash_balance"].as_u64(),
        }))
    }

    fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            data_dir::create_private_dir(dir)?;
        }
        let document = json!({
            "device_id": self.device_id,
            "wallet_api_key": self.wallet_key,
            "device_secret_key": hex::encode(&self.keys.secret_bytes()[..]),
            "token_id": self.token_id,
            "card_profiles": self.envelopes,
            "atc": self.atc,
            "ecash_balance": self.ecash,
        });
        // Replaced whole: a crash never leaves a phone that reuses an ATC.
        data_dir::write_private(path, document.to_string().as_bytes())
    }

    fn open(&self) -> Result<Phone, String> {
        let first = envelope_from_json(&self.envelopes[0]).map_err(|e| e.to_string())?;
        let mut phone = Phone::provision(&self.keys, &self.token_id, &first)
            .map_err(|e| format!("the phone cannot open its card profile: {e}"))?;
        for later in &self.envelopes[1..] {
            let envelope = envelope_from_json(later).map_err(|e| e.to_string())?;
            phone
                .replenish(&self.keys, &envelope)
                .map_err(|e| format!("the phone cannot open its new keys: {e}"))?;
        }
        phone.restore_atc(self.atc);
        if let Some(fen) = self.ecash {
            phone.restore_ecash(fen);
        }
        Ok(phone)
    }
}

pub(super) async fn api(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    body: Value,
) -> Result<Value, String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let response = client
        .post(&url)
        .bearer_auth(key)
        .header("Idempotency-Key", format!("cli-{}", random_id()))
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            format!("cannot reach the token service at {base} ({e}); is `cloudpass serve` running?")
        })?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!(
            "token service: {} {}: {}",
            status.as_u16(),
            value["code"].as_str().unwrap_or(""),
            value["message"].as_str().unwrap_or("")
        ))
    }
}

fn random_id() -> String {
    format!("{:016x}", cloudpass_core::Random::next_u64(&OsRandom))
}

/// A new device with the card on it, saved.
async fn provision(common: &Common, path: &Path) -> Result<SavedPhone, String> {
    let wallet = sandbox::WALLETS
        .iter()
        .find(|w| w.wallet == common.wallet)
        .ok_or_else(|| {
            format!(
                "unknown wallet {:?}: one of {}",
                common.wallet,
                sandbox::WALLETS
                    .iter()
                    .map(|w| w.wallet)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let client = reqwest::Client::new();
    let keys = DeviceKeyPair::generate(&OsRandom);
    let device_id = format!("cli-{}-{}", common.device, random_id());
    api(
        &client,
        &common.api,
        wallet.api_key,
        "/tsp/v1/devices",
        json!({"device_id": device_id, "kind": common.kind, "brand": "cloudpass-cli",
               "account_id": sandbox::ACCOUNT_ID, "unlock_set": true,
               "public_key": hex::encode(&keys.public_key())}),
    )
    .await?;
    let answer = api(
        &client,
        &common.api,
        wallet.api_key,
        "/tsp/v1/tokens",
        json!({"device_id": device_id, "account_id": sandbox::ACCOUNT_ID,
               "card": {"number": common.card, "expiry": common.expiry}, "ecash": true}),
    )
    .await?;
    if answer["decision"] != "green" || answer["card_profile"].is_null() {
        return Err(format!(
            "the card was not approved for this device at once (decision {}); provision it \
             through the API (docs/tsp-api.md) or use a green sandbox card",
            answer["decision"]
        ));
    }
    let saved = SavedPhone {
        device_id,
        wallet_key: wallet.api_key.to_owned(),
        keys,
        token_id: answer["token"]["token_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        envelopes: vec![answer["card_profile"].clone()],
        atc: 0,
        ecash: Some(0),
    };
    saved.save(path)?;
    println!(
        "provisioned card …{} onto {} ({}, {}) as token {} (…{})",
        answer["token"]["card_last4"].as_str().unwrap_or(""),
        common.device,
        wallet.name,
        common.kind,
        saved.token_id,
        answer["token"]["token_last4"].as_str().unwrap_or("")
    );
    Ok(saved)
}

/// The sandbox terminal: its master key from the data directory, linked to the switch and
/// (when `online`) signed on.
pub(super) async fn open_terminal(
    terminal: &str,
    switch: SocketAddr,
    data_dir: &Path,
    online: bool,
) -> Result<(Pos, watch::Sender<bool>), String> {
    let master_path = data_dir.join(TERMINAL_MASTER_KEY_FILE);
    let master = std::fs::read_to_string(&master_path).map_err(|e| {
        format!(
            "cannot read the sandbox terminal master key {} ({e}); run this where `cloudpass serve` keeps its data, or pass --data-dir",
            master_path.display()
        )
    })?;
    let master = hex::decode(master.trim())
        .map_err(|_| format!("{} must hold hex digits", master_path.display()))?;
    let (stop, stopped) = watch::channel(false);
    let link = Link::start(switch, Duration::from_secs(15), stopped);
    if online {
        let mut up = false;
        for _ in 0..60 {
            if link.is_up().await {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !up {
            return Err(format!(
                "cannot reach the switch at {switch}; is `cloudpass serve` running?"
            ));
        }
    }
    let reversals_path = data_dir
        .join("terminals")
        .join(format!("{terminal}-reversals.json"));
    let reversals = FileReversals::open(reversals_path.clone())
        .map_err(|e| format!("cannot read {}: {e}", reversals_path.display()))?;
    let pos = Pos::new(
        terminal_config(terminal),
        &master,
        link,
        Arc::new(SystemClock),
        Arc::new(OsRandom),
    )
    .map_err(|e| e.to_string())?
    .with_pending_reversals(Arc::new(reversals));
    if online {
        pos.sign_on()
            .await
            .map_err(|e| format!("terminal {terminal}: {e}"))?;
        send_kept_reversals(&pos, terminal).await;
    }
    Ok((pos, stop))
}

/// Sends the reversals the terminal kept from an earlier run, before anything else.
async fn send_kept_reversals(pos: &Pos, terminal: &str) {
    for (reversal, answer) in pos.terminal().flush_reversals().await {
        let what = format!(
            "terminal {terminal} sent again the reversal of STAN {} ({})",
            reversal.stan,
            describe(reversal.amount)
        );
        match answer.as_deref() {
            Some("00") => println!("{what}: reversed (00)"),
            Some("25") => {
                println!("{what}: the switch never saw the purchase (25); nothing to undo")
            }
            Some(code) if !matches!(code, "A0" | "96") => println!("{what}: answered {code}"),
            _ => println!("{what}: still not acknowledged; kept for the next run"),
        }
    }
}

fn terminal_config(terminal: &str) -> TerminalConfig {
    TerminalConfig {
        terminal_id: terminal.to_owned(),
        merchant_id: sandbox::MERCHANT_ID.into(),
        merchant_category: sandbox::MERCHANT_CATEGORY.into(),
        merchant_name: sandbox::MERCHANT_NAME.into(),
        acquirer_id: sandbox::ACQUIRER_ID.into(),
        no_pin_limit: Money::new(100_000, Currency::CNY),
        reversal_attempts: 5,
    }
}

async fn pay(common: &Common, mode: Mode) -> CliResult {
    let amount = Money::parse_decimal(&common.amount, Currency::CNY)
        .map_err(|e| format!("--amount {}: {e}", common.amount))?;
    if amount.is_zero() {
        return Err("--amount must be more than zero".into());
    }
    let path = SavedPhone::path(&common.data_dir, &common.device);
    let mut saved = match SavedPhone::load(&path)? {
        Some(saved) => saved,
        None => provision(common, &path).await?,
    };
    let mut phone = saved.open()?;
    // An HCE phone asks for new limited-use keys when it runs low.
    if phone.keys_left().is_some_and(|left| left <= 2) {
        let answer = api(
            &reqwest::Client::new(),
            &common.api,
            &saved.wallet_key,
            &format!("/tsp/v1/tokens/{}/keys", saved.token_id),
            json!({}),
        )
        .await?;
        saved.envelopes.push(answer["card_profile"].clone());
        saved.save(&path)?;
        phone = saved.open()?;
        println!("the phone fetched new limited-use keys");
    }

    let online = !matches!(mode, Mode::Offline);
    let (pos, _stop) =
        open_terminal(&common.terminal, common.switch, &common.data_dir, online).await?;

    let terminal_data = pos.terminal_data(amount);
    let (field55, presentment_track2, pin, what) = match &mode {
        Mode::Tap { pin, cdcvm } => {
            if pin.is_none() && pos.asks_for_pin(amount, phone.contactless_no_pin_limit(), *cdcvm) {
                println!(
                    "the terminal asks for the PIN ({} is over the no-PIN limit); sending without one",
                    describe(amount)
                );
            }
            let tap = phone
                .tap(&terminal_data, *cdcvm)
                .map_err(|e| e.to_string())?;
            (tap.field55, Some(tap.track2), pin.clone(), "tap")
        }
        Mode::Offline => {
            let spend = phone
                .offline_tap(&terminal_data)
                .map_err(|e| e.to_string())?;
            saved.atc = phone.atc();
            saved.ecash = phone.ecash_balance().map(|m| m.minor_units());
            saved.save(&path)?;
            let advice = pos
                .offline_advice(phone.token(), phone.expiry(), &spend)
                .map_err(|e| e.to_string())?;
            let waiting = Batch::append(&common.data_dir, &common.terminal, &advice)?;
            println!(
                "APPROVED OFFLINE by the card: {} from e-cash (balance now {}), STAN {}; terminal {} holds {waiting} spend(s) to upload (`cloudpass pos upload`)",
                describe(amount),
                phone.ecash_balance().map(describe).unwrap_or_default(),
                advice.get_str(11).unwrap_or(""),
                common.terminal
            );
            return Ok(());
        }
        Mode::Load { password } => {
            let Some(password) = password else {
                return Err(
                    "a load of e-cash always needs the payment password: pass --password".into(),
                );
            };
            if phone.ecash_balance().is_none() {
                return Err("this device card has no e-cash (provision a new --device)".into());
            }
            let cryptogram = phone
                .in_app(&terminal_data, false)
                .map_err(|e| e.to_string())?;
            (
                cryptogram.field55,
                None,
                Some(password.clone()),
                "e-cash load",
            )
        }
        Mode::InApp { password } => {
            let cryptogram = phone
                .in_app(&terminal_data, false)
                .map_err(|e| e.to_string())?;
            if cryptogram.needs_password && password.is_none() {
                saved.atc = phone.atc();
                saved.save(&path)?;
                return Err(format!(
                    "the app asks for the payment password: {} is over the online no-PIN limit{}; pass --password",
                    describe(amount),
                    phone
                        .online_no_pin_limit()
                        .map(|limit| format!(" of {}", describe(limit)))
                        .unwrap_or_default()
                ));
            }
            (
                cryptogram.field55,
                None,
                password.clone(),
                "in-app purchase",
            )
        }
    };
    // The ATC is spent whatever happens next: saved before the purchase leaves.
    saved.atc = phone.atc();
    saved.save(&path)?;
    let pin = pin
        .map(|p| Pin::parse(&p).map_err(|_| "the PIN must be 4 to 12 digits".to_owned()))
        .transpose()?;
    let presentment = match &presentment_track2 {
        Some(track2) => Presentment::Contactless { track2 },
        None => Presentment::InApp,
    };
    let purchase = Purchase {
        account: phone.token(),
        expiry: Some(phone.expiry()),
        amount,
        field55: &field55,
        presentment,
        pin: pin.as_ref(),
    };
    let outcome = if matches!(mode, Mode::Load { .. }) {
        pos.load_ecash(&purchase).await
    } else {
        pos.purchase(&purchase).await
    }
    .map_err(|e| e.to_string())?;
    print_outcome(
        &outcome,
        what,
        amount,
        cloudpass_core::card_number::mask_digits(phone.token().expose()),
        &common.terminal,
    );
    if matches!(mode, Mode::Load { .. }) && outcome.approved() {
        phone.credit_ecash(amount).map_err(|e| e.to_string())?;
        saved.ecash = phone.ecash_balance().map(|m| m.minor_units());
        saved.save(&path)?;
        println!(
            "the phone's e-cash balance is now {}",
            phone.ecash_balance().map(describe).unwrap_or_default()
        );
    }
    Ok(())
}

fn describe(amount: Money) -> String {
    format!(
        "{} {}",
        amount.to_decimal_string(),
        amount.currency().alpha()
    )
}

fn print_outcome(outcome: &Outcome, what: &str, amount: Money, token: String, terminal: &str) {
    let verdict = if outcome.approved() {
        "APPROVED"
    } else if outcome.response_code.is_none() {
        "NO ANSWER"
    } else {
        "DECLINED"
    };
    println!(
        "{verdict}: {}  ({what} of {} with token {token} at terminal {terminal}, STAN {}, RRN {}{})",
        outcome.describe(),
        describe(amount),
        outcome.stan,
        outcome.rrn,
        outcome
            .auth_code
            .as_deref()
            .map(|code| format!(", auth code {code}"))
            .unwrap_or_default()
    );
    if outcome.response_code.as_deref() == Some("65") {
        println!(
            "  the PIN is required for this amount: try again with --pin (or --cdcvm for a tap)"
        );
    }
    if outcome.response_code.is_none() {
        match &outcome.reversal {
            Some(code) => println!("  the terminal reversed the purchase (answer {code})"),
            None => println!(
                "  the terminal's reversal was not acknowledged either; the terminal keeps it ({terminal}-reversals.json in the data directory's terminals/) and sends it again before its next transaction"
            ),
        }
    }
}

/// A terminal's offline spends waiting for upload, kept as encoded messages in
/// `<data-dir>/terminals/<terminal>-batch.json`.
struct Batch;

impl Batch {
    fn path(data_dir: &Path, terminal: &str) -> PathBuf {
        data_dir
            .join("terminals")
            .join(format!("{terminal}-batch.json"))
    }

    fn load(data_dir: &Path, terminal: &str) -> Result<Vec<Message<'static>>, String> {
        let path = Self::path(data_dir, terminal);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let list: Vec<String> =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        list.iter()
            .map(|hex_text| {
                let bytes =
                    hex::decode(hex_text).map_err(|_| format!("{}: not hex", path.display()))?;
                profile::cloudpass()
                    .decode(&bytes)
                    .map(Message::into_owned)
                    .map_err(|e| format!("{}: {e}", path.display()))
            })
            .collect()
    }

    fn save(data_dir: &Path, terminal: &str, batch: &[Message<'static>]) -> Result<(), String> {
        let path = Self::path(data_dir, terminal);
        if let Some(dir) = path.parent() {
            data_dir::create_private_dir(dir)?;
        }
        let list = batch
            .iter()
            .map(|message| {
                profile::cloudpass()
                    .encode(message)
                    .map(|bytes| hex::encode(&bytes))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        data_dir::write_private(
            &path,
            serde_json::to_string(&list)
                .map_err(|e| e.to_string())?
                .as_bytes(),
        )
    }

    /// Adds a spend; how many wait now.
    fn append(data_dir: &Path, terminal: &str, advice: &Message<'static>) -> Result<usize, String> {
        let mut batch = Self::load(data_dir, terminal)?;
        batch.push(advice.clone());
        Self::save(data_dir, terminal, &batch)?;
        Ok(batch.len())
    }
}

async fn upload(terminal: &str, switch: SocketAddr, data_dir: &Path) -> CliResult {
    let batch = Batch::load(data_dir, terminal)?;
    if batch.is_empty() {
        println!("terminal {terminal} has no offline spends to upload");
        return Ok(());
    }
    let (pos, _stop) = open_terminal(terminal, switch, data_dir, true).await?;
    let answers = pos.upload(&batch).await;
    let mut kept = Vec::new();
    for (advice, answer) in batch.into_iter().zip(answers) {
        let amount = advice
            .get_str(4)
            .and_then(|wire| Money::from_wire(wire, Currency::CNY).ok())
            .map(describe)
            .unwrap_or_default();
        let stan = advice.get_str(11).unwrap_or("").to_owned();
        match answer.as_deref() {
            Some("00") => println!("  STAN {stan}  {amount}  cleared (00)"),
            Some(code) => println!(
                "  STAN {stan}  {amount}  refused: {}",
                ResponseCode::parse(code)
                    .map(|known| known.to_string())
                    .unwrap_or_else(|| code.to_owned())
            ),
            None => {
                println!("  STAN {stan}  {amount}  no answer; kept for the next upload");
                kept.push(advice);
            }
        }
    }
    Batch::save(data_dir, terminal, &kept)?;
    println!(
        "uploaded; {} spend(s) left in terminal {terminal}'s batch",
        kept.len()
    );
    Ok(())
}

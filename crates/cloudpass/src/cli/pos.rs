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
use cloudpass::sandbox;
use cloudpass_core::{AccountNumber, Currency, Money, SystemClock, hex};
use cloudpass_crypto::{DeviceKeyPair, OsRandom, Pin};
use cloudpass_iso8583::link::Link;
use cloudpass_sim::phone::{Phone, envelope_from_json};
use cloudpass_sim::pos::{Outcome, Pos, Presentment, Purchase, TerminalConfig};
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
    #[arg(long, default_value = "6226090000000048")]
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
        }
    })
}

enum Mode {
    Tap { pin: Option<String>, cdcvm: bool },
    InApp { password: Option<String> },
}

/// The phone as saved between runs.
struct SavedPhone {
    device_id: String,
    wallet_key: String,
    keys: DeviceKeyPair,
    token_id: String,
    envelopes: Vec<Value>,
    atc: u16,
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
        }))
    }

    fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let document = json!({
            "device_id": self.device_id,
            "wallet_api_key": self.wallet_key,
            "device_secret_key": hex::encode(&self.keys.secret_bytes()[..]),
            "token_id": self.token_id,
            "card_profiles": self.envelopes,
            "atc": self.atc,
        });
        let temporary = path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&temporary)
            .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
        std::io::Write::write_all(&mut file, document.to_string().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
        // Replaced whole: a crash never leaves a phone that reuses an ATC.
        std::fs::rename(&temporary, path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
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
        Ok(phone)
    }
}

async fn api(
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
               "card": {"number": common.card, "expiry": common.expiry}}),
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
    if phone.keys_left() == Some(0) {
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

    let master_path = common.data_dir.join(TERMINAL_MASTER_KEY_FILE);
    let master = std::fs::read_to_string(&master_path).map_err(|e| {
        format!(
            "cannot read the sandbox terminal master key {} ({e}); run this where `cloudpass serve` keeps its data, or pass --data-dir",
            master_path.display()
        )
    })?;
    let master = hex::decode(master.trim())
        .map_err(|_| format!("{} must hold hex digits", master_path.display()))?;
    let (_stop, stopped) = watch::channel(false);
    let link = Link::start(common.switch, Duration::from_secs(15), stopped);
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
            "cannot reach the switch at {}; is `cloudpass serve` running?",
            common.switch
        ));
    }
    let pos = Pos::new(
        TerminalConfig {
            terminal_id: common.terminal.clone(),
            merchant_id: sandbox::MERCHANT_ID.into(),
            merchant_category: sandbox::MERCHANT_CATEGORY.into(),
            merchant_name: sandbox::MERCHANT_NAME.into(),
            acquirer_id: sandbox::ACQUIRER_ID.into(),
            no_pin_limit: Money::new(100_000, Currency::CNY),
            reversal_attempts: 5,
        },
        &master,
        link,
        Arc::new(SystemClock),
        Arc::new(OsRandom),
    )
    .map_err(|e| e.to_string())?;
    pos.sign_on()
        .await
        .map_err(|e| format!("terminal {}: {e}", common.terminal))?;

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
    let outcome = pos
        .purchase(&Purchase {
            token: phone.token(),
            token_expiry: phone.expiry(),
            amount,
            field55: &field55,
            presentment,
            pin: pin.as_ref(),
        })
        .await
        .map_err(|e| e.to_string())?;
    print_outcome(
        &outcome,
        what,
        amount,
        cloudpass_core::card_number::mask_digits(phone.token().expose()),
        &common.terminal,
    );
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
                "  the terminal's reversal was not acknowledged either; the switch will settle it"
            ),
        }
    }
}

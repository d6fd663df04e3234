//! The story's network steps: wallets and the bank over the token service's HTTP API, a
//! sandbox terminal over the switch's ISO 8583 port, the bank's back office.

use cloudpass::sandbox;
use cloudpass_core::{Currency, Money, hex};
use cloudpass_crypto::{DeviceKeyPair, OsRandom, Pin};
use cloudpass_sim::phone::{Phone, envelope_from_json};
use cloudpass_sim::pos::{Presentment, Purchase};
use serde_json::{Value, json};

use super::{CARD_PHONE, CREDIT, DEBIT, DEBIT_PIN, Demo, REISSUED, StepResult};
use crate::cli::pos::{api, open_terminal};

const APPLE: &str = "sk_sandbox_apple_pay";
const HUAWEI: &str = "sk_sandbox_huawei_pay";

/// A device the story registered, with its debit card's token.
pub(crate) struct Device {
    pub(crate) id: &'static str,
    wallet_key: &'static str,
    keys: DeviceKeyPair,
    pub(crate) token_id: String,
    profile: Value,
    /// The phone as it taps: opened once, its ATC kept between taps.
    phone: Option<Phone>,
}

#[derive(Default)]
pub(crate) struct Devices {
    pub(crate) all: Vec<Device>,
    /// The iPhone's credit card, once loaded.
    credit_token: Option<String>,
}

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, (fen % 100).abs())
}

pub(crate) async fn the_bank(demo: &mut Demo) -> StepResult {
    let debit = demo.balance(DEBIT).await?;
    demo.balance(CREDIT).await?;
    Ok(format!(
        "the sandbox bank holds UnionPay's test cards, among them CMB debit …0048 ({} CNY in its account) and Huaxia credit …0095; its double-entry ledger balances",
        yuan(debit)
    ))
}

pub(crate) async fn one_card_three_devices(demo: &mut Demo) -> StepResult {
    let mut pars = Vec::new();
    for (id, wallet_key, kind, brand) in [
        ("iphone", APPLE, "handset_se", "apple"),
        ("watch", APPLE, "wearable", "apple"),
        ("mate", HUAWEI, "handset_se", "huawei"),
    ] {
        let keys = DeviceKeyPair::generate(&OsRandom);
        api(
            &demo.http,
            &demo.base,
            wallet_key,
            "/tsp/v1/devices",
            json!({"device_id": id, "kind": kind, "brand": brand, "account_id": sandbox::ACCOUNT_ID,
                   "unlock_set": true, "public_key": hex::encode(&keys.public_key())}),
        )
        .await?;
        let answer = api(
            &demo.http,
            &demo.base,
            wallet_key,
            "/tsp/v1/tokens",
            json!({"device_id": id, "account_id": sandbox::ACCOUNT_ID,
                   "card": {"number": DEBIT, "expiry": "2912"}}),
        )
        .await?;
        if answer["decision"] != "green" || answer["token"]["status"] != "active" {
            return Err(format!(
                "{id}: expected an active token at once (green), got decision {} status {}",
                answer["decision"], answer["token"]["status"]
            ));
        }
        pars.push(
            answer["token"]["par"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        demo.devices.all.push(Device {
            id,
            wallet_key,
            keys,
            token_id: answer["token"]["token_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            profile: answer["card_profile"].clone(),
            phone: None,
        });
    }
    let mut tokens: Vec<&str> = demo
        .devices
        .all
        .iter()
        .map(|d| d.token_id.as_str())
        .collect();
    tokens.dedup();
    if tokens.len() != 3 {
        return Err("the three devices did not get three different tokens".into());
    }
    if pars.iter().any(|par| par.is_empty() || *par != pars[0]) {
        return Err(format!("the tokens do not share one PAR: {pars:?}"));
    }
    Ok(format!(
        "iPhone, Apple Watch and Huawei Mate each hold their own token of card …0048 (green: approved at once), all under PAR {}",
        pars[0]
    ))
}

/// The newest one-time code the sandbox bank texted to `phone`.
pub(crate) async fn latest_code(demo: &Demo, phone: &str) -> Result<String, String> {
    let key = demo
        .app
        .sandbox
        .as_ref()
        .map(|s| s.operator_key.to_string())
        .ok_or("no sandbox")?;
    let inbox: Value = demo
        .http
        .get(format!("{}/sim/issuer/v1/sms?phone={phone}", demo.base))
        .bearer_auth(key)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let text = inbox["messages"][0]["text"].as_str().unwrap_or_default();
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .map(str::to_owned)
        .ok_or_else(|| "the bank's SMS inbox holds no code".into())
}

pub(crate) async fn second_card_and_default(demo: &mut Demo) -> StepResult {
    let answer = api(
        &demo.http,
        &demo.base,
        APPLE,
        "/tsp/v1/tokens",
        json!({"device_id": "iphone", "account_id": sandbox::ACCOUNT_ID,
               "card": {"number": CREDIT, "expiry": "2912", "cvn2": "248"}}),
    )
    .await?;
    if answer["token"]["status"] == "active" {
        return Err(
            "the credit card's bank wants a code first, but the token was active at once".into(),
        );
    }
    let token_id = answer["token"]["token_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let code = latest_code(demo, CARD_PHONE).await?;
    let activated = api(
        &demo.http,
        &demo.base,
        APPLE,
        &format!("/tsp/v1/tokens/{token_id}/activate"),
        json!({"otp": code}),
    )
    .await?;
    if activated["token"]["status"] != "active" {
        return Err(format!(
            "the code did not activate the token: {}",
            activated["token"]["status"]
        ));
    }
    let chosen = api(
        &demo.http,
        &demo.base,
        APPLE,
        &format!("/tsp/v1/tokens/{token_id}/default"),
        json!({}),
    )
    .await?;
    if chosen["is_default"] != true {
        return Err("the credit card did not become the iPhone's default".into());
    }
    demo.devices.credit_token = Some(token_id);
    Ok("the iPhone adds credit card …0095: its bank texts a code to 181****0000, the code activates the token, and the person makes it the iPhone's default".into())
}

/// One tap of the iPhone's debit card for `fen`, with `pin` when the terminal asks; the
/// answer's field 39 (or "no answer").
async fn tap(demo: &mut Demo, fen: u64, pin: Option<&str>) -> Result<(String, bool), String> {
    let switch = demo.app.switch_addr;
    let data_dir = demo.data_dir.clone();
    let device = demo
        .devices
        .all
        .first_mut()
        .ok_or("no device was registered")?;
    if device.phone.is_none() {
        let envelope = envelope_from_json(&device.profile).map_err(|e| e.to_string())?;
        device.phone = Some(
            Phone::provision(&device.keys, &device.token_id, &envelope)
                .map_err(|e| e.to_string())?,
        );
    }
    let phone = device.phone.as_mut().ok_or("no phone")?;
    let (pos, _stop) = open_terminal("CPPOS002", switch, &data_dir, true).await?;
    let amount = Money::new(fen, Currency::CNY);
    let asked = pos.asks_for_pin(amount, phone.contactless_no_pin_limit(), false);
    let tap = phone
        .tap(&pos.terminal_data(amount), false)
        .map_err(|e| e.to_string())?;
    let pin = match (asked, pin) {
        (true, Some(pin)) => Some(Pin::parse(pin).map_err(|_| "a PIN is 4 to 12 digits")?),
        _ => None,
    };
    let outcome = pos
        .purchase(&Purchase {
            account: phone.token(),
            expiry: Some(phone.expiry()),
            amount,
            field55: &tap.field55,
            presentment: Presentment::Contactless {
                track2: &tap.track2,
            },
            pin: pin.as_ref(),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        outcome
            .response_code
            .clone()
            .unwrap_or_else(|| "no answer".into()),
        asked,
    ))
}

pub(crate) async fn taps_under_and_over_the_limit(demo: &mut Demo) -> StepResult {
    let before = demo.balance(DEBIT).await?;
    let (code, asked) = tap(demo, 1_250, None).await?;
    if code != "00" || asked {
        return Err(format!(
            "12.50 should pay at once without a PIN; field 39 {code}, PIN asked: {asked}"
        ));
    }
    let (code, asked) = tap(demo, 150_000, Some(DEBIT_PIN)).await?;
    if code != "00" || !asked {
        return Err(format!(
            "1500.00 should ask for the PIN and pay with it; field 39 {code}, PIN asked: {asked}"
        ));
    }
    let after = demo.balance(DEBIT).await?;
    if before - after != 151_250 {
        return Err(format!(
            "the bank's ledger moved {} CNY, not 1512.50",
            yuan(before - after)
        ));
    }
    Ok("the iPhone taps the sandbox POS (ISO 8583 through the switch to the bank): 12.50 approved without a PIN; 1500.00 is over the 1000.00 no-PIN limit, the POS asks for the PIN, approved; the card's account is 1512.50 lower".into())
}

async fn device_event(demo: &Demo, event: &str) -> Result<Value, String> {
    let device = demo.devices.all.first().ok_or("no device")?;
    api(
        &demo.http,
        &demo.base,
        device.wallet_key,
        &format!("/tsp/v1/devices/{}/events", device.id),
        json!({"event": event}),
    )
    .await
}

pub(crate) async fn lost_phone(demo: &mut Demo) -> StepResult {
    let lost = device_event(demo, "lost").await?;
    let suspended = lost["tokens"]
        .as_array()
        .map(|tokens| tokens.iter().all(|t| t["status"] == "suspended"))
        .unwrap_or(false);
    if !suspended {
        return Err(format!(
            "reported lost, the iPhone's tokens should all be suspended: {}",
            lost["tokens"]
        ));
    }
    let before = demo.balance(DEBIT).await?;
    let (code, _) = tap(demo, 100, None).await?;
    if code == "00" {
        return Err("a lost phone's tap was approved".into());
    }
    if demo.balance(DEBIT).await? != before {
        return Err("a declined tap moved money".into());
    }
    device_event(demo, "found").await?;
    let (found, _) = tap(demo, 100, None).await?;
    if found != "00" {
        return Err(format!(
            "found again, the iPhone's tap should pay; field 39 {found}"
        ));
    }
    Ok(format!(
        "reported lost, every token on the iPhone is suspended and its tap is declined ({code}) with the ledger unchanged; found, the same phone pays 1.00 again"
    ))
}

pub(crate) async fn reissued_card(demo: &mut Demo) -> StepResult {
    let bank = demo.app.stand_in_bank()?.clone();
    let (status, answer) = bank
        .reissue(DEBIT, Some(REISSUED), "3112")
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "the token service refused the reissue: {status} {answer}"
        ));
    }
    let before = demo.balance(REISSUED).await?;
    let (code, _) = tap(demo, 100, None).await?;
    if code != "00" {
        return Err(format!(
            "after the reissue the iPhone's token should still pay; field 39 {code}"
        ));
    }
    if before - demo.balance(REISSUED).await? != 100 {
        return Err("the tap did not move the reissued card's account".into());
    }
    let watch = demo.devices.all.get(1).ok_or("no watch")?;
    let token = demo
        .http
        .get(format!("{}/tsp/v1/tokens/{}", demo.base, watch.token_id))
        .bearer_auth(watch.wallet_key)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json::<Value>()
        .await
        .map_err(|e| e.to_string())?;
    if token["card_last4"] != "0055" {
        return Err(format!(
            "the watch's token should now map to card …0055: {token}"
        ));
    }
    Ok("the bank reissues …0048 as …0055 (new expiry) and tells the token service: every token keeps its number and maps to the new card; the iPhone taps 1.00 and the new card's account pays it".into())
}

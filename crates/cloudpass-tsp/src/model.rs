//! Conversions between storage rows and domain values, and the JSON views the API returns.
//! Views never carry a full card number: cards appear by last four digits, tokens by ID and
//! last four (the full token goes to its device inside the sealed card profile).

use cloudpass_core::lifecycle::{Channel, Holds, SuspendReason, TokenState, TokenStatus};
use cloudpass_core::{Random, hex};
use cloudpass_store::{CardRow, DeviceRow, HistoryRow, OutboxRow, TokenRow};
use serde::Serialize;

use crate::error::{TspError, TspResult};

/// A new identifier: `prefix` and 20 base-32 characters (100 random bits).
pub fn new_id(prefix: &str, random: &dyn Random) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 20];
    random.fill(&mut bytes);
    let mut id = String::with_capacity(prefix.len() + 21);
    id.push_str(prefix);
    id.push('_');
    for byte in bytes {
        id.push(char::from(ALPHABET[usize::from(byte & 31)]));
    }
    id
}

/// The lifecycle state stored in a token row.
pub fn token_state(row: &TokenRow) -> TspResult<TokenState> {
    let holds = u8::try_from(row.holds)
        .ok()
        .and_then(Holds::from_bits)
        .ok_or_else(|| TspError::Internal(format!("token {} has bad holds", row.id)))?;
    let suspend_reason = match &row.suspend_reason {
        Some(text) => Some(SuspendReason::parse(text).ok_or_else(|| {
            TspError::Internal(format!("token {} has a bad suspend reason", row.id))
        })?),
        None => None,
    };
    Ok(TokenState {
        activated: row.activated,
        deleted: row.deleted,
        holds,
        suspend_reason,
    })
}

/// Writes a lifecycle state (and who set it, why) into a token row.
pub fn set_token_state(
    row: &mut TokenRow,
    state: TokenState,
    channel: Channel,
    reason: Option<&str>,
    now: i64,
) {
    let status_changed = row.status != state.status().as_str();
    row.activated = state.activated;
    row.deleted = state.deleted;
    row.holds = i64::from(state.holds.bits());
    row.suspend_reason = state.suspend_reason.map(|r| r.as_str().to_owned());
    if status_changed {
        row.status_reason = reason.map(str::to_owned);
        row.status_channel = channel.as_str().to_owned();
    }
    row.status = state.status().as_str().to_owned();
    if state.deleted {
        row.is_default = false;
    }
    row.updated_at = now;
}

pub fn last4(number: &str) -> &str {
    number.get(number.len().saturating_sub(4)..).unwrap_or("")
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Token")]
pub struct TokenView {
    pub token_id: String,
    pub token_last4: String,
    /// YYMM.
    pub token_expiry: String,
    #[schemars(schema_with = "crate::schema::token_status")]
    pub status: String,
    pub status_reason: Option<String>,
    /// Who made the last change.
    #[schemars(schema_with = "crate::schema::channel")]
    pub status_channel: String,
    /// Why it is suspended, when it is.
    #[schemars(schema_with = "crate::schema::holds")]
    pub holds: Vec<&'static str>,
    pub is_default: bool,
    pub device_id: String,
    pub card_id: String,
    pub card_last4: String,
    /// The card's funding: `debit` or `credit`.
    pub funding: String,
    pub par: String,
    #[schemars(schema_with = "crate::schema::domains")]
    pub domains: Vec<&'static str>,
    pub ecash: Option<EcashView>,
    pub metadata: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Ecash")]
pub struct EcashView {
    pub balance: i64,
}

pub fn token_view(token: &TokenRow, card: &CardRow, device: &DeviceRow) -> TokenView {
    let holds = u8::try_from(token.holds)
        .ok()
        .and_then(Holds::from_bits)
        .unwrap_or_default();
    let mut domains = Vec::new();
    if token.domain_nfc {
        domains.push("nfc");
    }
    if token.domain_in_app {
        domains.push("in_app");
    }
    TokenView {
        token_id: token.id.clone(),
        token_last4: last4(&token.token_number).to_owned(),
        token_expiry: token.expiry.clone(),
        status: token.status.clone(),
        status_reason: token.status_reason.clone(),
        status_channel: token.status_channel.clone(),
        holds: holds.iter().map(|h| h.as_str()).collect(),
        is_default: token.is_default,
        device_id: device.external_id.clone(),
        card_id: card.id.clone(),
        card_last4: card.pan_last4.clone(),
        funding: card.funding.clone(),
        par: card.par.clone(),
        domains,
        ecash: token.ecash_enabled.then_some(EcashView {
            balance: token.ecash_balance,
        }),
        metadata: serde_json::from_str(&token.metadata).unwrap_or(serde_json::Value::Null),
        created_at: token.created_at,
        updated_at: token.updated_at,
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Device")]
pub struct DeviceView {
    pub device_id: String,
    #[schemars(schema_with = "crate::schema::device_kind")]
    pub kind: String,
    pub brand: String,
    pub state: String,
    pub account_id: Option<String>,
    pub unlock_set: bool,
    pub public_key: String,
}

pub fn device_view(device: &DeviceRow, account_id: Option<String>) -> DeviceView {
    DeviceView {
        device_id: device.external_id.clone(),
        kind: device.kind.clone(),
        brand: device.brand.clone(),
        state: device.state.clone(),
        account_id,
        unlock_set: device.unlock_set,
        public_key: hex::encode(&device.public_key),
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Card")]
pub struct CardView {
    pub card_id: String,
    pub bin: String,
    pub last4: String,
    pub expiry: String,
    pub funding: String,
    pub product: String,
    pub status: String,
    pub par: String,
}

pub fn card_view(card: &CardRow) -> CardView {
    CardView {
        card_id: card.id.clone(),
        bin: card.pan_bin.clone(),
        last4: card.pan_last4.clone(),
        expiry: card.expiry.clone(),
        funding: card.funding.clone(),
        product: card.product.clone(),
        status: card.status.clone(),
        par: card.par.clone(),
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "HistoryEntry")]
pub struct HistoryView {
    pub at: i64,
    pub event: String,
    pub channel: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
}

pub fn history_view(row: &HistoryRow) -> HistoryView {
    HistoryView {
        at: row.at,
        event: row.event.clone(),
        channel: row.channel.clone(),
        from_status: row.from_status.clone(),
        to_status: row.to_status.clone(),
        reason: row.reason.clone(),
        detail: row.detail.clone(),
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Notification")]
pub struct NotificationView {
    pub event_id: String,
    pub event_type: String,
    pub subscriber_kind: String,
    pub subscriber_id: String,
    pub created_at: i64,
    /// `pending`, `delivered` or `failed`.
    pub delivery: &'static str,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub payload: serde_json::Value,
}

pub fn notification_view(row: &OutboxRow) -> NotificationView {
    let delivery = if row.delivered_at.is_some() {
        "delivered"
    } else if row.failed_at.is_some() {
        "failed"
    } else {
        "pending"
    };
    NotificationView {
        event_id: row.event_id.clone(),
        event_type: row.event_type.clone(),
        subscriber_kind: row.subscriber_kind.clone(),
        subscriber_id: row.subscriber_id.clone(),
        created_at: row.created_at,
        delivery,
        attempts: row.attempts,
        last_error: row.last_error.clone(),
        payload: serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null),
    }
}

/// Whether a token row's status agrees with its flags (a consistency check on read).
pub fn consistent(row: &TokenRow) -> bool {
    token_state(row).is_ok_and(|state| state.status().as_str() == row.status)
        && TokenStatus::parse(&row.status).is_some()
}

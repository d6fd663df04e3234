//! Turning a decision into a changeset: apply a lifecycle event to a device's tokens with the
//! pure rules of `cloudpass-core`, re-choose the device's default card, and write the history
//! and notifications of everything that changed. No IO here.

use cloudpass_core::Random;
use cloudpass_core::default_card::{Candidate, choose_default};
use cloudpass_core::lifecycle::{self, Channel, Effect, LifecycleEvent, TokenStatus};
use cloudpass_store::{CardRow, Changeset, HistoryRow, NewOutboxEvent, TokenRow};
use serde_json::{Value, json};

use crate::error::TspResult;
use crate::model::{last4, new_id, set_token_state, token_state};

/// What an event did to one token.
#[derive(Debug, Clone)]
pub struct Applied {
    pub token_id: String,
    pub from: TokenStatus,
    pub to: TokenStatus,
    pub effect: Effect,
}

/// Applies `event` from `channel` to the tokens selected by `target` among `tokens` (one
/// device's tokens). With `strict`, a refusal is an error (a request about one token);
/// otherwise refused and deleted tokens are skipped (a device- or card-wide event).
pub fn apply_event(
    tokens: &mut [TokenRow],
    target: impl Fn(&TokenRow) -> bool,
    event: LifecycleEvent,
    channel: Channel,
    now: i64,
    strict: bool,
) -> TspResult<Vec<Applied>> {
    let mut applied = Vec::new();
    for token in tokens.iter_mut().filter(|t| target(t)) {
        let state = token_state(token)?;
        let (next, effect) = match lifecycle::apply(state, event, channel) {
            Ok(outcome) => outcome,
            Err(error) if strict => return Err(error.into()),
            Err(_) => continue,
        };
        set_token_state(token, next, channel, event.reason(), now);
        applied.push(Applied {
            token_id: token.id.clone(),
            from: state.status(),
            to: next.status(),
            effect,
        });
    }
    Ok(applied)
}

/// Re-chooses the default among one device's tokens; returns the IDs whose flag changed.
pub fn reassign_default(tokens: &mut [TokenRow], now: i64) -> TspResult<Vec<String>> {
    let mut candidates = Vec::with_capacity(tokens.len());
    for (index, token) in tokens.iter().enumerate() {
        candidates.push(Candidate {
            id: index,
            state: token_state(token)?,
            is_default: token.is_default,
            order: token.provisioned_seq,
        });
    }
    let chosen = choose_default(&candidates);
    let mut changed = Vec::new();
    for (index, token) in tokens.iter_mut().enumerate() {
        let should = Some(index) == chosen;
        if token.is_default != should {
            token.is_default = should;
            token.updated_at = now;
            changed.push(token.id.clone());
        }
    }
    Ok(changed)
}

/// Collects the rows, history and notifications of one change.
pub struct Plan<'a> {
    pub changeset: Changeset,
    /// Token numbers whose vault entries must be dropped from the cache after commit.
    pub touched: Vec<String>,
    now: i64,
    random: &'a dyn Random,
}

impl<'a> Plan<'a> {
    pub fn new(now: i64, random: &'a dyn Random) -> Self {
        Self {
            changeset: Changeset::default(),
            touched: Vec::new(),
            now,
            random,
        }
    }

    pub fn now(&self) -> i64 {
        self.now
    }

    /// Records every token row that differs from `original` as an update.
    pub fn update_changed(&mut self, original: &[TokenRow], updated: &[TokenRow]) {
        for (before, after) in original.iter().zip(updated) {
            if before != after {
                self.touched.push(after.token_number.clone());
                self.changeset.token_updates.push(after.clone());
            }
        }
    }

    pub fn history(
        &mut self,
        token_id: &str,
        event: &str,
        channel: Channel,
        from: Option<TokenStatus>,
        to: TokenStatus,
        reason: Option<&str>,
        detail: Option<String>,
    ) {
        self.changeset.history.push(HistoryRow {
            token_id: token_id.to_owned(),
            at: self.now,
            event: event.to_owned(),
            channel: channel.as_str().to_owned(),
            from_status: from.map(|s| s.as_str().to_owned()),
            to_status: to.as_str().to_owned(),
            reason: reason.map(str::to_owned),
            detail,
        });
    }

    /// Queues `event_type` about `token` for its wallet and its issuer, each with its own
    /// stable event ID. `extra` fields are merged into the body.
    pub fn notify(&mut self, token: &TokenRow, card: &CardRow, event_type: &str, extra: Value) {
        for (kind, subscriber) in [
            ("token_requestor", token.token_requestor_id.as_str()),
            ("issuer", card.issuer_id.as_str()),
        ] {
            let event_id = new_id("evt", self.random);
            let mut body = json!({
                "event_id": event_id,
                "event_type": event_type,
                "occurred_at": self.now,
                "token": {
                    "token_id": token.id,
                    "token_last4": last4(&token.token_number),
                    "token_expiry": token.expiry,
                    "status": token.status,
                    "status_reason": token.status_reason,
                    "status_channel": token.status_channel,
                    "is_default": token.is_default,
                    "token_requestor_id": token.token_requestor_id,
                },
                "card": { "card_id": card.id, "last4": card.pan_last4, "expiry": card.expiry, "par": card.par },
            });
            if let (Value::Object(map), Value::Object(more)) = (&mut body, &extra) {
                for (key, value) in more {
                    map.insert(key.clone(), value.clone());
                }
            }
            self.changeset.outbox.push(NewOutboxEvent {
                event_id,
                subscriber_kind: kind.to_owned(),
                subscriber_id: subscriber.to_owned(),
                token_id: token.id.clone(),
                event_type: event_type.to_owned(),
                payload: body.to_string(),
                created_at: self.now,
            });
        }
    }

    /// History and notifications for what [`apply_event`] did, and history for the default
    /// card changes it caused. `cards` must hold the card of every token in `tokens`.
    pub fn record(
        &mut self,
        tokens: &[TokenRow],
        cards: &[CardRow],
        applied: &[Applied],
        default_changed: &[String],
        event: LifecycleEvent,
        channel: Channel,
        extra: Value,
    ) {
        for change in applied {
            let Some(token) = tokens.iter().find(|t| t.id == change.token_id) else {
                continue;
            };
            let Some(card) = cards.iter().find(|c| c.id == token.card_id) else {
                continue;
            };
            let notification = match change.effect {
                Effect::Status { .. } => Some("TOKEN_STATUS_UPDATED"),
                Effect::Remapped => Some("PAN_UPDATED"),
                Effect::Metadata => Some("METADATA_UPDATED"),
                Effect::Holds | Effect::Unchanged => None,
            };
            if change.effect != Effect::Unchanged {
                self.history(
                    &token.id,
                    event.name(),
                    channel,
                    Some(change.from),
                    change.to,
                    event.reason(),
                    None,
                );
            }
            if let Some(kind) = notification {
                self.notify(token, card, kind, extra.clone());
            }
        }
        self.record_defaults(tokens, default_changed, channel);
    }

    /// History for tokens that became, or stopped being, their device's default card.
    pub fn record_defaults(
        &mut self,
        tokens: &[TokenRow],
        default_changed: &[String],
        channel: Channel,
    ) {
        for token_id in default_changed {
            if let Some(token) = tokens.iter().find(|t| &t.id == token_id) {
                let status = TokenStatus::parse(&token.status).unwrap_or(TokenStatus::Active);
                let detail = if token.is_default {
                    "became the device's default card"
                } else {
                    "is no longer the default card"
                };
                self.history(
                    &token.id,
                    "default",
                    channel,
                    Some(status),
                    status,
                    None,
                    Some(detail.to_owned()),
                );
            }
        }
    }
}

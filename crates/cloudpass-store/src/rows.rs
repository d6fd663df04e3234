//! Storage rows: what a table holds, column for column. The token service converts these to
//! and from its domain types; nothing here interprets them. Timestamps are milliseconds since
//! the Unix epoch.

/// An issuing bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerRow {
    pub id: String,
    pub name: String,
    /// Base URL of the bank's side of the issuer protocol.
    pub api_url: String,
    /// SHA-256 of the bank's API key.
    pub api_key_hash: Vec<u8>,
    pub webhook_url: Option<String>,
    /// The webhook signing secret, encrypted under the HSM's data key.
    pub webhook_secret: Option<Vec<u8>>,
    pub created_at: i64,
}

/// A card or token BIN range: numbers starting with `prefix` belong to the issuer's product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinRangeRow {
    pub prefix: String,
    /// `card` or `token`.
    pub kind: String,
    pub issuer_id: String,
    pub product: String,
    /// `debit` or `credit`.
    pub funding: String,
}

/// A card product's CVM policy: no-PIN limits in minor units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRow {
    pub issuer_id: String,
    pub product: String,
    pub currency: i64,
    pub contactless_no_pin_limit: i64,
    pub online_no_pin_limit: i64,
    pub updated_at: i64,
    pub version: i64,
}

/// A wallet: Apple Pay, Huawei Pay, a bank's HCE app…
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestorRow {
    /// The 11-character token requestor ID.
    pub id: String,
    pub name: String,
    pub wallet: String,
    pub api_key_hash: Vec<u8>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<Vec<u8>>,
    pub created_at: i64,
}

/// A wallet account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub token_requestor_id: String,
    pub account_id: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub id: String,
    pub token_requestor_id: String,
    /// The wallet's own device ID (IMEI, IDFV, SE ID).
    pub external_id: String,
    pub kind: String,
    pub brand: String,
    pub state: String,
    /// The account signed in, if any.
    pub user_id: Option<String>,
    pub unlock_set: bool,
    /// X25519 public key the card profile is encrypted to.
    pub public_key: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

/// A physical card (SPAN), known to the TSP only encrypted and by fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRow {
    pub id: String,
    pub issuer_id: String,
    pub pan_fingerprint: Vec<u8>,
    pub pan_encrypted: Vec<u8>,
    pub pan_bin: String,
    pub pan_last4: String,
    pub expiry: String,
    pub funding: String,
    pub product: String,
    pub status: String,
    pub reserved_phone_masked: Option<String>,
    pub par: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

/// A device card (MPAN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub token_number: String,
    pub card_id: String,
    pub device_id: String,
    pub token_requestor_id: String,
    pub user_id: String,
    pub expiry: String,
    /// Derived from `activated`, `deleted` and `holds`; stored for queries.
    pub status: String,
    pub activated: bool,
    pub deleted: bool,
    pub holds: i64,
    pub suspend_reason: Option<String>,
    /// Reason and channel of the last status change.
    pub status_reason: Option<String>,
    pub status_channel: String,
    pub is_default: bool,
    pub domain_nfc: bool,
    pub domain_in_app: bool,
    pub ecash_enabled: bool,
    pub ecash_balance: i64,
    pub pan_sequence: i64,
    /// HCE: limited-use keys have been issued for ATCs up to this one.
    pub atc_issued_until: i64,
    pub assurance_level: String,
    /// Issuer-supplied metadata, a JSON object.
    pub metadata: String,
    /// Order of provisioning on the device (for the default-card rule).
    pub provisioned_seq: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub token_id: String,
    pub at: i64,
    pub event: String,
    pub channel: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
}

/// A pending step-up: the OTP's keyed hash, where it was sent (masked), bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRow {
    pub token_id: String,
    pub otp_hash: Vec<u8>,
    pub destination_masked: String,
    pub expires_at: i64,
    pub attempts_left: i64,
    pub resends_left: i64,
}

/// A notification to write with a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEvent {
    pub event_id: String,
    /// `token_requestor` or `issuer`.
    pub subscriber_kind: String,
    pub subscriber_id: String,
    pub token_id: String,
    pub event_type: String,
    /// The JSON body to deliver.
    pub payload: String,
    pub created_at: i64,
}

/// A notification in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub event_id: String,
    pub subscriber_kind: String,
    pub subscriber_id: String,
    pub token_id: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
}

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered {
        at: i64,
    },
    /// Try again at `next_attempt_at`.
    Retry {
        error: String,
        next_attempt_at: i64,
    },
    /// Out of attempts: the event is dead-lettered.
    GiveUp {
        error: String,
        at: i64,
    },
}

/// The answer to "may I process this request?" for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First time: process it, then complete.
    New,
    /// Already done: replay this response.
    Replay { status: u16, body: String },
    /// The same key with a different request.
    Mismatch,
    /// The first request with this key is still being processed (its claim is younger
    /// than the lease).
    InProgress,
    /// The first request's claim outlived the lease without an answer (its process died or
    /// its answer could not be written): this caller now holds the claim. `effect_committed`
    /// says whether the first request's change was committed.
    TakenOver { effect_committed: bool },
}

/// The idempotency claim a changeset is made under: committing the changeset marks the
/// claim's effect as committed, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub principal: String,
    pub key: String,
}

/// Everything one change writes, applied in one transaction or not at all. Rows that were
/// read carry the version they were read at; if any changed meanwhile the whole changeset is
/// refused with `StoreError::Conflict` and the caller re-reads and re-decides.
#[derive(Debug, Clone, Default)]
pub struct Changeset {
    /// Devices whose tokens this change reads or writes: their version must still be the one
    /// read, and is bumped, so concurrent changes to one device's tokens serialize.
    pub device_guards: Vec<(String, i64)>,
    /// The same for cards.
    pub card_guards: Vec<(String, i64)>,
    pub card_inserts: Vec<CardRow>,
    /// Updated cards (matched on `version`, which is bumped).
    pub card_updates: Vec<CardRow>,
    pub device_updates: Vec<DeviceRow>,
    pub product_updates: Vec<ProductRow>,
    pub token_inserts: Vec<TokenRow>,
    /// Updated tokens (matched on `version`, which is bumped).
    pub token_updates: Vec<TokenRow>,
    pub history: Vec<HistoryRow>,
    pub outbox: Vec<NewOutboxEvent>,
    pub challenge_upserts: Vec<ChallengeRow>,
    pub challenge_deletes: Vec<String>,
    /// The idempotency claim this change is made under, if any (not itself a change).
    pub idempotency_claim: Option<IdempotencyClaim>,
}

impl Changeset {
    pub fn is_empty(&self) -> bool {
        self.device_guards.is_empty()
            && self.card_guards.is_empty()
            && self.card_inserts.is_empty()
            && self.card_updates.is_empty()
            && self.device_updates.is_empty()
            && self.product_updates.is_empty()
            && self.token_inserts.is_empty()
            && self.token_updates.is_empty()
            && self.history.is_empty()
            && self.outbox.is_empty()
            && self.challenge_upserts.is_empty()
            && self.challenge_deletes.is_empty()
    }
}

/// A product's no-PIN limits, in minor units of `currency` (ISO 4217 numeric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoPinLimits {
    pub currency: i64,
    pub contactless: i64,
    pub online: i64,
}

/// Everything detokenization needs about a token, read at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultEntry {
    pub token: TokenRow,
    pub card: CardRow,
    pub device_kind: String,
    pub device_state: String,
    /// The token requestor's wallet name.
    pub wallet: String,
    /// The card product's limits, if the issuer configured any.
    pub limits: Option<NoPinLimits>,
}

/// One acquirer request in the switch's journal, with the answer once given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    /// `{mti}:{acquirer}:{stan}:{transmission time}`.
    pub id: String,
    pub mti: String,
    pub acquirer_id: String,
    pub stan: String,
    pub transmission_time: String,
    pub rrn: String,
    pub terminal_id: String,
    pub token_masked: String,
    pub amount: i64,
    pub currency: i64,
    pub received_at: i64,
    pub response_code: Option<String>,
    pub auth_code: Option<String>,
    /// `answered`, `timeout`, `down` or `not_sent`.
    pub issuer_outcome: Option<String>,
    pub answered_at: Option<i64>,
}

/// The answer the switch gave to a journaled request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalAnswer {
    pub id: String,
    pub response_code: String,
    pub auth_code: Option<String>,
    pub issuer_outcome: String,
    pub answered_at: i64,
}

/// One stored key re-wrapped: under `name`, `old` becomes `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReplacement {
    pub name: String,
    pub old: String,
    pub new: String,
}

/// A provisioning attempt that was declined (by the issuer, or by the token service's bound
/// on tries), known by the card's keyed fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclineRow {
    pub card_fingerprint: Vec<u8>,
    pub token_requestor_id: String,
    pub user_id: String,
    /// The issuer's reason (`CVN2_MISMATCH`, …) or `TOO_MANY_DECLINES`.
    pub reason: String,
    pub declined_at: i64,
}

/// Declines counted since some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeclineCounts {
    pub for_card: i64,
    pub for_user: i64,
}

/// An advice waiting in store-and-forward for the issuer's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafRow {
    /// `{advice MTI}:{the original request's journal id}`.
    pub id: String,
    /// The advice's MTI: `0220` (a stand-in approval to post, an offline spend to clear) or
    /// `0420` (a reversal).
    pub mti: String,
    /// `reversal`, `stand_in` or `ecash`.
    pub kind: String,
    pub token_number: String,
    pub original_mti: String,
    pub stan: String,
    pub transmission_time: String,
    pub acquirer_id: String,
    pub rrn: String,
    pub terminal_id: String,
    pub merchant_id: String,
    pub amount: i64,
    pub currency: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub acknowledged_at: Option<i64>,
    pub response_code: Option<String>,
}

/// One step of the switch's journal; a batch of them commits in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalOp {
    /// Records a request (with its answer, if the row carries one: a barred original is
    /// recorded answered in one step); a request already recorded is a duplicate.
    Begin(JournalRow),
    /// Records the answer.
    Answer(JournalAnswer),
    /// Queues an advice for the issuer; the same advice already queued stays as it is.
    Enqueue(SafRow),
    /// Clears an offline spend (token, ATC) once: records it and queues its advice, unless
    /// it was cleared before.
    ClearOffline {
        token_number: String,
        atc: i64,
        advice: SafRow,
    },
    /// Accepts an online cryptogram's ATC for a token if it is above every ATC accepted
    /// before for that token (by any switch instance on this store).
    AcceptAtc {
        token_number: String,
        atc: i64,
        at: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalOutcome {
    Recorded,
    /// `Begin` of a request already recorded: the earlier record.
    Duplicate(Box<JournalRow>),
    /// `Enqueue` of an advice already queued.
    AlreadyQueued,
    /// `ClearOffline` of a spend cleared before.
    AlreadyCleared,
    /// `AcceptAtc` of an ATC at or below one accepted before: a replay.
    StaleAtc,
}

/// What became of one delivery attempt of an advice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SafDelivery {
    Acknowledged { response_code: String, at: i64 },
    Retry { next_attempt_at: i64 },
}

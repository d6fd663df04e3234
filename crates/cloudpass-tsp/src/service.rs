//! The token service: the operations behind the API. Each one reads what it needs, lets the
//! pure rules of `cloudpass-core` decide (through [`crate::plan`]), and commits one changeset
//! — rows, history and notifications together. A commit refused because something changed
//! since the read is retried from the read, a bounded number of times.

use std::sync::{Arc, RwLock};

use cloudpass_core::device::{self, DeviceCondition, DeviceEvent, DeviceKind, DeviceState};
use cloudpass_core::lifecycle::{Channel, DeleteReason, LifecycleEvent, TokenState, TokenStatus};
use cloudpass_core::{
    AccountNumber, Clock, Currency, Expiry, Money, Pan, Random, Token, hex, luhn_check_digit,
};
use cloudpass_crypto::{CardProfileRequest, DeviceEnvelope, Hsm, KeyDelivery, KeyHandle};
use cloudpass_issuer_api::{
    ApprovalRequest, Decision, DeviceInfo, EligibilityRequest, PasscodeRequest,
};
use cloudpass_store::{
    AnyStore, BinRangeRow, CardRow, ChallengeRow, DeclineRow, DeviceRow, Duplicate, IssuerRow,
    ProductRow, StoreError, TokenRequestorRow, TokenRow, TokenStore, UserRow,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{TspError, TspResult};
use crate::issuer_client::{IssuerClient, IssuerEndpoint};
use crate::keys::TspKeys;
use crate::model::*;
use crate::plan::{Plan, apply_event, reassign_default};
use crate::secret::Secret;
use crate::vault::{Vault, pan_aad};

/// Bounds and durations of the token service.
#[derive(Debug, Clone)]
pub struct TspConfig {
    pub otp_validity_ms: i64,
    pub otp_attempts: i64,
    pub otp_resends: i64,
    /// Limited-use keys per HCE batch.
    pub hce_batch: u16,
    pub token_validity_years: u8,
    /// Attempts at a commit that keeps conflicting with concurrent changes.
    pub max_retries: u32,
    pub push_receipt_validity_ms: i64,
    /// Card testing: declined provisioning attempts counted over this window …
    pub decline_window_ms: i64,
    /// … and the most a card may collect before the token service declines it without
    /// asking the issuer …
    pub max_declines_per_card: i64,
    /// … and the most one wallet account may collect, over all cards.
    pub max_declines_per_account: i64,
    pub vault_cache_capacity: usize,
    /// How long a cached vault entry is trusted. `None`: until this process changes the
    /// token (it sees every change). A switch running apart from the token service that
    /// changes tokens sets a bound, since it is not told of changes.
    pub vault_cache_ttl: Option<std::time::Duration>,
}

impl Default for TspConfig {
    fn default() -> Self {
        Self {
            otp_validity_ms: 10 * 60_000,
            otp_attempts: 3,
            otp_resends: 3,
            hce_batch: 10,
            token_validity_years: 3,
            max_retries: 16,
            push_receipt_validity_ms: 15 * 60_000,
            decline_window_ms: 24 * 3_600_000,
            max_declines_per_card: 5,
            max_declines_per_account: 10,
            vault_cache_capacity: crate::vault::DEFAULT_CACHE_CAPACITY,
            vault_cache_ttl: None,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A wallet (token requestor).
    Wallet(TokenRequestorRow),
    /// A bank.
    Issuer(IssuerRow),
}

impl Principal {
    pub fn channel(&self) -> Channel {
        match self {
            Principal::Wallet(_) => Channel::Wallet,
            Principal::Issuer(_) => Channel::Issuer,
        }
    }

    /// The key idempotency records are kept under.
    pub fn idempotency_scope(&self) -> String {
        match self {
            Principal::Wallet(tr) => format!("tr:{}", tr.id),
            Principal::Issuer(issuer) => format!("iss:{}", issuer.id),
        }
    }
}

/// Card data typed by the cardholder into the wallet.
pub struct CardData {
    pub number: String,
    pub expiry: String,
    pub cvn2: Option<String>,
}

/// A request to load a card onto a device.
pub struct ProvisionRequest {
    pub device_id: String,
    pub account_id: String,
    /// Card data from the wallet, or …
    pub card: Option<CardData>,
    /// … a receipt from the issuer's app (push provisioning).
    pub push_receipt: Option<String>,
    pub domains: Option<Vec<String>>,
    pub ecash: bool,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StepUp {
    pub method: &'static str,
    pub destination: String,
    pub expires_at: i64,
    pub attempts_left: i64,
    pub resends_left: i64,
    /// Whether the bank confirmed it sent the code; if not, ask for a resend.
    pub sent: bool,
}

/// A card profile sealed to the device's key (X25519 + AES-256-GCM), hex.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Envelope")]
pub struct EnvelopeView {
    pub ephemeral_public_key: String,
    pub nonce: String,
    pub ciphertext: String,
}

impl From<DeviceEnvelope> for EnvelopeView {
    fn from(envelope: DeviceEnvelope) -> Self {
        Self {
            ephemeral_public_key: hex::encode(&envelope.ephemeral_public_key),
            nonce: hex::encode(&envelope.nonce),
            ciphertext: hex::encode(&envelope.ciphertext),
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ProvisionOutcome {
    /// `green` (active now) or `yellow` (pending step-up).
    #[schemars(schema_with = "crate::schema::decision")]
    pub decision: &'static str,
    pub token: TokenView,
    pub step_up: Option<StepUp>,
    /// The sealed card profile, for a green decision.
    pub card_profile: Option<EnvelopeView>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ActivationOutcome {
    pub token: TokenView,
    pub card_profile: EnvelopeView,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeviceEventOutcome {
    pub device: DeviceView,
    pub tokens: Vec<TokenView>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CardTokens {
    pub card: CardView,
    pub tokens: Vec<TokenView>,
}

/// A wallet account, as registered.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UserView {
    pub user_id: String,
    pub account_id: String,
}

/// A push-provisioning receipt for one wallet's device.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PushReceiptView {
    /// Sealed, single-use; the wallet presents it instead of the card's data.
    pub push_receipt: String,
    pub token_requestor_id: String,
    pub device_id: String,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// A card's declined provisioning attempts in the window.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeclinesView {
    pub window_ms: i64,
    pub declines: Vec<DeclineView>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeclineView {
    pub token_requestor_id: String,
    pub user_id: String,
    /// The issuer's reason (`CVN2_MISMATCH`, …) or `TOO_MANY_DECLINES`.
    pub reason: String,
    /// Unix milliseconds.
    pub declined_at: i64,
}

/// Card events a bank reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardEvent {
    Lost,
    Stolen,
    Found,
    Closed,
}

impl CardEvent {
    pub const ALL: [CardEvent; 4] = [
        CardEvent::Lost,
        CardEvent::Stolen,
        CardEvent::Found,
        CardEvent::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CardEvent::Lost => "lost",
            CardEvent::Stolen => "stolen",
            CardEvent::Found => "found",
            CardEvent::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<CardEvent> {
        CardEvent::ALL
            .into_iter()
            .find(|event| event.as_str() == text)
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "CvmLimits")]
pub struct CvmLimitsView {
    pub product: String,
    pub currency: String,
    pub contactless_no_pin_limit: String,
    pub online_no_pin_limit: String,
    pub tokens_notified: usize,
}

pub struct Tsp {
    pub(crate) store: AnyStore,
    pub(crate) hsm: Arc<dyn Hsm>,
    pub(crate) keys: TspKeys,
    pub(crate) issuers: Arc<dyn IssuerClient>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn Random>,
    pub(crate) config: TspConfig,
    pub vault: Vault,
    bins: RwLock<Vec<BinRangeRow>>,
    /// API key hash → caller, for [`PRINCIPAL_TTL_MS`]: a revoked key stops working within
    /// that time.
    principals: RwLock<std::collections::HashMap<Vec<u8>, (Principal, i64)>>,
}

/// How long an authenticated API key is remembered.
pub const PRINCIPAL_TTL_MS: i64 = 10_000;
/// Most API keys remembered at once.
const PRINCIPAL_CACHE_CAPACITY: usize = 10_000;

/// The card facts a new token is created from.
#[derive(Clone, Copy)]
struct CardFacts<'a> {
    pan: &'a Pan,
    expiry: Expiry,
    fingerprint: &'a [u8],
    funding: &'a str,
    product: &'a str,
    phone: Option<&'a str>,
}

/// Why creating a token failed: a store outcome the caller may retry, or a final error.
enum CreateFailure {
    Store(StoreError),
    Tsp(TspError),
}

/// Runs `attempt` until it does not fail with a conflict, at most `limit` times.
macro_rules! retrying {
    ($self:ident, $attempt:expr) => {{
        let mut tries = 0u32;
        loop {
            match $attempt {
                Err(TspError::Busy) if tries + 1 < $self.config.max_retries => {
                    tries += 1;
                    // Spread competing writers out a little before they re-read.
                    let jitter = $self.random.below(u64::from(tries) * 2 + 1);
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                }
                other => break other,
            }
        }
    }};
}

fn funding_of(text: Option<&str>) -> &str {
    match text {
        Some("credit") => "credit",
        _ => "debit",
    }
}

/// `181****0000`-style masking for anything but the last 4 and first 3 characters.
fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < 3 || i >= chars.len() - 4 {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

impl Tsp {
    pub async fn new(
        store: AnyStore,
        hsm: Arc<dyn Hsm>,
        issuers: Arc<dyn IssuerClient>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        config: TspConfig,
    ) -> TspResult<Self> {
        let keys = TspKeys::load(&store, &hsm, clock.as_ref()).await?;
        let vault = Vault::new(
            store.clone(),
            Arc::clone(&hsm),
            keys.data,
            config.vault_cache_capacity,
            Arc::clone(&clock),
        )
        .with_ttl(config.vault_cache_ttl);
        let bins = store.bin_ranges().await?;
        Ok(Self {
            store,
            hsm,
            keys,
            issuers,
            clock,
            random,
            config,
            vault,
            bins: RwLock::new(bins),
            principals: RwLock::new(std::collections::HashMap::new()),
        })
    }

    /// The IMK-AC an issuer's tokens derive their EMV keys from (the switch verifies
    /// cryptograms with it, in the same HSM).
    pub async fn issuer_master_key(&self, issuer_id: &str) -> TspResult<KeyHandle> {
        self.keys
            .issuer_master_key(&self.store, &self.hsm, self.clock.as_ref(), issuer_id)
            .await
    }

    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    pub fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    /// The keyed fingerprint of a request (method, path, body) for its idempotency record:
    /// it tells a replay from a different request under the same key, and cannot be
    /// reversed to the card data a body may carry without the HSM's key.
    pub fn request_fingerprint(&self, method: &str, path: &str, body: &[u8]) -> TspResult<Vec<u8>> {
        let mut data = Vec::with_capacity(method.len() + path.len() + body.len() + 2);
        data.extend_from_slice(method.as_bytes());
        data.push(b' ');
        data.extend_from_slice(path.as_bytes());
        data.push(b'\n');
        data.extend_from_slice(body);
        let fingerprint = self.hsm.fingerprint(self.keys.requests, &data);
        zeroize::Zeroize::zeroize(&mut data);
        Ok(fingerprint?.to_vec())
    }

    pub(crate) fn id(&self, prefix: &str) -> String {
        new_id(prefix, self.random.as_ref())
    }

    /// The caller behind an API key's hash: a wallet, a bank, or nobody.
    pub async fn principal(&self, key_hash: &[u8]) -> TspResult<Option<Principal>> {
        let now = self.now();
        if let Some((principal, expires)) = self
            .principals
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_hash)
            && *expires > now
        {
            return Ok(Some(principal.clone()));
        }
        let principal = match self.store.token_requestor_by_api_key(key_hash).await? {
            Some(requestor) => Some(Principal::Wallet(requestor)),
            None => self
                .store
                .issuer_by_api_key(key_hash)
                .await?
                .map(Principal::Issuer),
        };
        if let Some(principal) = &principal {
            let mut cache = self.principals.write().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= PRINCIPAL_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(
                key_hash.to_vec(),
                (principal.clone(), now + PRINCIPAL_TTL_MS),
            );
        }
        Ok(principal)
    }

    /// Re-reads the BIN ranges after issuers were added.
    pub async fn reload_bins(&self) -> TspResult<()> {
        let bins = self.store.bin_ranges().await?;
        *self.bins.write().unwrap_or_else(|p| p.into_inner()) = bins;
        Ok(())
    }

    /// The longest matching BIN range of `kind` for a number.
    fn bin_range(&self, kind: &str, number: &str) -> Option<BinRangeRow> {
        self.bins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|range| range.kind == kind && number.starts_with(&range.prefix))
            .max_by_key(|range| range.prefix.len())
            .cloned()
    }

    fn token_ranges(&self, issuer_id: &str, product: &str) -> Vec<BinRangeRow> {
        let bins = self.bins.read().unwrap_or_else(|p| p.into_inner());
        let of_issuer: Vec<BinRangeRow> = bins
            .iter()
            .filter(|r| r.kind == "token" && r.issuer_id == issuer_id)
            .cloned()
            .collect();
        let same_product: Vec<BinRangeRow> = of_issuer
            .iter()
            .filter(|r| r.product == product)
            .cloned()
            .collect();
        if same_product.is_empty() {
            of_issuer
        } else {
            same_product
        }
    }

    pub(crate) fn fingerprint(&self, pan: &Pan) -> TspResult<Vec<u8>> {
        Ok(self
            .hsm
            .fingerprint(self.keys.fingerprint, pan.expose().as_bytes())?
            .to_vec())
    }

    /// Decrypts a stored card number (for a call to its issuer).
    fn card_number(&self, card: &CardRow) -> TspResult<Pan> {
        let clear = self
            .hsm
            .decrypt(self.keys.data, &card.pan_encrypted, &pan_aad(&card.id))?;
        let text = std::str::from_utf8(&clear)
            .map_err(|_| TspError::Internal("stored card number is not text".into()))?;
        Pan::parse(text).map_err(|_| TspError::Internal("stored card number is invalid".into()))
    }

    /// The card's BIN range, its issuer, and where to reach the issuer.
    pub(crate) async fn card_issuer(
        &self,
        pan: &Pan,
    ) -> TspResult<(BinRangeRow, IssuerRow, IssuerEndpoint)> {
        let range = self
            .bin_range("card", pan.expose())
            .ok_or(TspError::NoIssuer)?;
        let issuer = self
            .store
            .issuer(&range.issuer_id)
            .await?
            .ok_or(TspError::NoIssuer)?;
        let endpoint = self.endpoint(&issuer).await?;
        Ok((range, issuer, endpoint))
    }

    async fn endpoint(&self, issuer: &IssuerRow) -> TspResult<IssuerEndpoint> {
        let secret = match &issuer.webhook_secret {
            Some(sealed) => self
                .hsm
                .decrypt(
                    self.keys.data,
                    sealed,
                    format!("secret {}", issuer.id).as_bytes(),
                )?
                .to_vec(),
            None => Vec::new(),
        };
        Ok(IssuerEndpoint {
            issuer_id: issuer.id.clone(),
            api_url: issuer.api_url.clone(),
            secret: Secret::new(secret),
        })
    }

    /// Encrypts a participant's shared secret for storage.
    pub fn seal_secret(&self, owner_id: &str, secret: &[u8]) -> TspResult<Vec<u8>> {
        Ok(self.hsm.encrypt(
            self.keys.data,
            secret,
            format!("secret {owner_id}").as_bytes(),
        )?)
    }

    /// A participant's shared secret, decrypted.
    pub fn open_secret(&self, owner_id: &str, sealed: &[u8]) -> TspResult<Secret> {
        Ok(Secret::new(
            self.hsm
                .decrypt(
                    self.keys.data,
                    sealed,
                    format!("secret {owner_id}").as_bytes(),
                )?
                .to_vec(),
        ))
    }

    /// Commits a plan and drops the vault's cached entries of the tokens it touched.
    async fn commit(&self, mut plan: Plan<'_>) -> Result<(), StoreError> {
        plan.changeset.idempotency_claim = crate::claim::current();
        self.store.commit(&plan.changeset).await?;
        self.vault.invalidate(&plan.touched);
        Ok(())
    }

    // ---- reading, with access checks -------------------------------------------------

    async fn device_of(&self, tr: &TokenRequestorRow, external_id: &str) -> TspResult<DeviceRow> {
        self.store
            .device_by_external_id(&tr.id, external_id)
            .await?
            .ok_or_else(|| TspError::not_found("DEVICE_NOT_FOUND", "device"))
    }

    async fn card_row(&self, id: &str) -> TspResult<CardRow> {
        self.store
            .card(id)
            .await?
            .ok_or_else(|| TspError::Internal(format!("card {id} missing")))
    }

    async fn device_row(&self, id: &str) -> TspResult<DeviceRow> {
        self.store
            .device(id)
            .await?
            .ok_or_else(|| TspError::Internal(format!("device {id} missing")))
    }

    /// A token the principal may see: the wallet's own, or a token of the bank's card.
    async fn visible_token(
        &self,
        principal: &Principal,
        token_id: &str,
    ) -> TspResult<(TokenRow, CardRow)> {
        let not_found = || TspError::not_found("TOKEN_NOT_FOUND", "token");
        let token = self.store.token(token_id).await?.ok_or_else(not_found)?;
        let card = self.card_row(&token.card_id).await?;
        let visible = match principal {
            Principal::Wallet(tr) => token.token_requestor_id == tr.id,
            Principal::Issuer(issuer) => card.issuer_id == issuer.id,
        };
        if visible {
            Ok((token, card))
        } else {
            Err(not_found())
        }
    }

    pub async fn token_view(&self, principal: &Principal, token_id: &str) -> TspResult<TokenView> {
        let (token, card) = self.visible_token(principal, token_id).await?;
        let device = self.device_row(&token.device_id).await?;
        Ok(token_view(&token, &card, &device))
    }

    async fn views(&self, tokens: &[TokenRow]) -> TspResult<Vec<TokenView>> {
        let mut views = Vec::with_capacity(tokens.len());
        for token in tokens {
            let card = self.card_row(&token.card_id).await?;
            let device = self.device_row(&token.device_id).await?;
            views.push(token_view(token, &card, &device));
        }
        Ok(views)
    }

    pub async fn history(
        &self,
        principal: &Principal,
        token_id: &str,
    ) -> TspResult<Vec<HistoryView>> {
        self.visible_token(principal, token_id).await?;
        Ok(self
            .store
            .history(token_id)
            .await?
            .iter()
            .map(history_view)
            .collect())
    }

    /// The notifications about a token that went (or go) to the caller.
    pub async fn notifications(
        &self,
        principal: &Principal,
        token_id: &str,
    ) -> TspResult<Vec<NotificationView>> {
        self.visible_token(principal, token_id).await?;
        let (kind, id) = match principal {
            Principal::Wallet(tr) => ("token_requestor", tr.id.as_str()),
            Principal::Issuer(issuer) => ("issuer", issuer.id.as_str()),
        };
        Ok(self
            .store
            .outbox_for_token(token_id)
            .await?
            .iter()
            .filter(|row| row.subscriber_kind == kind && row.subscriber_id == id)
            .map(notification_view)
            .collect())
    }

    pub async fn device_tokens(
        &self,
        tr: &TokenRequestorRow,
        external_id: &str,
        include_deleted: bool,
    ) -> TspResult<Vec<TokenView>> {
        let device = self.device_of(tr, external_id).await?;
        let tokens: Vec<TokenRow> = self
            .store
            .tokens_by_device(&device.id)
            .await?
            .into_iter()
            .filter(|t| include_deleted || !t.deleted)
            .collect();
        self.views(&tokens).await
    }

    pub async fn device_view(
        &self,
        tr: &TokenRequestorRow,
        external_id: &str,
    ) -> TspResult<DeviceView> {
        let device = self.device_of(tr, external_id).await?;
        self.view_of_device(&device).await
    }

    async fn view_of_device(&self, device: &DeviceRow) -> TspResult<DeviceView> {
        let account = match &device.user_id {
            Some(user) => self.store.user(user).await?.map(|u| u.account_id),
            None => None,
        };
        Ok(device_view(device, account))
    }

    async fn card_of_issuer(&self, issuer: &IssuerRow, card_number: &str) -> TspResult<CardRow> {
        let pan = Pan::parse(card_number).map_err(TspError::InvalidCardNumber)?;
        let fingerprint = self.fingerprint(&pan)?;
        match self.store.card_by_fingerprint(&fingerprint).await? {
            Some(card) if card.issuer_id == issuer.id => Ok(card),
            _ => Err(TspError::not_found("CARD_NOT_FOUND", "card")),
        }
    }

    pub async fn card_tokens(
        &self,
        issuer: &IssuerRow,
        card_number: &str,
    ) -> TspResult<CardTokens> {
        let card = self.card_of_issuer(issuer, card_number).await?;
        let tokens = self.store.tokens_by_card(&card.id).await?;
        Ok(CardTokens {
            card: card_view(&card),
            tokens: self.views(&tokens).await?,
        })
    }

    // ---- users and devices ------------------------------------------------------------

    pub async fn register_user(
        &self,
        tr: &TokenRequestorRow,
        account_id: &str,
    ) -> TspResult<UserView> {
        if !identifier(account_id) {
            return Err(TspError::InvalidRequest(
                "account_id must be 1 to 64 printable characters".into(),
            ));
        }
        let user = UserRow {
            id: self.id("usr"),
            token_requestor_id: tr.id.clone(),
            account_id: account_id.to_owned(),
            created_at: self.now(),
        };
        match self.store.insert_user(&user).await {
            Ok(()) => Ok(UserView {
                user_id: user.id,
                account_id: user.account_id,
            }),
            Err(StoreError::Duplicate(Duplicate::User)) => Err(TspError::AlreadyExists("user")),
            Err(error) => Err(error.into()),
        }
    }

    async fn user_by_account(
        &self,
        tr: &TokenRequestorRow,
        account_id: &str,
    ) -> TspResult<UserRow> {
        self.store
            .user_by_account(&tr.id, account_id)
            .await?
            .ok_or_else(|| TspError::not_found("USER_NOT_FOUND", "user"))
    }

    pub async fn register_device(
        &self,
        tr: &TokenRequestorRow,
        external_id: &str,
        kind: &str,
        brand: &str,
        account_id: Option<&str>,
        unlock_set: bool,
        public_key_hex: &str,
    ) -> TspResult<DeviceView> {
        if !identifier(external_id) {
            return Err(TspError::InvalidRequest(
                "device_id must be 1 to 64 printable characters".into(),
            ));
        }
        if brand.chars().count() > 64 || brand.chars().any(char::is_control) {
            return Err(TspError::InvalidRequest(
                "brand must be at most 64 printable characters".into(),
            ));
        }
        let kind = DeviceKind::parse(kind).ok_or_else(|| {
            TspError::InvalidRequest("kind must be handset_se, wearable, hce or sim_se".into())
        })?;
        let public_key = hex::decode(public_key_hex)
            .ok()
            .filter(|key| cloudpass_crypto::envelope::check_public_key(key).is_ok())
            .ok_or_else(|| {
                TspError::InvalidRequest(
                    "public_key must be 64 hex digits: an X25519 public key of large order \
                     (all zeros and the points of small order are refused)"
                        .into(),
                )
            })?;
        let user_id = match account_id {
            Some(account) => Some(self.user_by_account(tr, account).await?.id),
            None => None,
        };
        let now = self.now();
        let device = DeviceRow {
            id: self.id("dev"),
            token_requestor_id: tr.id.clone(),
            external_id: external_id.to_owned(),
            kind: kind.as_str().to_owned(),
            brand: brand.to_owned(),
            state: DeviceState::Active.as_str().to_owned(),
            user_id,
            unlock_set,
            public_key,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        match self.store.insert_device(&device).await {
            Ok(()) => self.view_of_device(&device).await,
            Err(StoreError::Duplicate(Duplicate::Device)) => Err(TspError::AlreadyExists("device")),
            Err(error) => Err(error.into()),
        }
    }

    /// A device event from the wallet: lost, found, wiped, restored, signed in/out, unlock
    /// removed/set — and what it does to every token on the device.
    pub async fn device_event(
        &self,
        tr: &TokenRequestorRow,
        external_id: &str,
        event: DeviceEvent,
        account_id: Option<&str>,
    ) -> TspResult<DeviceEventOutcome> {
        let user_id = match (event, account_id) {
            (DeviceEvent::SignedIn, Some(account)) => {
                Some(self.user_by_account(tr, account).await?.id)
            }
            (DeviceEvent::SignedIn, None) => {
                return Err(TspError::InvalidRequest(
                    "signed_in needs account_id".into(),
                ));
            }
            _ => None,
        };
        let device_id = self.device_of(tr, external_id).await?.id;
        retrying!(
            self,
            self.device_event_once(&device_id, event, user_id.clone())
                .await
        )
    }

    async fn device_event_once(
        &self,
        device_id: &str,
        event: DeviceEvent,
        user_id: Option<String>,
    ) -> TspResult<DeviceEventOutcome> {
        let device = self.device_row(device_id).await?;
        let state = DeviceState::parse(&device.state)
            .ok_or_else(|| TspError::Internal("bad device state".into()))?;
        let condition = DeviceCondition {
            state,
            signed_in: device.user_id.is_some(),
            unlock_set: device.unlock_set,
        };
        let (next, token_event) = device::apply_device_event(condition, event)?;
        let now = self.now();
        let mut updated = device.clone();
        updated.state = next.state.as_str().to_owned();
        updated.unlock_set = next.unlock_set;
        if !next.signed_in {
            updated.user_id = None;
        } else if let Some(user) = user_id {
            updated.user_id = Some(user);
        }
        updated.updated_at = now;

        let original = self.store.tokens_by_device(device_id).await?;
        let mut tokens = original.clone();
        let mut plan = Plan::new(now, self.random.as_ref());
        if let Some(token_event) = token_event {
            let applied = apply_event(
                &mut tokens,
                |t| !t.deleted,
                token_event,
                Channel::Wallet,
                now,
                false,
            )?;
            let default_changed = reassign_default(&mut tokens, now)?;
            let cards = self.cards_of(&tokens).await?;
            plan.record(
                &tokens,
                &cards,
                &applied,
                &default_changed,
                token_event,
                Channel::Wallet,
                json!({"device_event": event.as_str()}),
            );
            plan.update_changed(&original, &tokens);
        }
        plan.changeset.device_updates.push(updated.clone());
        self.commit(plan).await?;
        let live: Vec<TokenRow> = tokens
            .into_iter()
            .filter(|t| !t.deleted || original.iter().any(|o| o.id == t.id && !o.deleted))
            .collect();
        Ok(DeviceEventOutcome {
            device: self.view_of_device(&updated).await?,
            tokens: self.views(&live).await?,
        })
    }

    async fn cards_of(&self, tokens: &[TokenRow]) -> TspResult<Vec<CardRow>> {
        let mut cards: Vec<CardRow> = Vec::new();
        for token in tokens {
            if !cards.iter().any(|c| c.id == token.card_id) {
                cards.push(self.card_row(&token.card_id).await?);
            }
        }
        Ok(cards)
    }

    // ---- token lifecycle --------------------------------------------------------------

    /// Suspend, resume, delete or update one token, from the wallet or the bank.
    pub async fn token_event(
        &self,
        principal: &Principal,
        token_id: &str,
        event: LifecycleEvent,
        metadata: Option<Value>,
    ) -> TspResult<TokenView> {
        self.visible_token(principal, token_id).await?;
        if crate::claim::effect_already_committed() {
            // This very request's change was committed before its process died.
            return self.token_view(principal, token_id).await;
        }
        let channel = principal.channel();
        retrying!(
            self,
            self.token_event_once(token_id, event, channel, metadata.clone())
                .await
        )
    }

    async fn token_event_once(
        &self,
        token_id: &str,
        event: LifecycleEvent,
        channel: Channel,
        metadata: Option<Value>,
    ) -> TspResult<TokenView> {
        self.token_event_with(token_id, event, channel, metadata, false)
            .await
    }

    /// Applies `event` to one token; `clear_challenge` also removes its step-up challenge in
    /// the same commit.
    async fn token_event_with(
        &self,
        token_id: &str,
        event: LifecycleEvent,
        channel: Channel,
        metadata: Option<Value>,
        clear_challenge: bool,
    ) -> TspResult<TokenView> {
        let token = self
            .store
            .token(token_id)
            .await?
            .ok_or_else(|| TspError::not_found("TOKEN_NOT_FOUND", "token"))?;
        let device = self.device_row(&token.device_id).await?;
        let original = self.store.tokens_by_device(&device.id).await?;
        let mut tokens = original.clone();
        let now = self.now();
        let applied = apply_event(&mut tokens, |t| t.id == token_id, event, channel, now, true)?;
        if let (LifecycleEvent::UpdateMetadata, Some(metadata)) = (event, &metadata)
            && let Some(token) = tokens.iter_mut().find(|t| t.id == token_id)
        {
            token.metadata = metadata.to_string();
            token.updated_at = now;
        }
        let default_changed = reassign_default(&mut tokens, now)?;
        let cards = self.cards_of(&tokens).await?;
        let mut plan = Plan::new(now, self.random.as_ref());
        let extra = match &metadata {
            Some(metadata) => json!({"metadata": metadata}),
            None => json!({}),
        };
        plan.record(
            &tokens,
            &cards,
            &applied,
            &default_changed,
            event,
            channel,
            extra,
        );
        plan.update_changed(&original, &tokens);
        plan.changeset
            .device_guards
            .push((device.id.clone(), device.version));
        if clear_challenge {
            plan.changeset.challenge_deletes.push(token_id.to_owned());
        }
        self.commit(plan).await?;
        view_among(&tokens, &cards, &device, token_id)
    }

    /// Makes an active token its device's default card.
    pub async fn set_default(
        &self,
        tr: &TokenRequestorRow,
        token_id: &str,
    ) -> TspResult<TokenView> {
        let principal = Principal::Wallet(tr.clone());
        self.visible_token(&principal, token_id).await?;
        if crate::claim::effect_already_committed() {
            return self.token_view(&principal, token_id).await;
        }
        retrying!(self, self.set_default_once(token_id).await)
    }

    async fn set_default_once(&self, token_id: &str) -> TspResult<TokenView> {
        let token = self
            .store
            .token(token_id)
            .await?
            .ok_or_else(|| TspError::not_found("TOKEN_NOT_FOUND", "token"))?;
        if !cloudpass_core::default_card::may_be_made_default(&token_state(&token)?) {
            return Err(TspError::TokenNotActive);
        }
        let device = self.device_row(&token.device_id).await?;
        let original = self.store.tokens_by_device(&device.id).await?;
        let mut tokens = original.clone();
        let now = self.now();
        let mut changed = Vec::new();
        for token in tokens.iter_mut() {
            let should = token.id == token_id;
            if token.is_default != should {
                token.is_default = should;
                token.updated_at = now;
                changed.push(token.id.clone());
            }
        }
        let cards = self.cards_of(&tokens).await?;
        let mut plan = Plan::new(now, self.random.as_ref());
        plan.record_defaults(&tokens, &changed, Channel::Wallet);
        plan.update_changed(&original, &tokens);
        plan.changeset
            .device_guards
            .push((device.id.clone(), device.version));
        self.commit(plan).await?;
        view_among(&tokens, &cards, &device, token_id)
    }

    /// The bank reports its physical card lost, stolen, found or closed.
    pub async fn card_event(
        &self,
        issuer: &IssuerRow,
        card_number: &str,
        event: CardEvent,
    ) -> TspResult<CardTokens> {
        let card_id = self.card_of_issuer(issuer, card_number).await?.id;
        retrying!(self, self.card_event_once(&card_id, event).await)
    }

    async fn card_event_once(&self, card_id: &str, event: CardEvent) -> TspResult<CardTokens> {
        let card = self.card_row(card_id).await?;
        if card.status == "closed" {
            return Err(TspError::InvalidRequest("the card is closed".into()));
        }
        let (token_event, status) = match event {
            CardEvent::Lost => (LifecycleEvent::CardLost, "lost"),
            CardEvent::Stolen => (LifecycleEvent::CardStolen, "stolen"),
            CardEvent::Found => (LifecycleEvent::CardFound, "active"),
            CardEvent::Closed => (LifecycleEvent::CardClosed, "closed"),
        };
        let now = self.now();
        let mut updated_card = card.clone();
        updated_card.status = status.to_owned();
        updated_card.updated_at = now;
        let mut plan = Plan::new(now, self.random.as_ref());
        let mut result = Vec::new();
        for device_id in self.devices_of_card(card_id).await? {
            let device = self.device_row(&device_id).await?;
            let original = self.store.tokens_by_device(&device_id).await?;
            let mut tokens = original.clone();
            let applied = apply_event(
                &mut tokens,
                |t| t.card_id == card_id && !t.deleted,
                token_event,
                Channel::Issuer,
                now,
                false,
            )?;
            let default_changed = reassign_default(&mut tokens, now)?;
            let mut cards = self.cards_of(&tokens).await?;
            for c in cards.iter_mut().filter(|c| c.id == card_id) {
                *c = updated_card.clone();
            }
            plan.record(
                &tokens,
                &cards,
                &applied,
                &default_changed,
                token_event,
                Channel::Issuer,
                json!({}),
            );
            plan.update_changed(&original, &tokens);
            plan.changeset
                .device_guards
                .push((device.id.clone(), device.version));
            result.extend(tokens.into_iter().filter(|t| t.card_id == card_id));
        }
        plan.changeset.card_updates.push(updated_card.clone());
        self.commit(plan).await?;
        Ok(CardTokens {
            card: card_view(&updated_card),
            tokens: self.views(&result).await?,
        })
    }

    async fn devices_of_card(&self, card_id: &str) -> TspResult<Vec<String>> {
        let mut devices: Vec<String> = Vec::new();
        for token in self.store.tokens_by_card(card_id).await? {
            if !token.deleted && !devices.contains(&token.device_id) {
                devices.push(token.device_id);
            }
        }
        Ok(devices)
    }

    /// The bank reissued the card: new number and/or expiry. Every token keeps its number
    /// and now maps to the new card.
    pub async fn reissue_card(
        &self,
        issuer: &IssuerRow,
        card_number: &str,
        new_card_number: Option<&str>,
        new_expiry: &str,
    ) -> TspResult<CardTokens> {
        let expiry: Expiry = new_expiry.parse().map_err(|_| TspError::InvalidExpiry)?;
        let new_pan = match new_card_number {
            Some(number) => Some(Pan::parse(number).map_err(TspError::InvalidCardNumber)?),
            None => None,
        };
        if let Some(pan) = &new_pan {
            match self.bin_range("card", pan.expose()) {
                Some(range) if range.issuer_id == issuer.id => {}
                _ => {
                    return Err(TspError::InvalidRequest(
                        "the new card number is not in one of the issuer's BIN ranges".into(),
                    ));
                }
            }
        }
        let card_id = self.card_of_issuer(issuer, card_number).await?.id;
        retrying!(
            self,
            self.reissue_once(&card_id, new_pan.as_ref(), expiry).await
        )
    }

    async fn reissue_once(
        &self,
        card_id: &str,
        new_pan: Option<&Pan>,
        expiry: Expiry,
    ) -> TspResult<CardTokens> {
        let card = self.card_row(card_id).await?;
        if card.status == "closed" {
            return Err(TspError::InvalidRequest("the card is closed".into()));
        }
        let now = self.now();
        let mut updated = card.clone();
        if let Some(pan) = new_pan {
            updated.pan_fingerprint = self.fingerprint(pan)?;
            updated.pan_encrypted =
                self.hsm
                    .encrypt(self.keys.data, pan.expose().as_bytes(), &pan_aad(card_id))?;
            updated.pan_bin = pan.bin().to_owned();
            updated.pan_last4 = pan.last4().to_owned();
        }
        updated.expiry = expiry.to_wire();
        updated.status = "active".to_owned();
        updated.updated_at = now;
        let tokens = self.store.tokens_by_card(card_id).await?;
        let mut plan = Plan::new(now, self.random.as_ref());
        for token in tokens.iter().filter(|t| !t.deleted) {
            let status = TokenStatus::parse(&token.status).unwrap_or(TokenStatus::Active);
            plan.history(
                &token.id,
                "card_reissued",
                Channel::Issuer,
                Some(status),
                status,
                None,
                Some(format!(
                    "now card ending {}, expiry {}",
                    updated.pan_last4, updated.expiry
                )),
            );
            plan.notify(token, &updated, "PAN_UPDATED", json!({}));
            plan.touched.push(token.token_number.clone());
        }
        plan.changeset.card_updates.push(updated.clone());
        match self.commit(plan).await {
            Err(StoreError::Duplicate(Duplicate::CardFingerprint)) => {
                return Err(TspError::InvalidRequest(
                    "the new card number already belongs to another card".into(),
                ));
            }
            other => other?,
        }
        Ok(CardTokens {
            card: card_view(&updated),
            tokens: self.views(&tokens).await?,
        })
    }

    /// The bank changes a card product's no-PIN limits: stored, and METADATA_UPDATED to the
    /// wallet of every live token of the product.
    pub async fn update_cvm_limits(
        &self,
        issuer: &IssuerRow,
        product: &str,
        contactless: &str,
        online: &str,
    ) -> TspResult<CvmLimitsView> {
        retrying!(
            self,
            self.update_cvm_limits_once(issuer, product, contactless, online)
                .await
        )
    }

    async fn update_cvm_limits_once(
        &self,
        issuer: &IssuerRow,
        product: &str,
        contactless: &str,
        online: &str,
    ) -> TspResult<CvmLimitsView> {
        let row = self
            .store
            .product(&issuer.id, product)
            .await?
            .ok_or_else(|| TspError::not_found("PRODUCT_NOT_FOUND", "card product"))?;
        let currency = Currency::from_numeric(u16::try_from(row.currency).unwrap_or(0))
            .map_err(|e| TspError::Internal(e.to_string()))?;
        let parse = |text: &str, what: &str| {
            Money::parse_decimal(text, currency)
                .map_err(|e| TspError::InvalidRequest(format!("{what}: {e}")))
        };
        let contactless = parse(contactless, "contactless_no_pin_limit")?;
        let online = parse(online, "online_no_pin_limit")?;
        for (limit, name) in [
            (contactless, "contactless_no_pin_limit"),
            (online, "online_no_pin_limit"),
        ] {
            if limit.minor_units() > MAX_NO_PIN_LIMIT_MINOR {
                return Err(TspError::InvalidRequest(format!(
                    "{name} may be at most 100000.00 (a no-PIN limit is a small-payment limit)"
                )));
            }
        }
        let now = self.now();
        let mut updated = row.clone();
        updated.contactless_no_pin_limit = i64::try_from(contactless.minor_units())
            .map_err(|_| TspError::InvalidRequest("limit too large".into()))?;
        updated.online_no_pin_limit = i64::try_from(online.minor_units())
            .map_err(|_| TspError::InvalidRequest("limit too large".into()))?;
        updated.updated_at = now;
        let tokens = self
            .store
            .live_tokens_by_product(&issuer.id, product)
            .await?;
        let cards = self.cards_of(&tokens).await?;
        let limits = cvm_limits_json(&updated, currency);
        let mut plan = Plan::new(now, self.random.as_ref());
        for token in &tokens {
            let Some(card) = cards.iter().find(|c| c.id == token.card_id) else {
                continue;
            };
            let status = TokenStatus::parse(&token.status).unwrap_or(TokenStatus::Active);
            plan.history(
                &token.id,
                "update_metadata",
                Channel::Issuer,
                Some(status),
                status,
                None,
                Some("CVM limits changed".into()),
            );
            plan.notify(
                token,
                card,
                "METADATA_UPDATED",
                json!({"cvm_limits": limits}),
            );
        }
        plan.changeset.product_updates.push(updated.clone());
        // The vault caches each token with its product's limits.
        plan.touched
            .extend(tokens.iter().map(|token| token.token_number.clone()));
        self.commit(plan).await?;
        Ok(CvmLimitsView {
            product: product.to_owned(),
            currency: currency.alpha().to_owned(),
            contactless_no_pin_limit: contactless.to_decimal_string(),
            online_no_pin_limit: online.to_decimal_string(),
            tokens_notified: tokens.len(),
        })
    }

    // ---- provisioning -----------------------------------------------------------------

    /// A receipt the bank's app hands to one wallet for push provisioning onto one device:
    /// the card data, the wallet, the device and an expiry, encrypted under the data key
    /// (opaque to everyone but the TSP). It provisions once.
    pub async fn push_receipt(
        &self,
        issuer: &IssuerRow,
        card_number: &str,
        expiry: &str,
        token_requestor_id: &str,
        device_id: &str,
    ) -> TspResult<PushReceiptView> {
        let pan = Pan::parse(card_number).map_err(TspError::InvalidCardNumber)?;
        let expiry: Expiry = expiry.parse().map_err(|_| TspError::InvalidExpiry)?;
        match self.bin_range("card", pan.expose()) {
            Some(range) if range.issuer_id == issuer.id => {}
            _ => {
                return Err(TspError::InvalidRequest(
                    "the card is not in one of the issuer's BIN ranges".into(),
                ));
            }
        }
        let wallet = self
            .store
            .token_requestor(token_requestor_id)
            .await?
            .ok_or_else(|| TspError::not_found("TOKEN_REQUESTOR_NOT_FOUND", "token requestor"))?;
        let device = self.device_of(&wallet, device_id).await?;
        let receipt_id = self.id("rcp");
        let expires_at = self.now() + self.config.push_receipt_validity_ms;
        let body = zeroize::Zeroizing::new(
            json!({
                "receipt_id": receipt_id,
                "issuer_id": issuer.id,
                "token_requestor_id": wallet.id,
                "device_id": device.external_id,
                "card_number": pan.expose(),
                "expiry": expiry.to_wire(),
                "expires_at": expires_at,
            })
            .to_string(),
        );
        let sealed = self
            .hsm
            .encrypt(self.keys.data, body.as_bytes(), RECEIPT_AAD)?;
        Ok(PushReceiptView {
            push_receipt: hex::encode(&sealed),
            token_requestor_id: wallet.id,
            device_id: device.external_id,
            expires_at,
        })
    }

    /// Opens a receipt presented by `tr` for `device_id`: it must be this wallet's, for this
    /// device, and not expired. Spending it is the caller's next step.
    fn open_push_receipt(
        &self,
        receipt: &str,
        tr: &TokenRequestorRow,
        device_id: &str,
    ) -> TspResult<PushReceipt> {
        let sealed = hex::decode(receipt).map_err(|_| TspError::InvalidPushReceipt)?;
        let clear = zeroize::Zeroizing::new(
            self.hsm
                .decrypt(self.keys.data, &sealed, RECEIPT_AAD)
                .map_err(|_| TspError::InvalidPushReceipt)?,
        );
        let opened: Value =
            serde_json::from_slice(&clear).map_err(|_| TspError::InvalidPushReceipt)?;
        let text = |name: &str| opened[name].as_str().ok_or(TspError::InvalidPushReceipt);
        let expires_at = opened["expires_at"]
            .as_i64()
            .ok_or(TspError::InvalidPushReceipt)?;
        if expires_at < self.now()
            || text("token_requestor_id")? != tr.id
            || text("device_id")? != device_id
        {
            return Err(TspError::InvalidPushReceipt);
        }
        Ok(PushReceipt {
            id: text("receipt_id")?.to_owned(),
            pan: Pan::parse(text("card_number")?).map_err(|_| TspError::InvalidPushReceipt)?,
            expiry: text("expiry")?
                .parse()
                .map_err(|_| TspError::InvalidPushReceipt)?,
        })
    }

    /// Declines the wallet sees: one answer whatever the issuer's reason, so that a wallet
    /// (or someone behind it) cannot tell a wrong CVN2 from a wrong expiry or an unknown
    /// card. The reason is recorded for the bank, and counts towards the card's and the
    /// wallet account's bound on tries.
    async fn decline(
        &self,
        tr: &TokenRequestorRow,
        user: &UserRow,
        fingerprint: &[u8],
        reason: String,
    ) -> TspError {
        let recorded = self
            .store
            .record_provisioning_decline(&DeclineRow {
                card_fingerprint: fingerprint.to_vec(),
                token_requestor_id: tr.id.clone(),
                user_id: user.id.clone(),
                reason,
                declined_at: self.now(),
            })
            .await;
        if let Err(error) = recorded {
            return error.into();
        }
        TspError::Declined
    }

    /// Refuses provisioning, without asking the issuer, once the card or the wallet account
    /// has collected its bound of declines in the window.
    async fn check_tries(&self, user: &UserRow, fingerprint: &[u8]) -> TspResult<()> {
        let since = self.now() - self.config.decline_window_ms;
        let counts = self
            .store
            .provisioning_declines_since(fingerprint, &user.id, since)
            .await?;
        if counts.for_card >= self.config.max_declines_per_card
            || counts.for_user >= self.config.max_declines_per_account
        {
            tracing::warn!(user = %user.id, "provisioning refused: too many declines for the card or the wallet account");
            return Err(TspError::Declined);
        }
        Ok(())
    }

    /// The card's recent declined provisioning attempts, for its bank.
    pub async fn card_declines(
        &self,
        issuer: &IssuerRow,
        card_number: &str,
    ) -> TspResult<DeclinesView> {
        let pan = Pan::parse(card_number).map_err(TspError::InvalidCardNumber)?;
        match self.bin_range("card", pan.expose()) {
            Some(range) if range.issuer_id == issuer.id => {}
            _ => return Err(TspError::not_found("CARD_NOT_FOUND", "card")),
        }
        let since = self.now() - self.config.decline_window_ms;
        let declines = self
            .store
            .provisioning_declines_of_card(&self.fingerprint(&pan)?, since, 100)
            .await?;
        Ok(DeclinesView {
            window_ms: self.config.decline_window_ms,
            declines: declines
                .into_iter()
                .map(|d| DeclineView {
                    token_requestor_id: d.token_requestor_id,
                    user_id: d.user_id,
                    reason: d.reason,
                    declined_at: d.declined_at,
                })
                .collect(),
        })
    }

    /// Loads a card onto a device (空中发卡): green → active token and card profile now;
    /// yellow → pending token and an OTP sent through the bank; red → declined. A push
    /// receipt is spent by the first attempt that presents it, unless that attempt fails
    /// before any effect (the issuer unreachable).
    pub async fn provision(
        &self,
        tr: &TokenRequestorRow,
        request: ProvisionRequest,
    ) -> TspResult<ProvisionOutcome> {
        let receipt = match (&request.card, &request.push_receipt) {
            (Some(_), Some(_)) => {
                return Err(TspError::InvalidRequest(
                    "send either card (number, expiry, cvn2) or push_receipt".into(),
                ));
            }
            (None, Some(receipt)) => {
                let receipt = self.open_push_receipt(receipt, tr, &request.device_id)?;
                if !self
                    .store
                    .spend_push_receipt(&receipt.id, &tr.id, self.now())
                    .await?
                {
                    return Err(TspError::InvalidPushReceipt);
                }
                Some(receipt)
            }
            _ => None,
        };
        let receipt_id = receipt.as_ref().map(|r| r.id.clone());
        let outcome = self.provision_card(tr, request, receipt).await;
        if let (Err(error), Some(id)) = (&outcome, receipt_id)
            && error.is_transient()
        {
            self.store.unspend_push_receipt(&id).await?;
        }
        outcome
    }

    async fn provision_card(
        &self,
        tr: &TokenRequestorRow,
        request: ProvisionRequest,
        receipt: Option<PushReceipt>,
    ) -> TspResult<ProvisionOutcome> {
        // The device and the account.
        let device = self.device_of(tr, &request.device_id).await?;
        let user = self.user_by_account(tr, &request.account_id).await?;
        let kind = DeviceKind::parse(&device.kind)
            .ok_or_else(|| TspError::Internal("bad device kind".into()))?;
        let state = DeviceState::parse(&device.state)
            .ok_or_else(|| TspError::Internal("bad device state".into()))?;
        device::may_receive_card(
            kind,
            DeviceCondition {
                state,
                signed_in: device.user_id.is_some(),
                unlock_set: device.unlock_set,
            },
        )?;
        if device.user_id.as_deref() != Some(user.id.as_str()) {
            return Err(TspError::AccountNotOnDevice);
        }
        // The profile must be sealable before anything is committed or anyone notified: a
        // device registered before keys were checked may hold one that is not.
        cloudpass_crypto::envelope::check_public_key(&device.public_key).map_err(|_| {
            TspError::InvalidRequest(
                "the device's public key cannot be sealed to; register the device again with a valid key".into(),
            )
        })?;
        let (nfc, in_app) = match &request.domains {
            None => (true, true),
            Some(domains) => {
                if domains.is_empty() || domains.iter().any(|d| d != "nfc" && d != "in_app") {
                    return Err(TspError::InvalidRequest(
                        "domains must be a non-empty list of \"nfc\" and \"in_app\"".into(),
                    ));
                }
                (
                    domains.iter().any(|d| d == "nfc"),
                    domains.iter().any(|d| d == "in_app"),
                )
            }
        };

        // The card.
        let (pan, expiry, cvn2, issuer_push) = match (&request.card, receipt) {
            (Some(card), None) => {
                let pan = Pan::parse(card.number.trim()).map_err(TspError::InvalidCardNumber)?;
                let expiry: Expiry = card.expiry.parse().map_err(|_| TspError::InvalidExpiry)?;
                if let Some(cvn2) = &card.cvn2
                    && (cvn2.len() != 3 || !cvn2.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Err(TspError::InvalidRequest("cvn2 must be 3 digits".into()));
                }
                (pan, expiry, card.cvn2.clone(), false)
            }
            (None, Some(receipt)) => (receipt.pan, receipt.expiry, None, true),
            _ => {
                return Err(TspError::InvalidRequest(
                    "send either card (number, expiry, cvn2) or push_receipt".into(),
                ));
            }
        };
        let (range, issuer, endpoint) = self.card_issuer(&pan).await?;
        let fingerprint = self.fingerprint(&pan)?;
        self.check_tries(&user, &fingerprint).await?;
        // What this read finds is reused by the first attempt at writing the token.
        let known_card = self.store.card_by_fingerprint(&fingerprint).await?;
        let known_tokens = self.store.tokens_by_device(&device.id).await?;
        if let Some(card) = &known_card
            && let Some(existing) = known_tokens
                .iter()
                .find(|t| t.card_id == card.id && !t.deleted)
        {
            return Err(TspError::TokenExists {
                token_id: existing.id.clone(),
            });
        }
        let mut known = Some((known_card, known_tokens));

        // Ask the bank.
        let device_info = DeviceInfo {
            kind: device.kind.clone(),
            brand: device.brand.clone(),
        };
        let eligibility = self
            .issuers
            .check_eligibility(
                &endpoint,
                &EligibilityRequest {
                    request_id: self.id("req"),
                    card_number: pan.expose().to_owned(),
                    expiry: expiry.to_wire(),
                    cvn2,
                    token_requestor_id: tr.id.clone(),
                    wallet: tr.wallet.clone(),
                    device: device_info.clone(),
                },
            )
            .await?;
        if !eligibility.eligible {
            let reason = eligibility.reason.unwrap_or_else(|| "NOT_ELIGIBLE".into());
            return Err(self.decline(tr, &user, &fingerprint, reason).await);
        }
        let funding = funding_of(eligibility.funding.as_deref()).to_owned();
        let product = eligibility
            .product
            .clone()
            .unwrap_or_else(|| range.product.clone());
        let token_number = self.new_token_number(&issuer.id, &product, pan.len())?;
        let approval = self
            .issuers
            .approve_provision(
                &endpoint,
                &ApprovalRequest {
                    request_id: self.id("req"),
                    card_number: pan.expose().to_owned(),
                    expiry: expiry.to_wire(),
                    token_last4: last4(token_number.expose()).to_owned(),
                    token_requestor_id: tr.id.clone(),
                    wallet: tr.wallet.clone(),
                    device: device_info,
                    issuer_push,
                },
            )
            .await?;
        let green = match approval.decision {
            Decision::Green => true,
            Decision::Yellow => false,
            Decision::Red => {
                let reason = approval.reason.unwrap_or_else(|| "DECLINED".into());
                return Err(self.decline(tr, &user, &fingerprint, reason).await);
            }
        };
        let assurance = if issuer_push {
            "04"
        } else if green {
            "02"
        } else {
            "03"
        };
        let otp = if green {
            None
        } else {
            Some(format!("{:06}", self.random.below(1_000_000)))
        };

        // Write the card (if new), the token, its history and notifications.
        let phone = eligibility
            .reserved_phone_masked
            .clone()
            .map(|p| if p.contains('*') { p } else { mask_phone(&p) });
        let mut number = token_number;
        let mut tries = 0;
        let product_row = self.store.product(&issuer.id, &product).await?;
        let (token, card) = loop {
            tries += 1;
            let card = CardFacts {
                pan: &pan,
                expiry,
                fingerprint: &fingerprint,
                funding: &funding,
                product: &product,
                phone: phone.as_deref(),
            };
            let attempt = self
                .create_token(
                    tr,
                    &user,
                    &device,
                    &issuer,
                    &card,
                    known.take(),
                    product_row.as_ref(),
                    &number,
                    green,
                    assurance,
                    (nfc, in_app),
                    request.ecash,
                    otp.as_deref(),
                    kind,
                )
                .await;
            match attempt {
                Ok(created) => break created,
                // Another request chose the same token number: draw another.
                Err(CreateFailure::Store(StoreError::Duplicate(Duplicate::TokenNumber)))
                    if tries < 5 =>
                {
                    number = self.new_token_number(&issuer.id, &product, pan.len())?;
                }
                // A concurrent request created the card or changed the device: re-read.
                Err(CreateFailure::Store(
                    StoreError::Duplicate(Duplicate::CardFingerprint) | StoreError::Conflict,
                )) if tries < self.config.max_retries => {
                    let jitter = self.random.below(u64::from(tries) * 2 + 1);
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                }
                // A concurrent request loaded the same card onto this device first.
                Err(CreateFailure::Store(StoreError::Duplicate(
                    Duplicate::LiveTokenForCardOnDevice,
                ))) => {
                    return Err(self.existing_token_error(&device, &fingerprint).await);
                }
                Err(CreateFailure::Store(error)) => return Err(error.into()),
                Err(CreateFailure::Tsp(error)) => return Err(error),
            }
        };
        let view = token_view(&token, &card, &device);

        if let Some(otp) = otp {
            let sent = self
                .issuers
                .send_passcode(
                    &endpoint,
                    &PasscodeRequest {
                        request_id: self.id("req"),
                        card_number: pan.expose().to_owned(),
                        method: "sms".into(),
                        otp,
                        token_last4: last4(&token.token_number).to_owned(),
                        wallet: tr.name.clone(),
                        purpose: None,
                    },
                )
                .await
                .map(|response| response.sent)
                .unwrap_or(false);
            let challenge = self
                .store
                .challenge(&token.id)
                .await?
                .ok_or_else(|| TspError::Internal("challenge missing".into()))?;
            return Ok(ProvisionOutcome {
                decision: "yellow",
                token: view,
                step_up: Some(StepUp {
                    method: "sms",
                    destination: challenge.destination_masked,
                    expires_at: challenge.expires_at,
                    attempts_left: challenge.attempts_left,
                    resends_left: challenge.resends_left,
                    sent,
                }),
                card_profile: None,
            });
        }
        let profile = self.seal_profile(&token, &card, &device, &issuer).await?;
        Ok(ProvisionOutcome {
            decision: "green",
            token: view,
            step_up: None,
            card_profile: Some(profile),
        })
    }

    async fn existing_token_error(&self, device: &DeviceRow, fingerprint: &[u8]) -> TspError {
        let existing = match self.store.card_by_fingerprint(fingerprint).await {
            Ok(Some(card)) => {
                self.store
                    .tokens_by_device(&device.id)
                    .await
                    .ok()
                    .and_then(|tokens| {
                        tokens
                            .into_iter()
                            .find(|t| t.card_id == card.id && !t.deleted)
                    })
            }
            _ => None,
        };
        TspError::TokenExists {
            token_id: existing.map(|t| t.id).unwrap_or_default(),
        }
    }

    fn new_token_number(&self, issuer_id: &str, product: &str, length: usize) -> TspResult<Token> {
        let ranges = self.token_ranges(issuer_id, product);
        if ranges.is_empty() {
            return Err(TspError::Internal(format!(
                "issuer {issuer_id} has no token BIN range"
            )));
        }
        let range = &ranges[usize::try_from(self.random.below(ranges.len() as u64)).unwrap_or(0)];
        let length = length.clamp(16, 19);
        let mut body = range.prefix.clone();
        while body.len() < length - 1 {
            body.push(char::from(
                b'0' + u8::try_from(self.random.below(10)).unwrap_or(0),
            ));
        }
        let check = luhn_check_digit(body.as_bytes())
            .ok_or_else(|| TspError::Internal("token BIN range is not numeric".into()))?;
        body.push(char::from(check));
        Token::parse(&body).map_err(|_| TspError::Internal("token number generation failed".into()))
    }

    /// Writes a new token (and its card, if new) with its history, notifications and step-up
    /// challenge in one commit. Store errors come back as such so the caller can tell a lost
    /// race from a failure.
    #[allow(clippy::too_many_arguments)]
    async fn create_token(
        &self,
        tr: &TokenRequestorRow,
        user: &UserRow,
        device: &DeviceRow,
        issuer: &IssuerRow,
        facts: &CardFacts<'_>,
        known: Option<(Option<CardRow>, Vec<TokenRow>)>,
        product_row: Option<&ProductRow>,
        number: &Token,
        green: bool,
        assurance: &str,
        (nfc, in_app): (bool, bool),
        ecash: bool,
        otp: Option<&str>,
        kind: DeviceKind,
    ) -> Result<(TokenRow, CardRow), CreateFailure> {
        let CardFacts {
            pan,
            expiry,
            fingerprint,
            funding,
            product,
            phone,
        } = *facts;
        let now = self.now();
        let mut plan = Plan::new(now, self.random.as_ref());
        // Read afresh unless the caller just read it (a retry always re-reads).
        let (known_card, known_tokens) = match known {
            Some(known) => known,
            None => (
                self.store
                    .card_by_fingerprint(fingerprint)
                    .await
                    .map_err(CreateFailure::Store)?,
                self.store
                    .tokens_by_device(&device.id)
                    .await
                    .map_err(CreateFailure::Store)?,
            ),
        };
        let card = match known_card {
            Some(card) => {
                plan.changeset
                    .card_guards
                    .push((card.id.clone(), card.version));
                card
            }
            None => {
                let id = self.id("card");
                let card = CardRow {
                    pan_fingerprint: fingerprint.to_vec(),
                    pan_encrypted: self
                        .hsm
                        .encrypt(self.keys.data, pan.expose().as_bytes(), &pan_aad(&id))
                        .map_err(|e| CreateFailure::Tsp(e.into()))?,
                    pan_bin: pan.bin().to_owned(),
                    pan_last4: pan.last4().to_owned(),
                    expiry: expiry.to_wire(),
                    funding: funding.to_owned(),
                    product: product.to_owned(),
                    status: "active".into(),
                    reserved_phone_masked: phone.map(str::to_owned),
                    par: self.new_par(),
                    issuer_id: issuer.id.clone(),
                    created_at: now,
                    updated_at: now,
                    version: 0,
                    id,
                };
                plan.changeset.card_inserts.push(card.clone());
                card
            }
        };
        let existing = known_tokens;
        if let Some(live) = existing.iter().find(|t| t.card_id == card.id && !t.deleted) {
            return Err(CreateFailure::Tsp(TspError::TokenExists {
                token_id: live.id.clone(),
            }));
        }
        let state = TokenState::new(green);
        let (year, month) = self.clock.year_month();
        let token_expiry = Expiry::new(u8::try_from(year % 100).unwrap_or(0), month)
            .and_then(|e| e.plus_years(self.config.token_validity_years))
            .map_err(|_| CreateFailure::Tsp(TspError::Internal("token expiry".into())))?;
        let hce = !kind.has_secure_element();
        let mut token = TokenRow {
            id: self.id("tok"),
            token_number: number.expose().to_owned(),
            card_id: card.id.clone(),
            device_id: device.id.clone(),
            token_requestor_id: tr.id.clone(),
            user_id: user.id.clone(),
            expiry: token_expiry.to_wire(),
            status: state.status().as_str().to_owned(),
            activated: state.activated,
            deleted: false,
            holds: 0,
            suspend_reason: None,
            status_reason: None,
            status_channel: Channel::Network.as_str().to_owned(),
            is_default: false,
            domain_nfc: nfc,
            domain_in_app: in_app,
            ecash_enabled: ecash,
            ecash_balance: 0,
            pan_sequence: 0,
            atc_issued_until: if hce {
                i64::from(self.config.hce_batch)
            } else {
                0
            },
            assurance_level: assurance.to_owned(),
            metadata: "{}".into(),
            provisioned_seq: now * 1000 + i64::try_from(self.random.below(1000)).unwrap_or(0),
            created_at: now,
            updated_at: now,
            version: 0,
        };
        // The first live token of a device is its default.
        let mut all = existing.clone();
        all.push(token.clone());
        let default_changed = reassign_default(&mut all, now).map_err(CreateFailure::Tsp)?;
        if let Some(new) = all.last() {
            token.is_default = new.is_default;
        }
        plan.update_changed(&existing, &all[..existing.len()]);
        plan.changeset.token_inserts.push(token.clone());
        plan.changeset
            .device_guards
            .push((device.id.clone(), device.version));
        plan.history(
            &token.id,
            "provision",
            Channel::Network,
            None,
            state.status(),
            None,
            Some(format!(
                "{} decision, assurance {assurance}",
                if green { "green" } else { "yellow" }
            )),
        );
        plan.record_defaults(&all, &default_changed, Channel::Network);
        plan.notify(
            &token,
            &card,
            "TOKEN_CREATED",
            json!({"device_kind": device.kind, "cvm_limits": product_row.map(product_limits)}),
        );
        if let Some(otp) = otp {
            plan.changeset.challenge_upserts.push(ChallengeRow {
                token_id: token.id.clone(),
                otp_hash: self.otp_hash(&token.id, otp).map_err(CreateFailure::Tsp)?,
                destination_masked: phone.unwrap_or("the reserved phone").to_owned(),
                expires_at: now + self.config.otp_validity_ms,
                attempts_left: self.config.otp_attempts,
                resends_left: self.config.otp_resends,
            });
        }
        plan.changeset.idempotency_claim = crate::claim::current();
        self.store
            .commit(&plan.changeset)
            .await
            .map_err(CreateFailure::Store)?;
        Ok((token, card))
    }

    fn new_par(&self) -> String {
        const ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut par = String::from("U001");
        for _ in 0..25 {
            par.push(char::from(
                ALPHABET[usize::try_from(self.random.below(36)).unwrap_or(0)],
            ));
        }
        par
    }

    pub(crate) fn otp_hash(&self, token_id: &str, otp: &str) -> TspResult<Vec<u8>> {
        Ok(self
            .hsm
            .fingerprint(self.keys.otp, format!("{token_id}:{otp}").as_bytes())?
            .to_vec())
    }

    /// Completes a yellow-path step-up with the code the cardholder received.
    pub async fn activate(
        &self,
        tr: &TokenRequestorRow,
        token_id: &str,
        otp: &str,
    ) -> TspResult<ActivationOutcome> {
        self.visible_token(&Principal::Wallet(tr.clone()), token_id)
            .await?;
        let view = retrying!(self, self.activate_once(token_id, otp.trim()).await)?;
        let token = self
            .store
            .token(token_id)
            .await?
            .ok_or_else(|| TspError::Internal("token vanished".into()))?;
        let card = self.card_row(&token.card_id).await?;
        let device = self.device_row(&token.device_id).await?;
        let issuer = self
            .store
            .issuer(&card.issuer_id)
            .await?
            .ok_or_else(|| TspError::Internal("issuer missing".into()))?;
        let profile = self.seal_profile(&token, &card, &device, &issuer).await?;
        Ok(ActivationOutcome {
            token: view,
            card_profile: profile,
        })
    }

    /// One attempt at checking an OTP. Guarded by the device's version, so concurrent
    /// attempts cannot spend the same remaining try twice.
    async fn activate_once(&self, token_id: &str, otp: &str) -> TspResult<TokenView> {
        let token = self
            .store
            .token(token_id)
            .await?
            .ok_or_else(|| TspError::not_found("TOKEN_NOT_FOUND", "token"))?;
        let device = self.device_row(&token.device_id).await?;
        let challenge = self
            .store
            .challenge(token_id)
            .await?
            .ok_or(TspError::NoChallenge)?;
        let now = self.now();
        if challenge.expires_at < now {
            return Err(TspError::OtpExpired);
        }
        if constant_time_eq(&self.otp_hash(token_id, otp)?, &challenge.otp_hash) {
            return self
                .token_event_with(
                    token_id,
                    LifecycleEvent::Activate,
                    Channel::Network,
                    None,
                    true,
                )
                .await;
        }
        let attempts_left = challenge.attempts_left - 1;
        if attempts_left <= 0 {
            // Out of attempts: the pending token goes, and its challenge with it.
            self.token_event_with(
                token_id,
                LifecycleEvent::Delete(DeleteReason::StepUpFailed),
                Channel::Network,
                None,
                true,
            )
            .await?;
            return Err(TspError::OtpExhausted);
        }
        let mut plan = Plan::new(now, self.random.as_ref());
        plan.changeset.challenge_upserts.push(ChallengeRow {
            attempts_left,
            ..challenge
        });
        plan.changeset
            .device_guards
            .push((device.id.clone(), device.version));
        self.commit(plan).await?;
        Err(TspError::OtpInvalid { attempts_left })
    }

    /// Sends a new OTP for a pending token (bounded).
    pub async fn resend_otp(&self, tr: &TokenRequestorRow, token_id: &str) -> TspResult<StepUp> {
        let (token, card) = self
            .visible_token(&Principal::Wallet(tr.clone()), token_id)
            .await?;
        let challenge = self
            .store
            .challenge(token_id)
            .await?
            .ok_or(TspError::NoChallenge)?;
        if challenge.resends_left <= 0 {
            return Err(TspError::ResendsExhausted);
        }
        let otp = format!("{:06}", self.random.below(1_000_000));
        let now = self.now();
        let challenge = ChallengeRow {
            otp_hash: self.otp_hash(token_id, &otp)?,
            expires_at: now + self.config.otp_validity_ms,
            attempts_left: self.config.otp_attempts,
            resends_left: challenge.resends_left - 1,
            ..challenge
        };
        let mut plan = Plan::new(now, self.random.as_ref());
        plan.changeset.challenge_upserts.push(challenge.clone());
        self.commit(plan).await?;
        let issuer = self
            .store
            .issuer(&card.issuer_id)
            .await?
            .ok_or_else(|| TspError::Internal("issuer missing".into()))?;
        let endpoint = self.endpoint(&issuer).await?;
        let sent = self
            .issuers
            .send_passcode(
                &endpoint,
                &PasscodeRequest {
                    request_id: self.id("req"),
                    card_number: self.card_number(&card)?.expose().to_owned(),
                    method: "sms".into(),
                    otp,
                    token_last4: last4(&token.token_number).to_owned(),
                    wallet: tr.name.clone(),
                    purpose: None,
                },
            )
            .await
            .map(|r| r.sent)
            .unwrap_or(false);
        Ok(StepUp {
            method: "sms",
            destination: challenge.destination_masked,
            expires_at: challenge.expires_at,
            attempts_left: challenge.attempts_left,
            resends_left: challenge.resends_left,
            sent,
        })
    }

    /// The token's card profile, sealed to its device again (e.g. after the app reinstalled).
    pub async fn card_profile(
        &self,
        tr: &TokenRequestorRow,
        token_id: &str,
    ) -> TspResult<EnvelopeView> {
        let (token, card) = self
            .visible_token(&Principal::Wallet(tr.clone()), token_id)
            .await?;
        if token.status != "active" && token.status != "suspended" {
            return Err(TspError::TokenNotActive);
        }
        let device = self.device_row(&token.device_id).await?;
        let issuer = self
            .store
            .issuer(&card.issuer_id)
            .await?
            .ok_or_else(|| TspError::Internal("issuer missing".into()))?;
        self.seal_profile(&token, &card, &device, &issuer).await
    }

    /// A new batch of limited-use keys for an HCE token.
    pub async fn replenish_keys(
        &self,
        tr: &TokenRequestorRow,
        token_id: &str,
    ) -> TspResult<EnvelopeView> {
        self.visible_token(&Principal::Wallet(tr.clone()), token_id)
            .await?;
        retrying!(self, self.replenish_once(token_id).await)
    }

    async fn replenish_once(&self, token_id: &str) -> TspResult<EnvelopeView> {
        let mut token = self
            .store
            .token(token_id)
            .await?
            .ok_or_else(|| TspError::not_found("TOKEN_NOT_FOUND", "token"))?;
        let device = self.device_row(&token.device_id).await?;
        if device.kind != DeviceKind::Hce.as_str() {
            return Err(TspError::NotHce);
        }
        if token.status != "active" {
            return Err(TspError::TokenNotActive);
        }
        let card = self.card_row(&token.card_id).await?;
        let issuer = self
            .store
            .issuer(&card.issuer_id)
            .await?
            .ok_or_else(|| TspError::Internal("issuer missing".into()))?;
        let original = token.clone();
        let first = token.atc_issued_until + 1;
        let last = token.atc_issued_until + i64::from(self.config.hce_batch);
        if last > i64::from(u16::MAX) {
            return Err(TspError::InvalidRequest(
                "the token's ATC range is used up; provision it again".into(),
            ));
        }
        token.atc_issued_until = last;
        let now = self.now();
        token.updated_at = now;
        let first_atc = u16::try_from(first).map_err(|_| TspError::Internal("ATC".into()))?;
        let envelope = self
            .seal(
                &token,
                &card,
                &device,
                &issuer,
                KeyDelivery::LimitedUse {
                    first_atc,
                    count: self.config.hce_batch,
                },
            )
            .await?;
        let mut plan = Plan::new(now, self.random.as_ref());
        plan.history(
            &token.id,
            "keys_replenished",
            Channel::Wallet,
            Some(TokenStatus::Active),
            TokenStatus::Active,
            None,
            Some(format!("limited-use keys for ATC {first}..={last}")),
        );
        plan.update_changed(
            std::slice::from_ref(&original),
            std::slice::from_ref(&token),
        );
        self.commit(plan).await?;
        Ok(envelope)
    }

    async fn seal_profile(
        &self,
        token: &TokenRow,
        card: &CardRow,
        device: &DeviceRow,
        issuer: &IssuerRow,
    ) -> TspResult<EnvelopeView> {
        let delivery = if device.kind == DeviceKind::Hce.as_str() {
            let count = u16::try_from(
                token
                    .atc_issued_until
                    .clamp(1, i64::from(self.config.hce_batch)),
            )
            .unwrap_or(1);
            let first =
                u16::try_from((token.atc_issued_until - i64::from(count) + 1).max(1)).unwrap_or(1);
            KeyDelivery::LimitedUse {
                first_atc: first,
                count,
            }
        } else {
            KeyDelivery::DeviceUnique
        };
        self.seal(token, card, device, issuer, delivery).await
    }

    async fn seal(
        &self,
        token: &TokenRow,
        card: &CardRow,
        device: &DeviceRow,
        issuer: &IssuerRow,
        delivery: KeyDelivery,
    ) -> TspResult<EnvelopeView> {
        let product = self.store.product(&issuer.id, &card.product).await?;
        let limits = product.map(|p| {
            cvm_limits_json(
                &p,
                Currency::from_numeric(u16::try_from(p.currency).unwrap_or(156))
                    .unwrap_or(Currency::CNY),
            )
        });
        let profile = json!({
            "token_id": token.id,
            "token_number": token.token_number,
            "token_expiry": token.expiry,
            "pan_sequence": token.pan_sequence,
            "par": card.par,
            "card": {"last4": card.pan_last4, "funding": card.funding, "product": card.product},
            "domains": {"nfc": token.domain_nfc, "in_app": token.domain_in_app},
            "cvm_limits": limits,
            "ecash": token.ecash_enabled,
            "cryptogram": {"version": "CP01", "key_derivation": "EMV option A from the token number", "session_key": "EMV common session key, R = ATC || 00*6", "mac": "ISO 9797-1 algorithm 3, padding method 2"},
        })
        .to_string();
        let token_number = Token::parse(&token.token_number)
            .map_err(|_| TspError::Internal("stored token invalid".into()))?;
        let imk = self
            .keys
            .issuer_master_key(&self.store, &self.hsm, self.clock.as_ref(), &issuer.id)
            .await?;
        let envelope = self.hsm.seal_card_profile(&CardProfileRequest {
            issuer_master_key: imk,
            account: &token_number,
            pan_sequence: u8::try_from(token.pan_sequence).unwrap_or(0),
            delivery,
            profile: profile.as_bytes(),
            device_public_key: &device.public_key,
            aad: token.id.as_bytes(),
        })?;
        Ok(envelope.into())
    }
}

/// The highest no-PIN limit an issuer may set, in minor units (100,000.00): a no-PIN limit is
/// for small payments, and a mistyped one must not let every payment through without a PIN.
const MAX_NO_PIN_LIMIT_MINOR: u64 = 10_000_000;

/// An identifier a party chooses (account, device): 1 to 64 characters, none of them a
/// control character (they would forge log lines and break displays).
fn identifier(text: &str) -> bool {
    (1..=64).contains(&text.chars().count()) && !text.chars().any(char::is_control)
}

/// What an opened push receipt carries.
struct PushReceipt {
    id: String,
    pan: Pan,
    expiry: Expiry,
}

/// Authenticated data of a sealed push receipt.
const RECEIPT_AAD: &[u8] = b"cloudpass push receipt v2";

/// The view of one token from rows a change just wrote.
fn view_among(
    tokens: &[TokenRow],
    cards: &[CardRow],
    device: &DeviceRow,
    token_id: &str,
) -> TspResult<TokenView> {
    let token = tokens
        .iter()
        .find(|t| t.id == token_id)
        .ok_or_else(|| TspError::Internal("token vanished".into()))?;
    let card = cards
        .iter()
        .find(|c| c.id == token.card_id)
        .ok_or_else(|| TspError::Internal("card vanished".into()))?;
    Ok(token_view(token, card, device))
}

/// A product row's no-PIN limits as JSON, in its own currency.
fn product_limits(product: &ProductRow) -> Value {
    let currency = Currency::from_numeric(u16::try_from(product.currency).unwrap_or(156))
        .unwrap_or(Currency::CNY);
    cvm_limits_json(product, currency)
}

/// A product's no-PIN limits as JSON, in major units.
pub fn cvm_limits_json(product: &ProductRow, currency: Currency) -> Value {
    let money =
        |minor: i64| Money::new(u64::try_from(minor).unwrap_or(0), currency).to_decimal_string();
    json!({
        "currency": currency.numeric_code(),
        "contactless_no_pin_limit": money(product.contactless_no_pin_limit),
        "online_no_pin_limit": money(product.online_no_pin_limit),
    })
}

/// Compares two hashes in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

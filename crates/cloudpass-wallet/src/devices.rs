//! The account's devices and the cards on them (空中发卡): a person signs the app in on a
//! phone of some maker, a watch, or uses the app itself as an HCE device; puts a bound card
//! onto one of them through the token service (which asks the card's bank and, when the bank
//! wants it, has it text a code); picks each device's default card; suspends, resumes and
//! deletes a device card; reports a device lost or found; signs out of a device.
//!
//! The app is the Cloud QuickPass token requestor: every device it signs in on is registered
//! with the token service under it, with the account as the token service's user. What is
//! on a device and in which state is the token service's, read from it on every page: the
//! app keeps only which devices an account has.
//!
//! A sealed card profile travels to its device over the [`DeviceChannel`] (a phone's push
//! channel; in the sandbox, the phone simulator). The app cannot open it: it is sealed to the
//! device's own key. What it must never do: put a card onto, or change a card of, a device of
//! another account, or show more of a card number than its last four digits.

use std::sync::Arc;

use cloudpass_core::device::{DeviceEvent, DeviceKind};
use cloudpass_core::lifecycle::{DeleteReason, LifecycleEvent, ResumeReason, SuspendReason};
use cloudpass_core::{AccountNumber, Clock, Expiry, Token};
use cloudpass_iso8583::emv_data::TerminalData;
use cloudpass_store::{AnyStore, StoreError, TokenRequestorRow, TokenStore, WalletDeviceRow};
use cloudpass_store::{WALLET_DEVICES_MAX, WalletStore};
use cloudpass_tsp::model::TokenView;
use cloudpass_tsp::service::{CardData, EnvelopeView, ProvisionRequest};
use cloudpass_tsp::{Principal, Tsp, TspError};

use crate::account::SignedIn;
use crate::cards::{CardError, Cards};
use crate::notifications::TokenChange;

/// What a person chooses to sign the app in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// A phone with a secure element, of a maker whose pay it runs.
    Phone(Maker),
    /// A watch with a secure element, paired to the person's phone.
    Watch,
    /// The Cloud QuickPass app itself, paying by host card emulation.
    App,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maker {
    Apple,
    Huawei,
    Xiaomi,
    Samsung,
}

impl Maker {
    pub const ALL: [Maker; 4] = [Maker::Apple, Maker::Huawei, Maker::Xiaomi, Maker::Samsung];

    pub fn code(self) -> &'static str {
        match self {
            Maker::Apple => "apple",
            Maker::Huawei => "huawei",
            Maker::Xiaomi => "xiaomi",
            Maker::Samsung => "samsung",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Maker::Apple => "iPhone",
            Maker::Huawei => "Huawei",
            Maker::Xiaomi => "Xiaomi",
            Maker::Samsung => "Samsung Galaxy",
        }
    }
}

impl DeviceChoice {
    /// `apple`, …, `watch` or `app`, as the add-a-device form sends it.
    pub fn parse(code: &str) -> Option<DeviceChoice> {
        match code {
            "watch" => Some(DeviceChoice::Watch),
            "app" => Some(DeviceChoice::App),
            other => Maker::ALL
                .into_iter()
                .find(|maker| maker.code() == other)
                .map(DeviceChoice::Phone),
        }
    }

    fn kind(self) -> DeviceKind {
        match self {
            DeviceChoice::Phone(_) => DeviceKind::HandsetSe,
            DeviceChoice::Watch => DeviceKind::Wearable,
            DeviceChoice::App => DeviceKind::Hce,
        }
    }

    fn maker(self) -> &'static str {
        match self {
            DeviceChoice::Phone(maker) => maker.code(),
            DeviceChoice::Watch => "huawei",
            DeviceChoice::App => "quickpass",
        }
    }

    fn name(self) -> &'static str {
        match self {
            DeviceChoice::Phone(maker) => maker.name(),
            DeviceChoice::Watch => "Huawei Watch",
            DeviceChoice::App => "Cloud QuickPass HCE",
        }
    }
}

/// A device as the channel made it: its id and the public key its card profiles are sealed to.
pub struct PairedDevice {
    pub device_id: String,
    /// X25519, 32 bytes.
    pub public_key: [u8; 32],
}

/// A card profile on its way to a device.
pub struct Delivery<'a> {
    pub token_id: &'a str,
    /// What the device shows for the card: bank card kind and last four digits.
    pub label: &'a str,
    pub profile: &'a EnvelopeView,
}

#[derive(Debug, thiserror::Error)]
#[error("the device could not be reached: {0}")]
pub struct ChannelError(pub String);

/// The app's way to its devices (push messages to a phone; the phone simulator in the
/// sandbox). Each call reaches the device or fails; none is retried here.
pub trait DeviceChannel: Send + Sync {
    /// A new device signed in to `user_id`'s account.
    fn pair(
        &self,
        user_id: &str,
        kind: DeviceKind,
        maker: &str,
        name: &str,
    ) -> Result<PairedDevice, ChannelError>;
    /// A sealed card profile (or new limited-use keys) for the device.
    fn deliver(&self, device_id: &str, delivery: Delivery<'_>) -> Result<(), ChannelError>;
    /// The device's default card changed.
    fn set_default(&self, device_id: &str, token_id: &str) -> Result<(), ChannelError>;
    /// A card left the device (deleted, or the account signed out).
    fn remove(&self, device_id: &str, token_id: &str) -> Result<(), ChannelError>;
    /// The account signed out of the device: it is no longer the account's.
    fn signed_out(&self, device_id: &str) -> Result<(), ChannelError>;
    /// The app on the device makes an in-app cryptogram of its card `token_id` over
    /// `terminal` (spending an ATC), and says whether the amount is over the card's online
    /// no-PIN limit, so that the app asks for the payment password.
    fn in_app(
        &self,
        user_id: &str,
        device_id: &str,
        token_id: &str,
        terminal: &TerminalData,
    ) -> Result<InAppCryptogram, ChannelError>;
}

/// A device card's in-app cryptogram, as the device made it.
pub struct InAppCryptogram {
    pub token: Token,
    pub expiry: Expiry,
    pub field55: Vec<u8>,
    pub needs_password: bool,
}

/// Why a device action did not happen; each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("choose a phone, a watch or the app")]
    BadChoice,
    #[error("an account signs in on at most 10 devices")]
    TooManyDevices,
    #[error("your account has no such device")]
    NoDevice,
    #[error("you signed out of this device; sign in on it again as a new device")]
    SignedOut,
    #[error("{0}")]
    Card(#[from] CardError),
    #[error("this card is on this device already")]
    AlreadyOnDevice,
    #[error("the bank did not allow this card on this device; ask the bank")]
    Declined,
    #[error("the device cannot take cards now: {0}")]
    DeviceState(String),
    #[error("the code is wrong; {0} tries left")]
    WrongCode(i64),
    #[error("the code has expired; add the card again")]
    CodeExpired,
    #[error("too many wrong codes; the card was not added. Add it again")]
    TooManyCodes,
    #[error("this device has no such card")]
    NoDeviceCard,
    #[error("that cannot be done to this card now: {0}")]
    NotNow(String),
    #[error("only an active card can be the default")]
    NotActive,
    #[error("the device could not be reached; try again")]
    Unreachable,
    #[error("the wallet is not available right now; try again shortly")]
    Unavailable,
}

impl From<StoreError> for DeviceError {
    fn from(error: StoreError) -> Self {
        tracing::error!(error = %error, "wallet: the device store failed");
        DeviceError::Unavailable
    }
}

impl From<ChannelError> for DeviceError {
    fn from(error: ChannelError) -> Self {
        tracing::warn!(error = %error, "wallet: a device could not be reached");
        DeviceError::Unreachable
    }
}

impl From<TspError> for DeviceError {
    fn from(error: TspError) -> Self {
        match error {
            TspError::TokenExists { .. } => DeviceError::AlreadyOnDevice,
            TspError::Declined => DeviceError::Declined,
            TspError::NoIssuer => DeviceError::Card(CardError::NoIssuer),
            TspError::Device(reason) => DeviceError::DeviceState(reason.to_string()),
            TspError::OtpInvalid { attempts_left } => DeviceError::WrongCode(attempts_left),
            TspError::OtpExpired => DeviceError::CodeExpired,
            TspError::OtpExhausted => DeviceError::TooManyCodes,
            TspError::NoChallenge => DeviceError::NoDeviceCard,
            TspError::NotFound { .. } => DeviceError::NoDeviceCard,
            TspError::Lifecycle(reason) => DeviceError::NotNow(reason.to_string()),
            TspError::TokenNotActive => DeviceError::NotActive,
            other => {
                tracing::error!(error = %other, "wallet: the token service failed a device action");
                DeviceError::Unavailable
            }
        }
    }
}

/// A device and its cards, as the app shows them.
#[derive(Debug, Clone)]
pub struct DeviceCards {
    pub device: WalletDeviceRow,
    /// `active`, `lost`, `wiped` (the token service's device states).
    pub state: String,
    pub cards: Vec<TokenView>,
}

/// Putting a card onto a device: done, or the bank texted a code first.
#[derive(Debug, Clone)]
pub enum Added {
    Active(TokenView),
    NeedsCode {
        token: TokenView,
        /// Where the bank texted it, masked.
        destination: String,
    },
}

/// What a person does to one device card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardAction {
    MakeDefault,
    Suspend,
    Resume,
    Delete,
}

impl CardAction {
    pub fn parse(code: &str) -> Option<CardAction> {
        match code {
            "default" => Some(CardAction::MakeDefault),
            "suspend" => Some(CardAction::Suspend),
            "resume" => Some(CardAction::Resume),
            "delete" => Some(CardAction::Delete),
            _ => None,
        }
    }
}

/// What a person reports about a whole device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceReport {
    Lost,
    Found,
    SignOut,
}

impl DeviceReport {
    pub fn parse(code: &str) -> Option<DeviceReport> {
        match code {
            "lost" => Some(DeviceReport::Lost),
            "found" => Some(DeviceReport::Found),
            "sign_out" => Some(DeviceReport::SignOut),
            _ => None,
        }
    }
}

/// The account's devices.
pub struct Devices {
    store: AnyStore,
    tsp: Arc<Tsp>,
    channel: Arc<dyn DeviceChannel>,
    /// The app's token requestor ID at the token service.
    token_requestor_id: String,
    clock: Arc<dyn Clock>,
}

impl Devices {
    pub fn new(
        tsp: Arc<Tsp>,
        channel: Arc<dyn DeviceChannel>,
        token_requestor_id: String,
        clock: Arc<dyn Clock>,
    ) -> Devices {
        Devices {
            store: tsp.store().clone(),
            tsp,
            channel,
            token_requestor_id,
            clock,
        }
    }

    async fn requestor(&self) -> Result<TokenRequestorRow, DeviceError> {
        self.store
            .token_requestor(&self.token_requestor_id)
            .await?
            .ok_or_else(|| {
                tracing::error!(
                    token_requestor = %self.token_requestor_id,
                    "wallet: the app's token requestor is not registered with the token service"
                );
                DeviceError::Unavailable
            })
    }

    /// The account as the token service's user (registered on first use).
    async fn ensure_user(
        &self,
        tr: &TokenRequestorRow,
        person: &SignedIn,
    ) -> Result<(), DeviceError> {
        match self.tsp.register_user(tr, &person.user_id).await {
            Ok(_) | Err(TspError::AlreadyExists(_)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Signs the app in on a new device of the person's choice.
    pub async fn add(
        &self,
        person: &SignedIn,
        choice: DeviceChoice,
    ) -> Result<WalletDeviceRow, DeviceError> {
        let held = self.store.wallet_devices(&person.user_id).await?;
        if i64::try_from(held.len()).unwrap_or(i64::MAX) >= WALLET_DEVICES_MAX {
            return Err(DeviceError::TooManyDevices);
        }
        let tr = self.requestor().await?;
        self.ensure_user(&tr, person).await?;
        let paired = self.channel.pair(
            &person.user_id,
            choice.kind(),
            choice.maker(),
            choice.name(),
        )?;
        let registered = self
            .tsp
            .register_device(
                &tr,
                &paired.device_id,
                choice.kind().as_str(),
                choice.maker(),
                Some(&person.user_id),
                true,
                &cloudpass_core::hex::encode(&paired.public_key),
            )
            .await;
        if let Err(error) = registered {
            // The device signed in to nothing: it leaves the account again.
            if let Err(unpaired) = self.channel.signed_out(&paired.device_id) {
                tracing::warn!(error = %unpaired, "wallet: a device that failed to register stays paired");
            }
            return Err(error.into());
        }
        let row = WalletDeviceRow {
            id: paired.device_id,
            user_id: person.user_id.clone(),
            kind: choice.kind().as_str().to_owned(),
            maker: choice.maker().to_owned(),
            name: choice.name().to_owned(),
            created_at: self.clock.now_millis(),
            signed_out_at: None,
        };
        if !self.store.insert_wallet_device(&row).await? {
            // Another page of the same account added the last one first; the device the
            // token service knows stays without cards.
            return Err(DeviceError::TooManyDevices);
        }
        Ok(row)
    }

    /// The account's devices with their cards and states, oldest first.
    pub async fn list(&self, person: &SignedIn) -> Result<Vec<DeviceCards>, DeviceError> {
        let tr = self.requestor().await?;
        let mut listed = Vec::new();
        for device in self.store.wallet_devices(&person.user_id).await? {
            if device.signed_out_at.is_some() {
                continue;
            }
            let view = self.tsp.device_view(&tr, &device.id).await?;
            let cards = self.tsp.device_tokens(&tr, &device.id, false).await?;
            listed.push(DeviceCards {
                device,
                state: view.state,
                cards,
            });
        }
        Ok(listed)
    }

    /// One of the account's signed-in devices.
    pub async fn device(
        &self,
        person: &SignedIn,
        device_id: &str,
    ) -> Result<WalletDeviceRow, DeviceError> {
        let device = self
            .store
            .wallet_device(&person.user_id, device_id)
            .await?
            .ok_or(DeviceError::NoDevice)?;
        if device.signed_out_at.is_some() {
            return Err(DeviceError::SignedOut);
        }
        Ok(device)
    }

    /// Puts the bound card `card_id` onto the device (空中发卡).
    pub async fn add_card(
        &self,
        cards: &Cards,
        person: &SignedIn,
        device_id: &str,
        card_id: &str,
    ) -> Result<Added, DeviceError> {
        let device = self.device(person, device_id).await?;
        let opened = cards.open(person, card_id).await?;
        let tr = self.requestor().await?;
        let outcome = self
            .tsp
            .provision(
                &tr,
                ProvisionRequest {
                    device_id: device.id.clone(),
                    account_id: person.user_id.clone(),
                    card: Some(CardData {
                        number: opened.pan.expose().to_owned(),
                        expiry: opened.expiry.to_wire(),
                        cvn2: None,
                    }),
                    push_receipt: None,
                    domains: None,
                    ecash: true,
                },
            )
            .await?;
        match (outcome.card_profile, outcome.step_up) {
            (Some(profile), _) => {
                self.deliver(&device, &outcome.token, &profile)?;
                Ok(Added::Active(outcome.token))
            }
            (None, Some(step_up)) => Ok(Added::NeedsCode {
                token: outcome.token,
                destination: step_up.destination,
            }),
            (None, None) => {
                tracing::error!("wallet: a provisioning answer had neither profile nor step-up");
                Err(DeviceError::Unavailable)
            }
        }
    }

    /// The code the bank texted for a pending device card: the card becomes active and its
    /// profile goes to the device.
    pub async fn confirm_code(
        &self,
        person: &SignedIn,
        device_id: &str,
        token_id: &str,
        code: &str,
    ) -> Result<TokenView, DeviceError> {
        let device = self.device(person, device_id).await?;
        let tr = self.requestor().await?;
        self.device_card(&tr, &device, token_id).await?;
        let activated = self.tsp.activate(&tr, token_id, code).await?;
        self.deliver(&device, &activated.token, &activated.card_profile)?;
        Ok(activated.token)
    }

    /// The card's last four digits of a device card waiting for its code, for the code page.
    pub async fn pending_card_last4(
        &self,
        person: &SignedIn,
        device_id: &str,
        token_id: &str,
    ) -> Result<String, DeviceError> {
        let device = self.device(person, device_id).await?;
        let tr = self.requestor().await?;
        Ok(self.device_card(&tr, &device, token_id).await?.card_last4)
    }

    fn deliver(
        &self,
        device: &WalletDeviceRow,
        token: &TokenView,
        profile: &EnvelopeView,
    ) -> Result<(), DeviceError> {
        let label = format!("…{}", token.card_last4);
        self.channel.deliver(
            &device.id,
            Delivery {
                token_id: &token.token_id,
                label: &label,
                profile,
            },
        )?;
        Ok(())
    }

    /// New limited-use keys for a card of an HCE device, sent to the device.
    pub async fn replenish(
        &self,
        person: &SignedIn,
        device_id: &str,
        token_id: &str,
    ) -> Result<(), DeviceError> {
        let device = self.device(person, device_id).await?;
        let tr = self.requestor().await?;
        let token = self.device_card(&tr, &device, token_id).await?;
        let profile = self.tsp.replenish_keys(&tr, token_id).await?;
        self.deliver(&device, &token, &profile)
    }

    /// The device's card `token_id`, or `NoDeviceCard` when it is on another device.
    async fn device_card(
        &self,
        tr: &TokenRequestorRow,
        device: &WalletDeviceRow,
        token_id: &str,
    ) -> Result<TokenView, DeviceError> {
        let token = self
            .tsp
            .token_view(&Principal::Wallet(tr.clone()), token_id)
            .await?;
        if token.device_id != device.id {
            return Err(DeviceError::NoDeviceCard);
        }
        Ok(token)
    }

    /// Makes a device card the default, or suspends, resumes or deletes it.
    pub async fn card_action(
        &self,
        person: &SignedIn,
        device_id: &str,
        token_id: &str,
        action: CardAction,
    ) -> Result<TokenView, DeviceError> {
        let device = self.device(person, device_id).await?;
        let tr = self.requestor().await?;
        self.device_card(&tr, &device, token_id).await?;
        let principal = Principal::Wallet(tr.clone());
        let event = match action {
            CardAction::MakeDefault => {
                let token = self.tsp.set_default(&tr, token_id).await?;
                self.channel.set_default(&device.id, token_id)?;
                return Ok(token);
            }
            CardAction::Suspend => LifecycleEvent::Suspend(SuspendReason::Other),
            CardAction::Resume => LifecycleEvent::Resume(ResumeReason::Other),
            CardAction::Delete => LifecycleEvent::Delete(DeleteReason::ConsumerDeleted),
        };
        let token = self
            .tsp
            .token_event(&principal, token_id, event, None)
            .await?;
        if action == CardAction::Delete {
            self.channel.remove(&device.id, token_id)?;
        }
        Ok(token)
    }

    /// Applies a change the token service notified to a device card of one of the app's
    /// devices: a deleted card leaves the device, a new default becomes its default. A token
    /// on a device the app does not have (another wallet's, or signed out) is ignored.
    pub async fn on_token_change(&self, change: &TokenChange) -> Result<(), DeviceError> {
        let tr = self.requestor().await?;
        let token = match self
            .tsp
            .token_view(&Principal::Wallet(tr), &change.token_id)
            .await
        {
            Ok(token) => token,
            Err(TspError::NotFound { .. }) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        let device = self.store.wallet_device_by_id(&token.device_id).await?;
        if device.is_none_or(|device| device.signed_out_at.is_some()) {
            return Ok(());
        }
        if change.status == "deleted" {
            self.channel.remove(&token.device_id, &change.token_id)?;
        } else if change.is_default && change.status == "active" {
            self.channel
                .set_default(&token.device_id, &change.token_id)?;
        }
        Ok(())
    }

    /// The app on the person's device makes an in-app cryptogram of its card.
    pub(crate) fn in_app(
        &self,
        person: &SignedIn,
        device_id: &str,
        token_id: &str,
        terminal: &TerminalData,
    ) -> Result<InAppCryptogram, DeviceError> {
        Ok(self
            .channel
            .in_app(&person.user_id, device_id, token_id, terminal)?)
    }

    /// Reports the device lost or found, or signs the account out of it.
    pub async fn report(
        &self,
        person: &SignedIn,
        device_id: &str,
        report: DeviceReport,
    ) -> Result<(), DeviceError> {
        let device = self.device(person, device_id).await?;
        let tr = self.requestor().await?;
        let event = match report {
            DeviceReport::Lost => DeviceEvent::Lost,
            DeviceReport::Found => DeviceEvent::Found,
            DeviceReport::SignOut => DeviceEvent::SignedOut,
        };
        let outcome = self.tsp.device_event(&tr, &device.id, event, None).await?;
        if report == DeviceReport::SignOut {
            self.store
                .sign_out_wallet_device(&person.user_id, &device.id, self.clock.now_millis())
                .await?;
            for token in &outcome.tokens {
                self.channel.remove(&device.id, &token.token_id)?;
            }
            self.channel.signed_out(&device.id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_choice_is_a_device_kind_of_the_token_service() {
        let parsed: Vec<_> = ["apple", "huawei", "xiaomi", "samsung", "watch", "app"]
            .into_iter()
            .map(|code| DeviceChoice::parse(code).map(|c| (c.kind(), c.maker())))
            .collect();
        assert_eq!(
            parsed,
            vec![
                Some((DeviceKind::HandsetSe, "apple")),
                Some((DeviceKind::HandsetSe, "huawei")),
                Some((DeviceKind::HandsetSe, "xiaomi")),
                Some((DeviceKind::HandsetSe, "samsung")),
                Some((DeviceKind::Wearable, "huawei")),
                Some((DeviceKind::Hce, "quickpass")),
            ]
        );
        assert_eq!(
            DeviceChoice::parse("sim_se"),
            None,
            "SIM secure elements are retired"
        );
        assert_eq!(DeviceChoice::parse(""), None);
        assert_eq!(CardAction::parse("default"), Some(CardAction::MakeDefault));
        assert_eq!(CardAction::parse("activate"), None);
        assert_eq!(DeviceReport::parse("sign_out"), Some(DeviceReport::SignOut));
        assert_eq!(DeviceReport::parse("wiped"), None);
    }
}

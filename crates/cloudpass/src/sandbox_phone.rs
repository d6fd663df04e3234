//! The sandbox's phones, wired to the Cloud QuickPass app: the app's device channel reaches
//! the phone simulator's handsets (a phone's push channel, in the sandbox), and the phone
//! simulator's page knows its person by the app's session in the same browser. Wiring only:
//! the rules are the wallet's (`cloudpass-wallet::devices`) and the phone's
//! (`cloudpass-sim::handset`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cloudpass_core::device::DeviceKind;
use cloudpass_core::{Clock, Currency, Money, Random};
use cloudpass_iso8583::emv_data::TerminalData;
use cloudpass_iso8583::link::Link;
use cloudpass_sim::handset::{HandsetError, Handsets};
use cloudpass_sim::phone_page::{AppUser, PhoneApp, PhoneSimulator};
use cloudpass_sim::pos::{Pos, TerminalConfig};
use cloudpass_wallet::Wallet;
use cloudpass_wallet::devices::{
    ChannelError, Delivery, DeviceChannel, InAppCryptogram, PairedDevice,
};
use cloudpass_wallet::session::{self, CSRF_COOKIE, LANGUAGE_COOKIE, SESSION_COOKIE};
use tokio::sync::watch;

use crate::sandbox;

/// The app's channel to the sandbox's handsets.
pub struct HandsetChannel {
    pub handsets: Arc<Handsets>,
    pub random: Arc<dyn Random>,
}

impl DeviceChannel for HandsetChannel {
    fn pair(
        &self,
        user_id: &str,
        kind: DeviceKind,
        maker: &str,
        name: &str,
    ) -> Result<PairedDevice, ChannelError> {
        let (device_id, public_key) = self
            .handsets
            .create(self.random.as_ref(), user_id, kind.as_str(), maker, name)
            .map_err(|e| ChannelError(e.to_string()))?;
        Ok(PairedDevice {
            device_id,
            public_key,
        })
    }

    fn deliver(&self, device_id: &str, delivery: Delivery<'_>) -> Result<(), ChannelError> {
        let profile =
            serde_json::to_value(delivery.profile).map_err(|e| ChannelError(e.to_string()))?;
        self.handsets
            .receive(device_id, delivery.token_id, delivery.label, profile)
            .map_err(|e| ChannelError(e.to_string()))
    }

    fn set_default(&self, device_id: &str, token_id: &str) -> Result<(), ChannelError> {
        match self.handsets.set_default(device_id, token_id) {
            // The notification of a new card can come before its profile does; the profile
            // makes a first card the default when it arrives.
            Ok(()) | Err(HandsetError::NoCard) => Ok(()),
            Err(error) => Err(ChannelError(error.to_string())),
        }
    }

    fn remove(&self, device_id: &str, token_id: &str) -> Result<(), ChannelError> {
        self.handsets
            .remove(device_id, token_id)
            .map_err(|e| ChannelError(e.to_string()))
    }

    fn in_app(
        &self,
        user_id: &str,
        device_id: &str,
        token_id: &str,
        terminal: &TerminalData,
    ) -> Result<InAppCryptogram, ChannelError> {
        let presented = self
            .handsets
            .in_app(user_id, device_id, token_id, terminal)
            .map_err(|e| ChannelError(e.to_string()))?;
        Ok(InAppCryptogram {
            token: presented.token,
            expiry: presented.expiry,
            field55: presented.cryptogram.field55,
            needs_password: presented.cryptogram.needs_password,
        })
    }

    fn signed_out(&self, device_id: &str) -> Result<(), ChannelError> {
        self.handsets
            .forget(device_id)
            .map_err(|e| ChannelError(e.to_string()))
    }
}

/// The app as the phone simulator sees it: its session in the browser.
pub struct WalletOnPhone {
    pub wallet: Arc<Wallet>,
}

impl WalletOnPhone {
    async fn person(&self, cookies: Option<&str>) -> Option<cloudpass_wallet::SignedIn> {
        let token = session::cookie(cookies, SESSION_COOKIE)?;
        self.wallet.accounts.signed_in(token).await.ok().flatten()
    }
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl PhoneApp for WalletOnPhone {
    fn signed_in<'a>(&'a self, cookies: Option<&'a str>) -> BoxFuture<'a, Option<AppUser>> {
        Box::pin(async move {
            let person = self.person(cookies).await?;
            Some(AppUser {
                user_id: person.user_id,
                csrf: session::cookie(cookies, CSRF_COOKIE)
                    .unwrap_or_default()
                    .to_owned(),
                language: match session::cookie(cookies, LANGUAGE_COOKIE) {
                    Some("en") => "en",
                    _ => "zh",
                },
            })
        })
    }

    fn replenish<'a>(
        &'a self,
        cookies: Option<&'a str>,
        device_id: &'a str,
        token_id: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let person = self
                .person(cookies)
                .await
                .ok_or("not signed in to the app")?;
            self.wallet
                .devices
                .replenish(&person, device_id, token_id)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn language_cookie(&self, code: &'static str) -> String {
        session::set_cookie(LANGUAGE_COOKIE, code, 24 * 60 * 60)
    }

    fn installed(&self, cookies: Option<&str>) -> bool {
        session::cookie(cookies, session::APP_INSTALLED_COOKIE) == Some("1")
    }

    fn installed_cookie(&self, installed: bool) -> String {
        // A year: a setting of the phone, as an installed app stays installed.
        let value = if installed { "1" } else { "0" };
        session::set_cookie(session::APP_INSTALLED_COOKIE, value, 365 * 24 * 60 * 60)
    }
}

/// The phone simulator: the handsets, the app, and a sandbox terminal linked to the switch
/// at `switch` (signed on at each tap, so a restarted switch is no matter).
pub fn simulator(
    data_dir: &Path,
    switch: SocketAddr,
    handsets: Arc<Handsets>,
    wallet: Arc<Wallet>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    stop: watch::Receiver<bool>,
) -> Result<PhoneSimulator, String> {
    let master =
        crate::app::sandbox_secret(&data_dir.join(crate::app::TERMINAL_MASTER_KEY_FILE), 16)?;
    let pos = Pos::new(
        TerminalConfig {
            terminal_id: sandbox::PHONE_SIMULATOR_TERMINAL.into(),
            merchant_id: sandbox::MERCHANT_ID.into(),
            merchant_category: sandbox::MERCHANT_CATEGORY.into(),
            merchant_name: sandbox::MERCHANT_NAME.into(),
            acquirer_id: sandbox::ACQUIRER_ID.into(),
            no_pin_limit: Money::new(100_000, Currency::CNY),
            reversal_attempts: 5,
        },
        &master,
        Link::start(switch, Duration::from_secs(15), stop),
        clock,
        random,
    )
    .map_err(|e| e.to_string())?;
    Ok(PhoneSimulator {
        handsets,
        app: Arc::new(WalletOnPhone { wallet }),
        pos,
        signed_on: std::sync::atomic::AtomicBool::new(false),
    })
}

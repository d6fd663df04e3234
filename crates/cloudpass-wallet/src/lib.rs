//! The Cloud QuickPass app's back end and its web pages (`/wallet`): accounts a person signs
//! up for with a phone number and a password, the sessions of their browsers, and the bank
//! cards they bind to their account (through the token service, which asks the banks).
//!
//! What it must never do: keep or log a password or a session token (only an Argon2id hash
//! and a SHA-256), take a form another site made a browser post (every form carries a CSRF
//! token), or say whether a phone number has an account when a login fails.

pub mod account;
pub mod app_pay;
pub mod cards;
mod device_pages;
pub mod devices;
pub mod http;
pub mod notifications;
pub mod password;
mod pay_pages;
mod sdk_pages;
pub mod session;
pub mod texts;

use std::sync::Arc;

use cloudpass_core::{Clock, Random};
use cloudpass_tsp::service::Tsp;
use cloudpass_tsp::throttle::AuthThrottle;
use zeroize::Zeroizing;

pub use account::{AccountError, Accounts, Phone, SignedIn};
pub use cards::{CardError, Cards};
pub use devices::{DeviceChannel, DeviceError, Devices};

/// The wallet's back end.
pub struct Wallet {
    pub accounts: Accounts,
    pub cards: Cards,
    pub devices: Devices,
    /// Paying TNs inside the app (with the institution gateway, when there is one).
    pub app_pay: app_pay::AppPay,
    /// Failed logins per client address (20 a minute), beside the per-account lock: one
    /// password tried across many phone numbers is bounded too.
    login_throttle: AuthThrottle,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    /// The secret the token service signs the app's notifications with.
    webhook_secret: Zeroizing<Vec<u8>>,
}

/// What the app is at the token service: its token requestor ID and the secret its
/// notifications are signed with.
pub struct AppIdentity {
    pub token_requestor_id: String,
    pub webhook_secret: Zeroizing<Vec<u8>>,
}

impl Wallet {
    /// `identity`: the app at the token service; `channel`: its way to the devices people
    /// sign in on.
    pub fn new(
        tsp: Arc<Tsp>,
        identity: AppIdentity,
        channel: Arc<dyn DeviceChannel>,
        gateway: Option<Arc<cloudpass_gateway::Gateway>>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Wallet {
        Wallet {
            accounts: Accounts::new(tsp.store().clone(), Arc::clone(&clock), Arc::clone(&random)),
            devices: Devices::new(
                Arc::clone(&tsp),
                channel,
                identity.token_requestor_id,
                Arc::clone(&clock),
            ),
            cards: Cards::new(tsp, Arc::clone(&clock), Arc::clone(&random)),
            app_pay: app_pay::AppPay { gateway },
            login_throttle: AuthThrottle::default(),
            clock,
            random,
            webhook_secret: identity.webhook_secret,
        }
    }
}

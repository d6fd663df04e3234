//! The Cloud QuickPass app's back end and its web pages (`/wallet`): accounts a person signs
//! up for with a phone number and a password, the sessions of their browsers, and the bank
//! cards they bind to their account (through the token service, which asks the banks).
//!
//! What it must never do: keep or log a password or a session token (only an Argon2id hash
//! and a SHA-256), take a form another site made a browser post (every form carries a CSRF
//! token), or say whether a phone number has an account when a login fails.

pub mod account;
pub mod cards;
pub mod http;
pub mod password;
pub mod session;
pub mod texts;

use std::sync::Arc;

use cloudpass_core::{Clock, Random};
use cloudpass_tsp::service::Tsp;
use cloudpass_tsp::throttle::AuthThrottle;

pub use account::{AccountError, Accounts, Phone, SignedIn};
pub use cards::{CardError, Cards};

/// The wallet's back end.
pub struct Wallet {
    pub accounts: Accounts,
    pub cards: Cards,
    /// Failed logins per client address (20 a minute), beside the per-account lock: one
    /// password tried across many phone numbers is bounded too.
    login_throttle: AuthThrottle,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
}

impl Wallet {
    pub fn new(tsp: Arc<Tsp>, clock: Arc<dyn Clock>, random: Arc<dyn Random>) -> Wallet {
        Wallet {
            accounts: Accounts::new(tsp.store().clone(), Arc::clone(&clock), Arc::clone(&random)),
            cards: Cards::new(tsp, Arc::clone(&clock), Arc::clone(&random)),
            login_throttle: AuthThrottle::default(),
            clock,
            random,
        }
    }
}

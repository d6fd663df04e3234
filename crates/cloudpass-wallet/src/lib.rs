//! The Cloud QuickPass app's back end and its web pages (`/wallet`): accounts a person signs
//! up for with a phone number and a password, and the sessions of their browsers.
//!
//! What it must never do: keep or log a password or a session token (only an Argon2id hash
//! and a SHA-256), take a form another site made a browser post (every form carries a CSRF
//! token), or say whether a phone number has an account when a login fails.

pub mod account;
pub mod http;
pub mod password;
pub mod session;
pub mod texts;

use std::sync::Arc;

use cloudpass_core::{Clock, Random};
use cloudpass_store::AnyStore;

pub use account::{AccountError, Accounts, Phone, SignedIn};

/// The wallet's back end.
pub struct Wallet {
    pub accounts: Accounts,
    random: Arc<dyn Random>,
}

impl Wallet {
    pub fn new(store: AnyStore, clock: Arc<dyn Clock>, random: Arc<dyn Random>) -> Wallet {
        Wallet {
            accounts: Accounts::new(store, clock, Arc::clone(&random)),
            random,
        }
    }
}

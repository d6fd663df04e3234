//! The operator console (`/console`): what the network is doing, for the people who run it —
//! the switch's journal, the gateway's orders with their notifications and retries, tokens
//! and their history, merchants with their certification checklist, and counters that
//! refresh by themselves. Read-only: it changes nothing in the network.
//!
//! Behind an operator login: the operator key (the sandbox's `sandbox-operator.key`),
//! compared in constant time, failures bounded per address; a session is a random cookie
//! (`cp_console`, HttpOnly, Secure, SameSite=Strict) whose SHA-256 the console keeps in
//! memory for 8 hours. Card and token numbers are shown masked (first 6, last 4) and nothing
//! else of a card is read.

mod http;
mod sessions;
mod views;
mod words;

use std::sync::Arc;

use cloudpass_core::{Clock, Random};
use cloudpass_gateway::Gateway;
use cloudpass_store::AnyStore;
use zeroize::Zeroizing;

pub use http::router;
pub use sessions::Sessions;

/// Rows a list shows, newest first.
pub const LIST_ROWS: i64 = 50;
/// Rows the counters are taken over, for what has no total in the store.
pub const COUNTED_ROWS: i64 = 500;

pub struct Console {
    store: AnyStore,
    /// The gateway, for its merchants and their checklists.
    gateway: Option<Arc<Gateway>>,
    operator_key: Zeroizing<String>,
    sessions: Sessions,
    /// Failed logins per client address.
    login_throttle: cloudpass_tsp::throttle::AuthThrottle,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
}

impl Console {
    pub fn new(
        store: AnyStore,
        gateway: Option<Arc<Gateway>>,
        operator_key: Zeroizing<String>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Console {
        Console {
            store,
            gateway,
            operator_key,
            sessions: Sessions::default(),
            login_throttle: cloudpass_tsp::throttle::AuthThrottle::default(),
            clock,
            random,
        }
    }
}

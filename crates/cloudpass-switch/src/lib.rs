//! The cloudpass authorization switch.
//!
//! - [`switch::Switch`]: the authorization path for token payments (detokenize, check, verify
//!   the cryptogram, apply the no-PIN rules, translate the PIN, forward to the issuer with the
//!   token channel marked, re-tokenize the answer); sign-on of terminals; one file per
//!   message class under `switch/`.
//! - [`switch::InProcess`]: the port as an `Exchange` inside one process.
//! - [`journal::Journal`]: the journal's group commit.
//! - [`server`]: the acquirers' ISO 8583 port.
//! - [`vault::TokenVault`]: how the switch reads tokens (the token service implements it).
//! - [`metrics`]: what the switch counts for operators (Prometheus text).

pub mod journal;
pub mod metrics;
pub mod participants;
pub mod server;
pub mod switch;
pub mod vault;

pub use cloudpass_iso8583::server::FrameAnswer;
pub use switch::{ForwardPass, InProcess, StandInPolicy, Switch, SwitchConfig, SwitchParts};

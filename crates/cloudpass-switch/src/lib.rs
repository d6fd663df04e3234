//! The cloudpass authorization switch.
//!
//! - [`switch::Switch`]: the authorization path for token payments (detokenize, check, verify
//!   the cryptogram, apply the no-PIN rules, translate the PIN, forward to the issuer with the
//!   token channel marked, re-tokenize the answer); sign-on of terminals.
//! - [`journal::Journal`]: the journal's group commit.
//! - [`server`]: the acquirers' ISO 8583 port.
//! - [`vault::TokenVault`]: how the switch reads tokens (the token service implements it).

pub mod journal;
pub mod participants;
pub mod server;
pub mod switch;
pub mod vault;

pub use switch::{FrameAnswer, StandInPolicy, Switch, SwitchConfig, SwitchParts};

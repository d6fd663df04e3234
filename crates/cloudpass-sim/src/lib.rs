//! Stand-ins for the parties outside the cloudpass network. Nothing in the platform depends
//! on this crate; the binary wires these in for the sandbox and the tests.
//!
//! - [`issuer_host`]: a bank — its side of the token service's issuer protocol, its SMS
//!   inbox, its back office.
//! - [`phone`]: a device card — its keys, its ATC, its cryptograms.
//! - [`pos`]: an acquirer's terminal — sign-on, its keys, purchases, reversals.
//! - [`webhook_sink`]: the wallets' and banks' notification receivers.

pub mod bank;
pub mod issuer_host;
pub mod issuer_iso;
mod issuer_returns;
pub mod phone;
pub mod pos;
pub mod webhook_sink;

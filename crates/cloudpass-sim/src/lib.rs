//! Stand-ins for the parties outside the cloudpass network. Nothing in the platform depends
//! on this crate; the binary wires these in for the sandbox and the tests.
//!
//! - [`issuer_host`]: a bank — its side of the token service's issuer protocol, its SMS
//!   inbox, its back office.
//! - [`demo_shop`]: the demo institution (`/demo-merchant`), a shop that pays through the
//!   gateway's UPACP API with its own merchant certificates.
//! - [`phone`]: a device card — its keys, its ATC, its cryptograms.
//! - [`handset`]: the phones and watches people sign the app in on, holding device cards.
//! - [`phone_page`]: the phone simulator's page (`/phone`): tap a device card at a POS.
//! - [`pos`]: an acquirer's terminal — sign-on, its keys, purchases, reversals.
//! - [`webhook_sink`]: the wallets' and banks' notification receivers.

pub mod bank;
pub mod demo_shop;
pub mod handset;
mod issuer_deposits;
pub mod issuer_host;
pub mod issuer_iso;
mod issuer_returns;
pub mod phone;
pub mod phone_page;
pub mod pos;
pub mod webhook_sink;

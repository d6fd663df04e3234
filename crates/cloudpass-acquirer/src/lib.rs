//! The acquirer's side of a payment, as a client of the switch: what a POS terminal, an
//! acquirer host or the institution gateway sends, built in one place.
//!
//! A [`Terminal`] signs on (0800, field 70 = 001) and loads the PIN and MAC keys field 62
//! brings under its master key; builds financial requests (0200; a tap, an in-app purchase
//! with the device cryptogram, or a card-not-present e-commerce payment) with fields 22, 25
//! and 60 as the network's profile wants them, a fresh STAN and RRN; encrypts the PIN into a
//! format-0 block under its PIN key; MACs every message once it holds a MAC key; and when no
//! answer comes in time reverses the request (0400 with field 90) until the switch
//! acknowledges. It talks to the switch through any [`Exchange`]: the TCP link, or the
//! switch in the same process.
//!
//! It never holds a clear PIN beyond building one block, and never logs an account number.
//!
//! Files: `terminal` (identity, keys, numbering, MAC), `sign_on`, `financial`, `reversal`,
//! `offline` (advices of offline spends and their upload), `wire_time`.

mod card_return;
mod financial;
mod offline;
mod pending;
mod reversal;
mod sign_on;
mod terminal;
mod wire_time;

pub use card_return::{CardReturn, OriginalPurchase, ReturnKind};
pub use cloudpass_iso8583::exchange::{Exchange, LinkError};
pub use financial::{EcommerceTerminal, Outcome, PreparedPurchase, Presentment, Purchase};
pub use offline::OfflineSpendAdvice;
pub use pending::{InMemoryReversals, PendingReversal, PendingReversals};
pub use terminal::{AcquirerError, Terminal, TerminalConfig};

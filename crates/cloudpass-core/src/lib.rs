//! The domain of the cloudpass network: values and rules, pure and synchronous.
//!
//! Everything here is parsed at the boundary and valid from then on: a [`Pan`] is always a
//! Luhn-valid card number and can never be printed in clear by accident; [`Money`] never
//! touches a float. This crate does no IO and depends on nothing else of ours.

pub mod authorization;
pub mod card_number;
pub mod clock;
pub mod default_card;
pub mod device;
pub mod discount;
pub mod expiry;
pub mod hex;
pub mod lifecycle;
pub mod money;
pub mod order;
pub mod peers;
pub mod random;
pub mod response_code;
pub mod trace;

pub use card_number::{AccountNumber, CardNumberError, Pan, Token, luhn_check_digit, luhn_valid};
pub use clock::{Clock, ManualClock, SystemClock};
pub use expiry::{Expiry, ExpiryError};
pub use money::{Currency, Money, MoneyError};
pub use random::{Random, SeededRandom};
pub use response_code::ResponseCode;
pub use trace::{Rrn, Stan, TraceError};

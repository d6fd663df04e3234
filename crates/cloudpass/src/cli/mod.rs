//! Tool commands: each reads its input, calls a library crate, prints the result.

pub mod demo;
pub mod device;
pub mod hsm;
pub mod iso8583;
pub mod merchant;
pub mod parties;
pub mod pos;
pub mod sandbox;
pub mod serve;
pub mod tokens;
pub mod upacp;

/// An error for the user: one line, no secrets.
pub type CliResult = Result<(), String>;

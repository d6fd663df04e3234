//! The HTTP edge every cloudpass service shares, so that each new endpoint inherits it:
//!
//! - [`body`]: JSON request bodies parsed into typed requests, with errors that name the
//!   place and the expected shape but never the value they refuse (a card number sent as a
//!   number must not come back in the error, nor be stored with it).
//! - [`errors`]: every error as JSON `{code, message}`, including the ones the framework
//!   makes by itself (404, 405, 413, timeouts).
//! - [`server`]: the accept loop with bounded connections, header, request and handshake
//!   deadlines, and TLS ([`tls`]) when configured.

pub mod auth;
pub mod body;
pub mod errors;
pub mod openapi;
pub mod pages;

pub use body::{BodyError, parse_json};
pub use errors::{ErrorBody, json_error, status_error, with_json_errors};
pub mod client;
pub mod server;
pub mod tls;

pub use server::{HttpLimits, PeerAddr, serve};

//! UnionPay's UPACP protocol (全渠道, versions 5.1.0 and 5.0.0) as the institution gateway
//! and its tools speak it: the wire format only. What a request means is the gateway's.
//!
//! - [`form`]: the `key=value&…` message, raw (nested `{…}`/`[…]` values) or URL-encoded.
//! - [`signing`]: the string to sign; signMethod 01 (RSA), 11 (SHA-256 secure key) and 12
//!   (SM3 secure key); verification as a report of every check made.
//! - [`certificate`]: `certId`, validity, chain and CN of signing certificates.
//! - [`code`]: `respCode`s and `respMsg`.
//! - [`request`]: a merchant's request parsed once (consume, undo/refund, query), refused
//!   with the right `respCode` when malformed.
//! - [`pki`]: the platform's root, middle, signing and encryption certificates in UnionPay's
//!   shape, and merchants' certificates under them.
//! - [`app_result`]: the payment control's synchronous result (`result_data`) for the SDK.
//! - [`time`]: `yyyyMMddHHmmss` Beijing times.
//!
//! The facts come from reference/upacp.md §2–§3; docs/upacp.md is the contract.

pub mod app_result;
pub mod certificate;
pub mod code;
pub mod form;
pub mod pki;
pub mod request;
pub mod signing;
pub mod time;

pub use certificate::{Certificate, CertificateError};
pub use form::{Form, FormError};
pub use signing::{Report, SignMethod, Trust, Version};

//! The cloudpass token service (TSP): over-the-air card issuance (空中发卡) and the whole
//! life of a device card.
//!
//! - [`service::Tsp`]: provisioning (green/yellow/red with the issuer), step-up, lifecycle
//!   operations from the wallet and the bank, device and card events, CVM limits.
//! - [`plan`]: a decision as a changeset (rows + history + notifications), applied
//!   atomically by `cloudpass-store`.
//! - [`vault::Vault`]: token → card for the switch, cached, decrypting in the HSM per lookup.
//! - [`notify`]: the outbox's delivery worker (signed webhooks, ordered per token, retried).
//! - [`http`]: the `/tsp/v1` API.

pub mod binding;
pub mod claim;
pub mod error;
pub mod http;
pub mod issuer_client;
pub mod keys;
pub mod model;
pub mod notify;
pub mod openapi;
pub mod plan;
pub mod schema;
pub mod secret;
pub mod service;
pub mod throttle;
pub mod vault;

pub use error::{TspError, TspResult};
pub use service::{Principal, Tsp, TspConfig};

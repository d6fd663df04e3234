//! Per-merchant sandbox clocks: an integrator advances the time its own orders live by, to
//! see `payTimeout` close an order, the clearing day end an undo's chance and the
//! notification schedule run, without waiting. The offset is the merchant's alone (other
//! merchants and the network keep real time) and only moves forward.
//!
//! What reads a merchant's time: the `txnTime` check (real time is accepted too, since an
//! SDK stamps requests with the machine's clock), the default `payTimeout`, closing unpaid
//! orders, whether a TN can still be paid, when an order was paid (its clearing day), the
//! undo's same-day rule, the reconciliation day, and when a notification is due. What keeps
//! real time: certificates' validity, the switch and the issuer, the unanswered-payment
//! sweep, and certification records.

use std::collections::HashMap;

use cloudpass_store::{GatewayStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::Gateway;

/// The most one call may advance a clock: a year.
pub const MAX_ADVANCE_SECONDS: i64 = 366 * 86_400;

/// Offsets by merchant, in milliseconds.
pub(crate) type Offsets = HashMap<String, i64>;

/// A merchant's sandbox clock (JSON).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ClockView {
    pub mer_id: String,
    /// How far ahead of real time the merchant's orders live.
    pub offset_seconds: i64,
    /// The merchant's time now, yyyyMMddHHmmss Beijing time (what `txnTime` may carry).
    pub now: String,
}

/// Advancing a merchant's clock (JSON).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// Seconds to move forward, 1 to 31,622,400 (366 days).
    pub advance_seconds: i64,
}

/// Why a clock was not advanced.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("advance_seconds must be from 1 to 31622400 (366 days)")]
    OutOfRange,
    #[error("no merchant of this gateway has this merId")]
    UnknownMerchant,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Gateway {
    /// Unix milliseconds the merchant's orders live by.
    pub(crate) fn merchant_now_millis(&self, mer_id: &str) -> i64 {
        self.clock.now_millis() + self.offset(mer_id)
    }

    /// Unix seconds the merchant's orders live by.
    pub(crate) fn merchant_now_seconds(&self, mer_id: &str) -> i64 {
        self.merchant_now_millis(mer_id).div_euclid(1_000)
    }

    fn offset(&self, mer_id: &str) -> i64 {
        self.lock_offsets().get(mer_id).copied().unwrap_or(0)
    }

    /// The largest offset of any merchant (what a sweep over all merchants must look ahead).
    pub(crate) fn largest_offset_millis(&self) -> i64 {
        self.lock_offsets()
            .values()
            .copied()
            .max()
            .unwrap_or(0)
            .max(0)
    }

    fn lock_offsets(&self) -> std::sync::MutexGuard<'_, Offsets> {
        self.offsets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads every merchant's offset from the store (another instance may have advanced one).
    pub async fn refresh_sandbox_clocks(&self) {
        match self.store.sandbox_clocks().await {
            Ok(clocks) => *self.lock_offsets() = clocks.into_iter().collect(),
            Err(error) => {
                tracing::warn!(error = %error, "gateway: cannot read the sandbox clocks");
            }
        }
    }

    /// The merchant's clock; `None` when there is no such merchant.
    pub async fn sandbox_clock(&self, mer_id: &str) -> Result<Option<ClockView>, StoreError> {
        if self.merchant(mer_id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.clock_view(mer_id)))
    }

    /// Moves the merchant's clock forward by `seconds`.
    pub async fn advance_sandbox_clock(
        &self,
        mer_id: &str,
        seconds: i64,
    ) -> Result<ClockView, ClockError> {
        if !(1..=MAX_ADVANCE_SECONDS).contains(&seconds) {
            return Err(ClockError::OutOfRange);
        }
        if self.merchant(mer_id).await?.is_none() {
            return Err(ClockError::UnknownMerchant);
        }
        let offset = self
            .store
            .advance_sandbox_clock(mer_id, seconds * 1_000)
            .await?;
        self.lock_offsets().insert(mer_id.to_owned(), offset);
        Ok(self.clock_view(mer_id))
    }

    fn clock_view(&self, mer_id: &str) -> ClockView {
        ClockView {
            mer_id: mer_id.to_owned(),
            offset_seconds: self.offset(mer_id).div_euclid(1_000),
            now: cloudpass_upacp::time::format_beijing(self.merchant_now_seconds(mer_id)),
        }
    }
}

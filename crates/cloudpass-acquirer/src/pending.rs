//! Reversals the switch has not acknowledged, kept until it does (store and forward at the
//! acquirer). A purchase that got no answer may have been approved and posted; if its
//! reversal is not acknowledged either — the switch was down longer than the terminal's
//! attempts — the terminal keeps it and sends it again before its next transaction
//! ([`Terminal::flush_reversals`]), however much later, across restarts when the store is
//! persistent. What is kept names the purchase by STAN, transmission time and amount only:
//! never the card number.

use std::sync::Mutex;

use cloudpass_core::Money;

use crate::terminal::Terminal;

/// A reversal waiting for the switch's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReversal {
    /// Field 11 of the purchase.
    pub stan: String,
    /// Field 7 of the purchase.
    pub transmission_time: String,
    pub amount: Money,
}

/// Where a terminal keeps its unacknowledged reversals. An error keeping one is the
/// terminal's to report: the reversal is still sent.
pub trait PendingReversals: Send + Sync {
    fn keep(&self, reversal: &PendingReversal) -> std::io::Result<()>;
    /// Forgets the reversal of the purchase `stan` at `transmission_time`.
    fn acknowledged(&self, stan: &str, transmission_time: &str) -> std::io::Result<()>;
    fn pending(&self) -> Vec<PendingReversal>;
}

/// Kept in memory: good for as long as the process lives.
#[derive(Default)]
pub struct InMemoryReversals {
    kept: Mutex<Vec<PendingReversal>>,
}

impl PendingReversals for InMemoryReversals {
    fn keep(&self, reversal: &PendingReversal) -> std::io::Result<()> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if !kept.contains(reversal) {
            kept.push(reversal.clone());
        }
        Ok(())
    }

    fn acknowledged(&self, stan: &str, transmission_time: &str) -> std::io::Result<()> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|r| !(r.stan == stan && r.transmission_time == transmission_time));
        Ok(())
    }

    fn pending(&self) -> Vec<PendingReversal> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Whether a reversal's answer acknowledges it: any answer but A0 or 96 (see `reversal`).
pub(crate) fn acknowledges(code: Option<&str>) -> bool {
    code.is_some_and(|code| !matches!(code, "A0" | "96"))
}

impl Terminal {
    /// Sends every kept reversal again; each with the switch's answer (`None`: still not
    /// acknowledged, kept). An acknowledged one is forgotten.
    pub async fn flush_reversals(&self) -> Vec<(PendingReversal, Option<String>)> {
        let mut results = Vec::new();
        for reversal in self.pending.pending() {
            let answer = self
                .reverse_purchase(&reversal.stan, &reversal.transmission_time, reversal.amount)
                .await;
            if acknowledges(answer.as_deref())
                && let Err(error) = self
                    .pending
                    .acknowledged(&reversal.stan, &reversal.transmission_time)
            {
                tracing::warn!(error = %error, "terminal: an acknowledged reversal could not be forgotten; it will be sent again (the switch answers a repeat alike)");
            }
            results.push((reversal, answer));
        }
        results
    }

    /// Whether reversals are waiting.
    pub fn reversals_pending(&self) -> bool {
        !self.pending.pending().is_empty()
    }

    /// How many reversals are waiting.
    pub fn reversals_kept(&self) -> usize {
        self.pending.pending().len()
    }
}

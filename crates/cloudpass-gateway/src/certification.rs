//! Self-service certification: instead of booked joint-test windows, the sandbox watches each
//! merchant's own traffic and records the standard cases it has passed — each once, at the
//! first time. The checklist is read by `cloudpass merchant certification` and at
//! `GET /gateway/merchants/{merId}/certification`.
//!
//! Recording never stands in the way of a request: a store that fails to record is logged,
//! and the request goes on. A case already recorded is remembered in memory so it is not
//! written again.

use serde::Serialize;

use crate::Gateway;
use cloudpass_store::{GatewayStore, StoreError};

/// A standard case of the checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Case {
    ConsumeSucceeded,
    ConsumeFailed,
    QueriedPaid,
    QueriedUnpaid,
    QueriedUnknown,
    DuplicateRefused,
    NotificationAcknowledged,
    NotificationRetried,
    Undone,
    PartlyRefunded,
    FullyRefunded,
    ReconciliationDownloaded,
    BadSignatureRefused,
}

impl Case {
    pub const ALL: [Case; 13] = [
        Case::ConsumeSucceeded,
        Case::ConsumeFailed,
        Case::QueriedPaid,
        Case::QueriedUnpaid,
        Case::QueriedUnknown,
        Case::DuplicateRefused,
        Case::NotificationAcknowledged,
        Case::NotificationRetried,
        Case::Undone,
        Case::PartlyRefunded,
        Case::FullyRefunded,
        Case::ReconciliationDownloaded,
        Case::BadSignatureRefused,
    ];

    /// The stable name (stored, and in the JSON).
    pub fn name(self) -> &'static str {
        match self {
            Case::ConsumeSucceeded => "consume_success",
            Case::ConsumeFailed => "consume_failure",
            Case::QueriedPaid => "query_paid",
            Case::QueriedUnpaid => "query_unpaid",
            Case::QueriedUnknown => "query_unknown",
            Case::DuplicateRefused => "duplicate_order",
            Case::NotificationAcknowledged => "notification_acknowledged",
            Case::NotificationRetried => "notification_retried",
            Case::Undone => "undo",
            Case::PartlyRefunded => "partial_refund",
            Case::FullyRefunded => "full_refund",
            Case::ReconciliationDownloaded => "reconciliation_download",
            Case::BadSignatureRefused => "bad_signature",
        }
    }

    /// What the merchant's traffic must show.
    pub fn description(self) -> &'static str {
        match self {
            Case::ConsumeSucceeded => "a consume paid (respCode 00 in the notification)",
            Case::ConsumeFailed => "a consume declined by the issuer (e.g. a wrong PIN or CVN2)",
            Case::QueriedPaid => "a query of a paid order (respCode 00, origRespCode 00)",
            Case::QueriedUnpaid => {
                "a query of an order not paid yet (respCode 34 before payTimeout)"
            }
            Case::QueriedUnknown => "a query of an order that does not exist (respCode 34)",
            Case::DuplicateRefused => {
                "an orderId and txnTime reused by another request, refused 12"
            }
            Case::NotificationAcknowledged => "a notification answered HTTP 200 or 302",
            Case::NotificationRetried => "a notification acknowledged after an earlier send failed",
            Case::Undone => "an undo (31) of a same-day consume",
            Case::PartlyRefunded => "a refund (04) of part of a consume",
            Case::FullyRefunded => "refunds (04) reaching a consume's whole amount",
            Case::ReconciliationDownloaded => "a reconciliation file downloaded (76)",
            Case::BadSignatureRefused => "a request with a bad signature, refused 11",
        }
    }

    pub fn parse(name: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|case| case.name() == name)
    }
}

/// One line of the checklist (JSON).
#[derive(Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct CaseStatus {
    pub case: &'static str,
    pub description: &'static str,
    pub passed: bool,
    /// Unix milliseconds of the first pass.
    pub passed_at: Option<i64>,
}

/// A merchant as the operator console lists it.
#[derive(Debug, Clone)]
pub struct MerchantSummary {
    pub mer_id: String,
    pub name: String,
    pub permissions: Vec<&'static str>,
    /// Registered in the store (`cloudpass merchant add`), not one the wiring fixed.
    pub registered: bool,
    /// Certification cases passed, of `total`.
    pub passed: usize,
    pub total: usize,
}

/// A merchant's checklist (JSON).
#[derive(Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Certification {
    pub mer_id: String,
    pub passed: usize,
    pub total: usize,
    pub complete: bool,
    pub cases: Vec<CaseStatus>,
}

/// The checklist from what the store holds for a merchant (unknown names are ignored).
pub fn checklist(mer_id: &str, recorded: &[(String, i64)]) -> Certification {
    let cases: Vec<CaseStatus> = Case::ALL
        .into_iter()
        .map(|case| {
            let passed_at = recorded
                .iter()
                .find(|(name, _)| name == case.name())
                .map(|(_, at)| *at);
            CaseStatus {
                case: case.name(),
                description: case.description(),
                passed: passed_at.is_some(),
                passed_at,
            }
        })
        .collect();
    let passed = cases.iter().filter(|case| case.passed).count();
    Certification {
        mer_id: mer_id.to_owned(),
        passed,
        total: cases.len(),
        complete: passed == cases.len(),
        cases,
    }
}

/// Pairs (merchant, case) remembered as recorded; the memory starts over past it.
const REMEMBERED: usize = 100_000;

impl Gateway {
    /// Records that `mer_id` passed `case` (once; failures are logged, never raised).
    pub(crate) async fn certify(&self, mer_id: &str, case: Case) {
        let key = (mer_id.to_owned(), case);
        {
            let mut recorded = self
                .certified
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if recorded.contains(&key) {
                return;
            }
            if recorded.len() >= REMEMBERED {
                recorded.clear();
            }
            recorded.insert(key);
        }
        let now = self.clock.now_millis();
        if let Err(error) = self
            .store
            .record_certification(mer_id, case.name(), now)
            .await
        {
            tracing::warn!(error = %error, case = case.name(), "gateway: a certification case could not be recorded");
            self.certified
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&(mer_id.to_owned(), case));
        }
    }

    /// Every merchant of this gateway — the fixed ones, then those registered in the store —
    /// with its permissions and how far its certification has come.
    pub async fn merchant_summaries(&self) -> Result<Vec<MerchantSummary>, StoreError> {
        let mut summaries: Vec<MerchantSummary> = self
            .merchants
            .all()
            .iter()
            .map(|m| MerchantSummary {
                mer_id: m.mer_id.clone(),
                name: m.name.clone(),
                permissions: m.permissions.names(),
                registered: false,
                passed: 0,
                total: Case::ALL.len(),
            })
            .collect();
        for row in self.store.merchants().await? {
            if self.merchants.contains(&row.mer_id) {
                continue;
            }
            summaries.push(MerchantSummary {
                permissions: crate::Permissions::parse(&row.permissions)
                    .map(|p| p.names())
                    .unwrap_or_default(),
                mer_id: row.mer_id,
                name: row.name,
                registered: true,
                passed: 0,
                total: Case::ALL.len(),
            });
        }
        for summary in &mut summaries {
            let recorded = self.store.certification_of(&summary.mer_id).await?;
            summary.passed = checklist(&summary.mer_id, &recorded).passed;
        }
        Ok(summaries)
    }

    /// The checklist of a merchant of this gateway; `None` when there is no such merchant.
    pub async fn certification(&self, mer_id: &str) -> Result<Option<Certification>, StoreError> {
        if self.merchant(mer_id).await?.is_none() {
            return Ok(None);
        }
        let recorded = self.store.certification_of(mer_id).await?;
        Ok(Some(checklist(mer_id, &recorded)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        for case in Case::ALL {
            assert_eq!(Case::parse(case.name()), Some(case));
        }
        let mut names: Vec<_> = Case::ALL.iter().map(|case| case.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Case::ALL.len());
    }

    #[test]
    fn the_checklist_counts_what_passed() {
        let report = checklist(
            "898310048990011",
            &[("undo".into(), 7), ("no_such_case".into(), 9)],
        );
        assert_eq!(
            (report.passed, report.total, report.complete),
            (1, 13, false)
        );
        let undo = report.cases.iter().find(|c| c.case == "undo");
        assert_eq!(undo.map(|c| c.passed_at), Some(Some(7)));
    }
}

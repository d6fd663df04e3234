//! The idempotency claim a request runs under.
//!
//! The HTTP layer claims a request's `Idempotency-Key` before running it; every change the
//! request commits carries the claim, so the store marks the claim's effect as committed in
//! the same transaction. If the process dies before writing the answer, whoever takes the
//! stale claim over knows whether the change is already made and must not be made again.
//! The claim travels with the request's task rather than through every service call.

use std::future::Future;

use cloudpass_store::IdempotencyClaim;

tokio::task_local! {
    static CLAIM: RequestClaim;
}

/// The key a request holds, and whether an earlier holder's change was already committed.
#[derive(Debug, Clone)]
pub struct RequestClaim {
    pub principal: String,
    pub key: String,
    pub effect_committed: bool,
}

/// Runs `request` under `claim`.
pub async fn run_under<F: Future>(claim: RequestClaim, request: F) -> F::Output {
    CLAIM.scope(claim, request).await
}

/// The claim the current request's changes are committed under, if it holds one.
pub fn current() -> Option<IdempotencyClaim> {
    CLAIM
        .try_with(|claim| IdempotencyClaim {
            principal: claim.principal.clone(),
            key: claim.key.clone(),
        })
        .ok()
}

/// True when this request took over a claim whose holder died after committing its change:
/// the change is made, and only its answer is left to give.
pub fn effect_already_committed() -> bool {
    CLAIM
        .try_with(|claim| claim.effect_committed)
        .unwrap_or(false)
}

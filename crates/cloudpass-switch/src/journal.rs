//! The journal's group commit: requests from many connections hand their journal steps to
//! one writer task, which commits whatever has gathered in one transaction and then answers
//! each waiter. Under load many requests share one commit (one fsync on SQLite, one round
//! trip and commit on PostgreSQL); alone, a request waits for nobody.

use std::time::Duration;

use cloudpass_store::{AnyStore, JournalOp, JournalOutcome, StoreError, TokenStore};
use tokio::sync::{mpsc, oneshot};

/// Most steps in one commit.
const MAX_BATCH: usize = 512;

/// How long [`Journal::record_answer`] waits before each retry of a failed commit: long
/// enough for a pool to replace connections a database restart or failover cut, short
/// enough that the acquirer still gets its answer (about 1.3 s in all).
const ANSWER_RETRIES: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_secs(1),
];

type Reply = oneshot::Sender<Result<Vec<JournalOutcome>, StoreError>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("journal store: {0}")]
    Store(#[from] StoreError),
    #[error("the journal writer has stopped")]
    Stopped,
}

pub struct Journal {
    sender: mpsc::Sender<(Vec<JournalOp>, Reply)>,
}

impl Journal {
    /// Starts the writer task; it ends when the last `Journal` handle is dropped.
    pub fn start(store: AnyStore) -> Self {
        let (sender, mut receiver) = mpsc::channel::<(Vec<JournalOp>, Reply)>(MAX_BATCH * 4);
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                let mut steps = batch[0].0.len();
                while steps < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(next) => {
                            steps += next.0.len();
                            batch.push(next);
                        }
                        Err(_) => break,
                    }
                }
                let ops: Vec<JournalOp> = batch
                    .iter()
                    .flat_map(|(ops, _)| ops.iter().cloned())
                    .collect();
                match store.journal_apply(&ops).await {
                    Ok(outcomes) => {
                        let mut outcomes = outcomes.into_iter();
                        for (ops, reply) in batch {
                            let mine: Vec<JournalOutcome> =
                                outcomes.by_ref().take(ops.len()).collect();
                            let _ = reply.send(Ok(mine));
                        }
                    }
                    Err(error) => {
                        tracing::error!(error = %error, steps, "journal commit failed");
                        for (_, reply) in batch {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        Self { sender }
    }

    /// Commits `ops` (with whatever else is waiting) and returns their outcomes.
    pub async fn record(&self, ops: Vec<JournalOp>) -> Result<Vec<JournalOutcome>, JournalError> {
        #[cfg(feature = "deliberately-broken-journal")]
        if matches!(ops.first(), Some(JournalOp::Answer(_))) {
            return self.record_after_answering(ops).await;
        }
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((ops, reply))
            .await
            .map_err(|_| JournalError::Stopped)?;
        Ok(answer.await.map_err(|_| JournalError::Stopped)??)
    }

    /// Commits an answer's steps — the answer (an update of its request's row), the advices
    /// queued with it, an offline clearing — retrying a failed commit up to three times. Those
    /// steps are idempotent (the answer is set again, an advice or clearing already there
    /// stays as it is), so a retry after a commit whose outcome was lost with its connection
    /// records them once. A request's arrival (`JournalOp::Begin`) is not retried here: a
    /// retry would find its own row and take it for a duplicate.
    pub async fn record_answer(
        &self,
        ops: Vec<JournalOp>,
    ) -> Result<Vec<JournalOutcome>, JournalError> {
        debug_assert!(!ops.iter().any(|op| matches!(op, JournalOp::Begin(_))));
        let mut result = self.record(ops.clone()).await;
        for wait in ANSWER_RETRIES {
            match &result {
                Err(JournalError::Store(error)) => {
                    tracing::warn!(error = %error, "journal: an answer's commit failed; retrying");
                    tokio::time::sleep(wait).await;
                    result = self.record(ops.clone()).await;
                }
                _ => break,
            }
        }
        result
    }

    /// DELIBERATELY BROKEN, built only with the feature `deliberately-broken-journal`: an
    /// answer's steps (and any advice queued with it) are handed to the writer and reported
    /// committed before they are, so the answer can leave and then be lost by a crash or a
    /// failed commit. It exists so that `cloudpass chaos` can show it catches a journal that
    /// answers before its commit (docs/reliability.md); never enable it anywhere else.
    #[cfg(feature = "deliberately-broken-journal")]
    async fn record_after_answering(
        &self,
        ops: Vec<JournalOp>,
    ) -> Result<Vec<JournalOutcome>, JournalError> {
        let steps = ops.len();
        let (reply, _not_awaited) = oneshot::channel();
        self.sender
            .send((ops, reply))
            .await
            .map_err(|_| JournalError::Stopped)?;
        Ok((0..steps).map(|_| JournalOutcome::Recorded).collect())
    }
}

//! The journal's answer commit under a database fault: PostgreSQL terminates the session
//! that is writing an answer (a server restart or failover), and the answer is recorded all
//! the same, once, by a retry on a fresh connection.
//!
//! PostgreSQL only: an SQLite store has no sessions to cut (its write lock makes a commit
//! wait, which the chaos runs cover).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use cloudpass_store::testing::{Backend, fresh, postgres_url};
use cloudpass_store::{JournalAnswer, JournalOp, JournalRow, TokenStore};
use cloudpass_switch::journal::Journal;
use sqlx::{Connection, PgConnection, Row};

fn row(id: &str) -> JournalRow {
    JournalRow {
        id: id.to_owned(),
        mti: "0200".into(),
        acquirer_id: "48021000".into(),
        stan: "000123".into(),
        transmission_time: "1201120000".into(),
        rrn: "000000000123".into(),
        terminal_id: "CPTEST01".into(),
        token_masked: "621234******1234".into(),
        amount: 1_250,
        currency: 156,
        received_at: 1,
        response_code: None,
        auth_code: None,
        issuer_outcome: None,
        answered_at: None,
    }
}

/// A connection of the test's own on the store's schema.
async fn admin(schema: &str) -> PgConnection {
    let mut connection = PgConnection::connect(&postgres_url()).await.unwrap();
    sqlx::query("SELECT set_config('search_path', $1, false)")
        .bind(schema)
        .execute(&mut connection)
        .await
        .unwrap();
    connection
}

#[tokio::test]
async fn an_answer_whose_session_is_cut_mid_commit_is_recorded_by_a_retry() {
    let store = fresh(Backend::Postgres).await.unwrap();
    let schema = store.schema().unwrap().to_owned();
    let journal = Journal::start(store.store.clone());
    let id = "0200:48021000:000123:1201120000";
    journal
        .record(vec![JournalOp::Begin(row(id))])
        .await
        .unwrap();

    // Another session holds the journal table, so the answer's UPDATE waits on it...
    let mut holder = admin(&schema).await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE switch_journal IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let answering = tokio::spawn({
        let ops = vec![JournalOp::Answer(JournalAnswer {
            id: id.to_owned(),
            response_code: "00".into(),
            auth_code: Some("123456".into()),
            issuer_outcome: "answered".into(),
            answered_at: 2,
        })];
        async move { journal.record_answer(ops).await }
    });
    // ...and the session waiting on it is terminated, as a failover would.
    let mut operator = admin(&schema).await;
    let mut cut = 0;
    for _ in 0..200 {
        cut = sqlx::query(
            "SELECT COUNT(pg_terminate_backend(pid)) AS cut FROM pg_locks \
             WHERE NOT granted AND relation = 'switch_journal'::regclass",
        )
        .fetch_one(&mut operator)
        .await
        .unwrap()
        .get::<i64, _>("cut");
        if cut > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cut, 1, "the answer's session never waited on the lock");
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();

    let recorded = answering.await.unwrap();
    assert!(
        recorded.is_ok(),
        "the answer was lost with its session: {recorded:?}"
    );
    let entry = store.store.journal_entry(id).await.unwrap().unwrap();
    assert_eq!(entry.response_code.as_deref(), Some("00"));
    assert_eq!(entry.auth_code.as_deref(), Some("123456"));
    store.cleanup().await;
}

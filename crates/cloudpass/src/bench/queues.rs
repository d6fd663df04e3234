//! `cloudpass bench queues`: what a queue claim costs as its backlog grows.
//!
//! Two queues are filled straight through the store, as the services fill them:
//!
//! - **the token service's outbox**: notifications in queues of four per subscriber and token
//!   (only the first of each may go; the other three wait behind it), every one due;
//! - **the switch's store and forward**: advices for the issuer, half of them in pairs for one
//!   original transaction (the second waits behind the first), every one due.
//!
//! Then each queue is drained for `--claims` rounds the way its worker drains it — claim a
//! batch, record each one delivered or acknowledged — and each claim is timed. A claim whose
//! cost is O(batch) takes the same time at 1,000 pending as at 100,000; one that looks at
//! the backlog grows with it. A fresh store per backend and backlog.

use std::time::Instant;

use cloudpass_store::testing::{TestStore, fresh_postgres_at, fresh_sqlite};
use cloudpass_store::{
    AnyStore, Changeset, DeliveryOutcome, JournalOp, NewOutboxEvent, SafDelivery, SafRow,
    TokenStore,
};

use super::{grouped, percentile};
use crate::cli::CliResult;

pub struct QueuesBench {
    pub backends: Vec<&'static str>,
    /// Backlogs to measure at, smallest first.
    pub pending: Vec<usize>,
    pub batch: i64,
    pub claims: usize,
    pub postgres_url: String,
}

/// Rows written per transaction while filling a queue.
const FILL_CHUNK: usize = 1_000;
/// Every row is due at this time; claims run at `NOW`.
const NOW: i64 = 1_800_000_000_000;
/// Notifications per subscriber and token (one may go, the rest wait behind it).
const OUTBOX_QUEUE_LENGTH: usize = 4;

pub fn run(bench: QueuesBench) -> CliResult {
    if bench.pending.is_empty() || bench.batch < 1 || bench.claims == 0 {
        return Err("--pending needs at least one backlog; --batch and --claims at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    println!(
        "cloudpass bench queues: claims of {} from a backlog of {}, {} claims each; outbox in queues of {} per token, store and forward half in pairs",
        bench.batch,
        bench
            .pending
            .iter()
            .map(|n| grouped(*n as f64))
            .collect::<Vec<_>>()
            .join(" and "),
        bench.claims,
        OUTBOX_QUEUE_LENGTH
    );
    println!(
        "{:<9} {:<18} {:>9} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "backend",
        "queue",
        "pending",
        "claim p50",
        "claim p99",
        "claim max",
        "delivered/s",
        "fill s"
    );
    runtime.block_on(async {
        for backend in &bench.backends {
            for &pending in &bench.pending {
                let fresh = fresh_store(backend, &bench.postgres_url).await?;
                let outcome = measure_both(&fresh.store, backend, pending, &bench).await;
                fresh.cleanup_at(&bench.postgres_url).await;
                outcome?;
            }
        }
        Ok(())
    })
}

async fn fresh_store(backend: &str, postgres_url: &str) -> Result<TestStore, String> {
    let store = match backend {
        "sqlite" => fresh_sqlite().await,
        _ => fresh_postgres_at(postgres_url).await,
    };
    store.map_err(|error| format!("{backend} store: {error}"))
}

async fn measure_both(
    store: &AnyStore,
    backend: &str,
    pending: usize,
    bench: &QueuesBench,
) -> Result<(), String> {
    let started = Instant::now();
    fill_outbox(store, pending).await?;
    let fill = started.elapsed().as_secs_f64();
    let drained = drain_outbox(store, bench).await?;
    print_row(backend, "outbox", pending, &drained, fill);

    let started = Instant::now();
    fill_saf(store, pending).await?;
    let fill = started.elapsed().as_secs_f64();
    let drained = drain_saf(store, bench).await?;
    print_row(backend, "store and forward", pending, &drained, fill);
    Ok(())
}

/// What draining a queue measured.
struct Drained {
    /// Microseconds per claim.
    claims_us: Vec<f64>,
    delivered: usize,
    seconds: f64,
}

fn print_row(backend: &str, queue: &str, pending: usize, drained: &Drained, fill: f64) {
    let mut claims = drained.claims_us.clone();
    claims.sort_by(f64::total_cmp);
    let ms = |q: f64| format!("{:.2} ms", percentile(&claims, q) / 1000.0);
    println!(
        "{:<9} {:<18} {:>9} {:>10} {:>10} {:>10} {:>12} {:>10.1}",
        backend,
        queue,
        grouped(pending as f64),
        ms(0.5),
        ms(0.99),
        ms(1.0),
        grouped(drained.delivered as f64 / drained.seconds.max(1e-9)),
        fill
    );
}

async fn fill_outbox(store: &AnyStore, pending: usize) -> Result<(), String> {
    let events: Vec<NewOutboxEvent> = (0..pending).map(outbox_event).collect();
    for chunk in events.chunks(FILL_CHUNK) {
        let changeset = Changeset {
            outbox: chunk.to_vec(),
            ..Changeset::default()
        };
        store
            .commit(&changeset)
            .await
            .map_err(|error| format!("filling the outbox: {error}"))?;
    }
    Ok(())
}

/// The `index`th notification: queues of [`OUTBOX_QUEUE_LENGTH`] consecutive events.
fn outbox_event(index: usize) -> NewOutboxEvent {
    NewOutboxEvent {
        event_id: format!("bench-event-{index}"),
        subscriber_kind: "token_requestor".into(),
        subscriber_id: "40010030273".into(),
        token_id: format!("tok_bench_{}", index / OUTBOX_QUEUE_LENGTH),
        event_type: "TOKEN_STATUS_UPDATED".into(),
        payload: "{}".into(),
        created_at: NOW - 1,
    }
}

async fn drain_outbox(store: &AnyStore, bench: &QueuesBench) -> Result<Drained, String> {
    let mut drained = Drained {
        claims_us: Vec::with_capacity(bench.claims),
        delivered: 0,
        seconds: 0.0,
    };
    let started = Instant::now();
    for _ in 0..bench.claims {
        let claim_started = Instant::now();
        let events = store
            .claim_due_events(NOW, NOW + 60_000, bench.batch)
            .await
            .map_err(|error| format!("claiming notifications: {error}"))?;
        drained
            .claims_us
            .push(claim_started.elapsed().as_secs_f64() * 1e6);
        for event in &events {
            store
                .record_delivery(event.id, &DeliveryOutcome::Delivered { at: NOW })
                .await
                .map_err(|error| format!("recording a delivery: {error}"))?;
        }
        drained.delivered += events.len();
    }
    drained.seconds = started.elapsed().as_secs_f64();
    Ok(drained)
}

async fn fill_saf(store: &AnyStore, pending: usize) -> Result<(), String> {
    let advices: Vec<JournalOp> = (0..pending)
        .map(|i| JournalOp::Enqueue(advice(i)))
        .collect();
    for chunk in advices.chunks(FILL_CHUNK) {
        store
            .journal_apply(chunk)
            .await
            .map_err(|error| format!("filling store and forward: {error}"))?;
    }
    Ok(())
}

/// The `index`th advice: half of them in pairs (a stand-in approval and its reversal, one
/// original transaction, the reversal waiting behind the approval), half alone.
fn advice(index: usize) -> SafRow {
    let paired = index % 4 < 2;
    let (original, mti, kind) = match (paired, index % 2) {
        (true, 0) => (index / 2, "0220", "stand_in"),
        (true, _) => (index / 2, "0420", "reversal"),
        (false, _) => (index, "0420", "reversal"),
    };
    // The first digit of the transmission time keeps paired and lone originals apart.
    let transmission_time = format!("{}{:09}", if paired { 1 } else { 2 }, original / 1_000_000);
    SafRow {
        id: format!("{mti}:bench-{index}"),
        mti: mti.into(),
        kind: kind.into(),
        token_number: "6231180000000008".into(),
        original_mti: "0200".into(),
        stan: format!("{:06}", original % 1_000_000),
        transmission_time,
        acquirer_id: "CPACQ001".into(),
        rrn: format!("{:012}", original),
        terminal_id: "CPPOS001".into(),
        merchant_id: "CPMERCHANT00001".into(),
        amount: 1_000,
        currency: 156,
        attempts: 0,
        next_attempt_at: NOW - 1,
        created_at: NOW - 1 + i64::from(index % 2 == 1),
        acknowledged_at: None,
        response_code: None,
    }
}

async fn drain_saf(store: &AnyStore, bench: &QueuesBench) -> Result<Drained, String> {
    let mut drained = Drained {
        claims_us: Vec::with_capacity(bench.claims),
        delivered: 0,
        seconds: 0.0,
    };
    let started = Instant::now();
    for _ in 0..bench.claims {
        let claim_started = Instant::now();
        let advices = store
            .saf_due(NOW, bench.batch)
            .await
            .map_err(|error| format!("reading due advices: {error}"))?;
        drained
            .claims_us
            .push(claim_started.elapsed().as_secs_f64() * 1e6);
        for advice in &advices {
            let acknowledged = SafDelivery::Acknowledged {
                response_code: "00".into(),
                at: NOW,
            };
            store
                .saf_record(&advice.id, &acknowledged)
                .await
                .map_err(|error| format!("recording an acknowledgement: {error}"))?;
        }
        drained.delivered += advices.len();
    }
    drained.seconds = started.elapsed().as_secs_f64();
    Ok(drained)
}

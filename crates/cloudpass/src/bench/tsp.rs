//! Token service throughput, on the embedded SQLite store and on PostgreSQL:
//!
//! - **provisions/s**: green-path loads over the real HTTP API (`POST /tsp/v1/tokens`), each
//!   asking the issuer host stand-in twice over HTTP (checkEligibility, approveProvision),
//!   writing card, token, history and notifications in one transaction, and sealing the card
//!   profile in the HSM. Each load goes to its own device; `--concurrency` requests in flight.
//! - **detokenizations/s**: token → card through the vault, as the switch calls it, cold
//!   (every lookup reads the store) and warm (cached rows; the card number is still decrypted
//!   in the HSM each time).
//!
//! A fresh instance per backend: an SQLite file in a temporary directory; a fresh schema on
//! the PostgreSQL server at `--postgres-url`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudpass::app::{self, AppConfig, RunningApp};
use cloudpass::sandbox;
use cloudpass_core::hex;
use cloudpass_crypto::{DeviceKeyPair, OsRandom};
use cloudpass_store::TokenStore;
use serde_json::json;

use super::{grouped, percentile};
use crate::cli::CliResult;

pub struct TspBench {
    pub backends: Vec<&'static str>,
    pub provisions: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub postgres_url: String,
}

/// Latency summary of a set of samples in microseconds.
fn latency_line(samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    format!(
        "p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms",
        percentile(samples, 0.5) / 1000.0,
        percentile(samples, 0.99) / 1000.0,
        percentile(samples, 0.999) / 1000.0
    )
}

pub(super) async fn start(
    backend: &str,
    postgres_url: &str,
) -> Result<(RunningApp, std::path::PathBuf, Option<String>), String> {
    let data_dir = std::env::temp_dir().join(format!(
        "cloudpass-bench-{}-{}",
        backend,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut config = AppConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), data_dir.clone());
    let mut schema = None;
    if backend == "postgres" {
        use sqlx::Connection;
        let name = format!("cpbench_{}", std::process::id());
        let mut connection = sqlx::PgConnection::connect(postgres_url)
            .await
            .map_err(|e| format!("PostgreSQL at {postgres_url}: {e}"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
        )))
        .execute(&mut connection)
        .await
        .map_err(|e| e.to_string())?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .execute(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        config.database_url = Some(postgres_url.to_owned());
        config.postgres_schema = Some(name.clone());
        config.pool.max_connections = 32;
        schema = Some(name);
    }
    let running = app::start(config).await?;
    Ok((running, data_dir, schema))
}

pub(super) async fn stop(
    running: RunningApp,
    data_dir: std::path::PathBuf,
    schema: Option<String>,
    postgres_url: &str,
) {
    running.stop().await;
    let _ = std::fs::remove_dir_all(data_dir);
    if let Some(name) = schema {
        use sqlx::Connection;
        if let Ok(mut connection) = sqlx::PgConnection::connect(postgres_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
            )))
            .execute(&mut connection)
            .await;
        }
    }
}

async fn run_backend(backend: &'static str, bench: &TspBench) -> Result<(), String> {
    let (running, data_dir, schema) = start(backend, &bench.postgres_url).await?;
    let base = running.base_url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(bench.concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    let wallet = sandbox::WALLETS[0].api_key;
    println!("\n[{backend}] {}", running.database);

    // Cardholders: one card and one device per provision, as when many people add their
    // cards at once (not timed). Cards are numbered in the sandbox bank's 622609 range.
    let cards: Vec<String> = (0..bench.provisions)
        .map(|index| {
            let body = format!("622609{:09}", 100_000_000 + index);
            let check = cloudpass_core::luhn_check_digit(body.as_bytes())
                .map(char::from)
                .unwrap_or('0');
            format!("{body}{check}")
        })
        .collect();
    for number in &cards {
        running
            .stand_in_bank()?
            .add_card(&cloudpass_sim::issuer_host::SimCard {
                number: number.clone(),
                expiry: "2912".into(),
                cvn2: None,
                phone: "18100000000".into(),
                holder_name: "bench".into(),
                funding: "debit".into(),
                product: "debit".into(),
                provisioning: "green".into(),
                pin: None,
                currency: 156,
                opening_balance: 1_000_000,
                credit_limit: 0,
                daily_limit: 2_000_000,
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    let cards = Arc::new(cards);

    // Devices, one per provision (not timed).
    let public_key = hex::encode(&DeviceKeyPair::generate(&OsRandom).public_key());
    let setup = Instant::now();
    let mut registrations = tokio::task::JoinSet::new();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(bench.concurrency));
    for index in 0..bench.provisions {
        let (http, base, public_key, semaphore) = (
            http.clone(),
            base.clone(),
            public_key.clone(),
            Arc::clone(&semaphore),
        );
        registrations.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            http.post(format!("{base}/tsp/v1/devices"))
                .bearer_auth(wallet)
                .header("idempotency-key", format!("bench-device-{index}"))
                .json(&json!({"device_id": format!("bench-{index}"), "kind": "handset_se", "brand": "bench", "account_id": sandbox::ACCOUNT_ID, "unlock_set": true, "public_key": public_key}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
    }
    while let Some(result) = registrations.join_next().await {
        match result {
            Ok(Ok(201)) => {}
            other => return Err(format!("device registration failed: {other:?}")),
        }
    }
    println!(
        "  {} devices registered in {:.1} s",
        bench.provisions,
        setup.elapsed().as_secs_f64()
    );

    // Provisioning.
    let started = Instant::now();
    let mut loads = tokio::task::JoinSet::new();
    for index in 0..bench.provisions {
        let (http, base, semaphore, cards) = (
            http.clone(),
            base.clone(),
            Arc::clone(&semaphore),
            Arc::clone(&cards),
        );
        loads.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let begun = Instant::now();
            let response = http
                .post(format!("{base}/tsp/v1/tokens"))
                .bearer_auth(wallet)
                .header("idempotency-key", format!("bench-load-{index}"))
                .json(&json!({"device_id": format!("bench-{index}"), "account_id": sandbox::ACCOUNT_ID, "card": {"number": cards[index], "expiry": "2912"}}))
                .send()
                .await;
            let micros = begun.elapsed().as_secs_f64() * 1e6;
            match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let code = if status == 201 { String::new() } else { response.text().await.unwrap_or_default() };
                    Ok((status, micros, code))
                }
                Err(error) => Err(error),
            }
        });
    }
    let mut latencies = Vec::with_capacity(bench.provisions);
    let mut failures = 0;
    let mut first_failure = None;
    while let Some(result) = loads.join_next().await {
        match result {
            Ok(Ok((201, micros, _))) => latencies.push(micros),
            Ok(Ok((status, _, body))) => {
                failures += 1;
                first_failure.get_or_insert(format!("HTTP {status} {body}"));
            }
            other => {
                failures += 1;
                first_failure.get_or_insert(format!("{other:?}"));
            }
        }
    }
    if let Some(failure) = first_failure {
        println!("  first failure: {failure}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "  provisions: {} in {:.2} s = {}/s ({} in flight); {}{}",
        latencies.len(),
        elapsed,
        grouped(latencies.len() as f64 / elapsed),
        bench.concurrency,
        latency_line(&mut latencies),
        if failures > 0 {
            format!("; {failures} FAILED")
        } else {
            String::new()
        }
    );

    // Detokenization.
    let mut numbers = Vec::new();
    for index in 0..bench.provisions {
        let Some(device) = running
            .tsp
            .store()
            .device_by_external_id(sandbox::WALLETS[0].id, &format!("bench-{index}"))
            .await
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        numbers.extend(
            running
                .tsp
                .store()
                .tokens_by_device(&device.id)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|t| t.token_number),
        );
    }
    if numbers.is_empty() {
        return Err("no tokens to detokenize".into());
    }
    let numbers = Arc::new(numbers);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    for (label, cold) in [("cold", true), ("warm", false)] {
        running.tsp.vault.clear();
        if !cold {
            for number in numbers.iter() {
                running
                    .tsp
                    .vault
                    .detokenize(number)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let deadline = Instant::now() + Duration::from_secs_f64(bench.seconds);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        // Cold lookups wait on the database, so more of them are in flight.
        let tasks_count = if cold { workers * 8 } else { workers };
        for worker in 0..tasks_count {
            let (tsp, numbers) = (Arc::clone(&running.tsp), Arc::clone(&numbers));
            tasks.spawn(async move {
                let mut count = 0u64;
                let mut batch_micros = Vec::new();
                let mut index = worker;
                while Instant::now() < deadline {
                    let begun = Instant::now();
                    for _ in 0..64 {
                        let number = &numbers[index % numbers.len()];
                        index += tasks_count;
                        let lookup = if cold {
                            tsp.vault.detokenize_uncached(number).await
                        } else {
                            tsp.vault.detokenize(number).await
                        };
                        match lookup {
                            Ok(Some(entry)) => {
                                std::hint::black_box(&entry.pan);
                            }
                            _ => {
                                return Err(format!(
                                    "detokenization of a known token failed (worker {worker})"
                                ));
                            }
                        }
                        count += 1;
                    }
                    batch_micros.push(begun.elapsed().as_secs_f64() * 1e6 / 64.0);
                }
                Ok((count, batch_micros))
            });
        }
        let mut total = 0u64;
        let mut samples = Vec::new();
        while let Some(result) = tasks.join_next().await {
            let (count, micros) = result.map_err(|e| e.to_string())??;
            total += count;
            samples.extend(micros);
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "  detokenizations, {label}: {}/s ({tasks_count} tasks, {} tokens); per lookup {}",
            grouped(total as f64 / elapsed),
            numbers.len(),
            latency_line(&mut samples)
        );
    }
    stop(running, data_dir, schema, &bench.postgres_url).await;
    Ok(())
}

pub fn run(bench: TspBench) -> CliResult {
    if bench.provisions == 0
        || bench.concurrency == 0
        || !(bench.seconds > 0.0 && bench.seconds <= 600.0)
    {
        return Err(
            "--provisions and --concurrency must be at least 1, --seconds between 0 and 600".into(),
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    println!(
        "cloudpass bench tsp: {} green provisions over HTTP, {} in flight; detokenization for {} s each, cold and warm; {} cores",
        bench.provisions,
        bench.concurrency,
        bench.seconds,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    runtime.block_on(async {
        for backend in &bench.backends {
            run_backend(backend, &bench).await?;
        }
        Ok(())
    })
}

//! `cloudpass bench gateway`: TN orders/s (`appTransReq.do`) and queries/s
//! (`queryTrans.do`) over HTTP against a fresh sandbox, each request's signature verified
//! and each answer signed with the platform's RSA-2048 key — beside the rate at which the
//! same library signs with that key on every core, measured in the same run: one RSA
//! signature per answer bounds the gateway. Requests are signed with the merchant's secure
//! key (signMethod 11, a SHA-256), prepared before the clock starts, so the load generator
//! does not compete for the RSA the gateway needs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudpass_crypto::upacp::RsaSigningKey;
use cloudpass_upacp::Form;
use cloudpass_upacp::signing::{self, SignMethod};

use super::tsp::{start, stop};
use super::{grouped, percentile};
use crate::cli::CliResult;

pub struct GatewayBench {
    pub backend: String,
    pub orders: usize,
    pub concurrency: usize,
    pub postgres_url: String,
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

/// RSA-2048 signatures per second with `key` on `threads` threads for `seconds`.
fn sign_rate(key: &Arc<RsaSigningKey>, threads: usize, seconds: f64) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let key = Arc::clone(key);
            std::thread::spawn(move || {
                let mut count = 0u64;
                let until = Instant::now() + Duration::from_secs_f64(seconds);
                while Instant::now() < until {
                    if key.sign(b"version=5.1.0&respCode=00").is_ok() {
                        count += 1;
                    }
                }
                count
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

fn request(kind: &str, index: usize, txn_time: &str, run: u64) -> String {
    let order_id = format!("BENCH{run}{index:08}");
    let mut form = Form::new()
        .with("version", "5.1.0")
        .with("encoding", "UTF-8")
        .with("accessType", "0")
        .with("merId", cloudpass::sandbox_upacp::SANDBOX_MER_ID)
        .with("orderId", order_id)
        .with("txnTime", txn_time);
    if kind == "consume" {
        form.set("txnType", "01")
            .set("txnSubType", "01")
            .set("bizType", "000201")
            .set("channelType", "08")
            .set("txnAmt", "100")
            .set("currencyCode", "156")
            .set("backUrl", "http://127.0.0.1:9/notify");
    } else {
        form.set("txnType", "00")
            .set("txnSubType", "00")
            .set("bizType", "000000");
    }
    signing::sign_secure_key(
        &mut form,
        SignMethod::SecureKeySha256,
        cloudpass::sandbox_upacp::SANDBOX_SECURE_KEY.as_bytes(),
    );
    form.to_urlencoded()
}

/// Sends `bodies` to `url` with `concurrency` in flight; (requests/s, latencies in µs,
/// answers that were not `expected`).
async fn drive(
    url: String,
    bodies: Vec<String>,
    concurrency: usize,
    expected: &'static str,
) -> (f64, Vec<f64>, usize) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap_or_default();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, url, queue) = (http.clone(), url.clone(), Arc::clone(&queue));
        workers.spawn(async move {
            let (mut latencies, mut wrong) = (Vec::new(), 0usize);
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(body) = next else { break };
                let begun = Instant::now();
                let answer = match http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(response) => response.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                latencies.push(begun.elapsed().as_secs_f64() * 1e6);
                if !answer.contains(&format!("respCode={expected}")) {
                    wrong += 1;
                }
            }
            (latencies, wrong)
        });
    }
    let (mut all, mut wrong) = (Vec::new(), 0);
    while let Some(Ok((latencies, bad))) = workers.join_next().await {
        all.extend(latencies);
        wrong += bad;
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    (rate, all, wrong)
}

async fn run_backend(backend: &str, bench: &GatewayBench) -> Result<(), String> {
    let (running, data_dir, schema) = start(backend, &bench.postgres_url).await?;
    let base = running.base_url();
    println!("\n[{backend}] {}", running.database);
    let key_path = cloudpass::sandbox_upacp::dir(&data_dir).join("sign.key");
    let key = {
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(&key_path)
            .map_err(|_| "cannot read the platform's signing key".to_string())?;
        Arc::new(RsaSigningKey::from_pkcs8_der(der.secret_pkcs8_der()).map_err(|e| e.to_string())?)
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let ceiling = tokio::task::spawn_blocking(move || sign_rate(&key, cores, 3.0))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "  RSA-2048 signatures (aws-lc-rs, {cores} threads): {}/s — the ceiling: one per answer",
        grouped(ceiling)
    );

    let txn_time = cloudpass_upacp::time::format_beijing(now_seconds());
    let run = u64::try_from(now_seconds()).unwrap_or(0) % 100_000;
    let consumes: Vec<String> = (0..bench.orders)
        .map(|i| request("consume", i, &txn_time, run))
        .collect();
    let queries: Vec<String> = (0..bench.orders)
        .map(|i| request("query", i, &txn_time, run))
        .collect();
    for (name, path, bodies, expected) in [
        (
            "TN orders (appTransReq.do)",
            "/gateway/api/appTransReq.do",
            consumes,
            "00",
        ),
        (
            "queries (queryTrans.do, unpaid: 34)",
            "/gateway/api/queryTrans.do",
            queries,
            "34",
        ),
    ] {
        let (rate, latencies, wrong) =
            drive(format!("{base}{path}"), bodies, bench.concurrency, expected).await;
        println!(
            "  {name}: {}/s ({:.0}% of the ceiling)  p50 {:.2} ms  p99 {:.2} ms{}",
            grouped(rate),
            100.0 * rate / ceiling.max(1.0),
            percentile(&latencies, 0.5) / 1000.0,
            percentile(&latencies, 0.99) / 1000.0,
            if wrong == 0 {
                String::new()
            } else {
                format!("  ({wrong} unexpected answers)")
            }
        );
        if wrong > 0 {
            stop(running, data_dir, schema, &bench.postgres_url).await;
            return Err(format!(
                "{wrong} {name} answers were not respCode {expected}"
            ));
        }
    }
    stop(running, data_dir, schema, &bench.postgres_url).await;
    Ok(())
}

pub fn run(bench: GatewayBench) -> CliResult {
    if bench.orders == 0 || bench.concurrency == 0 {
        return Err("--orders and --concurrency must be at least 1".into());
    }
    let backends: Vec<&str> = match bench.backend.as_str() {
        "sqlite" => vec!["sqlite"],
        "postgres" => vec!["postgres"],
        "both" => vec!["sqlite", "postgres"],
        _ => return Err("--backend must be sqlite, postgres or both".into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    println!(
        "gateway: {} TN orders then {} queries, {} in flight, signMethod 11 requests, RSA-signed answers",
        bench.orders, bench.orders, bench.concurrency
    );
    for backend in backends {
        runtime.block_on(run_backend(backend, &bench))?;
    }
    Ok(())
}

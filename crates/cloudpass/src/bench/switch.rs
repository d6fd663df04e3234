//! Authorization throughput end to end: POS stand-ins → the switch → the issuer host, over
//! loopback TCP, in one process with the whole network.
//!
//! Every authorization is real: a phone makes an ARQC over the terminal's data, the terminal
//! sends a PIN-less contactless 0200 (MACed) on one of `--connections` persistent
//! connections with `--in-flight` requests outstanding on each, the switch journals it
//! (group commit), detokenizes it, verifies the ARQC and the ATC, checks the no-PIN rules,
//! forwards it to the issuer host, which posts it to its double-entry ledger before
//! answering; the switch journals the answer and returns the ARPC. Each in-flight slot owns
//! its own phone, so ATCs arrive in order per token.
//!
//! At the end the issuer's ledger must hold exactly the approved amount, balanced.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cloudpass::sandbox;
use cloudpass_core::{Currency, Money, SystemClock, hex, luhn_check_digit};
use cloudpass_crypto::OsRandom;
use cloudpass_iso8583::link::Link;
use cloudpass_sim::issuer_host::SimCard;
use cloudpass_sim::phone::Phone;
use cloudpass_sim::pos::{Pos, Presentment, Purchase, TerminalConfig};
use tokio::sync::watch;

use super::{grouped, percentile};
use crate::cli::CliResult;
use crate::wallet_phone::{self, PhoneCard};

pub struct SwitchBench {
    pub backend: String,
    pub duration: f64,
    pub connections: usize,
    pub in_flight: usize,
    /// Offered load in authorizations/s (paced); `None`: as fast as answers come.
    pub rate: Option<f64>,
    pub plot: Option<std::path::PathBuf>,
    pub postgres_url: String,
}

/// Bench cards: the sandbox bank's, with room for any number of taps.
const BENCH_CARDS: usize = 16;
const AMOUNT_FEN: u64 = 100;

fn bench_card(index: usize) -> String {
    let body = format!("622609{:09}", 900_000_000 + index);
    let check = luhn_check_digit(body.as_bytes()).map_or('0', char::from);
    format!("{body}{check}")
}

struct Slot {
    pos: Arc<Pos>,
    phone: Phone,
}

pub fn run(bench: SwitchBench) -> CliResult {
    if bench.connections == 0 || bench.connections > sandbox::TERMINALS.len() {
        return Err(format!(
            "--connections must be 1 to {} (one sandbox terminal each)",
            sandbox::TERMINALS.len()
        ));
    }
    if bench.in_flight == 0 {
        return Err("--in-flight must be at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(run_async(bench))
}

async fn run_async(bench: SwitchBench) -> CliResult {
    let backend: &'static str = match bench.backend.as_str() {
        "sqlite" => "sqlite",
        "postgres" => "postgres",
        other => {
            return Err(format!(
                "--backend must be sqlite or postgres, not {other:?}"
            ));
        }
    };
    let (running, data_dir, schema) = super::tsp::start(backend, &bench.postgres_url).await?;
    let result = measure(&bench, backend, &running, &data_dir).await;
    super::tsp::stop(running, data_dir, schema, &bench.postgres_url).await;
    result
}

async fn measure(
    bench: &SwitchBench,
    backend: &str,
    running: &cloudpass::app::RunningApp,
    data_dir: &std::path::Path,
) -> CliResult {
    println!(
        "bench switch: {backend}, {} connections × {} in flight, {} s{}",
        bench.connections,
        bench.in_flight,
        bench.duration,
        bench
            .rate
            .map(|rate| format!(", offered {} /s", grouped(rate)))
            .unwrap_or_default()
    );
    for index in 0..BENCH_CARDS {
        running
            .stand_in_bank()?
            .add_card(&SimCard {
                number: bench_card(index),
                expiry: "3012".into(),
                cvn2: None,
                phone: "13800000000".into(),
                holder_name: "bench".into(),
                funding: "debit".into(),
                product: "debit".into(),
                provisioning: "green".into(),
                pin: None,
                currency: 156,
                opening_balance: 1_000_000_000_000,
                credit_limit: 0,
                daily_limit: 1_000_000_000_000,
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    let (debits_before, _) = running
        .stand_in_bank()?
        .ledger_totals()
        .await
        .map_err(|e| e.to_string())?;

    // Phones: one per in-flight slot, each on its own device.
    let slots_total = bench.connections * bench.in_flight;
    print!("provisioning {slots_total} phones… ");
    let base = running.base_url();
    let http = reqwest::Client::new();
    let mut phones = Vec::with_capacity(slots_total);
    for index in 0..slots_total {
        let number = bench_card(index % BENCH_CARDS);
        let card = PhoneCard {
            number: &number,
            expiry: "3012",
            ecash: false,
        };
        phones.push(wallet_phone::provision(&http, &base, &format!("bench-{index}"), card).await?);
    }
    println!("done");

    let master = hex::decode(
        std::fs::read_to_string(data_dir.join(cloudpass::app::TERMINAL_MASTER_KEY_FILE))
            .map_err(|e| e.to_string())?
            .trim(),
    )
    .map_err(|_| "bad terminal master key file".to_owned())?;
    let (stop, stopped) = watch::channel(false);
    let mut terminals = Vec::new();
    for terminal_id in sandbox::TERMINALS.iter().take(bench.connections) {
        let link = Link::start(
            running.switch_addr,
            Duration::from_secs(10),
            stopped.clone(),
        );
        for _ in 0..200 {
            if link.is_up().await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pos = Pos::new(
            TerminalConfig {
                terminal_id: (*terminal_id).into(),
                merchant_id: sandbox::MERCHANT_ID.into(),
                merchant_category: sandbox::MERCHANT_CATEGORY.into(),
                merchant_name: sandbox::MERCHANT_NAME.into(),
                acquirer_id: sandbox::ACQUIRER_ID.into(),
                no_pin_limit: Money::new(100_000, Currency::CNY),
                reversal_attempts: 1,
            },
            &master,
            link,
            Arc::new(SystemClock),
            Arc::new(OsRandom),
        )
        .map_err(|e| e.to_string())?;
        pos.sign_on().await.map_err(|e| e.to_string())?;
        terminals.push(Arc::new(pos));
    }
    let slots: Vec<Slot> = phones
        .into_iter()
        .enumerate()
        .map(|(index, phone)| Slot {
            pos: Arc::clone(&terminals[index % bench.connections]),
            phone,
        })
        .collect();

    let completed = Arc::new(AtomicU64::new(0));
    let approved = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(bench.duration);
    let interval = bench
        .rate
        .map(|rate| Duration::from_secs_f64(slots_total as f64 / rate.max(1.0)));
    let mut workers = Vec::new();
    for (index, mut slot) in slots.into_iter().enumerate() {
        let completed = Arc::clone(&completed);
        let approved = Arc::clone(&approved);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut declines = std::collections::BTreeMap::<String, u64>::new();
            let amount = Money::new(AMOUNT_FEN, Currency::CNY);
            // Paced slots start spread over one interval.
            let mut next = interval
                .map(|every| Instant::now() + every.mul_f64(index as f64 / slots_total as f64));
            while Instant::now() < deadline {
                if let (Some(at), Some(every)) = (next.as_mut(), interval) {
                    tokio::time::sleep_until((*at).into()).await;
                    *at += every;
                }
                let Ok(tap) = slot.phone.tap(&slot.pos.terminal_data(amount), false) else {
                    break;
                };
                let sent = Instant::now();
                let outcome = slot
                    .pos
                    .purchase(&Purchase {
                        account: slot.phone.token(),
                        expiry: Some(slot.phone.expiry()),
                        amount,
                        field55: &tap.field55,
                        presentment: Presentment::Contactless {
                            track2: &tap.track2,
                        },
                        pin: None,
                    })
                    .await;
                latencies.push(sent.elapsed().as_secs_f64() * 1e6);
                completed.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Ok(outcome) if outcome.approved() => {
                        approved.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(outcome) => {
                        *declines
                            .entry(outcome.response_code.unwrap_or_else(|| "none".into()))
                            .or_default() += 1;
                    }
                    Err(error) => *declines.entry(error.to_string()).or_default() += 1,
                }
            }
            (latencies, declines)
        }));
    }
    let progress = {
        let completed = Arc::clone(&completed);
        tokio::spawn(async move {
            let mut last = 0;
            let mut second = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                second += 1;
                let now = completed.load(Ordering::Relaxed);
                eprintln!(
                    "  {second:>3} s  {:>10} authorizations  {:>8} /s",
                    grouped(now as f64),
                    grouped((now - last) as f64)
                );
                last = now;
            }
        })
    };
    let mut latencies = Vec::new();
    let mut declines = std::collections::BTreeMap::<String, u64>::new();
    for worker in workers {
        let (mine, refused) = worker.await.map_err(|e| e.to_string())?;
        latencies.extend(mine);
        for (code, count) in refused {
            *declines.entry(code).or_default() += count;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.abort();
    let _ = stop.send(true);

    latencies.sort_by(f64::total_cmp);
    let total = latencies.len() as f64;
    let approved = approved.load(Ordering::Relaxed);
    println!(
        "authorizations: {}  in {elapsed:.1} s  = {} /s  (approved {}, declined {})",
        grouped(total),
        grouped(total / elapsed),
        grouped(approved as f64),
        grouped(total - approved as f64)
    );
    for (code, count) in &declines {
        println!("  declined {code}: {}", grouped(*count as f64));
    }
    println!(
        "latency: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        percentile(&latencies, 0.5) / 1000.0,
        percentile(&latencies, 0.99) / 1000.0,
        percentile(&latencies, 0.999) / 1000.0,
        latencies.last().copied().unwrap_or(0.0) / 1000.0
    );
    println!(
        "resident memory (whole network and the load generator): peak {} MB",
        peak_resident_mb()
            .map(|mb| mb.to_string())
            .unwrap_or_else(|| "?".into())
    );

    // Money moved exactly once per approval, and the books balance.
    let (debits, credits) = running
        .stand_in_bank()?
        .ledger_totals()
        .await
        .map_err(|e| e.to_string())?;
    let moved = debits - debits_before;
    let expected = i64::try_from(approved * AMOUNT_FEN).unwrap_or(i64::MAX);
    println!(
        "issuer ledger: {} CNY posted for {} approvals; {}",
        Money::new(u64::try_from(moved).unwrap_or(0), Currency::CNY).to_decimal_string(),
        grouped(approved as f64),
        if debits == credits {
            "balanced"
        } else {
            "NOT BALANCED"
        }
    );
    if debits != credits || moved != expected {
        return Err(format!(
            "the issuer's ledger does not match: {moved} fen posted, {expected} approved, debits {debits} credits {credits}"
        ));
    }
    if let Some(path) = &bench.plot {
        std::fs::write(path, latency_svg(&latencies, backend, total / elapsed))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("latency distribution drawn to {}", path.display());
    }
    Ok(())
}

fn peak_resident_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// The latency distribution as an SVG: latency (ms, log scale) against percentile, from the
/// median to the slowest, on a 9s scale (50, 90, 99, 99.9, 99.99).
fn latency_svg(sorted_micros: &[f64], backend: &str, rate: f64) -> String {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 420.0;
    const LEFT: f64 = 70.0;
    const BOTTOM: f64 = 50.0;
    const TOP: f64 = 40.0;
    const RIGHT: f64 = 20.0;
    let nines_max = 5.0_f64;
    let x_of = |q: f64| {
        let nines = (-(1.0 - q).max(1e-5).log10()).min(nines_max);
        LEFT + (nines - (-(0.5f64).log10())) / (nines_max - (-(0.5f64).log10()))
            * (WIDTH - LEFT - RIGHT)
    };
    let max_ms = sorted_micros.last().copied().unwrap_or(1.0) / 1000.0;
    let min_ms = (percentile(sorted_micros, 0.5) / 1000.0).max(0.001);
    let (low, high) = (
        min_ms.log10().floor(),
        max_ms.max(min_ms * 10.0).log10().ceil(),
    );
    let y_of = |ms: f64| {
        let v = ms.max(10f64.powf(low)).log10();
        HEIGHT - BOTTOM - (v - low) / (high - low) * (HEIGHT - BOTTOM - TOP)
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"22\" font-size=\"14\">cloudpass bench switch ({backend}): {} authorizations/s, {} samples</text>\n",
        grouped(rate),
        grouped(sorted_micros.len() as f64)
    );
    for (q, label) in [
        (0.5, "50%"),
        (0.9, "90%"),
        (0.99, "99%"),
        (0.999, "99.9%"),
        (0.9999, "99.99%"),
    ] {
        let x = x_of(q);
        svg.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>\n",
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 18.0
        ));
    }
    let mut decade = low;
    while decade <= high {
        let ms = 10f64.powf(decade);
        let y = y_of(ms);
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{ms} ms</text>\n",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        ));
        decade += 1.0;
    }
    let mut points = String::new();
    let steps = 400;
    for step in 0..=steps {
        let nines =
            (-(0.5f64).log10()) + (nines_max - (-(0.5f64).log10())) * step as f64 / steps as f64;
        let q = 1.0 - 10f64.powf(-nines);
        if q * sorted_micros.len() as f64 > sorted_micros.len() as f64 - 1.0 && step > 0 {
            break;
        }
        let ms = percentile(sorted_micros, q) / 1000.0;
        points.push_str(&format!("{:.1},{:.1} ", x_of(q), y_of(ms)));
    }
    svg.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\" points=\"{points}\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>\n\
         <text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">latency</text>\n</svg>\n",
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 12.0,
        HEIGHT / 2.0,
        HEIGHT / 2.0
    ));
    svg
}

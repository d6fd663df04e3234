//! Codec throughput on one core: how many typical 0200s with field 55 we encode and decode
//! per second. Each run times batches of messages; throughput is messages over elapsed
//! time, latency is the per-message time within each batch.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cloudpass_iso8583::{profile, samples};

use super::{grouped, percentile};
use crate::cli::CliResult;

const BATCH: usize = 1024;

struct Run {
    per_second: f64,
    batch_ns_per_message: Vec<f64>,
}

fn measure(seconds: f64, mut operation: impl FnMut() -> Result<(), String>) -> Result<Run, String> {
    let budget = Duration::from_secs_f64(seconds);
    let mut batch_ns_per_message = Vec::new();
    let mut messages = 0usize;
    let start = Instant::now();
    while start.elapsed() < budget {
        let batch_start = Instant::now();
        for _ in 0..BATCH {
            operation()?;
        }
        batch_ns_per_message.push(batch_start.elapsed().as_nanos() as f64 / BATCH as f64);
        messages += BATCH;
    }
    Ok(Run {
        per_second: messages as f64 / start.elapsed().as_secs_f64(),
        batch_ns_per_message,
    })
}

pub fn run(runs: usize, seconds: f64) -> CliResult {
    if runs == 0 || !(seconds > 0.0 && seconds <= 600.0) {
        return Err("--runs must be at least 1 and --seconds between 0 and 600".into());
    }
    let profile = profile::cloudpass();
    let message = samples::contactless_purchase();
    let wire = profile.encode(&message).map_err(|e| e.to_string())?;
    println!(
        "cloudpass bench codec: {} {} fields, {} bytes (field 55: {} bytes), 1 thread, {runs} runs of {seconds} s each",
        message.mti(),
        message.len(),
        wire.len(),
        message.get(55).map_or(0, <[u8]>::len),
    );
    println!("{:>4}  {:>12}  {:>12}", "run", "encode/s", "decode/s");

    let mut encode_rates = Vec::new();
    let mut decode_rates = Vec::new();
    let mut encode_latency = Vec::new();
    let mut decode_latency = Vec::new();
    let mut buffer = Vec::with_capacity(1024);
    for index in 1..=runs {
        let encode = measure(seconds, || {
            buffer.clear();
            profile
                .encode_into(black_box(&message), &mut buffer)
                .map_err(|e| e.to_string())?;
            black_box(&buffer);
            Ok(())
        })?;
        let decode = measure(seconds, || {
            let decoded = profile
                .decode(black_box(&wire))
                .map_err(|e| e.to_string())?;
            black_box(decoded);
            Ok(())
        })?;
        println!(
            "{index:>4}  {:>12}  {:>12}",
            grouped(encode.per_second),
            grouped(decode.per_second)
        );
        encode_rates.push(encode.per_second);
        decode_rates.push(decode.per_second);
        encode_latency.extend(encode.batch_ns_per_message);
        decode_latency.extend(decode.batch_ns_per_message);
    }
    for samples in [
        &mut encode_rates,
        &mut decode_rates,
        &mut encode_latency,
        &mut decode_latency,
    ] {
        samples.sort_by(f64::total_cmp);
    }
    println!(
        "median: encode {}/s, decode {}/s",
        grouped(percentile(&encode_rates, 0.5)),
        grouped(percentile(&decode_rates, 0.5))
    );
    for (name, latency) in [("encode", &encode_latency), ("decode", &decode_latency)] {
        println!(
            "{name} ns/message (per {BATCH}-message batch): p50 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
            percentile(latency, 0.5),
            percentile(latency, 0.99),
            percentile(latency, 0.999),
            latency.last().copied().unwrap_or(0.0)
        );
    }
    Ok(())
}

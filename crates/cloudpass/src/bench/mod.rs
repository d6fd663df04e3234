//! `cloudpass bench …`: benchmarks are commands, not timed tests. Each prints throughput and
//! latency percentiles in a form that can be compared run to run (docs/BENCHMARKS.md).

mod codec;
mod gateway;
mod queues;
mod switch;
mod tsp;

use clap::Subcommand;

use crate::cli::CliResult;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Encode and decode a typical 0200 contactless purchase with field 55 on one core.
    Codec {
        /// Number of runs; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Seconds per run for each of encode and decode.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Token service: provisions/s over HTTP and detokenizations/s (cold and warm), on SQLite
    /// and PostgreSQL.
    Tsp {
        /// `sqlite`, `postgres` or `both`.
        #[arg(long, default_value = "both")]
        backend: String,
        #[arg(long, default_value_t = 2000)]
        provisions: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds for each detokenization measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        postgres_url: String,
    },
    /// The institution gateway: TN orders/s and queries/s over HTTP with real signatures,
    /// beside the RSA-2048 signing rate that bounds them.
    Gateway {
        /// `sqlite`, `postgres` or `both`.
        #[arg(long, default_value = "sqlite")]
        backend: String,
        /// TN orders to issue (then as many queries).
        #[arg(long, default_value_t = 2000)]
        orders: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        postgres_url: String,
    },
    /// Queue claims against their backlog: the token service's outbox and the switch's store
    /// and forward, filled to each `--pending` backlog and drained a batch at a time.
    Queues {
        /// `sqlite`, `postgres` or `both`.
        #[arg(long, default_value = "both")]
        backend: String,
        /// Backlogs to measure at, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
        pending: Vec<usize>,
        /// Rows per claim (the notifier's and store and forward's batch).
        #[arg(long, default_value_t = 32)]
        batch: i64,
        /// Claims timed per queue and backlog.
        #[arg(long, default_value_t = 200)]
        claims: usize,
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        postgres_url: String,
    },
    /// Authorizations end to end: POS stand-ins → switch → issuer host over loopback, real
    /// cryptograms, PIN-less taps, journaling and ledger posting.
    Switch {
        /// Seconds of load.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Terminal connections to the switch (1–16).
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Authorizations outstanding on each connection.
        #[arg(long, default_value_t = 32)]
        in_flight: usize,
        /// Offered load in authorizations/s (paced); default: as fast as answers come.
        #[arg(long)]
        rate: Option<f64>,
        /// `sqlite` or `postgres`: the platform store (vault, journal).
        #[arg(long, default_value = "sqlite")]
        backend: String,
        /// Draw the latency distribution to this SVG file.
        #[arg(long)]
        plot: Option<std::path::PathBuf>,
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        postgres_url: String,
    },
}

pub fn run(command: BenchCommand) -> CliResult {
    match command {
        BenchCommand::Switch {
            duration,
            connections,
            in_flight,
            rate,
            backend,
            plot,
            postgres_url,
        } => switch::run(switch::SwitchBench {
            backend,
            duration,
            connections,
            in_flight,
            rate,
            plot,
            postgres_url,
        }),
        BenchCommand::Codec { runs, seconds } => codec::run(runs, seconds),
        BenchCommand::Gateway {
            backend,
            orders,
            concurrency,
            postgres_url,
        } => gateway::run(gateway::GatewayBench {
            backend,
            orders,
            concurrency,
            postgres_url,
        }),
        BenchCommand::Tsp {
            backend,
            provisions,
            concurrency,
            seconds,
            postgres_url,
        } => tsp::run(tsp::TspBench {
            backends: backends(&backend)?,
            provisions,
            concurrency,
            seconds,
            postgres_url,
        }),
        BenchCommand::Queues {
            backend,
            mut pending,
            batch,
            claims,
            postgres_url,
        } => {
            pending.sort_unstable();
            queues::run(queues::QueuesBench {
                backends: backends(&backend)?,
                pending,
                batch,
                claims,
                postgres_url,
            })
        }
    }
}

/// `--backend`: `sqlite`, `postgres` or `both`.
fn backends(backend: &str) -> Result<Vec<&'static str>, String> {
    match backend {
        "sqlite" => Ok(vec!["sqlite"]),
        "postgres" => Ok(vec!["postgres"]),
        "both" => Ok(vec!["sqlite", "postgres"]),
        _ => Err("--backend must be sqlite, postgres or both".into()),
    }
}

/// The value at quantile `q` (0..=1) of sorted samples.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// 1234567.8 → "1,234,568".
pub fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

//! The `cloudpass` command: the network's tools today, and (as the platform grows) `serve`
//! and the simulators. It wires crates together and does the IO; it decides nothing about
//! money itself.

mod bench;
mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cloudpass",
    version,
    about = "A self-hosted Cloud QuickPass-style token network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read and write ISO 8583 messages of the cloudpass network profile.
    #[command(subcommand)]
    Iso8583(cli::iso8583::Iso8583Command),
    /// The software HSM: master key check value, new master keys.
    #[command(subcommand)]
    Hsm(cli::hsm::HsmCommand),
    /// Benchmarks that print throughput and latency percentiles.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Iso8583(command) => cli::iso8583::run(command),
        Command::Hsm(command) => cli::hsm::run(command),
        Command::Bench(command) => bench::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

//! The `cloudpass` command: the network's tools today, and (as the platform grows) `serve`
//! and the simulators. It wires crates together and does the IO; it decides nothing about
//! money itself.

mod bench;
mod chaos;
mod cli;
mod wallet_phone;

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
    /// Run the network: token service, issuer host stand-in and sandbox on one HTTP port.
    Serve(cli::serve::ServeArgs),
    /// Read the token service's store: tokens on a device, a token's history.
    #[command(subcommand)]
    Tokens(cli::tokens::TokensCommand),
    /// Play the phone: make a device key pair, open a sealed card profile.
    #[command(subcommand)]
    Device(cli::device::DeviceCommand),
    /// The authorization switch alone (serve runs it too): acquirers' ISO 8583 port, linked to
    /// an issuer host, reading tokens from the platform's store.
    Switch(cli::parties::SwitchArgs),
    /// The sandbox bank alone (serve runs it too): its ISO 8583 port and its HTTP side.
    IssuerSim(cli::parties::IssuerSimArgs),
    /// The whole story on temporary storage, through the real ports, every step checked.
    Demo(cli::demo::DemoArgs),
    /// A sandbox terminal and phone: pay by tap or in an app against a running network.
    #[command(subcommand)]
    Pos(cli::pos::PosCommand),
    /// The sandbox's console: messages the sandbox bank sent.
    #[command(subcommand)]
    Sandbox(cli::sandbox::SandboxCommand),
    /// Read and write ISO 8583 messages of the cloudpass network profile.
    #[command(subcommand)]
    Iso8583(cli::iso8583::Iso8583Command),
    /// UPACP (UnionPay 全渠道) tools: sign a form, verify a form and say exactly what fails.
    #[command(subcommand)]
    Upacp(cli::upacp::UpacpCommand),
    /// The institution gateway's merchants: register one with its certificate, list, show,
    /// grant and revoke permissions.
    #[command(subcommand)]
    Merchant(cli::merchant::MerchantCommand),
    /// The software HSM: master key check value, new master keys.
    #[command(subcommand)]
    Hsm(cli::hsm::HsmCommand),
    /// Benchmarks that print throughput and latency percentiles.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The network under load while seeded faults hit it (kill -9, link faults, a locked
    /// database), then an audit of the money; non-zero naming the seed if it fails.
    Chaos(chaos::ChaosArgs),
}

/// Logs to stderr; `RUST_LOG` filters (default: info for cloudpass, warn for the rest; errors
/// only under `demo`, whose narrative is its output and whose sandbox warnings are expected).
/// `CLOUDPASS_LOG_FORMAT=json` writes one JSON object a line (time, level, target, message
/// and the event's fields) for a log collector.
fn init_logging(quiet: bool) {
    let default = if quiet {
        "error"
    } else {
        "warn,cloudpass=info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let json = std::env::var("CLOUDPASS_LOG_FORMAT").is_ok_and(|format| format == "json");
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        logs.json().flatten_event(true).try_init()
    } else {
        logs.try_init()
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Demo(_)));
    // Every HTTP client and TLS port uses rustls with the ring provider.
    cloudpass_http::tls::install_provider();
    let result = match cli.command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Tokens(command) => cli::tokens::run(command),
        Command::Device(command) => cli::device::run(command),
        Command::Pos(command) => cli::pos::run(command),
        Command::Demo(args) => cli::demo::run(args),
        Command::Switch(args) => cli::parties::switch(args),
        Command::IssuerSim(args) => cli::parties::issuer_sim(args),
        Command::Sandbox(command) => cli::sandbox::run(command),
        Command::Iso8583(command) => cli::iso8583::run(command),
        Command::Hsm(command) => cli::hsm::run(command),
        Command::Merchant(command) => cli::merchant::run(command),
        Command::Upacp(command) => cli::upacp::run(command),
        Command::Bench(command) => bench::run(command),
        Command::Chaos(args) => chaos::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

//! `cloudpass serve`: the whole network in one process on one HTTP port, on the embedded
//! SQLite store under `./cloudpass-data/` (or PostgreSQL with `DATABASE_URL`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use cloudpass::app::{self, AppConfig};
use cloudpass::{master_key, sandbox};
use cloudpass_http::tls::TlsFiles;

use super::CliResult;

#[derive(Args)]
pub struct ServeArgs {
    /// Address of the HTTP port (token service API, issuer host, sandbox).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the switch's ISO 8583 port for acquirers.
    #[arg(long, default_value = "127.0.0.1:8583")]
    iso8583_listen: SocketAddr,
    /// Address of the issuer host stand-in's ISO 8583 port.
    #[arg(long, default_value = "127.0.0.1:8584")]
    issuer_iso8583_listen: SocketAddr,
    /// Directory of the embedded database and the sandbox's key files.
    #[arg(long, default_value = "cloudpass-data")]
    data_dir: PathBuf,
    /// PEM certificate (then its chain) for TLS on the HTTP port and the switch's port.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): acquirers must present a client certificate it signed (mutual
    /// TLS on the switch's port). Needs `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    acquirer_client_ca: Option<PathBuf>,
    /// File holding the master key (64 hex digits); else $CLOUDPASS_MASTER_KEY; else the
    /// sandbox's key file in the data directory.
    #[arg(long)]
    master_key_file: Option<PathBuf>,
    /// Production: the platform alone — no sandbox seed, stand-ins or sandbox endpoints.
    /// Needs --parties, --keys-dir, --issuer-iso8583, --tls-cert/--tls-key and the master key
    /// from outside the data directory (docs/security.md, "Production").
    #[arg(long, requires_all = ["parties", "keys_dir", "issuer_iso8583", "tls_cert"])]
    no_sandbox: bool,
    /// Production: the parties file (issuers, token requestors, acquirers).
    #[arg(long, requires = "no_sandbox")]
    parties: Option<PathBuf>,
    /// Production: the key ceremony's files, outside the data directory.
    #[arg(long, requires = "no_sandbox")]
    keys_dir: Option<PathBuf>,
    /// Where the switch reaches the issuer's ISO 8583 host: required in production; in the
    /// sandbox the stand-in bank's port unless given (`cloudpass chaos` puts a fault proxy
    /// between them).
    #[arg(long)]
    issuer_iso8583: Option<SocketAddr>,
    /// The gateway's waits, in seconds, between a failed notification to a merchant's
    /// backUrl and its next send, comma-separated; a notification is sent once more than
    /// there are waits. UnionPay's schedule is the default; a joint test may want it shorter.
    #[arg(long, value_delimiter = ',', default_values_t = [60u64, 120, 240, 300])]
    notification_retry_seconds: Vec<u64>,
}

pub fn run(args: ServeArgs) -> CliResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let running_data_dir = args.data_dir.clone();
        let mut config = AppConfig::new(args.listen, args.data_dir);
        config.switch_listen = args.iso8583_listen;
        config.issuer_iso_listen = args.issuer_iso8583_listen;
        config.database_url = std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty());
        if let (Some(certificate), Some(private_key)) = (&args.tls_cert, &args.tls_key) {
            let files = TlsFiles { certificate: certificate.clone(), private_key: private_key.clone(), client_ca: None };
            config.switch_tls = Some(TlsFiles { client_ca: args.acquirer_client_ca.clone(), ..files.clone() });
            config.http_tls = Some(files);
        }
        config.master_key = master_key::provider_from(args.master_key_file.clone());
        config.production = args.no_sandbox;
        config.parties = args.parties.clone();
        config.keys_dir = args.keys_dir.clone();
        config.issuer_link_override = args.issuer_iso8583;
        config.gateway.notify.retry_delays =
            args.notification_retry_seconds.iter().map(|s| std::time::Duration::from_secs(*s)).collect();
        let running = app::start(config).await?;
        let base = running.base_url();
        println!("cloudpass serving on {base}");
        if cfg!(feature = "deliberately-broken-journal") {
            println!("  WARNING: a deliberately broken build (feature deliberately-broken-journal): the switch's journal answers before its commit");
            tracing::warn!("deliberately broken build: the switch's journal answers before its commit");
        }
        println!("  database: {}", running.database);
        println!("  master key check value: {} (from {})", running.master_check_value, running.master_key_origin);
        println!("  token service API:  {base}/tsp/v1  (OpenAPI: {base}/tsp/v1/openapi.json)");
        if running.sandbox.is_none() {
            println!("  switch (ISO 8583, acquirers): {}   issuer: {}", running.switch_addr, args.issuer_iso8583.map(|a| a.to_string()).unwrap_or_default());
            println!("  production: no sandbox; parties from {}", args.parties.as_ref().map(|p| p.display().to_string()).unwrap_or_default());
            tracing::info!(address = %base, "serving");
            let _ = tokio::signal::ctrl_c().await;
            println!("shutting down");
            running.stop().await;
            return Ok(());
        }
        println!("  issuer host (sandbox bank): {base}/sim/issuer/v1   SMS inbox: {base}/sim/issuer/v1/sms?phone=18100000000");
        println!("  notifications received: {base}/sandbox/v1/webhooks   (both need the sandbox operator's key: Bearer $(cat {}/sandbox-operator.key))", running_data_dir.display());
        println!("  switch (ISO 8583, acquirers): {}   issuer host (ISO 8583): {}", running.switch_addr, running.sandbox.as_ref().map(|s| s.issuer_iso_addr.to_string()).unwrap_or_default());
        println!("  sandbox terminals {}..{} (acquirer {}, merchant {}); try: cloudpass pos tap --amount 12.50", sandbox::TERMINALS[0], sandbox::TERMINALS[sandbox::TERMINALS.len() - 1], sandbox::ACQUIRER_ID, sandbox::MERCHANT_ID);
        println!("  sandbox API keys: issuer {}; wallets {}", sandbox::ISSUER_API_KEY, sandbox::WALLETS.iter().map(|w| format!("{} ({})", w.api_key, w.name)).collect::<Vec<_>>().join(", "));
        println!("  institution gateway (UPACP 5.1.0): {base}/gateway/api/appTransReq.do, frontTransReq.do, backTransReq.do, queryTrans.do; fileTransUrl {base}/gateway/file/; pay a TN: {base}/gateway/pay/{{tn}} (page, or POST JSON)");
        println!("    merchant {} with its key and certificate, and the platform's root and middle CA, in {}  (docs/upacp.md)", cloudpass::sandbox_upacp::SANDBOX_MER_ID, cloudpass::sandbox_upacp::dir(&running_data_dir).display());
        println!("  Cloud QuickPass app (sign up, bind a card, add it to a phone): {base}/wallet  (docs/wallet.md)");
        println!("  phone simulator (tap a device card at a POS, through the switch): {base}/phone");
        println!("  demo institution (a shop paying through the UPACP API; the payment SDK's three flows): {base}/demo-merchant  (SDK: {base}/sdk/cloudpass.js, docs/sdk.md)");
        println!("  operator console (journal, orders, tokens, notifications, merchants): {base}/console  (log in with the key in {}/sandbox-operator.key)", running_data_dir.display());
        println!("  walkthrough: docs/tsp-api.md");
        tracing::info!(address = %base, "serving");
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
        running.stop().await;
        Ok(())
    })
}

//! `cloudpass issuer-sim` and `cloudpass switch`: two of the network's parties, each in a
//! process of its own (`cloudpass serve` runs them together).
//!
//! They meet through the data directory's key-ceremony files: the issuer host writes its
//! zone PIN key under the shared zone master key to `zone-pin-key.txt`; the switch loads it
//! (checking its check value) and the sandbox terminal master key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use cloudpass::app::{self, sandbox_key};
use cloudpass::network::{self, KeyFiles, TspTokenVault};
use cloudpass::{master_key, sandbox};
use cloudpass_core::{Clock, Currency, Money, Random, SystemClock};
use cloudpass_crypto::{Hsm, OsRandom, SoftHsm};
use cloudpass_iso8583::link::Link;
use cloudpass_sim::issuer_host::{IssuerHost, IssuerHostConfig};
use cloudpass_store::{AnyStore, PoolOptions, TokenStore};
use cloudpass_switch::{StandInPolicy, Switch, SwitchConfig, SwitchParts};
use cloudpass_tsp::issuer_client::HttpIssuerClient;
use cloudpass_tsp::{Tsp, TspConfig};
use tokio::sync::watch;

use super::CliResult;

#[derive(Args)]
pub struct IssuerSimArgs {
    /// The bank's ISO 8583 port (the switch links to it).
    #[arg(long, default_value = "127.0.0.1:8584")]
    iso8583_listen: SocketAddr,
    /// The bank's HTTP port: its side of the token service's issuer protocol, its SMS inbox
    /// and its back office.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Where the token service is, for the back office's card events.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    tsp_url: String,
    /// The bank's database, its key and the key-ceremony files.
    #[arg(long, default_value = "cloudpass-data")]
    data_dir: PathBuf,
}

#[derive(Args)]
pub struct SwitchArgs {
    /// The acquirers' ISO 8583 port.
    #[arg(long, default_value = "127.0.0.1:8583")]
    listen: SocketAddr,
    /// The issuer host's ISO 8583 port.
    #[arg(long, default_value = "127.0.0.1:8584")]
    issuer: SocketAddr,
    /// The platform's data directory: its SQLite store (unless `DATABASE_URL` is set), its
    /// master key and the key-ceremony files.
    #[arg(long, default_value = "cloudpass-data")]
    data_dir: PathBuf,
    /// How long to wait for the issuer, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    issuer_timeout_ms: u64,
    /// Approve on the issuer's behalf up to this amount (CNY) when it cannot be reached;
    /// otherwise decline 91/68.
    #[arg(long)]
    stand_in_up_to: Option<String>,
    /// How long a cached token is trusted, in milliseconds: the token service runs in
    /// another process and cannot tell this one of changes.
    #[arg(long, default_value_t = 1_000)]
    vault_cache_ms: u64,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

async fn listen(address: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))
}

pub fn issuer_sim(args: IssuerSimArgs) -> CliResult {
    runtime()?.block_on(async move {
        cloudpass::data_dir::prepare(&args.data_dir)?;
        cloudpass::data_dir::precreate_private_file(&args.data_dir.join("issuer-host.sqlite"))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let random: Arc<dyn Random> = Arc::new(OsRandom);
        let host = Arc::new(
            IssuerHost::open(
                &args.data_dir.join("issuer-host.sqlite"),
                sandbox_key(&args.data_dir.join("issuer-host.key"))?,
                IssuerHostConfig {
                    issuer_id: sandbox::ISSUER_ID.into(),
                    bank_name: sandbox::ISSUER_NAME.into(),
                    shared_secret: sandbox::ISSUER_SECRET.as_bytes().to_vec(),
                    tsp_url: args.tsp_url.clone(),
                    tsp_api_key: sandbox::ISSUER_API_KEY.into(),
                    signature_tolerance_seconds: 300,
                    extra_root: None,
                    operator_key: cloudpass_core::hex::encode(&cloudpass::app::sandbox_secret(
                        &args
                            .data_dir
                            .join(cloudpass::app::SANDBOX_OPERATOR_KEY_FILE),
                        16,
                    )?),
                },
                clock,
                random,
            )
            .await
            .map_err(|e| e.to_string())?,
        );
        for card in sandbox::cards() {
            host.add_card(&card).await.map_err(|e| e.to_string())?;
        }
        let (_, check_value) = network::publish_zone_pin_key(&host, &args.data_dir)?;
        let iso = listen(args.iso8583_listen).await?;
        let http = listen(args.listen).await?;
        let (stop, stopped) = watch::channel(false);
        let iso_task = tokio::spawn(Arc::clone(&host).serve_iso8583(iso, stopped.clone()));
        let router: Router = Arc::clone(&host).router();
        let mut http_stop = stopped.clone();
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(http, router)
                .with_graceful_shutdown(async move {
                    let _ = http_stop.wait_for(|stop| *stop).await;
                })
                .await;
        });
        println!("cloudpass issuer host (sandbox bank) running");
        println!("  ISO 8583: {}", args.iso8583_listen);
        println!(
            "  HTTP (issuer protocol, SMS inbox, back office): http://{}/sim/issuer/v1",
            args.listen
        );
        println!(
            "  zone PIN key published to {} (check value {check_value})",
            args.data_dir.join(app::ZONE_PIN_KEY_FILE).display()
        );
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
        let _ = iso_task.await;
        let _ = http_task.await;
        Ok(())
    })
}

pub fn switch(args: SwitchArgs) -> CliResult {
    runtime()?.block_on(async move {
        let stand_in = match &args.stand_in_up_to {
            Some(text) => StandInPolicy::ApproveUpTo(
                Money::parse_decimal(text, Currency::CNY)
                    .map_err(|e| format!("--stand-in-up-to {text}: {e}"))?
                    .minor_units(),
            ),
            None => StandInPolicy::Decline,
        };
        let store = match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            Some(url) => AnyStore::connect(&url, PoolOptions::default()).await,
            None => {
                AnyStore::open_sqlite(
                    &args.data_dir.join("cloudpass.sqlite"),
                    PoolOptions::default(),
                )
                .await
            }
        }
        .map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())?;
        // The token service's master key: the switch reads its keys. Never a fresh one.
        let provider = master_key::provider_from(None);
        let sandbox_file = args.data_dir.join(master_key::SANDBOX_MASTER_KEY_FILE);
        if provider.is_none() && !sandbox_file.exists() {
            return Err(format!(
                "no master key: {} is missing and {} is not set (the switch uses the token service's keys)",
                sandbox_file.display(),
                master_key::MASTER_KEY_VARIABLE
            ));
        }
        let (master, _) = master_key::load(provider.as_ref(), &args.data_dir, false)?;
        let check_value = master.check_value();
        let random: Arc<dyn Random> = Arc::new(OsRandom);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let soft_hsm = Arc::new(SoftHsm::new(master, Arc::clone(&random)));
        let hsm: Arc<dyn Hsm> = Arc::clone(&soft_hsm) as Arc<dyn Hsm>;
        let tsp = Arc::new(
            Tsp::new(
                store,
                Arc::clone(&hsm),
                Arc::new(
                    HttpIssuerClient::new(Duration::from_secs(10), 4, None, Arc::clone(&clock)).map_err(|e| e.to_string())?,
                ),
                Arc::clone(&clock),
                Arc::clone(&random),
                TspConfig {
                    vault_cache_ttl: Some(Duration::from_millis(args.vault_cache_ms)),
                    ..TspConfig::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?,
        );
        let (encrypted, zpk_check) = network::read_zone_pin_key(&args.data_dir)?;
        let issuer_pin_key =
            network::load_issuer_pin_key(&soft_hsm, KeyFiles::Sandbox(&args.data_dir), &encrypted, zpk_check)?;
        let terminal_master =
            network::load_terminal_master_key(&soft_hsm, KeyFiles::Sandbox(&args.data_dir))?;
        let (stop, stopped) = watch::channel(false);
        let config = SwitchConfig {
            issuer_timeout: Duration::from_millis(args.issuer_timeout_ms),
            stand_in,
            ..SwitchConfig::default()
        };
        let link = Link::start(args.issuer, config.issuer_timeout, stopped.clone());
        let switch = Arc::new(Switch::new(SwitchParts {
            vault: Arc::new(TspTokenVault::new(Arc::clone(&tsp))),
            hsm,
            issuer: link,
            issuer_pin_key,
            store: tsp.store().clone(),
            clock,
            config,
        }));
        sandbox::register_participants(&switch, terminal_master)?;
        switch
            .restore_working_keys()
            .await
            .map_err(|e| format!("the terminals' working keys could not be read: {e}"))?;
        let listener = listen(args.listen).await?;
        let limits = cloudpass_switch::server::PortLimits::default();
        let server = tokio::spawn(cloudpass_switch::server::serve(
            Arc::clone(&switch),
            listener,
            limits,
            limits.connection_limits(),
            None,
            stopped.clone(),
        ));
        let forwarder = tokio::spawn(Arc::clone(&switch).run_store_and_forward(stopped));
        println!("cloudpass switch running");
        println!("  acquirers (ISO 8583): {}", args.listen);
        println!("  issuer host: {}", args.issuer);
        println!("  master key check value: {check_value}; zone PIN key check value {zpk_check}");
        println!(
            "  sandbox terminals {}..{}",
            sandbox::TERMINALS[0],
            sandbox::TERMINALS[sandbox::TERMINALS.len() - 1]
        );
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
        let _ = server.await;
        let _ = forwarder.await;
        Ok(())
    })
}

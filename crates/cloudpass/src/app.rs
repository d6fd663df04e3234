//! Wiring: the store, the HSM, the token service, its notification worker, the issuer host
//! stand-in and the sandbox's webhook receiver behind one HTTP port; the switch on the
//! acquirers' ISO 8583 port, linked to the issuer host's ISO 8583 port, with its
//! store-and-forward worker. `cloudpass serve` runs this; the black-box tests start it on
//! random ports with a fresh database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use cloudpass_core::{Clock, Random, SystemClock, hex};
use cloudpass_crypto::{Hsm, MasterKey, OsRandom, SoftHsm};
use cloudpass_http::HttpLimits;
use cloudpass_http::tls::TlsFiles;
use cloudpass_iso8583::link::Link;
use cloudpass_sim::issuer_host::{IssuerHost, IssuerHostConfig};
use cloudpass_sim::webhook_sink::WebhookSink;
use cloudpass_store::{AnyStore, PoolOptions, TokenStore};
use cloudpass_switch::server::PortLimits;
use cloudpass_switch::{ForwardPass, Switch, SwitchConfig, SwitchParts};
use cloudpass_tsp::issuer_client::HttpIssuerClient;
use cloudpass_tsp::notify::{Notifier, NotifierConfig};
use cloudpass_tsp::{Tsp, TspConfig};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::data_dir;
use crate::master_key::{self, KeyProvider};
use crate::network::KeyFiles;
use crate::network::{self, TspTokenVault};
use crate::registry;
use crate::sandbox;

/// Everything `serve` needs to know.
pub struct AppConfig {
    pub listen: SocketAddr,
    /// Where the embedded database, the sandbox's key files and the issuer host live.
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite file.
    pub database_url: Option<String>,
    /// For tests: a PostgreSQL schema to use as the search path.
    pub postgres_schema: Option<String>,
    /// Where the master key comes from; when absent, the sandbox's key file in the data
    /// directory (created on first start, with a warning). See `master_key`.
    pub master_key: Option<Arc<dyn KeyProvider>>,
    /// A production start (`serve --no-sandbox`): the platform alone — no sandbox seed, no
    /// stand-in bank, no sandbox endpoints; parties from `parties`, the key ceremony's files
    /// from `keys_dir`, the issuer at `issuer_link_override`; the master key from outside the
    /// data directory; TLS on both ports; webhooks to public https hosts only.
    pub production: bool,
    /// Production: the parties file (see `registry`).
    pub parties: Option<PathBuf>,
    /// Production: the key ceremony's files (`zone-master.key`, `zone-pin-key.txt`,
    /// `terminal-master.key`), outside the data directory.
    pub keys_dir: Option<PathBuf>,
    pub pool: PoolOptions,
    pub tsp: TspConfig,
    pub notifier: NotifierConfig,
    /// The institution gateway's settings (notification schedule, timeouts).
    pub gateway: cloudpass_gateway::GatewayConfig,
    /// Most HTTP requests handled at once; more wait their turn.
    pub max_requests_in_flight: usize,
    /// The switch's ISO 8583 port for acquirers.
    pub switch_listen: SocketAddr,
    /// The issuer host stand-in's ISO 8583 port (the switch links to it).
    pub issuer_iso_listen: SocketAddr,
    pub switch: SwitchConfig,
    /// The bounds of the switch's port.
    pub switch_port: PortLimits,
    /// TLS on the switch's port (with `client_ca`, acquirers present certificates).
    pub switch_tls: Option<TlsFiles>,
    /// The bounds of the HTTP port.
    pub http_limits: HttpLimits,
    /// TLS on the HTTP port.
    pub http_tls: Option<TlsFiles>,
    /// Where the switch reaches the issuer host, if not directly (tests put a fault-injecting
    /// proxy in between).
    pub issuer_link_override: Option<SocketAddr>,
    /// The time every part of the platform reads (the system's, unless a test moves a
    /// `ManualClock` by hand).
    pub clock: Arc<dyn Clock>,
    /// Where keys, tokens, nonces and identifiers come from (the operating system's, unless a
    /// test seeds its own).
    pub random: Arc<dyn Random>,
    /// Whether the queue workers poll by themselves.
    pub workers: Workers,
}

/// How the platform's queue workers run: the token service's webhook notifier, the switch's
/// store and forward, and the gateway's sweep (pay timeouts, held and unanswered payments,
/// merchant notifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// Each polls on its own schedule (what `serve` runs).
    Background,
    /// None runs by itself: a test moves its `ManualClock`, then runs one pass of each with
    /// [`RunningApp::run_workers_once`] — so "not before its time" and "nothing more
    /// happens" are checked exactly, not by waiting.
    Manual,
}

/// The switch's port unless configured otherwise.
pub const DEFAULT_SWITCH_PORT: u16 = 8583;
/// The issuer host stand-in's ISO 8583 port unless configured otherwise.
pub const DEFAULT_ISSUER_ISO_PORT: u16 = 8584;

impl AppConfig {
    /// Everything on `listen`'s address; on an ephemeral HTTP port (port 0, as tests use)
    /// the ISO 8583 ports are ephemeral too.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let ephemeral_or = |port| if listen.port() == 0 { 0 } else { port };
        Self {
            listen,
            data_dir,
            database_url: None,
            postgres_schema: None,
            master_key: None,
            production: false,
            parties: None,
            keys_dir: None,
            pool: PoolOptions::default(),
            tsp: TspConfig::default(),
            notifier: NotifierConfig::default(),
            gateway: cloudpass_gateway::GatewayConfig {
                campaigns: crate::sandbox::CAMPAIGNS.to_vec(),
                ..Default::default()
            },
            max_requests_in_flight: 512,
            switch_listen: SocketAddr::new(listen.ip(), ephemeral_or(DEFAULT_SWITCH_PORT)),
            issuer_iso_listen: SocketAddr::new(listen.ip(), ephemeral_or(DEFAULT_ISSUER_ISO_PORT)),
            switch: SwitchConfig::default(),
            switch_port: PortLimits::default(),
            switch_tls: None,
            http_limits: HttpLimits::default(),
            http_tls: None,
            issuer_link_override: None,
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
            workers: Workers::Background,
        }
    }
}

/// A running instance.
pub struct RunningApp {
    pub addr: SocketAddr,
    /// `https` when the HTTP port serves TLS.
    pub scheme: &'static str,
    /// The switch's ISO 8583 port.
    pub switch_addr: SocketAddr,
    pub switch: Arc<Switch>,
    pub tsp: Arc<Tsp>,
    /// The sandbox's stand-ins; none in production.
    pub sandbox: Option<SandboxParts>,
    pub master_check_value: String,
    /// Where the master key came from (for the operator; never the key).
    pub master_key_origin: String,

    pub database: String,
    /// With [`Workers::Manual`]: the workers, run a pass at a time.
    manual: Option<ManualWorkers>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The workers a test runs by hand.
struct ManualWorkers {
    notifier: Notifier,
    /// The gateway and the client its notifications go out with.
    gateway: Option<(Arc<cloudpass_gateway::Gateway>, reqwest::Client)>,
}

/// What one pass of the workers did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkersPass {
    /// Webhook events the token service's notifier tried to deliver.
    pub webhooks: usize,
    /// The switch's store and forward.
    pub advices: ForwardPass,
}

impl RunningApp {
    /// The sandbox's stand-in bank (an error in production, where there is none).
    pub fn stand_in_bank(&self) -> Result<&Arc<IssuerHost>, String> {
        self.sandbox
            .as_ref()
            .map(|parts| &parts.issuer_host)
            .ok_or_else(|| "this network runs without the sandbox's stand-in bank".to_owned())
    }

    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// With [`Workers::Manual`], one pass of each worker by the clock as it reads now: the
    /// webhook notifier's round, store and forward's pass, the gateway's sweep. An error when
    /// the workers run by themselves, or when a queue cannot be read.
    pub async fn run_workers_once(&self) -> Result<WorkersPass, String> {
        let Some(manual) = &self.manual else {
            return Err("the workers run by themselves (Workers::Background)".to_owned());
        };
        let webhooks = manual.notifier.round().await.map_err(|e| e.to_string())?;
        let advices = self
            .switch
            .forward_due_advices()
            .await
            .map_err(|e| e.to_string())?;
        if let Some((gateway, client)) = &manual.gateway {
            gateway.sweep(client).await;
        }
        Ok(WorkersPass { webhooks, advices })
    }

    /// Stops the server and the worker, waiting for in-flight work to finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The sandbox's stand-ins, running beside the platform.
pub struct SandboxParts {
    pub issuer_host: Arc<IssuerHost>,
    /// The issuer host's ISO 8583 port.
    pub issuer_iso_addr: SocketAddr,
    pub sink: Arc<WebhookSink>,
    /// The sandbox operator's key (Bearer) for the SMS inbox and the received notifications.
    pub operator_key: Zeroizing<String>,
}

/// Reads a key file, or writes a fresh random key to it (mode 0600) the first time.
pub fn sandbox_key(path: &Path) -> Result<MasterKey, String> {
    let bytes = sandbox_secret(path, 32)?;
    let text = Zeroizing::new(hex::encode(&bytes));
    MasterKey::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a sandbox secret (hex) of `length` bytes from a file, or writes a fresh one (mode
/// 0600) the first time: the sandbox's side of a key ceremony.
pub fn sandbox_secret(path: &Path, length: usize) -> Result<Zeroizing<Vec<u8>>, String> {
    if path.exists() {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        );
        let bytes = Zeroizing::new(
            hex::decode(text.trim())
                .map_err(|_| format!("{} must hold hex digits", path.display()))?,
        );
        if bytes.len() != length {
            return Err(format!(
                "{} must hold {length} bytes ({} hex digits)",
                path.display(),
                length * 2
            ));
        }
        return Ok(bytes);
    }
    let mut bytes = Zeroizing::new(vec![0u8; length]);
    OsRandom.fill(&mut bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let text = Zeroizing::new(hex::encode(&bytes));
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(bytes)
}

/// The sandbox operator's key: reads the SMS inbox and the received notifications.
pub const SANDBOX_OPERATOR_KEY_FILE: &str = "sandbox-operator.key";

/// The zone master key the switch and the sandbox's issuer host share.
pub const ZONE_MASTER_KEY_FILE: &str = "zone-master.key";
/// The master key of every sandbox terminal.
pub const TERMINAL_MASTER_KEY_FILE: &str = "terminal-master.key";
/// The issuer's zone PIN key under the zone master key, with its check value: what the
/// issuer hands the switch.
pub const ZONE_PIN_KEY_FILE: &str = "zone-pin-key.txt";

/// Starts everything and returns once the ports are listening.
pub async fn start(config: AppConfig) -> Result<RunningApp, String> {
    cloudpass_http::tls::install_provider();
    // A production configuration is checked whole before anything is written.
    if config.production && (config.http_tls.is_none() || config.switch_tls.is_none()) {
        return Err("a production start needs TLS on both ports (--tls-cert and --tls-key)".into());
    }
    let parties = match (config.production, &config.parties) {
        (false, _) => None,
        (true, Some(path)) => Some(registry::read(path)?),
        (true, None) => return Err("a production start needs --parties FILE".into()),
    };
    if let Some(dir) = &config.keys_dir
        && master_key::inside(dir, &config.data_dir)
    {
        return Err("the key ceremony's files must be kept outside the data directory".into());
    }
    // 0700, its files 0600, whatever the umask; the databases made before SQLite opens them
    // so that their WAL files inherit 0600.
    data_dir::prepare(&config.data_dir)?;
    data_dir::precreate_private_file(&config.data_dir.join("issuer-host.sqlite"))?;
    if config.database_url.is_none() {
        data_dir::precreate_private_file(&config.data_dir.join("cloudpass.sqlite"))?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Bound now: the phone simulator's terminal (built with the pages) links to it.
    let switch_listener = tokio::net::TcpListener::bind(config.switch_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.switch_listen))?;
    let switch_addr = switch_listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if config.http_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base_url = format!("{scheme}://{addr}");

    let (store, database) = match &config.database_url {
        Some(url) if url.starts_with("postgres") => {
            let store =
                AnyStore::connect_postgres(url, config.postgres_schema.as_deref(), config.pool)
                    .await
                    .map_err(|e| e.to_string())?;
            (store, "PostgreSQL".to_owned())
        }
        Some(url) => (
            AnyStore::connect(url, config.pool)
                .await
                .map_err(|e| e.to_string())?,
            url.clone(),
        ),
        None => {
            let path = config.data_dir.join("cloudpass.sqlite");
            (
                AnyStore::open_sqlite(&path, config.pool)
                    .await
                    .map_err(|e| e.to_string())?,
                format!("SQLite {}", path.display()),
            )
        }
    };
    store.migrate().await.map_err(|e| e.to_string())?;

    let random = Arc::clone(&config.random);
    let clock = Arc::clone(&config.clock);
    let (master, master_key_origin) = master_key::load(
        config.master_key.as_ref(),
        &config.data_dir,
        config.production,
    )?;
    let master_check_value = master.check_value().to_string();
    let soft_hsm = Arc::new(SoftHsm::new(master, Arc::clone(&random)));
    let hsm: Arc<dyn Hsm> = Arc::clone(&soft_hsm) as Arc<dyn Hsm>;
    // With TLS on, the sandbox's parties call this very port: they trust its certificate.
    let own_certificate = match &config.http_tls {
        Some(files) => Some(
            std::fs::read(&files.certificate)
                .map_err(|e| format!("cannot read {}: {e}", files.certificate.display()))?,
        ),
        None => None,
    };
    let issuers = Arc::new(
        HttpIssuerClient::new(
            Duration::from_secs(10),
            32,
            own_certificate.as_deref(),
            Arc::clone(&clock),
        )
        .map_err(|e| e.to_string())?,
    );
    let tsp = Arc::new(
        Tsp::new(
            store,
            Arc::clone(&hsm),
            issuers,
            Arc::clone(&clock),
            Arc::clone(&random),
            config.tsp.clone(),
        )
        .await
        .map_err(|error| match error {
            // The operator starting the platform needs the detail (it names no secret): a
            // stored key that does not open under this master key, say.
            cloudpass_tsp::TspError::Internal(detail) => {
                format!("the token service cannot start: {detail}")
            }
            other => other.to_string(),
        })?,
    );
    if let Some(parties) = &parties {
        registry::load_into_tsp(&tsp, parties).await?;
    }
    let (shutdown, watcher) = watch::channel(false);
    let mut tasks = Vec::new();
    let sandbox = if config.production {
        None
    } else {
        sandbox::seed_tsp(&tsp, &base_url).await?;
        let (parts, bank_port) =
            start_stand_ins(&config, &base_url, own_certificate.clone(), &clock, &random).await?;
        tasks.push(tokio::spawn(
            Arc::clone(&parts.issuer_host).serve_iso8583(bank_port, watcher.clone()),
        ));
        Some(parts)
    };

    // The institution gateway: in the sandbox, with the platform's PKI and the sandbox
    // merchant from the data directory (a production gateway needs merchants registered, not
    // built yet).
    let gateway = match &sandbox {
        Some(parts) => {
            let now = clock.now_millis().div_euclid(1_000);
            let (signer, merchants) = crate::sandbox_upacp::load_or_create(&config.data_dir, now)?;
            Some(Arc::new(cloudpass_gateway::Gateway::new(
                cloudpass_gateway::GatewayParts {
                    store: tsp.store().clone(),
                    merchants,
                    signer,
                    payer: Arc::new(crate::sandbox_upacp::SandboxPayer::new(Arc::clone(
                        &parts.issuer_host,
                    ))),
                    secrets: Arc::new(crate::sandbox_upacp::SealedBy(Arc::clone(&tsp))),
                    clock: Arc::clone(&clock),
                    random: Arc::clone(&random),
                    config: config.gateway.clone(),
                },
            )))
        }
        None => None,
    };
    let observed = crate::observe::Observed::new(tsp.store().clone(), Arc::clone(&clock));
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::observe::router(Arc::clone(&observed)))
        // The bound applies to the token service only: its requests call the stand-ins on this
        // same port, which must never wait behind them.
        .merge(cloudpass_tsp::http::router(Arc::clone(&tsp)).layer(
            tower::limit::ConcurrencyLimitLayer::new(config.max_requests_in_flight),
        ))
        .merge(match &sandbox {
            Some(parts) => Arc::clone(&parts.issuer_host)
                .router()
                .merge(Arc::clone(&parts.sink).router()),
            None => Router::new(),
        })
        .merge(match &gateway {
            Some(gateway) => cloudpass_gateway::http::router(Arc::clone(gateway)),
            None => Router::new(),
        })
        // The Cloud QuickPass app's pages and the phone simulator, beside the sandbox bank
        // their cards come from.
        // The operator console, behind the sandbox operator's key.
        .merge(match &sandbox {
            Some(parts) => cloudpass_console::router(Arc::new(cloudpass_console::Console::new(
                tsp.store().clone(),
                gateway.clone(),
                parts.operator_key.clone(),
                Arc::clone(&clock),
                Arc::clone(&random),
            ))),
            None => Router::new(),
        })
        // The demo institution: a shop that reaches the gateway over HTTP like any other.
        .merge(match &gateway {
            Some(_) => cloudpass_sim::demo_shop::router(Arc::new(crate::sandbox_upacp::demo_shop(
                &config.data_dir,
                &base_url,
                Arc::clone(&clock),
                Arc::clone(&random),
            )?)),
            None => Router::new(),
        })
        .merge(match &sandbox {
            Some(_) => wallet_and_phones(
                &config,
                &tsp,
                gateway.clone(),
                switch_addr,
                &clock,
                &random,
                &watcher,
            )?,
            None => Router::new(),
        });
    // Every error in JSON, including the framework's own (404, 405, 413, bad path values).
    let router = cloudpass_http::with_json_errors(router);

    let http_tls = match &config.http_tls {
        Some(files) => Some(cloudpass_http::tls::acceptor(files).map_err(|e| e.to_string())?),
        None => None,
    };
    let http_connections = config.http_limits.connection_limits();
    observed.watch_connections("http", Arc::clone(&http_connections));
    tasks.push(tokio::spawn(cloudpass_http::serve(
        listener,
        router,
        config.http_limits,
        http_connections,
        http_tls,
        watcher.clone(),
    )));
    let mut notifier_config = config.notifier;
    notifier_config.extra_root = own_certificate;
    // Production delivers to public https receivers only.
    notifier_config.public_https_only |= config.production;
    let notifier = Notifier::new(Arc::clone(&tsp), notifier_config).map_err(|e| e.to_string())?;
    let mut manual = match config.workers {
        Workers::Background => {
            tasks.push(tokio::spawn(notifier.run(watcher.clone())));
            None
        }
        Workers::Manual => Some(ManualWorkers {
            notifier,
            gateway: None,
        }),
    };

    // The key ceremony (see `network`): the issuer publishes its zone PIN key under the zone
    // master key (the sandbox's bank does it here; a real bank hands over its file); the
    // switch loads it, and the terminal master key.
    let keys = match (&sandbox, &config.keys_dir) {
        (Some(parts), _) => {
            network::publish_zone_pin_key(&parts.issuer_host, &config.data_dir)?;
            KeyFiles::Sandbox(&config.data_dir)
        }
        (None, Some(dir)) => KeyFiles::Production(dir),
        (None, None) => return Err("a production start needs --keys-dir DIR".into()),
    };
    let (zone_pin_key, check_value) = network::read_zone_pin_key(keys.dir())?;
    let issuer_pin_key = network::load_issuer_pin_key(&soft_hsm, keys, &zone_pin_key, check_value)?;
    let terminal_master = network::load_terminal_master_key(&soft_hsm, keys)?;
    let issuer_address = match (&sandbox, config.issuer_link_override) {
        (_, Some(address)) => address,
        (Some(parts), None) => parts.issuer_iso_addr,
        (None, None) => return Err("a production start needs --issuer-iso8583 ADDR".into()),
    };
    let link = Link::start(
        issuer_address,
        config.switch.issuer_timeout,
        watcher.clone(),
    );
    let switch = Arc::new(Switch::new(SwitchParts {
        vault: Arc::new(TspTokenVault::new(Arc::clone(&tsp))),
        hsm: Arc::clone(&hsm),
        issuer: link,
        issuer_pin_key,
        store: tsp.store().clone(),
        clock: Arc::clone(&clock),
        config: config.switch,
    }));
    match &parties {
        Some(parties) => registry::register_acquirers(&switch, parties, terminal_master)?,
        None => sandbox::register_participants(&switch, terminal_master)?,
    }
    let restored = switch
        .restore_working_keys()
        .await
        .map_err(|e| format!("the terminals' working keys could not be read: {e}"))?;
    tracing::info!(
        terminals = restored,
        "switch: working keys restored from the last sign-ons"
    );
    observed.set_switch(Arc::clone(&switch));
    let switch_connections = config.switch_port.connection_limits();
    observed.watch_connections("switch", Arc::clone(&switch_connections));
    tasks.push(tokio::spawn(cloudpass_switch::server::serve(
        Arc::clone(&switch),
        switch_listener,
        config.switch_port,
        switch_connections,
        match &config.switch_tls {
            Some(files) => Some(cloudpass_http::tls::acceptor(files).map_err(|e| e.to_string())?),
            None => None,
        },
        watcher.clone(),
    )));
    if manual.is_none() {
        tasks.push(tokio::spawn(
            Arc::clone(&switch).run_store_and_forward(watcher.clone()),
        ));
    }
    if let Some(gateway) = &gateway {
        let terminal =
            crate::sandbox_upacp::gateway_terminal(&config.data_dir, &switch, &clock, &random)
                .await?;
        gateway.set_acquirer(terminal);
        match &mut manual {
            None => tasks.push(tokio::spawn(
                Arc::clone(gateway).run_notifier(watcher.clone()),
            )),
            Some(manual) => {
                let client = gateway
                    .notification_client()
                    .map_err(|e| format!("no HTTP client for notifications: {e}"))?;
                manual.gateway = Some((Arc::clone(gateway), client));
            }
        }
    }
    Ok(RunningApp {
        addr,
        scheme,
        switch_addr,
        switch,
        tsp,
        sandbox,
        master_check_value,
        master_key_origin,
        database,
        manual,
        shutdown,
        tasks,
    })
}

/// The sandbox's stand-ins: the operator's key, the bank (its books seeded with the test
/// cards) and its ISO 8583 port's listener, the webhook receivers.
/// The Cloud QuickPass app (as the sandbox's Cloud QuickPass token requestor) and the phone
/// simulator whose handsets it signs in on, kept under `<data-dir>/handsets/`.
fn wallet_and_phones(
    config: &AppConfig,
    tsp: &Arc<Tsp>,
    gateway: Option<Arc<cloudpass_gateway::Gateway>>,
    switch_addr: std::net::SocketAddr,
    clock: &Arc<dyn Clock>,
    random: &Arc<dyn Random>,
    watcher: &watch::Receiver<bool>,
) -> Result<Router, String> {
    let handsets = Arc::new(
        cloudpass_sim::handset::Handsets::open(Some(&config.data_dir.join("handsets")))
            .map_err(|e| e.to_string())?,
    );
    let wallet = Arc::new(cloudpass_wallet::Wallet::new(
        Arc::clone(tsp),
        cloudpass_wallet::AppIdentity {
            token_requestor_id: sandbox::QUICKPASS_TOKEN_REQUESTOR.into(),
            webhook_secret: Zeroizing::new(sandbox::QUICKPASS_WEBHOOK_SECRET.as_bytes().to_vec()),
        },
        Arc::new(crate::sandbox_phone::HandsetChannel {
            handsets: Arc::clone(&handsets),
            random: Arc::clone(random),
        }),
        gateway,
        Arc::clone(clock),
        Arc::clone(random),
    ));
    let simulator = crate::sandbox_phone::simulator(
        &config.data_dir,
        switch_addr,
        handsets,
        Arc::clone(&wallet),
        Arc::clone(clock),
        Arc::clone(random),
        watcher.clone(),
    )?;
    Ok(cloudpass_wallet::http::router(wallet)
        .merge(cloudpass_sim::phone_page::router(Arc::new(simulator))))
}

async fn start_stand_ins(
    config: &AppConfig,
    base_url: &str,
    own_certificate: Option<Vec<u8>>,
    clock: &Arc<dyn Clock>,
    random: &Arc<dyn Random>,
) -> Result<(SandboxParts, tokio::net::TcpListener), String> {
    // The sandbox operator's key (SMS inbox, received notifications): random per data
    // directory, so that reading the sandbox's secrets takes access to the directory.
    let operator_key = Zeroizing::new(hex::encode(&sandbox_secret(
        &config.data_dir.join(SANDBOX_OPERATOR_KEY_FILE),
        16,
    )?));
    let issuer_host = Arc::new(
        IssuerHost::open(
            &config.data_dir.join("issuer-host.sqlite"),
            sandbox_key(&config.data_dir.join("issuer-host.key"))?,
            IssuerHostConfig {
                issuer_id: sandbox::ISSUER_ID.into(),
                bank_name: sandbox::ISSUER_NAME.into(),
                shared_secret: sandbox::ISSUER_SECRET.as_bytes().to_vec(),
                tsp_url: base_url.to_owned(),
                tsp_api_key: sandbox::ISSUER_API_KEY.into(),
                signature_tolerance_seconds: 300,
                extra_root: own_certificate,
                operator_key: operator_key.to_string(),
            },
            Arc::clone(clock),
            Arc::clone(random),
        )
        .await
        .map_err(|e| e.to_string())?,
    );
    for card in sandbox::cards() {
        issuer_host
            .add_card(&card)
            .await
            .map_err(|e| e.to_string())?;
    }
    let sink = Arc::new(WebhookSink::new(
        sandbox::webhook_secrets(),
        Arc::clone(clock),
        operator_key.to_string(),
    ));
    let listener = tokio::net::TcpListener::bind(config.issuer_iso_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.issuer_iso_listen))?;
    let issuer_iso_addr = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((
        SandboxParts {
            issuer_host,
            issuer_iso_addr,
            sink,
            operator_key,
        },
        listener,
    ))
}

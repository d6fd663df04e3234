//! Wiring: the store, the HSM, the token service, its notification worker, the issuer host
//! stand-in and the sandbox's webhook receiver, behind one HTTP port. `cloudpass serve` runs
//! this; the black-box tests start it on a random port with a fresh database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use cloudpass_core::{Clock, Random, SystemClock};
use cloudpass_crypto::{Hsm, MasterKey, OsRandom, SoftHsm};
use cloudpass_sim::issuer_host::{IssuerHost, IssuerHostConfig};
use cloudpass_sim::webhook_sink::WebhookSink;
use cloudpass_store::{AnyStore, PoolOptions, TokenStore};
use cloudpass_tsp::issuer_client::HttpIssuerClient;
use cloudpass_tsp::notify::{Notifier, NotifierConfig};
use cloudpass_tsp::{Tsp, TspConfig};
use tokio::sync::watch;

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
    /// The master key; when absent, the sandbox's key file in the data directory (created
    /// on first start).
    pub master_key: Option<MasterKey>,
    pub pool: PoolOptions,
    pub tsp: TspConfig,
    pub notifier: NotifierConfig,
    /// Most HTTP requests handled at once; more wait their turn.
    pub max_requests_in_flight: usize,
}

impl AppConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            database_url: None,
            postgres_schema: None,
            master_key: None,
            pool: PoolOptions::default(),
            tsp: TspConfig::default(),
            notifier: NotifierConfig::default(),
            max_requests_in_flight: 512,
        }
    }
}

/// A running instance.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub tsp: Arc<Tsp>,
    pub sink: Arc<WebhookSink>,
    pub issuer_host: Arc<IssuerHost>,
    pub master_check_value: String,
    pub database: String,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningApp {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and the worker, waiting for in-flight work to finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Reads a key file, or writes a fresh random key to it (mode 0600) the first time.
fn sandbox_key(path: &Path) -> Result<MasterKey, String> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return MasterKey::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let key = MasterKey::generate(&OsRandom);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, key.to_hex().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}

/// Starts everything and returns once the port is listening.
pub async fn start(config: AppConfig) -> Result<RunningApp, String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let base_url = format!("http://{addr}");

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

    let random: Arc<dyn Random> = Arc::new(OsRandom);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let master = match config.master_key {
        Some(key) => key,
        None => sandbox_key(&config.data_dir.join("master.key"))?,
    };
    let master_check_value = master.check_value().to_string();
    let hsm: Arc<dyn Hsm> = Arc::new(SoftHsm::new(master, Arc::clone(&random)));
    let issuers =
        Arc::new(HttpIssuerClient::new(Duration::from_secs(10), 32).map_err(|e| e.to_string())?);
    let tsp = Arc::new(
        Tsp::new(
            store,
            hsm,
            issuers,
            Arc::clone(&clock),
            Arc::clone(&random),
            config.tsp,
        )
        .await
        .map_err(|e| e.to_string())?,
    );
    sandbox::seed_tsp(&tsp, &base_url).await?;

    let issuer_host = Arc::new(
        IssuerHost::open(
            &config.data_dir.join("issuer-host.sqlite"),
            sandbox_key(&config.data_dir.join("issuer-host.key"))?,
            IssuerHostConfig {
                issuer_id: sandbox::ISSUER_ID.into(),
                bank_name: sandbox::ISSUER_NAME.into(),
                shared_secret: sandbox::ISSUER_SECRET.as_bytes().to_vec(),
                tsp_url: base_url.clone(),
                tsp_api_key: sandbox::ISSUER_API_KEY.into(),
                signature_tolerance_seconds: 300,
            },
            Arc::clone(&clock),
            Arc::clone(&random),
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
        Arc::clone(&clock),
    ));

    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        // The bound applies to the token service only: its requests call the stand-ins on this
        // same port, which must never wait behind them.
        .merge(cloudpass_tsp::http::router(Arc::clone(&tsp)).layer(
            tower::limit::ConcurrencyLimitLayer::new(config.max_requests_in_flight),
        ))
        .merge(Arc::clone(&issuer_host).router())
        .merge(Arc::clone(&sink).router());

    let (shutdown, watcher) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut server_shutdown = watcher.clone();
    tasks.push(tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(error = %error, "HTTP server stopped");
        }
    }));
    let notifier = Notifier::new(Arc::clone(&tsp), config.notifier).map_err(|e| e.to_string())?;
    tasks.push(tokio::spawn(notifier.run(watcher)));
    Ok(RunningApp {
        addr,
        tsp,
        sink,
        issuer_host,
        master_check_value,
        database,
        shutdown,
        tasks,
    })
}

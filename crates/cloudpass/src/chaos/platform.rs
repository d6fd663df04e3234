//! The parties under test as processes of their own, each started, killed with SIGKILL and
//! started again on the same data directory:
//!
//! - the platform (`cloudpass serve`: token service, gateway, switch and the sandbox's
//!   in-process bank, which serves the token service's issuer calls);
//! - the issuer host (`cloudpass issuer-sim`): the bank the switch reaches over ISO 8583,
//!   through the issuer link's fault proxy. It works on the same ledger file as the
//!   platform's in-process bank, as two front ends of one bank would.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::shop;

/// Where the parties listen, and where the switch reaches the bank.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: SocketAddr,
    pub switch: SocketAddr,
    /// The platform's in-process bank's ISO 8583 port (nothing is linked to it).
    pub platform_bank: SocketAddr,
    /// The issuer host's ISO 8583 port.
    pub bank: SocketAddr,
    /// The issuer host's HTTP port.
    pub bank_http: SocketAddr,
    /// The issuer link's fault proxy, in front of `bank`.
    pub issuer_link: SocketAddr,
}

/// Lowest port this run listens on.
const LOWEST_PORT: u16 = 10_000;

/// A free loopback port below the kernel's ephemeral range. A killed process is started
/// again on its port, and a port from the ephemeral range may meanwhile be handed to some
/// outgoing connection (the load's, another run's): seed 10, run beside two others, lost its
/// platform that way ("address already in use" for 180 s). Ports below the range are only
/// ever taken by an explicit bind; the search starts at a point of its own per call, so two
/// runs side by side seldom try the same one.
pub fn free_port() -> Result<SocketAddr, String> {
    let highest = ephemeral_range_start()
        .saturating_sub(1)
        .max(LOWEST_PORT + 1);
    let span = u32::from(highest - LOWEST_PORT);
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    (0..span)
        .filter_map(|offset| u16::try_from((start % span + offset) % span).ok())
        .map(|offset| LOWEST_PORT + offset)
        .find_map(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok())
        .and_then(|listener| listener.local_addr().ok())
        .ok_or_else(|| format!("no free port between {LOWEST_PORT} and {highest}"))
}

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Which party a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Platform,
    Bank,
}

pub struct Process {
    pub party: Party,
    executable: PathBuf,
    arguments: Vec<String>,
    database_url: Option<String>,
    child: Option<Child>,
    log: PathBuf,
    pub starts: u32,
}

impl Process {
    /// The platform on `data_dir` and `database_url` (none: SQLite in `data_dir`), logging
    /// to `log`; its switch reaches the issuer host through the issuer link.
    pub fn platform(
        data_dir: &Path,
        log: &Path,
        database_url: Option<String>,
        ports: Ports,
    ) -> Result<Process, String> {
        let arguments = vec![
            "serve".to_owned(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--listen".to_owned(),
            ports.http.to_string(),
            "--iso8583-listen".to_owned(),
            ports.switch.to_string(),
            "--issuer-iso8583-listen".to_owned(),
            ports.platform_bank.to_string(),
            "--issuer-iso8583".to_owned(),
            ports.issuer_link.to_string(),
            // A failed notification is sent again within half a minute, not UnionPay's
            // twelve: the audit waits for every notification.
            "--notification-retry-seconds".to_owned(),
            shop::NOTIFICATION_RETRY_SECONDS.to_owned(),
        ];
        Process::new(Party::Platform, arguments, database_url, log)
    }

    /// The issuer host on the platform's `data_dir` (its ledger and key files), logging to
    /// `log`.
    pub fn bank(data_dir: &Path, log: &Path, ports: Ports) -> Result<Process, String> {
        let arguments = vec![
            "issuer-sim".to_owned(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--iso8583-listen".to_owned(),
            ports.bank.to_string(),
            "--listen".to_owned(),
            ports.bank_http.to_string(),
            "--tsp-url".to_owned(),
            format!("http://{}", ports.http),
        ];
        Process::new(Party::Bank, arguments, None, log)
    }

    fn new(
        party: Party,
        arguments: Vec<String>,
        database_url: Option<String>,
        log: &Path,
    ) -> Result<Process, String> {
        Ok(Process {
            party,
            executable: std::env::current_exe()
                .map_err(|e| format!("cannot find this program: {e}"))?,
            arguments,
            database_url,
            child: None,
            log: log.to_owned(),
            starts: 0,
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Notes a line in the process's log (what the harness did, between its output).
    pub fn note(&self, line: &str) {
        if let Ok(mut log) = OpenOptions::new().create(true).append(true).open(&self.log) {
            let _ = writeln!(log, "=== chaos: {line}");
        }
    }

    pub fn start(&mut self) -> Result<(), String> {
        if self.is_running() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let errors = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.executable);
        command
            .args(&self.arguments)
            .env(
                "RUST_LOG",
                std::env::var("CHAOS_PLATFORM_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("CLOUDPASS_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(errors);
        match &self.database_url {
            Some(url) => command.env("DATABASE_URL", url),
            None => command.env_remove("DATABASE_URL"),
        };
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start the {:?}: {e}", self.party))?;
        self.starts += 1;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the process is alive (it may not be ready yet).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL: no shutdown, no flush; what was not on disk is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until `GET http://{address}/readyz` answers 200 (the platform: its database
    /// answers and its switch's issuer link is up), or `within` passes.
    pub async fn wait_http_ready(
        &mut self,
        http: &reqwest::Client,
        address: SocketAddr,
        within: Duration,
    ) -> bool {
        let deadline = Instant::now() + within;
        let url = format!("http://{address}/readyz");
        while Instant::now() < deadline {
            if !self.is_running() {
                return false;
            }
            let answered = http.get(&url).timeout(Duration::from_secs(2)).send().await;
            if answered.is_ok_and(|answer| answer.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Waits until `address` takes connections (the issuer host: its ISO 8583 port opens
    /// once its ledger is open), or `within` passes.
    pub async fn wait_port_ready(&mut self, address: SocketAddr, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.is_running() {
                return false;
            }
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

//! The platform under test as a process of its own (`cloudpass serve`: token service,
//! gateway, switch and the sandbox bank), started, killed with SIGKILL and started again on
//! the same data directory. Its switch reaches the bank through a fault proxy.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the platform listens, and where its switch reaches the bank.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: SocketAddr,
    pub switch: SocketAddr,
    pub bank: SocketAddr,
    /// The issuer link's fault proxy, in front of `bank`.
    pub issuer_link: SocketAddr,
}

/// A free loopback port (taken from the kernel and let go).
pub fn free_port() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

pub struct Platform {
    executable: PathBuf,
    data_dir: PathBuf,
    database_url: Option<String>,
    pub ports: Ports,
    child: Option<Child>,
    log: PathBuf,
    pub starts: u32,
}

impl Platform {
    /// The platform on `data_dir` (created by its first start), logging to `log`.
    pub fn new(
        data_dir: &Path,
        log: &Path,
        database_url: Option<String>,
        ports: Ports,
    ) -> Result<Platform, String> {
        Ok(Platform {
            executable: std::env::current_exe()
                .map_err(|e| format!("cannot find this program: {e}"))?,
            data_dir: data_dir.to_owned(),
            database_url,
            ports,
            child: None,
            log: log.to_owned(),
            starts: 0,
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Notes a line in the platform's log (what the harness did, between its output).
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
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.ports.http.to_string())
            .arg("--iso8583-listen")
            .arg(self.ports.switch.to_string())
            .arg("--issuer-iso8583-listen")
            .arg(self.ports.bank.to_string())
            .arg("--issuer-iso8583")
            .arg(self.ports.issuer_link.to_string())
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
            .map_err(|e| format!("cannot start the platform: {e}"))?;
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

    /// Waits until `GET /readyz` answers 200 (the database answers and the switch's issuer
    /// link is up), or `within` passes.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let url = format!("http://{}/readyz", self.ports.http);
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
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.kill();
    }
}

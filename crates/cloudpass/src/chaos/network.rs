//! The network under test: the platform and the issuer host, each a process of its own,
//! started, killed and brought back as the faults say.

use std::path::Path;
use std::time::{Duration, Instant};

use super::database::PlatformStore;
use super::platform::{Party, Ports, Process};
use crate::cli::CliResult;

pub struct Network {
    pub platform: Process,
    pub bank: Process,
    pub ports: Ports,
    http: reqwest::Client,
}

/// How long one start has to become ready.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a party has to come back, start after start, before the run gives up on it.
const COME_BACK_WITHIN: Duration = Duration::from_secs(180);

impl Network {
    /// Starts the issuer host on `data_dir` (it writes the bank's keys and opens its
    /// ledger), then the platform linked to it through the issuer link; each logs to a file
    /// of its own in `logs`.
    pub async fn launch(
        data_dir: &Path,
        logs: &Path,
        store: &PlatformStore,
        ports: Ports,
    ) -> Result<Network, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let mut network = Network {
            platform: Process::platform(data_dir, &logs.join("platform.log"), store.url(), ports)?,
            bank: Process::bank(data_dir, &logs.join("bank.log"), ports)?,
            ports,
            http: reqwest::Client::new(),
        };
        network.bring_back(Party::Bank).await?;
        network.bring_back(Party::Platform).await?;
        Ok(network)
    }

    fn process(&mut self, party: Party) -> &mut Process {
        match party {
            Party::Platform => &mut self.platform,
            Party::Bank => &mut self.bank,
        }
    }

    /// Notes a line in both logs, so either shows what the harness did and when.
    pub fn note(&self, line: &str) {
        self.platform.note(line);
        self.bank.note(line);
    }

    /// SIGKILL of `party`.
    pub fn kill(&mut self, party: Party) {
        self.process(party).kill();
    }

    /// Starts `party` without waiting for it (the next fault may find it starting).
    pub fn start_party(&mut self, party: Party) -> CliResult {
        self.process(party).start()
    }

    /// Starts `party` until it is ready, as a supervisor would: a start can fail while a
    /// database is locked or the disk is full, so it is started again until `COME_BACK_WITHIN`
    /// has passed.
    pub async fn bring_back(&mut self, party: Party) -> CliResult {
        let deadline = Instant::now() + COME_BACK_WITHIN;
        while Instant::now() < deadline {
            self.start_party(party)?;
            let ready = match party {
                Party::Platform => {
                    let (http, address) = (self.http.clone(), self.ports.http);
                    self.platform
                        .wait_http_ready(&http, address, READY_WITHIN)
                        .await
                }
                Party::Bank => {
                    let address = self.ports.bank;
                    self.bank.wait_port_ready(address, READY_WITHIN).await
                }
            };
            if ready {
                return Ok(());
            }
            self.kill(party);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let process = self.process(party);
        Err(format!(
            "the {:?} did not come back within {} s; see {}",
            process.party,
            COME_BACK_WITHIN.as_secs(),
            process.log_path().display()
        ))
    }

    /// Starts again a party that died of a fault (a start that met a locked database), as a
    /// supervisor would.
    pub fn restart_the_dead(&mut self) -> CliResult {
        for party in [Party::Bank, Party::Platform] {
            if !self.process(party).is_running() {
                self.start_party(party)?;
            }
        }
        Ok(())
    }

    /// Both parties up and ready (the platform's readiness needs the issuer link).
    pub async fn all_ready(&mut self) -> CliResult {
        self.bring_back(Party::Bank).await?;
        self.bring_back(Party::Platform).await
    }

    pub fn kill_all(&mut self) {
        self.platform.kill();
        self.bank.kill();
    }
}

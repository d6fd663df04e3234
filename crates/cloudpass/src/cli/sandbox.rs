//! `cloudpass sandbox …`: the sandbox's console in a terminal.

use std::path::PathBuf;

use clap::Subcommand;
use cloudpass_sim::issuer_host::IssuerHost;

use super::CliResult;

#[derive(Subcommand)]
pub enum SandboxCommand {
    /// The text messages the sandbox bank sent to a phone (step-up codes), newest first.
    Sms {
        #[arg(long, default_value = "18100000000")]
        phone: String,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
}

pub fn run(command: SandboxCommand) -> CliResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        match command {
            SandboxCommand::Sms { phone, data_dir } => {
                let path = data_dir.join("issuer-host.sqlite");
                if !path.exists() {
                    return Err(format!(
                        "no sandbox bank at {} (start `cloudpass serve` first)",
                        path.display()
                    ));
                }
                let messages = IssuerHost::read_sms(&path, &phone)
                    .await
                    .map_err(|e| e.to_string())?;
                if messages.is_empty() {
                    println!("no messages to {phone}");
                }
                for message in messages {
                    println!("{}  {}  {}", message.sent_at, message.phone, message.text);
                }
                Ok(())
            }
        }
    })
}

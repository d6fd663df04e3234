//! `cloudpass tokens …`: operators' read-only views of the token service's store (the same
//! database `serve` uses). Shows card and token numbers by their last four digits only.

use std::path::PathBuf;

use clap::Subcommand;
use cloudpass_store::{AnyStore, PoolOptions, TokenStore};

use super::CliResult;

#[derive(Subcommand)]
pub enum TokensCommand {
    /// The tokens on a device (by the wallet's device ID).
    List {
        #[arg(long)]
        device: String,
        /// The wallet's token requestor ID, if several wallets use the same device ID.
        #[arg(long)]
        wallet: Option<String>,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
    /// A token's history.
    History {
        token_id: String,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: PathBuf,
    },
}

/// The platform's store: `DATABASE_URL`, or the SQLite file `serve` made in `data_dir`.
pub(crate) async fn open(data_dir: &std::path::Path) -> Result<AnyStore, String> {
    let store = match std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    {
        Some(url) => AnyStore::connect(&url, PoolOptions::default()).await,
        None => {
            let path = data_dir.join("cloudpass.sqlite");
            if !path.exists() {
                return Err(format!(
                    "no database at {} (start `cloudpass serve` first, or set DATABASE_URL)",
                    path.display()
                ));
            }
            AnyStore::open_sqlite(&path, PoolOptions::default()).await
        }
    };
    store.map_err(|e| e.to_string())
}

fn last4(number: &str) -> &str {
    number.get(number.len().saturating_sub(4)..).unwrap_or("")
}

pub fn run(command: TokensCommand) -> CliResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        match command {
            TokensCommand::List {
                device,
                wallet,
                data_dir,
            } => {
                let store = open(&data_dir).await?;
                let wallets = match wallet {
                    Some(wallet) => vec![wallet],
                    None => store
                        .token_requestors()
                        .await
                        .map_err(|e| e.to_string())?
                        .into_iter()
                        .map(|tr| tr.id)
                        .collect(),
                };
                let mut found = false;
                for wallet in wallets {
                    let Some(row) = store
                        .device_by_external_id(&wallet, &device)
                        .await
                        .map_err(|e| e.to_string())?
                    else {
                        continue;
                    };
                    found = true;
                    println!(
                        "device {} ({}, {}) of wallet {wallet}: {}",
                        row.external_id, row.kind, row.brand, row.state
                    );
                    println!(
                        "  {:<26} {:<6} {:<10} {:<8} {:<6} {:<26} status reason",
                        "token", "last4", "status", "default", "card", "holds"
                    );
                    for token in store
                        .tokens_by_device(&row.id)
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        let card = store
                            .card(&token.card_id)
                            .await
                            .map_err(|e| e.to_string())?;
                        let holds = cloudpass_core::lifecycle::Holds::from_bits(
                            u8::try_from(token.holds).unwrap_or(0),
                        )
                        .map(|h| h.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(","))
                        .unwrap_or_default();
                        println!(
                            "  {:<26} {:<6} {:<10} {:<8} {:<6} {:<26} {}",
                            token.id,
                            last4(&token.token_number),
                            token.status,
                            if token.is_default { "yes" } else { "" },
                            card.map(|c| c.pan_last4).unwrap_or_default(),
                            holds,
                            token.status_reason.unwrap_or_default()
                        );
                    }
                }
                if found {
                    Ok(())
                } else {
                    Err(format!("no device {device}"))
                }
            }
            TokensCommand::History { token_id, data_dir } => {
                let store = open(&data_dir).await?;
                if store
                    .token(&token_id)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_none()
                {
                    return Err(format!("no token {token_id}"));
                }
                for entry in store.history(&token_id).await.map_err(|e| e.to_string())? {
                    println!(
                        "{}  {:<22} {:<8} {:>9} → {:<9} {} {}",
                        entry.at,
                        entry.event,
                        entry.channel,
                        entry.from_status.unwrap_or_default(),
                        entry.to_status,
                        entry.reason.unwrap_or_default(),
                        entry.detail.unwrap_or_default()
                    );
                }
                Ok(())
            }
        }
    })
}

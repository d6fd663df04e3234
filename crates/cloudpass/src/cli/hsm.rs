//! `cloudpass hsm …`: the operator's view of the master key (only ever its check value).

use std::sync::Arc;

use clap::Subcommand;
use cloudpass_crypto::{Hsm, MasterKey, OsRandom, SoftHsm};

use super::CliResult;
use cloudpass::master_key::KeyProvider;

pub use cloudpass::master_key::MASTER_KEY_VARIABLE;

#[derive(Subcommand)]
pub enum HsmCommand {
    /// Print the check value of the master key in $CLOUDPASS_MASTER_KEY or --master-key-file.
    CheckValue {
        /// File holding the master key as 64 hex digits.
        #[arg(long)]
        master_key_file: Option<std::path::PathBuf>,
    },
    /// Generate a new random master key into a file (created with mode 0600; never printed).
    GenerateMasterKey {
        /// Where to write the key; the file must not exist.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Re-wrap every stored key under a new master key, in one transaction. Stop the
    /// platform first; start it again with the new key. The store is DATABASE_URL, else the
    /// SQLite file in --data-dir.
    RotateMasterKey {
        /// The current master key (else $CLOUDPASS_MASTER_KEY; else the sandbox's key file
        /// in the data directory).
        #[arg(long)]
        master_key_file: Option<std::path::PathBuf>,
        /// The new master key (make one with `cloudpass hsm generate-master-key`).
        #[arg(long)]
        new_master_key_file: std::path::PathBuf,
        #[arg(long, default_value = "cloudpass-data")]
        data_dir: std::path::PathBuf,
    },
}

/// The master key from `--master-key-file` or the environment (the same providers `serve`
/// uses).
fn given_master_key(file: Option<std::path::PathBuf>) -> Result<MasterKey, String> {
    cloudpass::master_key::provider_from(file)
        .ok_or_else(|| format!("set {MASTER_KEY_VARIABLE} or pass --master-key-file"))?
        .master_key()
}

pub fn run(command: HsmCommand) -> CliResult {
    match command {
        HsmCommand::CheckValue { master_key_file } => {
            let master = given_master_key(master_key_file)?;
            let hsm = SoftHsm::new(master, Arc::new(OsRandom));
            println!("master key check value: {}", hsm.master_check_value());
            Ok(())
        }
        HsmCommand::GenerateMasterKey { out } => {
            use std::io::Write;
            #[cfg(unix)]
            use std::os::unix::fs::OpenOptionsExt;
            let master = MasterKey::generate(&OsRandom);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            options.mode(0o600);
            let mut file = options
                .open(&out)
                .map_err(|error| format!("cannot create {}: {error}", out.display()))?;
            file.write_all(master.to_hex().as_bytes())
                .map_err(|error| format!("cannot write {}: {error}", out.display()))?;
            println!(
                "wrote a new master key to {} (check value {})",
                out.display(),
                master.check_value()
            );
            Ok(())
        }
        HsmCommand::RotateMasterKey {
            master_key_file,
            new_master_key_file,
            data_dir,
        } => rotate(master_key_file, &new_master_key_file, &data_dir),
    }
}

fn rotate(
    current: Option<std::path::PathBuf>,
    new: &std::path::Path,
    data_dir: &std::path::Path,
) -> CliResult {
    use cloudpass::master_key;
    let provider = master_key::provider_from(current);
    let (old, origin) = master_key::load(provider.as_ref(), data_dir, false)?;
    let new_master = master_key::FileKey(new.to_owned()).master_key()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let store = match std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
        {
            Some(url) => cloudpass_store::AnyStore::connect(&url, Default::default()).await,
            None => {
                cloudpass_store::AnyStore::open_sqlite(
                    &data_dir.join("cloudpass.sqlite"),
                    Default::default(),
                )
                .await
            }
        }
        .map_err(|e| e.to_string())?;
        let old_check = old.check_value();
        let count = master_key::rotate(&store, old, &new_master).await?;
        println!(
            "re-wrapped {count} keys: from the master key {old_check} ({origin}) to {} ({}); \
             start the platform with the new key",
            new_master.check_value(),
            new.display()
        );
        Ok(())
    })
}

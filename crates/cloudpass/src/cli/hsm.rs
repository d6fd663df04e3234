//! `cloudpass hsm …`: the operator's view of the master key (only ever its check value).

use std::sync::Arc;

use clap::Subcommand;
use cloudpass_crypto::{Hsm, MasterKey, OsRandom, SoftHsm};

use super::CliResult;

/// Environment variable holding the master key (64 hex digits).
pub const MASTER_KEY_VARIABLE: &str = "CLOUDPASS_MASTER_KEY";

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
}

/// The master key from a file or the environment.
pub fn load_master_key(file: Option<&std::path::Path>) -> Result<MasterKey, String> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?,
        None => std::env::var(MASTER_KEY_VARIABLE)
            .map_err(|_| format!("set {MASTER_KEY_VARIABLE} or pass --master-key-file"))?,
    };
    MasterKey::from_hex(&text).map_err(|error| error.to_string())
}

pub fn run(command: HsmCommand) -> CliResult {
    match command {
        HsmCommand::CheckValue { master_key_file } => {
            let master = load_master_key(master_key_file.as_deref())?;
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
    }
}

//! Where the master key comes from, and how it is rotated.
//!
//! The master key wraps every data key, and the data keys encrypt every card number: whoever
//! holds the database and the master key holds every PAN. So in production the key never
//! sits beside the data — it comes from the environment, from a file outside the data
//! directory, or from a [`KeyProvider`] backed by a real KMS or HSM — and `serve` refuses a
//! production start otherwise. The sandbox keeps its convenience (a key file made in the
//! data directory on first start) and says so loudly at every start.
//!
//! Rotation re-wraps every stored key under a new master key in one transaction
//! ([`rotate`]); card data, encrypted under the data keys, is untouched.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloudpass_core::Random;
use cloudpass_crypto::{MasterKey, OsRandom, SoftHsm, WrappedKey};
use cloudpass_store::{AnyStore, KeyReplacement, TokenStore};
use zeroize::Zeroizing;

/// Environment variable holding the master key (64 hex digits).
pub const MASTER_KEY_VARIABLE: &str = "CLOUDPASS_MASTER_KEY";
/// The sandbox's key file, in the data directory.
pub const SANDBOX_MASTER_KEY_FILE: &str = "master.key";

/// Something that hands out the master key: the environment, a file, or (behind this trait)
/// a KMS or HSM.
pub trait KeyProvider: Send + Sync {
    fn master_key(&self) -> Result<MasterKey, String>;
    /// Where the key comes from, for the operator (never the key).
    fn describe(&self) -> String;
    /// The file the key is read from, if it is a file (to keep it out of the data directory).
    fn file(&self) -> Option<&Path> {
        None
    }
}

/// The key in an environment variable.
pub struct EnvironmentKey(pub &'static str);

impl KeyProvider for EnvironmentKey {
    fn master_key(&self) -> Result<MasterKey, String> {
        let text =
            Zeroizing::new(std::env::var(self.0).map_err(|_| format!("{} is not set", self.0))?);
        MasterKey::from_hex(text.trim()).map_err(|e| format!("{}: {e}", self.0))
    }

    fn describe(&self) -> String {
        format!("the environment ({})", self.0)
    }
}

/// The key in a file (64 hex digits).
pub struct FileKey(pub PathBuf);

impl KeyProvider for FileKey {
    fn master_key(&self) -> Result<MasterKey, String> {
        let text = Zeroizing::new(
            std::fs::read_to_string(&self.0)
                .map_err(|e| format!("cannot read {}: {e}", self.0.display()))?,
        );
        // The operator named the file; the error says what is wrong with its content.
        MasterKey::from_hex(text.trim()).map_err(|e| e.to_string())
    }

    fn describe(&self) -> String {
        format!("the file {}", self.0.display())
    }

    fn file(&self) -> Option<&Path> {
        Some(&self.0)
    }
}

/// The provider `serve` uses: `--master-key-file`, else the environment variable if set,
/// else none (the sandbox's file in the data directory).
pub fn provider_from(file: Option<PathBuf>) -> Option<Arc<dyn KeyProvider>> {
    match file {
        Some(path) => Some(Arc::new(FileKey(path))),
        None if std::env::var_os(MASTER_KEY_VARIABLE).is_some() => {
            Some(Arc::new(EnvironmentKey(MASTER_KEY_VARIABLE)))
        }
        None => None,
    }
}

/// Whether `file` lies inside `dir` (both resolved; a file that does not exist yet is
/// judged by its directory).
pub fn inside(file: &Path, dir: &Path) -> bool {
    let resolve = |path: &Path| {
        path.canonicalize().ok().or_else(|| {
            let parent = path.parent()?.canonicalize().ok()?;
            Some(parent.join(path.file_name()?))
        })
    };
    match (resolve(file), dir.canonicalize().ok()) {
        (Some(file), Some(dir)) => file.starts_with(dir),
        _ => false,
    }
}

/// The master key for a start: from `provider`, which production requires to be outside
/// the data directory; or, in the sandbox without one, the sandbox's key file (made on
/// first start), with a warning. Returns the key and a line saying where it came from.
pub fn load(
    provider: Option<&Arc<dyn KeyProvider>>,
    data_dir: &Path,
    production: bool,
) -> Result<(MasterKey, String), String> {
    match provider {
        Some(provider) => {
            if production && provider.file().is_some_and(|file| inside(file, data_dir)) {
                return Err(format!(
                    "refusing a production start: the master key file is inside the data \
                     directory {} — one copy of the directory would yield every card number; \
                     keep the key elsewhere (--master-key-file outside it, {MASTER_KEY_VARIABLE}, \
                     or a KMS)",
                    data_dir.display()
                ));
            }
            Ok((provider.master_key()?, provider.describe()))
        }
        None if production => Err(format!(
            "refusing a production start without a master key: set {MASTER_KEY_VARIABLE} or give \
             --master-key-file (outside the data directory)"
        )),
        None => {
            let path = data_dir.join(SANDBOX_MASTER_KEY_FILE);
            let key = crate::app::sandbox_key(&path)?;
            tracing::warn!(
                file = %path.display(),
                "SANDBOX MASTER KEY inside the data directory: a copy of the directory yields \
                 every card number; production keeps the key elsewhere"
            );
            Ok((
                key,
                format!(
                    "SANDBOX key file {} (inside the data directory: a copy of the directory \
                     yields every card number; not for production)",
                    path.display()
                ),
            ))
        }
    }
}

/// Re-wraps every key in `store` from `old` to `new` in one transaction; how many. Run it
/// with the platform stopped (a running instance may store a new key under the old master
/// key meanwhile; the compare-and-swap would then refuse, and nothing is changed).
pub async fn rotate(store: &AnyStore, old: MasterKey, new: &MasterKey) -> Result<usize, String> {
    let random: Arc<dyn Random> = Arc::new(OsRandom);
    let hsm = SoftHsm::new(old, random);
    let mut replacements = Vec::new();
    for (name, wrapped) in store.keys().await.map_err(|e| e.to_string())? {
        let parsed = WrappedKey::from_text(&wrapped).map_err(|e| format!("key {name}: {e}"))?;
        let rewrapped = hsm
            .rewrap(&parsed, new)
            .map_err(|e| format!("key {name} does not open under the current master key: {e}"))?;
        replacements.push(KeyReplacement {
            name,
            old: wrapped,
            new: rewrapped.to_text(),
        });
    }
    store
        .replace_keys(&replacements)
        .await
        .map_err(|e| format!("nothing was changed: {e}"))?;
    Ok(replacements.len())
}

//! The data directory: databases (and their WAL), key files, the sandbox's phones and
//! terminal batches. Whatever the umask, the directory is 0700 and every file in it 0600 —
//! readable by the account that runs cloudpass alone.
//!
//! SQLite creates a database's `-wal` and `-shm` files with the main file's mode, so each
//! database file is made (empty, mode 0600) before SQLite opens it. Files left by an older
//! version with wider modes are tightened at start. This module must never widen a mode,
//! nor tighten a directory that is not a cloudpass data directory (`--data-dir /tmp` must
//! not take /tmp away from everyone else).

use std::io::Write;
use std::path::Path;

/// Files whose presence marks a directory as a cloudpass data directory.
const MARKERS: &[&str] = &["cloudpass.sqlite", "issuer-host.sqlite", "zone-master.key"];

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), String> {
    Ok(())
}

#[cfg(unix)]
fn opened_to_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn opened_to_others(_path: &Path) -> bool {
    false
}

/// Makes `dir` (and any missing parents) with mode 0700 on the directory itself.
pub fn create_private_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        set_mode(dir, 0o700)?;
    }
    Ok(())
}

/// Prepares the data directory: created 0700, or an existing one tightened to 0700 with
/// every file in it (and in its subdirectories) 0600. An existing directory that others
/// can read and that holds anything but a cloudpass data directory is refused.
pub fn prepare(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return create_private_dir(dir);
    }
    let empty = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .next()
        .is_none();
    let ours = MARKERS.iter().any(|marker| dir.join(marker).exists());
    if opened_to_others(dir) && !empty && !ours {
        return Err(format!(
            "refusing to use {} as the data directory: others can read it and it holds \
             something other than a cloudpass data directory; give a new or empty directory",
            dir.display()
        ));
    }
    tighten(dir, 2)
}

/// Sets directories to 0700 and files to 0600, `depth` levels down.
fn tighten(dir: &Path, depth: usize) -> Result<(), String> {
    set_mode(dir, 0o700)?;
    for entry in
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?
    {
        let path = entry
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            if depth > 0 {
                tighten(&path, depth - 1)?;
            }
        } else if opened_to_others(&path) {
            set_mode(&path, 0o600)?;
        }
    }
    Ok(())
}

/// Makes `path` an empty file with mode 0600 if it does not exist (a database file before
/// SQLite opens it, so that its WAL is 0600 too).
pub fn precreate_private_file(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    private_options()
        .create_new(true)
        .open(path)
        .map(drop)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Writes `bytes` to `path` whole or not at all (a temporary file, mode 0600, renamed).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let temporary = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = private_options()
        .create_new(true)
        .open(&temporary)
        .map_err(|e| format!("cannot create {}: {e}", temporary.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cloudpass-datadir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_directory_and_its_files_are_private() {
        let dir = scratch("new").join("nested");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        precreate_private_file(&dir.join("cloudpass.sqlite")).unwrap();
        assert_eq!(mode(&dir.join("cloudpass.sqlite")), 0o600);
        write_private(&dir.join("zone-pin-key.txt"), b"key").unwrap();
        assert_eq!(mode(&dir.join("zone-pin-key.txt")), 0o600);
        assert_eq!(std::fs::read(dir.join("zone-pin-key.txt")).unwrap(), b"key");
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn an_old_data_directory_is_tightened_and_a_foreign_one_refused() {
        let dir = scratch("old");
        std::fs::create_dir_all(dir.join("phones")).unwrap();
        for (file, m) in [
            ("cloudpass.sqlite", 0o644),
            ("cloudpass.sqlite-wal", 0o644),
            ("phones/phone.json", 0o666),
        ] {
            std::fs::write(dir.join(file), b"x").unwrap();
            set_mode(&dir.join(file), m).unwrap();
        }
        set_mode(&dir, 0o755).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("phones")), 0o700);
        for file in [
            "cloudpass.sqlite",
            "cloudpass.sqlite-wal",
            "phones/phone.json",
        ] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        std::fs::remove_dir_all(&dir).unwrap();

        let foreign = scratch("foreign");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(foreign.join("notes.txt"), b"x").unwrap();
        set_mode(&foreign, 0o755).unwrap();
        assert!(prepare(&foreign).unwrap_err().contains("refusing"));
        assert_eq!(mode(&foreign), 0o755, "left alone");
        std::fs::remove_dir_all(&foreign).unwrap();
    }
}

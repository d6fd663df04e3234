//! A disk that fills up: with `--disk-mb N` the parties' data directory (the platform's
//! store, the bank's ledger, their keys) is a file system of its own (a tmpfs of N MiB,
//! mounted by `mount`, so the run needs root), and the "disk full" fault
//! fills what is free of it with a ballast file for a while, then deletes it. SQLite's writes
//! (the platform's store, the bank's ledger) then fail with SQLITE_FULL, as on a server
//! whose disk ran out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Ballast files so far: each fault fills with one of its own (faults may overlap).
static BALLASTS: AtomicU64 = AtomicU64::new(0);

/// The run's directory as a file system of `megabytes` MiB.
pub struct SmallDisk {
    mount_point: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `megabytes` MiB on `mount_point` (an empty directory).
    pub fn mount(mount_point: &Path, megabytes: u64) -> Result<SmallDisk, String> {
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={megabytes}m,mode=0700"),
                "tmpfs",
            ])
            .arg(mount_point)
            .status()
            .map_err(|e| format!("cannot run mount for --disk-mb: {e}"))?;
        if !status.success() {
            return Err(format!(
                "--disk-mb: mounting a {megabytes} MiB tmpfs on {} failed ({status}); it needs root",
                mount_point.display()
            ));
        }
        Ok(SmallDisk {
            mount_point: mount_point.to_owned(),
        })
    }

    /// Unmounts it (what was on it is gone).
    pub fn unmount(self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
    }

    /// Fills the file system with a ballast file for `lasting`, then deletes it; how many
    /// bytes the ballast took.
    pub async fn fill_for(mount_point: PathBuf, lasting: Duration) -> u64 {
        let ballast = mount_point.join(format!(
            "ballast-{}",
            BALLASTS.fetch_add(1, Ordering::Relaxed)
        ));
        let filled = tokio::task::spawn_blocking({
            let ballast = ballast.clone();
            move || fill(&ballast)
        })
        .await
        .unwrap_or(0);
        tokio::time::sleep(lasting).await;
        let _ = tokio::fs::remove_file(&ballast).await;
        filled
    }

    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }
}

/// Writes `path` until the file system is full; the bytes written.
fn fill(path: &Path) -> u64 {
    let Ok(mut file) = std::fs::File::create(path) else {
        return 0;
    };
    let chunk = vec![0_u8; 1 << 20];
    let mut written = 0_u64;
    // Whole chunks, then ever smaller ones, down to a page: nothing is left but slack.
    let mut size = chunk.len();
    while size >= 4096 {
        match file.write(&chunk[..size]) {
            Ok(0) | Err(_) => size /= 2,
            Ok(wrote) => written += wrote as u64,
        }
    }
    let _ = file.flush();
    written
}

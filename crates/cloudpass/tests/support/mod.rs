//! Helpers shared by the binary's black-box tests.
#![allow(
    dead_code,
    unused_macros,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod app;
pub mod browser;
pub mod network;
pub mod pki;
pub mod upacp;
pub mod wallet;

/// Instantiates each `async fn name(backend: Backend)` of the file as a test on SQLite and
/// one on PostgreSQL (`sqlite::name`, `postgres::name`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Sqlite).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Postgres).await; })*
        }
    };
}

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python interpreter with the PyPI interop peers installed: `$CLOUDPASS_PYTHON` (what
/// `.ci/run` sets up), or a virtualenv under the target directory made on first use. Never
/// skips: if Python or PyPI is unreachable the test fails and says why.
pub fn interop_python() -> PathBuf {
    if let Some(python) = std::env::var_os("CLOUDPASS_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-venv");
    let python = venv.join("bin").join("python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import iso8583, cryptography, requests"])
            .status()
            .is_ok_and(|status| status.success());
    if !ready {
        let status = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .expect("python3 must be installed to run the interop tests");
        assert!(
            status.success(),
            "python3 -m venv {} failed",
            venv.display()
        );
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "pyiso8583==4.0.1",
                "cryptography==50.0.2",
                "requests==2.34.2",
            ])
            .status()
            .expect("pip must run");
        assert!(
            status.success(),
            "pip install of the interop peers failed (is PyPI reachable?)"
        );
    }
    python
}

/// The directory of the interop scripts.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

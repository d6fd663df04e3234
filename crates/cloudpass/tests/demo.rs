//! `cloudpass demo` as a person runs it: a fresh network on temporary storage, the whole
//! story through its real ports, every step verified; it must pass, quickly, and say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_demo_tells_the_whole_story_and_every_step_is_verified() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_cloudpass"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let steps = stdout.lines().filter(|l| l.contains(". ✓ ")).count();
    assert!(
        stdout.contains(&format!("{steps} of {steps} steps verified")),
        "{stdout}"
    );
    assert!(steps >= 12, "{stdout}");
    for story in [
        "three tokens, one PAR",
        "under and over the no-PIN limit",
        "WAP pay",
        "Control pay",
        "cashier",
        "refunds",
        "lost phone",
        "reissues",
        "console",
    ] {
        assert!(
            stdout.contains(story),
            "the narrative tells {story:?}:\n{stdout}"
        );
    }
    // A readable narrative: no log lines, no full card number.
    assert!(stderr.trim().is_empty(), "{stderr}");
    assert!(!stdout.contains("6226090000000048") && !stdout.contains("6226388000000095"));
    assert!(started.elapsed() < Duration::from_secs(60));
}

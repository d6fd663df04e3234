//! A short seeded chaos run, as CI's share of `cloudpass chaos`: the real binary, the
//! platform and the issuer host killed a few times under load with link and database
//! faults, then the money audit. The long runs (the default 120 kills, other seeds) are commands, recorded in
//! docs/reliability.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

/// The figure printed after `label` on a line of the run's summary, if there is one.
fn figure_if_any(summary: &str, label: &str) -> Option<u64> {
    summary
        .lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|figure| figure.parse().ok())
}

/// The figure printed after `label` on a line of the run's summary.
fn figure(summary: &str, label: &str) -> u64 {
    figure_if_any(summary, label)
        .unwrap_or_else(|| panic!("no `{label}` figure in the summary:\n{summary}"))
}

#[test]
fn a_short_seeded_run_on_sqlite_kills_the_platform_and_passes_the_money_audit() {
    let summary = short_run("7", 6, None);
    assert!(figure(&summary, "database refuses writes") > 0, "{summary}");
}

#[test]
fn a_short_seeded_run_on_postgresql_cuts_its_sessions_and_passes_the_money_audit() {
    let server = std::env::var("CLOUDPASS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    // Seed 7's first faults on PostgreSQL include a cut of every session and a write lock.
    let summary = short_run("7", 8, Some(&server));
    assert!(summary.contains("PostgreSQL database"), "{summary}");
    assert!(figure(&summary, "database sessions cut") > 0, "{summary}");
    assert!(figure(&summary, "database refuses writes") > 0, "{summary}");
}

/// Runs `cloudpass chaos` for `kills` kills and checks its audit; its output.
fn short_run(seed: &str, kills: u64, database_url: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloudpass"));
    command
        .args(["chaos", "--seed", seed, "--kills", &kills.to_string()])
        .args(["--phones", "4", "--terminals", "2"])
        .env_remove("CLOUDPASS_MASTER_KEY")
        .env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    let output = command.output().unwrap();
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the chaos run failed:\n{summary}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        summary.contains(&format!("audit passed: seed {seed}")),
        "{summary}"
    );
    // Kills of the platform and of the issuer host, a process of its own.
    let killed = figure(&summary, "kill -9 platform")
        + figure_if_any(&summary, "kill -9 issuer host").unwrap_or(0);
    assert_eq!(killed, kills, "{summary}");
    // The wallet churned tokens through the kills, and the audit checked them.
    assert!(figure(&summary, "tokens provisioned") > 0, "{summary}");
    assert!(
        figure(&summary, "a token's state is its last acknowledged change") > 0,
        "{summary}"
    );
    // Seed 7 kills the issuer host alone once among its first kills, on either store.
    assert!(figure(&summary, "kill -9 issuer host") > 0, "{summary}");
    // The audit looked at real payments: some approved and voided, every one checked.
    assert!(figure(&summary, "approved 00") > 0, "{summary}");
    let purchases = figure(&summary, "approved at a terminal → posted once at the bank");
    assert!(purchases > 0, "{summary}");
    // In-app purchases, e-cash loads and offline spends went through, and were audited.
    for figure_label in [
        "in-app purchases approved",
        "e-cash loads approved",
        "offline e-cash spends cleared 00",
        "an offline spend the card approved is cleared once at the bank",
    ] {
        assert!(figure(&summary, figure_label) > 0, "{summary}");
    }
    // The merchant's gateway orders were paid, returned, notified and reconciled.
    for invariant in [
        "a paid gateway order is posted once at the bank, an undone one reversed",
        "every gateway success was notified to the merchant",
        "the reconciliation file holds exactly the successes",
    ] {
        assert!(figure(&summary, invariant) > 0, "{summary}");
    }
    let violations: u64 = summary
        .lines()
        .skip_while(|line| !line.starts_with("invariant"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty() && !line.starts_with("audit passed"))
        .filter_map(|line| line.split_whitespace().last()?.parse::<u64>().ok())
        .sum();
    assert_eq!(violations, 0, "{summary}");
    summary.into_owned()
}

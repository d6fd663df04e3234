//! `cloudpass chaos --seed N`: the network under load while faults chosen by the seed hit
//! it — SIGKILL of the platform at any moment (while it answers, while it starts), a fault
//! proxy on the acquirer link and on the switch's issuer link (delays, swallowed bytes, cut
//! connections, partial frames) and a database that refuses writes for a while — then, once
//! the faults stop and every reversal and advice has gone through, an audit of the money
//! (`audit`). It exits non-zero naming the seed and the first invariant broken.
//!
//! The platform (`cloudpass serve`: token service, switch and the sandbox bank) runs as a
//! child process on a data directory of the run's own; the load (phones and terminals) and
//! the proxies run here. docs/reliability.md says what is covered and what is not yet.

mod audit;
mod audit_gateway;
mod database;
mod disk;
mod lifecycle;
mod load;
mod network;
mod platform;
mod proxy;
mod schedule;
mod shop;
mod teller;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use cloudpass::sandbox;
use cloudpass_core::SeededRandom;
use cloudpass_sim::pos::Pos;
use tokio::sync::watch;

use crate::cli::CliResult;
use database::PlatformStore;
use load::{Record, Worker};
use network::Network;
use platform::{Ports, free_port};
use proxy::FaultProxy;
use schedule::{Database, Event, Fault, LinkName, Schedule, Surfaces};

#[derive(Args)]
pub struct ChaosArgs {
    /// The seed: the faults, their order and timing, and the load's choices follow from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop the load after this many kills of the platform (the default run makes 120).
    #[arg(long, default_value_t = 120)]
    kills: u32,
    /// Stop the load after this many minutes, even with fewer kills.
    #[arg(long)]
    minutes: Option<f64>,
    /// Phones paying at once (each its own device and token).
    #[arg(long, default_value_t = 6)]
    phones: usize,
    /// Sandbox terminals the phones pay at.
    #[arg(long, default_value_t = 3)]
    terminals: usize,
    /// The run's data directory (must not exist yet); by default a temporary one, removed
    /// after a clean audit and kept after a failed one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the platform's store on this PostgreSQL server (e.g.
    /// postgres://postgres@127.0.0.1:5432/test) in a database created for the run, dropped
    /// after a clean audit and kept after a failed one; by default SQLite in the data
    /// directory. The sandbox bank keeps SQLite.
    #[arg(long)]
    database_url: Option<String>,
    /// Put the parties' data directory on a file system of its own of this many MiB (a tmpfs; needs
    /// root) and add "disk full" faults, which fill it for 0.5–13 s. 1024 holds a default run.
    #[arg(long)]
    disk_mb: Option<u64>,
}

pub fn run(args: ChaosArgs) -> CliResult {
    if args.phones == 0 || args.terminals == 0 || args.terminals > sandbox::TERMINALS.len() {
        return Err(format!(
            "--phones must be at least 1 and --terminals 1 to {}",
            sandbox::TERMINALS.len()
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run_async(args))
}

/// What has happened so far, for the progress line.
#[derive(Default)]
struct Progress {
    kills: AtomicU64,
    faults: AtomicU64,
}

async fn run_async(args: ChaosArgs) -> CliResult {
    let (data_dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "cloudpass-chaos-{}-{}",
                args.seed,
                std::process::id()
            )),
            true,
        ),
    };
    if data_dir.exists() {
        return Err(format!(
            "{} exists: a run starts on a fresh data directory",
            data_dir.display()
        ));
    }
    if cfg!(feature = "deliberately-broken-journal") {
        println!(
            "chaos: THIS BUILD IS DELIBERATELY BROKEN (feature deliberately-broken-journal): the \
             switch's journal answers before its commit; the audit should fail"
        );
    }
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let platform_dir = data_dir.join("platform");
    // The parties' data on the small disk; the logs beside it, where a full disk cannot cut
    // them short.
    let disk = match args.disk_mb {
        Some(megabytes) => {
            std::fs::create_dir_all(&platform_dir)
                .map_err(|e| format!("cannot create {}: {e}", platform_dir.display()))?;
            Some(disk::SmallDisk::mount(&platform_dir, megabytes)?)
        }
        None => None,
    };
    println!(
        "chaos: seed {}, until {} kills{}; {} phones at {} terminals; data and the logs (platform.log, bank.log) in {}",
        args.seed,
        args.kills,
        args.minutes
            .map(|minutes| format!(" or {minutes} minutes"))
            .unwrap_or_default(),
        args.phones,
        args.terminals,
        data_dir.display()
    );
    let run_name = format!("cloudpass_chaos_{}_{}", args.seed, std::process::id());
    let store =
        PlatformStore::create(&platform_dir, args.database_url.as_deref(), &run_name).await?;
    println!("  the platform's store: {}", store.describe());
    let small_disk = disk.as_ref().map(|disk| disk.mount_point().to_owned());
    let result = run_in(&args, &platform_dir, &store, &data_dir, small_disk).await;
    match &result {
        Ok(()) => {
            if let Some(disk) = disk {
                disk.unmount();
            }
            if temporary {
                let _ = std::fs::remove_dir_all(&data_dir);
            }
            store.remove().await;
        }
        Err(_) => println!(
            "the run's data is kept in {} ({}){}",
            data_dir.display(),
            store.describe(),
            if disk.is_some() {
                "; its platform/ is a tmpfs: copy what you need, then umount it"
            } else {
                ""
            }
        ),
    }
    result
}

/// The run: the platform and the issuer host on `data_dir` (made by their first start) and
/// `store`, their logs in `logs`.
async fn run_in(
    args: &ChaosArgs,
    data_dir: &Path,
    store: &PlatformStore,
    logs: &Path,
    small_disk: Option<PathBuf>,
) -> CliResult {
    let bank = free_port()?;
    let switch = free_port()?;
    let issuer_proxy = FaultProxy::start(bank)
        .await
        .map_err(|e| format!("cannot start the issuer link's proxy: {e}"))?;
    let acquirer_proxy = FaultProxy::start(switch)
        .await
        .map_err(|e| format!("cannot start the acquirer link's proxy: {e}"))?;
    let ports = Ports {
        http: free_port()?,
        switch,
        platform_bank: free_port()?,
        bank,
        bank_http: free_port()?,
        issuer_link: issuer_proxy.address,
    };
    let mut network = Network::launch(data_dir, logs, store, ports).await?;

    print!("provisioning {} phones… ", args.phones);
    let phones = load::provision_phones(&format!("http://{}", ports.http), args.phones).await?;
    println!("done");
    let master = cloudpass_core::hex::decode(
        std::fs::read_to_string(data_dir.join(cloudpass::app::TERMINAL_MASTER_KEY_FILE))
            .map_err(|e| format!("cannot read the terminal master key: {e}"))?
            .trim(),
    )
    .map_err(|_| "the terminal master key file is not hex".to_owned())?;
    let (stop_links, links_stopped) = watch::channel(false);
    let terminals = load::terminals(
        acquirer_proxy.address,
        args.terminals,
        &master,
        links_stopped,
    )
    .await?;

    let record = Arc::new(Record::default());
    let (stop_load, load_stopped) = watch::channel(false);
    let mut workers = Vec::new();
    for (index, phone) in phones.into_iter().enumerate() {
        let terminal = index % terminals.len();
        let worker = Worker {
            phone,
            pos: Arc::clone(&terminals[terminal]),
            terminal: sandbox::TERMINALS[terminal],
            random: SeededRandom::new(args.seed.wrapping_mul(1_000_003) ^ (index as u64 + 1)),
            record: Arc::clone(&record),
            link_down: false,
            batch: Vec::new(),
        };
        workers.push(tokio::spawn(worker.run(load_stopped.clone())));
    }

    let lives = Arc::new(lifecycle::Lives::default());
    let churn = tokio::spawn(
        lifecycle::Churn {
            base: format!("http://{}", ports.http),
            pos: Arc::clone(&terminals[0]),
            terminal: sandbox::TERMINALS[0],
            random: SeededRandom::new(args.seed.wrapping_mul(7_919) ^ 0x11FE),
            record: Arc::clone(&record),
            lives: Arc::clone(&lives),
        }
        .run(load_stopped.clone()),
    );

    let deposits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let teller = tokio::spawn(
        teller::Teller {
            bank: ports.bank_http,
            seed: args.seed,
            record: Arc::clone(&record),
            deposits: Arc::clone(&deposits),
        }
        .run(load_stopped.clone()),
    );

    let (receiver, back_url) = shop::Receiver::start(args.seed).await?;
    let shop = Arc::new(shop::Shop {
        base: format!("http://{}", ports.http),
        seed: args.seed,
        back_url,
        random: SeededRandom::new(args.seed.wrapping_mul(104_729) ^ 0x5409),
        orders: Arc::new(std::sync::Mutex::new(Vec::new())),
    });
    let shopping = tokio::spawn({
        let (shop, stop) = (Arc::clone(&shop), load_stopped.clone());
        async move { shop.run(stop).await }
    });

    let progress = Arc::new(Progress::default());
    let reporter = tokio::spawn(report(Arc::clone(&progress), Arc::clone(&record)));
    let faults = inject_faults(
        args,
        data_dir,
        store,
        small_disk,
        &mut network,
        &acquirer_proxy,
        &issuer_proxy,
        &progress,
    )
    .await;
    let _ = stop_load.send(true);
    let mut owed_voids = Vec::new();
    let mut batches = Vec::new();
    let mut ecash = Vec::new();
    for worker in workers {
        let end = worker.await.map_err(|e| e.to_string())?;
        owed_voids.extend(end.owed_voids);
        batches.push((end.pos, end.batch));
        ecash.extend(end.ecash);
    }
    churn.await.map_err(|e| e.to_string())?;
    teller.await.map_err(|e| e.to_string())?;
    shopping.await.map_err(|e| e.to_string())?;
    reporter.abort();
    let tally = faults?;

    println!("load stopped; healing the links and draining reversals and advices");
    acquirer_proxy.heal();
    issuer_proxy.heal();
    let reversals_left = drain(
        &mut network,
        &terminals,
        &record,
        owed_voids,
        batches,
        store,
    )
    .await?;
    let shop_facts = settle_shop(&shop, &receiver, store).await?;
    // The gateway's sweep may have reversed a payment through the switch's store and
    // forward while the orders settled: that advice goes through too before the audit.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && audit::advices_pending(store).await? > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    network.kill_all();
    let _ = stop_links.send(true);

    let attempts = record.snapshot();
    let facts = audit::Facts::read(data_dir, store, sandbox::ACQUIRER_ID).await?;
    let (token_lives, unsure_provisionings) = lives.snapshot();
    let deposits = deposits.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let offline = record.offline_snapshot();
    let mut checks = audit::check(
        &audit::Load {
            attempts: &attempts,
            offline: &offline,
            ecash: &ecash,
        },
        &token_lives,
        &deposits,
        &facts,
        reversals_left,
    );
    let gateway_bank =
        audit_gateway::GatewayBank::read(data_dir, sandbox::ECOMMERCE_ACQUIRER_ID).await?;
    let stored_orders = audit_gateway::stored_orders(store).await?;
    checks.extend(audit_gateway::check(
        &shop_facts,
        &gateway_bank,
        &stored_orders,
    ));
    print_summary(&tally, &attempts, &record, &network);
    print_lifecycle(&token_lives, &unsure_provisionings);
    println!(
        "deposits by the teller after 51s (each {} fen)    {:>6}  (unanswered {})",
        teller::DEPOSIT_FEN,
        deposits.len(),
        deposits
            .iter()
            .filter(|deposit| !deposit.acknowledged)
            .count()
    );
    print_shop(&shop_facts);
    print_audit(&checks);
    match checks.iter().find(|check| !check.violations.is_empty()) {
        None => {
            println!("audit passed: seed {}", args.seed);
            Ok(())
        }
        Some(check) => {
            println!("first invariant broken: {}", check.name);
            for violation in check.violations.iter().take(10) {
                println!("  {violation}");
            }
            Err(format!(
                "the audit failed for seed {}: {} ({} violations); replay with `cloudpass chaos --seed {}`",
                args.seed,
                check.name,
                check.violations.len(),
                args.seed
            ))
        }
    }
}

/// Injects the schedule's faults until enough kills were made or the time is up; how many
/// of each kind.
#[allow(clippy::too_many_arguments)]
async fn inject_faults(
    args: &ChaosArgs,
    data_dir: &Path,
    store: &PlatformStore,
    small_disk: Option<PathBuf>,
    network: &mut Network,
    acquirer: &FaultProxy,
    issuer: &FaultProxy,
    progress: &Progress,
) -> Result<BTreeMap<&'static str, u64>, String> {
    let schedule = Schedule::new(
        args.seed,
        Surfaces {
            postgres: args.database_url.is_some(),
            small_disk: small_disk.is_some(),
        },
    );
    let deadline = args
        .minutes
        .map(|minutes| Instant::now() + Duration::from_secs_f64(minutes.max(0.0) * 60.0));
    let mut tally = BTreeMap::new();
    let mut kills = 0;
    let mut locks = Vec::new();
    while kills < args.kills && deadline.is_none_or(|at| Instant::now() < at) {
        let Event { after, fault } = schedule.next_event();
        tokio::time::sleep(after).await;
        network.note(&format!("{fault:?}"));
        *tally.entry(fault.kind()).or_insert(0) += 1;
        progress.faults.fetch_add(1, Ordering::Relaxed);
        match fault {
            Fault::Kill { party, down, early } => {
                network.kill(party);
                kills += 1;
                progress.kills.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(down).await;
                if !early {
                    network.bring_back(party).await?;
                } else {
                    network.start_party(party)?;
                }
            }
            Fault::Link {
                link,
                fault,
                lasting,
            } => {
                let proxy = match link {
                    LinkName::Acquirer => acquirer,
                    LinkName::Issuer => issuer,
                };
                proxy.inject(fault);
                tokio::time::sleep(lasting).await;
                proxy.heal();
            }
            Fault::DatabaseLock {
                database: Database::Platform,
                lasting,
            } => {
                let store = store.clone();
                locks.push(tokio::spawn(
                    async move { store.refuse_writes(lasting).await },
                ));
            }
            Fault::DatabaseLock {
                database: Database::Bank,
                lasting,
            } => {
                let bank = data_dir.join("issuer-host.sqlite");
                locks.push(tokio::spawn(async move {
                    database::hold_sqlite_write_lock(&bank, lasting).await
                }));
            }
            Fault::DiskFull { lasting } => {
                if let Some(mount_point) = small_disk.clone() {
                    locks.push(tokio::spawn(async move {
                        disk::SmallDisk::fill_for(mount_point, lasting).await;
                    }));
                }
            }
            Fault::SessionsCut => match store.cut_sessions().await {
                Ok(cut) => network.note(&format!("{cut} database sessions cut")),
                Err(error) => network.note(&error),
            },
        }
        network.restart_the_dead()?;
    }
    for lock in locks {
        let _ = lock.await;
    }
    Ok(tally)
}

/// After the load: the platform up, every terminal's kept reversals and every owed void
/// acknowledged, the switch's store and forward empty. The reversals still unacknowledged.
async fn drain(
    network: &mut Network,
    terminals: &[Arc<Pos>],
    record: &Record,
    owed_voids: Vec<(Arc<Pos>, usize)>,
    batches: Vec<(Arc<Pos>, load::Batch)>,
    store: &PlatformStore,
) -> Result<usize, String> {
    network.all_ready().await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let pending = |terminals: &[Arc<Pos>]| {
        terminals
            .iter()
            .filter(|pos| pos.terminal().reversals_pending())
            .count()
    };
    while pending(terminals) > 0 && Instant::now() < deadline {
        for pos in terminals {
            if pos.terminal().reversals_pending() {
                pos.terminal().flush_reversals().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (pos, index) in owed_voids {
        for _ in 0..10 {
            if load::void(&pos, record, index).await {
                break;
            }
        }
    }
    // Offline spends not cleared yet: uploaded until each has a final answer.
    for (pos, mut batch) in batches {
        for _ in 0..20 {
            batch = load::upload(&pos, record, batch).await;
            if batch.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let left: usize = terminals
        .iter()
        .map(|pos| pos.terminal().reversals_kept())
        .sum();
    while Instant::now() < deadline {
        if audit::advices_pending(store).await? == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(left)
}

/// The merchant's orders settled, then its notifications delivered (the receiver now takes
/// every one at once), then what it knows.
async fn settle_shop(
    shop: &shop::Shop,
    receiver: &shop::Receiver,
    store: &PlatformStore,
) -> Result<shop::ShopFacts, String> {
    receiver.heal();
    let orders = shop.settle().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && audit::notifications_pending(store).await? > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(shop.facts(orders, receiver).await)
}

fn print_shop(facts: &shop::ShopFacts) {
    println!("gateway orders of the merchant, by their final query (origRespCode):");
    let mut outcomes: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for order in &facts.orders {
        let trade = match order.trade {
            shop::Trade::Consume => "consume (01)",
            shop::Trade::Undo => "undo (31)",
            shop::Trade::Refund => "refund (04)",
        };
        let code = order
            .settled
            .as_ref()
            .map_or("unanswered", |s| s.code.as_str());
        *outcomes.entry((trade, code)).or_insert(0) += 1;
    }
    for ((trade, code), count) in outcomes {
        println!("  {:<30} {:>13}", format!("{trade} {code}"), count);
    }
    println!(
        "  {:<30} {:>13}\n  {:<30} {:>13}",
        "notifications taken (00)",
        facts.notified.len(),
        "reconciliation file lines",
        facts.file_lines.len()
    );
}

async fn report(progress: Arc<Progress>, record: Arc<Record>) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let tally = &record.tally;
        eprintln!(
            "  {:>4} s  kills {:>4}  faults {:>4}  purchases: approved {}  declined {}  unanswered {}  not sent {}  voids {}",
            started.elapsed().as_secs(),
            progress.kills.load(Ordering::Relaxed),
            progress.faults.load(Ordering::Relaxed),
            tally.approved.load(Ordering::Relaxed),
            tally.declined.load(Ordering::Relaxed),
            tally.unanswered.load(Ordering::Relaxed),
            tally.not_sent.load(Ordering::Relaxed),
            tally.voids.load(Ordering::Relaxed),
        );
    }
}

fn print_summary(
    faults: &BTreeMap<&'static str, u64>,
    attempts: &[load::Attempt],
    record: &Record,
    network: &Network,
) {
    println!();
    println!(
        "faults injected (platform started {} times, issuer host {} times):",
        network.platform.starts, network.bank.starts
    );
    for (kind, count) in faults {
        println!("  {kind:<26} {count:>6}");
    }
    let mut answers = BTreeMap::<String, u64>::new();
    for attempt in attempts {
        let key = match &attempt.answer {
            load::Answer::Approved => "approved 00".to_owned(),
            load::Answer::Declined(code) => format!("declined {code}"),
            load::Answer::Unanswered => "unanswered (reversed by the terminal)".to_owned(),
            load::Answer::NotSent => "not sent (link down)".to_owned(),
        };
        *answers.entry(key).or_insert(0) += 1;
    }
    println!("purchases as the terminals saw them ({}):", attempts.len());
    for (answer, count) in &answers {
        println!("  {answer:<40} {count:>6}");
    }
    println!(
        "  voids acknowledged                       {:>6}",
        record.tally.voids.load(Ordering::Relaxed)
    );
    for (kind, label) in [
        (load::Kind::InApp, "in-app purchases"),
        (load::Kind::EcashLoad, "e-cash loads"),
    ] {
        let of_kind: Vec<_> = attempts.iter().filter(|a| a.kind == kind).collect();
        let approved = of_kind
            .iter()
            .filter(|a| a.answer == load::Answer::Approved)
            .count();
        println!(
            "  {:<40} {approved:>6}  (of {})",
            format!("{label} approved"),
            of_kind.len()
        );
    }
    let offline = record.offline_snapshot();
    println!(
        "  offline e-cash spends cleared 00         {:>6}  (of {})",
        offline
            .iter()
            .filter(|spend| spend.cleared.as_deref() == Some("00"))
            .count(),
        offline.len()
    );
}

fn print_lifecycle(lives: &[lifecycle::TokenLife], unsure_provisionings: &[String]) {
    println!("tokens churned (provisioned, paid, suspended, resumed, deleted):");
    println!(
        "  tokens provisioned                       {:>6}",
        lives.len()
    );
    println!(
        "  changes acknowledged                     {:>6}",
        lives
            .iter()
            .map(|life| u64::from(life.changes))
            .sum::<u64>()
    );
    println!(
        "  changes unanswered                       {:>6}",
        lives.iter().filter(|life| life.unsure.is_some()).count()
    );
    println!(
        "  provisionings unanswered                 {:>6}",
        unsure_provisionings.len()
    );
}

fn print_audit(checks: &[audit::Check]) {
    println!();
    println!("{:<72} {:>9} {:>10}", "invariant", "checked", "violations");
    for check in checks {
        println!(
            "{:<72} {:>9} {:>10}",
            check.name,
            check.checked,
            check.violations.len()
        );
    }
}

//! `cloudpass demo`: the whole story on temporary storage, through the real ports and
//! protocols — the token service's HTTP API as the wallets and the bank call it, the switch's
//! ISO 8583 port as a sandbox terminal sends to it, the demo institution's pages as a browser
//! visits them (which reach the gateway over UPACP) — each outcome checked against what the
//! network and the bank's ledger say. Prints a narrative as it goes and a summary table;
//! fails (non-zero exit) at the first step that misbehaves, naming it.

mod network;
mod shop;
mod wallet_app;

use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use cloudpass::app::{self, AppConfig, RunningApp};

use super::CliResult;

#[derive(Args)]
pub struct DemoArgs {
    /// Keep the temporary data directory (its path is printed) instead of removing it.
    #[arg(long)]
    keep: bool,
}

// The cards are UnionPay's published test cards, which the sandbox bank holds. Their numbers
// go only into requests, as a wallet's or a payer's would; the narrative shows the last four
// digits, logs are off (errors only), and tests/demo.rs checks the output never holds one.

/// The sandbox's CMB debit card: it goes onto every device.
pub(crate) const DEBIT: &str = cloudpass::sandbox::DEFAULT_PHONE_CARD;
pub(crate) const DEBIT_PIN: &str = "111101";
/// The number the bank reissues it under.
pub(crate) const REISSUED: &str = "6226090000000055";
/// The sandbox's Huaxia credit card: its bank wants a texted code first.
pub(crate) const CREDIT: &str = cloudpass::sandbox::STEP_UP_CARD;
/// The phone the sandbox bank texts the published cards' codes to.
pub(crate) const CARD_PHONE: &str = "18100000000";

/// A step's outcome: what it showed, or what went wrong.
type StepResult = Result<String, String>;

/// The network under the story, and what earlier steps left for later ones.
pub(crate) struct Demo {
    pub(crate) app: RunningApp,
    pub(crate) base: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) http: reqwest::Client,
    pub(crate) devices: network::Devices,
    /// The shop's orders the story paid: (orderId, TN).
    pub(crate) shop_orders: Vec<(String, String)>,
    /// The browser that shops at the demo institution.
    pub(crate) visitor: Option<shop::Visitor>,
    /// The browser of the person with the Cloud QuickPass app.
    pub(crate) app_user: Option<shop::Visitor>,
}

impl Demo {
    /// A card's balance at the sandbox bank, in fen.
    pub(crate) async fn balance(&self, card: &str) -> Result<i64, String> {
        let bank = self.app.stand_in_bank()?;
        let (debits, credits) = bank.ledger_totals().await.map_err(|e| e.to_string())?;
        if debits != credits {
            return Err(format!(
                "the bank's ledger does not balance: debits {debits}, credits {credits}"
            ));
        }
        bank.card_balance(card)
            .await
            .map(|(balance, _)| balance)
            .map_err(|e| e.to_string())
    }
}

struct Row {
    name: &'static str,
    ok: bool,
    detail: String,
    millis: u128,
}

/// The story so far.
#[derive(Default)]
struct Story {
    rows: Vec<Row>,
}

impl Story {
    /// Runs one step and tells it; false when it failed.
    async fn step(&mut self, name: &'static str, run: impl Future<Output = StepResult>) -> bool {
        let started = Instant::now();
        let outcome = run.await;
        let millis = started.elapsed().as_millis();
        let number = self.rows.len() + 1;
        let (ok, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(error) => (false, error),
        };
        println!(
            "{number:>2}. {} {name}\n    {detail}",
            if ok { "✓" } else { "✗" }
        );
        self.rows.push(Row {
            name,
            ok,
            detail,
            millis,
        });
        ok
    }

    fn print_summary(&self, total: usize) {
        println!("\n  #  {:<54}  result      ms", "step");
        for (index, row) in self.rows.iter().enumerate() {
            println!(
                "{:>3}  {:<54}  {:<7} {:>6}",
                index + 1,
                row.name,
                if row.ok { "ok" } else { "FAILED" },
                row.millis
            );
        }
        let passed = self.rows.iter().filter(|r| r.ok).count();
        println!("\n{passed} of {total} steps verified");
        if let Some(failed) = self.rows.iter().find(|r| !r.ok) {
            println!("failed: {} — {}", failed.name, failed.detail);
        }
    }
}

pub fn run(args: DemoArgs) -> CliResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(run_story(args))
}

async fn run_story(args: DemoArgs) -> CliResult {
    let data_dir = std::env::temp_dir().join(format!(
        "cloudpass-demo-{}-{}",
        std::process::id(),
        cloudpass_core::Random::next_u64(&cloudpass_crypto::OsRandom)
    ));
    let listen = "127.0.0.1:0".parse().map_err(|_| "bad listen address")?;
    let config = AppConfig::new(listen, data_dir.clone());
    println!(
        "Starting a fresh network on temporary storage ({})…",
        data_dir.display()
    );
    let app = app::start(config).await?;
    let base = app.base_url();
    println!("  HTTP {base}   switch (ISO 8583) {}\n", app.switch_addr);
    let mut demo = Demo {
        app,
        base,
        data_dir: data_dir.clone(),
        http: reqwest::Client::new(),
        devices: network::Devices::default(),
        shop_orders: Vec::new(),
        visitor: None,
        app_user: None,
    };
    let started = Instant::now();
    let ok = tell(&mut demo).await;
    println!("finished in {:.1} s", started.elapsed().as_secs_f64());
    demo.app.stop().await;
    if args.keep {
        println!("kept {}", data_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    if ok {
        Ok(())
    } else {
        Err("the demo found a step that misbehaved (above)".into())
    }
}

/// Every step, in order; stops at the first that fails. Whether all passed.
async fn tell(demo: &mut Demo) -> bool {
    let mut story = Story::default();
    const TOTAL: usize = 12;
    let ok = story
        .step("A bank with cards", network::the_bank(demo))
        .await
        && story
            .step(
                "One card onto three devices (three tokens, one PAR)",
                network::one_card_three_devices(demo),
            )
            .await
        && story
            .step(
                "A second card, the bank's code, and a new default",
                network::second_card_and_default(demo),
            )
            .await
        && story
            .step(
                "Taps under and over the no-PIN limit",
                network::taps_under_and_over_the_limit(demo),
            )
            .await
        && story
            .step("WAP pay from the demo institution", shop::wap_pay(demo))
            .await
        && story
            .step("The institution refunds it", shop::refund(demo))
            .await
        && story
            .step(
                "Sign up in the app, bind the card, put it onto the app",
                wallet_app::sign_up_and_add_the_card_to_the_app(demo),
            )
            .await
        && story
            .step(
                "Control pay from the demo institution",
                wallet_app::control_pay(demo),
            )
            .await
        && story
            .step(
                "The cashier from the demo institution",
                wallet_app::cashier(demo),
            )
            .await
        && story
            .step("A lost phone, then found", network::lost_phone(demo))
            .await
        && story
            .step("The bank reissues the card", network::reissued_card(demo))
            .await
        && story
            .step(
                "The operator finds it all in the console",
                shop::console(demo),
            )
            .await;
    story.print_summary(TOTAL);
    ok
}

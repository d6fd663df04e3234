//! The audit at the end of a run: what the terminals saw against what the bank's ledger and
//! the switch's journal hold, once the faults have stopped and every reversal and advice has
//! been delivered. Each invariant is checked over every transaction; a violation names the
//! transactions involved.

use std::collections::HashMap;
use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};

use super::database::{PlatformStore, StoreReader};
use super::lifecycle::TokenLife;
use super::load::{Answer, Attempt, CARDS, Kind, OfflineSpend, Void};
use super::teller::Deposit;

/// One invariant: how many things it looked at, and what broke it.
pub struct Check {
    pub name: &'static str,
    pub checked: u64,
    pub violations: Vec<String>,
}

impl Check {
    pub(super) fn new(name: &'static str) -> Check {
        Check {
            name,
            checked: 0,
            violations: Vec::new(),
        }
    }

    pub(super) fn expect(&mut self, holds: bool, violation: impl FnOnce() -> String) {
        self.checked += 1;
        if !holds {
            self.violations.push(violation());
        }
    }
}

/// What the bank holds of one purchase.
struct BankPurchase {
    response_code: String,
    reversed: bool,
    /// What its ledger entries took from the card's account.
    posted: i64,
}

impl BankPurchase {
    fn stands(&self) -> bool {
        self.response_code == "00" && !self.reversed
    }

    fn describe(&self) -> String {
        match (self.response_code.as_str(), self.reversed) {
            ("00", true) => "the bank approved and then reversed it".into(),
            ("00", false) => format!("the bank posted it ({} fen)", self.posted),
            (code, _) => format!("the bank declined it {code}"),
        }
    }
}

/// The facts read from the stores once the platform has stopped.
pub struct Facts {
    bank: HashMap<(String, String), BankPurchase>,
    /// The switch's journal: the answer given to each purchase.
    journal: HashMap<(String, String), Option<String>>,
    ledger_debits: i64,
    ledger_credits: i64,
    /// Accounts whose balance differs from their ledger entries: (account, balance, entries).
    accounts: Vec<(String, i64, i64)>,
    accounts_checked: u64,
    acquirer_net: i64,
    advices_pending: i64,
    /// Cards with more than one live token on a device; devices with more than one default.
    mapping_breaks: Vec<String>,
    tokens_checked: i64,
    /// Every token's status in the token service's store, by token id.
    token_states: HashMap<String, String>,
    /// The bank's deposits: amount by reference.
    deposits: HashMap<String, i64>,
    /// The bank's clearings of offline e-cash spends by (STAN, transmission time): each
    /// record's response code and what its ledger took from the e-cash account.
    clearings: HashMap<(String, String), Vec<(String, i64)>>,
    /// The e-cash the bank holds for each card, by its last four digits.
    ecash: HashMap<String, i64>,
}

/// What the load did: the terminals' purchases, the offline spends and the phones' e-cash.
pub struct Load<'a> {
    pub attempts: &'a [Attempt],
    pub offline: &'a [OfflineSpend],
    /// Each phone's card and the e-cash it holds at the end.
    pub ecash: &'a [(usize, u64)],
}

pub(super) async fn open(path: &Path) -> Result<SqliteConnection, String> {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// Store-and-forward advices the issuer has not acknowledged yet.
const ADVICES_PENDING: &str =
    "SELECT CAST(COUNT(*) AS TEXT) FROM switch_saf WHERE acknowledged_at IS NULL";

/// Gateway notifications neither delivered nor given up.
const NOTIFICATIONS_PENDING: &str = "SELECT CAST(COUNT(*) AS TEXT) FROM gateway_notifications WHERE delivered_at IS NULL AND failed_at IS NULL";

/// How many gateway notifications are still to be delivered (or given up).
pub async fn notifications_pending(store: &PlatformStore) -> Result<i64, String> {
    let mut platform = store.open().await?;
    let pending = platform.count(NOTIFICATIONS_PENDING).await;
    platform.close().await;
    pending
}

/// How many store-and-forward advices the issuer has not acknowledged yet.
pub async fn advices_pending(store: &PlatformStore) -> Result<i64, String> {
    let mut platform = store.open().await?;
    let pending = platform.count(ADVICES_PENDING).await;
    platform.close().await;
    pending
}

fn text(row: &SqliteRow, column: &str) -> String {
    row.try_get::<String, _>(column).unwrap_or_default()
}

fn number(row: &SqliteRow, column: &str) -> i64 {
    row.try_get::<i64, _>(column).unwrap_or_default()
}

impl Facts {
    /// Reads the bank's database (`issuer-host.sqlite` in `data_dir`) and the platform's
    /// store.
    pub async fn read(
        data_dir: &Path,
        store: &PlatformStore,
        acquirer: &str,
    ) -> Result<Facts, String> {
        let mut bank = open(&data_dir.join("issuer-host.sqlite")).await?;
        let failed = |e: sqlx::Error| format!("the audit's query failed: {e}");
        // The ledger is summed per transaction once (a correlated subquery per purchase
        // made the audit of a long run take minutes).
        let purchases = sqlx::query(
            "SELECT t.stan, t.transmission_time, t.response_code, t.reversed, \
             COALESCE(p.posted, 0) AS posted \
             FROM sim_transactions t LEFT JOIN \
             (SELECT transaction_id, SUM(amount) AS posted FROM sim_ledger WHERE debit GROUP BY transaction_id) p \
             ON p.transaction_id = t.id \
             WHERE t.mti = '0200' AND ltrim(t.acquirer, '0') = ltrim($1, '0')",
        )
        .bind(acquirer)
        .fetch_all(&mut bank)
        .await
        .map_err(failed)?
        .iter()
        .map(|row| {
            (
                (text(row, "stan"), text(row, "transmission_time")),
                BankPurchase {
                    response_code: text(row, "response_code"),
                    reversed: number(row, "reversed") != 0,
                    posted: number(row, "posted"),
                },
            )
        })
        .collect();
        let totals = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN debit THEN amount ELSE 0 END), 0) AS debits, \
             COALESCE(SUM(CASE WHEN debit THEN 0 ELSE amount END), 0) AS credits FROM sim_ledger",
        )
        .fetch_one(&mut bank)
        .await
        .map_err(failed)?;
        let balances = sqlx::query(
            "SELECT a.id, a.balance, \
             COALESCE((SELECT SUM(CASE WHEN l.debit THEN -l.amount ELSE l.amount END) FROM sim_ledger l WHERE l.account = a.id), 0) AS entries \
             FROM sim_accounts a",
        )
        .fetch_all(&mut bank)
        .await
        .map_err(failed)?;
        let accounts_checked = balances.len() as u64;
        let accounts = balances
            .iter()
            .map(|row| {
                (
                    text(row, "id"),
                    number(row, "balance"),
                    number(row, "entries"),
                )
            })
            .filter(|(_, balance, entries)| balance != entries)
            .collect();
        let acquirer_net = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN debit THEN -amount ELSE amount END), 0) AS net FROM sim_ledger WHERE account = $1",
        )
        .bind(cloudpass_sim::bank::acquirer_account(acquirer))
        .fetch_one(&mut bank)
        .await
        .map_err(failed)
        .map(|row| number(&row, "net"))?;
        let deposits = sqlx::query(
            "SELECT rrn, amount FROM sim_transactions WHERE mti = 'DEPOSIT' AND acquirer = 'bank'",
        )
        .fetch_all(&mut bank)
        .await
        .map_err(failed)?
        .iter()
        .map(|row| (text(row, "rrn"), number(row, "amount")))
        .collect();
        let mut clearings: HashMap<(String, String), Vec<(String, i64)>> = HashMap::new();
        for row in sqlx::query(
            "SELECT t.stan, t.transmission_time, t.response_code, \
             COALESCE((SELECT SUM(l.amount) FROM sim_ledger l WHERE l.transaction_id = t.id AND l.debit), 0) AS posted \
             FROM sim_transactions t WHERE t.kind = 'ecash_clearing' AND ltrim(t.acquirer, '0') = ltrim($1, '0')",
        )
        .bind(acquirer)
        .fetch_all(&mut bank)
        .await
        .map_err(failed)?
        {
            clearings
                .entry((text(&row, "stan"), text(&row, "transmission_time")))
                .or_default()
                .push((text(&row, "response_code"), number(&row, "posted")));
        }
        let ecash = sqlx::query(
            "SELECT c.pan_last4, COALESCE(SUM(CASE WHEN l.debit THEN -l.amount ELSE l.amount END), 0) AS balance \
             FROM sim_cards c JOIN sim_ledger l ON l.account = 'ecash:' || c.account_id GROUP BY c.pan_last4",
        )
        .fetch_all(&mut bank)
        .await
        .map_err(failed)?
        .iter()
        .map(|row| (text(row, "pan_last4"), number(row, "balance")))
        .collect();
        let _ = bank.close().await;

        let mut platform = store.open().await?;
        let facts = read_platform(&mut platform, acquirer).await;
        platform.close().await;
        let PlatformFacts {
            journal,
            advices_pending,
            mapping_breaks,
            tokens_checked,
            token_states,
        } = facts?;
        Ok(Facts {
            bank: purchases,
            journal,
            ledger_debits: number(&totals, "debits"),
            ledger_credits: number(&totals, "credits"),
            accounts,
            accounts_checked,
            acquirer_net,
            advices_pending,
            mapping_breaks,
            tokens_checked,
            token_states,
            deposits,
            clearings,
            ecash,
        })
    }
}

/// What the platform's store holds.
struct PlatformFacts {
    /// The journal's answer to each purchase.
    journal: HashMap<(String, String), Option<String>>,
    advices_pending: i64,
    mapping_breaks: Vec<String>,
    tokens_checked: i64,
    token_states: HashMap<String, String>,
}

async fn read_platform(
    platform: &mut StoreReader,
    acquirer: &str,
) -> Result<PlatformFacts, String> {
    let journal = platform
        .rows(
            "SELECT stan, transmission_time, response_code FROM switch_journal \
             WHERE mti = '0200' AND acquirer_id = $1",
            &[acquirer],
        )
        .await?
        .into_iter()
        .map(|mut row| {
            let answer = row.pop().flatten();
            let time = row.pop().flatten().unwrap_or_default();
            let stan = row.pop().flatten().unwrap_or_default();
            ((stan, time), answer)
        })
        .collect();
    let advices_pending = platform.count(ADVICES_PENDING).await?;
    let mut mapping_breaks = Vec::new();
    for row in platform
        .rows(
            "SELECT card_id, device_id, CAST(COUNT(*) AS TEXT) FROM tokens WHERE NOT deleted \
             GROUP BY card_id, device_id HAVING COUNT(*) > 1",
            &[],
        )
        .await?
    {
        let [card, device, live] = cells(row);
        mapping_breaks.push(format!(
            "card {card} has {live} live tokens on device {device}"
        ));
    }
    for row in platform
        .rows(
            "SELECT device_id, CAST(COUNT(*) AS TEXT) FROM tokens WHERE is_default \
             GROUP BY device_id HAVING COUNT(*) > 1",
            &[],
        )
        .await?
    {
        let [device, defaults] = cells(row);
        mapping_breaks.push(format!("device {device} has {defaults} default cards"));
    }
    let tokens_checked = platform
        .count("SELECT CAST(COUNT(*) AS TEXT) FROM tokens")
        .await?;
    let token_states = platform
        .rows("SELECT id, status FROM tokens", &[])
        .await?
        .into_iter()
        .map(|row| {
            let [id, status] = cells(row);
            (id, status)
        })
        .collect();
    Ok(PlatformFacts {
        journal,
        advices_pending,
        mapping_breaks,
        tokens_checked,
        token_states,
    })
}

/// A row's N columns, NULL as empty.
fn cells<const N: usize>(row: Vec<Option<String>>) -> [String; N] {
    let mut cells = row.into_iter().map(Option::unwrap_or_default);
    std::array::from_fn(|_| cells.next().unwrap_or_default())
}

fn name(attempt: &Attempt) -> String {
    format!(
        "{} STAN {} at {} ({} fen, chaos card {})",
        attempt.terminal, attempt.stan, attempt.transmission_time, attempt.amount, attempt.card
    )
}

/// Whether the attempt's money should have stayed moved: approved and not voided.
fn should_stand(attempt: &Attempt) -> bool {
    attempt.answer == Answer::Approved
        && !matches!(&attempt.void, Some(Void::Acknowledged(code)) if code == "00")
}

/// Every invariant over the attempts, the churned tokens' lives and the facts;
/// `reversals_left` are the terminals' reversals still unacknowledged when the load was
/// drained.
pub fn check(
    load: &Load<'_>,
    lives: &[TokenLife],
    deposits: &[Deposit],
    facts: &Facts,
    reversals_left: usize,
) -> Vec<Check> {
    let attempts = load.attempts;
    let mut posted = Check::new("approved at a terminal → posted once at the bank");
    let mut voided = Check::new("voided at a terminal → reversed once at the bank");
    let mut not_posted = Check::new("declined, unanswered or not sent → nothing posted");
    let mut created = Check::new("posted at the bank → approved at a terminal");
    let mut replays = Check::new("a cryptogram's ATC is accepted once");
    let mut journal = Check::new("the answer a terminal got is the journal's");
    let mut by_key: HashMap<(&str, &str), &Attempt> = HashMap::new();
    for attempt in attempts {
        by_key.insert((&attempt.stan, &attempt.transmission_time), attempt);
        let key = (attempt.stan.clone(), attempt.transmission_time.clone());
        let bank = facts.bank.get(&key);
        let stands = bank.is_some_and(BankPurchase::stands);
        let what_bank = || {
            bank.map_or(
                "the bank has no record of it".into(),
                BankPurchase::describe,
            )
        };
        if attempt.kind == Kind::Replay {
            replays.expect(attempt.answer != Answer::Approved, || {
                format!("{}: a replayed cryptogram was approved", name(attempt))
            });
        }
        match (&attempt.answer, &attempt.void) {
            (Answer::Approved, Some(Void::Acknowledged(code))) if code == "00" => {
                voided.expect(!stands, || {
                    format!("{}: voided, but {}", name(attempt), what_bank())
                });
            }
            (Answer::Approved, Some(Void::Owed)) => voided.expect(false, || {
                format!("{}: its void was never acknowledged", name(attempt))
            }),
            (Answer::Approved, _) => posted.expect(
                stands && bank.is_some_and(|b| b.posted == attempt.amount as i64),
                || format!("{}: approved, but {}", name(attempt), what_bank()),
            ),
            (answer, _) => not_posted.expect(!stands, || {
                format!(
                    "{}: {answer:?} at the terminal, but {}",
                    name(attempt),
                    what_bank()
                )
            }),
        }
        if let Answer::Approved | Answer::Declined(_) = &attempt.answer {
            let given = match &attempt.answer {
                Answer::Approved => "00",
                Answer::Declined(code) => code.as_str(),
                _ => "",
            };
            let recorded = facts.journal.get(&key);
            // The switch refuses with 96 a request it cannot journal on arrival, and sends
            // nothing of it on: the journal then holds no such request ("nothing posted"
            // checks the bank's side).
            let refused_unrecorded = given == "96" && recorded.is_none();
            journal.expect(
                refused_unrecorded || recorded.is_some_and(|code| code.as_deref() == Some(given)),
                || {
                    format!(
                        "{}: the terminal got {given}, the journal holds {}",
                        name(attempt),
                        match recorded {
                            None => "no such request".to_owned(),
                            Some(None) => "no answer".to_owned(),
                            Some(Some(code)) => code.clone(),
                        }
                    )
                },
            );
        }
    }
    for ((stan, time), bank) in &facts.bank {
        if bank.stands() {
            created.expect(
                by_key
                    .get(&(stan.as_str(), time.as_str()))
                    .is_some_and(|attempt| should_stand(attempt)),
                || {
                    format!(
                        "STAN {stan} at {time}: {} and no terminal holds it approved",
                        bank.describe()
                    )
                },
            );
        }
    }

    let mut ledger = Check::new("the ledger balances (debits = credits)");
    ledger.expect(facts.ledger_debits == facts.ledger_credits, || {
        format!(
            "debits {} fen, credits {} fen",
            facts.ledger_debits, facts.ledger_credits
        )
    });
    let mut accounts = Check::new("every account's balance = its ledger entries");
    accounts.checked = facts.accounts_checked;
    for (account, balance, entries) in &facts.accounts {
        accounts
            .violations
            .push(format!("{account}: balance {balance}, entries {entries}"));
    }
    let mut moved = Check::new("the acquirer is owed exactly what stands approved");
    // A load moves money from the card's account to its e-cash, not to the acquirer; an
    // offline spend's clearing moves it from the e-cash to the acquirer.
    let expected: i64 = attempts
        .iter()
        .filter(|attempt| should_stand(attempt) && attempt.kind != Kind::EcashLoad)
        .map(|attempt| attempt.amount as i64)
        .sum::<i64>()
        + load
            .offline
            .iter()
            .filter(|spend| spend.cleared.as_deref() == Some("00"))
            .map(|spend| spend.amount as i64)
            .sum::<i64>();
    moved.expect(facts.acquirer_net == expected, || {
        format!(
            "the bank owes the acquirer {} fen; the terminals hold {expected} fen approved",
            facts.acquirer_net
        )
    });
    let mut drained = Check::new("no reversal left at a terminal, no advice stuck");
    drained.expect(reversals_left == 0, || {
        format!("{reversals_left} reversals never acknowledged")
    });
    drained.expect(facts.advices_pending == 0, || {
        format!(
            "{} store-and-forward advices never acknowledged",
            facts.advices_pending
        )
    });
    let mut mapping = Check::new("one live token per card and device, one default per device");
    mapping.checked = u64::try_from(facts.tokens_checked).unwrap_or(0);
    mapping
        .violations
        .extend(facts.mapping_breaks.iter().cloned());
    let (barred, states) = check_lives(attempts, lives, facts);
    let paid_in = check_deposits(deposits, facts);
    let (cleared, ecash) = check_ecash(load, facts);
    vec![
        posted, voided, not_posted, created, replays, journal, ledger, accounts, moved, drained,
        mapping, barred, states, paid_in, cleared, ecash,
    ]
}

/// Every offline spend a card approved is cleared once at the bank, for its amount; the
/// phones' e-cash is what the bank holds for their cards.
fn check_ecash(load: &Load<'_>, facts: &Facts) -> (Check, Check) {
    let mut cleared = Check::new("an offline spend the card approved is cleared once at the bank");
    for spend in load.offline {
        let records = facts
            .clearings
            .get(&(spend.stan.clone(), spend.transmission_time.clone()));
        let once = records.is_some_and(|records| {
            records.len() == 1 && records[0] == ("00".to_owned(), spend.amount as i64)
        });
        cleared.expect(spend.cleared.as_deref() == Some("00") && once, || {
            format!(
                "{} STAN {} at {} ({} fen offline, chaos card {}): the upload got {}, the bank holds {:?}",
                spend.terminal,
                spend.stan,
                spend.transmission_time,
                spend.amount,
                spend.card,
                spend.cleared.as_deref().unwrap_or("no final answer"),
                records.map(Vec::as_slice).unwrap_or_default()
            )
        });
    }
    let mut ecash = Check::new("the phones' e-cash is what the bank holds for their cards");
    for (index, card) in CARDS.iter().enumerate() {
        let phones: i64 = load
            .ecash
            .iter()
            .filter(|(of, _)| *of == index)
            .map(|(_, fen)| *fen as i64)
            .sum();
        let last4 = &card.number[card.number.len() - 4..];
        let bank = facts.ecash.get(last4).copied().unwrap_or(0);
        ecash.expect(phones == bank, || {
            format!(
                "chaos card {index}: the phones hold {phones} fen of e-cash, the bank {bank} fen"
            )
        });
    }
    (cleared, ecash)
}

/// Every deposit the bank acknowledged is in its books once for its amount (one that went
/// unanswered at most once), and the books hold no deposit the teller never made.
fn check_deposits(deposits: &[Deposit], facts: &Facts) -> Check {
    let mut paid_in = Check::new("a deposit is paid in once, and only the teller's");
    for deposit in deposits {
        let booked = facts.deposits.get(&deposit.reference);
        paid_in.expect(
            match booked {
                Some(amount) => *amount == deposit.amount,
                None => !deposit.acknowledged,
            },
            || {
                format!(
                    "deposit {} of {} fen to chaos card {}: the bank holds {}",
                    deposit.reference,
                    deposit.amount,
                    deposit.card,
                    booked.map_or("none".into(), |amount| format!("{amount} fen"))
                )
            },
        );
    }
    for reference in facts.deposits.keys() {
        paid_in.expect(
            deposits
                .iter()
                .any(|deposit| &deposit.reference == reference),
            || format!("deposit {reference} at the bank was never made by the teller"),
        );
    }
    paid_in
}

/// The churned tokens: no tap approved after a suspension or deletion was acknowledged, and
/// each token's state is its last acknowledged change (or the change whose answer was lost).
fn check_lives(attempts: &[Attempt], lives: &[TokenLife], facts: &Facts) -> (Check, Check) {
    let mut barred = Check::new("a suspended or deleted token is never approved");
    let mut states = Check::new("a token's state is its last acknowledged change");
    for life in lives {
        for index in &life.barred_taps {
            let approved = attempts
                .get(*index)
                .is_some_and(|attempt| attempt.answer == Answer::Approved);
            barred.expect(!approved, || {
                format!(
                    "token {} ({}): a tap after its {} was acknowledged was approved",
                    life.token_id,
                    life.device_id,
                    life.acknowledged.as_str()
                )
            });
        }
        let stored = facts.token_states.get(&life.token_id).map(String::as_str);
        let allowed = |state: Option<super::lifecycle::TokenState>| {
            state.is_some_and(|state| stored == Some(state.as_str()))
        };
        states.expect(
            life.refused.is_none() && (allowed(Some(life.acknowledged)) || allowed(life.unsure)),
            || match &life.refused {
                Some(refusal) => format!(
                    "token {} ({}): the token service refused {refusal}",
                    life.token_id, life.device_id
                ),
                None => format!(
                    "token {} ({}): acknowledged {}{}, the store holds {}",
                    life.token_id,
                    life.device_id,
                    life.acknowledged.as_str(),
                    life.unsure
                        .map(|state| format!(" (or unanswered {})", state.as_str()))
                        .unwrap_or_default(),
                    stored.unwrap_or("no such token")
                ),
            },
        );
    }
    (barred, states)
}

#[cfg(test)]
mod tests {
    use super::super::lifecycle::TokenState;
    use super::*;

    fn attempt(stan: &str, answer: Answer) -> Attempt {
        Attempt {
            terminal: "CPPOS001",
            card: 0,
            kind: Kind::Tap,
            stan: stan.into(),
            transmission_time: "1205233904".into(),
            amount: 15,
            answer,
            void: None,
        }
    }

    /// The bank holds nothing; the journal holds what is given.
    fn facts(journal: &[(&str, Option<&str>)]) -> Facts {
        Facts {
            bank: HashMap::new(),
            journal: journal
                .iter()
                .map(|(stan, code)| {
                    (
                        ((*stan).to_owned(), "1205233904".to_owned()),
                        code.map(str::to_owned),
                    )
                })
                .collect(),
            ledger_debits: 0,
            ledger_credits: 0,
            accounts: Vec::new(),
            accounts_checked: 0,
            acquirer_net: 0,
            advices_pending: 0,
            mapping_breaks: Vec::new(),
            tokens_checked: 0,
            token_states: HashMap::new(),
            deposits: HashMap::new(),
            clearings: HashMap::new(),
            ecash: HashMap::new(),
        }
    }

    fn taps(attempts: &[Attempt]) -> Load<'_> {
        Load {
            attempts,
            offline: &[],
            ecash: &[],
        }
    }

    fn ecash_violations(
        offline: &[OfflineSpend],
        ecash: &[(usize, u64)],
        facts: &Facts,
    ) -> (usize, usize) {
        let load = Load {
            attempts: &[],
            offline,
            ecash,
        };
        let (cleared, held) = check_ecash(&load, facts);
        (cleared.violations.len(), held.violations.len())
    }

    #[test]
    fn an_offline_spend_cleared_never_or_twice_and_e_cash_out_of_step_are_violations() {
        let spend = OfflineSpend {
            terminal: "CPPOS001",
            card: 0,
            stan: "000010".into(),
            transmission_time: "1205233904".into(),
            amount: 30,
            cleared: Some("00".into()),
        };
        let key = ("000010".to_owned(), "1205233904".to_owned());
        let mut cleared_once = facts(&[]);
        cleared_once
            .clearings
            .insert(key.clone(), vec![("00".into(), 30)]);
        // The phone loaded 100 and spent 30; the bank holds 70 for card 0 (last digits 0048).
        cleared_once.ecash.insert("0048".into(), 70);
        assert_eq!(
            ecash_violations(std::slice::from_ref(&spend), &[(0, 70)], &cleared_once),
            (0, 0)
        );
        assert_eq!(
            ecash_violations(std::slice::from_ref(&spend), &[(0, 100)], &cleared_once),
            (0, 1)
        );
        assert_eq!(
            ecash_violations(std::slice::from_ref(&spend), &[(0, 70)], &facts(&[])),
            (1, 1)
        );
        let mut twice = cleared_once;
        twice
            .clearings
            .insert(key, vec![("00".into(), 30), ("00".into(), 30)]);
        assert_eq!(
            ecash_violations(std::slice::from_ref(&spend), &[(0, 70)], &twice).0,
            1
        );
        let unanswered = OfflineSpend {
            cleared: None,
            ..spend
        };
        assert_eq!(ecash_violations(&[unanswered], &[(0, 70)], &twice).0, 1);
    }

    fn journal_violations(attempts: &[Attempt], facts: &Facts) -> Vec<String> {
        check(&taps(attempts), &[], &[], facts, 0)
            .into_iter()
            .find(|check| check.name == "the answer a terminal got is the journal's")
            .unwrap()
            .violations
    }

    #[test]
    fn a_96_refusal_the_journal_never_recorded_is_no_violation_but_an_unrecorded_answer_is() {
        let refused = [attempt("000001", Answer::Declined("96".into()))];
        assert!(journal_violations(&refused, &facts(&[])).is_empty());
        // Any other answer the journal does not hold is one.
        let declined = [attempt("000002", Answer::Declined("51".into()))];
        assert_eq!(journal_violations(&declined, &facts(&[])).len(), 1);
        let approved = [attempt("000003", Answer::Approved)];
        assert_eq!(
            journal_violations(&approved, &facts(&[("000003", None)])).len(),
            1,
            "approved while the journal holds no answer"
        );
        assert!(journal_violations(&approved, &facts(&[("000003", Some("00"))])).is_empty());
        // A 96 the journal recorded as something else is one too.
        assert_eq!(
            journal_violations(&refused, &facts(&[("000001", Some("00"))])).len(),
            1
        );
    }

    fn life(barred_taps: Vec<usize>, unsure: Option<TokenState>) -> TokenLife {
        TokenLife {
            device_id: "chaos-life-1".into(),
            token_id: "tok_1".into(),
            acknowledged: TokenState::Deleted,
            unsure,
            refused: None,
            changes: 3,
            barred_taps,
        }
    }

    fn violations_of(
        name: &str,
        attempts: &[Attempt],
        lives: &[TokenLife],
        facts: &Facts,
    ) -> usize {
        check(&taps(attempts), lives, &[], facts, 0)
            .into_iter()
            .find(|check| check.name == name)
            .unwrap()
            .violations
            .len()
    }

    #[test]
    fn a_tap_approved_after_a_deletion_and_a_state_no_call_made_are_violations() {
        const BARRED: &str = "a suspended or deleted token is never approved";
        const STATE: &str = "a token's state is its last acknowledged change";
        let mut deleted = facts(&[]);
        deleted
            .token_states
            .insert("tok_1".into(), "deleted".into());
        let refused = [attempt("000001", Answer::Declined("14".into()))];
        let approved = [attempt("000001", Answer::Approved)];
        assert_eq!(
            violations_of(BARRED, &refused, &[life(vec![0], None)], &deleted),
            0
        );
        assert_eq!(
            violations_of(BARRED, &approved, &[life(vec![0], None)], &deleted),
            1
        );
        assert_eq!(
            violations_of(STATE, &refused, &[life(vec![0], None)], &deleted),
            0
        );
        let mut active = facts(&[]);
        active.token_states.insert("tok_1".into(), "active".into());
        assert_eq!(
            violations_of(STATE, &refused, &[life(vec![], None)], &active),
            1
        );
        // A change whose answer was lost may have been made.
        let unsure = life(vec![], Some(TokenState::Active));
        assert_eq!(violations_of(STATE, &refused, &[unsure], &active), 0);
        assert_eq!(
            violations_of(STATE, &refused, &[life(vec![], None)], &facts(&[])),
            1
        );
    }

    #[test]
    fn a_deposit_missing_doubled_in_amount_or_unknown_is_a_violation() {
        let deposit = |reference: &str, acknowledged| Deposit {
            reference: reference.into(),
            card: 1,
            amount: 200_000,
            acknowledged,
        };
        let mut books = facts(&[]);
        books.deposits.insert("chaos-1-1".into(), 200_000);
        let made = [deposit("chaos-1-1", true), deposit("chaos-1-2", false)];
        assert!(check_deposits(&made, &books).violations.is_empty());
        // Acknowledged but not in the books; in the books for another amount; never made.
        assert_eq!(
            check_deposits(&[deposit("chaos-1-2", true)], &books)
                .violations
                .len(),
            2
        );
        books.deposits.insert("chaos-1-1".into(), 400_000);
        assert_eq!(check_deposits(&made, &books).violations.len(), 1);
    }
}

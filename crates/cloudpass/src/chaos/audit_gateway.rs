//! The audit of the merchant's gateway orders (`shop`): what the merchant's final queries,
//! notifications and reconciliation files say against the bank's books for the gateway's
//! acquirer (the sandbox e-commerce acquirer).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use sqlx::{Connection, Row};

use super::audit::{Check, open};
use super::database::PlatformStore;
use super::shop::{ShopFacts, ShopOrder, Trade};

/// What the bank holds of the gateway's purchases.
pub struct GatewayBank {
    /// By (STAN, transmission time): (response code, reversed, what the ledger took).
    purchases: HashMap<(String, String), (String, bool, i64)>,
    /// What the bank owes the gateway's acquirer.
    net: i64,
}

impl GatewayBank {
    pub async fn read(data_dir: &Path, acquirer: &str) -> Result<GatewayBank, String> {
        let mut bank = open(&data_dir.join("issuer-host.sqlite")).await?;
        let failed = |e: sqlx::Error| format!("the audit's query failed: {e}");
        let purchases = sqlx::query(
            "SELECT t.stan, t.transmission_time, t.response_code, t.reversed, \
             COALESCE((SELECT SUM(l.amount) FROM sim_ledger l WHERE l.transaction_id = t.id AND l.debit), 0) AS posted \
             FROM sim_transactions t WHERE t.mti = '0200' AND t.kind = 'purchase' AND ltrim(t.acquirer, '0') = ltrim($1, '0')",
        )
        .bind(acquirer)
        .fetch_all(&mut bank)
        .await
        .map_err(failed)?
        .iter()
        .map(|row| {
            (
                (
                    row.try_get("stan").unwrap_or_default(),
                    row.try_get("transmission_time").unwrap_or_default(),
                ),
                (
                    row.try_get("response_code").unwrap_or_default(),
                    row.try_get::<i64, _>("reversed").unwrap_or_default() != 0,
                    row.try_get("posted").unwrap_or_default(),
                ),
            )
        })
        .collect();
        let net = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN debit THEN -amount ELSE amount END), 0) AS net FROM sim_ledger WHERE account = $1",
        )
        .bind(cloudpass_sim::bank::acquirer_account(acquirer))
        .fetch_one(&mut bank)
        .await
        .map_err(failed)?
        .try_get("net")
        .unwrap_or_default();
        let _ = bank.close().await;
        Ok(GatewayBank { purchases, net })
    }
}

/// One of the gateway's orders as its store holds it.
#[derive(Debug, Clone, Default)]
pub struct StoredOrder {
    pub tn: String,
    pub order_id: String,
    pub kind: String,
    pub status: String,
    pub amount: i64,
    pub refunded: i64,
    pub refund_reserved: i64,
    pub original_tn: Option<String>,
}

/// Every order in the gateway's store.
pub async fn stored_orders(store: &PlatformStore) -> Result<Vec<StoredOrder>, String> {
    let mut platform = store.open().await?;
    let rows = platform
        .rows(
            "SELECT tn, order_id, kind, status, CAST(amount AS TEXT), CAST(refunded AS TEXT), \
             CAST(refund_reserved AS TEXT), original_tn FROM gateway_orders",
            &[],
        )
        .await;
    platform.close().await;
    let number =
        |value: &Option<String>| value.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(rows?
        .iter()
        .map(|row| StoredOrder {
            tn: row[0].clone().unwrap_or_default(),
            order_id: row[1].clone().unwrap_or_default(),
            kind: row[2].clone().unwrap_or_default(),
            status: row[3].clone().unwrap_or_default(),
            amount: number(&row[4]),
            refunded: number(&row[5]),
            refund_reserved: number(&row[6]),
            original_tn: row[7].clone(),
        })
        .collect())
}

fn name(order: &ShopOrder) -> String {
    format!(
        "order {} ({} txnType {}, {} fen)",
        order.order_id,
        order.txn_time,
        order.trade.txn_type(),
        order.amount
    )
}

/// The gateway's invariants.
pub fn check(shop: &ShopFacts, bank: &GatewayBank, stored: &[StoredOrder]) -> Vec<Check> {
    let undone: HashSet<&str> = shop
        .orders
        .iter()
        .filter(|order| order.trade == Trade::Undo && order.succeeded())
        .filter_map(|order| order.of.as_deref())
        .collect();
    vec![
        paid_once(shop, bank, &undone),
        nothing_unordered(shop, bank, &undone),
        owed(shop, bank),
        settled(shop),
        notified(shop),
        reconciled(shop),
        consumes_know_their_returns(stored),
    ]
}

/// Each consume in the gateway's store holds what its returns did: refunded the sum of its
/// refunds that succeeded, undone exactly when its undo succeeded, nothing left reserved.
fn consumes_know_their_returns(stored: &[StoredOrder]) -> Check {
    let mut check = Check::new("a gateway consume holds what its returns did");
    let mut refunded: HashMap<&str, i64> = HashMap::new();
    let mut undone: HashSet<&str> = HashSet::new();
    for order in stored
        .iter()
        .filter(|o| o.kind != "consume" && o.status == "paid")
    {
        let Some(original) = order.original_tn.as_deref() else {
            continue;
        };
        match order.kind.as_str() {
            "undo" => {
                undone.insert(original);
            }
            _ => *refunded.entry(original).or_insert(0) += order.amount,
        }
    }
    for consume in stored.iter().filter(|o| o.kind == "consume") {
        let returned = refunded.get(consume.tn.as_str()).copied().unwrap_or(0);
        let was_undone = undone.contains(consume.tn.as_str());
        check.expect(
            consume.refunded == returned
                && consume.refund_reserved == 0
                && (consume.status == "undone") == was_undone,
            || {
                format!(
                    "consume {} ({} fen, {}): refunded {} and reserved {} fen, its refunds that succeeded {returned} fen{}",
                    consume.order_id,
                    consume.amount,
                    consume.status,
                    consume.refunded,
                    consume.refund_reserved,
                    if was_undone { ", undone" } else { "" }
                )
            },
        );
    }
    check
}

fn paid_once(shop: &ShopFacts, bank: &GatewayBank, undone: &HashSet<&str>) -> Check {
    let mut check =
        Check::new("a paid gateway order is posted once at the bank, an undone one reversed");
    for order in shop
        .orders
        .iter()
        .filter(|o| o.trade == Trade::Consume && o.succeeded())
    {
        let Some(settled) = &order.settled else {
            continue;
        };
        let record = bank
            .purchases
            .get(&(settled.trace_no.clone(), settled.trace_time.clone()));
        let was_undone = undone.contains(order.order_id.as_str());
        check.expect(
            record.is_some_and(|(code, reversed, posted)| {
                code == "00" && *posted == order.amount && *reversed == was_undone
            }),
            || match record {
                None => format!("{}: paid, but the bank has no record of STAN {}", name(order), settled.trace_no),
                Some((code, reversed, posted)) => format!(
                    "{}: paid{}, but the bank's record is {code}, reversed {reversed}, posted {posted} fen",
                    name(order),
                    if was_undone { " and undone" } else { "" }
                ),
            },
        );
    }
    check
}

fn nothing_unordered(shop: &ShopFacts, bank: &GatewayBank, undone: &HashSet<&str>) -> Check {
    let mut check = Check::new("posted at the bank for the gateway → a paid order");
    let paid: HashSet<(&str, &str)> = shop
        .orders
        .iter()
        .filter(|o| {
            o.trade == Trade::Consume && o.succeeded() && !undone.contains(o.order_id.as_str())
        })
        .filter_map(|o| {
            o.settled
                .as_ref()
                .map(|s| (s.trace_no.as_str(), s.trace_time.as_str()))
        })
        .collect();
    for ((stan, time), (code, reversed, posted)) in &bank.purchases {
        let stands = code == "00" && !reversed;
        if stands {
            check.expect(paid.contains(&(stan.as_str(), time.as_str())), || {
                format!("STAN {stan} at {time}: the bank posted {posted} fen the merchant's orders do not hold paid")
            });
        }
    }
    check
}

fn owed(shop: &ShopFacts, bank: &GatewayBank) -> Check {
    let mut check = Check::new("the bank owes the gateway what the merchant's orders say");
    let signed_amount = |order: &ShopOrder| match order.trade {
        Trade::Consume => order.amount,
        Trade::Undo | Trade::Refund => -order.amount,
    };
    let expected: i64 = shop
        .orders
        .iter()
        .filter(|order| order.succeeded())
        .map(signed_amount)
        .sum();
    check.expect(bank.net == expected, || {
        format!(
            "the bank owes the gateway's acquirer {} fen; the orders paid less returned come to {expected} fen",
            bank.net
        )
    });
    check
}

fn settled(shop: &ShopFacts) -> Check {
    let mut check = Check::new("no gateway order is left in flight");
    for order in &shop.orders {
        check.expect(
            order.settled.as_ref().is_some_and(|s| s.code != "05"),
            || match &order.settled {
                None => format!("{}: no query was answered", name(order)),
                Some(_) => format!("{}: still in flight (05) after the sweep", name(order)),
            },
        );
    }
    check
}

fn notified(shop: &ShopFacts) -> Check {
    let mut check = Check::new("every gateway success was notified to the merchant");
    for order in shop.orders.iter().filter(|order| order.succeeded()) {
        check.expect(
            shop.notified
                .contains(&(order.order_id.clone(), order.trade.txn_type().to_owned())),
            || format!("{}: succeeded, never notified", name(order)),
        );
    }
    check
}

fn reconciled(shop: &ShopFacts) -> Check {
    let mut check = Check::new("the reconciliation file holds exactly the successes");
    for day in &shop.files_missing {
        check.expect(false, || {
            format!("the file of clearing day {day} could not be had")
        });
    }
    let mut lines: BTreeMap<(String, String, String, i64), i64> = BTreeMap::new();
    for line in &shop.file_lines {
        *lines.entry(line.clone()).or_insert(0) += 1;
    }
    for order in shop.orders.iter().filter(|order| order.succeeded()) {
        let Some(settled) = &order.settled else {
            continue;
        };
        let key = (
            settled.query_id.clone(),
            order.trade.txn_type().to_owned(),
            order.order_id.clone(),
            order.amount,
        );
        let count = lines.remove(&key).unwrap_or(0);
        check.expect(count == 1, || {
            format!("{}: {count} lines in the reconciliation file", name(order))
        });
    }
    for ((query_id, txn_type, order_id, amount), _) in lines {
        check.expect(false, || {
            format!("the file has {order_id} (queryId {query_id}, txnType {txn_type}, {amount} fen), which no success of the merchant's is")
        });
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::shop::Settled;

    fn order(
        id: &str,
        trade: Trade,
        amount: i64,
        of: Option<&str>,
        query_id: &str,
        stan: &str,
    ) -> ShopOrder {
        ShopOrder {
            order_id: id.into(),
            txn_time: "20261206120000".into(),
            trade,
            amount,
            of: of.map(Into::into),
            settled: Some(Settled {
                code: "00".into(),
                query_id: query_id.into(),
                trace_no: stan.into(),
                trace_time: "1206120000".into(),
                settle_date: "1206".into(),
            }),
        }
    }

    /// A consume of 500 fen, refunded 200; its bank record, notifications and file lines.
    fn consistent() -> (ShopFacts, GatewayBank) {
        let orders = vec![
            order("C1", Trade::Consume, 500, None, "Q1", "000001"),
            order("R1", Trade::Refund, 200, Some("C1"), "Q2", "000002"),
        ];
        let facts = ShopFacts {
            notified: orders
                .iter()
                .map(|o| (o.order_id.clone(), o.trade.txn_type().to_owned()))
                .collect(),
            file_lines: vec![
                ("Q1".into(), "01".into(), "C1".into(), 500),
                ("Q2".into(), "04".into(), "R1".into(), 200),
            ],
            files_missing: Vec::new(),
            orders,
        };
        let bank = GatewayBank {
            purchases: HashMap::from([(
                ("000001".to_owned(), "1206120000".to_owned()),
                ("00".to_owned(), false, 500),
            )]),
            net: 300,
        };
        (facts, bank)
    }

    fn broken(facts: &ShopFacts, bank: &GatewayBank) -> Vec<&'static str> {
        check(facts, bank, &[])
            .into_iter()
            .filter(|c| !c.violations.is_empty())
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn a_consume_that_missed_its_refund_is_a_violation() {
        // As chaos seed 1 found it: the refund succeeded, its consume never heard.
        let consume = StoredOrder {
            tn: "T1".into(),
            order_id: "CHAOS1N0000482".into(),
            kind: "consume".into(),
            status: "paid".into(),
            amount: 2737,
            ..StoredOrder::default()
        };
        let refund = StoredOrder {
            tn: "T2".into(),
            order_id: "CHAOS1R0000482".into(),
            kind: "refund".into(),
            status: "paid".into(),
            amount: 1505,
            original_tn: Some("T1".into()),
            ..StoredOrder::default()
        };
        let held = consumes_know_their_returns(&[consume.clone(), refund.clone()]);
        assert_eq!(held.violations.len(), 1);
        let told = StoredOrder {
            status: "partly_refunded".into(),
            refunded: 1505,
            ..consume
        };
        assert!(
            consumes_know_their_returns(&[told, refund])
                .violations
                .is_empty()
        );
    }

    #[test]
    fn consistent_facts_pass() {
        let (facts, bank) = consistent();
        assert!(broken(&facts, &bank).is_empty());
    }

    #[test]
    fn each_inconsistency_is_named() {
        let (facts, mut bank) = consistent();
        bank.net = 500;
        assert_eq!(
            broken(&facts, &bank),
            ["the bank owes the gateway what the merchant's orders say"]
        );

        let (facts, mut bank) = consistent();
        bank.purchases.insert(
            ("000009".into(), "1206120000".into()),
            ("00".into(), false, 700),
        );
        assert_eq!(
            broken(&facts, &bank),
            ["posted at the bank for the gateway → a paid order"]
        );

        let (facts, mut bank) = consistent();
        bank.purchases.clear();
        assert_eq!(
            broken(&facts, &bank),
            ["a paid gateway order is posted once at the bank, an undone one reversed"]
        );

        let (mut facts, bank) = consistent();
        facts.notified.clear();
        assert_eq!(
            broken(&facts, &bank),
            ["every gateway success was notified to the merchant"]
        );

        let (mut facts, bank) = consistent();
        facts
            .file_lines
            .push(("Q1".into(), "01".into(), "C1".into(), 500));
        assert_eq!(
            broken(&facts, &bank),
            ["the reconciliation file holds exactly the successes"]
        );

        let (mut facts, bank) = consistent();
        if let Some(settled) = facts.orders[1].settled.as_mut() {
            settled.code = "05".into();
        }
        assert!(broken(&facts, &bank).contains(&"no gateway order is left in flight"));
    }
}

//! The console's rows, made from the store's: times in Beijing time, amounts in yuan, card
//! and token numbers masked. Pure functions; the pages only show them.

use std::collections::BTreeMap;

use cloudpass_core::card_number::mask_digits;
use cloudpass_core::discount::Campaign;
use cloudpass_core::{Currency, Money};
use cloudpass_store::{HistoryRow, JournalRow, NotificationRow, OrderRow, TokenRow};

/// `2026-12-04 18:30:05` (Beijing) of unix milliseconds.
pub fn beijing(unix_millis: i64) -> String {
    let text = cloudpass_upacp::time::format_beijing(unix_millis.div_euclid(1_000));
    format!(
        "{}-{}-{} {}:{}:{}",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[8..10],
        &text[10..12],
        &text[12..14]
    )
}

fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let money = Money::new(fen.unsigned_abs(), Currency::CNY);
    format!("{sign}{}", money.to_decimal_string())
}

pub struct OrderLine {
    pub tn: String,
    pub mer_id: String,
    pub order_id: String,
    pub kind: String,
    pub channel: String,
    pub amount: String,
    /// The sponsor's part and its campaign ("5.00 · CQP202612001"), when a campaign paid
    /// part of it.
    pub discount: Option<String>,
    pub refunded: String,
    pub status: String,
    pub card: String,
    pub card_type: &'static str,
    pub query_id: String,
    pub original_tn: String,
    pub response_code: String,
    pub created: String,
    pub updated: String,
}

/// A campaign's budget as the overview shows it.
pub struct CampaignLine {
    pub id: &'static str,
    pub name: &'static str,
    pub spent_fen: u64,
    pub spent: String,
    pub budget: String,
}

/// `campaign` with what it has spent, named in the page's language (`zh-CN` or `en`).
pub fn campaign_line(campaign: &Campaign, spent_fen: u64, lang: &str) -> CampaignLine {
    let fen = |amount: u64| yuan(i64::try_from(amount).unwrap_or(i64::MAX));
    CampaignLine {
        id: campaign.id,
        name: if lang == "en" {
            campaign.name_en
        } else {
            campaign.name_zh
        },
        spent_fen,
        spent: fen(spent_fen),
        budget: fen(campaign.budget),
    }
}

pub fn order_line(row: &OrderRow) -> OrderLine {
    OrderLine {
        tn: row.tn.clone(),
        mer_id: row.mer_id.clone(),
        order_id: row.order_id.clone(),
        kind: row.kind.clone(),
        channel: row.channel.clone(),
        amount: yuan(row.amount),
        discount: row
            .campaign_id
            .as_deref()
            .filter(|_| row.discount > 0)
            .map(|campaign| format!("{} · {campaign}", yuan(row.discount))),
        refunded: yuan(row.refunded),
        status: row.status.clone(),
        // Stored masked already; masked again so nothing longer can ever show.
        card: row
            .pay_card_masked
            .as_deref()
            .map(mask_digits)
            .unwrap_or_default(),
        card_type: match row.pay_card_type.as_deref() {
            Some("01") => "debit",
            Some("02") => "credit",
            _ => "",
        },
        query_id: row.query_id.clone().unwrap_or_default(),
        original_tn: row.original_tn.clone().unwrap_or_default(),
        response_code: row.pay_response_code.clone().unwrap_or_default(),
        created: beijing(row.created_at),
        updated: beijing(row.updated_at),
    }
}

pub struct NotificationLine {
    pub id: i64,
    pub tn: String,
    pub mer_id: String,
    pub url: String,
    pub attempts: i64,
    /// `delivered`, `gave up` or `retrying`.
    pub state: &'static str,
    pub last_status: String,
    pub next_attempt: String,
    pub created: String,
}

pub fn notification_line(row: &NotificationRow) -> NotificationLine {
    let state = match (row.delivered_at, row.failed_at) {
        (Some(_), _) => "delivered",
        (None, Some(_)) => "gave up",
        (None, None) => "retrying",
    };
    NotificationLine {
        id: row.id,
        tn: row.tn.clone(),
        mer_id: row.mer_id.clone(),
        url: row.url.clone(),
        attempts: row.attempts,
        state,
        last_status: row
            .last_status
            .map_or_else(|| "no answer".to_owned(), |s| s.to_string()),
        next_attempt: if state == "retrying" {
            beijing(row.next_attempt_at)
        } else {
            String::new()
        },
        created: beijing(row.created_at),
    }
}

pub struct JournalLine {
    pub received: String,
    pub mti: String,
    pub acquirer_id: String,
    pub terminal_id: String,
    pub stan: String,
    pub rrn: String,
    pub token: String,
    pub amount: String,
    pub response_code: String,
    pub auth_code: String,
    pub outcome: String,
}

pub fn journal_line(row: &JournalRow) -> JournalLine {
    JournalLine {
        received: beijing(row.received_at),
        mti: row.mti.clone(),
        acquirer_id: row.acquirer_id.clone(),
        terminal_id: row.terminal_id.clone(),
        stan: row.stan.clone(),
        rrn: row.rrn.clone(),
        token: mask_digits(&row.token_masked),
        amount: yuan(row.amount),
        response_code: row.response_code.clone().unwrap_or_default(),
        auth_code: row.auth_code.clone().unwrap_or_default(),
        outcome: row.issuer_outcome.clone().unwrap_or_default(),
    }
}

pub struct TokenLine {
    pub id: String,
    pub token: String,
    pub device_id: String,
    pub requestor: String,
    pub status: String,
    pub is_default: bool,
    pub domains: String,
    pub created: String,
}

pub fn token_line(row: &TokenRow) -> TokenLine {
    let domains: Vec<&str> = [(row.domain_nfc, "nfc"), (row.domain_in_app, "in_app")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
    TokenLine {
        id: row.id.clone(),
        token: mask_digits(&row.token_number),
        device_id: row.device_id.clone(),
        requestor: row.token_requestor_id.clone(),
        status: row.status.clone(),
        is_default: row.is_default,
        domains: domains.join(", "),
        created: beijing(row.created_at),
    }
}

pub struct HistoryLine {
    pub at: String,
    pub event: String,
    pub channel: String,
    pub change: String,
    pub reason: String,
}

pub fn history_line(row: &HistoryRow) -> HistoryLine {
    HistoryLine {
        at: beijing(row.at),
        event: row.event.clone(),
        channel: row.channel.clone(),
        change: match &row.from_status {
            Some(from) => format!("{from} → {}", row.to_status),
            None => row.to_status.clone(),
        },
        reason: row.reason.clone().unwrap_or_default(),
    }
}

/// A counter: what, and how many.
pub type Count = (String, i64);

/// How many of `items` fall under each label, by label.
pub fn tally<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<Count> {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for label in labels {
        *counts.entry(label).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(label, n)| (label.to_owned(), n))
        .collect()
}

/// A journal entry's result: approved (00), declined, or not answered yet.
pub fn journal_result(row: &JournalRow) -> &'static str {
    match row.response_code.as_deref() {
        Some("00") => "approved",
        Some(_) => "declined",
        None => "unanswered",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_beijing_and_amounts_yuan() {
        // 2026-12-04 10:00:00 UTC is 18:00 in Beijing.
        assert_eq!(beijing(1_796_378_400_000), "2026-12-04 18:00:00");
        assert_eq!(yuan(1_250), "12.50");
        assert_eq!(yuan(-5), "-0.05");
    }

    #[test]
    fn counts_are_by_label() {
        let counted = tally(["paid", "issued", "paid"].into_iter());
        assert_eq!(
            counted,
            vec![("issued".to_owned(), 1), ("paid".to_owned(), 2)]
        );
    }

    #[test]
    fn token_numbers_are_masked() {
        assert_eq!(mask_digits("6231180000000101"), "623118******0101");
    }
}

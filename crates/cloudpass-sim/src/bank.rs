//! The issuer host's banking rules, pure: whether to approve a payment on a card, what it
//! posts to the double-entry ledger, and how a reversal undoes it. The issuer host's ISO 8583
//! side (`issuer_iso`) gathers the facts from its database, asks these functions, and writes
//! what they decide in one transaction before it answers.
//!
//! Accounts hold signed balances in minor units: positive is money the bank owes the account
//! holder. A debit card's account starts funded; a credit card's account starts at zero and
//! may go down to minus its credit limit. Every transaction posts entries whose debits equal
//! its credits, so the ledger as a whole always sums to zero.

use cloudpass_core::{Expiry, ResponseCode};

/// Wrong PINs before the card's PIN is blocked.
pub const MAX_PIN_TRIES: i64 = 3;

/// The ledger account that funds opening balances.
pub const FUNDING_ACCOUNT: &str = "bank:funding";

/// The ledger account the bank owes an acquirer for approved payments.
pub fn acquirer_account(acquirer_id: &str) -> String {
    format!("acquirer:{acquirer_id}")
}

/// The ledger account of the e-cash (UPCash) loaded from `account_id` onto its cards: what the
/// bank owes the holder's chips until their offline spends are cleared.
pub fn ecash_account(account_id: &str) -> String {
    format!("ecash:{account_id}")
}

/// A card as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardFacts<'a> {
    pub status: &'a str,
    pub expiry: Expiry,
    pub pin_tries: i64,
}

/// An account as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountFacts {
    pub currency: u16,
    pub balance: i64,
    /// How far below zero the balance may go (credit cards).
    pub credit_limit: i64,
    pub daily_limit: i64,
    /// Spent on `spent_day` (days since the epoch).
    pub daily_spent: i64,
    pub spent_day: i64,
}

/// The outcome of the PIN check, if a PIN came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    Absent,
    Correct,
    Wrong,
}

/// The CVN2 of a card-not-present payment, as checked against the card's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cvn2Check {
    /// None came.
    Absent,
    Matched,
    Wrong,
    /// One came, but the card has no CVN2 on file (a debit card here).
    NotOnFile,
}

/// What proves the holder of a card that is not present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardNotPresent {
    pub cvn2: Cvn2Check,
    /// The card has a CVN2 on file (credit cards): then the CVN2 and the expiry are required;
    /// without one (debit cards) the PIN is.
    pub cvn2_on_file: bool,
}

/// A payment request as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment<'a> {
    pub amount: i64,
    pub currency: u16,
    /// Field 14: the expiry the acquirer (or switch) sent.
    pub expiry: Option<Expiry>,
    pub pin: PinCheck,
    /// Field 61.5 was `2`: the network found the cryptogram wrong.
    pub cryptogram_failed: bool,
    /// A typed card number (60.3.6 = 7) and what came to prove its holder.
    pub card_not_present: Option<CardNotPresent>,
    pub acquirer_id: &'a str,
    /// A load of the card's e-cash from the account (圈存): the PIN is required and the money
    /// goes to the e-cash account instead of the acquirer.
    pub ecash_load: bool,
    pub today: i64,
    pub year: u16,
    pub month: u8,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: String,
    /// Debit (true) or credit.
    pub debit: bool,
    pub amount: i64,
}

/// What the bank decided, and what it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub response: ResponseCode,
    /// The card's PIN try counter afterwards.
    pub pin_tries: i64,
    /// The account afterwards (unchanged unless approved).
    pub account: AccountFacts,
    /// Ledger entries (empty unless approved).
    pub postings: Vec<Posting>,
}

/// Decides a purchase on `card`'s `account` (whose ledger name is `account_id`).
pub fn authorize(
    card: &CardFacts<'_>,
    account: &AccountFacts,
    account_id: &str,
    payment: &Payment<'_>,
) -> Decision {
    let decline = |response, pin_tries| Decision {
        response,
        pin_tries,
        account: *account,
        postings: Vec::new(),
    };
    match card.status {
        "active" => {}
        "lost" => return decline(ResponseCode::LostCard, card.pin_tries),
        "stolen" => return decline(ResponseCode::StolenCard, card.pin_tries),
        _ => return decline(ResponseCode::InvalidCard, card.pin_tries),
    }
    if card.expiry.is_expired_in(payment.year, payment.month) {
        return decline(ResponseCode::ExpiredCard, card.pin_tries);
    }
    if payment.expiry.is_some_and(|given| given != card.expiry) {
        return decline(ResponseCode::ExpiredCard, card.pin_tries);
    }
    if payment.cryptogram_failed {
        return decline(ResponseCode::SecurityViolation, card.pin_tries);
    }
    if let Some(code) = payment
        .card_not_present
        .and_then(|cnp| card_not_present_refusal(&cnp, payment))
    {
        return decline(code, card.pin_tries);
    }
    // The PIN: blocked stays blocked; a wrong one counts; a right one resets the count.
    let pin_tries = match payment.pin {
        PinCheck::Absent if payment.ecash_load => {
            return decline(ResponseCode::ExceedsFrequencyLimit, card.pin_tries);
        }
        PinCheck::Absent => card.pin_tries,
        _ if card.pin_tries >= MAX_PIN_TRIES => {
            return decline(ResponseCode::PinTriesExceeded, card.pin_tries);
        }
        PinCheck::Wrong => {
            let tries = card.pin_tries + 1;
            let code = if tries >= MAX_PIN_TRIES {
                ResponseCode::PinTriesExceeded
            } else {
                ResponseCode::IncorrectPin
            };
            return decline(code, tries);
        }
        PinCheck::Correct => 0,
    };
    if payment.amount <= 0 {
        return decline(ResponseCode::InvalidAmount, pin_tries);
    }
    if payment.currency != account.currency {
        return decline(ResponseCode::InvalidTransaction, pin_tries);
    }
    let spent_today = if account.spent_day == payment.today {
        account.daily_spent
    } else {
        0
    };
    if spent_today.saturating_add(payment.amount) > account.daily_limit {
        return decline(ResponseCode::ExceedsAmountLimit, pin_tries);
    }
    if account.balance.saturating_add(account.credit_limit) < payment.amount {
        return decline(ResponseCode::InsufficientFunds, pin_tries);
    }
    Decision {
        response: ResponseCode::Approved,
        pin_tries,
        account: AccountFacts {
            balance: account.balance - payment.amount,
            daily_spent: spent_today + payment.amount,
            spent_day: payment.today,
            ..*account
        },
        postings: vec![
            Posting {
                account: account_id.to_owned(),
                debit: true,
                amount: payment.amount,
            },
            Posting {
                account: if payment.ecash_load {
                    ecash_account(account_id)
                } else {
                    acquirer_account(payment.acquirer_id)
                },
                debit: false,
                amount: payment.amount,
            },
        ],
    }
}

/// Why a card-not-present payment cannot go on, if it cannot: a credit card needs its CVN2
/// (right) and its expiry (checked above against the card's); a debit card needs its PIN,
/// which the PIN rules then check.
fn card_not_present_refusal(cnp: &CardNotPresent, payment: &Payment<'_>) -> Option<ResponseCode> {
    if cnp.cvn2_on_file {
        if cnp.cvn2 != Cvn2Check::Matched {
            return Some(ResponseCode::Cvn2Mismatch);
        }
        if payment.expiry.is_none() {
            return Some(ResponseCode::ExpiredCard);
        }
        return None;
    }
    (payment.pin == PinCheck::Absent).then_some(ResponseCode::ExceedsFrequencyLimit)
}

/// Clears an offline e-cash spend the card approved: from the e-cash account to the
/// acquirer. The card approved it, so the bank honours it; the account itself is untouched.
pub fn clear_offline(
    account: &AccountFacts,
    account_id: &str,
    acquirer_id: &str,
    amount: i64,
    pin_tries: i64,
) -> Decision {
    Decision {
        response: ResponseCode::Approved,
        pin_tries,
        account: *account,
        postings: vec![
            Posting {
                account: ecash_account(account_id),
                debit: true,
                amount,
            },
            Posting {
                account: acquirer_account(acquirer_id),
                debit: false,
                amount,
            },
        ],
    }
}

/// Undoes an approved purchase: the inverse postings, and the amount back on the account
/// (and off the day's spending, if it is still that day).
pub fn reverse(
    account: &AccountFacts,
    account_id: &str,
    counter_account: &str,
    amount: i64,
    original_day: i64,
) -> Decision {
    let daily_spent = if account.spent_day == original_day {
        (account.daily_spent - amount).max(0)
    } else {
        account.daily_spent
    };
    Decision {
        response: ResponseCode::Approved,
        pin_tries: 0,
        account: AccountFacts {
            balance: account.balance + amount,
            daily_spent,
            ..*account
        },
        postings: vec![
            Posting {
                account: counter_account.to_owned(),
                debit: true,
                amount,
            },
            Posting {
                account: account_id.to_owned(),
                debit: false,
                amount,
            },
        ],
    }
}

/// A return of an approved purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    /// 撤销: the whole amount, the same day, nothing refunded yet.
    Void,
    /// 退货: part or all of what is left, any day.
    Refund,
}

/// The purchase a return names, as far as the rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Returnable {
    pub amount: i64,
    pub refunded: i64,
    /// Reversed or voided already.
    pub reversed: bool,
    pub day: i64,
}

/// Why a return of `amount` cannot be made, if it cannot: 25 when nothing of the purchase
/// is left to return, 13 for an amount the rules refuse, 12 for a void after its day.
pub fn return_refusal(
    kind: Return,
    amount: i64,
    original: &Returnable,
    today: i64,
) -> Option<ResponseCode> {
    let left = original.amount - original.refunded;
    let amount_ok = match kind {
        Return::Void => amount == original.amount && original.refunded == 0,
        Return::Refund => amount > 0 && amount <= left,
    };
    if original.reversed || left <= 0 {
        Some(ResponseCode::OriginalNotFound)
    } else if !amount_ok {
        Some(ResponseCode::InvalidAmount)
    } else if kind == Return::Void && original.day != today {
        Some(ResponseCode::InvalidTransaction)
    } else {
        None
    }
}

/// Posts a purchase the network approved on the issuer's behalf (stand-in, 0220 advice):
/// the bank must honour it, so it is debited whatever the balance, and counts towards the
/// day's spending.
pub fn post_advice(
    account: &AccountFacts,
    account_id: &str,
    acquirer_id: &str,
    amount: i64,
    today: i64,
    pin_tries: i64,
) -> Decision {
    let daily_spent = if account.spent_day == today {
        account.daily_spent + amount
    } else {
        amount
    };
    Decision {
        response: ResponseCode::Approved,
        pin_tries,
        account: AccountFacts {
            balance: account.balance - amount,
            daily_spent,
            spent_day: today,
            ..*account
        },
        postings: vec![
            Posting {
                account: account_id.to_owned(),
                debit: true,
                amount,
            },
            Posting {
                account: acquirer_account(acquirer_id),
                debit: false,
                amount,
            },
        ],
    }
}

/// Whether postings balance: debits equal credits.
pub fn balanced(postings: &[Posting]) -> bool {
    let (debits, credits) = postings.iter().fold((0i128, 0i128), |(d, c), p| {
        if p.debit {
            (d + i128::from(p.amount), c)
        } else {
            (d, c + i128::from(p.amount))
        }
    });
    debits == credits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> CardFacts<'static> {
        CardFacts {
            status: "active",
            expiry: "2912".parse().unwrap(),
            pin_tries: 0,
        }
    }

    fn debit_account() -> AccountFacts {
        AccountFacts {
            currency: 156,
            balance: 10_000,
            credit_limit: 0,
            daily_limit: 50_000,
            daily_spent: 0,
            spent_day: 100,
        }
    }

    fn payment(amount: i64) -> Payment<'static> {
        Payment {
            amount,
            currency: 156,
            expiry: Some("2912".parse().unwrap()),
            pin: PinCheck::Absent,
            cryptogram_failed: false,
            card_not_present: None,
            acquirer_id: "48020000",
            ecash_load: false,
            today: 100,
            year: 2026,
            month: 11,
        }
    }

    #[test]
    fn returns_never_give_back_more_than_was_paid() {
        let paid = Returnable {
            amount: 1_000,
            refunded: 0,
            reversed: false,
            day: 100,
        };
        assert_eq!(return_refusal(Return::Void, 1_000, &paid, 100), None);
        assert_eq!(
            return_refusal(Return::Void, 999, &paid, 100),
            Some(ResponseCode::InvalidAmount)
        );
        assert_eq!(
            return_refusal(Return::Void, 1_000, &paid, 101),
            Some(ResponseCode::InvalidTransaction)
        );
        assert_eq!(return_refusal(Return::Refund, 1_000, &paid, 400), None);
        assert_eq!(
            return_refusal(Return::Refund, 1_001, &paid, 100),
            Some(ResponseCode::InvalidAmount)
        );
        assert_eq!(
            return_refusal(Return::Refund, 0, &paid, 100),
            Some(ResponseCode::InvalidAmount)
        );
        let part = Returnable {
            refunded: 600,
            ..paid
        };
        assert_eq!(return_refusal(Return::Refund, 400, &part, 100), None);
        assert_eq!(
            return_refusal(Return::Refund, 401, &part, 100),
            Some(ResponseCode::InvalidAmount)
        );
        assert_eq!(
            return_refusal(Return::Void, 1_000, &part, 100),
            Some(ResponseCode::InvalidAmount)
        );
        let all = Returnable {
            refunded: 1_000,
            ..paid
        };
        assert_eq!(
            return_refusal(Return::Refund, 1, &all, 100),
            Some(ResponseCode::OriginalNotFound)
        );
        let voided = Returnable {
            reversed: true,
            ..paid
        };
        assert_eq!(
            return_refusal(Return::Refund, 1, &voided, 100),
            Some(ResponseCode::OriginalNotFound)
        );
        assert_eq!(
            return_refusal(Return::Void, 1_000, &voided, 100),
            Some(ResponseCode::OriginalNotFound)
        );
    }

    #[test]
    fn card_not_present_needs_cvn2_and_expiry_or_the_pin() {
        let credit = |cvn2, expiry: Option<&str>| Payment {
            expiry: expiry.map(|e| e.parse().unwrap()),
            card_not_present: Some(CardNotPresent {
                cvn2,
                cvn2_on_file: true,
            }),
            ..payment(500)
        };
        let decide = |p: &Payment<'_>| authorize(&card(), &debit_account(), "card:1", p).response;
        assert_eq!(
            decide(&credit(Cvn2Check::Matched, Some("2912"))),
            ResponseCode::Approved
        );
        assert_eq!(
            decide(&credit(Cvn2Check::Wrong, Some("2912"))),
            ResponseCode::Cvn2Mismatch
        );
        assert_eq!(
            decide(&credit(Cvn2Check::Absent, Some("2912"))),
            ResponseCode::Cvn2Mismatch
        );
        assert_eq!(
            decide(&credit(Cvn2Check::Matched, None)),
            ResponseCode::ExpiredCard
        );
        assert_eq!(
            decide(&credit(Cvn2Check::Matched, Some("2812"))),
            ResponseCode::ExpiredCard
        );
        let debit = |pin, cvn2| Payment {
            expiry: None,
            pin,
            card_not_present: Some(CardNotPresent {
                cvn2,
                cvn2_on_file: false,
            }),
            ..payment(500)
        };
        assert_eq!(
            decide(&debit(PinCheck::Absent, Cvn2Check::NotOnFile)),
            ResponseCode::ExceedsFrequencyLimit
        );
        assert_eq!(
            decide(&debit(PinCheck::Wrong, Cvn2Check::Absent)),
            ResponseCode::IncorrectPin
        );
        assert_eq!(
            decide(&debit(PinCheck::Correct, Cvn2Check::Absent)),
            ResponseCode::Approved
        );
        // A declined card-not-present payment posts nothing and counts no PIN try.
        let declined = authorize(
            &card(),
            &debit_account(),
            "card:1",
            &credit(Cvn2Check::Wrong, Some("2912")),
        );
        assert!(declined.postings.is_empty() && declined.pin_tries == 0);
    }

    #[test]
    fn approval_posts_balanced_entries() {
        let decision = authorize(&card(), &debit_account(), "card:1", &payment(1_250));
        assert_eq!(decision.response, ResponseCode::Approved);
        assert_eq!(decision.account.balance, 8_750);
        assert_eq!(decision.account.daily_spent, 1_250);
        assert!(balanced(&decision.postings));
        assert_eq!(decision.postings[1].account, "acquirer:48020000");
        let undone = reverse(
            &decision.account,
            "card:1",
            &acquirer_account("48020000"),
            1_250,
            100,
        );
        assert_eq!(
            (undone.account.balance, undone.account.daily_spent),
            (10_000, 0)
        );
        assert!(balanced(&undone.postings));
    }

    #[test]
    fn declines_name_their_codes() {
        let code = |card: CardFacts<'_>, account: AccountFacts, payment: Payment<'_>| {
            authorize(&card, &account, "card:1", &payment).response
        };
        assert_eq!(
            code(card(), debit_account(), payment(10_001)),
            ResponseCode::InsufficientFunds
        );
        assert_eq!(
            code(card(), debit_account(), payment(10_000)),
            ResponseCode::Approved
        );
        assert_eq!(
            code(
                CardFacts {
                    status: "lost",
                    ..card()
                },
                debit_account(),
                payment(1)
            ),
            ResponseCode::LostCard
        );
        assert_eq!(
            code(
                CardFacts {
                    status: "stolen",
                    ..card()
                },
                debit_account(),
                payment(1)
            ),
            ResponseCode::StolenCard
        );
        assert_eq!(
            code(
                CardFacts {
                    status: "closed",
                    ..card()
                },
                debit_account(),
                payment(1)
            ),
            ResponseCode::InvalidCard
        );
        assert_eq!(
            code(
                card(),
                debit_account(),
                Payment {
                    year: 2030,
                    ..payment(1)
                }
            ),
            ResponseCode::ExpiredCard
        );
        assert_eq!(
            code(
                card(),
                debit_account(),
                Payment {
                    expiry: Some("2811".parse().unwrap()),
                    ..payment(1)
                }
            ),
            ResponseCode::ExpiredCard
        );
        assert_eq!(
            code(
                card(),
                debit_account(),
                Payment {
                    cryptogram_failed: true,
                    ..payment(1)
                }
            ),
            ResponseCode::SecurityViolation
        );
        assert_eq!(
            code(
                card(),
                debit_account(),
                Payment {
                    currency: 840,
                    ..payment(1)
                }
            ),
            ResponseCode::InvalidTransaction
        );
        assert_eq!(
            code(card(), debit_account(), payment(0)),
            ResponseCode::InvalidAmount
        );
        // Daily limit, and a new day starts from zero.
        let spent = AccountFacts {
            daily_spent: 49_000,
            balance: 100_000,
            ..debit_account()
        };
        assert_eq!(
            code(card(), spent, payment(1_001)),
            ResponseCode::ExceedsAmountLimit
        );
        assert_eq!(
            code(
                card(),
                spent,
                Payment {
                    today: 101,
                    ..payment(1_001)
                }
            ),
            ResponseCode::Approved
        );
        // A credit card spends down to minus its limit.
        let credit = AccountFacts {
            balance: 0,
            credit_limit: 5_000,
            ..debit_account()
        };
        assert_eq!(code(card(), credit, payment(5_000)), ResponseCode::Approved);
        assert_eq!(
            code(card(), credit, payment(5_001)),
            ResponseCode::InsufficientFunds
        );
    }

    #[test]
    fn three_wrong_pins_block_the_pin() {
        let mut facts = card();
        let wrong = Payment {
            pin: PinCheck::Wrong,
            ..payment(100)
        };
        for (expected_code, expected_tries) in [
            (ResponseCode::IncorrectPin, 1),
            (ResponseCode::IncorrectPin, 2),
            (ResponseCode::PinTriesExceeded, 3),
        ] {
            let decision = authorize(&facts, &debit_account(), "card:1", &wrong);
            assert_eq!(
                (decision.response, decision.pin_tries),
                (expected_code, expected_tries)
            );
            assert!(decision.postings.is_empty());
            facts.pin_tries = decision.pin_tries;
        }
        // Blocked: even the right PIN is refused; a payment without PIN is not a PIN check.
        let right = Payment {
            pin: PinCheck::Correct,
            ..payment(100)
        };
        assert_eq!(
            authorize(&facts, &debit_account(), "card:1", &right).response,
            ResponseCode::PinTriesExceeded
        );
        assert_eq!(
            authorize(&facts, &debit_account(), "card:1", &payment(100)).response,
            ResponseCode::Approved
        );
        // Before the block, a right PIN resets the count.
        let decision = authorize(
            &CardFacts {
                pin_tries: 2,
                ..card()
            },
            &debit_account(),
            "card:1",
            &right,
        );
        assert_eq!(
            (decision.response, decision.pin_tries),
            (ResponseCode::Approved, 0)
        );
    }

    #[test]
    fn an_ecash_load_needs_the_pin_and_moves_money_to_the_ecash_account() {
        let load = Payment {
            ecash_load: true,
            ..payment(10_000)
        };
        let without = authorize(&card(), &debit_account(), "card:1", &load);
        assert_eq!(without.response, ResponseCode::ExceedsFrequencyLimit);
        assert!(without.postings.is_empty());
        let with_pin = authorize(
            &card(),
            &debit_account(),
            "card:1",
            &Payment {
                pin: PinCheck::Correct,
                ..load
            },
        );
        assert_eq!(with_pin.response, ResponseCode::Approved);
        assert_eq!(with_pin.account.balance, debit_account().balance - 10_000);
        assert_eq!(
            with_pin.postings,
            vec![
                Posting {
                    account: "card:1".into(),
                    debit: true,
                    amount: 10_000
                },
                Posting {
                    account: ecash_account("card:1"),
                    debit: false,
                    amount: 10_000
                },
            ]
        );
        assert!(balanced(&with_pin.postings));
    }

    #[test]
    fn an_offline_spend_clears_from_the_ecash_account_and_leaves_the_account_alone() {
        let cleared = clear_offline(&debit_account(), "card:1", "48020000", 3_000, 1);
        assert_eq!(cleared.account, debit_account());
        assert_eq!(cleared.pin_tries, 1);
        assert_eq!(cleared.postings[0].account, ecash_account("card:1"));
        assert!(cleared.postings[0].debit);
        assert_eq!(cleared.postings[1].account, acquirer_account("48020000"));
        assert!(balanced(&cleared.postings));
    }
}

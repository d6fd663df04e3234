//! A gateway order (one TN) as a pure state machine: what may happen to it next and what
//! that does to its money. docs/upacp.md carries [`rules_table`]; a test walks every state
//! with every event and checks the invariants.
//!
//! ```text
//! issued ──pay──▶ paying ──approved──▶ paid ──refund──▶ partly refunded ──▶ refunded
//!   │  ◀──not sent──┘  └──declined──▶ failed └──undo──▶ undoing ──approved──▶ undone
//!   └──payTimeout──▶ closed
//! ```
//!
//! Money is never moved twice: a refund *reserves* its amount before it is sent to the issuer,
//! so concurrent refunds can never add up to more than was paid, and an undo is accepted only
//! while nothing is refunded or reserved — and while an undo is in flight no refund is
//! accepted. So a refund and an undo of one order racing each other cannot both succeed:
//! whichever the store records first wins, and the other is refused here.

use std::fmt;

/// Seconds in a day; clearing days and refund periods are counted in them.
const DAY_SECONDS: i64 = 86_400;
/// UnionPay's clearing day runs from 23:00 to 23:00 Beijing time (UTC+8): 15:00 UTC.
const CLEARING_CUTOVER_UTC_SECONDS: i64 = 15 * 3_600;
/// How long after payment a refund is accepted (reference/upacp.md §2: 330 days accepted).
pub const REFUND_PERIOD_SECONDS: i64 = 330 * DAY_SECONDS;

/// An order's status as a merchant sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// TN issued, not paid yet.
    Issued,
    /// An authorization is in flight with the issuer.
    Paying,
    Paid,
    /// The issuer declined the payment. Final.
    Failed,
    /// Not paid before `payTimeout`. Final.
    Closed,
    PartlyRefunded,
    /// Refunded in full. Final.
    Refunded,
    /// An undo is in flight with the issuer.
    Undoing,
    /// Undone (撤销) on the day of payment. Final.
    Undone,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 9] = [
        OrderStatus::Issued,
        OrderStatus::Paying,
        OrderStatus::Paid,
        OrderStatus::Failed,
        OrderStatus::Closed,
        OrderStatus::PartlyRefunded,
        OrderStatus::Refunded,
        OrderStatus::Undoing,
        OrderStatus::Undone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Issued => "issued",
            OrderStatus::Paying => "paying",
            OrderStatus::Paid => "paid",
            OrderStatus::Failed => "failed",
            OrderStatus::Closed => "closed",
            OrderStatus::PartlyRefunded => "partly_refunded",
            OrderStatus::Refunded => "refunded",
            OrderStatus::Undoing => "undoing",
            OrderStatus::Undone => "undone",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// No event changes a final order.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Failed | OrderStatus::Closed | OrderStatus::Refunded | OrderStatus::Undone
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order's state: its status and its money, in minor units of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderState {
    pub status: OrderStatus,
    pub amount: u64,
    /// Refunded and confirmed by the issuer.
    pub refunded: u64,
    /// Refunds sent to the issuer and not answered yet.
    pub refund_reserved: u64,
    /// When the payment was approved (unix seconds), once it was.
    pub paid_at: Option<i64>,
    /// The part of `amount` a campaign's sponsor carries (`discount`): refunds of such an
    /// order go one at a time, so each one's split is decided on what is final.
    pub discount: u64,
}

impl OrderState {
    pub fn issued(amount: u64) -> OrderState {
        OrderState {
            status: OrderStatus::Issued,
            amount,
            refunded: 0,
            refund_reserved: 0,
            paid_at: None,
            discount: 0,
        }
    }

    /// What may still be refunded (or reserved for a refund).
    pub fn refundable(&self) -> u64 {
        self.amount
            .saturating_sub(self.refunded)
            .saturating_sub(self.refund_reserved)
    }
}

/// Something that happens to an order. Times are unix seconds, read from the injected clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// The payer submitted the payment; the authorization goes to the issuer.
    PaymentSent,
    PaymentApproved {
        at: i64,
    },
    PaymentDeclined,
    /// The authorization could not be sent at all (the network was unreachable): the order
    /// may be paid again.
    PaymentNotSent,
    /// `payTimeout` passed with the order unpaid.
    TimedOut,
    RefundSent {
        amount: u64,
        now: i64,
    },
    RefundAnswered {
        amount: u64,
        approved: bool,
    },
    UndoSent {
        now: i64,
    },
    UndoAnswered {
        approved: bool,
    },
}

impl OrderEvent {
    pub fn name(self) -> &'static str {
        match self {
            OrderEvent::PaymentSent => "payment sent",
            OrderEvent::PaymentApproved { .. } => "payment approved",
            OrderEvent::PaymentDeclined => "payment declined",
            OrderEvent::PaymentNotSent => "payment not sent",
            OrderEvent::TimedOut => "payTimeout passed",
            OrderEvent::RefundSent { .. } => "refund sent",
            OrderEvent::RefundAnswered { approved: true, .. } => "refund approved",
            OrderEvent::RefundAnswered {
                approved: false, ..
            } => "refund declined",
            OrderEvent::UndoSent { .. } => "undo sent",
            OrderEvent::UndoAnswered { approved: true } => "undo approved",
            OrderEvent::UndoAnswered { approved: false } => "undo declined",
        }
    }
}

/// Why an event is refused; each maps to a UPACP respCode at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrderRefusal {
    #[error("the order is {0}, which does not allow this")]
    WrongState(OrderStatus),
    #[error("the order has already been refunded or undone")]
    AlreadyReturned,
    #[error("the amount is above what remains refundable")]
    AboveRefundable,
    #[error("the amount must be more than zero")]
    ZeroAmount,
    #[error("an undo must be for the full amount of the payment")]
    UndoNotFullAmount,
    #[error("an undo is accepted only on the clearing day of the payment; refund instead")]
    UndoAfterClearingDay,
    #[error("the refund period of the payment has passed")]
    RefundPeriodOver,
    #[error("a refund or undo of this order is in progress")]
    ReturnInProgress,
    #[error("no such request is in flight for this order")]
    NothingInFlight,
}

/// The clearing day (days since 1970-01-01, cut at 23:00 Beijing time) a moment falls in.
pub fn clearing_day(unix_seconds: i64) -> i64 {
    (unix_seconds + DAY_SECONDS - CLEARING_CUTOVER_UTC_SECONDS).div_euclid(DAY_SECONDS)
}

/// Whether an undo at `now` of a payment approved at `paid_at` is on the same clearing day.
pub fn undo_in_time(paid_at: i64, now: i64) -> bool {
    clearing_day(paid_at) == clearing_day(now)
}

/// The state after `event`, or why it is refused. The full amount of an undo is checked by
/// [`check_undo_amount`] before the event is built.
pub fn apply(state: OrderState, event: OrderEvent) -> Result<OrderState, OrderRefusal> {
    use OrderEvent as E;
    use OrderStatus as S;
    let mut next = state;
    match (state.status, event) {
        (S::Issued, E::PaymentSent) => next.status = S::Paying,
        (S::Issued, E::TimedOut) => next.status = S::Closed,
        (S::Paying, E::PaymentApproved { at }) => {
            next.status = S::Paid;
            next.paid_at = Some(at);
        }
        (S::Paying, E::PaymentDeclined) => next.status = S::Failed,
        (S::Paying, E::PaymentNotSent) => next.status = S::Issued,
        (S::Paid | S::PartlyRefunded, E::RefundSent { amount, now }) => {
            return reserve_refund(state, amount, now);
        }
        (S::Paid | S::PartlyRefunded, E::RefundAnswered { amount, approved }) => {
            return settle_refund(state, amount, approved);
        }
        (S::Paid, E::UndoSent { now }) => return begin_undo(state, now),
        (S::Undoing, E::UndoAnswered { approved }) => {
            next.status = if approved { S::Undone } else { S::Paid };
        }
        (S::Undoing, E::RefundSent { .. }) => return Err(OrderRefusal::ReturnInProgress),
        (S::PartlyRefunded, E::UndoSent { .. }) | (S::Refunded | S::Undone, _) => {
            return Err(OrderRefusal::AlreadyReturned);
        }
        (status, _) => return Err(OrderRefusal::WrongState(status)),
    }
    Ok(next)
}

fn reserve_refund(state: OrderState, amount: u64, now: i64) -> Result<OrderState, OrderRefusal> {
    if amount == 0 {
        return Err(OrderRefusal::ZeroAmount);
    }
    let paid_at = state.paid_at.unwrap_or(now);
    if now.saturating_sub(paid_at) > REFUND_PERIOD_SECONDS {
        return Err(OrderRefusal::RefundPeriodOver);
    }
    if amount > state.refundable() {
        return Err(OrderRefusal::AboveRefundable);
    }
    if state.discount > 0 && state.refund_reserved > 0 {
        return Err(OrderRefusal::ReturnInProgress);
    }
    Ok(OrderState {
        refund_reserved: state.refund_reserved + amount,
        ..state
    })
}

fn settle_refund(
    state: OrderState,
    amount: u64,
    approved: bool,
) -> Result<OrderState, OrderRefusal> {
    if amount == 0 || amount > state.refund_reserved {
        return Err(OrderRefusal::NothingInFlight);
    }
    let mut next = OrderState {
        refund_reserved: state.refund_reserved - amount,
        ..state
    };
    if approved {
        next.refunded += amount;
        next.status = if next.refunded == next.amount {
            OrderStatus::Refunded
        } else {
            OrderStatus::PartlyRefunded
        };
    }
    Ok(next)
}

fn begin_undo(state: OrderState, now: i64) -> Result<OrderState, OrderRefusal> {
    if state.refund_reserved > 0 {
        return Err(OrderRefusal::ReturnInProgress);
    }
    if !state
        .paid_at
        .is_some_and(|paid_at| undo_in_time(paid_at, now))
    {
        return Err(OrderRefusal::UndoAfterClearingDay);
    }
    Ok(OrderState {
        status: OrderStatus::Undoing,
        ..state
    })
}

/// An undo names an amount; it must be the whole payment.
pub fn check_undo_amount(state: &OrderState, amount: u64) -> Result<(), OrderRefusal> {
    if amount == state.amount {
        Ok(())
    } else {
        Err(OrderRefusal::UndoNotFullAmount)
    }
}

/// The rules as a Markdown table: each status, each event, and the outcome.
pub fn rules_table() -> String {
    let mut out = String::from("| from \\ event |");
    let events = sample_events();
    for event in &events {
        out.push_str(&format!(" {} |", event.name()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(events.len()));
    out.push('\n');
    for status in OrderStatus::ALL {
        out.push_str(&format!("| **{status}** |"));
        for event in &events {
            let mut state = sample_state(status);
            // A refund can be answered only while one is in flight.
            let answers_refund = matches!(event, OrderEvent::RefundAnswered { .. });
            if answers_refund && state.paid_at.is_some() && state.refundable() >= 100 {
                state.refund_reserved = 100;
            }
            let cell = match apply(state, *event) {
                Ok(next) => next.status.to_string(),
                Err(_) => "—".to_string(),
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

/// One state of each status with money in it, paid at time 0, for the table and the tests.
fn sample_state(status: OrderStatus) -> OrderState {
    let mut state = OrderState::issued(1_000);
    state.status = status;
    if !matches!(
        status,
        OrderStatus::Issued | OrderStatus::Paying | OrderStatus::Failed | OrderStatus::Closed
    ) {
        state.paid_at = Some(0);
    }
    match status {
        OrderStatus::PartlyRefunded => state.refunded = 400,
        OrderStatus::Refunded => state.refunded = 1_000,
        _ => {}
    }
    state
}

fn sample_events() -> Vec<OrderEvent> {
    vec![
        OrderEvent::PaymentSent,
        OrderEvent::PaymentApproved { at: 0 },
        OrderEvent::PaymentDeclined,
        OrderEvent::PaymentNotSent,
        OrderEvent::TimedOut,
        OrderEvent::RefundSent {
            amount: 100,
            now: 60,
        },
        OrderEvent::RefundAnswered {
            amount: 100,
            approved: true,
        },
        OrderEvent::RefundAnswered {
            amount: 100,
            approved: false,
        },
        OrderEvent::UndoSent { now: 60 },
        OrderEvent::UndoAnswered { approved: true },
        OrderEvent::UndoAnswered { approved: false },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid(amount: u64) -> OrderState {
        let state = apply(OrderState::issued(amount), OrderEvent::PaymentSent).unwrap();
        apply(state, OrderEvent::PaymentApproved { at: 1_000 }).unwrap()
    }

    #[test]
    fn refunds_of_a_discounted_order_go_one_at_a_time() {
        let discounted = OrderState {
            discount: 500,
            ..paid(5_800)
        };
        let first = apply(
            discounted,
            OrderEvent::RefundSent {
                amount: 800,
                now: 1_060,
            },
        )
        .unwrap();
        assert_eq!(
            apply(
                first,
                OrderEvent::RefundSent {
                    amount: 800,
                    now: 1_060
                }
            ),
            Err(OrderRefusal::ReturnInProgress)
        );
        let answered = apply(
            first,
            OrderEvent::RefundAnswered {
                amount: 800,
                approved: true,
            },
        )
        .unwrap();
        assert!(
            apply(
                answered,
                OrderEvent::RefundSent {
                    amount: 800,
                    now: 1_060
                }
            )
            .is_ok()
        );
        // Without a discount, refunds may overlap as before.
        let plain = apply(
            paid(5_800),
            OrderEvent::RefundSent {
                amount: 800,
                now: 1_060,
            },
        )
        .unwrap();
        assert!(
            apply(
                plain,
                OrderEvent::RefundSent {
                    amount: 800,
                    now: 1_060
                }
            )
            .is_ok()
        );
    }

    fn all_events() -> Vec<OrderEvent> {
        let mut events = sample_events();
        for amount in [0, 1, 400, 600, 1_000, 1_001] {
            events.push(OrderEvent::RefundSent { amount, now: 60 });
            events.push(OrderEvent::RefundAnswered {
                amount,
                approved: true,
            });
            events.push(OrderEvent::RefundAnswered {
                amount,
                approved: false,
            });
        }
        events.push(OrderEvent::RefundSent {
            amount: 1,
            now: REFUND_PERIOD_SECONDS + 1,
        });
        events.push(OrderEvent::UndoSent { now: DAY_SECONDS });
        events
    }

    fn states() -> Vec<OrderState> {
        let mut states: Vec<OrderState> = OrderStatus::ALL.into_iter().map(sample_state).collect();
        for reserved in [1, 600] {
            let mut state = sample_state(OrderStatus::Paid);
            state.refund_reserved = reserved;
            states.push(state);
        }
        states
    }

    #[test]
    fn every_combination_keeps_the_money_invariants() {
        for state in states() {
            for event in all_events() {
                let Ok(next) = apply(state, event) else {
                    continue;
                };
                assert!(!state.status.is_final(), "{state:?} moved by {event:?}");
                assert!(
                    next.refunded + next.refund_reserved <= next.amount,
                    "{state:?} {event:?}"
                );
                assert!(next.refunded >= state.refunded, "refunds never shrink");
                assert_eq!(next.amount, state.amount);
                if next.status == OrderStatus::Undoing || next.status == OrderStatus::Undone {
                    assert_eq!(
                        next.refunded + next.refund_reserved,
                        0,
                        "undo with refunds: {state:?} {event:?}"
                    );
                }
                if next.status == OrderStatus::Refunded {
                    assert_eq!(next.refunded, next.amount);
                }
            }
        }
    }

    #[test]
    fn refunds_are_partial_repeated_and_never_above_what_remains() {
        let state = paid(1_000);
        let state = apply(
            state,
            OrderEvent::RefundSent {
                amount: 600,
                now: 2_000,
            },
        )
        .unwrap();
        // A concurrent refund of what is no longer there is refused while the first is in flight.
        assert_eq!(
            apply(
                state,
                OrderEvent::RefundSent {
                    amount: 500,
                    now: 2_000
                }
            ),
            Err(OrderRefusal::AboveRefundable)
        );
        let state = apply(
            state,
            OrderEvent::RefundAnswered {
                amount: 600,
                approved: true,
            },
        )
        .unwrap();
        assert_eq!(state.status, OrderStatus::PartlyRefunded);
        let state = apply(
            state,
            OrderEvent::RefundSent {
                amount: 400,
                now: 3_000,
            },
        )
        .unwrap();
        let declined = apply(
            state,
            OrderEvent::RefundAnswered {
                amount: 400,
                approved: false,
            },
        )
        .unwrap();
        assert_eq!(
            (declined.status, declined.refundable()),
            (OrderStatus::PartlyRefunded, 400)
        );
        let done = apply(
            state,
            OrderEvent::RefundAnswered {
                amount: 400,
                approved: true,
            },
        )
        .unwrap();
        assert_eq!(done.status, OrderStatus::Refunded);
        assert_eq!(
            apply(
                done,
                OrderEvent::RefundSent {
                    amount: 1,
                    now: 3_000
                }
            ),
            Err(OrderRefusal::AlreadyReturned)
        );
    }

    #[test]
    fn refund_and_undo_racing_cannot_both_succeed() {
        let state = paid(1_000);
        let refunding = apply(
            state,
            OrderEvent::RefundSent {
                amount: 1,
                now: 2_000,
            },
        )
        .unwrap();
        assert_eq!(
            apply(refunding, OrderEvent::UndoSent { now: 2_000 }),
            Err(OrderRefusal::ReturnInProgress)
        );
        let undoing = apply(state, OrderEvent::UndoSent { now: 2_000 }).unwrap();
        assert_eq!(
            apply(
                undoing,
                OrderEvent::RefundSent {
                    amount: 1,
                    now: 2_000
                }
            ),
            Err(OrderRefusal::ReturnInProgress)
        );
        let undone = apply(undoing, OrderEvent::UndoAnswered { approved: true }).unwrap();
        assert_eq!(undone.status, OrderStatus::Undone);
    }

    #[test]
    fn undo_only_on_the_clearing_day_and_for_the_full_amount() {
        // 2026-12-02 14:59:59 UTC is 22:59:59 in Beijing: still the clearing day of a payment
        // at 00:00 UTC that day; one second later the next clearing day begins.
        let paid_at = 1_796_169_600; // 2026-12-02T00:00:00Z
        let cutover = paid_at + CLEARING_CUTOVER_UTC_SECONDS;
        assert!(undo_in_time(paid_at, cutover - 1));
        assert!(!undo_in_time(paid_at, cutover));
        let mut state = paid(1_000);
        state.paid_at = Some(paid_at);
        assert_eq!(
            apply(state, OrderEvent::UndoSent { now: cutover }),
            Err(OrderRefusal::UndoAfterClearingDay)
        );
        assert_eq!(
            check_undo_amount(&state, 999),
            Err(OrderRefusal::UndoNotFullAmount)
        );
        assert!(check_undo_amount(&state, 1_000).is_ok());
    }

    #[test]
    fn unpaid_orders_close_and_final_orders_stay_final() {
        let closed = apply(OrderState::issued(5), OrderEvent::TimedOut).unwrap();
        assert_eq!(closed.status, OrderStatus::Closed);
        assert!(apply(closed, OrderEvent::PaymentSent).is_err());
        let paying = apply(OrderState::issued(5), OrderEvent::PaymentSent).unwrap();
        assert_eq!(
            apply(paying, OrderEvent::TimedOut),
            Err(OrderRefusal::WrongState(OrderStatus::Paying))
        );
        assert_eq!(
            apply(paying, OrderEvent::PaymentDeclined).unwrap().status,
            OrderStatus::Failed
        );
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn the_upacp_page_embeds_the_rules_table() {
        let page =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/upacp.md"))
                .unwrap_or_default();
        assert!(
            page.contains(&rules_table()),
            "docs/upacp.md is out of date; paste:\n{}",
            rules_table()
        );
    }

    #[test]
    fn the_rules_table_names_every_status() {
        let table = rules_table();
        for status in OrderStatus::ALL {
            assert!(table.contains(&format!("**{status}**")));
        }
    }
}

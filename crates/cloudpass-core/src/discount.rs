//! Marketing discounts (营销立减) on payments made inside the Cloud QuickPass app: which
//! campaign applies to an order, how much it takes off, and how a refund of a discounted
//! order splits between the card and the campaign's sponsor.
//!
//! A discount changes who pays, never what the merchant is paid: the card is charged the
//! order's amount less the discount, the sponsor carries the discount, and the merchant
//! settles the whole amount (UnionPay's rule for the `couponInfo` of a notification: money a
//! sponsor other than the merchant puts in does not change the merchant's settlement).
//! One order takes at most one campaign.

/// `couponInfo[].spnsrId` of a campaign UnionPay itself funds.
pub const UNIONPAY_SPONSOR: &str = "00010000";

/// A campaign: a fixed amount off every app payment at or above a threshold, while its
/// budget lasts. Amounts in minor units of the order's currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    /// `couponInfo[].id`: the campaign's number.
    pub id: &'static str,
    /// `couponInfo[].type`: `CP01` is a coupon nobody has to claim, matched and honoured at
    /// payment time.
    pub kind: &'static str,
    /// `couponInfo[].spnsrId`: who pays for it.
    pub sponsor: &'static str,
    /// `couponInfo[].desc`, and what the app shows.
    pub name_zh: &'static str,
    pub name_en: &'static str,
    /// The least order amount it applies to.
    pub threshold: u64,
    /// What it takes off.
    pub offset: u64,
    /// The most it may give away in all; money refunded to it counts again.
    pub budget: u64,
}

/// The discount `campaign` gives an order of `amount` when `spent` of its budget is already
/// given (or held by payments in flight); `None` when it does not apply. The card must
/// still pay something: a campaign never takes a whole order.
pub fn offset_for(campaign: &Campaign, amount: u64, spent: u64) -> Option<u64> {
    let fits_budget = spent
        .checked_add(campaign.offset)
        .is_some_and(|total| total <= campaign.budget);
    (amount >= campaign.threshold && campaign.offset < amount && campaign.offset > 0 && fits_budget)
        .then_some(campaign.offset)
}

/// The first of `campaigns` that gives an order of `amount` a discount, with the discount,
/// given what each has spent (`spent(campaign)`).
pub fn best_offer(
    campaigns: &[Campaign],
    amount: u64,
    spent: impl Fn(&Campaign) -> u64,
) -> Option<(&Campaign, u64)> {
    campaigns
        .iter()
        .filter_map(|campaign| Some((campaign, offset_for(campaign, amount, spent(campaign))?)))
        .max_by_key(|(_, offset)| *offset)
}

/// The sponsor's part of a refund of `refund` from an order of `amount` of which the sponsor
/// carried `discount`, when `refunded` was refunded before. Each refund returns the
/// sponsor's money in proportion, rounded down on the sponsor's side so the card is never
/// short; the cumulative rounding makes the parts of a full refund add up exactly to the
/// discount. Refunds of a discounted order therefore go one at a time (the order rules).
pub fn sponsor_share(amount: u64, discount: u64, refunded: u64, refund: u64) -> u64 {
    if amount == 0 {
        return 0;
    }
    let upto = |refunded: u64| {
        let share = u128::from(refunded) * u128::from(discount) / u128::from(amount);
        u64::try_from(share).unwrap_or(u64::MAX)
    };
    upto(refunded.saturating_add(refund).min(amount)) - upto(refunded.min(amount))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign() -> Campaign {
        Campaign {
            id: "CP2026120001",
            kind: "CP01",
            sponsor: UNIONPAY_SPONSOR,
            name_zh: "满50减5",
            name_en: "5.00 off 50.00",
            threshold: 5_000,
            offset: 500,
            budget: 1_000,
        }
    }

    #[test]
    fn applies_from_the_threshold_while_the_budget_lasts() {
        let c = campaign();
        assert_eq!(offset_for(&c, 4_999, 0), None);
        assert_eq!(offset_for(&c, 5_000, 0), Some(500));
        assert_eq!(offset_for(&c, 5_800, 500), Some(500));
        assert_eq!(
            offset_for(&c, 5_800, 501),
            None,
            "the budget would be overdrawn"
        );
        assert_eq!(offset_for(&c, 5_800, u64::MAX), None);
    }

    #[test]
    fn never_takes_the_whole_order() {
        let c = Campaign {
            threshold: 0,
            ..campaign()
        };
        assert_eq!(offset_for(&c, 500, 0), None);
        assert_eq!(offset_for(&c, 501, 0), Some(500));
    }

    #[test]
    fn the_largest_offer_wins_and_only_one() {
        let small = campaign();
        let large = Campaign {
            id: "CP2026120002",
            offset: 800,
            budget: 10_000,
            ..campaign()
        };
        let both = [small, large];
        let (chosen, offset) = best_offer(&both, 6_000, |_| 0).unwrap();
        assert_eq!((chosen.id, offset), ("CP2026120002", 800));
        let (chosen, _) =
            best_offer(&both, 6_000, |c| if c.offset == 800 { 9_900 } else { 0 }).unwrap();
        assert_eq!(chosen.id, "CP2026120001", "the spent campaign steps aside");
        assert!(best_offer(&both, 100, |_| 0).is_none());
    }

    #[test]
    fn refund_parts_add_up_to_the_discount_exactly() {
        // 58.00 with 5.00 off, refunded in awkward steps.
        let (amount, discount) = (5_800, 500);
        let mut refunded = 0;
        let mut sponsor = 0;
        for refund in [1, 333, 1_000, 2_466, 1, 1_999] {
            let part = sponsor_share(amount, discount, refunded, refund);
            assert!(part <= refund);
            sponsor += part;
            refunded += refund;
        }
        assert_eq!(refunded, amount);
        assert_eq!(sponsor, discount);
    }

    #[test]
    fn a_full_refund_at_once_returns_the_whole_discount() {
        assert_eq!(sponsor_share(5_800, 500, 0, 5_800), 500);
        assert_eq!(sponsor_share(5_800, 0, 0, 5_800), 0);
        assert_eq!(sponsor_share(5_800, 500, 0, 2_900), 250);
        assert_eq!(sponsor_share(5_800, 500, 2_900, 2_900), 250);
    }

    #[test]
    fn every_split_is_exact_for_all_small_orders() {
        for amount in 1..=60u64 {
            for discount in 0..amount {
                // Refund one unit at a time: the worst case for rounding.
                let total: u64 = (0..amount)
                    .map(|refunded| sponsor_share(amount, discount, refunded, 1))
                    .sum();
                assert_eq!(total, discount, "amount {amount} discount {discount}");
            }
        }
    }
}

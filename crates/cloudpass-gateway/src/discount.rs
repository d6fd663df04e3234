//! Campaign discounts on payments made in the Cloud QuickPass app (control pay, and the
//! cashier after logging in): the gateway, as the platform, decides which campaign applies
//! (`cloudpass-core::discount`), records the discount with the order's state in the same
//! write, charges the card the rest, and tells the merchant in `couponInfo`. The merchant
//! settles the whole amount; payments by card number (hosted page, WAP) get no discount.
//!
//! A campaign's spending is the sum over its orders (`GatewayStore::campaign_spent`), so a
//! crash can neither lose nor double it. Deciding and recording are done one payment at a
//! time in this process (`Gateway::campaign_lock`), so two payments cannot both take a
//! budget's last discount.

use cloudpass_core::discount::{self, Campaign};
use cloudpass_core::{Currency, Money};
use cloudpass_store::{GatewayStore, OrderRow};

use crate::Gateway;
use crate::pay::{PayError, unavailable};

/// A discount as the app's confirm screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discount {
    pub campaign_id: &'static str,
    pub name_zh: &'static str,
    pub name_en: &'static str,
    pub offset: Money,
}

impl Gateway {
    /// The campaigns this gateway runs.
    pub fn campaigns(&self) -> &[Campaign] {
        &self.config.campaigns
    }

    /// What each campaign has given away and not had back, in the order of
    /// [`Gateway::campaigns`].
    pub async fn campaigns_spent(&self) -> Result<Vec<u64>, PayError> {
        let mut spent = Vec::with_capacity(self.config.campaigns.len());
        for campaign in &self.config.campaigns {
            let sum = self
                .store
                .campaign_spent(campaign.id)
                .await
                .map_err(unavailable)?;
            spent.push(u64::try_from(sum).unwrap_or(0));
        }
        Ok(spent)
    }

    /// The discount an app payment of `amount` (fen) gets now, if any.
    pub(crate) async fn discount_for(&self, amount: u64) -> Result<Option<Discount>, PayError> {
        let spent = self.campaigns_spent().await?;
        let by_id = |campaign: &Campaign| {
            self.config
                .campaigns
                .iter()
                .position(|c| c.id == campaign.id)
                .map_or(0, |i| spent[i])
        };
        Ok(
            discount::best_offer(&self.config.campaigns, amount, by_id).map(
                |(campaign, offset)| Discount {
                    campaign_id: campaign.id,
                    name_zh: campaign.name_zh,
                    name_en: campaign.name_en,
                    offset: Money::new(offset, Currency::CNY),
                },
            ),
        )
    }

    /// `couponInfo` of a notification or query about `order`: the campaign, its sponsor and
    /// the sponsor's part, as a JSON array of one object; `None` without a discount.
    pub(crate) fn coupon_info(&self, order: &OrderRow) -> Option<String> {
        let id = order
            .campaign_id
            .as_deref()
            .filter(|_| order.discount > 0)?;
        let campaign = self.config.campaigns.iter().find(|c| c.id == id);
        let mut entry = serde_json::json!({
            "type": campaign.map_or("CP01", |c| c.kind),
            "spnsrId": campaign.map_or(discount::UNIONPAY_SPONSOR, |c| c.sponsor),
            "offstAmt": order.discount.to_string(),
            "id": id,
        });
        if let Some(campaign) = campaign {
            entry["desc"] = serde_json::Value::from(campaign.name_zh);
        }
        Some(serde_json::Value::Array(vec![entry]).to_string())
    }
}

/// What the card pays (or gets back) of `order`: its amount less the sponsor's part.
pub(crate) fn card_part(order: &OrderRow) -> u64 {
    let amount = u64::try_from(order.amount).unwrap_or(0);
    amount.saturating_sub(u64::try_from(order.discount).unwrap_or(0))
}

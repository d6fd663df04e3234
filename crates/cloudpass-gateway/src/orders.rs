//! Moving an order: the core decides (`cloudpass-core::order`), the store writes by version.

use cloudpass_core::order::{self, OrderEvent, OrderRefusal, OrderState, OrderStatus};
use cloudpass_store::{GatewayStore, OrderRow, StoreError};

use crate::Gateway;

/// Why an order did not move.
#[derive(Debug)]
pub(crate) enum RecordError {
    /// The rules refuse the event.
    Refused(OrderRefusal),
    /// The order changed since it was read: someone else moved it first.
    Conflict,
    Store(StoreError),
}

impl Gateway {
    /// Applies `event` to `order` by the core's rules and writes it if nobody wrote it since
    /// it was read; `fill` adds what the event brings.
    pub(crate) async fn apply_event(
        &self,
        order: OrderRow,
        event: OrderEvent,
        fill: impl FnOnce(&mut OrderRow),
    ) -> Result<OrderRow, RecordError> {
        self.apply(order, event, fill, None).await
    }

    /// [`Gateway::apply_event`] for a success the merchant is told of: the notification
    /// (`original`: the consume a return names) is written with the change.
    pub(crate) async fn apply_event_notifying(
        &self,
        order: OrderRow,
        event: OrderEvent,
        fill: impl FnOnce(&mut OrderRow),
        original: Option<&OrderRow>,
    ) -> Result<OrderRow, RecordError> {
        self.apply(order, event, fill, Some(original)).await
    }

    /// `order` as `event` moves it (by the core's rules), filled by `fill`, at the next
    /// version: to be written by version.
    pub(crate) fn moved(
        &self,
        order: OrderRow,
        event: OrderEvent,
        fill: impl FnOnce(&mut OrderRow),
    ) -> Result<OrderRow, RecordError> {
        let next = order::apply(state_of(&order), event).map_err(RecordError::Refused)?;
        let mut row = order;
        row.status = next.status.as_str().to_owned();
        row.refunded = i64::try_from(next.refunded).unwrap_or(i64::MAX);
        row.refund_reserved = i64::try_from(next.refund_reserved).unwrap_or(i64::MAX);
        row.updated_at = self.clock.now_millis();
        row.version += 1;
        fill(&mut row);
        Ok(row)
    }

    async fn apply(
        &self,
        order: OrderRow,
        event: OrderEvent,
        fill: impl FnOnce(&mut OrderRow),
        notify: Option<Option<&OrderRow>>,
    ) -> Result<OrderRow, RecordError> {
        let row = self.moved(order, event, fill)?;
        let notification = match notify {
            Some(original) => {
                let card_details = self.card_details(&row.mer_id).await;
                Some(self.notification(&row, original, card_details))
            }
            None => None,
        };
        match self.store.update_order(&row, notification.as_ref()).await {
            Ok(()) => Ok(row),
            Err(StoreError::Conflict) => Err(RecordError::Conflict),
            Err(error) => Err(RecordError::Store(error)),
        }
    }
}

impl Gateway {
    /// Whether the merchant's notifications carry the card's details (a store that cannot
    /// say means no).
    pub(crate) async fn card_details(&self, mer_id: &str) -> bool {
        self.merchant(mer_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|merchant| merchant.permissions.card_details)
    }
}

/// The core's view of a stored order.
pub(crate) fn state_of(order: &OrderRow) -> OrderState {
    OrderState {
        status: OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Failed),
        amount: u64::try_from(order.amount).unwrap_or(0),
        refunded: u64::try_from(order.refunded).unwrap_or(0),
        refund_reserved: u64::try_from(order.refund_reserved).unwrap_or(0),
        paid_at: order.paid_at.map(|millis| millis.div_euclid(1_000)),
        discount: u64::try_from(order.discount).unwrap_or(0),
    }
}

//! Notifications to a merchant's `backUrl` for every successful consume, undo and refund:
//! a signed form, POSTed URL-encoded. It is written in the same transaction as the order
//! change it announces (so a crash between the two cannot lose it) and delivered by
//! [`Gateway::run_notifier`] until the merchant answers HTTP 200 or 302 within the timeout;
//! otherwise it is sent again after each delay of the schedule (UnionPay's: 1, 2, 4 and 5
//! minutes; 5 sends in all), then given up. Receivers must expect duplicates. The same
//! worker closes orders left unpaid past their `payTimeout`.

use std::sync::Arc;
use std::time::Duration;

use cloudpass_store::{GatewayStore, NotificationRow, OrderRow};
use cloudpass_upacp::code::{RespCode, resp_msg};
use cloudpass_upacp::{Form, signing};
use tokio::sync::watch;

use crate::Gateway;

/// How notifications are sent.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The waits after each failed send; a notification is sent `len + 1` times at most.
    pub retry_delays: Vec<Duration>,
    /// How long a merchant has to answer.
    pub timeout: Duration,
    /// How often the worker looks for due notifications.
    pub poll: Duration,
    /// Notifications sent per look.
    pub batch: i64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            retry_delays: [1, 2, 4, 5]
                .iter()
                .map(|m| Duration::from_secs(m * 60))
                .collect(),
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            batch: 32,
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Gateway {
    /// The notification of `order`'s success, signed, ready to be stored with the change.
    pub(crate) fn notification(
        &self,
        order: &OrderRow,
        original: Option<&OrderRow>,
    ) -> NotificationRow {
        let txn_type = match order.kind.as_str() {
            "undo" => "31",
            "refund" => "04",
            _ => "01",
        };
        let mut form = Form::new()
            .with("version", "5.1.0")
            .with("encoding", "UTF-8")
            .with("txnType", txn_type)
            .with("txnSubType", if txn_type == "01" { "01" } else { "00" })
            .with("bizType", "000201")
            .with("accessType", "0")
            .with("merId", order.mer_id.clone())
            .with("orderId", order.order_id.clone())
            .with("txnTime", order.txn_time.clone())
            .with("txnAmt", order.amount.to_string())
            .with("currencyCode", format!("{:03}", order.currency))
            .with("settleAmt", order.amount.to_string())
            .with("settleCurrencyCode", format!("{:03}", order.currency))
            .with("queryId", order.query_id.clone().unwrap_or_default())
            .with("traceNo", order.auth_stan.clone().unwrap_or_default())
            .with(
                "traceTime",
                order.auth_transmission_time.clone().unwrap_or_default(),
            )
            .with("respCode", RespCode::Success.code())
            .with("respMsg", resp_msg(RespCode::Success, ""))
            .with(
                "reqReserved",
                order.req_reserved.clone().unwrap_or_default(),
            );
        if let Some(paid_at) = order.paid_at {
            let day = cloudpass_core::order::clearing_day(paid_at.div_euclid(1_000));
            let (_, month, date) = cloudpass_core::clock::civil_from_days(day);
            form.set("settleDate", format!("{month:02}{date:02}"));
        }
        if txn_type == "01" {
            form.set("tn", order.tn.clone());
        }
        if let Some(original) = original {
            form.set("origQryId", original.query_id.clone().unwrap_or_default());
        }
        let card_details = self
            .merchants
            .get(&order.mer_id)
            .is_some_and(|merchant| merchant.permissions.card_details);
        if card_details {
            form.set("accNo", order.pay_card_masked.clone().unwrap_or_default());
            form.set(
                "payCardType",
                order.pay_card_type.clone().unwrap_or_default(),
            );
        }
        form.set("signPubKeyCert", self.signer.certificate.to_pem_crlf());
        if let Err(error) = signing::sign_rsa(&mut form, &self.signer.key) {
            tracing::error!(error = %error, "gateway: a notification could not be signed");
        }
        let now = self.clock.now_millis();
        NotificationRow {
            id: 0,
            tn: order.tn.clone(),
            mer_id: order.mer_id.clone(),
            url: order.back_url.clone(),
            body: form.to_urlencoded(),
            attempts: 0,
            next_attempt_at: now,
            delivered_at: None,
            failed_at: None,
            last_status: None,
            created_at: now,
        }
    }

    /// Delivers due notifications until `shutdown` fires.
    pub async fn run_notifier(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let client = match cloudpass_http::client::builder(self.config.notify.timeout, None)
            .and_then(|b| b.build())
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(error = %error, "gateway: no HTTP client for notifications");
                return;
            }
        };
        loop {
            self.close_expired().await;
            self.deliver_due(&client).await;
            tokio::select! {
                _ = tokio::time::sleep(self.config.notify.poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Closes orders left unpaid past their `payTimeout` (by version: a payment that started
    /// meanwhile wins).
    pub async fn close_expired(&self) {
        let now = self.now_seconds();
        let expired = match self
            .store
            .unpaid_past_timeout(now, self.config.notify.batch)
            .await
        {
            Ok(expired) => expired,
            Err(error) => {
                tracing::error!(error = %error, "gateway: cannot read expired orders");
                return;
            }
        };
        for order in expired {
            let tn = order.tn.clone();
            if let Err(error) = self
                .apply_event(order, cloudpass_core::order::OrderEvent::TimedOut, |_| {})
                .await
            {
                tracing::debug!(error = ?error, tn = %tn, "gateway: an expired order moved before it could be closed");
            }
        }
    }

    /// One look: every due notification sent once and its outcome recorded.
    pub async fn deliver_due(&self, client: &reqwest::Client) {
        let now = self.clock.now_millis();
        let due = match self
            .store
            .due_notifications(now, self.config.notify.batch)
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(error = %error, "gateway: cannot read due notifications");
                return;
            }
        };
        for mut notification in due {
            let status = client
                .post(&notification.url)
                .header(
                    "content-type",
                    "application/x-www-form-urlencoded;charset=UTF-8",
                )
                .body(notification.body.clone())
                .send()
                .await
                .map(|response| i64::from(response.status().as_u16()))
                .ok();
            let now = self.clock.now_millis();
            notification.attempts += 1;
            notification.last_status = status;
            if matches!(status, Some(200 | 302)) {
                notification.delivered_at = Some(now);
            } else {
                let delay = usize::try_from(notification.attempts - 1)
                    .ok()
                    .and_then(|index| self.config.notify.retry_delays.get(index));
                match delay {
                    Some(delay) => notification.next_attempt_at = now + millis(*delay),
                    None => notification.failed_at = Some(now),
                }
            }
            if let Err(error) = self.store.record_notification(&notification).await {
                tracing::error!(error = %error, tn = %notification.tn, "gateway: cannot record a notification's send");
            }
        }
    }
}

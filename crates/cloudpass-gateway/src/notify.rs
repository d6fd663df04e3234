//! Notifications to a merchant's `backUrl` for every successful consume, undo and refund:
//! a signed form, POSTed URL-encoded. It is written in the same transaction as the order
//! change it announces (so a crash between the two cannot lose it) and delivered by
//! [`Gateway::run_notifier`] until the merchant answers HTTP 200 or 302 within the timeout;
//! otherwise it is sent again after each delay of the schedule (UnionPay's: 1, 2, 4 and 5
//! minutes; 5 sends in all), then given up. Receivers must expect duplicates; a merchant's
//! sandbox drill (`cloudpass merchant set --failed-notification-sends N`) counts the first N
//! sends of each notification as failed whatever it answers, to watch them come. The same
//! worker closes orders left unpaid past their `payTimeout` and settles payments whose
//! answer was lost (`unanswered`).

use std::sync::Arc;
use std::time::Duration;

use cloudpass_store::{GatewayStore, NotificationRow, OrderRow};
use cloudpass_upacp::code::{RespCode, resp_msg};
use cloudpass_upacp::{Form, signing};
use tokio::sync::watch;

use crate::Gateway;
use crate::certification::Case;

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

/// A worker's step or a notification's send slower than this is logged.
const SLOW_STEP: Duration = Duration::from_secs(2);

/// Runs `step`, logging it when it is slow.
async fn timed<T>(name: &'static str, step: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let output = step.await;
    let took = started.elapsed();
    if took > SLOW_STEP {
        tracing::warn!(
            step = name,
            took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            "gateway: a worker's step was slow"
        );
    }
    output
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
        card_details: bool,
    ) -> NotificationRow {
        let form = self.success_form(order, original, card_details);
        let now = self.merchant_now_millis(&order.mer_id);
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

    /// The signed form announcing `order`'s success: the back notification's body, and the
    /// front notification the payer's browser carries to `frontUrl`.
    pub(crate) fn success_form(
        &self,
        order: &OrderRow,
        original: Option<&OrderRow>,
        card_details: bool,
    ) -> Form {
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
        // As the request said them: bizType, accessType and its merchant fields.
        if let Ok(echo) = Form::parse_urlencoded(order.request_echo.as_bytes()) {
            for (key, value) in echo.iter() {
                form.set(key, value);
            }
        }
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
        // A campaign's part: of the payment, or of what a return gives back.
        if let Some(coupon_info) = self.coupon_info(order) {
            form.set("couponInfo", coupon_info);
        }
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
        form
    }

    /// The client notifications are sent with: it waits `notify.timeout` for a merchant.
    pub fn notification_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        cloudpass_http::client::builder(self.config.notify.timeout, None).and_then(|b| b.build())
    }

    /// Runs the gateway's two workers every `notify.poll` until `shutdown` fires: the order
    /// sweep ([`Gateway::sweep_orders`]) and the delivery of notifications
    /// ([`Gateway::deliver_due`]). They run side by side, so that payments being settled
    /// through a slow network never hold notifications back, nor the other way round.
    pub async fn run_notifier(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let client = match self.notification_client() {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(error = %error, "gateway: no HTTP client for notifications");
                return;
            }
        };
        let orders = self.every_poll(shutdown.clone(), || self.sweep_orders());
        let notifications = self.every_poll(shutdown, || {
            timed("deliver notifications", self.deliver_due(&client))
        });
        tokio::join!(orders, notifications);
    }

    /// Runs `pass` every `notify.poll` until `shutdown` fires.
    async fn every_poll<F, Fut>(&self, mut shutdown: watch::Receiver<bool>, pass: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        loop {
            pass().await;
            tokio::select! {
                _ = tokio::time::sleep(self.config.notify.poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass of the gateway's workers, by the clock as it reads now: the order sweep, then
    /// the due notifications sent once each. Tests on a manual clock call it after moving
    /// the clock.
    pub async fn sweep(&self, client: &reqwest::Client) {
        self.sweep_orders().await;
        self.deliver_due(client).await;
    }

    /// The merchants' sandbox clocks read afresh, unpaid orders past their `payTimeout`
    /// closed, held payments that are due sent, payments unanswered too long settled.
    pub async fn sweep_orders(&self) {
        timed("sandbox clocks", self.refresh_sandbox_clocks()).await;
        timed("close expired", self.close_expired()).await;
        timed("held payments", self.send_held_payments()).await;
        timed("settle unanswered", self.settle_unanswered()).await;
    }

    /// How many rows a sweep reads: more when some sandbox clock is ahead, since rows not yet
    /// due for their own merchant are read and passed over.
    fn lookahead_batch(&self, ahead: i64) -> i64 {
        if ahead > 0 {
            self.config.notify.batch * 8
        } else {
            self.config.notify.batch
        }
    }

    /// Closes orders left unpaid past their `payTimeout` (by version: a payment that started
    /// meanwhile wins).
    pub async fn close_expired(&self) {
        // Merchants whose sandbox clock is ahead see their orders expire sooner.
        let ahead = self.largest_offset_millis().div_euclid(1_000);
        let now = self.now_seconds() + ahead;
        let expired = match self
            .store
            .unpaid_past_timeout(now, self.lookahead_batch(ahead))
            .await
        {
            Ok(expired) => expired,
            Err(error) => {
                tracing::error!(error = %error, "gateway: cannot read expired orders");
                return;
            }
        };
        for order in expired {
            if order.pay_timeout >= self.merchant_now_seconds(&order.mer_id) {
                continue;
            }
            let tn = order.tn.clone();
            if let Err(error) = self
                .apply_event(order, cloudpass_core::order::OrderEvent::TimedOut, |_| {})
                .await
            {
                tracing::debug!(error = ?error, tn = %tn, "gateway: an expired order moved before it could be closed");
            }
        }
    }

    /// One look: every due notification sent once and its outcome recorded. The look's
    /// notifications are sent at the same time (up to `notify.batch`), so a merchant that
    /// is slow to answer, or never does, delays no one else's.
    pub async fn deliver_due(&self, client: &reqwest::Client) {
        use futures_util::StreamExt;
        // A notification is due by its merchant's clock (a sandbox clock may be ahead).
        let ahead = self.largest_offset_millis();
        let now = self.clock.now_millis() + ahead;
        let due = match self
            .store
            .due_notifications(now, self.lookahead_batch(ahead))
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(error = %error, "gateway: cannot read due notifications");
                return;
            }
        };
        let due: Vec<NotificationRow> = due
            .into_iter()
            .filter(|n| n.next_attempt_at <= self.merchant_now_millis(&n.mer_id))
            .collect();
        // The merchants' notification drills (sandbox settings), read once per look.
        let mut drills: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for notification in &due {
            if !drills.contains_key(&notification.mer_id) {
                let drill = self
                    .store
                    .failed_notification_sends(&notification.mer_id)
                    .await
                    .unwrap_or(0);
                drills.insert(notification.mer_id.clone(), drill);
            }
        }
        let at_once = usize::try_from(self.config.notify.batch)
            .unwrap_or(1)
            .max(1);
        futures_util::stream::iter(due)
            .for_each_concurrent(at_once, |notification| {
                let drill = drills.get(&notification.mer_id).copied().unwrap_or(0);
                self.deliver_one(client, notification, drill)
            })
            .await;
    }

    /// Sends one notification and records the outcome: delivered, due again after the
    /// schedule's next wait, or given up.
    async fn deliver_one(
        &self,
        client: &reqwest::Client,
        mut notification: NotificationRow,
        drill: i64,
    ) {
        let sent_at = std::time::Instant::now();
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
        if sent_at.elapsed() > SLOW_STEP {
            tracing::warn!(tn = %notification.tn, took_ms = sent_at.elapsed().as_millis() as u64, status = ?status, "gateway: a notification's send was slow");
        }
        let now = self.merchant_now_millis(&notification.mer_id);
        notification.attempts += 1;
        notification.last_status = status;
        // A drill counts the first sends as failed whatever the merchant answered.
        let drilled = notification.attempts <= drill;
        if drilled {
            tracing::info!(tn = %notification.tn, attempt = notification.attempts, "gateway: a notification send counted as failed by the merchant's drill");
        }
        if matches!(status, Some(200 | 302)) && !drilled {
            notification.delivered_at = Some(now);
            self.certify(&notification.mer_id, Case::NotificationAcknowledged)
                .await;
            if notification.attempts > 1 {
                self.certify(&notification.mer_id, Case::NotificationRetried)
                    .await;
            }
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

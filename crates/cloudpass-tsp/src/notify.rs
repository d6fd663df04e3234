//! Delivering the outbox: every change wrote its notifications in the same transaction as
//! itself; this worker sends them to the wallets' and banks' webhooks.
//!
//! - Each event is POSTed as JSON with its stable `X-Cloudpass-Event-Id` and an HMAC-SHA-256
//!   signature of the body under the subscriber's shared secret.
//! - Per (subscriber, token) events go out in order: the store hands out only the oldest
//!   undelivered event of each token.
//! - A failure is retried with exponential backoff (1 s, 2 s, 4 s … capped at 5 minutes) up
//!   to `max_attempts`, then dead-lettered (visible in the token's notifications).
//! - Claims are leases: if the process dies mid-delivery, the event becomes due again when
//!   the lease runs out — delivery is at least once, and the event ID lets receivers dedupe.

use std::sync::Arc;
use std::time::Duration;

use cloudpass_crypto::signature;
use cloudpass_store::{DeliveryOutcome, OutboxRow, TokenStore};

use crate::error::{TspError, TspResult};
use crate::secret::Secret;
use crate::service::Tsp;

#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Events claimed per round.
    pub batch: i64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    pub lease: Duration,
    pub max_attempts: i64,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Pause when nothing is due.
    pub idle_poll: Duration,
    pub timeout: Duration,
    /// Delivered and dead-lettered events are kept this long, then pruned.
    pub outbox_retention: Duration,
    /// Idempotency records are kept this long: a retry later than that is a new request.
    pub idempotency_retention: Duration,
    /// How often pruning runs.
    pub prune_every: Duration,
    /// A PEM certificate trusted beside the platform's roots (the sandbox's own, when it
    /// serves TLS and receives its own notifications).
    pub extra_root: Option<Vec<u8>>,
    /// Production: deliver only to https URLs whose host resolves to public addresses (no
    /// loopback, private, link-local or otherwise internal ones).
    pub public_https_only: bool,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            batch: 64,
            concurrency: 16,
            lease: Duration::from_secs(60),
            max_attempts: 8,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            idle_poll: Duration::from_millis(200),
            timeout: Duration::from_secs(10),
            outbox_retention: Duration::from_secs(30 * 86_400),
            idempotency_retention: Duration::from_secs(86_400),
            prune_every: Duration::from_secs(3_600),
            extra_root: None,
            public_https_only: false,
        }
    }
}

/// (subscriber kind, subscriber ID) → webhook URL and secret (if any), and until when.
type SubscriberCache =
    std::sync::Mutex<std::collections::HashMap<(String, String), (Option<(String, Secret)>, i64)>>;

pub struct Notifier {
    tsp: Arc<Tsp>,
    http: reqwest::Client,
    config: NotifierConfig,
    /// Subscribers' webhook URLs and secrets, remembered for [`SUBSCRIBER_TTL_MS`].
    subscribers: Arc<SubscriberCache>,
}

/// How long a subscriber's webhook URL and secret are remembered.
pub const SUBSCRIBER_TTL_MS: i64 = 30_000;

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Notifier {
    pub fn new(tsp: Arc<Tsp>, config: NotifierConfig) -> TspResult<Self> {
        let mut builder =
            cloudpass_http::client::builder(config.timeout, config.extra_root.as_deref())
                .map_err(|error| TspError::Internal(format!("HTTP client: {error}")))?;
        // A receiver answers for itself: a redirect is a failed delivery, never followed (it
        // could point anywhere, an internal address included).
        builder = builder.redirect(reqwest::redirect::Policy::none());
        if config.public_https_only {
            builder = builder
                .https_only(true)
                .dns_resolver(Arc::new(cloudpass_http::client::PublicOnlyResolver));
        }
        let http = builder
            .build()
            .map_err(|error| TspError::Internal(format!("HTTP client: {error}")))?;
        Ok(Self {
            tsp,
            http,
            config,
            subscribers: Arc::default(),
        })
    }

    /// Delivers due events until `shutdown` fires.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_prune {
                self.prune().await;
                next_prune = tokio::time::Instant::now() + self.config.prune_every;
            }
            let delivered = match self.round().await {
                Ok(count) => count,
                Err(error) => {
                    tracing::warn!(error = %error, "notification round failed");
                    0
                }
            };
            if delivered == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.idle_poll) => {}
                    _ = shutdown.changed() => return,
                }
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Deletes what has outlived its retention: the table stays bounded.
    async fn prune(&self) {
        let now = self.tsp.now();
        match self
            .tsp
            .store()
            .prune_outbox(now - millis(self.config.outbox_retention))
            .await
        {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "pruned delivered notifications"),
            Err(error) => tracing::warn!(error = %error, "pruning notifications failed"),
        }
        if let Err(error) = self
            .tsp
            .store()
            .prune_idempotency(now - millis(self.config.idempotency_retention))
            .await
        {
            tracing::warn!(error = %error, "pruning idempotency records failed");
        }
    }

    /// One round: claim due events and deliver them. Returns how many were attempted.
    pub async fn round(&self) -> TspResult<usize> {
        let now = self.tsp.now();
        let events = self
            .tsp
            .store()
            .claim_due_events(now, now + millis(self.config.lease), self.config.batch)
            .await?;
        let count = events.len();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(self.config.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for event in events {
            let Ok(permit) = Arc::clone(&semaphore).acquire_owned().await else {
                break;
            };
            let tsp = Arc::clone(&self.tsp);
            let http = self.http.clone();
            let config = self.config.clone();
            let subscribers = Arc::clone(&self.subscribers);
            tasks.spawn(async move {
                let outcome = deliver(&tsp, &http, &config, &subscribers, &event).await;
                if let Err(error) = tsp.store().record_delivery(event.id, &outcome).await {
                    tracing::warn!(event_id = %event.event_id, error = %error, "could not record a delivery outcome");
                }
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(count)
    }
}

async fn deliver(
    tsp: &Tsp,
    http: &reqwest::Client,
    config: &NotifierConfig,
    subscribers: &SubscriberCache,
    event: &OutboxRow,
) -> DeliveryOutcome {
    let now = tsp.now();
    let failed = |error: String| {
        if event.attempts + 1 >= config.max_attempts {
            tracing::warn!(event_id = %event.event_id, subscriber = %event.subscriber_id, error = %error, "notification dead-lettered");
            DeliveryOutcome::GiveUp { error, at: now }
        } else {
            let exponent = u32::try_from(event.attempts.clamp(0, 20)).unwrap_or(20);
            let backoff = millis(config.first_backoff)
                .saturating_mul(1 << exponent)
                .min(millis(config.max_backoff));
            DeliveryOutcome::Retry {
                error,
                next_attempt_at: now + backoff,
            }
        }
    };
    let key = (event.subscriber_kind.clone(), event.subscriber_id.clone());
    let cached = subscribers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .filter(|(_, expires)| *expires > now)
        .map(|(target, _)| target.clone());
    let looked_up = match cached {
        Some(target) => Ok(target),
        None => subscriber(tsp, event).await.inspect(|target| {
            subscribers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, (target.clone(), now + SUBSCRIBER_TTL_MS));
        }),
    };
    let target = match looked_up {
        Ok(Some(target)) => target,
        Ok(None) => {
            return DeliveryOutcome::GiveUp {
                error: "the subscriber has no webhook URL".into(),
                at: now,
            };
        }
        Err(error) => return failed(error.to_string()),
    };
    // An address written as such is never resolved, so the resolver cannot screen it.
    if config.public_https_only && !cloudpass_http::client::public_url(&target.0) {
        return DeliveryOutcome::GiveUp {
            error: "the webhook URL is not https to a public host".into(),
            at: now,
        };
    }
    let timestamp = now / 1000;
    let body = event.payload.as_bytes().to_vec();
    let result = http
        .post(&target.0)
        .header("content-type", "application/json")
        .header("x-cloudpass-event-id", &event.event_id)
        .header("x-cloudpass-event-type", &event.event_type)
        .header(signature::TIMESTAMP_HEADER, timestamp.to_string())
        .header(
            signature::SIGNATURE_HEADER,
            signature::sign(target.1.expose(), timestamp, &body),
        )
        .body(body)
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => {
            DeliveryOutcome::Delivered { at: tsp.now() }
        }
        Ok(response) => failed(format!("HTTP {}", response.status())),
        Err(error) if error.is_timeout() => failed("timed out".into()),
        Err(error) if error.is_connect() => failed("connection refused or unreachable".into()),
        Err(error) => failed(error.to_string()),
    }
}

/// The webhook URL and signing secret of an event's subscriber.
async fn subscriber(
    tsp: &Tsp,
    event: &OutboxRow,
) -> TspResult<Option<(String, crate::secret::Secret)>> {
    let (url, secret) = match event.subscriber_kind.as_str() {
        "token_requestor" => match tsp.store().token_requestor(&event.subscriber_id).await? {
            Some(row) => (row.webhook_url, row.webhook_secret),
            None => return Ok(None),
        },
        _ => match tsp.store().issuer(&event.subscriber_id).await? {
            Some(row) => (row.webhook_url, row.webhook_secret),
            None => return Ok(None),
        },
    };
    let Some(url) = url else { return Ok(None) };
    let secret = match secret {
        Some(sealed) => tsp.open_secret(&event.subscriber_id, &sealed)?,
        None => Secret::new(Vec::new()),
    };
    Ok(Some((url, secret)))
}

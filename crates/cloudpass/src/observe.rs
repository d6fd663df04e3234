//! What operators watch, on the HTTP port: `GET /metrics` (Prometheus text: the switch's
//! answers by MTI, response code and channel with their latency, the issuer link, the
//! database, the connections of the HTTP port and the switch's (open, bound, accepted and
//! refused), and the backlogs of store and forward and of both notification outboxes with
//! the age of their oldest) and `GET /readyz` (200 when the database answers, the switch has
//! started and its link to the issuer is up; otherwise 503 naming what is down). `/healthz`
//! says only that the process serves HTTP.

use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cloudpass_core::Clock;
use cloudpass_core::peers::{ConnectionCounts, ConnectionLimits};
use cloudpass_store::{AnyStore, Backlog, BacklogStore};
use cloudpass_switch::Switch;
use serde_json::json;

/// What the observation pages read; the switch is set once it has started.
pub struct Observed {
    store: AnyStore,
    switch: OnceLock<Arc<Switch>>,
    clock: Arc<dyn Clock>,
    /// The ports whose connections are counted: the HTTP port, the switch's.
    ports: Mutex<Vec<(&'static str, Arc<ConnectionLimits>)>>,
}

impl Observed {
    pub fn new(store: AnyStore, clock: Arc<dyn Clock>) -> Arc<Observed> {
        Arc::new(Observed {
            store,
            switch: OnceLock::new(),
            clock,
            ports: Mutex::new(Vec::new()),
        })
    }

    /// Counts the connections of the port named `port` (its server holds them against
    /// `limits`).
    pub fn watch_connections(&self, port: &'static str, limits: Arc<ConnectionLimits>) {
        self.ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((port, limits));
    }

    pub fn set_switch(&self, switch: Arc<Switch>) {
        let _ = self.switch.set(switch);
    }
}

pub fn router(observed: Arc<Observed>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .with_state(observed)
}

/// Whether each dependency is up now.
struct Checks {
    database: bool,
    switch: bool,
    issuer_link: bool,
}

impl Checks {
    async fn now(observed: &Observed) -> Checks {
        let database = observed.store.ping().await.is_ok();
        let (switch, issuer_link) = match observed.switch.get() {
            Some(switch) => (true, switch.issuer_link_up().await),
            None => (false, false),
        };
        Checks {
            database,
            switch,
            issuer_link,
        }
    }

    /// What is down, as the operator should read it.
    fn down(&self) -> Vec<&'static str> {
        let mut down = Vec::new();
        if !self.database {
            down.push("the database does not answer");
        }
        if !self.switch {
            down.push("the switch has not started");
        } else if !self.issuer_link {
            down.push("the switch's link to the issuer is down");
        }
        down
    }
}

fn up(ok: bool) -> &'static str {
    if ok { "up" } else { "down" }
}

async fn readyz(State(observed): State<Arc<Observed>>) -> Response {
    let checks = Checks::now(&observed).await;
    let detail = json!({
        "database": up(checks.database),
        "switch": up(checks.switch),
        "issuer_link": up(checks.issuer_link),
    });
    let down = checks.down();
    let (status, body) = if down.is_empty() {
        (StatusCode::OK, json!({"status": "ready", "checks": detail}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "code": "not_ready",
                "message": format!("{}; see /metrics and the logs", down.join("; ")),
                "checks": detail,
            }),
        )
    };
    (status, [(CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

async fn metrics(State(observed): State<Arc<Observed>>) -> Response {
    let checks = Checks::now(&observed).await;
    let mut out = String::new();
    if let Some(switch) = observed.switch.get() {
        switch.metrics().render(&mut out);
    }
    gauge(
        &mut out,
        "cloudpass_issuer_link_up",
        "1 when the switch's link to the issuer is connected.",
        u8::from(checks.issuer_link),
    );
    gauge(
        &mut out,
        "cloudpass_database_up",
        "1 when the database answers.",
        u8::from(checks.database),
    );
    let ports: Vec<(&str, ConnectionCounts)> = observed
        .ports
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(port, limits)| (*port, limits.counts()))
        .collect();
    connection_metrics(&mut out, &ports);
    if let Ok(backlogs) = observed.store.backlogs().await {
        let now = observed.clock.now_millis();
        let queues = [
            ("store_and_forward", backlogs.store_and_forward),
            ("outbox", backlogs.outbox),
            ("merchant_notifications", backlogs.merchant_notifications),
        ];
        backlog_metrics(&mut out, &queues, now);
    }
    (
        [
            (CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        out,
    )
        .into_response()
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn connection_metrics(out: &mut String, ports: &[(&str, ConnectionCounts)]) {
    out.push_str("# HELP cloudpass_connections_open Connections open now, by port.\n# TYPE cloudpass_connections_open gauge\n");
    for (port, counts) in ports {
        let _ = writeln!(
            out,
            "cloudpass_connections_open{{port=\"{port}\"}} {}",
            counts.open
        );
    }
    out.push_str("# HELP cloudpass_connections_max Connections the port holds at most.\n# TYPE cloudpass_connections_max gauge\n");
    for (port, counts) in ports {
        let _ = writeln!(
            out,
            "cloudpass_connections_max{{port=\"{port}\"}} {}",
            counts.max_open
        );
    }
    out.push_str("# HELP cloudpass_connections_accepted_total Connections accepted since the process started, by port.\n# TYPE cloudpass_connections_accepted_total counter\n");
    for (port, counts) in ports {
        let _ = writeln!(
            out,
            "cloudpass_connections_accepted_total{{port=\"{port}\"}} {}",
            counts.accepted
        );
    }
    out.push_str("# HELP cloudpass_connections_refused_total Connections closed at once because the port was full (all_full) or the peer address held its share (peer_full), by port.\n# TYPE cloudpass_connections_refused_total counter\n");
    for (port, counts) in ports {
        for (reason, count) in [
            ("all_full", counts.refused_all_full),
            ("peer_full", counts.refused_peer_full),
        ] {
            let _ = writeln!(
                out,
                "cloudpass_connections_refused_total{{port=\"{port}\",reason=\"{reason}\"}} {count}"
            );
        }
    }
}

fn backlog_metrics(out: &mut String, queues: &[(&str, Backlog)], now: i64) {
    out.push_str("# HELP cloudpass_backlog_pending Messages waiting to be delivered, by queue.\n# TYPE cloudpass_backlog_pending gauge\n");
    for (queue, backlog) in queues {
        let _ = writeln!(
            out,
            "cloudpass_backlog_pending{{queue=\"{queue}\"}} {}",
            backlog.pending
        );
    }
    out.push_str("# HELP cloudpass_backlog_oldest_age_seconds Age of the oldest message waiting, by queue (0 when none waits).\n# TYPE cloudpass_backlog_oldest_age_seconds gauge\n");
    for (queue, backlog) in queues {
        let age = backlog
            .oldest_created_at
            .map_or(0.0, |oldest| (now - oldest).max(0) as f64 / 1000.0);
        let _ = writeln!(
            out,
            "cloudpass_backlog_oldest_age_seconds{{queue=\"{queue}\"}} {age}"
        );
    }
}

//! The HTTP accept loop every cloudpass HTTP port runs: TCP (or TLS) connections served by
//! hyper's HTTP/1.1 with axum's router, and every resource a client can hold bounded.
//!
//! - connections in all and per peer address (past either, a new connection is closed);
//! - the TLS handshake, and the request head (from a connection's first byte, and again
//!   while a kept-alive connection waits for its next request: hyper starts the header timer
//!   when the connection goes idle) — a slow or silent client is cut off;
//! - the whole request, body included, handled within a deadline (408 as JSON).
//!
//! This module must never let one client hold a connection it is not using.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use cloudpass_core::peers::ConnectionLimits;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::errors::status_error;

/// The bounds of an HTTP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A request's head must arrive within this, counted from when the connection opens or
    /// goes idle after a response.
    pub header_timeout: Duration,
    /// A request, its body included, must be handled within this.
    pub request_timeout: Duration,
}

impl HttpLimits {
    /// The connection bounds a server on this port holds its connections against (and
    /// counts them by, for its metrics).
    pub fn connection_limits(&self) -> Arc<ConnectionLimits> {
        ConnectionLimits::new(self.max_connections, self.max_connections_per_peer)
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_peer: 128,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The address a request came from, in its extensions (the accept loop puts it there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// `router` with every request bounded by `timeout` (408 `REQUEST_TIMEOUT` past it: a body
/// that trickles in is cut off like a handler that hangs).
pub fn with_request_timeout(router: Router, timeout: Duration) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| async move {
            match tokio::time::timeout(timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => status_error(StatusCode::REQUEST_TIMEOUT),
            }
        },
    ))
}

/// Serves `router` on `listener` until `shutdown` fires; with `tls`, every connection is TLS.
/// Connections are held against `held` (`limits.connection_limits()`), which the caller
/// keeps to count them.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    held: Arc<ConnectionLimits>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let router = with_request_timeout(router, limits.request_timeout);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        // Refused connections are closed at once (dropped), never queued.
        let slot = match held.take(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::debug!(peer = %peer.ip(), ?refusal, "http: connection refused");
                continue;
            }
        };
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                None => connection(stream, router, limits, peer, shutdown).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => connection(stream, router, limits, peer, shutdown).await,
                        _ => tracing::debug!(%peer, "http: TLS handshake failed or timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
}

async fn connection<S>(
    stream: S,
    router: Router,
    limits: HttpLimits,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router.layer(axum::Extension(PeerAddr(peer))));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let finished = tokio::select! {
        finished = connection.as_mut() => finished,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = finished
        && !error.is_timeout()
        && !error.is_incomplete_message()
    {
        tracing::debug!(%peer, error = %error, "http: connection ended with an error");
    }
}

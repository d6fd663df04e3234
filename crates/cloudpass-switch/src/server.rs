//! The acquirers' ISO 8583 port: the shared server loop (`cloudpass_iso8583::server`, with
//! its bounds) answering with the switch. A connection is admitted by a message from a
//! registered terminal that passes the participant and MAC checks.

use std::sync::Arc;

use cloudpass_core::peers::ConnectionLimits;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use cloudpass_iso8583::server::{PortLimits, port_framing as acquirer_framing};

use crate::switch::Switch;

/// Serves acquirers until `shutdown` fires; with `tls`, every connection is TLS (and, when
/// the acceptor asks for client certificates, an acquirer without a valid one never gets to
/// send a frame). Connections are held against `held` (`limits.connection_limits()`), which
/// the caller keeps to count them.
pub async fn serve(
    switch: Arc<Switch>,
    listener: TcpListener,
    limits: PortLimits,
    held: Arc<ConnectionLimits>,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    cloudpass_iso8583::server::serve("switch", switch, listener, limits, held, tls, shutdown).await
}

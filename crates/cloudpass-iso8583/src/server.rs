//! The one ISO 8583 server loop (the switch's acquirer port, an issuer host's port):
//! persistent TCP connections, many messages in flight on each, answered as they complete
//! (clients match answers by acquirer, STAN and transmission time). What a frame means is
//! the [`FrameHandler`]'s business; this module only moves frames.
//!
//! Every resource a peer can hold is bounded, so that no peer — idle, slow or hostile — can
//! lock the port's real users out: connections in all and per peer address, messages in
//! flight per connection, the time a new connection has to show that it speaks for a
//! registered party, the time between frames, and the time a begun frame (or an answer
//! being written) may take. This module must never keep a connection whose peer has
//! stopped keeping its side of the protocol.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudpass_core::peers::ConnectionLimits;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::framing::{CupsHeader, Framing};
use crate::net;

/// What the port does with one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameAnswer {
    Answer {
        bytes: Vec<u8>,
        /// Whether the frame came from a registered party, authenticated as it must be: a
        /// connection that sends one is admitted (see [`PortLimits::admission`]).
        admits: bool,
    },
    /// Nothing the sender could match an answer to: close the connection.
    Close,
}

/// What answers a port's frames.
pub trait FrameHandler: Send + Sync + 'static {
    /// The answer to one frame (the message without length prefix or CUPS header).
    fn answer_frame(&self, frame: Vec<u8>) -> impl Future<Output = FrameAnswer> + Send;
}

/// The port's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortLimits {
    /// Connections at once, from everyone.
    pub max_connections: usize,
    /// Connections at once from one peer address.
    pub max_connections_per_peer: usize,
    /// Connections not yet admitted (see `admission`) at once. When a new one would exceed
    /// it, the oldest waiting connection is closed to make room: a flood of silent
    /// connections can delay a newcomer by its sign-on's length, never lock it out.
    pub max_waiting: usize,
    /// Messages in flight on one connection.
    pub in_flight_per_connection: usize,
    /// How long a new connection has to send a message the handler admits (the switch: a
    /// sign-on, or a transaction that passes the participant and MAC checks; echoes and
    /// refused messages do not count).
    pub admission: Duration,
    /// How long an admitted connection may stay silent between frames (acquirers send echo
    /// messages, 0800 with 70 = 301, to keep a quiet link open).
    pub idle: Duration,
    /// How long a frame may take from its first byte to its last, and an answer to be
    /// written.
    pub frame: Duration,
}

impl PortLimits {
    /// The connection bounds a server on this port holds its connections against (and
    /// counts them by, for its metrics).
    pub fn connection_limits(&self) -> Arc<ConnectionLimits> {
        ConnectionLimits::new(self.max_connections, self.max_connections_per_peer)
    }
}

impl Default for PortLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_peer: 64,
            max_waiting: 256,
            in_flight_per_connection: 512,
            admission: Duration::from_secs(10),
            idle: Duration::from_secs(300),
            frame: Duration::from_secs(5),
        }
    }
}

/// Connections waiting for admission, oldest first.
#[derive(Default)]
struct Waiting(Mutex<WaitingList>);

#[derive(Default)]
struct WaitingList {
    next_id: u64,
    entries: BTreeMap<u64, Arc<Notify>>,
}

/// A connection's place in the waiting list; it leaves the list when dropped. `evicted` is
/// notified when an newer connection takes its place.
struct WaitingTicket {
    waiting: Arc<Waiting>,
    id: u64,
    evicted: Arc<Notify>,
}

impl Waiting {
    fn enter(self: &Arc<Self>, limit: usize) -> WaitingTicket {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let id = list.next_id;
        list.next_id += 1;
        let evicted = Arc::new(Notify::new());
        list.entries.insert(id, Arc::clone(&evicted));
        while list.entries.len() > limit.max(1) {
            if let Some((_, oldest)) = list.entries.pop_first() {
                // Stored as a permit if that connection is not waiting on it this instant.
                oldest.notify_one();
            }
        }
        WaitingTicket {
            waiting: Arc::clone(self),
            id,
            evicted,
        }
    }
}

impl Drop for WaitingTicket {
    fn drop(&mut self) {
        let mut list = self.waiting.0.lock().unwrap_or_else(|p| p.into_inner());
        list.entries.remove(&self.id);
    }
}

/// The framing of a port: the CUPS header is optional, and an answer carries one when its
/// request did.
pub fn port_framing() -> Framing {
    Framing {
        cups_header_optional: true,
        ..Framing::default()
    }
}

/// What a connection's writer is handed.
enum Outgoing {
    Answer(Option<CupsHeader>, Vec<u8>),
    /// Close the connection (after the answers before this one).
    Close,
}

/// Serves the port until `shutdown` fires; with `tls`, every connection is TLS (and, when
/// the acceptor asks for client certificates, a peer without a valid one never gets to
/// send a frame). The handshake counts against the admission time. `name` says whose port
/// it is in logs. Connections are held against `held` (`limits.connection_limits()`; the
/// caller keeps it to count them).
#[allow(clippy::too_many_arguments)]
pub async fn serve<H: FrameHandler>(
    name: &'static str,
    handler: Arc<H>,
    listener: TcpListener,
    limits: PortLimits,
    held: Arc<ConnectionLimits>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let waiting = Arc::new(Waiting::default());
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
                tracing::debug!(port = name, peer = %peer.ip(), ?refusal, "connection refused");
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        let shutdown = shutdown.clone();
        let ticket = waiting.enter(limits.max_waiting);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                None => connection(name, handler, stream, limits, ticket, shutdown).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(limits.admission, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            connection(name, handler, stream, limits, ticket, shutdown).await
                        }
                        _ => {
                            tracing::debug!(port = name, %peer, "TLS handshake failed or timed out")
                        }
                    }
                }
            }
            drop(slot);
        });
    }
}

async fn connection<H: FrameHandler, S>(
    name: &'static str,
    handler: Arc<H>,
    stream: S,
    limits: PortLimits,
    ticket: WaitingTicket,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Eviction is decided under the waiting list's lock, and admission leaves the list under
    // it: once admitted, a connection can no longer be evicted.
    let evicted = Arc::clone(&ticket.evicted);
    let ticket = Arc::new(Mutex::new(Some(ticket)));
    let (mut reader, mut writer) = tokio::io::split(stream);
    let framing = port_framing();
    let (answers, mut outgoing) = mpsc::channel::<Outgoing>(limits.in_flight_per_connection);
    let mut writer_task = tokio::spawn(async move {
        while let Some(Outgoing::Answer(header, bytes)) = outgoing.recv().await {
            let write = net::write_frame(&mut writer, &framing, header.as_ref(), &bytes);
            // A peer that does not read its answers is cut off like one that does not write.
            if !matches!(tokio::time::timeout(limits.frame, write).await, Ok(Ok(()))) {
                break;
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(limits.in_flight_per_connection));
    let admitted = Arc::new(AtomicBool::new(false));
    let admission_deadline = Instant::now() + limits.admission;
    loop {
        let wait = if admitted.load(Ordering::Acquire) {
            limits.idle
        } else {
            admission_deadline.saturating_duration_since(Instant::now())
        };
        let frame = tokio::select! {
            frame = net::read_frame_within(&mut reader, &framing, wait, limits.frame) => frame,
            _ = evicted.notified() => break,
            _ = shutdown.changed() => break,
            _ = &mut writer_task => return,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            // Closed by the peer, a broken frame, or a deadline missed. A connection still
            // waiting for its first answer when admission time runs out goes too.
            Ok(None) | Err(_) => break,
        };
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let handler = Arc::clone(&handler);
        let answers = answers.clone();
        let admitted = Arc::clone(&admitted);
        let ticket = Arc::clone(&ticket);
        let reply_header = frame.header.map(|header| header.reply());
        tokio::spawn(async move {
            match handler.answer_frame(frame.message).await {
                FrameAnswer::Answer { bytes, admits } => {
                    if admits {
                        admitted.store(true, Ordering::Release);
                        drop(ticket.lock().unwrap_or_else(|p| p.into_inner()).take());
                    }
                    let _ = answers.send(Outgoing::Answer(reply_header, bytes)).await;
                }
                // Nothing the peer could match an answer to.
                FrameAnswer::Close => {
                    tracing::warn!(
                        port = name,
                        "closing a connection after a message that cannot be answered"
                    );
                    let _ = answers.send(Outgoing::Close).await;
                }
            }
            drop(permit);
        });
    }
    drop(answers);
    let _ = writer_task.await;
}

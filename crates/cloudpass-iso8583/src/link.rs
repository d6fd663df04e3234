//! A client link to another party's ISO 8583 port over TCP (the switch's link to an issuer
//! host, a terminal's link to the switch): requests
//! go out on one persistent connection, many in flight, and each response is matched to its
//! request by acquirer, STAN and transmission time. A link that drops is re-established; a
//! request that gets no answer in time fails with [`LinkError::Timeout`] — its outcome at the
//! other end is then unknown, which the caller must settle (a reversal).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::exchange::Answer;
use crate::framing::Framing;
use crate::{Message, net, profile};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{oneshot, watch};

/// How a message is matched to its answer.
type MatchKey = (String, String, String);

fn match_key(message: &Message<'_>) -> MatchKey {
    let text = |field| message.get_str(field).unwrap_or("").to_owned();
    (text(32), text(11), text(7))
}

pub use crate::exchange::{Exchange, LinkError};

/// Most requests waiting for answers on one link.
pub const MAX_IN_FLIGHT: usize = 4096;

struct Shared {
    pending: Mutex<HashMap<MatchKey, oneshot::Sender<Message<'static>>>>,
    writer: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
}

pub struct Link {
    shared: Arc<Shared>,
    timeout: Duration,
    framing: Framing,
}

impl Link {
    /// A link to `address`, connecting (and reconnecting) in the background until `shutdown`.
    pub fn start(
        address: SocketAddr,
        timeout: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            writer: tokio::sync::Mutex::new(None),
        });
        let link = Arc::new(Self {
            shared: Arc::clone(&shared),
            timeout,
            framing: Framing::default(),
        });
        let framing = link.framing;
        tokio::spawn(async move {
            loop {
                if *shutdown.borrow() {
                    return;
                }
                match tokio::net::TcpStream::connect(address).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        let (mut reader, writer) = stream.into_split();
                        *shared.writer.lock().await = Some(writer);
                        let mut carried = false;
                        loop {
                            let frame = tokio::select! {
                                frame = net::read_frame(&mut reader, &framing) => frame,
                                _ = shutdown.changed() => return,
                            };
                            let Ok(Some(frame)) = frame else { break };
                            carried = true;
                            let Ok(message) = profile::cloudpass().decode(&frame.message) else {
                                tracing::warn!(%address, "link: undecodable answer dropped");
                                continue;
                            };
                            let message = message.into_owned();
                            let waiting = shared
                                .pending
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&match_key(&message));
                            match waiting {
                                Some(waiter) => {
                                    let _ = waiter.send(message);
                                }
                                None => {
                                    tracing::warn!(%address, mti = %message.mti(), "link: answer to nothing in flight (late?) dropped")
                                }
                            }
                        }
                        *shared.writer.lock().await = None;
                        // Everything in flight on the dead connection is now unknown.
                        shared
                            .pending
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .clear();
                        // A connection that carried answers going down is news; one closed
                        // before its first answer (the far end still down, each retry) is
                        // not, and would fill the log.
                        if carried {
                            tracing::warn!(%address, "link down; reconnecting");
                        } else {
                            tracing::debug!(%address, "link: closed before any answer; reconnecting");
                        }
                    }
                    Err(error) => tracing::debug!(%address, error = %error, "link: cannot connect"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        });
        link
    }

    /// Whether the link is connected now.
    pub async fn is_up(&self) -> bool {
        self.shared.writer.lock().await.is_some()
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&self, message: &Message<'_>) -> Result<Message<'static>, LinkError> {
        let bytes = profile::cloudpass()
            .encode(message)
            .map_err(|e| LinkError::Encode(e.to_string()))?;
        let key = match_key(message);
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if pending.len() >= MAX_IN_FLIGHT {
                return Err(LinkError::Down);
            }
            if pending.contains_key(&key) {
                return Err(LinkError::InFlight);
            }
            pending.insert(key.clone(), sender);
        }
        let sent = {
            let mut writer = self.shared.writer.lock().await;
            match writer.as_mut() {
                Some(writer) => net::write_frame(writer, &self.framing, None, &bytes)
                    .await
                    .is_ok(),
                None => false,
            }
        };
        if !sent {
            self.shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            return Err(LinkError::Down);
        }
        match tokio::time::timeout(self.timeout, receiver).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(LinkError::Timeout),
            Err(_) => {
                self.shared
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                Err(LinkError::Timeout)
            }
        }
    }
}

impl Exchange for Link {
    fn request<'a>(&'a self, message: &'a Message<'_>) -> Answer<'a> {
        Box::pin(Link::request(self, message))
    }

    fn is_up(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(Link::is_up(self))
    }
}

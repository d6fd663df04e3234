//! One request, one answer with another party's ISO 8583 port — the seam every client of a
//! port goes through: a terminal or the gateway to the switch, the switch to an issuer host.
//! Over TCP it is a [`crate::link::Link`]; inside one process it is
//! `crate::in_process::InProcess`, which hands the encoded message to the port's own
//! handler, so the very checks the TCP port runs are run (the gateway reaches the switch so,
//! and the switch's tests reach the issuer host so).

use std::future::Future;
use std::pin::Pin;

use crate::Message;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is down")]
    Down,
    #[error("no answer in time")]
    Timeout,
    #[error("a request with the same acquirer, STAN and transmission time is already in flight")]
    InFlight,
    #[error("the message cannot be encoded: {0}")]
    Encode(String),
}

/// The future of one exchange.
pub type Answer<'a> =
    Pin<Box<dyn Future<Output = Result<Message<'static>, LinkError>> + Send + 'a>>;

/// A client's side of a port: requests out, each matched to its answer.
///
/// A [`LinkError::Timeout`] leaves the request's outcome at the other end unknown: the
/// caller must settle it (a reversal). [`LinkError::Down`] means nothing was sent.
pub trait Exchange: Send + Sync {
    /// Sends `message` and waits for its answer.
    fn request<'a>(&'a self, message: &'a Message<'_>) -> Answer<'a>;

    /// Whether a request sent now could reach the other side.
    fn is_up(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
}

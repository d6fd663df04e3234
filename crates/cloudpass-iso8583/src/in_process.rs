//! A port's [`Exchange`] inside one process: a client that runs in the same process as a
//! port's handler (the gateway and the switch, a test's switch and issuer host) exchanges
//! messages with it without a socket — but as encoded bytes through the handler the TCP port
//! calls, so decoding, admission, MAC checks and answers are exactly the port's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::exchange::{Answer, Exchange, LinkError};
use crate::server::{FrameAnswer, FrameHandler};
use crate::{Message, profile};

/// An [`Exchange`] with a port handler `H` in the same process.
pub struct InProcess<H>(pub Arc<H>);

impl<H> InProcess<H> {
    pub fn new(handler: Arc<H>) -> Self {
        Self(handler)
    }
}

impl<H> Clone for InProcess<H> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<H: FrameHandler> Exchange for InProcess<H> {
    fn request<'a>(&'a self, message: &'a Message<'_>) -> Answer<'a> {
        Box::pin(async move {
            let bytes = profile::cloudpass()
                .encode(message)
                .map_err(|error| LinkError::Encode(error.to_string()))?;
            match self.0.answer_frame(bytes).await {
                FrameAnswer::Answer { bytes, .. } => profile::cloudpass()
                    .decode(&bytes)
                    .map(Message::into_owned)
                    // An answer that does not decode leaves the request's outcome as unknown
                    // as a lost answer would.
                    .map_err(|_| LinkError::Timeout),
                // The port would close the connection: nothing answers this request.
                FrameAnswer::Close => Err(LinkError::Down),
            }
        })
    }

    fn is_up(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async { true })
    }
}

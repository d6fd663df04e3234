//! The switch's port inside one process: a client (the gateway, a test terminal) that runs in
//! the same process as the switch exchanges messages with it without a socket — but as
//! encoded bytes through the very path the TCP port takes, so admission, MAC checks and
//! answers are identical.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cloudpass_iso8583::exchange::{Answer, Exchange, LinkError};
use cloudpass_iso8583::server::FrameAnswer;
use cloudpass_iso8583::{Message, profile};

use super::Switch;

/// An [`Exchange`] with a switch in the same process.
#[derive(Clone)]
pub struct InProcess(pub Arc<Switch>);

impl Exchange for InProcess {
    fn request<'a>(&'a self, message: &'a Message<'_>) -> Answer<'a> {
        Box::pin(async move {
            let bytes = profile::cloudpass()
                .encode(message)
                .map_err(|error| LinkError::Encode(error.to_string()))?;
            match self.0.handle_frame(&bytes).await {
                FrameAnswer::Answer { bytes, .. } => profile::cloudpass()
                    .decode(&bytes)
                    .map(Message::into_owned)
                    // The switch's own answer always decodes; if it did not, the request's
                    // outcome would be as unknown as after a lost answer.
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

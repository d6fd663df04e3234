//! The acquirers' ISO 8583 port: persistent TCP connections, many messages in flight on each
//! (answered as they complete; acquirers match by STAN and transmission time), bounded
//! connections and bounded work per connection.

use std::sync::Arc;

use cloudpass_iso8583::framing::Framing;
use cloudpass_iso8583::net;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::switch::Switch;

/// Connections at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Messages in flight on one connection.
pub const IN_FLIGHT_PER_CONNECTION: usize = 512;

/// Serves acquirers until `shutdown` fires.
pub async fn serve(
    switch: Arc<Switch>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::warn!(%peer, "switch: connection limit reached; refusing");
            continue;
        };
        let switch = Arc::clone(&switch);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            connection(switch, stream, shutdown).await;
            drop(permit);
        });
    }
}

async fn connection(
    switch: Arc<Switch>,
    stream: tokio::net::TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let framing = Framing::default();
    let (answers, mut outgoing) = mpsc::channel::<Vec<u8>>(IN_FLIGHT_PER_CONNECTION);
    let writer_task = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if net::write_frame(&mut writer, &framing, None, &bytes)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION));
    loop {
        let frame = tokio::select! {
            frame = net::read_frame(&mut reader, &framing) => frame,
            _ = shutdown.changed() => break,
        };
        let Ok(Some(frame)) = frame else { break };
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let switch = Arc::clone(&switch);
        let answers = answers.clone();
        tokio::spawn(async move {
            if let Some(bytes) = switch.handle_frame(&frame.message).await {
                let _ = answers.send(bytes).await;
            }
            drop(permit);
        });
    }
    drop(answers);
    let _ = writer_task.await;
}

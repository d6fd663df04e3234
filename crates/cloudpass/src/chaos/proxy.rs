//! A TCP fault proxy: it stands on a link between two parties and passes bytes on, until it
//! is told to delay them, swallow them, cut every connection, or pass a frame only in part.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::schedule::LinkFault;

/// What the proxy does now. `cuts` counts the cuts ordered so far: a connection opened
/// before the latest cut is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Behaviour {
    fault: Option<LinkFault>,
    cuts: u64,
}

pub struct FaultProxy {
    pub address: SocketAddr,
    behaviour: watch::Sender<Behaviour>,
}

impl FaultProxy {
    /// A proxy on a free loopback port passing connections on to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (behaviour, watching) = watch::channel(Behaviour {
            fault: None,
            cuts: 0,
        });
        tokio::spawn(accept(listener, target, watching));
        Ok(FaultProxy { address, behaviour })
    }

    /// Starts `fault` (a cut happens at once and is over).
    pub fn inject(&self, fault: LinkFault) {
        self.behaviour.send_modify(|now| match fault {
            LinkFault::Cut => now.cuts += 1,
            other => now.fault = Some(other),
        });
    }

    /// Passes bytes on again; connections that lost bytes while swallowed are cut.
    pub fn heal(&self) {
        self.behaviour.send_modify(|now| now.fault = None);
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, behaviour: watch::Receiver<Behaviour>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let behaviour = behaviour.clone();
        tokio::spawn(async move {
            let connected =
                tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await;
            let Ok(Ok(server)) = connected else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let born = behaviour.borrow().cuts;
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            // Either way ending ends both: dropping the halves closes the connection.
            tokio::select! {
                _ = pump(client_read, server_write, behaviour.clone(), born) => {}
                _ = pump(server_read, client_write, behaviour, born) => {}
            }
        });
    }
}

/// Passes bytes from `from` to `to` as `behaviour` says, until either side closes or the
/// connection is cut.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut behaviour: watch::Receiver<Behaviour>,
    born: u64,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut lost_bytes = false;
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = behaviour.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *behaviour.borrow();
                if now.cuts != born || (lost_bytes && now.fault != Some(LinkFault::Blackhole)) {
                    return;
                }
                continue;
            }
        };
        let Ok(count) = read else { return };
        if count == 0 {
            return;
        }
        let now = *behaviour.borrow();
        if now.cuts != born {
            return;
        }
        let chunk = &buffer[..count];
        match now.fault {
            None | Some(LinkFault::Cut) => {
                if to.write_all(chunk).await.is_err() {
                    return;
                }
            }
            Some(LinkFault::Delay(wait)) => {
                tokio::time::sleep(wait).await;
                if to.write_all(chunk).await.is_err() {
                    return;
                }
            }
            Some(LinkFault::Blackhole) => lost_bytes = true,
            Some(LinkFault::Partial) => {
                let _ = to.write_all(&chunk[..count.div_ceil(2)]).await;
                let _ = to.flush().await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 64];
                    while let Ok(count) = stream.read(&mut buffer).await {
                        if count == 0 || stream.write_all(&buffer[..count]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> Option<Vec<u8>> {
        stream.write_all(bytes).await.ok()?;
        let mut answer = vec![0u8; bytes.len()];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut answer));
        match read.await {
            Ok(Ok(_)) => Some(answer),
            _ => None,
        }
    }

    #[tokio::test]
    async fn passes_then_cuts_swallows_and_halves_as_told() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.address).await.unwrap();
        assert_eq!(
            round_trip(&mut stream, b"ping").await.as_deref(),
            Some(&b"ping"[..])
        );

        proxy.inject(LinkFault::Cut);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(round_trip(&mut stream, b"ping").await, None, "cut");

        let mut stream = TcpStream::connect(proxy.address).await.unwrap();
        assert!(
            round_trip(&mut stream, b"pong").await.is_some(),
            "a new connection passes"
        );
        proxy.inject(LinkFault::Blackhole);
        assert_eq!(round_trip(&mut stream, b"lost").await, None, "swallowed");
        proxy.heal();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            round_trip(&mut stream, b"more").await,
            None,
            "cut after losing bytes"
        );

        let mut stream = TcpStream::connect(proxy.address).await.unwrap();
        proxy.inject(LinkFault::Partial);
        stream.write_all(b"abcdef").await.unwrap();
        let mut answer = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_millis(300), stream.read_to_end(&mut answer)).await;
        assert!(closed.is_ok(), "the connection is closed");
        assert!(answer.len() < 6, "never the whole frame back: {answer:?}");
    }
}

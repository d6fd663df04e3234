//! The connections a server holds, bounded in all and per peer address. A
//! [`ConnectionSlot`] is one connection's place; dropping it gives the place back.
//! Synchronous and free of IO: the servers (the switch's port, the HTTP edge) accept, ask
//! here, and close at once what is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer address holds its share already.
    PeerFull,
    /// The server holds all it may.
    AllFull,
}

/// Open connections, in all and by peer address, against their bounds.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_peer: usize,
    held: Mutex<Held>,
    /// Connections taken since the server started.
    accepted: AtomicU64,
    /// Connections refused since the server started: a peer over its share, the server full.
    refused_peer_full: AtomicU64,
    refused_all_full: AtomicU64,
}

/// What a server's connections are now, for its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionCounts {
    pub open: usize,
    pub max_open: usize,
    pub accepted: u64,
    pub refused_peer_full: u64,
    pub refused_all_full: u64,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// One connection's place; given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    peer: IpAddr,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_peer,
            held: Mutex::new(Held::default()),
            accepted: AtomicU64::new(0),
            refused_peer_full: AtomicU64::new(0),
            refused_all_full: AtomicU64::new(0),
        })
    }

    /// A place for one more connection from `peer`, unless a bound is reached.
    pub fn take(self: &Arc<Self>, peer: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let of_peer = held.by_peer.get(&peer).copied().unwrap_or(0);
        if of_peer >= self.max_per_peer {
            self.refused_peer_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PeerFull);
        }
        if held.total >= self.max_total {
            self.refused_all_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::AllFull);
        }
        held.total += 1;
        self.accepted.fetch_add(1, Ordering::Relaxed);
        held.by_peer.insert(peer, of_peer + 1);
        Ok(ConnectionSlot {
            limits: Arc::clone(self),
            peer,
        })
    }

    /// Open connections now and what was accepted and refused so far.
    pub fn counts(&self) -> ConnectionCounts {
        let open = self.held.lock().unwrap_or_else(|p| p.into_inner()).total;
        ConnectionCounts {
            open,
            max_open: self.max_total,
            accepted: self.accepted.load(Ordering::Relaxed),
            refused_peer_full: self.refused_peer_full.load(Ordering::Relaxed),
            refused_all_full: self.refused_all_full.load(Ordering::Relaxed),
        }
    }

    /// Connections `peer` holds now.
    pub fn held_by(&self, peer: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.by_peer.get(&peer).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut held = self.limits.held.lock().unwrap_or_else(|p| p.into_inner());
        held.total = held.total.saturating_sub(1);
        if let Some(count) = held.by_peer.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_peer_holds_its_share_the_server_its_total_and_places_come_back() {
        let limits = ConnectionLimits::new(3, 2);
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limits.take(one).unwrap();
        let _second = limits.take(one).unwrap();
        assert_eq!(limits.take(one).unwrap_err(), Refusal::PeerFull);
        let _third = limits.take(two).unwrap();
        assert_eq!(limits.take(two).unwrap_err(), Refusal::AllFull);
        assert_eq!(
            limits.counts(),
            ConnectionCounts {
                open: 3,
                max_open: 3,
                accepted: 3,
                refused_peer_full: 1,
                refused_all_full: 1,
            }
        );
        drop(first);
        assert_eq!(limits.held_by(one), 1);
        assert_eq!(limits.counts().open, 2);
        assert!(limits.take(two).is_ok(), "a place came back");
    }
}

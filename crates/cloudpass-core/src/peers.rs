//! Connections per peer address, for servers that bound what one peer may hold. A
//! [`PeerSlot`] is a connection's place; dropping it gives the place back. Synchronous and
//! free of IO: the servers (the switch's port, the HTTP edge) do the accepting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections by peer address.
#[derive(Debug, Default)]
pub struct PeerCounts(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place among its peer's; given back when dropped.
#[derive(Debug)]
pub struct PeerSlot {
    counts: Arc<PeerCounts>,
    peer: IpAddr,
}

impl PeerCounts {
    /// A place for one more connection from `peer`, unless it holds `limit` already.
    pub fn take(self: &Arc<Self>, peer: IpAddr, limit: usize) -> Option<PeerSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(peer).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            counts: Arc::clone(self),
            peer,
        })
    }

    /// Connections `peer` holds now.
    pub fn held_by(&self, peer: IpAddr) -> usize {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&peer).copied().unwrap_or(0)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_peer_holds_at_most_its_limit_and_gets_places_back() {
        let counts = Arc::new(PeerCounts::default());
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let first = counts.take(one, 2).unwrap();
        let _second = counts.take(one, 2).unwrap();
        assert!(counts.take(one, 2).is_none());
        assert!(
            counts.take(two, 2).is_some(),
            "another peer is not held back"
        );
        drop(first);
        assert_eq!(counts.held_by(one), 1);
        assert!(counts.take(one, 2).is_some());
    }
}

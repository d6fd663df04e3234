//! The faults of a run, drawn from its seed: what happens, how long after the last fault,
//! and for how long. The sequence depends on the seed alone (not on how fast the machine
//! is), so `--seed N` replays the same faults in the same order.

use std::time::Duration;

use cloudpass_core::{Random, SeededRandom};

use super::platform::Party;

/// The links the fault proxies stand on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkName {
    /// Terminals to the switch.
    Acquirer,
    /// The switch to the issuer host.
    Issuer,
}

/// What a fault proxy does to a link for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// Every chunk waits this long before it is passed on.
    Delay(Duration),
    /// Nothing is passed on; the connections that lost bytes are cut when it ends.
    Blackhole,
    /// Every open connection is cut at once.
    Cut,
    /// The next chunk each way is passed on only in part, then the connection is cut.
    Partial,
}

/// The databases a lock can stop writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// The platform's store (journal, tokens, store and forward).
    Platform,
    /// The issuer host's ledger.
    Bank,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the platform or the issuer host; start it again after `down`. `early`: the
    /// next kill may come before it is ready (a crash while it starts).
    Kill {
        party: Party,
        down: Duration,
        early: bool,
    },
    Link {
        link: LinkName,
        fault: LinkFault,
        lasting: Duration,
    },
    /// Another process holds the database's write lock: writes wait, then fail.
    DatabaseLock {
        database: Database,
        lasting: Duration,
    },
    /// PostgreSQL terminates every session of the platform's store at once (a server restart
    /// or failover): transactions in flight roll back, pooled connections are dead.
    SessionsCut,
    /// The parties' file system is filled for a while (`--disk-mb`): SQLite's writes fail.
    DiskFull { lasting: Duration },
}

impl Fault {
    /// The fault's kind, for the tally.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill {
                party: Party::Platform,
                ..
            } => "kill -9 platform",
            Fault::Kill {
                party: Party::Bank, ..
            } => "kill -9 issuer host",
            Fault::Link {
                fault: LinkFault::Delay(_),
                ..
            } => "link delay",
            Fault::Link {
                fault: LinkFault::Blackhole,
                ..
            } => "link blackhole",
            Fault::Link {
                fault: LinkFault::Cut,
                ..
            } => "link cut",
            Fault::Link {
                fault: LinkFault::Partial,
                ..
            } => "partial frame",
            Fault::DatabaseLock { .. } => "database refuses writes",
            Fault::SessionsCut => "database sessions cut",
            Fault::DiskFull { .. } => "disk full",
        }
    }
}

/// One fault and how long after the previous one it comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub after: Duration,
    pub fault: Fault,
}

/// What the run has that faults can hit beyond the processes and links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Surfaces {
    /// The platform's store is PostgreSQL: half the faults of its database cut its sessions.
    pub postgres: bool,
    /// The parties' data directory is a small file system of its own: a third of the database
    /// faults fill it instead.
    pub small_disk: bool,
}

/// The run's faults, one after another.
pub struct Schedule {
    random: SeededRandom,
    surfaces: Surfaces,
}

impl Schedule {
    /// The faults of `seed`; the same seed and surfaces give the same faults.
    pub fn new(seed: u64, surfaces: Surfaces) -> Schedule {
        Schedule {
            random: SeededRandom::new(seed ^ 0x00C4_A05F_A017_5EED),
            surfaces,
        }
    }

    fn millis(&self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.random.below(high - low + 1))
    }

    pub fn next_event(&self) -> Event {
        let after = self.millis(300, 2_500);
        let fault = match self.random.below(100) {
            0..45 => Fault::Kill {
                down: self.millis(0, 3_000),
                early: self.random.below(5) == 0,
                // One kill in four is of the issuer host alone: the switch stays up and
                // loses the bank between its commit and its answer.
                party: if self.random.below(4) == 0 {
                    Party::Bank
                } else {
                    Party::Platform
                },
            },
            45..85 => Fault::Link {
                link: if self.random.below(2) == 0 {
                    LinkName::Acquirer
                } else {
                    LinkName::Issuer
                },
                fault: match self.random.below(100) {
                    0..30 => LinkFault::Delay(self.millis(50, 1_500)),
                    30..55 => LinkFault::Blackhole,
                    55..80 => LinkFault::Cut,
                    _ => LinkFault::Partial,
                },
                lasting: self.millis(200, 4_000),
            },
            _ => self.database_fault(),
        };
        Event { after, fault }
    }

    fn database_fault(&self) -> Fault {
        let database = if self.random.below(5) < 3 {
            Database::Platform
        } else {
            Database::Bank
        };
        // The SQLite stores wait 10 s for a lock: shorter locks stall writes, longer ones
        // make them fail.
        let lasting = self.millis(500, 13_000);
        // Drawn only where the surface exists, so a plain SQLite run's faults stay what they
        // were.
        if self.surfaces.small_disk && self.random.below(3) == 0 {
            return Fault::DiskFull { lasting };
        }
        if self.surfaces.postgres && database == Database::Platform && self.random.below(2) == 0 {
            return Fault::SessionsCut;
        }
        Fault::DatabaseLock { database, lasting }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_faults_and_another_seed_others() {
        let first: Vec<Event> = (0..50)
            .map({
                let schedule = Schedule::new(7, Surfaces::default());
                move |_| schedule.next_event()
            })
            .collect();
        let again: Vec<Event> = (0..50)
            .map({
                let schedule = Schedule::new(7, Surfaces::default());
                move |_| schedule.next_event()
            })
            .collect();
        let other: Vec<Event> = (0..50)
            .map({
                let schedule = Schedule::new(8, Surfaces::default());
                move |_| schedule.next_event()
            })
            .collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
        let kinds: std::collections::BTreeSet<&str> =
            first.iter().map(|event| event.fault.kind()).collect();
        assert!(kinds.len() >= 5, "{kinds:?}");
    }

    #[test]
    fn only_a_postgresql_run_has_its_sessions_cut_and_only_a_small_disk_fills() {
        let kinds = |postgres, small_disk| {
            let schedule = Schedule::new(
                3,
                Surfaces {
                    postgres,
                    small_disk,
                },
            );
            (0..400)
                .map(|_| schedule.next_event().fault.kind())
                .collect::<std::collections::BTreeSet<_>>()
        };
        let plain = kinds(false, false);
        assert!(!plain.contains("database sessions cut") && !plain.contains("disk full"));
        let postgres = kinds(true, false);
        assert!(postgres.contains("database sessions cut"), "{postgres:?}");
        assert!(postgres.contains("database refuses writes"), "{postgres:?}");
        assert!(!postgres.contains("disk full"));
        let small = kinds(false, true);
        assert!(small.contains("disk full") && small.contains("database refuses writes"));
        assert!(!small.contains("database sessions cut"));
    }
}

//! Time as a value passed in: the protocol core never reads the clock
//! itself. Production passes the system clock (`estafette_pki::SystemClock`);
//! tests and the simulation pass a [`ManualClock`] they move.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::text::Timestamp;

/// Where a part of the system gets the time from.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Seconds since the Unix epoch.
    fn now(&self) -> Timestamp {
        Timestamp(self.now_ms() / 1000)
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// Starts at `start` (seconds).
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(AtomicU64::new(start.0.saturating_mul(1000)))
    }

    pub fn advance_s(&self, seconds: u64) {
        self.0
            .fetch_add(seconds.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_when_told() {
        let clock = ManualClock::new(Timestamp(100));
        assert_eq!(clock.now(), Timestamp(100));
        clock.advance_s(86_400);
        assert_eq!(clock.now(), Timestamp(86_500));
        assert_eq!(clock.now_ms(), 86_500_000);
    }
}

//! Log lines that cannot flood: at most one line per kind of event and
//! interval, and the next line says how many were held back. A flood of
//! refused connections or a peer that stays down writes a few lines a
//! minute, not one per event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most distinct keys remembered; beyond it, the oldest are forgotten.
pub const MAX_THROTTLE_KEYS: usize = 4_096;

/// One throttle for many keys (a peer, a kind of refusal).
pub struct LogThrottle {
    interval: Duration,
    state: Mutex<HashMap<String, Slot>>,
}

struct Slot {
    last: Instant,
    held_back: u64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> LogThrottle {
        LogThrottle {
            interval,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// One more event of `key` at `now`: `Some(n)` when a line may be
    /// written (`n` events were held back since the last line), `None`
    /// when this one is held back.
    pub fn allow_at(&self, key: &str, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = state.get_mut(key) {
            if now.duration_since(slot.last) < self.interval {
                slot.held_back = slot.held_back.saturating_add(1);
                return None;
            }
            let held_back = slot.held_back;
            *slot = Slot {
                last: now,
                held_back: 0,
            };
            return Some(held_back);
        }
        if state.len() >= MAX_THROTTLE_KEYS {
            let interval = self.interval;
            state.retain(|_, s| now.duration_since(s.last) < interval);
            if state.len() >= MAX_THROTTLE_KEYS {
                state.clear();
            }
        }
        state.insert(
            key.to_owned(),
            Slot {
                last: now,
                held_back: 0,
            },
        );
        Some(0)
    }

    /// As [`Self::allow_at`], now.
    pub fn allow(&self, key: &str) -> Option<u64> {
        self.allow_at(key, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_next_counts_the_rest() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(throttle.allow_at("peer", t), Some(0));
        for i in 1..=1000 {
            assert_eq!(
                throttle.allow_at("peer", t + Duration::from_millis(i)),
                None
            );
        }
        assert_eq!(
            throttle.allow_at("other", t),
            Some(0),
            "keys are independent"
        );
        assert_eq!(
            throttle.allow_at("peer", t + Duration::from_secs(10)),
            Some(1000)
        );
        assert_eq!(throttle.allow_at("peer", t + Duration::from_secs(11)), None);
    }

    #[test]
    fn many_keys_stay_bounded() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let t = Instant::now();
        for i in 0..(3 * MAX_THROTTLE_KEYS) {
            throttle.allow_at(&format!("k{i}"), t);
        }
        assert!(throttle.state.lock().unwrap().len() <= MAX_THROTTLE_KEYS);
    }
}

/// At most `max` events per key (a source address, a person) in a fixed
/// window: one noisy client is refused without refusing everyone else.
pub struct KeyedRateLimit {
    max: u32,
    window: Duration,
    state: Mutex<HashMap<String, (Instant, u32)>>,
}

impl KeyedRateLimit {
    pub fn new(max: u32, window: Duration) -> KeyedRateLimit {
        KeyedRateLimit {
            max,
            window,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// One more event of `key` at `now`; false past its limit in this window.
    pub fn allow_at(&self, key: &str, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.len() >= MAX_THROTTLE_KEYS && !state.contains_key(key) {
            let window = self.window;
            state.retain(|_, (since, _)| now.duration_since(*since) < window);
            if state.len() >= MAX_THROTTLE_KEYS {
                // Every key is busy: a flood of keys. Refuse the newcomer
                // rather than forget someone's count.
                return false;
            }
        }
        let slot = state.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(slot.0) >= self.window {
            *slot = (now, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        slot.1 <= self.max
    }

    pub fn allow(&self, key: &str) -> bool {
        self.allow_at(key, Instant::now())
    }
}

#[cfg(test)]
mod keyed_tests {
    use super::*;

    #[test]
    fn one_key_past_its_limit_does_not_stop_another() {
        let limit = KeyedRateLimit::new(3, Duration::from_secs(60));
        let t = Instant::now();
        assert!((0..3).all(|_| limit.allow_at("127.0.0.2", t)));
        assert!(!limit.allow_at("127.0.0.2", t), "the fourth in the minute");
        assert!(
            limit.allow_at("127.0.0.3", t),
            "another client is not affected"
        );
        assert!(!limit.allow_at("127.0.0.2", t + Duration::from_secs(59)));
        assert!(
            limit.allow_at("127.0.0.2", t + Duration::from_secs(60)),
            "a new minute"
        );
    }
}

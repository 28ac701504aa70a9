//! Who may connect, and for how long: the connection table (per source,
//! per identity, the idle one evicted first), new-connection rates, and
//! the bookkeeping of requests in progress.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

/// How one HTTPS listener admits connections and bodies.
#[derive(Debug, Clone)]
pub struct HttpsLimits {
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections from one IP address.
    pub max_per_source: usize,
    /// New connections one IP address may open per second, after a burst
    /// of `max_per_source`: a client that reconnects as fast as it can
    /// (to make the server do TLS handshakes) is refused before TLS.
    pub new_per_source_per_s: u32,
    /// Most connections of one client certificate.
    pub max_per_identity: usize,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for a request's headers (HTTP/1.1).
    pub header_timeout: Duration,
    /// A connection without a request in progress is closed after this.
    pub idle_timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest time to receive one body.
    pub body_timeout: Duration,
    /// Slowest body accepted, after `body_grace`.
    pub min_body_rate_bytes_per_s: u64,
    pub body_grace: Duration,
    /// Bytes of request bodies in progress at once, on this listener.
    pub body_budget_bytes: usize,
    /// Longest wait for room in the budget before answering 503.
    pub body_budget_wait: Duration,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
}

impl HttpsLimits {
    /// The agency API: few clients, large letters, client certificates.
    pub fn agency() -> HttpsLimits {
        HttpsLimits {
            max_connections: 1_024,
            max_per_source: 256,
            new_per_source_per_s: 32,
            max_per_identity: 256,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_body_bytes: estafette_spec::limits::MAX_MESSAGE_BYTES,
            body_timeout: Duration::from_secs(180),
            min_body_rate_bytes_per_s: 128 * 1024,
            body_grace: Duration::from_secs(10),
            body_budget_bytes: 64 * 1024 * 1024,
            body_budget_wait: Duration::from_secs(2),
            max_streams_per_connection: 64,
        }
    }

    /// The citizen API and web inbox: many people, small bodies, no
    /// client certificates (and many people behind one address).
    pub fn citizen() -> HttpsLimits {
        HttpsLimits {
            max_connections: 10_000,
            max_per_source: 256,
            new_per_source_per_s: 64,
            max_per_identity: usize::MAX,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_body_bytes: 64 * 1024,
            body_timeout: Duration::from_secs(30),
            min_body_rate_bytes_per_s: 1024,
            body_grace: Duration::from_secs(5),
            body_budget_bytes: 64 * 1024 * 1024,
            body_budget_wait: Duration::from_secs(2),
            max_streams_per_connection: 64,
        }
    }
}

/// Who owns one admission slot.
struct Entry {
    source: IpAddr,
    /// Requests in progress; 0: idle.
    busy: u32,
    idle_since: Instant,
    close: Arc<Notify>,
    certificate: Option<CertificateDer<'static>>,
    identity: Option<Vec<u8>>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// Idle entries, longest idle first.
    idle: BTreeSet<(Instant, u64)>,
    per_source: HashMap<IpAddr, usize>,
    per_identity: HashMap<Vec<u8>, usize>,
    /// Token buckets of new connections per source: (tokens, last refill).
    arrivals: HashMap<IpAddr, (f64, Instant)>,
}

/// Most sources whose arrival rate is remembered; full buckets are
/// forgotten first (they hold no information).
const MAX_RATE_SOURCES: usize = 65_536;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    PerSource,
    RateFromSource,
    Full,
    PerIdentity,
}

impl Refusal {
    pub(super) fn code(self) -> &'static str {
        match self {
            Refusal::PerSource => "too_many_from_source",
            Refusal::RateFromSource => "too_fast_from_source",
            Refusal::Full => "too_many_connections",
            Refusal::PerIdentity => "too_many_for_identity",
        }
    }
}

/// The admission table of one listener.
pub struct Admission {
    pub(super) limits: HttpsLimits,
    table: Mutex<Table>,
    pub(super) budget: Arc<Semaphore>,
}

impl Admission {
    pub fn new(limits: HttpsLimits) -> Arc<Admission> {
        // A body at the limit must always fit in an empty budget.
        let budget = Arc::new(Semaphore::new(
            limits.body_budget_bytes.max(limits.max_body_bytes),
        ));
        Arc::new(Admission {
            limits,
            table: Mutex::new(Table::default()),
            budget,
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections admitted now.
    pub fn open_connections(&self) -> usize {
        self.table().entries.len()
    }

    /// A slot for a new connection from `source`, evicting the longest
    /// idle connection when every slot is taken.
    pub(super) fn admit(
        &self,
        source: IpAddr,
        now: Instant,
    ) -> Result<(u64, Arc<Notify>), Refusal> {
        let mut t = self.table();
        if t.per_source.get(&source).copied().unwrap_or(0) >= self.limits.max_per_source {
            return Err(Refusal::PerSource);
        }
        let burst = self.limits.max_per_source as f64;
        let rate = f64::from(self.limits.new_per_source_per_s);
        if t.arrivals.len() >= MAX_RATE_SOURCES && !t.arrivals.contains_key(&source) {
            t.arrivals.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
            });
        }
        let (tokens, last) = t.arrivals.entry(source).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return Err(Refusal::RateFromSource);
        }
        *tokens -= 1.0;
        if t.entries.len() >= self.limits.max_connections {
            let Some(&(since, oldest)) = t.idle.first() else {
                return Err(Refusal::Full);
            };
            t.idle.remove(&(since, oldest));
            if let Some(entry) = t.entries.get(&oldest) {
                entry.close.notify_one();
            }
            // The evicted connection's task removes its entry; its slot is
            // ours now.
            Self::forget(&mut t, oldest);
        }
        let id = t.next_id;
        t.next_id += 1;
        let close = Arc::new(Notify::new());
        t.entries.insert(
            id,
            Entry {
                source,
                busy: 0,
                idle_since: now,
                close: close.clone(),
                certificate: None,
                identity: None,
            },
        );
        t.idle.insert((now, id));
        *t.per_source.entry(source).or_default() += 1;
        Ok((id, close))
    }

    fn forget(t: &mut Table, id: u64) {
        let Some(entry) = t.entries.remove(&id) else {
            return;
        };
        t.idle.remove(&(entry.idle_since, id));
        if let Some(n) = t.per_source.get_mut(&entry.source) {
            *n -= 1;
            if *n == 0 {
                t.per_source.remove(&entry.source);
            }
        }
        if let Some(identity) = entry.identity
            && let Some(n) = t.per_identity.get_mut(&identity)
        {
            *n -= 1;
            if *n == 0 {
                t.per_identity.remove(&identity);
            }
        }
    }

    pub(super) fn release(&self, id: u64) {
        Self::forget(&mut self.table(), id);
    }

    /// Records the client certificate of a connection (its serial is its
    /// identity); refuses one identity too many.
    pub(super) fn authenticated(
        &self,
        id: u64,
        certificate: CertificateDer<'static>,
    ) -> Result<(), Refusal> {
        let identity = estafette_pki::tls::serial(&certificate).unwrap_or_default();
        let mut t = self.table();
        if t.per_identity.get(&identity).copied().unwrap_or(0) >= self.limits.max_per_identity {
            return Err(Refusal::PerIdentity);
        }
        let Some(entry) = t.entries.get_mut(&id) else {
            return Ok(());
        };
        entry.certificate = Some(certificate);
        entry.identity = Some(identity.clone());
        *t.per_identity.entry(identity).or_default() += 1;
        Ok(())
    }

    pub(super) fn begin_request(&self, id: u64) {
        let mut t = self.table();
        let Some(entry) = t.entries.get_mut(&id) else {
            return;
        };
        entry.busy += 1;
        let key = (entry.idle_since, id);
        if entry.busy == 1 {
            t.idle.remove(&key);
        }
    }

    pub(super) fn end_request(&self, id: u64) {
        let mut t = self.table();
        let now = Instant::now();
        let Some(entry) = t.entries.get_mut(&id) else {
            return;
        };
        entry.busy = entry.busy.saturating_sub(1);
        if entry.busy == 0 {
            entry.idle_since = now;
            t.idle.insert((now, id));
        }
    }

    /// When an idle connection must close; `None` while it serves a request.
    pub(super) fn idle_deadline(&self, id: u64) -> Option<Instant> {
        let t = self.table();
        let entry = t.entries.get(&id)?;
        (entry.busy == 0).then(|| entry.idle_since + self.limits.idle_timeout)
    }

    /// Closes the connections whose client certificate `revoked` says is
    /// revoked; gives how many.
    pub fn close_where(&self, revoked: impl Fn(&CertificateDer<'static>) -> bool) -> usize {
        let t = self.table();
        let mut closed = 0;
        for entry in t.entries.values() {
            if entry.certificate.as_ref().is_some_and(&revoked) {
                entry.close.notify_one();
                closed += 1;
            }
        }
        closed
    }
}

/// A request in progress on a connection: idle again when dropped.
pub(super) struct Busy {
    admission: Arc<Admission>,
    id: u64,
}

impl Busy {
    pub(super) fn new(admission: Arc<Admission>, id: u64) -> Busy {
        admission.begin_request(id);
        Busy { admission, id }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.admission.end_request(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_source: usize) -> HttpsLimits {
        HttpsLimits {
            max_connections: max,
            max_per_source: per_source,
            new_per_source_per_s: 1_000,
            max_per_identity: 2,
            ..HttpsLimits::agency()
        }
    }

    #[tokio::test]
    pub(super) async fn the_longest_idle_connection_makes_room_and_busy_ones_stay() {
        let admission = Admission::new(limits(3, 10));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let t = Instant::now();
        let (first, first_close) = admission.admit(a, t).unwrap();
        let (second, _) = admission.admit(a, t + Duration::from_millis(1)).unwrap();
        let (third, _) = admission.admit(a, t + Duration::from_millis(2)).unwrap();
        admission.begin_request(second);
        // Full: the newcomer evicts the longest idle one (the first).
        let (_fourth, _) = admission.admit(a, t + Duration::from_millis(3)).unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), first_close.notified())
                .await
                .is_ok(),
            "the longest idle connection is told to close"
        );
        assert_eq!(admission.open_connections(), 3);
        admission.release(first);
        // Busy ones are never evicted: with every slot busy, refuse.
        admission.begin_request(third);
        let mut t2 = t + Duration::from_millis(10);
        while admission.open_connections() > 0 {
            let r = admission.admit(a, t2);
            t2 += Duration::from_millis(1);
            match r {
                Ok((id, _)) => admission.begin_request(id),
                Err(e) => {
                    assert_eq!(e, Refusal::Full);
                    break;
                }
            }
        }
        assert_eq!(admission.admit(a, t2).err(), Some(Refusal::Full));
        assert!(
            admission.idle_deadline(second).is_none(),
            "busy has no idle deadline"
        );
        admission.end_request(second);
        assert!(admission.idle_deadline(second).is_some());
    }

    #[test]
    fn a_source_that_reconnects_too_fast_is_refused_before_tls() {
        let admission = Admission::new(HttpsLimits {
            max_per_source: 4,
            new_per_source_per_s: 2,
            ..HttpsLimits::agency()
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let t = Instant::now();
        for _ in 0..4 {
            let (id, _) = admission.admit(a, t).unwrap();
            admission.release(id);
        }
        assert_eq!(
            admission.admit(a, t).err(),
            Some(Refusal::RateFromSource),
            "the burst is spent"
        );
        let (id, _) = admission.admit(a, t + Duration::from_millis(500)).unwrap();
        admission.release(id);
        assert_eq!(
            admission.admit(a, t + Duration::from_millis(500)).err(),
            Some(Refusal::RateFromSource),
            "two a second"
        );
    }

    #[test]
    fn one_source_holds_at_most_its_share() {
        let admission = Admission::new(limits(100, 2));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let t = Instant::now();
        let later = |ms| t + Duration::from_millis(ms);
        let (x, _) = admission.admit(a, later(10)).unwrap();
        admission.admit(a, later(20)).unwrap();
        assert_eq!(
            admission.admit(a, later(30)).err(),
            Some(Refusal::PerSource)
        );
        assert!(
            admission.admit(b, later(30)).is_ok(),
            "another source is not affected"
        );
        admission.release(x);
        assert!(
            admission.admit(a, later(40)).is_ok(),
            "a released slot is free again"
        );
    }
}

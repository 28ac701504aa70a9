//! Sessions of the citizen API and the web inbox: who is logged in, with
//! which assertion, since when. A [`Session`] value is the proof that a
//! request named a live session; every citizen API method takes one, so
//! nothing reads a token from headers twice and the web inbox hands its
//! cookie's session over as it is.
//!
//! Sessions are kept in the node's store, so a restart logs nobody out: a
//! login is answered only once its session is committed, a change to it
//! (a fresh login, a new view of the person) is committed before it is
//! relied on, and logging out deletes it before the answer. The store
//! holds the SHA-256 of each token, never the token: a copy of the
//! database lets nobody in. Memory holds the sessions in use; one the
//! memory does not have (after a restart) is read from the store when its
//! token is next shown.
//!
//! Limits: a session ends after [`SESSION_IDLE`] without a request and
//! [`SESSION_MAX`] after login, by the node's clock; at most
//! [`MAX_SESSIONS`] are held (the expired ones go first, then logins are
//! refused). The store learns of requests at most every
//! [`LAST_SEEN_KEPT_EVERY`], so after a restart a session may end that much
//! earlier than it would have. Expired sessions leave the store at the
//! first login after every [`SWEEP_EVERY`], whether or not their person
//! comes back: a kept session holds a login's proof.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use estafette_spec::citizen::PersonView;
use estafette_spec::{Clock, IdentityProof, Recipient, Timestamp};
use rand_core::{OsRng, RngCore};
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::store::{Op, Store, StoreError};

/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after login, whatever happens.
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 3600);
/// Most sessions held at once; the oldest idle ones go first.
pub const MAX_SESSIONS: usize = 100_000;
/// Expired sessions are deleted from the store at most this long after they
/// expire (at the next login after that).
pub const SWEEP_EVERY: Duration = SESSION_IDLE;
/// The store's idea of a session's last request is at most this old.
pub const LAST_SEEN_KEPT_EVERY: Duration = Duration::from_secs(60);
/// Largest kept session (its login's proof is at most the citizen API's
/// largest body); a larger one in the store is damaged and ends.
const MAX_KEPT_SESSION_BYTES: usize = 256 * 1024;

/// Kept sessions: SHA-256 of the token → (started, last seen, the
/// session's CBOR). The times are outside the CBOR so that expired ones
/// are found without decoding.
const SESSIONS: TableDefinition<[u8; 32], (u64, u64, &[u8])> =
    TableDefinition::new("citizen_sessions");

/// The secret that names a session: 32 random bytes, 64 hex characters
/// on the wire (`Authorization: Bearer …`, the web inbox's cookie).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionToken([u8; 32]);

impl SessionToken {
    fn random() -> SessionToken {
        let mut token = [0u8; 32];
        OsRng.fill_bytes(&mut token);
        SessionToken(token)
    }
}

impl std::fmt::Display for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", estafette_spec::bytes::Hex(&self.0))
    }
}

/// Never in logs.
impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(…)")
    }
}

impl std::str::FromStr for SessionToken {
    type Err = NotAToken;

    fn from_str(text: &str) -> Result<SessionToken, NotAToken> {
        let bytes = estafette_spec::bytes::from_hex(text.trim()).ok_or(NotAToken)?;
        Ok(SessionToken(bytes.try_into().map_err(|_| NotAToken)?))
    }
}

/// Text that is not a session token (64 hex characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a session token")]
pub struct NotAToken;

/// A live session, checked (and its idle time reset) when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    token: SessionToken,
}

impl Session {
    pub fn token(&self) -> SessionToken {
        self.token
    }
}

/// What the node keeps of a session.
pub(crate) struct SessionState {
    pub(crate) recipient: Recipient,
    /// The newest login's proof: it authorises changes while it is fresh.
    pub(crate) identity: IdentityProof,
    /// Until when that login may authorise a change: the proof's expiry, at
    /// most five minutes after the person logged in.
    pub(crate) changes_until: Timestamp,
    pub(crate) person: PersonView,
    /// The person represents someone, or is asked to (the menu offers
    /// "my clients"); as of the login or the clients page last seen.
    pub(crate) represents: bool,
    started: Timestamp,
    last_seen: Timestamp,
    /// The last request the store knows of.
    kept_seen: Timestamp,
}

impl SessionState {
    fn live(&self, now: Timestamp) -> bool {
        live(self.started, self.last_seen, now)
    }

    /// The store's row: (started, last seen, the rest in CBOR).
    fn row(&self) -> (u64, u64, Vec<u8>) {
        let kept = KeptSession {
            recipient: self.recipient.clone(),
            identity: self.identity.clone(),
            changes_until: self.changes_until,
            person: self.person.clone(),
            represents: self.represents,
        };
        (
            self.started.0,
            self.last_seen.0,
            estafette_spec::cbor::to_vec(&kept),
        )
    }

    fn from_row(started: u64, last_seen: u64, cbor: &[u8]) -> Option<SessionState> {
        let kept: KeptSession = estafette_spec::cbor::from_slice(cbor, MAX_KEPT_SESSION_BYTES)
            .inspect_err(|e| tracing::warn!(error = %e, "a kept session is damaged; it ends"))
            .ok()?;
        Some(SessionState {
            recipient: kept.recipient,
            identity: kept.identity,
            changes_until: kept.changes_until,
            person: kept.person,
            represents: kept.represents,
            started: Timestamp(started),
            last_seen: Timestamp(last_seen),
            kept_seen: Timestamp(last_seen),
        })
    }
}

fn live(started: Timestamp, last_seen: Timestamp, now: Timestamp) -> bool {
    now.0.saturating_sub(last_seen.0) < SESSION_IDLE.as_secs()
        && now.0.saturating_sub(started.0) < SESSION_MAX.as_secs()
}

/// A session as the store keeps it, besides its times.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeptSession {
    recipient: Recipient,
    identity: IdentityProof,
    changes_until: Timestamp,
    person: PersonView,
    #[serde(default)]
    represents: bool,
}

/// What memory holds of a token.
enum Slot {
    Live(Box<SessionState>),
    /// Logged out; its row is being deleted. Until it is, the token is
    /// refused here rather than read back from the store.
    Ending,
}

/// Why a session could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    #[error("{MAX_SESSIONS} sessions are held already")]
    TooMany,
    #[error("the session could not be kept: {0}")]
    Store(#[from] StoreError),
}

/// A change to a session that could not be kept.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeepError {
    #[error("the session has ended")]
    Ended,
    #[error("the session could not be kept: {0}")]
    Store(#[from] StoreError),
}

type Table = HashMap<SessionToken, Slot>;

/// The sessions of one home node.
pub(crate) struct Sessions {
    table: Arc<Mutex<Table>>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    /// When expired sessions were last deleted (node clock, seconds).
    last_swept: std::sync::atomic::AtomicU64,
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

/// The store's key of a token.
fn key_of(token: SessionToken) -> [u8; 32] {
    Sha256::digest(token.0).into()
}

impl Sessions {
    pub(crate) fn new(store: Arc<Store>, clock: Arc<dyn Clock>) -> Sessions {
        Sessions {
            table: Default::default(),
            store,
            clock,
            last_swept: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// The session named by `token`, if it is live; its idle time starts
    /// again. A session memory does not hold is read from the store (under
    /// the lock, so that a logout cannot race a read of its old row).
    pub(crate) fn check(&self, token: SessionToken) -> Option<Session> {
        let now = self.clock.now();
        let mut table = self.table();
        if let std::collections::hash_map::Entry::Vacant(slot) = table.entry(token) {
            slot.insert(Slot::Live(Box::new(self.read_kept(token)?)));
        }
        let (live, keep) = match table.get_mut(&token) {
            Some(Slot::Live(s)) if s.live(now) => {
                s.last_seen = now;
                let due = now.0.saturating_sub(s.kept_seen.0) >= LAST_SEEN_KEPT_EVERY.as_secs();
                if due {
                    s.kept_seen = now;
                }
                (true, due)
            }
            Some(Slot::Live(_)) => {
                table.remove(&token);
                (false, true)
            }
            _ => (false, false),
        };
        drop(table);
        if keep {
            // The request goes on meanwhile: a lost update only makes the
            // session end up to LAST_SEEN_KEPT_EVERY early after a restart.
            self.keep_later(token);
        }
        live.then_some(Session { token })
    }

    /// The kept row of `token`, if there is one.
    fn read_kept(&self, token: SessionToken) -> Option<SessionState> {
        let read = || -> Result<Option<SessionState>, redb::Error> {
            let txn = self.store.database().begin_read()?;
            let table = match txn.open_table(SESSIONS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(table.get(key_of(token))?.and_then(|row| {
                let (started, last_seen, cbor) = row.value();
                SessionState::from_row(started, last_seen, cbor)
            }))
        };
        read()
            .inspect_err(|e| tracing::error!(error = %e, "kept sessions could not be read"))
            .ok()
            .flatten()
    }

    /// Brings the store up to what memory holds of `token`, without waiting.
    fn keep_later(&self, token: SessionToken) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let op = keep_op(self.table.clone(), token);
        let store = self.store.clone();
        runtime.spawn(async move {
            if let Err(e) = store.write(op).await {
                tracing::warn!(error = %e, "a session's last request was not kept");
            }
        });
    }

    /// A new session for `recipient`, kept before it is given.
    pub(crate) async fn start(
        &self,
        recipient: Recipient,
        (identity, changes_until): (IdentityProof, Timestamp),
        (person, represents): (PersonView, bool),
    ) -> Result<Session, StartError> {
        let now = self.clock.now();
        let token = SessionToken::random();
        // A kept session holds a login's proof, personal data: the expired
        // ones are deleted at the first login after every SWEEP_EVERY, not
        // only when their person comes back.
        let last = self.last_swept.load(std::sync::atomic::Ordering::Relaxed);
        let sweep = now.0.saturating_sub(last) >= SWEEP_EVERY.as_secs()
            && self
                .last_swept
                .compare_exchange(
                    last,
                    now.0,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok();
        {
            let mut table = self.table();
            if sweep || table.len() >= MAX_SESSIONS {
                table.retain(|_, s| match s {
                    Slot::Live(s) => s.live(now),
                    Slot::Ending => true,
                });
                if table.len() >= MAX_SESSIONS {
                    return Err(StartError::TooMany);
                }
            }
            table.insert(
                token,
                Slot::Live(Box::new(SessionState {
                    recipient,
                    identity,
                    changes_until,
                    person,
                    represents,
                    started: now,
                    last_seen: now,
                    kept_seen: now,
                })),
            );
        }
        let (room, has_room) = tokio::sync::oneshot::channel();
        let table = self.table.clone();
        let op = Op::Apply(Box::new(move |_tables, txn| {
            let mut kept = txn.open_table(SESSIONS)?;
            if sweep || kept.len()? as usize >= MAX_SESSIONS {
                forget_expired(&mut kept, now)?;
            }
            let fits = (kept.len()? as usize) < MAX_SESSIONS;
            if fits {
                write_row(&mut kept, &lock(&table), token)?;
            }
            let _ = room.send(fits);
            Ok(())
        }));
        let outcome = self.store.write(op).await;
        let fits = has_room.await.unwrap_or(false);
        if outcome.is_err() || !fits {
            self.table().remove(&token);
        }
        outcome?;
        if !fits {
            return Err(StartError::TooMany);
        }
        Ok(Session { token })
    }

    /// Reads what is kept of `session`; `None` once it ended.
    pub(crate) fn with<T>(
        &self,
        session: &Session,
        f: impl FnOnce(&SessionState) -> T,
    ) -> Option<T> {
        match self.table().get(&session.token) {
            Some(Slot::Live(s)) => Some(f(s)),
            _ => None,
        }
    }

    /// Changes what is kept of `session`, and keeps the change before
    /// answering.
    pub(crate) async fn change<T>(
        &self,
        session: &Session,
        f: impl FnOnce(&mut SessionState) -> T,
    ) -> Result<T, KeepError> {
        let answer = match self.table().get_mut(&session.token) {
            Some(Slot::Live(s)) => f(s),
            _ => return Err(KeepError::Ended),
        };
        self.store
            .write(keep_op(self.table.clone(), session.token))
            .await?;
        Ok(answer)
    }

    /// Ends a session: refused at once, and deleted from the store before
    /// this returns.
    pub(crate) async fn end(&self, session: &Session) -> Result<(), StoreError> {
        self.table().insert(session.token, Slot::Ending);
        let deleted = self
            .store
            .write(keep_op(self.table.clone(), session.token))
            .await;
        if deleted.is_ok() {
            let mut table = self.table();
            if matches!(table.get(&session.token), Some(Slot::Ending)) {
                table.remove(&session.token);
            }
        }
        deleted.map(|_| ())
    }
}

/// A write that makes the store's row of `token` what memory holds when
/// the write runs (the newest state wins, whatever order writes were
/// queued in): the session if it is live, else no row.
fn keep_op(table: Arc<Mutex<Table>>, token: SessionToken) -> Op {
    Op::Apply(Box::new(move |_tables, txn| {
        let mut kept = txn.open_table(SESSIONS)?;
        write_row(&mut kept, &lock(&table), token)
    }))
}

fn write_row(
    kept: &mut redb::Table<'_, [u8; 32], (u64, u64, &[u8])>,
    table: &Table,
    token: SessionToken,
) -> Result<(), StoreError> {
    match table.get(&token) {
        Some(Slot::Live(s)) => {
            let (started, last_seen, cbor) = s.row();
            kept.insert(key_of(token), (started, last_seen, cbor.as_slice()))?;
        }
        _ => {
            kept.remove(key_of(token))?;
        }
    }
    Ok(())
}

/// Deletes every kept session that has expired by `now`.
fn forget_expired(
    kept: &mut redb::Table<'_, [u8; 32], (u64, u64, &[u8])>,
    now: Timestamp,
) -> Result<(), StoreError> {
    kept.retain(|_, (started, last_seen, _)| live(Timestamp(started), Timestamp(last_seen), now))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_characters_and_never_shown_in_debug() {
        let t = SessionToken::random();
        let text = t.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<SessionToken>(), Ok(t));
        assert_eq!(format!("{t:?}"), "SessionToken(…)");
        assert_eq!("abc".parse::<SessionToken>(), Err(NotAToken));
        assert_eq!(text[..62].parse::<SessionToken>(), Err(NotAToken));
    }

    use estafette_spec::ManualClock;

    const START: Timestamp = Timestamp(1_800_000_000);

    fn person(language: &str) -> PersonView {
        PersonView {
            recipient: "bsn:999999990".parse().unwrap(),
            inbox: None,
            home_node: None,
            active: true,
            digital_senders: vec![],
            channels: vec![],
            language: language.into(),
            merged_inboxes: vec![],
            linked: vec![],
        }
    }

    fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Sessions {
        let store = Store::open(
            &dir.join("data").join("relay.redb"),
            1000,
            64,
            Arc::new(crate::metrics::Metrics::default()),
        )
        .unwrap();
        Sessions::new(Arc::new(store), clock.clone())
    }

    async fn start(sessions: &Sessions) -> Session {
        let proof = IdentityProof::Assertion(serde_bytes::ByteBuf::from(b"login".to_vec()));
        sessions
            .start(
                "bsn:999999990".parse().unwrap(),
                (proof, START.plus_s(300)),
                (person("nl"), false),
            )
            .await
            .unwrap()
    }

    /// The row the store keeps of `token`: (started, last seen).
    fn kept_times(sessions: &Sessions, token: SessionToken) -> Option<(u64, u64)> {
        let txn = sessions.store.database().begin_read().unwrap();
        let table = txn.open_table(SESSIONS).unwrap();
        let row = table.get(key_of(token)).unwrap()?;
        let (started, last_seen, _) = row.value();
        Some((started, last_seen))
    }

    /// Polls `check` until it holds, for at most ten seconds.
    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(
                std::time::Instant::now() < deadline,
                "waited in vain: {what}"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_session_and_its_changes_outlive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let sessions = open(dir.path(), &clock);
        let session = start(&sessions).await;
        sessions
            .change(&session, |s| s.person.language = "de".into())
            .await
            .unwrap();
        drop(sessions);

        let sessions = open(dir.path(), &clock);
        let again = sessions
            .check(session.token())
            .expect("kept across the restart");
        assert_eq!(again, session);
        let (language, proof) = sessions
            .with(&again, |s| (s.person.language.clone(), s.identity.clone()))
            .unwrap();
        assert_eq!(language, "de", "the change was kept");
        assert_eq!(
            proof,
            IdentityProof::Assertion(serde_bytes::ByteBuf::from(b"login".to_vec()))
        );
        let unknown = SessionToken::random();
        assert_eq!(sessions.check(unknown), None);
    }

    #[tokio::test]
    async fn the_store_holds_no_token_only_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let sessions = open(dir.path(), &clock);
        let token = start(&sessions).await.token();
        drop(sessions);
        let file = std::fs::read(dir.path().join("data").join("relay.redb")).unwrap();
        let holds = |needle: &[u8]| file.windows(needle.len()).any(|w| w == needle);
        assert!(holds(&key_of(token)), "the row is there, by hash");
        assert!(!holds(&token.0), "the token's bytes are not");
        assert!(!holds(token.to_string().as_bytes()), "nor its text");
    }

    #[tokio::test]
    async fn a_logged_out_session_is_refused_at_once_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let sessions = open(dir.path(), &clock);
        let session = start(&sessions).await;
        let other = start(&sessions).await;
        sessions.end(&session).await.unwrap();
        assert_eq!(sessions.check(session.token()), None);
        assert_eq!(kept_times(&sessions, session.token()), None, "deleted");
        assert!(matches!(
            sessions.change(&session, |_| ()).await,
            Err(KeepError::Ended)
        ));
        drop(sessions);
        let sessions = open(dir.path(), &clock);
        assert_eq!(sessions.check(session.token()), None);
        assert!(
            sessions.check(other.token()).is_some(),
            "only that one ended"
        );
    }

    #[tokio::test]
    async fn expired_sessions_leave_the_store_though_nobody_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let sessions = open(dir.path(), &clock);
        let gone = start(&sessions).await.token();
        clock.advance_s(SESSION_IDLE.as_secs() - 1);
        let later = start(&sessions).await.token();
        assert!(kept_times(&sessions, gone).is_some(), "not expired yet");
        // Past its idle time, and past the next sweep: the next login of
        // anyone deletes it, with its login's proof.
        clock.advance_s(SWEEP_EVERY.as_secs());
        start(&sessions).await;
        assert_eq!(kept_times(&sessions, gone), None, "deleted");
        assert!(
            kept_times(&sessions, later).is_none(),
            "idle as long by now"
        );
        drop(sessions);
        let sessions = open(dir.path(), &clock);
        assert_eq!(sessions.check(gone), None);
    }

    #[tokio::test]
    async fn idle_and_old_sessions_end_by_the_nodes_clock_also_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let sessions = open(dir.path(), &clock);
        let idle = start(&sessions).await;
        let busy = start(&sessions).await;
        let idle_s = SESSION_IDLE.as_secs();

        // One second short of idle: live, and the request is kept.
        clock.advance_s(idle_s - 1);
        assert!(sessions.check(busy.token()).is_some());
        let seen = clock.now().0;
        until("the busy session's last request is kept", || {
            kept_times(&sessions, busy.token()) == Some((START.0, seen))
        })
        .await;
        drop(sessions);

        // After the restart: the idle one has been idle for SESSION_IDLE.
        clock.advance_s(1);
        let sessions = open(dir.path(), &clock);
        assert_eq!(sessions.check(idle.token()), None, "idle for {idle_s} s");
        until("the idle session's row is deleted", || {
            kept_times(&sessions, idle.token()).is_none()
        })
        .await;
        assert!(
            sessions.check(busy.token()).is_some(),
            "its request {idle_s} s after login was kept"
        );

        // However busy, a session ends SESSION_MAX after login.
        let max_s = SESSION_MAX.as_secs();
        let mut elapsed = idle_s;
        while elapsed + idle_s - 1 < max_s {
            clock.advance_s(idle_s - 1);
            elapsed += idle_s - 1;
            assert!(
                sessions.check(busy.token()).is_some(),
                "live at {elapsed} s"
            );
        }
        clock.advance_s(max_s - elapsed);
        assert_eq!(sessions.check(busy.token()), None, "ended at {max_s} s");
    }
}

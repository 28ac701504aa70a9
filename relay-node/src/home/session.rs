//! Sessions of the citizen API and the web inbox: who is logged in, with
//! which assertion, since when. A [`Session`] value is the proof that a
//! request named a live session; every citizen API method takes one, so
//! nothing reads a token from headers twice and the web inbox hands its
//! cookie's session over as it is.
//!
//! Limits: a session ends after [`SESSION_IDLE`] without a request and
//! [`SESSION_MAX`] after login; at most [`MAX_SESSIONS`] are held (the
//! expired ones go first, then logins are refused).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use estafette_spec::citizen::PersonView;
use estafette_spec::{IdentityProof, Recipient, Timestamp};
use rand_core::{OsRng, RngCore};

/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after login, whatever happens.
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 3600);
/// Most sessions held at once; the oldest idle ones go first.
pub const MAX_SESSIONS: usize = 100_000;

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
    started: Instant,
    last_seen: Instant,
}

impl SessionState {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) < SESSION_IDLE
            && now.duration_since(self.started) < SESSION_MAX
    }
}

/// Why a session could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_SESSIONS} sessions are held already")]
pub struct TooManySessions;

/// The sessions of one home node.
#[derive(Default)]
pub(crate) struct Sessions {
    table: Mutex<HashMap<SessionToken, SessionState>>,
}

impl Sessions {
    fn table(&self) -> MutexGuard<'_, HashMap<SessionToken, SessionState>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session named by `token`, if it is live; its idle time starts again.
    pub(crate) fn check(&self, token: SessionToken) -> Option<Session> {
        let mut table = self.table();
        let now = Instant::now();
        let live = table.get_mut(&token).is_some_and(|s| {
            let live = s.live(now);
            if live {
                s.last_seen = now;
            }
            live
        });
        if !live {
            table.remove(&token);
            return None;
        }
        Some(Session { token })
    }

    /// A new session for `recipient`.
    pub(crate) fn start(
        &self,
        recipient: Recipient,
        (identity, changes_until): (IdentityProof, Timestamp),
        person: PersonView,
    ) -> Result<Session, TooManySessions> {
        let now = Instant::now();
        let mut table = self.table();
        if table.len() >= MAX_SESSIONS {
            table.retain(|_, s| s.live(now));
            if table.len() >= MAX_SESSIONS {
                return Err(TooManySessions);
            }
        }
        let token = SessionToken::random();
        table.insert(
            token,
            SessionState {
                recipient,
                identity,
                changes_until,
                person,
                started: now,
                last_seen: now,
            },
        );
        Ok(Session { token })
    }

    /// Reads (or changes) what is kept of `session`; `None` once it ended.
    pub(crate) fn with<T>(
        &self,
        session: &Session,
        f: impl FnOnce(&mut SessionState) -> T,
    ) -> Option<T> {
        self.table().get_mut(&session.token).map(f)
    }

    pub(crate) fn end(&self, session: &Session) {
        self.table().remove(&session.token);
    }
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
}

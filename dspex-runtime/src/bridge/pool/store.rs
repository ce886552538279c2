//! [`SessionStore`]: one session per user (or conversation) id, kept on one worker while it
//! lives, with an idle TTL and a bound.

use super::*;
use std::borrow::Borrow;
use std::hash::Hash;
use std::num::NonZeroUsize;

/// Sessions keyed by a user's (or a conversation's) id: [`get_or_create`](Self::get_or_create)
/// gives each id its own [`Session`], the same one while it is open, so a chat service keeps
/// each conversation's objects — and its calls — on one worker (the affinity of the store's
/// [`SessionOptions::mode`]). Cheap to clone: clones share the sessions.
///
/// - Every session is opened with the store's [`SessionOptions`]: its idle TTL is the store's
///   (the pool closes a session idle past it, freeing its objects; the next `get_or_create`
///   of that id opens a new one).
/// - A session that ended — [expired](SessionStatus::Expired), [closed](SessionStatus::Closed)
///   through a handle, or [lost](SessionStatus::Lost) with its worker (strict modes: its calls
///   fail with [`BridgeError::SessionLost`]) — is replaced by a new, empty session on the
///   next `get_or_create` of its id: the caller creates its objects again. Its state is not
///   carried over (read it from the old handle first if it matters).
/// - [`max_sessions`](Self::max_sessions) bounds it: opening one more closes the least
///   recently active session (one without a call under way, when there is one).
/// - Concurrent `get_or_create`s of a new id get one session.
///
/// ```no_run
/// use dspex_runtime::bridge::{Pool, SessionOptions, SessionStore};
/// use std::num::NonZeroUsize;
/// use std::time::Duration;
///
/// # async fn run(pool: Pool) -> Result<(), dspex_runtime::bridge::BridgeError> {
/// let store: SessionStore =
///     SessionStore::new(&pool, SessionOptions::new().idle_ttl(Duration::from_secs(900)))
///         .max_sessions(NonZeroUsize::new(10_000).unwrap());
/// let session = store.get_or_create("user-42".to_string()).await;
/// let chat = match session.get("chat") {
///     Some(id) => id.as_str().unwrap_or_default().to_string(),
///     None => {
///         let id = session.create("Predict", "history, question -> answer", Default::default()).await?;
///         session.set("chat", id.clone());
///         id
///     }
/// };
/// # let _ = chat; Ok(()) }
/// ```
pub struct SessionStore<K = String> {
    pool: Pool,
    options: SessionOptions,
    max_sessions: Option<NonZeroUsize>,
    sessions: Arc<Mutex<HashMap<K, Session>>>,
}

impl<K> Clone for SessionStore<K> {
    fn clone(&self) -> Self {
        SessionStore {
            pool: self.pool.clone(),
            options: self.options.clone(),
            max_sessions: self.max_sessions,
            sessions: self.sessions.clone(),
        }
    }
}

impl<K> std::fmt::Debug for SessionStore<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("sessions", &lock(&self.sessions).len())
            .field("max_sessions", &self.max_sessions)
            .field("options", &self.options)
            .finish()
    }
}

impl<K: Hash + Eq + Clone> SessionStore<K> {
    /// An empty store of sessions of `pool`, each opened with `options`; unbounded.
    pub fn new(pool: &Pool, options: SessionOptions) -> Self {
        SessionStore {
            pool: pool.clone(),
            options,
            max_sessions: None,
            sessions: Arc::default(),
        }
    }

    /// Keeps at most `max` sessions: opening one more closes the least recently active one.
    #[must_use]
    pub fn max_sessions(mut self, max: NonZeroUsize) -> Self {
        self.max_sessions = Some(max);
        self
    }

    /// The open session of `key`, or a new one (replacing one that ended); counts as activity.
    /// Opening one past [`max_sessions`](Self::max_sessions) closes the least recently active
    /// session first (a failure to free its objects is logged, not returned: the new session
    /// is fine).
    pub async fn get_or_create(&self, key: K) -> Session {
        let (session, evicted) = {
            let mut sessions = lock(&self.sessions);
            if let Some(session) = sessions.get(&key) {
                if session.status() == SessionStatus::Open {
                    session.touch();
                    return session.clone();
                }
                tracing::debug!(
                    target: "dspex::bridge",
                    session = session.name(), status = ?session.status(),
                    "the store replaces an ended session"
                );
                sessions.remove(&key);
            }
            sessions.retain(|_, s| s.status() == SessionStatus::Open);
            let evicted = match self.max_sessions {
                Some(max) if sessions.len() >= max.get() => {
                    let lru = sessions
                        .iter()
                        .min_by_key(|(_, s)| (s.in_flight() > 0, s.last_activity()))
                        .map(|(k, _)| k.clone());
                    lru.and_then(|k| sessions.remove(&k))
                }
                _ => None,
            };
            let session = self.pool.session_with(self.options.clone());
            sessions.insert(key, session.clone());
            (session, evicted)
        };
        if let Some(evicted) = evicted {
            tracing::debug!(
                target: "dspex::bridge",
                session = evicted.name(), "the store is full: closing its least recently active session"
            );
            if let Err(e) = evicted.close().await {
                tracing::warn!(
                    target: "dspex::bridge",
                    session = evicted.name(), error = %e, "an evicted session's objects could not be freed"
                );
            }
        }
        session
    }

    /// The open session of `key`, if there is one (no activity counted).
    pub fn get<Q>(&self, key: &Q) -> Option<Session>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        lock(&self.sessions)
            .get(key)
            .filter(|s| s.status() == SessionStatus::Open)
            .cloned()
    }

    /// Removes `key`'s session and closes it (its worker frees its objects): `Ok(false)` if
    /// there was none. An error says the worker could not be asked; the session is removed
    /// and closed even then.
    pub async fn remove<Q>(&self, key: &Q) -> Result<bool, BridgeError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(session) = lock(&self.sessions).remove(key) else {
            return Ok(false);
        };
        session.close().await?;
        Ok(true)
    }

    /// Removes and closes every session; the first error, after trying them all.
    pub async fn clear(&self) -> Result<(), BridgeError> {
        let sessions: Vec<Session> = lock(&self.sessions).drain().map(|(_, s)| s).collect();
        let mut first = None;
        for session in sessions {
            if let Err(e) = session.close().await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Open sessions in the store (ended ones are forgotten).
    pub fn len(&self) -> usize {
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.status() == SessionStatus::Open);
        sessions.len()
    }

    /// Whether it holds no open session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

//! The Redis tier of the response cache and its leases (single flight across processes).
//!
//! # Entries
//!
//! An entry is the string `<prefix>{<key hex>}` (default prefix `dspex:cache:`), holding the
//! value format of `cache::codec` (versioned header, the key itself, checksum, LZ4 above 1 KiB
//! by default), written with `SET … PX <ttl>` (no expiry unless a TTL is set). A value that fails
//! its checks is deleted and counted as corrupt, never returned.
//!
//! # Single flight across processes
//!
//! Before an uncached request goes to the LM, the process's leader for that request (identical
//! calls in one process already share one in-flight call) takes a lease:
//! `SET <prefix>lease:{<key hex>} <random token> NX PX <lease>`. The process that gets it calls
//! the LM, stores the answer, then deletes the lease (a Lua script that deletes it only if it
//! still holds its token). While the call runs, the lease is renewed every third of its length,
//! so a slow call keeps it; a leader that dies stops renewing and its lease expires after at
//! most one lease length (default 10 s, [`RedisConfig::lease`]).
//!
//! Processes that find the lease taken poll (every 20 ms by default,
//! [`RedisConfig::poll_interval`]): a value found is their answer; a lease that vanished with no
//! value (the leader failed or died) is taken by the first poller, which makes the call itself.
//! Polling was chosen over pub/sub: it needs no second connection per process, works the same on
//! a cluster, and cannot miss a wake-up; the cost is one `GET` and one `SET NX` per waiting
//! process per interval, only while a call is in flight. If Redis fails during any of this, the
//! process calls the LM itself: a lease never makes a call fail.

use super::{Conn, DEFAULT_OP_TIMEOUT, RedisConfigError, RedisUrl};
use crate::cache::CacheKey;
use crate::cache::codec;
use crate::types::LmResponse;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Environment variable naming the Redis address of the response cache.
pub(crate) const REDIS_URL_ENV: &str = "DSPEX_CACHE_REDIS_URL";
const DEFAULT_PREFIX: &str = "dspex:cache:";
const DEFAULT_LEASE: Duration = Duration::from_secs(10);
const DEFAULT_POLL: Duration = Duration::from_millis(20);

/// The Redis tier of a response cache (feature `redis`): where it is, how entries are named,
/// how long they live, when they are compressed, and how leases behave.
///
/// ```
/// use dspex_lm::{CacheConfig, RedisConfig};
/// use std::time::Duration;
///
/// let redis = RedisConfig::new("redis://:secret@127.0.0.1:6379")?
///     .prefix("team-a:cache:")
///     .ttl(Some(Duration::from_secs(7 * 24 * 3600)));
/// // Memory, then Redis, then disk; add `.no_disk()` for Redis instead of the disk tier.
/// let config = CacheConfig::default().redis(redis);
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), dspex_lm::RedisConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RedisConfig {
    pub(crate) url: RedisUrl,
    pub(crate) prefix: String,
    pub(crate) ttl: Option<Duration>,
    pub(crate) compress_above: usize,
    pub(crate) timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) poll: Duration,
    pub(crate) single_flight: bool,
}

impl RedisConfig {
    /// The Redis tier at `address`: a `redis://` URL, or a comma-separated list of node URLs of
    /// a Redis Cluster. Defaults: prefix `dspex:cache:`, no TTL, values compressed above 1 KiB,
    /// 250 ms per command, single flight across processes on with 10 s leases polled every
    /// 20 ms.
    pub fn new(address: &str) -> Result<RedisConfig, RedisConfigError> {
        Ok(RedisConfig {
            url: RedisUrl::parse(address)?,
            prefix: DEFAULT_PREFIX.to_string(),
            ttl: None,
            compress_above: codec::DEFAULT_COMPRESS_ABOVE,
            timeout: DEFAULT_OP_TIMEOUT,
            lease: DEFAULT_LEASE,
            poll: DEFAULT_POLL,
            single_flight: true,
        })
    }

    /// The tier named by `$DSPEX_CACHE_REDIS_URL`: `None` when it is unset or empty.
    pub fn from_env() -> Option<Result<RedisConfig, RedisConfigError>> {
        std::env::var(REDIS_URL_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| RedisConfig::new(&v))
    }

    /// The address (credentials hidden when printed).
    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// Checks the `rediss://` server(s) against the PEM root certificate(s) `pem` (a private
    /// CA) instead of the system's trust store.
    ///
    /// # Errors
    ///
    /// [`RedisConfigError::Tls`] when the address is not `rediss://` or `pem` holds no usable
    /// certificate.
    pub fn tls_root_certificate(
        mut self,
        pem: impl Into<Vec<u8>>,
    ) -> Result<Self, RedisConfigError> {
        self.url = self.url.with_root_certificate(pem)?;
        Ok(self)
    }

    /// The prefix of every key (default `dspex:cache:`): one namespace per team or project.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long an entry lives in Redis (`None`, the default: until evicted by Redis's own
    /// `maxmemory` policy). Durations under a millisecond count as one millisecond.
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// Values whose JSON is longer than `bytes` are stored LZ4-compressed (default 1024;
    /// `usize::MAX` never compresses, 0 always does).
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.compress_above = bytes;
        self
    }

    /// How long one Redis command may take before it counts as a failure and the call goes on
    /// without Redis (default 250 ms; at least 1 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The length of a single-flight lease (default 10 s, at least 30 ms). It is renewed every
    /// third of its length while the leader's call runs, so it bounds how long other processes
    /// wait after a leader died, not how long a call may take.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// How often a process waiting for another's call looks for the answer (default 20 ms, at
    /// least 1 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// Whether processes sharing this Redis make one LM call for identical concurrent requests
    /// (default true).
    pub fn single_flight(mut self, on: bool) -> Self {
        self.single_flight = on;
        self
    }
}

/// What [`RedisTier::lead`] found.
pub(crate) enum Led {
    /// Another process answered meanwhile.
    Hit(LmResponse),
    /// This process makes the call, holding the lease when it got one.
    Leader(Option<Lease>),
}

/// What a lookup found in Redis.
pub(crate) enum Found {
    Hit(LmResponse),
    Miss,
    Corrupt(&'static str),
    Failed,
}

/// The Redis tier of one cache.
pub(crate) struct RedisTier {
    config: RedisConfig,
    conn: Arc<Conn>,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("config", &self.config)
            .field("conn", &self.conn)
            .finish()
    }
}

/// Deletes a lease if it still holds the caller's token.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});
/// Extends a lease if it still holds the caller's token.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
    )
});

impl RedisTier {
    pub(crate) fn new(config: RedisConfig) -> RedisTier {
        let conn = Arc::new(Conn::new(config.url.clone(), config.timeout, "cache"));
        RedisTier { config, conn }
    }

    /// The address without credentials.
    pub(crate) fn address(&self) -> String {
        self.config.url.redacted()
    }

    /// Failed Redis commands so far.
    pub(crate) fn errors(&self) -> u64 {
        self.conn.errors.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn entry(&self, key: &CacheKey) -> String {
        format!("{}{{{}}}", self.config.prefix, key.to_hex())
    }

    fn lease_key(&self, key: &CacheKey) -> String {
        format!("{}lease:{{{}}}", self.config.prefix, key.to_hex())
    }

    /// Looks `key` up; a corrupt value is deleted.
    pub(crate) async fn get(&self, key: &CacheKey) -> Found {
        let entry = self.entry(key);
        let bytes: Option<Vec<u8>> = match self.conn.query(redis::cmd("GET").arg(&entry)).await {
            Ok(bytes) => bytes,
            Err(_) => return Found::Failed,
        };
        let Some(bytes) = bytes else {
            return Found::Miss;
        };
        match codec::decode(key, &bytes) {
            Ok(response) => Found::Hit(response),
            Err(reason) => {
                let _: Result<i64, _> = self.conn.query(redis::cmd("DEL").arg(&entry)).await;
                Found::Corrupt(reason)
            }
        }
    }

    /// Stores `response` (already marked as fresh); false when Redis failed.
    pub(crate) async fn put(&self, key: &CacheKey, response: &LmResponse) -> bool {
        let bytes = match codec::encode(key, response, self.config.compress_above) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(key = %key, %error, "could not serialize a response for Redis");
                return false;
            }
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.entry(key)).arg(bytes);
        if let Some(ttl) = self.config.ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        let stored: Result<redis::Value, _> = self.conn.query(&cmd).await;
        stored.is_ok()
    }

    /// Deletes every entry under the prefix (standalone Redis only: on a cluster, entries are
    /// left to their TTL).
    pub(crate) async fn clear(&self) {
        if self.config.url.is_cluster() {
            tracing::info!("clearing a response cache leaves its entries in the Redis cluster");
            return;
        }
        let pattern = format!("{}*", self.config.prefix);
        let mut cursor: u64 = 0;
        loop {
            let page: Result<(u64, Vec<Vec<u8>>), _> = self
                .conn
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500),
                )
                .await;
            let Ok((next, keys)) = page else {
                return;
            };
            if !keys.is_empty() {
                let _: Result<i64, _> = self.conn.query(redis::cmd("UNLINK").arg(keys)).await;
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }

    /// Takes the lease of `key` or waits for the process that holds it: see the module docs.
    pub(crate) async fn lead(&self, key: &CacheKey) -> Led {
        if !self.config.single_flight {
            return Led::Leader(None);
        }
        let lease_key = self.lease_key(key);
        let token = lease_token();
        loop {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&lease_key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(millis(self.config.lease));
            let taken: Result<Option<String>, _> = self.conn.query(&cmd).await;
            match taken {
                Ok(Some(_)) => {
                    // The previous holder may have stored its answer just before letting go.
                    if let Found::Hit(hit) = self.get(key).await {
                        release(&self.conn, &lease_key, &token).await;
                        return Led::Hit(hit);
                    }
                    return Led::Leader(Some(Lease::start(
                        Arc::clone(&self.conn),
                        lease_key,
                        token,
                        self.config.lease,
                    )));
                }
                Ok(None) => {}
                Err(_) => return Led::Leader(None),
            }
            tokio::time::sleep(self.config.poll).await;
            match self.get(key).await {
                Found::Hit(hit) => return Led::Hit(hit),
                Found::Failed => return Led::Leader(None),
                Found::Miss | Found::Corrupt(_) => {}
            }
        }
    }
}

/// A held lease: renewed in the background until dropped, then released.
pub(crate) struct Lease {
    renewal: tokio::task::JoinHandle<()>,
    release: Option<(Arc<Conn>, String, String)>,
}

impl Lease {
    fn start(conn: Arc<Conn>, key: String, token: String, length: Duration) -> Lease {
        let renewal = {
            let (conn, key, token) = (Arc::clone(&conn), key.clone(), token.clone());
            tokio::spawn(async move {
                let every = length / 3;
                loop {
                    tokio::time::sleep(every).await;
                    let renewed: Result<i64, _> = conn
                        .script(RENEW.key(&key).arg(&token).arg(millis(length)))
                        .await;
                    if matches!(renewed, Ok(0)) {
                        // Lost (expired while Redis was unreachable, or taken over).
                        return;
                    }
                }
            })
        };
        Lease {
            renewal,
            release: Some((conn, key, token)),
        }
    }
}

impl Lease {
    /// Stops renewing and deletes the lease now.
    pub(crate) async fn release(mut self) {
        self.renewal.abort();
        if let Some((conn, key, token)) = self.release.take() {
            release(&conn, &key, &token).await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
        if let Some((conn, key, token)) = self.release.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { release(&conn, &key, &token).await });
        }
    }
}

async fn release(conn: &Conn, key: &str, token: &str) {
    let _: Result<i64, _> = conn.script(RELEASE.key(key).arg(token)).await;
}

/// A token no other holder has: process id, time and a counter.
fn lease_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

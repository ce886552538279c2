//! The response cache of the LM layer: memory (moka) in front of disk (one redb file).
//!
//! Semantics follow DSPy 3.4.1 (`dspy/clients/cache.py`):
//!
//! - The key ([`CacheKey`]) is the SHA-256 of the compact, key-sorted JSON of the model string, the
//!   messages, every sampling parameter (`temperature` and `max_tokens` even when unset), the
//!   `rollout_id` when set and the kind of call (`_fn_identifier`). Credentials, base URL and
//!   timeouts are never part of it.
//! - Lookups check memory, then disk; a disk hit is promoted into memory. A hit is reported with
//!   `cache_hit = true`, zero usage and the lookup time as its latency.
//! - Only responses with at least one choice are stored.
//!
//! The disk tier is the file `responses.redb` in the cache directory, opened on first use and kept
//! open, in redb's multi-writer mode so that several processes (and several caches in one
//! process) can share a directory. Every value carries a header with a checksum; a corrupt entry
//! is dropped, never returned. A file that cannot be opened as a database is moved aside to
//! `responses.redb.corrupt-<unix seconds>` and replaced by a fresh one; if even that fails, the
//! cache runs from memory alone. A database found damaged later (redb reports corruption or
//! panics) is moved aside the same way, and the cache runs from memory for the rest of its life.
//! Disk work runs on tokio's blocking pool, never on the async threads; no failure of the disk
//! tier reaches the caller (each is logged with `tracing::warn!` and counted in [`CacheStats`]).
//!
//! With feature `redis`, a Redis tier (standalone or cluster) sits between memory and disk:
//! memory → Redis → disk, each hit promoted into memory. It is set with
//! `CacheConfig::redis` or by `$DSPEX_CACHE_REDIS_URL` (read when a cache is built from a
//! config that neither sets nor refuses Redis); `CacheConfig::default().redis(..).no_disk()`
//! puts Redis instead of the disk tier. Its entries carry their own checksummed, versioned
//! format (LZ4 above a threshold) and a TTL; a Redis outage is counted in
//! [`CacheStats::redis_errors`] and the cache goes on with its local tiers. The tier also gives
//! the LM single flight across processes (see `RedisConfig`). Without the feature, a set
//! `$DSPEX_CACHE_REDIS_URL` is reported once with a warning and otherwise ignored.

#[cfg(any(feature = "redis", feature = "fuzzing"))]
pub(crate) mod codec;
mod disk;
mod key;

pub use key::CacheKey;

use super::types::{LmRequest, LmResponse, ResponseFormat, Usage};
use disk::*;
use redb::{
    Builder, ConcurrencyMode, Database, DatabaseError, ReadableDatabase, ReadableTable,
    StorageError, TableDefinition, TableError,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt::{self, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;

/// Entries kept in memory unless configured otherwise.
const DEFAULT_MEMORY_CAPACITY: u64 = 100_000;
/// Environment variable naming the default cache directory.
const CACHE_DIR_ENV: &str = "DSPEX_CACHE_DIR";
/// The database file inside the cache directory.
const DB_FILE: &str = "responses.redb";
/// The single table: key bytes → header + JSON.
const TABLE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("responses");
/// redb's page cache per open database (its default is 1 GiB).
const REDB_PAGE_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Value header: magic, format version, payload length, payload checksum.
const MAGIC: [u8; 4] = *b"DXRC";
const FORMAT_VERSION: u8 = 1;
const CHECKSUM_LEN: usize = 8;
const HEADER_LEN: usize = MAGIC.len() + 1 + 8 + CHECKSUM_LEN;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Where the disk tier lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DiskDir {
    /// No disk tier.
    Off,
    /// `$DSPEX_CACHE_DIR`, else `~/.dspex/cache`, resolved on first use.
    Default,
    /// This directory.
    At(PathBuf),
}

/// Whether a cache has a Redis tier.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RedisChoice {
    /// The one named by `$DSPEX_CACHE_REDIS_URL`, if any (read when the cache is built).
    FromEnv,
    /// None.
    Off,
    /// This one.
    #[cfg(feature = "redis")]
    On(crate::distributed::RedisConfig),
}

/// How a [`ResponseCache`] is set up: the memory tier's capacity, the disk tier's directory and
/// (feature `redis`) the Redis tier.
///
/// [`CacheConfig::default()`] keeps 100,000 entries in memory and uses the disk tier in
/// `$DSPEX_CACHE_DIR`, else `~/.dspex/cache` (resolved when the disk is first used, not here),
/// and a Redis tier when `$DSPEX_CACHE_REDIS_URL` is set (read when the cache is built).
/// `Debug` output never shows a Redis password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    memory_capacity: u64,
    disk: DiskDir,
    redis: RedisChoice,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
            disk: DiskDir::Default,
            redis: RedisChoice::FromEnv,
        }
    }
}

impl CacheConfig {
    /// The memory tier alone (100,000 entries), nothing on disk or in Redis.
    pub fn memory_only() -> Self {
        CacheConfig {
            disk: DiskDir::Off,
            redis: RedisChoice::Off,
            ..Self::default()
        }
    }

    /// The default memory tier and a disk tier in `dir` (created on first use).
    pub fn with_disk_dir(dir: impl Into<PathBuf>) -> Self {
        Self::default().disk_dir(dir)
    }

    /// No caching: every lookup misses and every store is a no-op.
    pub fn disabled() -> Self {
        CacheConfig {
            memory_capacity: 0,
            disk: DiskDir::Off,
            redis: RedisChoice::Off,
        }
    }

    /// Sets the memory tier's capacity in entries; 0 turns the memory tier off.
    pub fn memory_capacity(mut self, entries: u64) -> Self {
        self.memory_capacity = entries;
        self
    }

    /// Puts the disk tier in `dir` (created on first use).
    pub fn disk_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.disk = DiskDir::At(dir.into());
        self
    }

    /// Turns the disk tier off.
    pub fn no_disk(mut self) -> Self {
        self.disk = DiskDir::Off;
        self
    }

    /// Adds a Redis tier between memory and disk (feature `redis`); with
    /// [`no_disk`](Self::no_disk), Redis replaces the disk tier. Overrides
    /// `$DSPEX_CACHE_REDIS_URL`.
    ///
    /// ```
    /// use dspex_lm::{CacheConfig, RedisConfig};
    ///
    /// let config = CacheConfig::default()
    ///     .no_disk()
    ///     .redis(RedisConfig::new("redis://127.0.0.1:6379")?);
    /// assert!(config.redis_config().is_some());
    /// # Ok::<(), dspex_lm::RedisConfigError>(())
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(mut self, redis: crate::distributed::RedisConfig) -> Self {
        self.redis = RedisChoice::On(redis);
        self
    }

    /// The Redis tier set with [`redis`](Self::redis) (`None` when it is off or left to
    /// `$DSPEX_CACHE_REDIS_URL`).
    #[cfg(feature = "redis")]
    pub fn redis_config(&self) -> Option<&crate::distributed::RedisConfig> {
        match &self.redis {
            RedisChoice::On(redis) => Some(redis),
            _ => None,
        }
    }

    /// No Redis tier, whatever `$DSPEX_CACHE_REDIS_URL` says.
    pub fn no_redis(mut self) -> Self {
        self.redis = RedisChoice::Off;
        self
    }

    /// The memory tier's capacity in entries (0: no memory tier).
    pub fn memory_entries(&self) -> u64 {
        self.memory_capacity
    }

    /// The disk tier's directory, resolving the default now; `None` without a disk tier (or when
    /// neither `$DSPEX_CACHE_DIR` nor a home directory is known).
    pub fn resolve_disk_dir(&self) -> Option<PathBuf> {
        match &self.disk {
            DiskDir::Off => None,
            DiskDir::At(dir) => Some(dir.clone()),
            DiskDir::Default => match std::env::var_os(CACHE_DIR_ENV) {
                Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
                _ => std::env::home_dir().map(|home| home.join(".dspex").join("cache")),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------------------------

/// Counters of a [`ResponseCache`] since it was built (shared by its clones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered by the memory tier.
    pub memory_hits: u64,
    /// Lookups answered by the disk tier.
    pub disk_hits: u64,
    /// Lookups answered by neither.
    pub misses: u64,
    /// Responses stored (in at least one tier).
    pub writes: u64,
    /// Corrupt disk entries found and dropped.
    pub corrupt_dropped: u64,
    /// Disk failures: the database could not be opened, a read or write failed.
    pub errors: u64,
    /// Lookups answered by the Redis tier.
    pub redis_hits: u64,
    /// Corrupt or foreign Redis values found and dropped.
    pub redis_corrupt_dropped: u64,
    /// Redis commands that failed or timed out (the cache went on without Redis).
    pub redis_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    redis_hits: AtomicU64,
    redis_corrupt_dropped: AtomicU64,
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    writes: AtomicU64,
    corrupt_dropped: AtomicU64,
    errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------------------------

/// The two-tier response cache: memory (LRU-like, bounded by entries) in front of a redb file.
/// Cheap to clone; clones share everything. Building one touches nothing on disk.
#[derive(Clone)]
pub struct ResponseCache {
    inner: Arc<Inner>,
}

struct Inner {
    memory_capacity: u64,
    memory: Option<moka::future::Cache<CacheKey, Arc<LmResponse>>>,
    #[cfg(feature = "redis")]
    redis: Option<crate::distributed::RedisTier>,
    disk: Option<DiskTier>,
    counters: Counters,
}

struct DiskTier {
    config: CacheConfig,
    /// Set on first use: the open database, or `None` if it could not be opened (memory only).
    db: OnceCell<Option<OpenDb>>,
    /// Set when the open database turned out damaged: memory only from then on.
    failed: AtomicBool,
}

#[derive(Clone)]
struct OpenDb {
    db: Arc<Database>,
    path: PathBuf,
}

impl fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let disk = match &inner.disk {
            None => "off",
            Some(tier) if tier.failed.load(Ordering::Relaxed) => "failed",
            Some(tier) => match tier.db.get() {
                None => "not opened yet",
                Some(Some(_)) => "open",
                Some(None) => "unavailable",
            },
        };
        f.debug_struct("ResponseCache")
            .field("memory_capacity", &inner.memory_capacity)
            .field(
                "memory_entries",
                &inner.memory.as_ref().map_or(0, |m| m.entry_count()),
            )
            .field(
                "disk_dir",
                &inner.disk.as_ref().map(|tier| &tier.config.disk),
            )
            .field("disk", &disk)
            .field("redis", &self.redis_address())
            .field("stats", &self.stats())
            .finish()
    }
}

impl ResponseCache {
    /// A cache set up by `config`. Touches nothing on disk: the directory and database are
    /// created on first use.
    pub fn new(config: CacheConfig) -> ResponseCache {
        let memory = (config.memory_capacity > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(config.memory_capacity)
                .build()
        });
        let disk = (config.disk != DiskDir::Off).then(|| DiskTier {
            config: config.clone(),
            db: OnceCell::new(),
            failed: AtomicBool::new(false),
        });
        #[cfg(feature = "redis")]
        let redis = match &config.redis {
            RedisChoice::Off => None,
            RedisChoice::On(redis) => Some(redis.clone()),
            RedisChoice::FromEnv => match crate::distributed::RedisConfig::from_env() {
                None => None,
                Some(Ok(redis)) => Some(redis),
                Some(Err(error)) => {
                    tracing::warn!(%error, "$DSPEX_CACHE_REDIS_URL is not usable; the response cache runs without Redis");
                    None
                }
            },
        }
        .map(crate::distributed::RedisTier::new);
        #[cfg(not(feature = "redis"))]
        if config.redis == RedisChoice::FromEnv {
            warn_redis_feature_off();
        }
        ResponseCache {
            inner: Arc::new(Inner {
                memory_capacity: config.memory_capacity,
                memory,
                #[cfg(feature = "redis")]
                redis,
                disk,
                counters: Counters::default(),
            }),
        }
    }

    /// The stored response for `key`, from memory, else from disk (then kept in memory too).
    /// A hit has `cache_hit = true`, zero usage and the lookup time as its latency.
    pub async fn get(&self, key: &CacheKey) -> Option<LmResponse> {
        let start = Instant::now();
        let inner = &self.inner;
        if let Some(memory) = &inner.memory
            && let Some(hit) = memory.get(key).await
        {
            bump(&inner.counters.memory_hits);
            return Some(as_hit(&hit, start));
        }
        #[cfg(feature = "redis")]
        if let Some(hit) = self.redis_get(key, start).await {
            return Some(hit);
        }
        let k = *key;
        match self.with_disk("read", move |db| disk_get(db, &k)).await {
            Some(Lookup::Hit(response)) => {
                bump(&inner.counters.disk_hits);
                let hit = as_hit(&response, start);
                if let Some(memory) = &inner.memory {
                    memory.insert(*key, Arc::new(response)).await;
                }
                return Some(hit);
            }
            Some(Lookup::Corrupt { reason, removal }) => {
                bump(&inner.counters.corrupt_dropped);
                tracing::warn!(key = %key, reason, "dropped a corrupt response cache entry");
                if let Err(error) = removal {
                    bump(&inner.counters.errors);
                    tracing::warn!(key = %key, %error, "could not delete a corrupt cache entry");
                }
            }
            Some(Lookup::Miss) | None => {}
        }
        bump(&inner.counters.misses);
        None
    }

    /// Stores `response` under `key` in every tier (with `cache_hit = false`). A response without
    /// choices is not stored.
    pub async fn put(&self, key: CacheKey, response: &LmResponse) {
        let inner = &self.inner;
        if response.choices.is_empty() {
            return;
        }
        let mut stored = response.clone();
        stored.cache_hit = false;
        let mut written = false;
        #[cfg(feature = "redis")]
        if let Some(redis) = &inner.redis {
            written |= redis.put(&key, &stored).await;
        }
        if inner.disk.is_some() {
            match encode(&stored) {
                Ok(bytes) => {
                    written = self
                        .with_disk("write", move |db| disk_put(db, &key, &bytes))
                        .await
                        .is_some();
                }
                Err(error) => {
                    bump(&inner.counters.errors);
                    tracing::warn!(key = %key, %error, "could not serialize a response for the cache");
                }
            }
        }
        if let Some(memory) = &inner.memory {
            memory.insert(key, Arc::new(stored)).await;
            written = true;
        }
        if written {
            bump(&inner.counters.writes);
        }
    }

    /// Removes every entry, from memory, from disk and from a standalone Redis (every key under
    /// the tier's prefix; entries in a Redis Cluster are left to their TTL).
    pub async fn clear(&self) {
        if let Some(memory) = &self.inner.memory {
            memory.invalidate_all();
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.inner.redis {
            redis.clear().await;
        }
        self.with_disk("clear", disk_clear).await;
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            disk_hits: c.disk_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            corrupt_dropped: c.corrupt_dropped.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            redis_hits: c.redis_hits.load(Ordering::Relaxed),
            redis_corrupt_dropped: c.redis_corrupt_dropped.load(Ordering::Relaxed),
            #[cfg(feature = "redis")]
            redis_errors: self.inner.redis.as_ref().map_or(0, |r| r.errors()),
            #[cfg(not(feature = "redis"))]
            redis_errors: 0,
        }
    }

    /// The Redis tier's address without credentials (`None` without one).
    pub fn redis_address(&self) -> Option<String> {
        #[cfg(feature = "redis")]
        {
            self.inner.redis.as_ref().map(|r| r.address())
        }
        #[cfg(not(feature = "redis"))]
        {
            None
        }
    }

    /// The Redis tier's lookup: a hit is promoted into memory; a corrupt value is dropped.
    #[cfg(feature = "redis")]
    async fn redis_get(&self, key: &CacheKey, start: Instant) -> Option<LmResponse> {
        use crate::distributed::Found;
        let inner = &self.inner;
        let redis = inner.redis.as_ref()?;
        match redis.get(key).await {
            Found::Hit(response) => {
                bump(&inner.counters.redis_hits);
                let hit = as_hit(&response, start);
                if let Some(memory) = &inner.memory {
                    memory.insert(*key, Arc::new(response)).await;
                }
                Some(hit)
            }
            Found::Corrupt(reason) => {
                bump(&inner.counters.redis_corrupt_dropped);
                tracing::warn!(key = %key, reason, "dropped a corrupt response cache entry in Redis");
                None
            }
            Found::Miss | Found::Failed => None,
        }
    }

    /// Single flight across processes for a request this process is about to make: see
    /// `RedisConfig`. Without a Redis tier, this process leads at once.
    #[cfg(feature = "redis")]
    pub(crate) async fn lead(&self, key: &CacheKey) -> crate::distributed::Led {
        use crate::distributed::Led;
        let start = Instant::now();
        let Some(redis) = self.inner.redis.as_ref() else {
            return Led::Leader(None);
        };
        match redis.lead(key).await {
            Led::Hit(response) => {
                bump(&self.inner.counters.redis_hits);
                let hit = as_hit(&response, start);
                if let Some(memory) = &self.inner.memory {
                    memory.insert(*key, Arc::new(response)).await;
                }
                Led::Hit(hit)
            }
            leader => leader,
        }
    }

    /// Runs `op` on the disk tier's database on the blocking pool (opening it on first use).
    /// `None` without a usable disk tier, or if `op` failed: the failure is counted and logged,
    /// and if it shows the database damaged, the file is moved aside (the next process starts a
    /// new one) and this cache runs from memory only.
    async fn with_disk<T: Send + 'static>(
        &self,
        what: &'static str,
        op: impl FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    ) -> Option<T> {
        let tier = self.inner.disk.as_ref()?;
        if tier.failed.load(Ordering::Relaxed) {
            return None;
        }
        let open = self.database(tier).await?;
        let db = Arc::clone(&open.db);
        let (error, damaged) = match tokio::task::spawn_blocking(move || op(&db)).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => {
                let damaged = matches!(
                    error,
                    redb::Error::Corrupted(_)
                        | redb::Error::PreviousIo
                        | redb::Error::LockPoisoned(_)
                );
                (error.to_string(), damaged)
            }
            // redb may panic on a file damaged outside redb.
            Err(error) => (error.to_string(), error.is_panic()),
        };
        bump(&self.inner.counters.errors);
        let path = open.path.display();
        if !damaged {
            tracing::warn!(path = %path, %error, "response cache disk {what} failed");
        } else if !tier.failed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %path,
                %error,
                "response cache database is damaged; moving it aside, running from memory only"
            );
            let file = open.path.clone();
            let moved = tokio::task::spawn_blocking(move || move_aside(&file)).await;
            if !matches!(moved, Ok(Ok(_))) {
                tracing::warn!(path = %path, "could not move the damaged response cache aside");
            }
        }
        None
    }

    /// The disk tier's database, opened on first call; `None` if it could not be opened.
    async fn database(&self, tier: &DiskTier) -> Option<OpenDb> {
        tier.db
            .get_or_init(|| async {
                let config = tier.config.clone();
                let opened = tokio::task::spawn_blocking(move || open_disk(&config))
                    .await
                    .unwrap_or_else(|error| Err(format!("open task failed: {error}")));
                match opened {
                    Ok((db, path)) => Some(OpenDb {
                        db: Arc::new(db),
                        path,
                    }),
                    Err(error) => {
                        bump(&self.inner.counters.errors);
                        tracing::warn!(%error, "response cache running from memory only");
                        None
                    }
                }
            })
            .await
            .clone()
    }
}

/// Warns once per process that `$DSPEX_CACHE_REDIS_URL` is set in a build without Redis.
#[cfg(not(feature = "redis"))]
fn warn_redis_feature_off() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("DSPEX_CACHE_REDIS_URL").is_some_and(|v| !v.is_empty()) {
        WARNED.call_once(|| {
            tracing::warn!(
                "DSPEX_CACHE_REDIS_URL is set, but dspex was built without its `redis` feature: \
                 the response cache runs without Redis (enable the `redis` feature of dspex)"
            );
        });
    }
}

/// The response as a cache hit: flagged, no usage, the lookup time as latency.
fn as_hit(stored: &LmResponse, start: Instant) -> LmResponse {
    LmResponse {
        usage: Usage::default(),
        latency: start.elapsed(),
        cache_hit: true,
        ..stored.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::key::{canonical_json, key_document, write_json_string};
    use super::*;
    use crate::types::{Choice, FinishReason, Message};
    use serde_json::json;
    use std::time::Duration;

    fn request(text: &str) -> LmRequest {
        LmRequest::prompt(text)
    }

    fn key(text: &str) -> CacheKey {
        CacheKey::for_request("openai/gpt-4o-mini", "dspex.chat", &request(text))
    }

    fn response(text: &str) -> LmResponse {
        LmResponse {
            choices: vec![Choice {
                text: text.into(),
                finish_reason: Some(FinishReason::Stop),
                tool_calls: Vec::new(),
                reasoning_content: None,
            }],
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                total_tokens: 15,
            },
            model: "gpt-4o-mini".into(),
            latency: Duration::from_millis(800),
            cache_hit: false,
        }
    }

    fn database(cache: &ResponseCache) -> Arc<Database> {
        let open = cache.inner.disk.as_ref().unwrap().db.get().unwrap();
        Arc::clone(&open.as_ref().unwrap().db)
    }

    fn stored_bytes(cache: &ResponseCache, key: &CacheKey) -> Option<Vec<u8>> {
        let db = database(cache);
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(TABLE).unwrap();
        let value = table.get(key.as_bytes().as_slice()).unwrap();
        value.map(|v| v.value().to_vec())
    }

    fn write_raw(cache: &ResponseCache, key: &CacheKey, bytes: &[u8]) {
        disk_put(&database(cache), key, bytes).unwrap();
    }

    #[test]
    fn canonical_json_of_a_simple_request() {
        let doc = key_document("openai/gpt-4o-mini", "dspex.chat", &request("hi"));
        assert_eq!(
            canonical_json(&doc),
            r#"{"_fn_identifier":"dspex.chat","max_tokens":null,"messages":[{"content":"hi","role":"user"}],"model":"openai/gpt-4o-mini","temperature":null}"#
        );
        // sha256 of exactly that string.
        assert_eq!(
            key("hi").to_hex(),
            "18732284ebe22848eb1c2890e79ac2d2f414c9e4113cf92cbbddc697e1d0b3a7"
        );
        assert_eq!(
            format!("{:?}", key("hi")),
            format!("CacheKey({})", key("hi"))
        );
    }

    #[test]
    fn canonical_json_sorts_every_level_and_escapes() {
        let value =
            json!({"b": [{"z": 1, "a": 2.5}], "a": {"y": null, "x": true}, "é": "q\"\\\n\u{1}ü"});
        assert_eq!(
            canonical_json(&value),
            "{\"a\":{\"x\":true,\"y\":null},\"b\":[{\"a\":2.5,\"z\":1}],\"é\":\"q\\\"\\\\\\n\\u0001ü\"}"
        );
        // Same escaping as serde_json for strings.
        let s = "tab\there\u{8}\u{c}\r\u{1f}";
        let mut ours = String::new();
        write_json_string(s, &mut ours);
        assert_eq!(ours, serde_json::to_string(s).unwrap());
    }

    #[test]
    fn extra_order_does_not_change_the_key() {
        let mut a = request("hi");
        a.extra.insert("top_p".into(), json!(0.9));
        a.extra
            .insert("logit_bias".into(), json!({"50256": -100, "1": 5}));
        let mut b = request("hi");
        b.extra
            .insert("logit_bias".into(), json!({"1": 5, "50256": -100}));
        b.extra.insert("top_p".into(), json!(0.9));
        let ka = CacheKey::for_request("m", "dspex.chat", &a);
        assert_eq!(ka, CacheKey::for_request("m", "dspex.chat", &b));
        assert_ne!(ka, CacheKey::for_request("m", "dspex.chat", &request("hi")));
    }

    #[test]
    fn every_parameter_changes_the_key() {
        let base = request("hi");
        let variants: Vec<(&str, &str, LmRequest)> = vec![
            ("m", "dspex.chat", base.clone()),
            ("m2", "dspex.chat", base.clone()),
            ("m", "dspex.text", base.clone()),
            ("m", "dspex.chat", request("hi ")),
            (
                "m",
                "dspex.chat",
                LmRequest::new(vec![Message::system("hi")]),
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    temperature: Some(0.0),
                    ..base.clone()
                },
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    temperature: Some(0.7),
                    ..base.clone()
                },
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    max_tokens: Some(100),
                    ..base.clone()
                },
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    n: Some(1),
                    ..base.clone()
                },
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    n: Some(3),
                    ..base.clone()
                },
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    stop: vec!["\n".into()],
                    ..base.clone()
                },
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    seed: Some(7),
                    ..base.clone()
                },
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    response_format: Some(ResponseFormat::Text),
                    ..base.clone()
                },
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    response_format: Some(ResponseFormat::JsonObject),
                    ..base.clone()
                },
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    response_format: Some(ResponseFormat::JsonSchema {
                        json_schema: json!({"name": "a"}),
                    }),
                    ..base.clone()
                },
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    rollout_id: Some(0),
                    ..base.clone()
                },
            ),
            (
                "m",
                "dspex.chat",
                LmRequest {
                    rollout_id: Some(1),
                    ..base.clone()
                },
            ),
            ("m", "dspex.chat", {
                let mut r = base.clone();
                r.extra.insert("top_p".into(), json!(0.5));
                r
            }),
            ("m", "dspex.chat", {
                // An extra entry named like a parameter does not pass for it.
                let mut r = base.clone();
                r.extra.insert("temperature".into(), json!(0.7));
                r
            }),
        ];
        let keys: Vec<CacheKey> = variants
            .iter()
            .map(|(model, kind, r)| CacheKey::for_request(model, kind, r))
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for (j, b) in keys.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "variants {i} and {j} share a key");
            }
        }
        // An empty stop list is the same as none.
        assert_eq!(
            CacheKey::for_request(
                "m",
                "dspex.chat",
                &LmRequest {
                    stop: vec![],
                    ..base.clone()
                }
            ),
            keys[0]
        );
    }

    #[test]
    fn value_format_round_trips_and_rejects_damage() {
        let r = response("hello");
        let bytes = encode(&r).unwrap();
        assert_eq!(&bytes[..4], b"DXRC");
        assert_eq!(decode(&bytes).unwrap(), r);

        assert_eq!(decode(b"DXRC").unwrap_err(), "truncated header");
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad).unwrap_err(), "bad magic");
        let mut bad = bytes.clone();
        bad[4] = 9;
        assert_eq!(decode(&bad).unwrap_err(), "unknown format version");
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]).unwrap_err(),
            "length mismatch"
        );
        let mut bad = bytes.clone();
        let last = bad.len() - 2;
        bad[last] ^= 0x20;
        assert_eq!(decode(&bad).unwrap_err(), "checksum mismatch");
        // A valid header over a payload that is not a response.
        let payload = b"{\"not\":\"a response\"}";
        let mut bad = Vec::new();
        bad.extend_from_slice(&MAGIC);
        bad.push(FORMAT_VERSION);
        bad.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bad.extend_from_slice(&checksum(payload));
        bad.extend_from_slice(payload);
        assert_eq!(decode(&bad).unwrap_err(), "invalid JSON");
    }

    #[test]
    fn config_constructors_and_builders() {
        let memory_only = CacheConfig::memory_only();
        assert_eq!(
            (memory_only.memory_entries(), memory_only.resolve_disk_dir()),
            (100_000, None)
        );
        let disabled = CacheConfig::disabled();
        assert_eq!(
            (disabled.memory_entries(), disabled.resolve_disk_dir()),
            (0, None)
        );
        let at = CacheConfig::with_disk_dir("/tmp/x").memory_capacity(5);
        assert_eq!(
            (at.memory_entries(), at.resolve_disk_dir()),
            (5, Some("/tmp/x".into()))
        );
        assert_eq!(at.clone().no_disk().resolve_disk_dir(), None);
        assert_eq!(
            CacheConfig::memory_only()
                .disk_dir("/tmp/y")
                .resolve_disk_dir(),
            Some("/tmp/y".into())
        );
        let default = CacheConfig::default();
        assert_eq!(default.memory_entries(), 100_000);
        if let Some(dir) = default.resolve_disk_dir() {
            match std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
                Some(env) => assert_eq!(dir, PathBuf::from(env)),
                None => assert!(dir.ends_with(".dspex/cache")),
            }
        }
    }

    #[tokio::test]
    async fn memory_only_hit_and_miss() {
        let cache = ResponseCache::new(CacheConfig::memory_only());
        assert!(cache.get(&key("a")).await.is_none());
        cache.put(key("a"), &response("A")).await;
        let hit = cache.get(&key("a")).await.unwrap();
        assert_eq!(hit.text(), "A");
        assert!(hit.cache_hit);
        assert_eq!(hit.usage, Usage::default());
        assert!(hit.latency < Duration::from_millis(800));
        assert_eq!(hit.model, "gpt-4o-mini");
        assert!(cache.get(&key("b")).await.is_none());
        let stats = cache.stats();
        assert_eq!(
            stats,
            CacheStats {
                memory_hits: 1,
                misses: 2,
                writes: 1,
                ..CacheStats::default()
            }
        );
        assert!(format!("{cache:?}").contains("disk: \"off\""));
    }

    #[tokio::test]
    async fn disabled_cache_stores_nothing() {
        let cache = ResponseCache::new(CacheConfig::disabled());
        cache.put(key("a"), &response("A")).await;
        assert!(cache.get(&key("a")).await.is_none());
        assert_eq!(
            cache.stats(),
            CacheStats {
                misses: 1,
                ..CacheStats::default()
            }
        );
    }

    #[tokio::test]
    async fn response_without_choices_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(CacheConfig::with_disk_dir(dir.path()));
        let mut empty = response("x");
        empty.choices.clear();
        cache.put(key("a"), &empty).await;
        assert!(cache.get(&key("a")).await.is_none());
        assert_eq!(cache.stats().writes, 0);
        assert_eq!(stored_bytes(&cache, &key("a")), None);
    }

    #[tokio::test]
    async fn disk_persists_across_instances() {
        let dir = tempfile::tempdir().unwrap();
        let config = CacheConfig::with_disk_dir(dir.path());
        {
            let first = ResponseCache::new(config.clone());
            let mut r = response("persisted");
            r.cache_hit = true; // stored as a fresh response regardless
            first.put(key("p"), &r).await;
            assert_eq!(first.stats().writes, 1);
            let raw = stored_bytes(&first, &key("p")).unwrap();
            assert!(!decode(&raw).unwrap().cache_hit);
        }
        let second = ResponseCache::new(config);
        let hit = second.get(&key("p")).await.unwrap();
        assert_eq!(hit.text(), "persisted");
        assert!(hit.cache_hit);
        assert_eq!(hit.usage, Usage::default());
        let again = second.get(&key("p")).await.unwrap();
        assert_eq!(again.text(), "persisted");
        assert_eq!(
            second.stats(),
            CacheStats {
                memory_hits: 1,
                disk_hits: 1,
                ..CacheStats::default()
            }
        );
    }

    #[tokio::test]
    async fn two_live_instances_share_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let a = ResponseCache::new(CacheConfig::with_disk_dir(dir.path()));
        let b = ResponseCache::new(CacheConfig::with_disk_dir(dir.path()));
        a.put(key("x"), &response("X")).await;
        assert_eq!(b.get(&key("x")).await.unwrap().text(), "X");
        assert_eq!(b.stats().errors, 0);
    }

    #[tokio::test]
    async fn disk_only_cache_works_without_memory_tier() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(CacheConfig::with_disk_dir(dir.path()).memory_capacity(0));
        cache.put(key("d"), &response("D")).await;
        assert_eq!(cache.get(&key("d")).await.unwrap().text(), "D");
        assert_eq!(cache.get(&key("d")).await.unwrap().text(), "D");
        assert_eq!(cache.stats().disk_hits, 2);
    }

    #[tokio::test]
    async fn directory_is_created_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("nested").join("cache");
        let cache = ResponseCache::new(CacheConfig::with_disk_dir(&cache_dir));
        assert!(!cache_dir.exists());
        assert!(format!("{cache:?}").contains("not opened yet"));
        assert!(cache.get(&key("a")).await.is_none());
        assert!(cache_dir.join(DB_FILE).is_file());
    }

    #[tokio::test]
    async fn corrupt_entry_is_dropped_counted_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(CacheConfig::with_disk_dir(dir.path()).memory_capacity(0));
        cache.put(key("c"), &response("good")).await;

        // Garbage bytes.
        write_raw(&cache, &key("c"), b"garbage");
        assert!(cache.get(&key("c")).await.is_none());
        assert_eq!(cache.stats().corrupt_dropped, 1);
        assert_eq!(stored_bytes(&cache, &key("c")), None);

        // One flipped byte in the payload.
        cache.put(key("c"), &response("good")).await;
        let mut bytes = stored_bytes(&cache, &key("c")).unwrap();
        let i = bytes.len() - 3;
        bytes[i] ^= 0x01;
        write_raw(&cache, &key("c"), &bytes);
        assert!(cache.get(&key("c")).await.is_none());
        assert_eq!(cache.stats().corrupt_dropped, 2);

        cache.put(key("c"), &response("fresh")).await;
        assert_eq!(cache.get(&key("c")).await.unwrap().text(), "fresh");
        assert_eq!(cache.stats().errors, 0);
    }

    #[tokio::test]
    async fn garbage_database_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), "not a database").unwrap();
        let cache = ResponseCache::new(CacheConfig::with_disk_dir(dir.path()).memory_capacity(0));
        cache.put(key("g"), &response("G")).await;
        assert_eq!(cache.get(&key("g")).await.unwrap().text(), "G");
        assert_eq!(cache.stats().errors, 0);
        let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(
            std::fs::read_to_string(&aside[0]).unwrap(),
            "not a database"
        );
    }

    #[tokio::test]
    async fn unusable_directory_falls_back_to_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let cache = ResponseCache::new(CacheConfig::with_disk_dir(&file));
        cache.put(key("m"), &response("M")).await;
        assert_eq!(cache.get(&key("m")).await.unwrap().text(), "M");
        let stats = cache.stats();
        assert_eq!((stats.errors, stats.memory_hits, stats.writes), (1, 1, 1));
        assert!(format!("{cache:?}").contains("unavailable"));
    }

    #[tokio::test]
    async fn clear_empties_both_tiers() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(CacheConfig::with_disk_dir(dir.path()));
        cache.put(key("a"), &response("A")).await;
        cache.clear().await;
        assert!(cache.get(&key("a")).await.is_none());
        cache.put(key("a"), &response("A2")).await;
        assert_eq!(cache.get(&key("a")).await.unwrap().text(), "A2");
        assert_eq!(cache.stats().errors, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_disk_puts_and_gets() {
        let dir = tempfile::tempdir().unwrap();
        let config = CacheConfig::with_disk_dir(dir.path()).memory_capacity(0);
        let cache = ResponseCache::new(config.clone());
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    let k = key(&format!("q{i}"));
                    cache.put(k, &response(&format!("a{i}"))).await;
                    cache.get(&k).await.map(|r| r.text().to_owned())
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), Some(format!("a{i}")));
        }
        let stats = cache.stats();
        assert_eq!((stats.writes, stats.disk_hits, stats.errors), (50, 50, 0));
        drop(cache);
        let reopened = ResponseCache::new(config);
        for i in 0..50 {
            let hit = reopened.get(&key(&format!("q{i}"))).await.unwrap();
            assert_eq!(hit.text(), format!("a{i}"));
        }
    }

    #[tokio::test]
    async fn damaged_database_at_run_time_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let config = CacheConfig::with_disk_dir(dir.path());
        let aside_count = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .to_string_lossy()
                        .contains(".corrupt-")
                })
                .count()
        };
        // What a read of a damaged page reports.
        let cache = ResponseCache::new(config.clone());
        cache.put(key("a"), &response("A")).await;
        let corrupted = || Err::<(), _>(redb::Error::Corrupted("bad page".into()));
        assert!(
            cache
                .with_disk("read", move |_| corrupted())
                .await
                .is_none()
        );
        assert_eq!(cache.stats().errors, 1);
        assert!(format!("{cache:?}").contains("failed"));
        assert!(!dir.path().join(DB_FILE).exists());
        assert_eq!(aside_count(), 1);
        // Memory only from now on, without further errors.
        cache.put(key("b"), &response("B")).await;
        assert_eq!(cache.get(&key("b")).await.unwrap().text(), "B");
        assert!(cache.get(&key("c")).await.is_none());
        assert_eq!(cache.stats().errors, 1);

        // The next cache on the directory starts a new database; a panic inside redb counts as
        // damage too.
        let next = ResponseCache::new(config.clone());
        next.put(key("d"), &response("D")).await;
        assert_eq!(next.get(&key("d")).await.unwrap().text(), "D");
        assert_eq!(next.stats().errors, 0);
        let panicked: Option<()> = next.with_disk("read", |_| panic!("damaged")).await;
        assert!(panicked.is_none());
        assert_eq!(next.stats().errors, 1);
        assert!(!dir.path().join(DB_FILE).exists());

        // A plain I/O error is not damage: the database stays in use.
        let third = ResponseCache::new(config);
        let io = || Err::<(), _>(redb::Error::Io(std::io::Error::other("disk full")));
        assert!(third.with_disk("write", move |_| io()).await.is_none());
        third.put(key("e"), &response("E")).await;
        assert!(format!("{third:?}").contains("disk: \"open\""));
        assert_eq!(third.stats().errors, 1);
    }
}

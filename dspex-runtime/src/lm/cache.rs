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

use super::types::{LmRequest, LmResponse, ResponseFormat, Usage};
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
// Key
// ---------------------------------------------------------------------------------------------

/// The cache key of one request: a SHA-256 over the request's canonical JSON (see
/// [`CacheKey::for_request`]). Prints as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of `request` sent to `model` (the full model string, `openai/gpt-4o-mini`) by the
    /// kind of call `kind` (`"dspex.chat"`, `"dspex.text"`; the same request made by different
    /// kinds of call does not share entries).
    ///
    /// As in DSPy, the hash is over the compact JSON, keys sorted at every level, of
    /// `{"model", "messages", "temperature", "max_tokens", <n, stop, seed, response_format when
    /// set>, <each entry of extra>, "rollout_id" (when set), "_fn_identifier": kind}`, where an
    /// unset `temperature` or `max_tokens` is `null`. An `extra` entry whose name is one of those
    /// keys goes under `"_extra"` instead, so that it cannot pass for the parameter.
    pub fn for_request(model: &str, kind: &str, request: &LmRequest) -> CacheKey {
        let json = canonical_json(&key_document(model, kind, request));
        CacheKey(Sha256::digest(json.as_bytes()).into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            let _ = write!(out, "{byte:02x}");
        }
        out
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Top-level names the key document uses; an `extra` entry with one of them goes under `_extra`.
const RESERVED_KEYS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "max_tokens",
    "n",
    "stop",
    "seed",
    "response_format",
    "rollout_id",
    "_fn_identifier",
    "_extra",
];

/// The JSON object whose canonical form is hashed.
fn key_document(model: &str, kind: &str, request: &LmRequest) -> Value {
    let mut doc = Map::new();
    let mut clashing = Map::new();
    for (name, value) in &request.extra {
        if RESERVED_KEYS.contains(&name.as_str()) {
            clashing.insert(name.clone(), value.clone());
        } else {
            doc.insert(name.clone(), value.clone());
        }
    }
    if !clashing.is_empty() {
        doc.insert("_extra".into(), Value::Object(clashing));
    }
    doc.insert("model".into(), model.into());
    let messages = request
        .messages
        .iter()
        .map(|m| {
            let mut msg = Map::new();
            msg.insert("role".into(), m.role.as_str().into());
            msg.insert("content".into(), m.content.as_str().into());
            Value::Object(msg)
        })
        .collect();
    doc.insert("messages".into(), Value::Array(messages));
    doc.insert(
        "temperature".into(),
        request.temperature.map_or(Value::Null, Value::from),
    );
    doc.insert(
        "max_tokens".into(),
        request.max_tokens.map_or(Value::Null, Value::from),
    );
    if let Some(n) = request.n {
        doc.insert("n".into(), n.into());
    }
    if !request.stop.is_empty() {
        doc.insert("stop".into(), request.stop.clone().into());
    }
    if let Some(seed) = request.seed {
        doc.insert("seed".into(), seed.into());
    }
    if let Some(format) = &request.response_format {
        let mut obj = Map::new();
        let kind = match format {
            ResponseFormat::Text => "text",
            ResponseFormat::JsonObject => "json_object",
            ResponseFormat::JsonSchema { json_schema } => {
                obj.insert("json_schema".into(), json_schema.clone());
                "json_schema"
            }
        };
        obj.insert("type".into(), kind.into());
        doc.insert("response_format".into(), Value::Object(obj));
    }
    if let Some(rollout_id) = request.rollout_id {
        doc.insert("rollout_id".into(), rollout_id.into());
    }
    doc.insert("_fn_identifier".into(), kind.into());
    Value::Object(doc)
}

/// Compact JSON with the keys of every object sorted (by code point of their UTF-8 bytes, as
/// orjson's `OPT_SORT_KEYS`), independent of the map's own order.
fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(name, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal, escaped as serde_json and orjson escape (non-ASCII kept as UTF-8).
fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if c < '\u{20}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

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

/// How a [`ResponseCache`] is set up: the memory tier's capacity and the disk tier's directory.
///
/// [`CacheConfig::default()`] keeps 100,000 entries in memory and uses the disk tier in
/// `$DSPEX_CACHE_DIR`, else `~/.dspex/cache` (resolved when the disk is first used, not here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    memory_capacity: u64,
    disk: DiskDir,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
            disk: DiskDir::Default,
        }
    }
}

impl CacheConfig {
    /// The memory tier alone (100,000 entries), nothing on disk.
    pub fn memory_only() -> Self {
        CacheConfig {
            disk: DiskDir::Off,
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
}

#[derive(Debug, Default)]
struct Counters {
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
        ResponseCache {
            inner: Arc::new(Inner {
                memory_capacity: config.memory_capacity,
                memory,
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

    /// Removes every entry, from memory and from disk.
    pub async fn clear(&self) {
        if let Some(memory) = &self.inner.memory {
            memory.invalidate_all();
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

/// The response as a cache hit: flagged, no usage, the lookup time as latency.
fn as_hit(stored: &LmResponse, start: Instant) -> LmResponse {
    LmResponse {
        usage: Usage::default(),
        latency: start.elapsed(),
        cache_hit: true,
        ..stored.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Disk tier (blocking; run inside spawn_blocking)
// ---------------------------------------------------------------------------------------------

enum Lookup {
    Hit(LmResponse),
    Miss,
    Corrupt {
        reason: &'static str,
        removal: Result<(), redb::Error>,
    },
}

/// Why opening the database file failed.
enum OpenFailure {
    /// Another handle holds it in an incompatible way: leave the file alone.
    Busy(String),
    /// The file is unusable (not a database, corrupt, unreadable): move it aside.
    Broken(String),
    /// The platform lacks the byte-range locks of the multi-writer mode.
    NoRangeLocks,
}

/// Creates the directory and opens (or creates) the database, moving a broken file aside.
fn open_disk(config: &CacheConfig) -> Result<(Database, PathBuf), String> {
    let dir = config
        .resolve_disk_dir()
        .ok_or_else(|| format!("no cache directory: set ${CACHE_DIR_ENV} or HOME"))?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create cache directory {}: {e}", dir.display()))?;
    let path = dir.join(DB_FILE);
    let error = match open_file(&path) {
        Ok(db) => return Ok((db, path)),
        Err(OpenFailure::Broken(error)) => error,
        Err(OpenFailure::Busy(error)) => return Err(format!("{}: {error}", path.display())),
        Err(OpenFailure::NoRangeLocks) => {
            return Err(format!("{}: file locks unsupported", path.display()));
        }
    };
    tracing::warn!(
        path = %path.display(),
        %error,
        "response cache database unusable; moving it aside and starting a new one"
    );
    move_aside(&path)
        .map_err(|e| format!("{}: {error}; moving it aside failed: {e}", path.display()))?;
    match open_file(&path) {
        Ok(db) => Ok((db, path)),
        Err(OpenFailure::Busy(e) | OpenFailure::Broken(e)) => Err(format!(
            "{}: a new database failed too: {e}",
            path.display()
        )),
        Err(OpenFailure::NoRangeLocks) => {
            Err(format!("{}: file locks unsupported", path.display()))
        }
    }
}

/// Renames the database file to `<name>.corrupt-<unix seconds>`.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{secs}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

/// Opens the file as a database and makes sure the table exists.
fn open_file(path: &Path) -> Result<Database, OpenFailure> {
    let db = match create_db(path, ConcurrencyMode::MultiWriter) {
        // No byte-range locks on this platform: one process (one handle) at a time.
        Err(OpenFailure::NoRangeLocks) => create_db(path, ConcurrencyMode::ExclusiveWriter)?,
        other => other?,
    };
    let ensure_table = || -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?;
        txn.commit()?;
        Ok(())
    };
    match catch_unwind(AssertUnwindSafe(ensure_table)) {
        Ok(Ok(())) => Ok(db),
        Ok(Err(error)) => Err(OpenFailure::Broken(error.to_string())),
        Err(_) => Err(OpenFailure::Broken("redb panicked".into())),
    }
}

fn create_db(path: &Path, mode: ConcurrencyMode) -> Result<Database, OpenFailure> {
    let mut builder = Builder::new();
    builder
        .set_cache_size(REDB_PAGE_CACHE_BYTES)
        .set_concurrency_mode(mode);
    // redb may panic on a file damaged outside redb; treat that as a broken file.
    match catch_unwind(AssertUnwindSafe(|| builder.create(path))) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(
            error @ (DatabaseError::DatabaseAlreadyOpen
            | DatabaseError::LockProtocolMismatch
            | DatabaseError::TransactionInProgress),
        )) => Err(OpenFailure::Busy(error.to_string())),
        Ok(Err(DatabaseError::Storage(StorageError::Unsupported))) => {
            Err(OpenFailure::NoRangeLocks)
        }
        Ok(Err(error)) => Err(OpenFailure::Broken(error.to_string())),
        Err(_) => Err(OpenFailure::Broken("redb panicked while opening".into())),
    }
}

fn disk_get(db: &Database, key: &CacheKey) -> Result<Lookup, redb::Error> {
    let (reason, bytes) = {
        let txn = db.begin_read()?;
        let table = match txn.open_table(TABLE) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Lookup::Miss),
            Err(error) => return Err(error.into()),
        };
        let Some(guard) = table.get(key.as_bytes().as_slice())? else {
            return Ok(Lookup::Miss);
        };
        match decode(guard.value()) {
            Ok(response) => return Ok(Lookup::Hit(response)),
            Err(reason) => (reason, guard.value().to_vec()),
        }
    };
    // The read transaction is over: delete the entry in a write transaction.
    Ok(Lookup::Corrupt {
        reason,
        removal: remove_if_unchanged(db, key, &bytes),
    })
}

/// Deletes the entry if it still holds `bytes` (a concurrent put may have replaced it).
fn remove_if_unchanged(db: &Database, key: &CacheKey, bytes: &[u8]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(TABLE)?;
        let unchanged = table
            .get(key.as_bytes().as_slice())?
            .is_some_and(|current| current.value() == bytes);
        if unchanged {
            table.remove(key.as_bytes().as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn disk_put(db: &Database, key: &CacheKey, bytes: &[u8]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(TABLE)?
        .insert(key.as_bytes().as_slice(), bytes)?;
    txn.commit()?;
    Ok(())
}

fn disk_clear(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.delete_table(TABLE)?;
    txn.open_table(TABLE)?;
    txn.commit()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Value format
// ---------------------------------------------------------------------------------------------

/// `"DXRC"`, version byte, payload length (u64 LE), first 8 bytes of the payload's SHA-256, then
/// the payload: the response as JSON.
fn encode(response: &LmResponse) -> Result<Vec<u8>, serde_json::Error> {
    let payload = serde_json::to_vec(response)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The response in `bytes`, or why they are corrupt.
fn decode(bytes: &[u8]) -> Result<LmResponse, &'static str> {
    let (header, payload) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or("truncated header")?;
    let (magic, rest) = header.split_at(MAGIC.len());
    let (version, rest) = rest.split_at(1);
    let (length, sum) = rest.split_at(8);
    if magic != MAGIC {
        return Err("bad magic");
    }
    if version[0] != FORMAT_VERSION {
        return Err("unknown format version");
    }
    let length: [u8; 8] = length.try_into().map_err(|_| "bad header")?;
    if u64::from_le_bytes(length) != payload.len() as u64 {
        return Err("length mismatch");
    }
    if sum != checksum(payload) {
        return Err("checksum mismatch");
    }
    serde_json::from_slice(payload).map_err(|_| "invalid JSON")
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest: [u8; 32] = Sha256::digest(payload).into();
    let mut out = [0; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::types::{Choice, FinishReason, Message};
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

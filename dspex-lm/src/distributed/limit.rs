//! Rate limits shared by every process calling one endpoint with one API key, kept in Redis.
//!
//! Each limit is a GCRA (generic cell rate algorithm) state: one Redis string holding the
//! "theoretical arrival time" in microseconds of Redis's own clock (`TIME`), so the processes'
//! clocks do not matter. A Lua script, run atomically with `EVALSHA` (loaded on first use),
//! *reserves* the next slot and returns how long to wait for it; the caller sleeps that long and
//! goes. One round trip per call, no retry storms, first come first served across processes.
//! A reservation that would wait past the call's deadline is not made, and the call fails
//! with [`LmError::LocalRateLimit`](crate::LmError::LocalRateLimit) as with the local limits.
//! A call dropped while it sleeps keeps its reserved slot (it is not given back).
//!
//! Keys are `<prefix><hash of the endpoint>:<hash of the API key>:req` (and `:tok`), default
//! prefix `dspex:limit:`: every LM with the same endpoint(s) and key shares the limits, and
//! neither the URL nor the key is stored in Redis (16 hex digits of a SHA-256 of each).
//!
//! Tokens are reserved as the estimate made before the call (prompt estimate + `max_tokens`) and
//! corrected once the call's real usage is known, as the local limit is: a second script moves
//! the cell's arrival time back by what was reserved and not used (never before now: a slot that
//! has passed is not given back) or forward by what was used beyond the estimate. The correction
//! runs in a task of its own, off the call's path; when Redis fails it is skipped (counted).

use super::{Conn, DEFAULT_OP_TIMEOUT, RedisConfigError, RedisUrl, short_hash};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const DEFAULT_PREFIX: &str = "dspex:limit:";

/// Reserves `ARGV[3]` units: `ARGV[1]` µs per unit, a burst of `ARGV[2]` µs, at most `ARGV[4]` µs
/// of wait (negative: any). Returns `{1, wait µs}` when reserved, `{0, wait µs}` when the wait
/// would be too long. A cost above the burst is let through once nothing is owed (it goes into
/// debt), as the local token bucket does.
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * cost
local at = math.min(new_tat - tolerance, tat)
local wait = 0
if at > now then wait = math.ceil(at - now) end
if max_wait >= 0 and wait > max_wait then return {0, wait} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, wait}
",
    )
});

/// Moves a cell's arrival time by `ARGV[1]` µs (the tokens used beyond the reservation, times
/// the cell's interval; negative: given back), never before now. Nothing is given back to a
/// cell that owes nothing.
static ADJUST: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local delta = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  if delta <= 0 then return 0 end
  tat = now
end
local new_tat = tat + delta
if new_tat < now then new_tat = now end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 1
",
    )
});

/// Request and token rates shared through Redis by every process calling the same endpoint with
/// the same API key (feature `redis`); set with
/// [`LmBuilder::shared_rate_limit`](crate::LmBuilder::shared_rate_limit), next to (not instead
/// of) the per-process [`RateLimit`](crate::RateLimit).
///
/// ```
/// use dspex_lm::{LM, SharedRateLimit};
///
/// let limit = SharedRateLimit::new("redis://127.0.0.1:6379")?
///     .requests_per_second(200.0)
///     .tokens_per_minute(2_000_000);
/// let lm = LM::builder("openai/gpt-4o-mini")
///     .api_key("sk-test")
///     .shared_rate_limit(limit)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// When Redis cannot be reached, calls go on under the local limits alone (counted in
/// [`LimitStats::shared_errors`](crate::LimitStats::shared_errors), with a rate-limited
/// warning).
#[derive(Clone, PartialEq, Debug)]
pub struct SharedRateLimit {
    pub(crate) url: RedisUrl,
    pub(crate) requests_per_second: Option<f64>,
    pub(crate) tokens_per_minute: Option<u64>,
    pub(crate) burst: u32,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
}

impl SharedRateLimit {
    /// Limits kept in the Redis at `address` (a `redis://` URL, or a comma-separated list of a
    /// cluster's node URLs), none set yet. Defaults: a burst of 1 request, prefix
    /// `dspex:limit:`, 250 ms per Redis command.
    pub fn new(address: &str) -> Result<SharedRateLimit, RedisConfigError> {
        Ok(SharedRateLimit {
            url: RedisUrl::parse(address)?,
            requests_per_second: None,
            tokens_per_minute: None,
            burst: 1,
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: DEFAULT_OP_TIMEOUT,
        })
    }

    /// Requests per second across all processes (must be positive and finite, checked by
    /// [`LmBuilder::build`](crate::LmBuilder::build)).
    pub fn requests_per_second(mut self, rate: f64) -> Self {
        self.requests_per_second = Some(rate);
        self
    }

    /// Tokens per minute across all processes (prompt estimate + `max_tokens` of each call;
    /// up to a minute's worth may go at once). 0 is refused by `build`.
    pub fn tokens_per_minute(mut self, tokens: u64) -> Self {
        self.tokens_per_minute = Some(tokens);
        self
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

    /// How many requests may go at once after a quiet spell (default 1: evenly spaced).
    pub fn burst(mut self, requests: u32) -> Self {
        self.burst = requests.max(1);
        self
    }

    /// The prefix of the limits' keys (default `dspex:limit:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one Redis command may take before the call goes on without the shared limit
    /// (default 250 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }
}

/// One GCRA limit: its key, µs per unit and burst in µs.
#[derive(Debug)]
struct Cell {
    key: String,
    interval_us: f64,
    tolerance_us: f64,
}

/// The shared limits of one LM.
#[derive(Debug)]
pub(crate) struct SharedLimiter {
    conn: std::sync::Arc<Conn>,
    requests: Option<Cell>,
    tokens: Option<Cell>,
    /// Calls that had to wait for a shared slot.
    pub(crate) waits: AtomicU64,
}

impl SharedLimiter {
    /// The limiter of `limit` for calls to `endpoint` with `api_key`; an error names the bad
    /// setting.
    pub(crate) fn new(
        limit: &SharedRateLimit,
        endpoint: &str,
        api_key: Option<&str>,
    ) -> Result<SharedLimiter, String> {
        let scope = format!(
            "{}{}:{}:",
            limit.prefix,
            short_hash(endpoint.as_bytes()),
            api_key.map_or_else(|| "nokey".to_string(), |k| short_hash(k.as_bytes()))
        );
        let requests = match limit.requests_per_second {
            None => None,
            Some(rate) if rate.is_finite() && rate > 0.0 => {
                let interval_us = 1e6 / rate;
                Some(Cell {
                    key: format!("{scope}req"),
                    interval_us,
                    tolerance_us: interval_us * f64::from(limit.burst),
                })
            }
            Some(rate) => {
                return Err(format!(
                    "shared requests_per_second must be positive and finite, got {rate}"
                ));
            }
        };
        let tokens = match limit.tokens_per_minute {
            None => None,
            Some(0) => return Err("shared tokens_per_minute must be at least 1".into()),
            Some(per_minute) => Some(Cell {
                key: format!("{scope}tok"),
                interval_us: 60e6 / per_minute as f64,
                tolerance_us: 60e6,
            }),
        };
        Ok(SharedLimiter {
            conn: std::sync::Arc::new(Conn::new(limit.url.clone(), limit.timeout, "rate limit")),
            requests,
            tokens,
            waits: AtomicU64::new(0),
        })
    }

    /// Failed Redis commands so far.
    pub(crate) fn errors(&self) -> u64 {
        self.conn.errors.load(Ordering::Relaxed)
    }

    /// Corrects the shared token cell once a call's real usage is known: `reserved` tokens were
    /// taken, `actual` were used. Runs in a task of its own (nothing when there is no token
    /// limit, no difference, or no runtime).
    pub(crate) fn settle(&self, reserved: f64, actual: u64) {
        let Some(cell) = &self.tokens else { return };
        let delta_us = (actual as f64 - reserved) * cell.interval_us;
        if delta_us.abs() < 1.0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let conn = std::sync::Arc::clone(&self.conn);
        let key = cell.key.clone();
        runtime.spawn(async move {
            // A failure is counted and logged by the connection; the reservation then stands.
            let _: Result<i64, _> = conn.script(ADJUST.key(&key).arg(delta_us)).await;
        });
    }

    /// Reserves a request and `tokens` tokens and waits for their slot. Fails with the wait that
    /// would be needed when it would pass `deadline`. Goes on at once when Redis fails.
    pub(crate) async fn acquire(
        &self,
        tokens: u64,
        deadline: Option<Instant>,
    ) -> Result<(), Duration> {
        let mut waited = false;
        for (cell, cost) in [(&self.requests, 1.0), (&self.tokens, tokens as f64)] {
            let Some(cell) = cell else { continue };
            let max_wait = deadline.map_or(-1, |d| {
                i64::try_from(d.saturating_duration_since(Instant::now()).as_micros())
                    .unwrap_or(i64::MAX)
            });
            let reserved: Result<(i64, i64), _> = self
                .conn
                .script(
                    GCRA.key(&cell.key)
                        .arg(cell.interval_us)
                        .arg(cell.tolerance_us)
                        .arg(cost)
                        .arg(max_wait),
                )
                .await;
            let (granted, wait_us) = match reserved {
                Ok(r) => r,
                // Redis is down: the local limits alone apply.
                Err(_) => continue,
            };
            let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
            if granted == 0 {
                return Err(wait);
            }
            if !wait.is_zero() {
                if !waited {
                    waited = true;
                    self.waits.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(wait).await;
            }
        }
        Ok(())
    }
}

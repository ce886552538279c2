//! Limits shared by every clone of an LM: a concurrency cap and optional request and token
//! rates per minute (token buckets); with feature `redis`, rates shared by every process through
//! Redis as well ([`SharedRateLimit`](crate::SharedRateLimit)).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Rates an LM may not exceed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateLimit {
    /// Requests per minute (`None`: unlimited).
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute, counted as prompt estimate + `max_tokens` up front and corrected with
    /// the reported usage afterwards (`None`: unlimited).
    pub tokens_per_minute: Option<u32>,
}

/// How often calls of an LM waited for its limits (shared by its clones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitStats {
    /// Calls that waited for the local request or token bucket.
    pub local_waits: u64,
    /// Calls that waited for a slot of the limits shared through Redis.
    pub shared_waits: u64,
    /// Redis commands of the shared limits that failed (the call then went on under the local
    /// limits alone).
    pub shared_errors: u64,
}

/// A token bucket refilled continuously at `per_minute / 60` per second, holding at most
/// `per_minute`.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_sec: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Bucket {
            capacity,
            per_sec: capacity / 60.0,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Takes `amount` now, or returns how long to wait before trying again. An amount larger
    /// than the capacity is taken once the bucket is full (it goes into debt).
    fn try_take(&self, amount: f64) -> Result<(), Duration> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let level = self.refill(&mut guard);
        let needed = amount.min(self.capacity);
        if *level >= needed {
            *level -= amount;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((needed - *level) / self.per_sec))
        }
    }

    /// What the bucket holds now.
    #[cfg(test)]
    fn level(&self) -> f64 {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *self.refill(&mut guard)
    }

    /// Adds what has dripped in since the last look (up to the capacity) and returns the level.
    fn refill<'a>(&self, state: &'a mut (f64, Instant)) -> &'a mut f64 {
        let (level, at) = state;
        let now = Instant::now();
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.capacity);
        *at = now;
        level
    }

    /// Gives back (or, negative, takes more of) `amount` after the real usage is known.
    fn adjust(&self, amount: f64) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 = (guard.0 + amount).min(self.capacity);
    }
}

/// The limits of one LM (shared by its clones).
#[derive(Debug)]
pub(crate) struct Limiter {
    concurrency: Option<Arc<Semaphore>>,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    local_waits: AtomicU64,
    #[cfg(feature = "redis")]
    shared: Option<crate::distributed::SharedLimiter>,
}

/// What a call holds while it runs.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    reserved_tokens: f64,
}

impl Limiter {
    pub(crate) fn new(max_concurrency: Option<usize>, rate: RateLimit) -> Self {
        Limiter {
            concurrency: max_concurrency.map(|n| Arc::new(Semaphore::new(n.max(1)))),
            requests: rate.requests_per_minute.map(Bucket::new),
            tokens: rate.tokens_per_minute.map(Bucket::new),
            local_waits: AtomicU64::new(0),
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// Adds the limits shared through Redis.
    #[cfg(feature = "redis")]
    pub(crate) fn with_shared(mut self, shared: crate::distributed::SharedLimiter) -> Self {
        self.shared = Some(shared);
        self
    }

    /// How often calls waited so far.
    pub(crate) fn stats(&self) -> LimitStats {
        #[cfg(feature = "redis")]
        let (shared_waits, shared_errors) = self
            .shared
            .as_ref()
            .map_or((0, 0), |s| (s.waits.load(Ordering::Relaxed), s.errors()));
        #[cfg(not(feature = "redis"))]
        let (shared_waits, shared_errors) = (0, 0);
        LimitStats {
            local_waits: self.local_waits.load(Ordering::Relaxed),
            shared_waits,
            shared_errors,
        }
    }

    /// Waits for a slot for a call expected to use `estimated_tokens`. Fails with the wait that
    /// would be needed when it would pass `deadline`.
    pub(crate) async fn acquire(
        &self,
        estimated_tokens: u64,
        deadline: Option<Instant>,
    ) -> Result<Slot, Duration> {
        let permit = match &self.concurrency {
            Some(sem) => {
                let acquire = Arc::clone(sem).acquire_owned();
                let permit = match deadline {
                    Some(d) => tokio::time::timeout_at(d, acquire)
                        .await
                        .map_err(|_| Duration::ZERO)?,
                    None => acquire.await,
                };
                // The semaphore is never closed.
                permit.ok()
            }
            None => None,
        };
        let tokens = estimated_tokens as f64;
        // What was taken so far goes back if a later bucket fails or this future is dropped
        // while it waits: a call that never ran costs nothing.
        let mut taken = Taken {
            limiter: self,
            request: false,
        };
        let mut waited = false;
        if let Some(bucket) = &self.requests {
            waited |= take(bucket, 1.0, deadline).await?;
            taken.request = true;
        }
        if let Some(bucket) = &self.tokens {
            waited |= take(bucket, tokens, deadline).await?;
        }
        if waited {
            self.local_waits.fetch_add(1, Ordering::Relaxed);
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            shared.acquire(estimated_tokens, deadline).await?;
        }
        taken.request = false;
        Ok(Slot {
            _permit: permit,
            reserved_tokens: tokens,
        })
    }

    /// Corrects the token bucket (and the shared token limit) once the real usage is known.
    pub(crate) fn settle(&self, slot: &Slot, actual_tokens: u64) {
        if let Some(bucket) = &self.tokens {
            bucket.adjust(slot.reserved_tokens - actual_tokens as f64);
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            shared.settle(slot.reserved_tokens, actual_tokens);
        }
    }
}

/// Takes `amount` from `bucket`, waiting for it unless the wait would pass `deadline`; true
/// when it waited.
async fn take(bucket: &Bucket, amount: f64, deadline: Option<Instant>) -> Result<bool, Duration> {
    let mut waited = false;
    loop {
        match bucket.try_take(amount) {
            Ok(()) => return Ok(waited),
            Err(wait) => {
                if deadline.is_some_and(|d| Instant::now() + wait > d) {
                    return Err(wait);
                }
                waited = true;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The request taken from the request bucket by an acquire still under way.
struct Taken<'a> {
    limiter: &'a Limiter,
    request: bool,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.request
            && let Some(bucket) = &self.limiter.requests
        {
            bucket.adjust(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_are_spread_out() {
        let limiter = Limiter::new(
            None,
            RateLimit {
                requests_per_minute: Some(120),
                tokens_per_minute: None,
            },
        );
        let start = tokio::time::Instant::now();
        // The bucket starts full (120), so the first 120 pass at once and the next 60 need 30 s.
        for _ in 0..180 {
            limiter.acquire(0, None).await.unwrap();
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(29) && elapsed <= Duration::from_secs(31),
            "{elapsed:?}"
        );
        // The last 60 each waited for the bucket.
        assert_eq!(
            limiter.stats(),
            LimitStats {
                local_waits: 60,
                ..LimitStats::default()
            }
        );
    }

    #[tokio::test]
    async fn a_deadline_turns_a_long_wait_into_an_error() {
        let limiter = Limiter::new(
            None,
            RateLimit {
                requests_per_minute: None,
                tokens_per_minute: Some(1000),
            },
        );
        limiter.acquire(1000, None).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        let wait = limiter.acquire(500, Some(deadline)).await.unwrap_err();
        assert!(wait > Duration::from_secs(20), "{wait:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_ran_costs_no_request() {
        let limiter = Limiter::new(
            None,
            RateLimit {
                requests_per_minute: Some(10),
                tokens_per_minute: Some(1000),
            },
        );
        let requests = |l: &Limiter| l.requests.as_ref().map(Bucket::level).unwrap();
        limiter.acquire(1000, None).await.unwrap();
        assert_eq!(requests(&limiter), 9.0);
        // The token bucket is empty: past the deadline, the request goes back.
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(limiter.acquire(500, Some(deadline)).await.is_err());
        assert_eq!(requests(&limiter), 9.0);
        // Dropped while it waits for tokens: the request goes back too.
        let waiting = tokio::time::timeout(Duration::from_secs(1), limiter.acquire(500, None));
        assert!(waiting.await.is_err());
        let level = requests(&limiter);
        assert!((9.0..9.5).contains(&level), "{level}");
    }

    #[tokio::test]
    async fn concurrency_is_capped() {
        let limiter = Arc::new(Limiter::new(Some(2), RateLimit::default()));
        let a = limiter.acquire(0, None).await.unwrap();
        let _b = limiter.acquire(0, None).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(limiter.acquire(0, Some(deadline)).await.is_err());
        drop(a);
        assert!(
            limiter
                .acquire(0, Some(deadline + Duration::from_secs(1)))
                .await
                .is_ok()
        );
    }
}

//! The LM layer's state shared through Redis (feature `redis`): the Redis cache tier on a
//! standalone server and on a 3-node cluster, single flight across real processes (including a
//! leader killed mid-call), rate limits shared by processes, Redis outages, and secrets. Each
//! test starts its own `redis-server` on a free loopback port (`dspex::testing::RedisServer`),
//! killed when the test ends.
//!
//! Cross-process tests run this very test binary again as child processes, through the ignored
//! test `child` (`--exact child --ignored`), told what to do by environment variables; each
//! child prints one `RESULT …` line.

mod common;

use common::Capture;
use dspex::lm::{
    CacheConfig, CacheKey, CallOptions, Choice, FinishReason, LM, LmError, LmRequest, LmResponse,
    RedisConfig, ResponseCache, SharedRateLimit, Usage,
};
use dspex::testing::{Latency, MockLm, MockLmServer, RedisCluster, RedisServer};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CHILD_ENV: &str = "DSPEX_REDIS_TEST_CHILD";
const KEY: &str = "sk-test-DO-NOT-LEAK-redis";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn response(text: &str) -> LmResponse {
    LmResponse {
        choices: vec![Choice {
            text: text.into(),
            finish_reason: Some(FinishReason::Stop),
            tool_calls: Vec::new(),
            reasoning_content: None,
        }],
        usage: Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            total_tokens: 5,
        },
        model: "mock".into(),
        latency: Duration::from_millis(5),
        cache_hit: false,
    }
}

fn key(text: &str) -> CacheKey {
    CacheKey::for_request("openai/mock", "dspex.chat", &LmRequest::prompt(text))
}

/// A cache with a fresh memory tier and the Redis tier at `url` (no disk).
fn redis_cache(redis: RedisConfig) -> ResponseCache {
    ResponseCache::new(CacheConfig::memory_only().redis(redis))
}

fn lm(server: &MockLmServer, cache: CacheConfig) -> LM {
    LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key(KEY)
        .cache_config(cache)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("the LM builds")
}

/// An uncached client of the mock server held to the shared `limit`.
fn limited_lm(server: &MockLmServer, limit: SharedRateLimit) -> LM {
    LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key(KEY)
        .cache(false)
        .shared_rate_limit(limit)
        .build()
        .expect("the LM builds")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A synchronous Redis client for looking at raw values.
fn raw_client(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("a raw Redis connection")
}

fn entry_name(key: &CacheKey) -> String {
    format!("dspex:cache:{{{}}}", key.to_hex())
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// The body of a child process (does nothing unless started by a test below).
#[test]
#[ignore = "a child process of the cross-process tests, started by them"]
fn child() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let result = runtime.block_on(async {
        match role.as_str() {
            "flight" => child_flight().await,
            "limit" => child_limit().await,
            "env" => child_env().await,
            other => format!("unknown role {other}"),
        }
    });
    println!("RESULT {result}");
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent"))
}

fn env_u64(name: &str) -> u64 {
    env(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is a number"))
}

async fn sleep_until_unix_ms(at: u64) {
    let now = unix_ms();
    if at > now {
        tokio::time::sleep(Duration::from_millis(at - now)).await;
    }
}

/// `CALLS` identical concurrent calls through a cache on Redis.
async fn child_flight() -> String {
    let redis = RedisConfig::new(&env("REDIS_URL"))
        .expect("a Redis address")
        .lease(Duration::from_millis(env_u64("LEASE_MS")))
        .poll_interval(Duration::from_millis(10));
    let lm = LM::builder("openai/mock")
        .api_base(env("API_BASE"))
        .api_key(KEY)
        .cache_config(CacheConfig::memory_only().redis(redis))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("the LM builds");
    sleep_until_unix_ms(env_u64("START_AT")).await;
    let calls = env_u64("CALLS");
    let results = futures_util::future::join_all(
        (0..calls).map(|_| lm.call(LmRequest::prompt("the same question for everyone"))),
    )
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let texts: std::collections::BTreeSet<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|r| r.text().to_string()))
        .collect();
    format!("ok={ok} distinct_texts={}", texts.len())
}

/// One call through an LM whose cache config leaves Redis to `$DSPEX_CACHE_REDIS_URL`.
async fn child_env() -> String {
    let lm = LM::builder("openai/mock")
        .api_base(env("API_BASE"))
        .api_key(KEY)
        .cache_config(CacheConfig::default().no_disk())
        .build()
        .expect("the LM builds");
    lm.call(LmRequest::prompt("from the environment"))
        .await
        .expect("the call");
    let cache = lm.cache().expect("a cache");
    format!(
        "redis={} redis_errors={}",
        cache.redis_address().unwrap_or_else(|| "none".into()),
        cache.stats().redis_errors
    )
}

/// Distinct calls as fast as the shared limit allows, from `START_AT` to `END_AT`.
async fn child_limit() -> String {
    let limit = SharedRateLimit::new(&env("REDIS_URL"))
        .expect("a Redis address")
        .requests_per_second(env_u64("RPS") as f64);
    let lm = LM::builder("openai/mock")
        .api_base(env("API_BASE"))
        .api_key(KEY)
        .cache(false)
        .shared_rate_limit(limit)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("the LM builds");
    let end = env_u64("END_AT");
    sleep_until_unix_ms(env_u64("START_AT")).await;
    let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let (lm, ok, errors) = (lm.clone(), Arc::clone(&ok), Arc::clone(&errors));
            tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    let left = end.saturating_sub(unix_ms());
                    if left == 0 {
                        return;
                    }
                    n += 1;
                    let options = CallOptions {
                        deadline: Some(Duration::from_millis(left)),
                        ..CallOptions::default()
                    };
                    let prompt = format!("{} {task} {n}", std::process::id());
                    match lm.call_with(LmRequest::prompt(prompt), &options).await {
                        Ok(_) => {
                            ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        // The next shared slot is past the end, or the slot was right at the
                        // end and the answer came after it: this task is done.
                        Err(LmError::LocalRateLimit { .. } | LmError::DeadlineExceeded { .. }) => {
                            return;
                        }
                        Err(e) => {
                            errors.lock().unwrap().push(e.to_string());
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let errors = errors.lock().unwrap().clone();
    format!(
        "ok={} errors={} shared_waits={} shared_errors={}",
        ok.load(std::sync::atomic::Ordering::Relaxed),
        errors.len(),
        lm.limit_stats().shared_waits,
        lm.limit_stats().shared_errors,
    )
}

/// Starts this test binary as a child with `role` and `vars`.
fn spawn_child(role: &str, vars: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, role)
    .env_remove("DSPEX_CACHE_REDIS_URL")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd.spawn().expect("a child process")
}

/// Waits for `child` at most `within`, killing it on overrun; its `RESULT` fields.
fn child_result(child: Child, within: Duration) -> HashMap<String, String> {
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(within) {
        Ok(output) => output.expect("the child's output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            panic!("child {id} still running after {within:?}: a hang");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("child {id} printed no result: {stdout}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The results of `children`, each within `within`, read off a blocking thread.
async fn children_results(children: Vec<Child>, within: Duration) -> Vec<HashMap<String, String>> {
    tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| child_result(c, within))
            .collect()
    })
    .await
    .unwrap()
}

fn field(result: &HashMap<String, String>, name: &str) -> u64 {
    result
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {result:?}"))
}

// ---------------------------------------------------------------------------------------------
// Single flight across processes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_of_500_identical_calls_make_one_lm_request() {
    let redis = RedisServer::start().expect("redis-server");
    let server = MockLm::builder()
        .latency(Latency::Fixed(Duration::from_millis(1500)))
        .start()
        .await
        .expect("mock LM");
    let start_at = unix_ms() + 1500;
    let children: Vec<Child> = (0..4)
        .map(|_| {
            spawn_child(
                "flight",
                &[
                    ("REDIS_URL", redis.url()),
                    ("API_BASE", server.api_base()),
                    ("CALLS", "500".into()),
                    ("LEASE_MS", "3000".into()),
                    ("START_AT", start_at.to_string()),
                ],
            )
        })
        .collect();
    let results = children_results(children, Duration::from_secs(60)).await;
    for result in &results {
        assert_eq!(field(result, "ok"), 500, "{result:?}");
        assert_eq!(field(result, "distinct_texts"), 1, "{result:?}");
    }
    assert_eq!(server.stats().total, 1, "{:?}", server.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_call_costs_at_most_one_more_request_and_nobody_hangs() {
    let redis = RedisServer::start().expect("redis-server");
    let server = MockLm::builder()
        .latency(Latency::Fixed(Duration::from_secs(3)))
        .start()
        .await
        .expect("mock LM");
    let vars = |start_at: u64| {
        vec![
            ("REDIS_URL", redis.url()),
            ("API_BASE", server.api_base()),
            ("CALLS", "500".into()),
            ("LEASE_MS", "1000".into()),
            ("START_AT", start_at.to_string()),
        ]
    };
    // The leader: the first process, alone until its request reached the LM.
    let mut leader = spawn_child("flight", &vars(0));
    let waited = Instant::now();
    while server.stats().total == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the leader never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let followers: Vec<Child> = (0..3).map(|_| spawn_child("flight", &vars(0))).collect();
    // Let the followers find the lease, then kill the leader mid-call.
    tokio::time::sleep(Duration::from_millis(700)).await;
    leader.kill().expect("SIGKILL the leader");
    let _ = leader.wait();
    let killed_at = Instant::now();
    let results = children_results(followers, Duration::from_secs(60)).await;
    for result in &results {
        assert_eq!(field(result, "ok"), 500, "{result:?}");
    }
    // Lease expiry (1 s) + the new leader's call (3 s) + process overheads: bounded, with room.
    assert!(killed_at.elapsed() < Duration::from_secs(30));
    let total = server.stats().total;
    assert!((1..=2).contains(&total), "{total} LM requests");
}

// ---------------------------------------------------------------------------------------------
// Shared limits
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_share_a_200_per_second_limit() {
    let redis = RedisServer::start().expect("redis-server");
    let server = MockLm::builder().start().await.expect("mock LM");
    let start_at = unix_ms() + 2000;
    let end_at = start_at + 10_000;
    let children: Vec<Child> = (0..4)
        .map(|_| {
            spawn_child(
                "limit",
                &[
                    ("REDIS_URL", redis.url()),
                    ("API_BASE", server.api_base()),
                    ("RPS", "200".into()),
                    ("START_AT", start_at.to_string()),
                    ("END_AT", end_at.to_string()),
                ],
            )
        })
        .collect();
    let results = children_results(children, Duration::from_secs(60)).await;
    let counts: Vec<u64> = results.iter().map(|r| field(r, "ok")).collect();
    let total: u64 = counts.iter().sum();
    for result in &results {
        assert_eq!(field(result, "errors"), 0, "{result:?}");
        assert_eq!(field(result, "shared_errors"), 0, "{result:?}");
        assert!(field(result, "shared_waits") > 0, "{result:?}");
    }
    // 200/s for 10 s: 2,000 (±5 %), each process at least 15 % of the total.
    eprintln!("shared limit: {total} calls in 10 s, per process {counts:?}");
    assert!((1900..=2100).contains(&total), "total {total}: {counts:?}");
    for count in &counts {
        assert!(*count * 100 >= total * 15, "unfair share: {counts:?}");
    }
    // Requests sent in the last instant, answered after the end, are not counted as calls.
    let sent = server.stats().total;
    assert!(
        (total..=total + 64).contains(&sent),
        "{sent} sent, {total} counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dspex_cache_redis_url_turns_the_tier_on() {
    let redis = RedisServer::start().expect("redis-server");
    let server = MockLm::builder().start().await.expect("mock LM");
    let url = format!("redis://:pw-DO-NOT-LEAK@127.0.0.1:{}", redis.port());
    let child = spawn_child(
        "env",
        &[
            ("DSPEX_CACHE_REDIS_URL", url),
            ("API_BASE", server.api_base()),
        ],
    );
    let result = tokio::task::spawn_blocking(move || child_result(child, Duration::from_secs(60)))
        .await
        .unwrap();
    // No password in the address the cache reports.
    assert_eq!(
        result.get("redis").map(String::as_str),
        Some(format!("redis://127.0.0.1:{}", redis.port()).as_str()),
        "{result:?}"
    );
    // The server has no password set, so AUTH with one fails: counted, and the call succeeded.
    assert!(field(&result, "redis_errors") > 0, "{result:?}");

    // With the right (no) password, the answer lands in Redis.
    let child = spawn_child(
        "env",
        &[
            ("DSPEX_CACHE_REDIS_URL", redis.url()),
            ("API_BASE", server.api_base()),
        ],
    );
    let result = tokio::task::spawn_blocking(move || child_result(child, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(field(&result, "redis_errors"), 0, "{result:?}");
    let stored = redis_cache(RedisConfig::new(&redis.url()).unwrap())
        .get(&key("from the environment"))
        .await;
    assert!(stored.is_some());
}

// ---------------------------------------------------------------------------------------------
// Outages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn redis_killed_mid_run_degrades_to_the_lm_and_reconnects() {
    let log = Arc::new(Mutex::new(String::new()));
    let _capture = tracing::subscriber::set_default(Capture(Arc::clone(&log)));
    let mut redis = RedisServer::start().expect("redis-server");
    let server = MockLm::builder().start().await.expect("mock LM");
    let config = RedisConfig::new(&redis.url()).unwrap();
    let lm = lm(&server, CacheConfig::memory_only().redis(config.clone()));
    lm.call(LmRequest::prompt("before")).await.unwrap();
    assert_eq!(server.stats().total, 1);
    let cache = lm.cache().unwrap().clone();
    assert_eq!(cache.stats().redis_errors, 0);

    redis.kill();
    for i in 0..20 {
        let answer = lm.call(LmRequest::prompt(format!("during {i}"))).await;
        assert!(answer.is_ok(), "{answer:?}");
    }
    assert_eq!(server.stats().total, 21);
    let errors = cache.stats().redis_errors;
    assert!(errors > 0, "{:?}", cache.stats());
    let warnings = log
        .lock()
        .unwrap()
        .matches("Redis cache unavailable")
        .count();
    // One warning for the outage, not one per call.
    assert_eq!(warnings, 1, "{}", log.lock().unwrap());

    // The server comes back (empty): the tier is used again without anything done.
    redis.restart().expect("redis-server again");
    let mut stored = false;
    for _ in 0..50 {
        lm.call(LmRequest::prompt("after")).await.unwrap();
        let other = redis_cache(config.clone());
        if other.get(&lm_key("after")).await.is_some() {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored, "nothing reached Redis after it came back");
}

fn lm_key(prompt: &str) -> CacheKey {
    key(prompt)
}

#[tokio::test]
async fn a_closed_port_never_fails_a_call() {
    let log = Arc::new(Mutex::new(String::new()));
    let _capture = tracing::subscriber::set_default(Capture(Arc::clone(&log)));
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("redis://:pw-DO-NOT-LEAK@127.0.0.1:{closed}");
    let server = MockLm::builder().start().await.expect("mock LM");
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key(KEY)
        .cache_config(CacheConfig::memory_only().redis(RedisConfig::new(&url).unwrap()))
        .shared_rate_limit(
            SharedRateLimit::new(&url)
                .unwrap()
                .requests_per_second(1000.0),
        )
        .build()
        .unwrap();
    for i in 0..5 {
        lm.call(LmRequest::prompt(format!("q{i}"))).await.unwrap();
    }
    assert_eq!(server.stats().total, 5);
    assert!(lm.cache().unwrap().stats().redis_errors > 0);
    assert!(lm.limit_stats().shared_errors > 0);
    let log = log.lock().unwrap();
    assert!(log.contains("Redis cache unavailable"), "{log}");
    assert!(log.contains("Redis rate limit unavailable"), "{log}");
    assert!(!log.contains("DO-NOT-LEAK"), "{log}");
    assert!(!format!("{lm:?}").contains("DO-NOT-LEAK"));
}

// ---------------------------------------------------------------------------------------------
// The cache tier
// ---------------------------------------------------------------------------------------------

async fn round_trip(url: &str, raw: &mut dyn redis::ConnectionLike) {
    // Plain and compressed values, each read back by another cache (fresh memory).
    let plain = RedisConfig::new(url).unwrap().compress_above(usize::MAX);
    let packed = RedisConfig::new(url).unwrap().compress_above(0);
    for (config, text, flag) in [
        (plain, "plain answer", 0u8),
        (packed, "packed answer packed answer packed answer", 1u8),
    ] {
        let writer = redis_cache(config.clone());
        writer.put(key(text), &response(text)).await;
        let stored: Vec<u8> = redis::cmd("GET")
            .arg(entry_name(&key(text)))
            .query(raw)
            .unwrap();
        assert_eq!(&stored[..4], b"DXRR");
        assert_eq!(stored[5], flag, "{text}");
        let reader = redis_cache(config);
        let hit = reader.get(&key(text)).await.expect("a Redis hit");
        assert_eq!(hit.text(), text);
        assert!(hit.cache_hit);
        assert_eq!(reader.stats().redis_hits, 1);
        // Promoted into memory: the second read does not go to Redis.
        reader.get(&key(text)).await.unwrap();
        assert_eq!(reader.stats().memory_hits, 1);
        assert_eq!(reader.stats().redis_errors, 0);
    }

    // A corrupt value is dropped (and deleted), never returned; the LM's answer replaces it.
    let config = RedisConfig::new(url).unwrap();
    let cache = redis_cache(config.clone());
    cache.put(key("c"), &response("good")).await;
    let mut stored: Vec<u8> = redis::cmd("GET")
        .arg(entry_name(&key("c")))
        .query(raw)
        .unwrap();
    let last = stored.len() - 3;
    stored[last] ^= 0x01;
    let _: () = redis::cmd("SET")
        .arg(entry_name(&key("c")))
        .arg(stored)
        .query(raw)
        .unwrap();
    let reader = redis_cache(config.clone());
    assert!(reader.get(&key("c")).await.is_none());
    assert_eq!(reader.stats().redis_corrupt_dropped, 1);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(entry_name(&key("c")))
        .query(raw)
        .unwrap();
    assert_eq!(exists, 0);
    // A value stored under another key (foreign) is dropped too.
    let other: Vec<u8> = redis::cmd("GET")
        .arg(entry_name(&key("plain answer")))
        .query(raw)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(entry_name(&key("c")))
        .arg(other)
        .query(raw)
        .unwrap();
    assert!(redis_cache(config.clone()).get(&key("c")).await.is_none());

    // Refetched through an LM: one request, then a valid value again.
    let server = MockLm::builder().start().await.expect("mock LM");
    let lm = lm(&server, CacheConfig::memory_only().redis(config.clone()));
    let fresh = lm.call(LmRequest::prompt("c")).await.unwrap();
    assert!(!fresh.cache_hit);
    assert_eq!(server.stats().total, 1);
    let again = redis_cache(config).get(&key("c")).await.expect("refetched");
    assert_eq!(again.text(), fresh.text());
}

#[tokio::test]
async fn standalone_round_trip_ttl_and_corruption() {
    let redis = RedisServer::start().expect("redis-server");
    let mut raw = raw_client(&redis.url());
    round_trip(&redis.url(), &mut raw).await;

    // TTL: the entry carries it and is gone after it.
    let config = RedisConfig::new(&redis.url())
        .unwrap()
        .ttl(Some(Duration::from_millis(400)));
    redis_cache(config.clone())
        .put(key("ttl"), &response("short-lived"))
        .await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(entry_name(&key("ttl")))
        .query(&mut raw)
        .unwrap();
    assert!((1..=400).contains(&pttl), "{pttl}");
    assert!(redis_cache(config.clone()).get(&key("ttl")).await.is_some());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(redis_cache(config.clone()).get(&key("ttl")).await.is_none());
    // Without a TTL, none is set.
    let pttl: i64 = redis::cmd("PTTL")
        .arg(entry_name(&key("plain answer")))
        .query(&mut raw)
        .unwrap();
    assert_eq!(pttl, -1);

    // A prefix keeps namespaces apart; clear empties only its own.
    let a = redis_cache(RedisConfig::new(&redis.url()).unwrap().prefix("team-a:"));
    let b = redis_cache(RedisConfig::new(&redis.url()).unwrap().prefix("team-b:"));
    a.put(key("ns"), &response("A")).await;
    assert!(b.get(&key("ns")).await.is_none());
    a.clear().await;
    assert!(
        redis_cache(RedisConfig::new(&redis.url()).unwrap().prefix("team-a:"))
            .get(&key("ns"))
            .await
            .is_none()
    );
    assert!(
        redis_cache(RedisConfig::new(&redis.url()).unwrap())
            .get(&key("plain answer"))
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_round_trip_and_corruption() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap()
        .expect("a 3-node cluster");
    let url = cluster.url();
    let nodes: Vec<String> = cluster.nodes().iter().map(RedisServer::url).collect();
    let client = redis::cluster::ClusterClient::new(nodes).unwrap();
    let mut raw = client.get_connection().unwrap();
    round_trip(&url, &mut raw).await;
    // Entries spread over the nodes' slots: keys of many prompts land on more than one node.
    let cache = redis_cache(RedisConfig::new(&url).unwrap());
    for i in 0..30 {
        cache.put(key(&format!("spread {i}")), &response("x")).await;
    }
    let holding = cluster
        .nodes()
        .iter()
        .filter(|n| {
            n.command(&["DBSIZE"])
                .is_ok_and(|r| r.trim_start_matches(':').trim() != "0")
        })
        .count();
    assert!(holding >= 2, "all entries on one node");
    assert_eq!(cache.stats().redis_errors, 0);

    // Leases on the cluster: two LMs (two in-process flights, as two processes would be) asking
    // at once make one LM request.
    let server = MockLm::builder()
        .latency(Latency::Fixed(Duration::from_millis(500)))
        .start()
        .await
        .expect("mock LM");
    let config = CacheConfig::memory_only().redis(RedisConfig::new(&url).unwrap());
    let (a, b) = (lm(&server, config.clone()), lm(&server, config));
    let (ra, rb) = tokio::join!(
        a.call(LmRequest::prompt("one for both")),
        b.call(LmRequest::prompt("one for both"))
    );
    assert_eq!(ra.unwrap().text(), rb.unwrap().text());
    assert_eq!(server.stats().total, 1);

    // The shared limit's script runs on the cluster too: 1/s, so the second call waits (the
    // first takes 0.5 s).
    let limited = limited_lm(
        &server,
        SharedRateLimit::new(&url).unwrap().requests_per_second(1.0),
    );
    for i in 0..2 {
        limited
            .call(LmRequest::prompt(format!("limited {i}")))
            .await
            .unwrap();
    }
    let stats = limited.limit_stats();
    assert_eq!(
        (stats.shared_waits, stats.shared_errors),
        (1, 0),
        "{stats:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_password_in_the_url_never_shows() {
    let secret = "hunter2-DO-NOT-LEAK";
    let redis = RedisServer::start_with(&["--requirepass", "right-password"]).expect("redis");
    let url = format!("redis://:{secret}@127.0.0.1:{}", redis.port());
    let config = RedisConfig::new(&url).unwrap();
    let limit = SharedRateLimit::new(&url).unwrap();
    for shown in [
        format!("{config:?}"),
        format!("{:?}", config.url()),
        config.url().to_string(),
        format!("{:?}", CacheConfig::default().redis(config.clone())),
        format!("{limit:?}"),
    ] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }
    let bad_scheme = RedisConfig::new(&format!("http://:{secret}@127.0.0.1:1")).unwrap_err();
    let bad_ca = RedisConfig::new(&format!("rediss://:{secret}@127.0.0.1:1"))
        .unwrap()
        .tls_root_certificate(b"not PEM".to_vec())
        .unwrap_err();
    for error in [bad_scheme, bad_ca] {
        assert!(!error.to_string().contains(secret), "{error}");
        assert!(!format!("{error:?}").contains(secret), "{error:?}");
    }

    // The server refuses the password: the error is logged, masked, and the call succeeds.
    let log = Arc::new(Mutex::new(String::new()));
    let _capture = tracing::subscriber::set_default(Capture(Arc::clone(&log)));
    let server = MockLm::builder().start().await.expect("mock LM");
    let lm = lm(&server, CacheConfig::memory_only().redis(config));
    lm.call(LmRequest::prompt("q")).await.unwrap();
    let cache = lm.cache().unwrap();
    assert!(cache.stats().redis_errors > 0);
    assert!(!format!("{cache:?}").contains(secret));
    assert!(!format!("{lm:?}").contains(secret));
    let log = log.lock().unwrap();
    assert!(log.contains("Redis cache unavailable"), "{log}");
    assert!(!log.contains(secret), "{log}");
}

/// A private CA and a certificate for 127.0.0.1 signed by it, made with the `openssl` command
/// in `dir`: (CA certificate, server certificate, server key).
fn tls_files(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command (Debian's openssl package) runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=dspex test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    ["ca.crt", "server.crt", "server.key"].map(|f| dir.join(f))
}

#[tokio::test]
async fn tls_with_a_private_ca_and_an_untrusted_server_is_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key_file] = tls_files(dir.path());
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let (ca_path, cert_path, key_path) = (path(&ca), path(&cert), path(&key_file));
    // The plain port stays open too: the harness checks readiness there, and the test reads
    // raw values through it.
    let redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert_path,
        "--tls-key-file",
        &key_path,
        "--tls-ca-cert-file",
        &ca_path,
        "--tls-auth-clients",
        "no",
    ])
    .expect("redis-server with TLS");
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let ca_pem = std::fs::read(&ca).unwrap();

    // The cache tier over TLS, checked against the private CA.
    let config = RedisConfig::new(&url)
        .unwrap()
        .tls_root_certificate(ca_pem.clone())
        .unwrap();
    assert!(config.url().is_tls());
    let writer = redis_cache(config.clone());
    writer.put(key("tls"), &response("over TLS")).await;
    let reader = redis_cache(config.clone());
    let hit = reader.get(&key("tls")).await.expect("a Redis hit over TLS");
    assert_eq!(hit.text(), "over TLS");
    assert_eq!(reader.stats().redis_hits, 1);
    assert_eq!(writer.stats().redis_errors + reader.stats().redis_errors, 0);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(entry_name(&key("tls")))
        .query(&mut raw_client(&redis.url()))
        .unwrap();
    assert_eq!(exists, 1);

    // The shared limit over TLS too.
    let server = MockLm::builder().start().await.expect("mock LM");
    let limit = SharedRateLimit::new(&url)
        .unwrap()
        .tls_root_certificate(ca_pem)
        .unwrap()
        .requests_per_second(1000.0);
    let limited = limited_lm(&server, limit);
    for i in 0..3 {
        limited
            .call(LmRequest::prompt(format!("q{i}")))
            .await
            .unwrap();
    }
    assert_eq!(limited.limit_stats().shared_errors, 0);
    let cells: Vec<String> = redis::cmd("KEYS")
        .arg("dspex:limit:*")
        .query(&mut raw_client(&redis.url()))
        .unwrap();
    assert!(!cells.is_empty(), "the limit's cells live in Redis");

    // Without the private CA the server's certificate is not trusted: Redis is down for this
    // process (counted), never a failed call.
    let untrusted = RedisConfig::new(&url).unwrap();
    let lm = lm(&server, CacheConfig::memory_only().redis(untrusted));
    lm.call(LmRequest::prompt("untrusted")).await.unwrap();
    assert!(lm.cache().unwrap().stats().redis_errors > 0);
}

#[tokio::test]
async fn the_shared_token_limit_is_corrected_with_the_real_usage() {
    let redis = RedisServer::start().expect("redis-server");
    let server = MockLm::builder().start().await.expect("mock LM");
    // 6,000 tokens a minute: 10 ms a token. The call reserves its estimate (the prompt's
    // characters / 4 + max_tokens 1,000: about 10 s of the cell) and uses a few dozen.
    let limit = SharedRateLimit::new(&redis.url())
        .unwrap()
        .tokens_per_minute(6_000);
    let lm = limited_lm(&server, limit);
    let mut request = LmRequest::prompt("How many tokens will this take?");
    request.max_tokens = Some(1_000);
    let response = lm.call(request).await.unwrap();
    let used = response.usage.total_tokens;
    assert!(used > 0 && used < 200, "{used}");
    let mut raw = raw_client(&redis.url());
    let cells: Vec<String> = redis::cmd("KEYS")
        .arg("dspex:limit:*:tok")
        .query(&mut raw)
        .unwrap();
    assert_eq!(cells.len(), 1, "{cells:?}");
    // The correction runs off the call's path: wait for the cell to hold the real usage
    // (about `used` × 10 ms ahead, plus the key's 1 s of slack), not the 10 s estimate.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pttl: i64 = redis::cmd("PTTL").arg(&cells[0]).query(&mut raw).unwrap();
        if pttl <= used as i64 * 10 + 1_100 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the token cell still holds the estimate: {pttl} ms left for {used} tokens used"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lm.limit_stats().shared_errors, 0);
}

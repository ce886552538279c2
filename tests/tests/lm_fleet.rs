//! One `LM` over a fleet of three mock servers (20, 50 and 100 ms) on loopback: 10,000 calls at
//! 300 in flight while the 50 ms server is killed and restarted on the same port. No call fails
//! (failover before the first byte, not the retry policy: it is off), the restarted server is
//! back in rotation within 2 s of restarting (its breaker's probe), and the median latency sits
//! near the fastest server's, not the mean of the three.

use dspex::lm::{BreakerConfig, BreakerState, LM, LmRequest, RetryPolicy};
use dspex::testing::{Latency, MockLm, MockLmServer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

const CALLS: usize = 10_000;
const IN_FLIGHT: usize = 300;
const LATENCIES_MS: [u64; 3] = [20, 50, 100];
/// Which server is killed and restarted (the 50 ms one).
const VICTIM: usize = 1;

async fn start(latency_ms: u64, port: u16) -> MockLmServer {
    MockLm::builder()
        .latency(Latency::Fixed(Duration::from_millis(latency_ms)))
        .dspy_aware(false)
        .port(port)
        .start()
        .await
        .expect("the mock server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_survives_a_killed_endpoint_and_takes_it_back() {
    let mut servers = Vec::new();
    for ms in LATENCIES_MS {
        servers.push(Some(start(ms, 0).await));
    }
    let bases: Vec<String> = servers.iter().flatten().map(|s| s.api_base()).collect();
    let victim_port = servers[VICTIM].as_ref().map(|s| s.addr().port()).unwrap();
    let lm = LM::builder("openai/mock")
        .endpoints(bases.clone())
        .cache(false)
        .history_size(0)
        // No retries: every call that survives the outage does so by failing over.
        .retry(RetryPolicy::none())
        .timeout(Duration::from_secs(10))
        .breaker(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_millis(250),
        })
        .build()
        .unwrap();
    assert_eq!(lm.endpoint(), bases.join(","));

    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut calls = tokio::task::JoinSet::new();
    // The outage: kill the victim a quarter of the way through, restart it on the same port
    // 300 ms later, then watch for the first call it serves.
    let chaos = {
        let lm = lm.clone();
        let done = Arc::clone(&done);
        let victim = servers[VICTIM].take();
        tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < CALLS / 4 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let served_before = lm.endpoints()[VICTIM].served;
            if let Some(victim) = victim {
                victim.shutdown().await;
            }
            let killed_at = started.elapsed();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let restarted = start(LATENCIES_MS[VICTIM], victim_port).await;
            let restarted_at = Instant::now();
            let served_at_restart = lm.endpoints()[VICTIM].served;
            let back_after = loop {
                if lm.endpoints()[VICTIM].served > served_at_restart {
                    break Some(restarted_at.elapsed());
                }
                if restarted_at.elapsed() > Duration::from_secs(5) {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            (
                restarted,
                killed_at,
                restarted_at,
                back_after,
                served_before,
                served_at_restart,
            )
        })
    };
    for i in 0..CALLS {
        let permit = Arc::clone(&gate).acquire_owned().await.unwrap();
        let lm = lm.clone();
        let done = Arc::clone(&done);
        calls.spawn(async move {
            let sent = Instant::now();
            let result = lm.call(LmRequest::prompt(format!("question {i}"))).await;
            let latency = sent.elapsed();
            done.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            (result.map(|_| ()), latency)
        });
    }
    let mut latencies = Vec::with_capacity(CALLS);
    let mut failures = Vec::new();
    while let Some(joined) = calls.join_next().await {
        let (result, latency) = joined.expect("a call task panicked");
        latencies.push(latency);
        if let Err(error) = result {
            failures.push(error);
        }
    }
    let wall = started.elapsed();
    let (restarted, killed_at, restarted_at, back_after, served_before, served_at_restart) =
        chaos.await.unwrap();

    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = ms(latencies[latencies.len() / 2]);
    let p99 = ms(latencies[latencies.len() * 99 / 100]);
    let mean_of_servers = LATENCIES_MS.iter().sum::<u64>() as f64 / 3.0;
    let stats = lm.endpoints();
    eprintln!(
        "{CALLS} calls at {IN_FLIGHT} in flight in {wall:?} ({:.0}/s); p50 {p50:.1} ms, p99 \
         {p99:.1} ms; victim killed at {killed_at:?}, restarted at {:?}, back after {back_after:?} \
         (served {served_before} before the kill, {served_at_restart} at the restart); {stats:#?}",
        CALLS as f64 / wall.as_secs_f64(),
        restarted_at - started,
    );

    assert!(
        failures.is_empty(),
        "{} calls failed, the first: {:?}",
        failures.len(),
        failures.first()
    );
    let back_after = back_after.expect("the restarted endpoint got traffic back");
    assert!(back_after < Duration::from_secs(2), "{back_after:?}");
    assert!(
        restarted.stats().requests_to("/v1/chat/completions") > 0,
        "the restarted server saw no request"
    );
    // Nearer the fastest endpoint's latency than the mean of the three. On a small machine the
    // client and the three servers share its cores: with an unoptimized runtime and JSON the
    // process tops out near 3,700 calls/s on 2 cores, below the fleet's capacity at 300 in flight
    // (about 8,000/s), and by Little's law every call then queues for CPU (p50 ≈ 300 / throughput
    // ≈ 80 ms whatever the balancing). The workspace's Cargo.toml therefore optimizes the hot
    // path (tokio, serde_json, the HTTP parser, the LM client and the mock server) in test
    // builds too: ~6,500-7,000 calls/s.
    let near_fastest = (p50 - LATENCIES_MS[0] as f64).abs() < (p50 - mean_of_servers).abs();
    assert!(
        near_fastest,
        "p50 {p50:.1} ms is nearer the mean of the servers ({mean_of_servers:.1} ms) than the \
         fastest ({} ms)",
        LATENCIES_MS[0]
    );
    // Every call was served once, nothing is left outstanding, the victim's breaker is closed.
    assert_eq!(stats.iter().map(|e| e.served).sum::<u64>(), CALLS as u64);
    assert!(stats.iter().all(|e| e.outstanding == 0), "{stats:?}");
    assert!(stats[VICTIM].failovers > 0, "{stats:?}");
    assert_eq!(stats[VICTIM].breaker, BreakerState::Closed { failures: 0 });
    // The fastest endpoint served the most (the victim's share depends on how long its outage
    // lasted against the whole run).
    assert!(
        stats[0].served > stats[1].served && stats[0].served > stats[2].served,
        "{stats:?}"
    );
}

//! The Python bridge: pool start (4 workers, with and without `import dspy`), no-op round trip
//! (`ping`) p50/p99, calls/s with 4 workers, and recovery from a SIGKILLed worker to a ready
//! replacement. Prints a Markdown table. Run it with `scripts/bench bridge [--quick]`.

use dspex::bridge::Pool;
use dspex_examples::venv_python;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(run(quick));
    if let Err(e) = result {
        eprintln!("bench_bridge: {e}");
        std::process::exit(1);
    }
}

fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q) as usize]
}

async fn start(python: &std::path::Path, eager: bool) -> dspex::Result<(Pool, Duration)> {
    let started = Instant::now();
    let pool = Pool::builder()
        .python(python)
        .workers(4)
        .eager_import(eager)
        .start_timeout(Duration::from_secs(120))
        .build()
        .await?;
    Ok((pool, started.elapsed()))
}

async fn run(quick: bool) -> dspex::Result<()> {
    let python = venv_python();
    let (cold, cold_start) = start(&python, false).await?;
    cold.shutdown().await;
    let (pool, warm_start) = start(&python, true).await?;

    // No-op round trips, one at a time.
    let n = if quick { 500 } else { 5_000 };
    for _ in 0..100 {
        pool.ping().await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        pool.ping().await?;
        samples.push(t.elapsed());
    }
    let p50 = quantile(&mut samples, 0.5);
    let p99 = quantile(&mut samples, 0.99);

    // Throughput: 16 callers sharing the 4 workers.
    let total = if quick { 5_000 } else { 40_000 };
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (pool, next) = (pool.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    pool.ping().await?;
                }
                Ok::<(), dspex::bridge::BridgeError>(())
            })
        })
        .collect();
    for c in callers {
        c.await
            .map_err(|e| dspex::Error::step("a caller task", e))??;
    }
    let per_s = total as f64 / t.elapsed().as_secs_f64();

    // Recovery: SIGKILL one worker, wait until four are ready again.
    let victim = pool.worker_pids()[0];
    let t = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status();
    loop {
        let stats = pool.stats();
        let pids = pool.worker_pids();
        if stats.ready == 4 && !pids.contains(&victim) {
            break;
        }
        if t.elapsed() > Duration::from_secs(60) {
            return Err(dspex::Error::step("recovery", "no replacement within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let recovery = t.elapsed();
    pool.shutdown().await;

    println!("### Python bridge: a pool of 4 `python -m dspex_worker` processes\n");
    println!("| measure | value | goal |");
    println!("|---|---:|---:|");
    println!("| pool start, 4 workers, lazy `import dspy` | {cold_start:.2?} | — |");
    println!("| pool start, 4 workers, eager `import dspy` | {warm_start:.2?} | — |");
    println!("| no-op round trip p50 ({n} pings) | {p50:.2?} | ≤ 100 µs |");
    println!("| no-op round trip p99 | {p99:.2?} | ≤ 1 ms |");
    println!("| calls/s, 4 workers, 16 callers ({total} pings) | {per_s:.0} | ≥ 10,000 |");
    println!(
        "| SIGKILL to a ready replacement (eager `import dspy`) | {recovery:.2?} | ≤ 500 ms + Python's start |"
    );
    Ok(())
}

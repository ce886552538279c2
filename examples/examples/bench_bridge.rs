//! The Python bridge: pool start (4 workers, with and without `import dspy`), no-op round trip
//! (`ping`) p50/p99, calls/s with 4 workers, recovery from a SIGKILLed worker to a ready
//! replacement, and a 1 MiB payload round trip with JSON frames against MessagePack frames.
//! Prints Markdown tables. Run it with `scripts/bench bridge [--quick]`; `--payload` runs only
//! the payload table.

use dspex::bridge::{BridgedModule, Pool};
use dspex_examples::venv_python;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let payload_only = std::env::args().any(|a| a == "--payload");
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(async {
            if !payload_only {
                run(quick).await?;
                println!();
            }
            payload(quick).await
        });
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

/// 1 MiB (and a little more) of a long document: quotes, backslashes, newlines, control and
/// non-ASCII characters, everything JSON escapes or spells out.
fn document() -> String {
    let line = "\"Quoted,\" she said — back\\slash, tab\there; été, 漢字, \u{1}.\n";
    line.repeat((1 << 20) / line.len() + 1)
}

/// 1 MiB of an image as DSPy carries one: a base64 data URI (of pseudo-random bytes, which do not
/// compress), nothing JSON escapes.
fn image() -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = String::from("data:image/png;base64,");
    while out.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(B64[(x % 64) as usize] as char);
    }
    out
}

/// One round trip of `text` through a worker: `load_state` sends it in (a demo of a `Predict`),
/// `save_state` brings it back. Returns the time of each round trip.
async fn payload_round_trips(
    python: &std::path::Path,
    threshold: Option<usize>,
    text: &str,
    n: usize,
) -> dspex::Result<(Vec<Duration>, Duration)> {
    let pool = Pool::builder()
        .python(python)
        .workers(1)
        .eager_import(true)
        .msgpack_threshold(threshold)
        .start_timeout(Duration::from_secs(120))
        .build()
        .await?;
    let module =
        BridgedModule::<Value, Value>::create(&pool, "Predict", "question -> answer").await?;
    let mut state = module.save_state().await?;
    state["demos"] = json!([{"question": text, "answer": "a"}]);
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n + 2 {
        let t = Instant::now();
        module.load_state(state.clone()).await?;
        let back = module.save_state().await?;
        let took = t.elapsed();
        if back["demos"][0]["question"].as_str() != Some(text) {
            return Err(dspex::Error::step(
                "payload",
                "the payload came back changed",
            ));
        }
        // The first two warm up (DSPy's first load_state, the allocator).
        if i >= 2 {
            samples.push(took);
        }
    }
    let elapsed = started.elapsed();
    let info = &pool.stats().workers[0];
    if threshold.is_some() && (info.msgpack_sent == 0 || info.msgpack_received == 0) {
        return Err(dspex::Error::step("payload", "MessagePack was not used"));
    }
    if threshold.is_none() && info.msgpack_sent + info.msgpack_received > 0 {
        return Err(dspex::Error::step(
            "payload",
            "MessagePack was used with it off",
        ));
    }
    pool.shutdown().await;
    Ok((samples, elapsed))
}

async fn payload(quick: bool) -> dspex::Result<()> {
    let python = venv_python();
    let n = if quick { 10 } else { 50 };
    println!("### Python bridge: a 1 MiB payload round trip, JSON against MessagePack frames\n");
    println!(
        "One worker; each round trip sends the payload in (`load_state`, as a demo of a `Predict`) and brings it back (`save_state`): 1 MiB each way, {n} round trips after 2 of warm-up.\n"
    );
    println!("| payload | frames | p50 | p90 | MiB/s (both ways) |");
    println!("|---|---|---:|---:|---:|");
    for (name, text) in [
        ("document (escapes, non-ASCII)", document()),
        ("image (base64 data URI)", image()),
    ] {
        for (label, threshold) in [
            ("JSON", None),
            (
                "MessagePack",
                Some(dspex::bridge::protocol::DEFAULT_MSGPACK_THRESHOLD),
            ),
        ] {
            let (mut samples, _) = payload_round_trips(&python, threshold, &text, n).await?;
            let p50 = quantile(&mut samples, 0.5);
            let p90 = quantile(&mut samples, 0.9);
            let total: Duration = samples.iter().sum();
            let mib = 2.0 * text.len() as f64 / (1 << 20) as f64 * samples.len() as f64;
            let rate = mib / total.as_secs_f64();
            println!("| {name} | {label} | {p50:.2?} | {p90:.2?} | {rate:.0} |");
        }
    }
    // The pool's side alone: encoding a 1 MiB request and decoding a 1 MiB response, in-process.
    println!(
        "\nThe pool's share, in-process: encode a `call` request holding the payload and decode a response holding it, {n} times each, p50.\n"
    );
    println!("| payload | JSON encode | JSON decode | MessagePack encode | MessagePack decode |");
    println!("|---|---:|---:|---:|---:|");
    for (name, text) in [
        ("document (escapes, non-ASCII)", document()),
        ("image (base64 data URI)", image()),
    ] {
        use dspex::bridge::protocol::{FrameCodec, Op, WorkerMessage, read_encoded_frame};
        let op = Op::Call {
            object: "o1".into(),
            inputs: json!({"question": text})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let response = json!({"kind": "response", "id": 1, "ok": {"outputs": {"answer": text}}});
        let mut cells = Vec::new();
        for codec in [FrameCodec::JSON, FrameCodec::msgpack_above(65536)] {
            let (mut enc, mut dec) = (Vec::with_capacity(n), Vec::with_capacity(n));
            let frame = codec
                .encode(&response)
                .map_err(|e| dspex::Error::step("encode", e))?;
            for _ in 0..n {
                let t = Instant::now();
                let bytes = codec
                    .encode_request(1, &op)
                    .map_err(|e| dspex::Error::step("encode", e))?;
                enc.push(t.elapsed());
                std::hint::black_box(bytes);
                let t = Instant::now();
                let read = read_encoded_frame(&mut &frame[..])
                    .await
                    .map_err(|e| dspex::Error::step("read", e))?
                    .ok_or_else(|| dspex::Error::step("read", "no frame"))?;
                let message: WorkerMessage =
                    read.decode().map_err(|e| dspex::Error::step("decode", e))?;
                dec.push(t.elapsed());
                std::hint::black_box(message);
            }
            cells.push(format!("{:.2?}", quantile(&mut enc, 0.5)));
            cells.push(format!("{:.2?}", quantile(&mut dec, 0.5)));
        }
        println!("| {name} | {} |", cells.join(" | "));
    }
    Ok(())
}

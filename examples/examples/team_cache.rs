//! A team's cache and fleet: two processes evaluate the same program on the same data, sharing
//! one Redis response cache, over one `LM` spread across three endpoints of which one is down.
//!
//! The first process pays for every LM call; the second finds every answer in Redis and pays for
//! none. The fleet's third endpoint answers every request with `503 Service Unavailable`: each
//! call that lands there fails over to a healthy endpoint at once (no retry is spent, no call
//! fails), and after three failures its breaker ejects it until a probe finds it healthy again.
//!
//! Run it with `cargo run --example team_cache`. It starts `redis-server` (Debian's package,
//! `apt-get install redis-server`) on a free port of 127.0.0.1 with nothing persisted, and three
//! mock LM servers in this process; the two evaluating processes are this program run again
//! with `--worker`. Against a real deployment, give every process the same
//! `DSPEX_CACHE_REDIS_URL` (or [`CacheConfig::redis`]) and the same comma-separated
//! `DSPEX_API_BASE` (or [`LmBuilder::endpoints`](dspex::lm::LmBuilder::endpoints)).

use dspex::lm::{BreakerConfig, CacheConfig, LM, RedisConfig, RetryPolicy};
use dspex::module::ChainOfThought;
use dspex::prelude::*;
use dspex::runtime::evaluate::{Evaluate, answer_exact_match};
use dspex::testing::{Fault, FaultWhen, Latency, MockLm, MockLmServer, RedisServer, Rule};
use dspex_examples::regex_escape;
use std::process::Command;
use std::time::Duration;

/// Answer the arithmetic question with a number.
#[signature]
struct Arithmetic {
    #[input]
    question: String,
    #[output(desc = "a number")]
    answer: String,
}

fn dataset() -> Vec<Example> {
    (0..40)
        .map(|i| {
            let (a, b) = (i % 9 + 2, i / 4 + 3);
            Example::new()
                .with("question", format!("What is {a} plus {b}?"))
                .with("answer", (a + b).to_string())
                .with_inputs(["question"])
        })
        .collect()
}

/// Each question's answer, right on all but every seventh.
fn rules(data: &[Example]) -> dspex::Result<Vec<Rule>> {
    data.iter()
        .enumerate()
        .map(|(i, ex)| {
            let question = ex.get_str("question").unwrap_or_default();
            let right: i64 = ex
                .get_str("answer")
                .unwrap_or_default()
                .parse()
                .unwrap_or(0);
            let answer = if i % 7 == 0 { right + 1 } else { right };
            let completion = format!(
                "[[ ## reasoning ## ]]\nAdding the two numbers gives {answer}.\n\n\
                 [[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"
            );
            Rule::regex(&regex_escape(question), completion.as_str())
                .map_err(|e| dspex::Error::step("scripting the mock LM", e))
        })
        .collect()
}

/// One evaluating process: the program over the fleet, the cache in Redis (and memory), its
/// score and what its LM did printed on stdout.
async fn worker(redis_url: &str, bases: &str) -> dspex::Result<()> {
    let cache = CacheConfig::default()
        .no_disk()
        .redis(RedisConfig::new(redis_url).map_err(|e| dspex::Error::step("the Redis URL", e))?);
    let lm = LM::builder("openai/mock")
        .endpoints(bases.split(','))
        .cache_config(cache)
        // Calls the down endpoint refuses move to a healthy one without spending a retry;
        // retries stay for failures failover cannot help.
        .retry(RetryPolicy::default())
        .breaker(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(5),
        })
        .build()?;
    dspex::settings::configure(dspex::settings::Settings::new().lm(lm.clone()));

    let program = ChainOfThought::<Arithmetic>::new();
    let result = Evaluate::new(dataset(), answer_exact_match())
        .num_threads(8)
        .display_progress(false)
        .call(&program)
        .await?;
    let cache = lm.cache().map(|c| c.stats()).unwrap_or_default();
    println!(
        "score:    {:.1} on {} examples",
        result.score,
        dataset().len()
    );
    println!(
        "cache:    {} answers from Redis, {} from memory, {} Redis errors",
        cache.redis_hits, cache.memory_hits, cache.redis_errors
    );
    for e in lm.endpoints() {
        println!(
            "endpoint: {} served {:>3}, failed {}, failed over {}, {}",
            e.url,
            e.served,
            e.failures,
            e.failovers,
            if e.healthy { "in rotation" } else { "ejected" }
        );
    }
    Ok(())
}

fn chat_requests(servers: &[MockLmServer]) -> Vec<u64> {
    servers
        .iter()
        .map(|s| s.stats().requests_to("/v1/chat/completions"))
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> dspex::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, redis_url, bases] = args.as_slice()
        && flag == "--worker"
    {
        return worker(redis_url, bases).await;
    }

    let redis = RedisServer::start().map_err(|e| {
        dspex::Error::step(
            "starting redis-server (install it: apt-get install redis-server)",
            e,
        )
    })?;
    let data = dataset();
    let mut servers = Vec::new();
    for ms in [5, 10] {
        servers.push(
            MockLm::builder()
                .rules(rules(&data)?)
                .latency(Latency::Fixed(Duration::from_millis(ms)))
                .start()
                .await
                .map_err(|e| dspex::Error::step("starting a mock LM server", e))?,
        );
    }
    // The third endpoint is down: it refuses everything with 503.
    servers.push(
        MockLm::builder()
            .fault(Fault::Status(503), FaultWhen::Always)
            .start()
            .await
            .map_err(|e| dspex::Error::step("starting a mock LM server", e))?,
    );
    let bases = servers
        .iter()
        .map(MockLmServer::api_base)
        .collect::<Vec<_>>()
        .join(",");
    println!("redis:    {}", redis.url());
    println!("fleet:    {bases} (the last one answers 503)\n");

    let exe = std::env::current_exe().map_err(|e| dspex::Error::step("finding this program", e))?;
    let mut before = chat_requests(&servers);
    for process in 1..=2 {
        // A child process of its own, as a teammate's run on another machine would be; this
        // process keeps serving the mock endpoints meanwhile.
        let child = tokio::task::spawn_blocking({
            let (exe, url, bases) = (exe.clone(), redis.url(), bases.clone());
            move || {
                Command::new(exe)
                    .args(["--worker", &url, &bases])
                    .env_remove("DSPEX_CACHE_REDIS_URL")
                    .output()
            }
        })
        .await
        .map_err(|e| dspex::Error::step("waiting for a worker", e))?
        .map_err(|e| dspex::Error::step("running a worker", e))?;
        if !child.status.success() {
            return Err(dspex::Error::step(
                "an evaluating process",
                std::io::Error::other(String::from_utf8_lossy(&child.stderr).into_owned()),
            ));
        }
        let after = chat_requests(&servers);
        let paid: u64 = after.iter().zip(&before).take(2).map(|(a, b)| a - b).sum();
        let refused = after[2] - before[2];
        before = after;
        println!(
            "== process {process}: {paid} LM calls paid, {refused} refused by the down endpoint"
        );
        print!("{}", String::from_utf8_lossy(&child.stdout));
        println!();
    }
    Ok(())
}

//! The mock LM server: configuration ([`MockLmBuilder`], [`Rule`], [`Latency`]) and the running
//! server handle ([`MockLmServer`]).

mod answer;
mod anthropic;
mod fault;
mod gemini;
mod openai;
mod responses;
mod server;
mod stats;
mod timer;
mod util;

#[cfg(test)]
mod tests;

pub use fault::{Fault, FaultWhen, Pattern};
pub use stats::MockStats;

use crate::wire;
pub(crate) use server::BODY_LIMIT;

use fault::FaultSet;
use stats::Stats;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Errors from configuring the mock server (never from serving: bad requests get HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MockError {
    /// A regular expression did not compile.
    #[error("invalid regex `{pattern}`: {message}")]
    InvalidRegex {
        /// The pattern as given.
        pattern: String,
        /// The regex engine's explanation.
        message: String,
    },
    /// A fault name the CLI spelling does not know (see [`Fault`]'s `FromStr`).
    #[error(
        "unknown fault `{0}` (expected a status code such as 500 or 503, 429, hang, reset, malformed, empty, truncate or stream_error[_<status>])"
    )]
    InvalidFault(String),
    /// A line of a rules file is not `{"match": "regex", "completion": "text"}`.
    #[error("rules line {line}: {message}")]
    InvalidRule {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// Namespace for starting a mock LM server: [`MockLm::builder`] or [`MockLm::start`].
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use dspex::testing::{Fault, FaultWhen, Latency, MockLm, Rule};
/// use std::time::Duration;
///
/// let server = MockLm::builder()
///     .rule(Rule::contains("capital of France", "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"))
///     .latency(Latency::Fixed(Duration::from_millis(5)))
///     .fault(Fault::Status(503), FaultWhen::FirstN(2))
///     .seed(7)
///     .start()
///     .await?;
/// println!("point your client at {}", server.api_base());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MockLm {
    _private: (),
}

impl MockLm {
    /// A builder with the defaults: no rules, no latency, no faults, DSPy-aware answers,
    /// 64-dimensional embeddings, a free port on 127.0.0.1.
    pub fn builder() -> MockLmBuilder {
        MockLmBuilder::default()
    }

    /// Starts a server with the defaults.
    pub async fn start() -> io::Result<MockLmServer> {
        Self::builder().start().await
    }
}

/// Simulated response latency: every chat, completion and embedding answer waits until this
/// long after its request was read (to a fraction of a millisecond: the wait is not rounded up
/// to a timer tick, and the server's own work on the request counts towards it).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Latency {
    /// Answer at once.
    #[default]
    None,
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between `min` and `max`.
    Uniform {
        /// Shortest latency.
        min: Duration,
        /// Longest latency.
        max: Duration,
    },
    /// Normally distributed (clamped at zero).
    Normal {
        /// Mean latency.
        mean: Duration,
        /// Standard deviation.
        std_dev: Duration,
    },
}

impl Latency {
    /// The latency of the `k`-th request (deterministic in `seed` and `k`).
    fn sample(&self, seed: u64, k: u64) -> Duration {
        let u = |i: u64| util::unit(util::mix_all(&[seed, 0x1a7e, k, i]));
        let secs = match *self {
            Latency::None => return Duration::ZERO,
            Latency::Fixed(d) => return d,
            Latency::Uniform { min, max } => {
                let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
                lo.as_secs_f64() + (hi - lo).as_secs_f64() * u(0)
            }
            Latency::Normal { mean, std_dev } => {
                // Box–Muller.
                let (u1, u2) = (1.0 - u(0), u(1));
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                mean.as_secs_f64() + std_dev.as_secs_f64() * z
            }
        };
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::ZERO)
    }
}

/// What a [`Rule`] answers: one fixed text, or a sequence returned in turn (the last one is
/// repeated once the sequence is used up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Always this text.
    Fixed(String),
    /// These texts, one per matching request, then the last one forever.
    Sequence(Vec<String>),
}

impl Completion {
    /// A sequence from any list of texts.
    pub fn sequence<I, S>(texts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Completion::Sequence(texts.into_iter().map(Into::into).collect())
    }

    fn texts(self) -> Vec<String> {
        match self {
            Completion::Fixed(text) => vec![text],
            Completion::Sequence(texts) if texts.is_empty() => vec![String::new()],
            Completion::Sequence(texts) => texts,
        }
    }
}

impl From<&str> for Completion {
    fn from(text: &str) -> Self {
        Completion::Fixed(text.to_owned())
    }
}

impl From<String> for Completion {
    fn from(text: String) -> Self {
        Completion::Fixed(text)
    }
}

impl From<Vec<String>> for Completion {
    fn from(texts: Vec<String>) -> Self {
        Completion::Sequence(texts)
    }
}

impl From<Vec<&str>> for Completion {
    fn from(texts: Vec<&str>) -> Self {
        Completion::sequence(texts)
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Contains(String),
    Regex(Pattern),
    /// A pattern over the whole conversation, not just the last user message.
    Conversation(Pattern),
}

impl Matcher {
    fn matches(&self, user: &str, conversation: Option<&str>) -> bool {
        match self {
            Matcher::Exact(t) => user == t,
            Matcher::Contains(t) => user.contains(t.as_str()),
            Matcher::Regex(p) => p.is_match(user),
            Matcher::Conversation(p) => p.is_match(conversation.unwrap_or(user)),
        }
    }
}

/// A canned answer: when the last user message (text completions: the prompt) matches, the
/// completion is returned verbatim as the message content. Rules are tried in the order they
/// were added; the first match wins; no match falls through to the generated answer.
#[derive(Debug, Clone)]
pub struct Rule {
    matcher: Matcher,
    completion: Completion,
    tool_calls: Vec<serde_json::Value>,
    /// A safety block the Gemini routes answer with ([`Rule::with_safety_block`]).
    block: Option<gemini::Block>,
}

impl Rule {
    /// Matches when the last user message is exactly `text`.
    pub fn exact(text: impl Into<String>, completion: impl Into<Completion>) -> Self {
        Rule {
            matcher: Matcher::Exact(text.into()),
            completion: completion.into(),
            tool_calls: Vec::new(),
            block: None,
        }
    }

    /// Matches when the last user message contains `text`.
    pub fn contains(text: impl Into<String>, completion: impl Into<Completion>) -> Self {
        Rule {
            matcher: Matcher::Contains(text.into()),
            completion: completion.into(),
            tool_calls: Vec::new(),
            block: None,
        }
    }

    /// Matches when `pattern` (Rust `regex` syntax) matches anywhere in the last user message.
    /// A bad pattern is an error.
    pub fn regex(pattern: &str, completion: impl Into<Completion>) -> Result<Self, MockError> {
        Ok(Rule {
            matcher: Matcher::Regex(Pattern::new(pattern)?),
            completion: completion.into(),
            tool_calls: Vec::new(),
            block: None,
        })
    }

    /// Matches when `pattern` matches anywhere in the whole conversation: every message's
    /// content, in order, each after a `role:` line (`system:\n…\nuser:\n…\nassistant:\n…`).
    /// Rules like this see the instructions and the few-shot demos, so a scripted LM can answer
    /// better when a prompt holds demos. A bad pattern is an error.
    pub fn conversation_regex(
        pattern: &str,
        completion: impl Into<Completion>,
    ) -> Result<Self, MockError> {
        Ok(Rule {
            matcher: Matcher::Conversation(Pattern::new(pattern)?),
            completion: completion.into(),
            tool_calls: Vec::new(),
            block: None,
        })
    }

    /// The same rule, answering also with a call of the tool `name` with `args` (native
    /// function calling) whenever the request offers tools: the response's message carries it
    /// in OpenAI's shape (`{"id": "call_<i>", "type": "function", "function": {"name",
    /// "arguments": "<args as JSON text>"}}`, `i` counting the rule's calls from 1) beside the
    /// completion text, and the finish reason is `tool_calls`; the Anthropic route answers
    /// them as `tool_use` blocks (ids `toolu_<i>`, `stop_reason: "tool_use"`). Streamed OpenAI
    /// responses carry no tool calls.
    ///
    /// ```
    /// use dspex_testing::Rule;
    /// use serde_json::json;
    ///
    /// let rule = Rule::contains("Weather", "[[ ## answer ## ]]\nChecking.\n\n[[ ## completed ## ]]")
    ///     .with_tool_call("get_weather", json!({"city": "Paris"}));
    /// # let _ = rule;
    /// ```
    #[must_use]
    pub fn with_tool_call(mut self, name: impl Into<String>, args: serde_json::Value) -> Self {
        let id = format!("call_{}", self.tool_calls.len() + 1);
        self.tool_calls.push(serde_json::json!({
            "id": id,
            "type": "function",
            "function": {"name": name.into(), "arguments": args.to_string()},
        }));
        self
    }

    /// Parses a rules file: one JSON object per line, `{"match": "regex", "completion": "text"}`
    /// (also `"exact"`, `"contains"` or `"conversation"` — a regex over the whole conversation,
    /// see [`Rule::conversation_regex`] — instead of `"match"`, and a list of texts as a sequence
    /// completion; `"tool_calls": [{"name", "args"}]` adds tool calls, see
    /// [`Rule::with_tool_call`]). Blank lines and lines starting with `#` or `//` are skipped.
    pub fn parse_json_lines(text: &str) -> Result<Vec<Rule>, MockError> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
                continue;
            }
            let bad = |message: String| MockError::InvalidRule {
                line: i + 1,
                message,
            };
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
            let completion = match value.get("completion") {
                Some(serde_json::Value::String(s)) => Completion::Fixed(s.clone()),
                Some(serde_json::Value::Array(items)) => Completion::Sequence(
                    items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad("a completion list must hold strings".to_owned()))?,
                ),
                _ => return Err(bad("needs a string \"completion\"".to_owned())),
            };
            let text_of = |key: &str| value.get(key).and_then(serde_json::Value::as_str);
            let rule = if let Some(pattern) = text_of("match") {
                Rule::regex(pattern, completion).map_err(|e| bad(e.to_string()))?
            } else if let Some(pattern) = text_of("conversation") {
                Rule::conversation_regex(pattern, completion).map_err(|e| bad(e.to_string()))?
            } else if let Some(exact) = text_of("exact") {
                Rule::exact(exact, completion)
            } else if let Some(part) = text_of("contains") {
                Rule::contains(part, completion)
            } else {
                return Err(bad(
                    "needs a string \"match\" (or \"exact\" / \"contains\" / \"conversation\")"
                        .to_owned(),
                ));
            };
            let rule = match value.get("tool_calls") {
                None | Some(serde_json::Value::Null) => rule,
                Some(serde_json::Value::Array(calls)) => {
                    calls.iter().try_fold(rule, |rule, call| {
                        let name = call.get("name").and_then(serde_json::Value::as_str);
                        let args = call
                            .get("args")
                            .cloned()
                            .unwrap_or_else(|| serde_json::json!({}));
                        match name {
                            Some(name) => Ok(rule.with_tool_call(name, args)),
                            None => Err(bad("a tool call needs a string \"name\"".to_owned())),
                        }
                    })?
                }
                Some(_) => {
                    return Err(bad(
                        "\"tool_calls\" must be a list of {\"name\", \"args\"}".to_owned()
                    ));
                }
            };
            rules.push(rule);
        }
        Ok(rules)
    }
}

/// A rule with its sequence position.
struct CompiledRule {
    matcher: Matcher,
    texts: Vec<String>,
    tool_calls: Vec<serde_json::Value>,
    block: Option<gemini::Block>,
    next: AtomicUsize,
}

impl CompiledRule {
    fn take(&self) -> String {
        let last = self.texts.len().saturating_sub(1);
        let i = if last == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed).min(last)
        };
        self.texts.get(i).cloned().unwrap_or_default()
    }
}

/// Configures and starts a [`MockLmServer`]; see [`MockLm::builder`].
#[derive(Debug, Clone)]
pub struct MockLmBuilder {
    rules: Vec<Rule>,
    latency: Latency,
    seed: Option<u64>,
    faults: Vec<(Fault, FaultWhen)>,
    dspy_aware: bool,
    embedding_dim: usize,
    port: u16,
}

impl Default for MockLmBuilder {
    fn default() -> Self {
        MockLmBuilder {
            rules: Vec::new(),
            latency: Latency::None,
            seed: None,
            faults: Vec::new(),
            dspy_aware: true,
            embedding_dim: 64,
            port: 0,
        }
    }
}

impl MockLmBuilder {
    /// Adds a canned answer (tried in order, before the generated answers).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds several canned answers.
    pub fn rules(mut self, rules: impl IntoIterator<Item = Rule>) -> Self {
        self.rules.extend(rules);
        self
    }

    /// Sets the simulated latency.
    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Makes random latency and [`FaultWhen::Rate`] decisions reproducible: the k-th request
    /// always gets the same draw. Without a seed they differ from run to run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Adds a fault. Faults are checked in order; the first whose condition fires is injected.
    pub fn fault(mut self, fault: Fault, when: FaultWhen) -> Self {
        self.faults.push((fault, when));
        self
    }

    /// Whether to recognise DSPy ChatAdapter / JSONAdapter prompts and answer every output field
    /// (default `true`). When off, every unmatched prompt gets `mock completion <hash8>`.
    pub fn dspy_aware(mut self, on: bool) -> Self {
        self.dspy_aware = on;
        self
    }

    /// Dimension of `/v1/embeddings` vectors when the request gives no `dimensions` (default
    /// 64; at least 1).
    pub fn embedding_dim(mut self, dim: usize) -> Self {
        self.embedding_dim = dim.max(1);
        self
    }

    /// Listens on this port of 127.0.0.1 (default 0: a free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Binds 127.0.0.1 and starts serving on the current Tokio runtime.
    pub async fn start(self) -> io::Result<MockLmServer> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))?;
        let listener = socket.listen(4096)?;
        let addr = listener.local_addr()?;

        let seed = self.seed.unwrap_or_else(util::random_seed);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let rules = self
            .rules
            .into_iter()
            .map(|rule| CompiledRule {
                matcher: rule.matcher,
                texts: rule.completion.texts(),
                tool_calls: rule.tool_calls,
                block: rule.block,
                next: AtomicUsize::new(0),
            })
            .collect();
        let shared = Arc::new(Shared {
            dspy_aware: self.dspy_aware,
            embedding_dim: self.embedding_dim,
            latency: self.latency,
            seed,
            rules,
            faults: RwLock::new(Arc::new(FaultSet::new(seed, self.faults))),
            stats: Stats::new(),
            seq: AtomicU64::new(0),
            draws: AtomicU64::new(0),
            shutdown: shutdown_rx.clone(),
        });

        let handler_shared = Arc::clone(&shared);
        let handler = move |req| {
            let shared = Arc::clone(&handler_shared);
            async move { server::handle(&shared, req).await }
        };
        let service = wire::Service {
            handler,
            refuse: server::bad_request,
            body_limit: BODY_LIMIT,
            name: "mock LM",
        };
        let task = tokio::spawn(wire::serve(listener, service, shutdown_rx));
        tracing::debug!(%addr, "mock LM server listening");
        Ok(MockLmServer {
            addr,
            shared,
            shutdown,
            task: Some(task),
        })
    }
}

/// State shared by every request handler.
struct Shared {
    dspy_aware: bool,
    embedding_dim: usize,
    latency: Latency,
    seed: u64,
    rules: Vec<CompiledRule>,
    /// Replaced wholesale by `set_faults`; readers clone the `Arc` and let go of the lock.
    faults: RwLock<Arc<FaultSet>>,
    stats: Stats,
    /// Response sequence number (ids).
    seq: AtomicU64,
    /// Latency draws so far (the k of [`Latency::sample`]).
    draws: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn faults(&self) -> Arc<FaultSet> {
        Arc::clone(&self.faults.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn rule_for(&self, user: &str, conversation: Option<&str>) -> Option<String> {
        self.rules
            .iter()
            .find(|r| r.matcher.matches(user, conversation))
            .map(CompiledRule::take)
    }

    /// The tool calls of the rule [`rule_for`](Shared::rule_for) picks for this prompt.
    fn tool_calls_for(
        &self,
        user: &str,
        conversation: Option<&str>,
    ) -> Option<&[serde_json::Value]> {
        self.rules
            .iter()
            .find(|r| r.matcher.matches(user, conversation))
            .map(|r| r.tool_calls.as_slice())
    }

    /// Whether any rule reads the whole conversation (only then is it put together).
    fn wants_conversation(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.matcher, Matcher::Conversation(_)))
    }

    /// Sleeps until `deadline`; `false` when the server is shutting down (the sleep is cut
    /// short).
    async fn pause_until(&self, deadline: Instant) -> bool {
        if deadline <= Instant::now() {
            return true;
        }
        let mut stop = self.shutdown.clone();
        if *stop.borrow_and_update() {
            return false;
        }
        tokio::select! {
            () = timer::sleep_until(deadline) => true,
            () = crate::wire::stop_raised(&mut stop) => false,
        }
    }
}

/// A running mock LM server. Dropping it stops the server (new connections are refused, idle
/// ones closed, in-flight latency and hangs cut short); [`shutdown`](Self::shutdown) does the
/// same and waits for it.
pub struct MockLmServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for MockLmServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockLmServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockLmServer {
    /// `http://127.0.0.1:PORT` (no `/v1`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`: what OpenAI clients call the base URL.
    pub fn api_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MockStats {
        self.shared.stats.snapshot()
    }

    /// Sets every counter back to zero (fault conditions keep their own counters).
    pub fn reset_stats(&self) {
        self.shared.stats.reset();
    }

    /// Replaces the faults (an empty list heals the server). The new faults' `FirstN` /
    /// `EveryNth` / `Rate` counters start from zero; requests already in flight keep the faults
    /// they started with.
    pub fn set_faults(&self, faults: Vec<(Fault, FaultWhen)>) {
        let set = Arc::new(FaultSet::new(self.shared.seed, faults));
        *self
            .shared
            .faults
            .write()
            .unwrap_or_else(PoisonError::into_inner) = set;
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.set_faults(Vec::new());
    }

    /// Stops accepting connections, lets in-flight requests finish (cutting latency and hangs
    /// short) and waits for the server task, at most 10 seconds.
    pub async fn shutdown(mut self) {
        super::stop_server(&self.shutdown, self.task.take()).await;
    }
}

impl Drop for MockLmServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

//! Injected failures: what goes wrong ([`Fault`]), when ([`FaultWhen`]), and the lock-free
//! per-configuration counters that decide it.

use super::MockError;
use super::util::{mix_all, unit};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A failure the mock server can inject instead of (or before) a normal answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this HTTP status (500, 503, 400, …) and an OpenAI-style error body. A code
    /// outside 100–999 is sent as 500.
    Status(u16),
    /// 429 Too Many Requests with a `Retry-After` header in seconds (fractional allowed, e.g.
    /// `0.2`) and a `retry-after-ms` header, as OpenAI sends.
    RateLimited {
        /// The wait the server asks for.
        retry_after: Duration,
    },
    /// Sleep this long before answering normally — long enough to trip a client timeout. The
    /// sleep ends early when the server shuts down.
    Hang(Duration),
    /// Send the status line, the headers (with the full `Content-Length`) and about half of the
    /// body, then drop the connection: the client sees a truncated body.
    ResetMidBody,
    /// 200 with a body that is not valid JSON (a cut-off response object).
    MalformedJson,
    /// 200 with a well-formed response whose `choices` (embeddings: `data`) list is empty.
    EmptyChoices,
    /// For `stream: true` requests only: send the first chunks, then end the stream without a
    /// final chunk and without `data: [DONE]`.
    TruncatedStream,
    /// For `stream: true` requests only: send the first chunks, then the provider's error
    /// inside the stream for this HTTP status in place of the rest (an Anthropic `error` event
    /// whose type the status maps to — `overloaded_error` for 529, `rate_limit_error` for 429,
    /// `api_error` for 500 —; an OpenAI `{"error": …}` chunk), and no end marker.
    StreamError(u16),
    /// One of these faults, chosen evenly among those that apply to the request (so
    /// [`TruncatedStream`](Fault::TruncatedStream) only for streamed ones): a mixed fault
    /// mode. With [`MockLmBuilder::seed`](super::MockLmBuilder::seed) the k-th request to an
    /// endpoint always gets the same choice. Statistics count the fault chosen.
    OneOf(Vec<Fault>),
}

impl Fault {
    /// The name used as the key in [`MockStats::faults`](super::MockStats::faults):
    /// `status_503`, `rate_limited`, `hang`, `reset_mid_body`, `malformed_json`,
    /// `empty_choices`, `truncated_stream`, `stream_error` (`one_of` for a mix, which is never counted
    /// itself: the fault it chose is).
    pub fn name(&self) -> String {
        match self {
            Fault::Status(code) => format!("status_{}", effective_status(*code)),
            Fault::OneOf(_) => "one_of".to_owned(),
            other => other.kind().name().to_owned(),
        }
    }

    pub(crate) fn kind(&self) -> FaultKind {
        match self {
            Fault::Status(code) => FaultKind::Status(effective_status(*code)),
            Fault::RateLimited { .. } => FaultKind::RateLimited,
            Fault::Hang(_) => FaultKind::Hang,
            Fault::ResetMidBody => FaultKind::ResetMidBody,
            Fault::MalformedJson => FaultKind::MalformedJson,
            Fault::EmptyChoices => FaultKind::EmptyChoices,
            Fault::TruncatedStream => FaultKind::TruncatedStream,
            Fault::StreamError(_) => FaultKind::StreamError,
            // Never counted: `FaultSet::select` answers with the fault a mix chose.
            Fault::OneOf(faults) => faults.first().map_or(FaultKind::Status(500), Fault::kind),
        }
    }

    /// Whether the fault can happen on this request at all.
    fn applies(&self, api: Api, streaming: bool) -> bool {
        match self {
            Fault::TruncatedStream | Fault::StreamError(_) => streaming && api != Api::Embeddings,
            Fault::OneOf(faults) => faults.iter().any(|f| f.applies(api, streaming)),
            _ => true,
        }
    }

    /// The fault to inject: itself, or for a mix, one of its faults that apply, picked by
    /// `draw` (nested mixes resolved the same way).
    fn resolve(&self, api: Api, streaming: bool, draw: u64) -> Option<&Fault> {
        match self {
            Fault::OneOf(faults) => {
                let applicable: Vec<&Fault> = faults
                    .iter()
                    .filter(|f| f.applies(api, streaming))
                    .collect();
                let n = applicable.len() as u64;
                if n == 0 {
                    return None;
                }
                let chosen = applicable[usize::try_from(draw % n).unwrap_or(0)];
                chosen.resolve(api, streaming, mix_all(&[draw, 0x0e0f]))
            }
            other => Some(other),
        }
    }
}

/// The status code actually sent for `Fault::Status(code)`.
pub(crate) fn effective_status(code: u16) -> u16 {
    if (100..=999).contains(&code) {
        code
    } else {
        500
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Parses the CLI spellings: a status code (`500`, `503`; `429` is [`Fault::RateLimited`] with a
/// 1 s retry-after), `rate_limited`, `hang` (60 s), `reset`, `malformed`, `empty`, `truncate`,
/// `stream_error` (status 500) or `stream_error_<status>`
/// (the long names of [`Fault::name`] work too).
impl FromStr for Fault {
    type Err = MockError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(code) = s.parse::<u16>() {
            return if code == 429 {
                Ok(Fault::RateLimited {
                    retry_after: Duration::from_secs(1),
                })
            } else if (100..=999).contains(&code) {
                Ok(Fault::Status(code))
            } else {
                Err(MockError::InvalidFault(s.to_owned()))
            };
        }
        if let Some(code) = s.strip_prefix("stream_error_") {
            return code
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=999).contains(c))
                .map(Fault::StreamError)
                .ok_or_else(|| MockError::InvalidFault(s.to_owned()));
        }
        if let Some(code) = s.strip_prefix("status_") {
            return code
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=999).contains(c))
                .map(Fault::Status)
                .ok_or_else(|| MockError::InvalidFault(s.to_owned()));
        }
        match s.to_ascii_lowercase().as_str() {
            "rate_limited" | "ratelimited" | "rate-limited" => Ok(Fault::RateLimited {
                retry_after: Duration::from_secs(1),
            }),
            "hang" => Ok(Fault::Hang(Duration::from_secs(60))),
            "reset" | "reset_mid_body" => Ok(Fault::ResetMidBody),
            "malformed" | "malformed_json" => Ok(Fault::MalformedJson),
            "empty" | "empty_choices" => Ok(Fault::EmptyChoices),
            "truncate" | "truncated" | "truncated_stream" => Ok(Fault::TruncatedStream),
            "stream_error" => Ok(Fault::StreamError(500)),
            _ => Err(MockError::InvalidFault(s.to_owned())),
        }
    }
}

/// A compiled regular expression, matched against the last user message.
#[derive(Clone)]
pub struct Pattern(Matcher);

#[derive(Clone)]
enum Matcher {
    Regex(regex::Regex),
    /// From `From<&str>` when the text is not a valid regex.
    Literal(String),
}

impl Pattern {
    /// Compiles `pattern` (Rust `regex` syntax). A bad pattern is an error, never a panic.
    pub fn new(pattern: &str) -> Result<Self, MockError> {
        regex::Regex::new(pattern)
            .map(|r| Pattern(Matcher::Regex(r)))
            .map_err(|e| MockError::InvalidRegex {
                pattern: pattern.to_owned(),
                message: e.to_string(),
            })
    }

    /// The source text of the pattern.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Matcher::Regex(r) => r.as_str(),
            Matcher::Literal(t) => t,
        }
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        match &self.0 {
            Matcher::Regex(r) => r.is_match(text),
            Matcher::Literal(t) => text.contains(t.as_str()),
        }
    }
}

/// Compiles the text as a regex; text that is not a valid regex is matched literally instead
/// (use [`Pattern::new`] to get the error). So `FaultWhen::Matching("deny".into())` works.
impl From<&str> for Pattern {
    fn from(text: &str) -> Self {
        Pattern::new(text).unwrap_or_else(|_| Pattern(Matcher::Literal(text.to_owned())))
    }
}

impl From<String> for Pattern {
    fn from(text: String) -> Self {
        Pattern::from(text.as_str())
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.as_str()).finish()
    }
}

/// When a [`Fault`] fires. Counters are per endpoint (chat, text completions, embeddings; the
/// `/v1` and bare paths share one) and restart whenever the faults are replaced with
/// [`MockLmServer::set_faults`](super::MockLmServer::set_faults).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FaultWhen {
    /// On this fraction of requests (0.0–1.0). With [`MockLmBuilder::seed`](super::MockLmBuilder::seed)
    /// the k-th request to an endpoint always gets the same decision.
    Rate(f64),
    /// On the first `n` requests to the endpoint, then never.
    FirstN(u64),
    /// On every `n`-th request to the endpoint (the n-th, 2n-th, …).
    EveryNth(u64),
    /// When the last user message (text completions: the prompt) matches.
    Matching(Pattern),
    /// On every request.
    Always,
}

impl FaultWhen {
    /// [`FaultWhen::Matching`] from a regex source; a bad pattern is an error.
    pub fn matching(pattern: &str) -> Result<Self, MockError> {
        Pattern::new(pattern).map(FaultWhen::Matching)
    }
}

/// The endpoint families faults count per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Chat = 0,
    Completions = 1,
    Embeddings = 2,
}

/// A fault's kind, with the status code folded in: the index of its statistics counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    Status(u16),
    RateLimited,
    Hang,
    ResetMidBody,
    MalformedJson,
    EmptyChoices,
    TruncatedStream,
    StreamError,
}

impl FaultKind {
    /// Kinds other than `Status`, in counter order (after the 900 status slots).
    pub(crate) const OTHERS: [FaultKind; 7] = [
        FaultKind::RateLimited,
        FaultKind::Hang,
        FaultKind::ResetMidBody,
        FaultKind::MalformedJson,
        FaultKind::EmptyChoices,
        FaultKind::TruncatedStream,
        FaultKind::StreamError,
    ];

    /// Number of counters needed: one per status code 100–999, then one per other kind.
    pub(crate) const SLOTS: usize = 900 + Self::OTHERS.len();

    pub(crate) fn slot(self) -> usize {
        match self {
            FaultKind::Status(code) => usize::from(effective_status(code)) - 100,
            FaultKind::RateLimited => 900,
            FaultKind::Hang => 901,
            FaultKind::ResetMidBody => 902,
            FaultKind::MalformedJson => 903,
            FaultKind::EmptyChoices => 904,
            FaultKind::TruncatedStream => 905,
            FaultKind::StreamError => 906,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultKind::Status(_) => "status",
            FaultKind::RateLimited => "rate_limited",
            FaultKind::Hang => "hang",
            FaultKind::ResetMidBody => "reset_mid_body",
            FaultKind::MalformedJson => "malformed_json",
            FaultKind::EmptyChoices => "empty_choices",
            FaultKind::TruncatedStream => "truncated_stream",
            FaultKind::StreamError => "stream_error",
        }
    }
}

struct Entry {
    fault: Fault,
    when: FaultWhen,
    /// Requests seen per [`Api`].
    seen: [AtomicU64; 3],
}

/// An immutable list of faults with its own counters; replaced wholesale by `set_faults`.
pub(crate) struct FaultSet {
    seed: u64,
    entries: Vec<Entry>,
}

impl FaultSet {
    pub(crate) fn new(seed: u64, faults: Vec<(Fault, FaultWhen)>) -> Self {
        let entries = faults
            .into_iter()
            .map(|(fault, when)| Entry {
                fault,
                when,
                seen: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            })
            .collect();
        FaultSet { seed, entries }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The fault for this request, if any: the first entry whose condition fires. Every
    /// applicable entry counts the request, fired or not.
    pub(crate) fn select(&self, api: Api, streaming: bool, user: &str) -> Option<&Fault> {
        let mut chosen = None;
        for (i, entry) in self.entries.iter().enumerate() {
            if !entry.fault.applies(api, streaming) {
                continue;
            }
            let k = entry.seen[api as usize].fetch_add(1, Ordering::Relaxed) + 1;
            if chosen.is_some() {
                continue;
            }
            let fires = match &entry.when {
                FaultWhen::Always => true,
                FaultWhen::FirstN(n) => k <= *n,
                FaultWhen::EveryNth(n) => *n > 0 && k % *n == 0,
                FaultWhen::Rate(p) => unit(mix_all(&[self.seed, i as u64, api as u64, k])) < *p,
                FaultWhen::Matching(pattern) => pattern.is_match(user),
            };
            if fires {
                let draw = mix_all(&[self.seed, i as u64, api as u64, k, 0x0e0f]);
                chosen = entry.fault.resolve(api, streaming, draw);
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_n_then_healthy_and_every_nth() {
        let set = FaultSet::new(
            1,
            vec![
                (Fault::Status(500), FaultWhen::FirstN(2)),
                (Fault::MalformedJson, FaultWhen::EveryNth(3)),
            ],
        );
        let got: Vec<Option<String>> = (0..7)
            .map(|_| set.select(Api::Chat, false, "").map(Fault::name))
            .collect();
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            got,
            [
                s("status_500"),
                s("status_500"),
                s("malformed_json"),
                None,
                None,
                s("malformed_json"),
                None
            ]
        );
        // Another endpoint has its own counters.
        assert_eq!(
            set.select(Api::Embeddings, false, "").map(Fault::name),
            s("status_500")
        );
    }

    #[test]
    fn seeded_rates_are_reproducible() {
        let run = |seed| {
            let set = FaultSet::new(seed, vec![(Fault::EmptyChoices, FaultWhen::Rate(0.3))]);
            (0..1000)
                .map(|_| set.select(Api::Chat, false, "").is_some())
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        let fired = a.iter().filter(|x| **x).count();
        assert!((200..400).contains(&fired), "{fired}");
    }

    #[test]
    fn matching_and_streaming_only_faults() {
        let set = FaultSet::new(
            0,
            vec![
                (Fault::TruncatedStream, FaultWhen::Always),
                (
                    Fault::Status(503),
                    FaultWhen::matching("boom").expect("regex"),
                ),
            ],
        );
        assert_eq!(
            set.select(Api::Chat, true, "x"),
            Some(&Fault::TruncatedStream)
        );
        assert_eq!(set.select(Api::Chat, false, "x"), None);
        assert_eq!(
            set.select(Api::Chat, false, "a boom"),
            Some(&Fault::Status(503))
        );
        assert!(FaultWhen::matching("(").is_err());
        // A string converts panic-free: as a regex, or literally when it is not one.
        let literal = Pattern::from("f(");
        assert!(literal.is_match("if(x)") && !literal.is_match("f"));
        assert!(Pattern::from(String::from("^a.c$")).is_match("abc"));
    }

    #[test]
    fn a_mix_injects_each_applicable_fault_evenly_and_reproducibly() {
        let mix = Fault::OneOf(vec![
            Fault::Status(500),
            Fault::MalformedJson,
            Fault::TruncatedStream,
        ]);
        let run = |seed, streaming| {
            let set = FaultSet::new(seed, vec![(mix.clone(), FaultWhen::Rate(0.2))]);
            (0..3000)
                .map(|_| set.select(Api::Chat, streaming, "").map(Fault::name))
                .collect::<Vec<_>>()
        };
        let plain = run(3, false);
        assert_eq!(plain, run(3, false));
        let count = |v: &[Option<String>], name: &str| {
            v.iter().filter(|f| f.as_deref() == Some(name)).count()
        };
        // About 20 % fire, split evenly over the faults that apply.
        let fired = plain.iter().filter(|f| f.is_some()).count();
        assert!((500..700).contains(&fired), "{fired}");
        assert_eq!(count(&plain, "truncated_stream"), 0);
        for name in ["status_500", "malformed_json"] {
            assert!((220..380).contains(&count(&plain, name)), "{name}");
        }
        let streamed = run(3, true);
        for name in ["status_500", "malformed_json", "truncated_stream"] {
            assert!((130..270).contains(&count(&streamed, name)), "{name}");
        }
        // A mix of faults that never apply never fires.
        let set = FaultSet::new(
            0,
            vec![(
                Fault::OneOf(vec![Fault::TruncatedStream]),
                FaultWhen::Always,
            )],
        );
        assert_eq!(set.select(Api::Chat, false, ""), None);
        assert_eq!(Fault::OneOf(Vec::new()).name(), "one_of");
    }

    #[test]
    fn cli_spellings() {
        assert_eq!("500".parse::<Fault>().ok(), Some(Fault::Status(500)));
        assert!(matches!(
            "429".parse::<Fault>(),
            Ok(Fault::RateLimited { .. })
        ));
        assert!(matches!("hang".parse::<Fault>(), Ok(Fault::Hang(_))));
        assert_eq!("reset".parse::<Fault>().ok(), Some(Fault::ResetMidBody));
        assert_eq!(
            "malformed".parse::<Fault>().ok(),
            Some(Fault::MalformedJson)
        );
        assert_eq!("empty".parse::<Fault>().ok(), Some(Fault::EmptyChoices));
        assert_eq!(
            "truncate".parse::<Fault>().ok(),
            Some(Fault::TruncatedStream)
        );
        assert_eq!(
            "stream_error".parse::<Fault>().ok(),
            Some(Fault::StreamError(500))
        );
        assert_eq!(
            "stream_error_529".parse::<Fault>().ok(),
            Some(Fault::StreamError(529))
        );
        assert_eq!(Fault::StreamError(529).name(), "stream_error");
        assert!("stream_error_5".parse::<Fault>().is_err());
        assert!("nope".parse::<Fault>().is_err());
        assert!("42".parse::<Fault>().is_err());
        assert_eq!(Fault::Status(7).name(), "status_500");
    }
}

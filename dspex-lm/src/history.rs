//! A bounded history of LM calls (each LM's, and the process-wide one DSPy keeps as
//! `GLOBAL_HISTORY`) and DSPy's `inspect_history` rendering.

use super::types::{Content, LmRequest, Message, Role, Usage};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

/// How many calls the process-wide history keeps by default: DSPy's `MAX_HISTORY_SIZE`.
pub const GLOBAL_HISTORY_SIZE: usize = 10_000;

/// Every [`LM`](crate::LM)'s calls, in the order they finished, as DSPy's `GLOBAL_HISTORY`.
static GLOBAL: LazyLock<History> = LazyLock::new(|| History::new(GLOBAL_HISTORY_SIZE));

/// The last `n` calls of every [`LM`](crate::LM) in this process, oldest first — DSPy's global
/// history. An LM built with `history_size(0)` still records here, as DSPy's LMs with
/// `max_history_size=0` do; [`set_global_history_size`]`(0)` stops it.
pub fn global_history(n: usize) -> Vec<HistoryEntry> {
    GLOBAL.last(n)
}

/// The last `n` calls of every LM in this process as DSPy's `dspy.inspect_history(n)` prints
/// them (without colours); [`LM::inspect_history`](crate::LM::inspect_history) is one LM's.
///
/// ```
/// use dspex_lm::{global_history, inspect_history};
///
/// // After some calls: the last three of any LM, as DSPy prints them.
/// print!("{}", inspect_history(3));
/// for entry in global_history(3) {
///     println!("{} took {:?}", entry.model, entry.latency);
/// }
/// ```
pub fn inspect_history(n: usize) -> String {
    render_history(&global_history(n), false)
}

/// Forgets the process-wide history (each LM keeps its own).
pub fn clear_global_history() {
    GLOBAL.clear();
}

/// How many calls the process-wide history keeps from now on (default
/// [`GLOBAL_HISTORY_SIZE`]); 0 records none, for processes that must not keep prompts in
/// memory. Shrinking drops the oldest calls.
pub fn set_global_history_size(capacity: usize) {
    GLOBAL.set_capacity(capacity);
}

/// Records a finished call in `own` (an LM's history) and in the process-wide history; the entry
/// is built only if one of them keeps calls.
pub(crate) fn record(own: &History, entry: impl FnOnce() -> HistoryEntry) {
    let (mine, global) = (own.keeps(), GLOBAL.keeps());
    if !mine && !global {
        return;
    }
    let entry = Arc::new(entry());
    if mine {
        own.push(Arc::clone(&entry));
    }
    if global {
        GLOBAL.push(entry);
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// When the call finished.
    pub timestamp: SystemTime,
    /// The model string.
    pub model: String,
    /// The messages sent.
    pub messages: Vec<Message>,
    /// The request's parameters (messages left empty).
    pub request: LmRequest,
    /// Every completion's text.
    pub outputs: Vec<String>,
    /// Token counts (zero for cache hits).
    pub usage: Usage,
    /// Estimated cost in US dollars, when the LM has a price.
    pub cost_usd: Option<f64>,
    /// Whether the answer came from the cache.
    pub cache_hit: bool,
    /// Wall time of the call.
    pub latency: Duration,
    /// The base URL (credentials removed) of the endpoint that answered; `None` for a cache hit
    /// or an answer shared with an identical call in flight. Tells the endpoints of an LM over
    /// several apart ([`LmBuilder::endpoints`](crate::LmBuilder::endpoints)).
    pub endpoint: Option<String>,
}

/// The last `capacity` calls (oldest dropped first). DSPy's history is unbounded per LM, which
/// grows without limit in long runs; this one is not.
#[derive(Debug)]
pub(crate) struct History {
    capacity: AtomicUsize,
    /// Shared with the process-wide history: one entry, two owners.
    entries: Mutex<VecDeque<Arc<HistoryEntry>>>,
}

impl History {
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            capacity: AtomicUsize::new(capacity),
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    /// Whether this history records anything.
    fn keeps(&self) -> bool {
        self.capacity.load(Ordering::Relaxed) > 0
    }

    fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::Relaxed);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        while entries.len() > capacity {
            entries.pop_front();
        }
    }

    pub(crate) fn push(&self, entry: Arc<HistoryEntry>) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        if capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        while entries.len() >= capacity {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The last `n` entries, oldest first.
    pub(crate) fn last(&self, n: usize) -> Vec<HistoryEntry> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .skip(entries.len().saturating_sub(n))
            .map(|entry| HistoryEntry::clone(entry))
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Renders entries as DSPy's `inspect_history` prints them; `color` adds its ANSI colours.
pub fn render_history(entries: &[HistoryEntry], color: bool) -> String {
    let paint = |code: &str, text: &str| {
        if color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let mut out = String::new();
    for entry in entries {
        let _ = write!(
            out,
            "\n\n\n\n{}\n\n",
            paint("34", &format!("[{}]", iso_timestamp(entry.timestamp)))
        );
        for m in &entry.messages {
            let role = capitalize(m.role.as_str());
            let _ = write!(out, "{}\n\n", paint("31", &format!("{role} message:")));
            // An assistant message's `None` content beside its tool calls prints nothing.
            let null_content =
                m.role == Role::Assistant && !m.tool_calls.is_empty() && m.content == "";
            if !null_content {
                let _ = writeln!(out, "{}", shown(&m.content, &paint));
            }
            if !m.tool_calls.is_empty() {
                let _ = write!(out, "{}\n\n", paint("31", "Tool calls:"));
                for call in &m.tool_calls {
                    let line = format!("{}: {}", call.name, shown_arguments(&call.arguments));
                    let _ = write!(out, "{}\n\n", paint("32", line.trim_start()));
                }
            }
            out.push_str("\n\n");
        }
        let first = entry.outputs.first().map_or("", |s| s.trim());
        let response = if color { first.trim_start() } else { first };
        let _ = write!(
            out,
            "{}\n\n{}\n\n",
            paint("31", "Response:"),
            paint("32", response)
        );
        if entry.outputs.len() > 1 {
            let _ = writeln!(
                out,
                " \t (and {} other completions)",
                entry.outputs.len() - 1
            );
        }
    }
    out.push_str("\n\n\n\n");
    out
}

/// A message's content as DSPy prints it: the text stripped, or each part on its own line —
/// text stripped, images, audio and files as their placeholders (in blue when colored).
fn shown(content: &Content, paint: &dyn Fn(&str, &str) -> String) -> String {
    match content {
        Content::Text(text) => text.trim().to_string(),
        Content::Parts(parts) => parts
            .iter()
            .map(|part| match part.as_text() {
                Some(text) => text.trim().to_string(),
                None => paint("34", part.placeholder().trim()),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// A tool call's arguments as DSPy's `inspect_history` prints them: JSON text that reads as an
/// object or a list is re-printed as Python's `json.dumps(..., ensure_ascii=False)`, another
/// JSON value as Python's `str()` of it, text that is not JSON as it is.
fn shown_arguments(arguments: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(value @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
            let mut out = String::with_capacity(arguments.len());
            dspex_core::pycompat::text::write_py_json(&mut out, &value);
            out
        }
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) => "None".to_string(),
        Ok(serde_json::Value::Bool(b)) => if b { "True" } else { "False" }.to_string(),
        Ok(serde_json::Value::Number(n)) => {
            let mut out = String::new();
            dspex_core::pycompat::text::write_py_number(&mut out, &n);
            out
        }
        Err(_) => arguments.to_string(),
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| {
            c.to_uppercase()
                .chain(chars.flat_map(char::to_lowercase))
                .collect()
        })
        .unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` in UTC (DSPy prints local time; UTC needs no time-zone data).
fn iso_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}",
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(outputs: &[&str]) -> HistoryEntry {
        HistoryEntry {
            timestamp: SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            model: "openai/m".into(),
            messages: vec![Message::system(" Be brief. "), Message::user("hi\n")],
            request: LmRequest::default(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            usage: Usage::default(),
            cost_usd: None,
            cache_hit: false,
            latency: Duration::ZERO,
            endpoint: None,
        }
    }

    #[test]
    fn bounded() {
        let h = History::new(3);
        for i in 0..10 {
            h.push(Arc::new(entry(&[&i.to_string()])));
        }
        assert_eq!(h.len(), 3);
        let last: Vec<_> = h
            .last(2)
            .into_iter()
            .map(|e| e.outputs[0].clone())
            .collect();
        assert_eq!(last, ["8", "9"]);
        let none = History::new(0);
        none.push(Arc::new(entry(&["x"])));
        assert_eq!(none.len(), 0);
    }

    #[test]
    fn renders_like_dspy() {
        let text = render_history(&[entry(&[" Hello! ", "Hi"])], false);
        assert_eq!(
            text,
            "\n\n\n\n[2023-11-14T22:13:20.123456]\n\nSystem message:\n\nBe brief.\n\n\nUser message:\n\nhi\n\n\nResponse:\n\nHello!\n\n \t (and 1 other completions)\n\n\n\n\n"
        );
        let colored = render_history(&[entry(&["ok"])], true);
        assert!(colored.contains("\x1b[34m[2023-11-14T22:13:20.123456]\x1b[0m"));
        assert!(colored.contains("\x1b[32mok\x1b[0m"));
    }

    #[test]
    fn tool_calls_and_tool_messages_render_like_dspy() {
        use crate::types::MessageToolCall;
        let mut e = entry(&["done"]);
        e.messages = vec![
            Message::user("Weather?"),
            Message::assistant_tool_calls(
                "",
                vec![
                    MessageToolCall::new("c1", "get_weather", "{\"city\":\"Zürich\"}"),
                    MessageToolCall::new("c2", "g", "not json"),
                ],
            ),
            Message::tool("c1", "get_weather", "Sunny"),
            Message::assistant_tool_calls("Checking.", vec![MessageToolCall::new("c3", "f", "5")]),
        ];
        // DSPy 3.4.1's `pretty_print_history` of the same messages (without colours).
        assert_eq!(
            render_history(&[e], false),
            "\n\n\n\n[2023-11-14T22:13:20.123456]\n\nUser message:\n\nWeather?\n\n\nAssistant message:\n\nTool calls:\n\nget_weather: {\"city\": \"Zürich\"}\n\ng: not json\n\n\n\nTool message:\n\nSunny\n\n\nAssistant message:\n\nChecking.\nTool calls:\n\nf: 5\n\n\n\nResponse:\n\ndone\n\n\n\n\n\n"
        );
    }

    #[test]
    fn media_parts_show_as_dspy_placeholders() {
        use crate::types::{ContentPart, FilePart, InputAudio};
        let mut e = entry(&["ok"]);
        e.messages = vec![Message::user(vec![
            ContentPart::text("Look:\n"),
            ContentPart::image_url("https://example.com/cat.png"),
            ContentPart::image_url("data:image/png;base64,iVBORw0KGgo="),
            ContentPart::InputAudio {
                input_audio: InputAudio {
                    data: "UklGRg==".into(),
                    format: "wav".into(),
                },
            },
            ContentPart::File {
                file: FilePart {
                    file_data: Some("data:application/pdf;base64,JVBER".into()),
                    file_id: None,
                    filename: Some("a.pdf".into()),
                },
            },
        ])];
        let text = render_history(&[e], false);
        assert!(
            text.contains(
                "User message:\n\nLook:\n<image_url: https://example.com/cat.png>\n<data:image/png;base64,<IMAGE BASE 64 ENCODED(12)>\n<audio format='wav' base64-encoded, length=8>\n<file: name:a.pdf, id:, data_length:33>\n\n\n"
            ),
            "{text}"
        );
        let colored = render_history(&[entry(&["ok"])], true);
        assert!(!colored.contains("<image_url"));
    }
}

//! The optimization report: one self-contained HTML page from a job's JSONL log (the format is
//! on [`Job`](super::Job)) — scores per trial with the running best, LM budget over time, the
//! Pareto front and lineage of GEPA's candidates, the compiled program beside the student, and
//! a per-example before/after table.
//!
//! The page has no script and loads nothing: the charts are inline SVG, written here from the
//! log (a plotting crate would add a dependency and, for the interactive ones, a script; the
//! charts are a few hundred lines of markup). Every plotted point carries its values as `data-`
//! attributes, so a test (or a reader's browser tools) can check it against the log.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What reading a log for a report can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The log (or the folder holding it) could not be read, or the page written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A folder was given that holds no JSONL log (or several, none named `events.jsonl` or
    /// `trials.jsonl`).
    #[error("{}: no optimization log in this folder ({found})", path.display())]
    NoLog {
        /// The folder.
        path: PathBuf,
        /// What was found instead.
        found: String,
    },
    /// A line of the log is not a JSON object of the log's format.
    #[error("{}, line {line}: {message}", path.display())]
    BadLine {
        /// The log.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The log has no trials to plot.
    #[error("{}: the log holds no trials", path.display())]
    NoTrials {
        /// The log.
        path: PathBuf,
    },
}

impl From<ReportError> for Error {
    fn from(e: ReportError) -> Self {
        Error::step("writing the optimization report", e)
    }
}

/// LM usage as a log line records it (totals so far).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoggedUsage {
    /// Calls answered by the provider.
    pub lm_calls: u64,
    /// Tokens, prompt and completion.
    pub total_tokens: u64,
    /// Estimated cost in US dollars, when the LM has a price.
    pub cost_usd: Option<f64>,
}

/// One trial of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedTrial {
    /// The optimizer's trial number.
    pub trial: u64,
    /// Its score.
    pub score: f64,
    /// Whether it was scored on a minibatch.
    pub minibatch: bool,
    /// The optimizer's phase then.
    pub phase: String,
    /// Milliseconds since the job started.
    pub elapsed_ms: u64,
    /// The job's LM usage when the trial ended.
    pub usage: Option<LoggedUsage>,
    /// What was tried.
    pub candidate: Map<String, Value>,
    /// The score of each validation example, for full evaluations that kept them.
    pub example_scores: Option<Vec<f64>>,
}

/// A job's log, read: what [`write_report`] draws.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunLog {
    /// The optimizer's name, from the `start` line.
    pub optimizer: Option<String>,
    /// The student's saved state, from the `start` line.
    pub start_state: Option<Value>,
    /// The trials, in log order.
    pub trials: Vec<LoggedTrial>,
    /// The compiled program's saved state, from the `end` line.
    pub end_state: Option<Value>,
    /// The run's error, when it failed.
    pub error: Option<String>,
    /// The last usage the log records.
    pub usage: Option<LoggedUsage>,
    /// Milliseconds from the start to the last line.
    pub elapsed_ms: u64,
}

/// A GEPA candidate as the report draws it.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    index: u64,
    parents: Vec<u64>,
    score: f64,
    val_scores: Vec<f64>,
}

impl RunLog {
    /// Reads a log: a JSONL file, or a folder holding one (`events.jsonl`, `trials.jsonl`, or
    /// the only `*.jsonl` there), or else a GEPA `log_dir`'s `gepa_state.json`
    /// ([`from_gepa_state`](Self::from_gepa_state)).
    ///
    /// # Errors
    ///
    /// [`ReportError`] when the file cannot be read, a line is not of the log's format, or
    /// no trial is in it.
    pub fn read(path: &Path) -> std::result::Result<RunLog, ReportError> {
        let file = log_file(path)?;
        let text = std::fs::read_to_string(&file).map_err(|source| ReportError::Io {
            path: file.clone(),
            source,
        })?;
        let log = if file.file_name().is_some_and(|n| n == GEPA_STATE) {
            Self::from_gepa_state(&text).map_err(|message| ReportError::BadLine {
                path: file.clone(),
                line: 1,
                message,
            })?
        } else {
            Self::parse(&text).map_err(|(line, message)| ReportError::BadLine {
                path: file.clone(),
                line,
                message,
            })?
        };
        if log.trials.is_empty() {
            return Err(ReportError::NoTrials { path: file });
        }
        Ok(log)
    }

    /// Reads a log's text; the error is the line number (from 1) and what is wrong with it.
    /// A last line cut short (a job killed mid-write) is skipped.
    pub fn parse(text: &str) -> std::result::Result<RunLog, (usize, String)> {
        let mut log = RunLog::default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, raw) in lines.iter().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let value: Value = match serde_json::from_str(raw) {
                Ok(v) => v,
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
                Err(e) => return Err((line, format!("not JSON: {e}"))),
            };
            let Value::Object(map) = value else {
                return Err((line, "not a JSON object".into()));
            };
            if let Some(ms) = map.get("elapsed_ms").and_then(Value::as_u64) {
                log.elapsed_ms = log.elapsed_ms.max(ms);
            }
            if let Some(u) = map.get("usage") {
                log.usage = Some(usage(u));
            }
            // Logs written before events were named hold trials only.
            let event = map.get("event").and_then(Value::as_str).unwrap_or("trial");
            match event {
                "start" => {
                    log.optimizer = map
                        .get("optimizer")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    log.start_state = map.get("state").cloned();
                }
                "end" => {
                    log.end_state = map.get("state").cloned();
                    log.error = map.get("error").and_then(Value::as_str).map(str::to_string);
                }
                "trial" => log.trials.push(trial(&map).map_err(|m| (line, m))?),
                // Other events (an optimizer's own) are not drawn.
                _ => {}
            }
        }
        Ok(log)
    }

    /// A GEPA run from the state its `log_dir` keeps (`gepa_state.json`): each candidate as a
    /// full evaluation (its mean valset score, parents and per-instance scores), the seed's
    /// instructions as the start and the best candidate's as the end. Timing and usage are not
    /// in the state.
    pub fn from_gepa_state(text: &str) -> std::result::Result<RunLog, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let state = doc.get("state").unwrap_or(&doc);
        let field = |key: &str| {
            state
                .get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| format!("not a GEPA state: no `{key}` list"))
        };
        let components: Vec<&str> = field("components")?
            .iter()
            .map(|c| c.as_str().unwrap_or_default())
            .collect();
        let candidates = field("candidates")?;
        let parents = field("parents")?;
        let val_scores = field("val_scores")?;
        let mut log = RunLog {
            optimizer: Some("GEPA".into()),
            ..RunLog::default()
        };
        let texts = |i: usize| -> Vec<&str> {
            candidates
                .get(i)
                .and_then(Value::as_array)
                .map(|t| t.iter().map(|x| x.as_str().unwrap_or_default()).collect())
                .unwrap_or_default()
        };
        let program = |i: usize| -> Value {
            Value::Object(
                components
                    .iter()
                    .zip(texts(i))
                    .map(|(c, t)| {
                        (
                            (*c).to_string(),
                            serde_json::json!({"signature": {"instructions": t}}),
                        )
                    })
                    .collect(),
            )
        };
        let mut best: Option<(f64, usize)> = None;
        for (i, scores) in val_scores.iter().enumerate() {
            let scores: Vec<f64> = scores
                .as_array()
                .map(|s| s.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect())
                .unwrap_or_default();
            let mean = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
            if best.is_none_or(|(b, _)| mean > b) {
                best = Some((mean, i));
            }
            let parent_ids: Vec<Value> = parents
                .get(i)
                .and_then(Value::as_array)
                .map(|p| p.iter().filter(|x| !x.is_null()).cloned().collect())
                .unwrap_or_default();
            let mut candidate = Map::new();
            candidate.insert("index".into(), i.into());
            candidate.insert("parents".into(), Value::Array(parent_ids));
            candidate.insert("val_scores".into(), scores.clone().into());
            log.trials.push(LoggedTrial {
                trial: i as u64,
                score: mean,
                minibatch: false,
                phase: "GEPA candidate".into(),
                elapsed_ms: 0,
                usage: None,
                candidate,
                example_scores: Some(scores),
            });
        }
        if let Some((_, b)) = best {
            log.start_state = Some(program(0));
            log.end_state = Some(program(b));
        }
        Ok(log)
    }

    /// The trials scored on the whole validation set.
    fn full(&self) -> impl Iterator<Item = &LoggedTrial> {
        self.trials.iter().filter(|t| !t.minibatch)
    }

    /// GEPA's candidates: full trials whose candidate has an `index` and `val_scores`.
    fn candidates(&self) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        for t in self.full() {
            let c = &t.candidate;
            let (Some(index), Some(Value::Array(scores))) =
                (c.get("index").and_then(Value::as_u64), c.get("val_scores"))
            else {
                continue;
            };
            if out.iter().any(|o| o.index == index) {
                continue;
            }
            out.push(Candidate {
                index,
                parents: c
                    .get("parents")
                    .and_then(Value::as_array)
                    .map(|p| p.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default(),
                score: t.score,
                val_scores: scores
                    .iter()
                    .map(|s| s.as_f64().unwrap_or(f64::NAN))
                    .collect(),
            });
        }
        out
    }
}

fn usage(v: &Value) -> LoggedUsage {
    LoggedUsage {
        lm_calls: v.get("lm_calls").and_then(Value::as_u64).unwrap_or(0),
        total_tokens: v.get("total_tokens").and_then(Value::as_u64).unwrap_or(0),
        cost_usd: v.get("cost_usd").and_then(Value::as_f64),
    }
}

fn trial(map: &Map<String, Value>) -> std::result::Result<LoggedTrial, String> {
    let number = |key: &str| {
        map.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("a trial needs a numeric `{key}`"))
    };
    let example_scores = match map.get("example_scores") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_f64().ok_or("`example_scores` holds a non-number"))
                .collect::<std::result::Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("`example_scores` is not a list".into()),
    };
    Ok(LoggedTrial {
        trial: map
            .get("trial")
            .and_then(Value::as_u64)
            .ok_or("a trial needs a whole-number `trial`")?,
        score: number("score")?,
        minibatch: map
            .get("minibatch")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        phase: map
            .get("phase")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        elapsed_ms: map.get("elapsed_ms").and_then(Value::as_u64).unwrap_or(0),
        usage: map.get("usage").map(usage),
        candidate: map
            .get("candidate")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        example_scores,
    })
}

/// The state file GEPA keeps in its `log_dir`.
const GEPA_STATE: &str = "gepa_state.json";

/// The JSONL file behind `path` (or a GEPA state file).
fn log_file(path: &Path) -> std::result::Result<PathBuf, ReportError> {
    let meta = std::fs::metadata(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(path.to_path_buf());
    }
    for name in ["events.jsonl", "trials.jsonl"] {
        if path.join(name).is_file() {
            return Ok(path.join(name));
        }
    }
    let entries = std::fs::read_dir(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    logs.sort();
    match logs.len() {
        1 => Ok(logs.remove(0)),
        // A GEPA `log_dir` of a run that kept no job log: its saved state.
        0 if path.join(GEPA_STATE).is_file() => Ok(path.join(GEPA_STATE)),
        0 => Err(ReportError::NoLog {
            path: path.to_path_buf(),
            found: "no .jsonl file".into(),
        }),
        n => Err(ReportError::NoLog {
            path: path.to_path_buf(),
            found: format!("{n} .jsonl files and no events.jsonl or trials.jsonl"),
        }),
    }
}

/// Writes the report of the log at `log` (a JSONL file or a folder holding one) to `out`:
/// one HTML page that needs nothing else (`dspex report LOG -o report.html` does the same).
///
/// ```
/// use dspex_runtime::optimize::write_report;
///
/// let dir = tempfile::tempdir().unwrap();
/// let log = dir.path().join("trials.jsonl");
/// std::fs::write(
///     &log,
///     r#"{"event":"trial","trial":0,"score":40.0,"minibatch":false,"candidate":{}}
/// {"event":"trial","trial":1,"score":55.0,"minibatch":false,"candidate":{}}
/// "#,
/// )
/// .unwrap();
/// write_report(&log, &dir.path().join("report.html"))?;
/// let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
/// assert!(page.contains(r#"data-trial="1" data-score="55""#));
/// # Ok::<(), dspex_runtime::Error>(())
/// ```
///
/// # Errors
///
/// [`ReportError`] (as [`Error::Step`]) when the log cannot be read or holds no trial, or the
/// page cannot be written.
pub fn write_report(log: &Path, out: &Path) -> Result<()> {
    let run = RunLog::read(log)?;
    let title = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let page = render(&run, &title);
    std::fs::write(out, page).map_err(|source| ReportError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number as the page shows it: up to 2 decimals, no trailing zeros.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A value exactly as the log has it (for `data-` attributes the tests compare).
fn exact(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1d2330;padding:0 16px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde;padding-bottom:4px}\
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #dde;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f3f4f8}.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#6b7280}\
.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}.box{border:1px solid #dde;border-radius:6px;padding:8px 10px;white-space:pre-wrap;font:12px/1.4 ui-monospace,monospace;max-height:340px;overflow:auto}\
svg{background:#fff;border:1px solid #e5e7eb;border-radius:6px}.axis{stroke:#9ca3af;stroke-width:1}.grid{stroke:#eef0f4}\
.lbl{font:11px sans-serif;fill:#6b7280}.full{fill:#2563eb}.mini{fill:#fff;stroke:#93c5fd;stroke-width:1.5}.best{fill:none;stroke:#dc2626;stroke-width:2}\
.calls{fill:none;stroke:#059669;stroke-width:2}.tokens{fill:none;stroke:#7c3aed;stroke-width:2}.cost{fill:none;stroke:#d97706;stroke-width:2}\
.up{color:#059669}.down{color:#dc2626}td.front{background:#dcfce7;font-weight:600}.node{fill:#eff6ff;stroke:#2563eb}.node.best{fill:#fee2e2;stroke:#dc2626}.edge{stroke:#9ca3af;fill:none}";

/// Renders the page.
pub(crate) fn render(run: &RunLog, title: &str) -> String {
    let mut h = String::new();
    let name = run.optimizer.as_deref().unwrap_or("Optimization");
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} report</title><style>{STYLE}</style></head><body>",
        esc(name)
    );
    let _ = write!(
        h,
        "<h1>{} report</h1><div class=\"muted\">{}</div>",
        esc(name),
        esc(title)
    );
    summary(&mut h, run);
    score_chart(&mut h, run);
    budget_charts(&mut h, run);
    let candidates = run.candidates();
    if !candidates.is_empty() {
        pareto(&mut h, &candidates);
        lineage(&mut h, &candidates);
    }
    programs(&mut h, run);
    per_example(&mut h, run, &candidates);
    h.push_str("</body></html>\n");
    h
}

fn summary(h: &mut String, run: &RunLog) {
    let full: Vec<&LoggedTrial> = run.full().collect();
    let best = full.iter().map(|t| t.score).fold(f64::NAN, f64::max);
    let first = full.first().map(|t| t.score);
    h.push_str("<h2>Summary</h2><table>");
    let mut row = |k: &str, v: String| {
        let _ = write!(
            h,
            "<tr><th>{}</th><td class=\"num\">{}</td></tr>",
            esc(k),
            v
        );
    };
    row("trials", run.trials.len().to_string());
    row("full evaluations", full.len().to_string());
    row(
        "first full score",
        first.map(num).unwrap_or_else(|| "–".into()),
    );
    row("best full score", num(best));
    row(
        "wall time",
        format!("{:.1} s", run.elapsed_ms as f64 / 1000.0),
    );
    if let Some(u) = run.usage {
        row("LM calls", u.lm_calls.to_string());
        row("tokens", u.total_tokens.to_string());
        row(
            "cost",
            u.cost_usd
                .map(|c| format!("${c:.4}"))
                .unwrap_or_else(|| "unknown (no price)".into()),
        );
    }
    if let Some(e) = &run.error {
        row("error", esc(e));
    }
    h.push_str("</table>");
}

/// A chart's frame: `(width, height, left, right, top, bottom)` margins.
const W: f64 = 900.0;
const H: f64 = 300.0;
const L: f64 = 70.0;
const R: f64 = 16.0;
const T: f64 = 14.0;
const B: f64 = 36.0;

/// Maps data ranges to the frame.
struct Scale {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Scale {
    /// A scale over the data's ranges, widened to round tick values.
    fn new(xs: impl Iterator<Item = f64> + Clone, ys: impl Iterator<Item = f64> + Clone) -> Self {
        let (x0, x1) = nice_bounds(bounds(xs));
        let (y0, y1) = nice_bounds(bounds(ys));
        Scale { x0, x1, y0, y1 }
    }
    fn x(&self, x: f64) -> f64 {
        L + (x - self.x0) / (self.x1 - self.x0) * (W - L - R)
    }
    fn y(&self, y: f64) -> f64 {
        H - B - (y - self.y0) / (self.y1 - self.y0) * (H - T - B)
    }
}

/// A round step for about 4 intervals over `span`: 1, 2 or 5 times a power of ten.
fn nice_step(span: f64) -> f64 {
    let raw = span / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    if step > 0.0 && step.is_finite() {
        step
    } else {
        1.0
    }
}

/// `(lo, hi)` widened outward to multiples of a round step (an empty or flat range gets one).
fn nice_bounds((lo, hi): (f64, f64)) -> (f64, f64) {
    let (lo, hi) = if !lo.is_finite() || !hi.is_finite() {
        (0.0, 1.0)
    } else if hi <= lo {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    };
    let step = nice_step(hi - lo);
    ((lo / step).floor() * step, (hi / step).ceil() * step)
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

/// Axes with a tick at each round step and their labels.
fn axes(h: &mut String, s: &Scale, x_label: &str, y_label: &str) {
    let ticks = |lo: f64, hi: f64| -> Vec<f64> {
        let step = nice_step(hi - lo);
        let n = ((hi - lo) / step).round() as i64;
        (0..=n.clamp(0, 20)).map(|i| lo + i as f64 * step).collect()
    };
    for yv in ticks(s.y0, s.y1) {
        let y = s.y(yv);
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{L}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"lbl\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - R,
            L - 6.0,
            y + 4.0,
            num(yv)
        );
    }
    for xv in ticks(s.x0, s.x1) {
        let _ = write!(
            h,
            "<text class=\"lbl\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            s.x(xv),
            H - B + 16.0,
            num(xv)
        );
    }
    let _ = write!(
        h,
        "<line class=\"axis\" x1=\"{L}\" x2=\"{L}\" y1=\"{T}\" y2=\"{}\"/><line class=\"axis\" x1=\"{L}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>\
         <text class=\"lbl\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text><text class=\"lbl\" x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>",
        H - B,
        W - R,
        H - B,
        H - B,
        (L + W - R) / 2.0,
        H - 4.0,
        esc(x_label),
        H / 2.0,
        H / 2.0,
        esc(y_label)
    );
}

fn score_chart(h: &mut String, run: &RunLog) {
    h.push_str("<h2>Score per trial</h2><p class=\"muted\">Filled: scored on the whole validation set; hollow: on a minibatch. Red: the best full score so far.</p>");
    let s = Scale::new(
        run.trials.iter().map(|t| t.trial as f64),
        std::iter::once(0.0).chain(run.trials.iter().map(|t| t.score)),
    );
    let _ = write!(
        h,
        "<svg id=\"scores\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"score per trial\">"
    );
    axes(h, &s, "trial", "score");
    // The running best over full evaluations, as a step line.
    let mut best = f64::NEG_INFINITY;
    let mut path = String::new();
    for t in run.full() {
        if !t.score.is_finite() {
            continue;
        }
        let (x, y_old) = (s.x(t.trial as f64), s.y(best));
        if t.score > best {
            if path.is_empty() {
                let _ = write!(path, "M{x:.1},{:.1}", s.y(t.score));
            } else {
                let _ = write!(path, " L{x:.1},{y_old:.1} L{x:.1},{:.1}", s.y(t.score));
            }
            best = t.score;
        } else if !path.is_empty() {
            let _ = write!(path, " L{x:.1},{y_old:.1}");
        }
    }
    if !path.is_empty() {
        let _ = write!(h, "<path class=\"best\" d=\"{path}\"/>");
    }
    for t in &run.trials {
        if !t.score.is_finite() {
            continue;
        }
        let _ = write!(
            h,
            "<circle class=\"pt {}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" data-trial=\"{}\" data-score=\"{}\" data-minibatch=\"{}\"><title>trial {}: {} ({}{})</title></circle>",
            if t.minibatch { "mini" } else { "full" },
            s.x(t.trial as f64),
            s.y(t.score),
            t.trial,
            exact(t.score),
            t.minibatch,
            t.trial,
            num(t.score),
            if t.minibatch { "minibatch, " } else { "" },
            esc(&t.phase)
        );
    }
    h.push_str("</svg>");
}

fn budget_charts(h: &mut String, run: &RunLog) {
    let points: Vec<(f64, LoggedUsage)> = run
        .trials
        .iter()
        .filter_map(|t| t.usage.map(|u| (t.elapsed_ms as f64 / 1000.0, u)))
        .collect();
    if points.is_empty() {
        return;
    }
    h.push_str("<h2>Budget over time</h2><p class=\"muted\">LM calls, tokens and cost used by the job, at the end of each trial.</p>");
    type Pick = fn(&LoggedUsage) -> Option<f64>;
    let series: [(&str, &str, Pick); 3] = [
        ("calls", "LM calls", |u| Some(u.lm_calls as f64)),
        ("tokens", "tokens", |u| Some(u.total_tokens as f64)),
        ("cost", "cost (USD)", |u| u.cost_usd),
    ];
    for (class, label, pick) in series {
        let values: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|(x, u)| pick(u).map(|y| (*x, y)))
            .collect();
        if values.is_empty() {
            let _ = write!(
                h,
                "<p class=\"muted\">{}: not known (the LM has no price).</p>",
                esc(label)
            );
            continue;
        }
        let s = Scale::new(
            values.iter().map(|(x, _)| *x),
            std::iter::once(0.0).chain(values.iter().map(|(_, y)| *y)),
        );
        let _ = write!(
            h,
            "<svg id=\"budget-{class}\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
            esc(label)
        );
        axes(h, &s, "seconds", label);
        let d: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, (x, y))| {
                format!(
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { "L" },
                    s.x(*x),
                    s.y(*y)
                )
            })
            .collect();
        let _ = write!(h, "<path class=\"{class}\" d=\"{}\"/>", d.join(" "));
        for (x, y) in &values {
            let _ = write!(
                h,
                "<circle class=\"{class}-pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" data-seconds=\"{}\" data-value=\"{}\"/>",
                s.x(*x),
                s.y(*y),
                exact(*x),
                exact(*y)
            );
        }
        h.push_str("</svg>");
    }
}

/// The first of `items` with the highest `score` (ties keep the earlier, as the optimizers do).
fn first_best<'a, T>(
    items: impl IntoIterator<Item = &'a T>,
    score: impl Fn(&T) -> f64,
) -> Option<&'a T> {
    items.into_iter().fold(None, |best, item| match best {
        Some(b) if score(b) >= score(item) => Some(b),
        _ => Some(item),
    })
}

/// For each validation instance, the candidates with the best score on it.
fn fronts(candidates: &[Candidate]) -> Vec<Vec<u64>> {
    let width = candidates
        .iter()
        .map(|c| c.val_scores.len())
        .max()
        .unwrap_or(0);
    (0..width)
        .map(|i| {
            let best = candidates
                .iter()
                .filter_map(|c| c.val_scores.get(i).copied())
                .fold(f64::NEG_INFINITY, f64::max);
            candidates
                .iter()
                .filter(|c| c.val_scores.get(i) == Some(&best))
                .map(|c| c.index)
                .collect()
        })
        .collect()
}

fn pareto(h: &mut String, candidates: &[Candidate]) {
    let fronts = fronts(candidates);
    let on_front: std::collections::BTreeSet<u64> = fronts.iter().flatten().copied().collect();
    let _ = write!(
        h,
        "<h2>Pareto front over validation instances</h2><p class=\"muted\">Each column is a validation example; a green cell is a best score on it. {} of {} candidates are on the front.</p><table id=\"pareto\"><tr><th>candidate</th><th>parents</th><th class=\"num\">score</th>",
        on_front.len(),
        candidates.len()
    );
    for i in 0..fronts.len() {
        let _ = write!(h, "<th class=\"num\">{i}</th>");
    }
    h.push_str("</tr>");
    for c in candidates {
        let parents: Vec<String> = c.parents.iter().map(u64::to_string).collect();
        let _ = write!(
            h,
            "<tr data-candidate=\"{}\"><td>{}</td><td>{}</td><td class=\"num\">{}</td>",
            c.index,
            c.index,
            if parents.is_empty() {
                "–".into()
            } else {
                parents.join(", ")
            },
            num(c.score)
        );
        for (i, front) in fronts.iter().enumerate() {
            let v = c.val_scores.get(i).copied().unwrap_or(f64::NAN);
            let _ = write!(
                h,
                "<td class=\"num{}\" data-instance=\"{i}\" data-score=\"{}\">{}</td>",
                if front.contains(&c.index) {
                    " front"
                } else {
                    ""
                },
                exact(v),
                num(v)
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

fn lineage(h: &mut String, candidates: &[Candidate]) {
    // Generation = 1 + the deepest parent's; rows by generation, in discovery order.
    let mut depth: BTreeMap<u64, usize> = BTreeMap::new();
    for c in candidates {
        let d = c
            .parents
            .iter()
            .filter_map(|p| depth.get(p))
            .max()
            .map_or(0, |d| d + 1);
        depth.insert(c.index, d);
    }
    let rows = depth.values().max().map_or(1, |d| d + 1);
    let mut per_row: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for c in candidates {
        per_row.entry(depth[&c.index]).or_default().push(c.index);
    }
    let widest = per_row.values().map(Vec::len).max().unwrap_or(1);
    let width = (widest as f64 * 90.0 + 40.0).max(300.0);
    let height = rows as f64 * 70.0 + 30.0;
    let mut pos: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for (row, ids) in &per_row {
        let step = width / (ids.len() as f64 + 1.0);
        for (i, id) in ids.iter().enumerate() {
            pos.insert(*id, (step * (i as f64 + 1.0), 30.0 + *row as f64 * 70.0));
        }
    }
    let best = first_best(candidates, |c| c.score).map(|c| c.index);
    let _ = write!(
        h,
        "<h2>Candidate lineage</h2><p class=\"muted\">Each candidate below its parent(s); two parents: a merge. Red: the best.</p><svg id=\"lineage\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\">"
    );
    for c in candidates {
        for p in &c.parents {
            if let (Some(a), Some(b)) = (pos.get(p), pos.get(&c.index)) {
                let _ = write!(
                    h,
                    "<path class=\"edge\" d=\"M{:.1},{:.1} L{:.1},{:.1}\" data-from=\"{p}\" data-to=\"{}\"/>",
                    a.0,
                    a.1 + 16.0,
                    b.0,
                    b.1 - 16.0,
                    c.index
                );
            }
        }
    }
    for c in candidates {
        let (x, y) = pos[&c.index];
        let _ = write!(
            h,
            "<g data-candidate=\"{}\"><rect class=\"node{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"76\" height=\"32\" rx=\"6\"/><text class=\"lbl\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">#{} · {}</text></g>",
            c.index,
            if Some(c.index) == best { " best" } else { "" },
            x - 38.0,
            y - 16.0,
            y + 4.0,
            c.index,
            num(c.score)
        );
    }
    h.push_str("</svg>");
}

/// The predictors of a saved state: `(name, state)`; a bare predictor's state is its own.
fn predictors(state: &Value) -> Vec<(String, &Map<String, Value>)> {
    let Some(map) = state.as_object() else {
        return Vec::new();
    };
    if map.contains_key("signature") && map.contains_key("demos") {
        return vec![("self".into(), map)];
    }
    map.iter()
        .filter(|(k, _)| k.as_str() != "metadata")
        .filter_map(|(k, v)| v.as_object().map(|o| (k.clone(), o)))
        .filter(|(_, o)| o.contains_key("signature"))
        .collect()
}

fn instructions(p: &Map<String, Value>) -> &str {
    p.get("signature")
        .and_then(|s| s.get("instructions"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn demos_text(p: &Map<String, Value>) -> String {
    let demos = p.get("demos").and_then(Value::as_array);
    match demos {
        None => "not recorded".into(),
        Some(d) if d.is_empty() => "no demos".into(),
        Some(d) => d
            .iter()
            .enumerate()
            .map(|(i, demo)| {
                let fields = demo
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| {
                                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                                format!("  {k}: {v}")
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                format!("demo {}\n{fields}", i + 1)
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn programs(h: &mut String, run: &RunLog) {
    let (Some(start), Some(end)) = (&run.start_state, &run.end_state) else {
        return;
    };
    h.push_str("<h2>Program: before and after</h2>");
    let before = predictors(start);
    for (name, after) in predictors(end) {
        let old = before.iter().find(|(n, _)| *n == name).map(|(_, p)| *p);
        let changed = old.is_none_or(|o| instructions(o) != instructions(after));
        let _ = write!(
            h,
            "<h3>{}{}</h3><div class=\"cols\"><div><b>instructions before</b><div class=\"box\" data-predictor=\"{}\" data-side=\"before\">{}</div></div><div><b>instructions after</b><div class=\"box\" data-predictor=\"{}\" data-side=\"after\">{}</div></div>",
            esc(&name),
            if changed {
                ""
            } else {
                " <span class=\"muted\">(instructions unchanged)</span>"
            },
            esc(&name),
            esc(old.map(instructions).unwrap_or("")),
            esc(&name),
            esc(instructions(after))
        );
        let _ = write!(
            h,
            "<div><b>demos before</b><div class=\"box\">{}</div></div><div><b>demos after</b><div class=\"box\">{}</div></div></div>",
            esc(&old.map(demos_text).unwrap_or_default()),
            esc(&demos_text(after))
        );
    }
}

fn per_example(h: &mut String, run: &RunLog, candidates: &[Candidate]) {
    // GEPA: the seed candidate against the best; otherwise the first full evaluation that kept
    // its example scores against the best-scoring one.
    let pair: Option<(Vec<f64>, Vec<f64>)> = if let Some(seed) = candidates.first() {
        first_best(candidates, |c| c.score)
            .map(|best| (seed.val_scores.clone(), best.val_scores.clone()))
    } else {
        let with: Vec<&LoggedTrial> = run.full().filter(|t| t.example_scores.is_some()).collect();
        let first = with.first();
        let best = first_best(with.iter().copied(), |t| t.score);
        match (first, best) {
            (Some(f), Some(b)) => Some((
                f.example_scores.clone().unwrap_or_default(),
                b.example_scores.clone().unwrap_or_default(),
            )),
            _ => None,
        }
    };
    let Some((before, after)) = pair else {
        return;
    };
    let better = before.iter().zip(&after).filter(|(b, a)| a > b).count();
    let worse = before.iter().zip(&after).filter(|(b, a)| a < b).count();
    let _ = write!(
        h,
        "<h2>Per example: first evaluation and best</h2><p class=\"muted\">{better} better, {worse} worse, {} the same.</p><table id=\"examples\"><tr><th class=\"num\">example</th><th class=\"num\">before</th><th class=\"num\">after</th><th>change</th></tr>",
        before.len().min(after.len()) - better - worse
    );
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let change = if a > b {
            "<span class=\"up\">▲ better</span>"
        } else if a < b {
            "<span class=\"down\">▼ worse</span>"
        } else {
            ""
        };
        let _ = write!(
            h,
            "<tr data-example=\"{i}\"><td class=\"num\">{i}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{change}</td></tr>",
            num(*b),
            num(*a)
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(v: Value) -> String {
        v.to_string() + "\n"
    }

    #[test]
    fn reads_every_event_and_skips_a_cut_last_line() {
        let text = line(
            json!({"event": "start", "optimizer": "GEPA", "state": {"p": {"signature": {"instructions": "old"}, "demos": []}}, "elapsed_ms": 0}),
        ) + &line(
            json!({"event": "trial", "trial": 0, "score": 50.0, "minibatch": false, "candidate": {"index": 0, "parents": [], "val_scores": [1.0, 0.0]}, "elapsed_ms": 10, "usage": {"lm_calls": 4, "total_tokens": 100, "cost_usd": null}}),
        ) + &line(
            json!({"trial": 1, "score": 100.0, "minibatch": true, "candidate": {}}),
        ) + &line(
            json!({"event": "trial", "trial": 2, "score": 100.0, "minibatch": false, "candidate": {"index": 1, "parents": [0], "val_scores": [1.0, 1.0]}, "elapsed_ms": 30, "usage": {"lm_calls": 9, "total_tokens": 300, "cost_usd": 0.5}}),
        ) + &line(
            json!({"event": "end", "state": {"p": {"signature": {"instructions": "new"}, "demos": []}}, "elapsed_ms": 31}),
        ) + "{\"event\": \"tri";
        let log = RunLog::parse(&text).unwrap();
        assert_eq!(log.optimizer.as_deref(), Some("GEPA"));
        assert_eq!(log.trials.len(), 3);
        assert!(log.trials[1].minibatch, "a line without `event` is a trial");
        assert_eq!(log.elapsed_ms, 31);
        assert_eq!(
            log.usage,
            Some(LoggedUsage {
                lm_calls: 9,
                total_tokens: 300,
                cost_usd: Some(0.5)
            })
        );
        let candidates = log.candidates();
        assert_eq!(candidates.len(), 2);
        assert_eq!(fronts(&candidates), vec![vec![0, 1], vec![1]]);
        let page = render(&log, "x");
        assert!(page.contains(r#"data-trial="2" data-score="100" data-minibatch="false""#));
        assert!(page.contains(r#"data-from="0" data-to="1""#));
        assert!(page.contains(">new</div>") && page.contains(">old</div>"));
        assert!(page.contains("1 better, 0 worse, 1 the same."));
        assert!(!page.contains("<script"), "the page runs nothing");
    }

    #[test]
    fn bad_lines_name_their_number() {
        let text = line(json!({"event": "trial", "trial": 0, "score": 1.0}))
            + "not json\n"
            + &line(json!({"event": "trial"}));
        assert_eq!(RunLog::parse(&text).unwrap_err().0, 2);
        let text = line(json!({"event": "trial", "score": "high", "trial": 1}));
        let (line_no, message) = RunLog::parse(&text).unwrap_err();
        assert_eq!(
            (line_no, message.as_str()),
            (1, "a trial needs a numeric `score`")
        );
        assert_eq!(RunLog::parse("[1]\n").unwrap_err().1, "not a JSON object");
    }

    #[test]
    fn text_from_the_log_is_escaped() {
        let text = line(
            json!({"event": "start", "optimizer": "<b>x</b>", "state": {"p": {"signature": {"instructions": "a < b & \"c\""}, "demos": [{"q": "<script>"}]}}}),
        ) + &line(
            json!({"event": "trial", "trial": 0, "score": 1.0, "phase": "<i>", "candidate": {}}),
        ) + &line(
            json!({"event": "end", "state": {"p": {"signature": {"instructions": "ok"}, "demos": []}}}),
        );
        let page = render(&RunLog::parse(&text).unwrap(), "t");
        assert!(!page.contains("<b>x</b>") && !page.contains("<script>") && !page.contains("<i>"));
        assert!(page.contains("a &lt; b &amp; &quot;c&quot;"));
    }

    #[test]
    fn a_gepa_state_file_reads_as_its_candidates() {
        let state = json!({"state": {
            "components": ["extract", "solve"],
            "candidates": [["a", "b"], ["a2", "b"], ["a2", "b2"]],
            "parents": [[null], [0], [1]],
            "val_scores": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]],
        }});
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gepa_state.json"), state.to_string()).unwrap();
        let log = RunLog::read(dir.path()).unwrap();
        assert_eq!(log.optimizer.as_deref(), Some("GEPA"));
        let scores: Vec<f64> = log.trials.iter().map(|t| t.score).collect();
        assert_eq!(scores, [0.0, 0.5, 1.0]);
        assert_eq!(log.trials[2].candidate["parents"], json!([1]));
        assert_eq!(
            log.end_state.as_ref().unwrap()["solve"]["signature"]["instructions"],
            "b2"
        );
        let page = render(&log, "gepa_state.json");
        assert!(page.contains(r#"data-from="1" data-to="2""#));
        assert!(page.contains(">b2</div>"));
        assert!(
            RunLog::from_gepa_state("{}")
                .unwrap_err()
                .contains("components")
        );
    }

    #[test]
    fn folders_and_missing_logs() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunLog::read(dir.path()).unwrap_err();
        assert!(matches!(err, ReportError::NoLog { .. }), "{err}");
        std::fs::write(dir.path().join("run.jsonl"), "").unwrap();
        let err = RunLog::read(dir.path()).unwrap_err();
        assert!(matches!(err, ReportError::NoTrials { .. }), "{err}");
        std::fs::write(
            dir.path().join("run.jsonl"),
            line(json!({"trial": 0, "score": 3.0})),
        )
        .unwrap();
        assert_eq!(RunLog::read(dir.path()).unwrap().trials.len(), 1);
        let err = RunLog::read(&dir.path().join("missing.jsonl")).unwrap_err();
        assert!(matches!(err, ReportError::Io { .. }), "{err}");
    }
}

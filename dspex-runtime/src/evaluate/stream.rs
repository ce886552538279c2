//! Streamed evaluation: [`Evaluate::call_stream`] over a stream of examples (any
//! [`Stream`], or a JSONL file through [`jsonl_examples`]) in bounded memory, each record
//! appended to a results file as it finishes, and resumable after a crash
//! ([`ResultsFile::resume`]).

use super::ExampleProgram;
use super::metric::Metric;
use super::result::{EvaluateError, REPORT_ERROR_CHARS, one_line};
use super::results_file::{
    ExactSum, KEPT_FAILURES, ReadError, Recorded, Tail, example_hash, hash_hex, read_results,
    write_record,
};
use super::runner::{Evaluate, Outcome, overall_score, run_one};
use crate::callback::{ErrorKind, EventError, EventKind, Observed, scope_current};
use crate::cancel::CancelToken;
use crate::example::Example;
use crate::pycompat::pyfmt::py_float;
use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tracing::Instrument;

/// An item of a stream of examples for [`Evaluate::call_stream`]: an [`Example`], or a
/// `Result<Example, E>` whose error stops the evaluation with [`EvaluateError::Source`] (an
/// [`EvaluateError`] itself, as [`jsonl_examples`] yields, is returned as it is).
pub trait ExampleItem {
    /// The example, or the stream's error.
    ///
    /// # Errors
    ///
    /// The stream's own error, boxed.
    fn into_example(self) -> Result<Example, Box<dyn std::error::Error + Send + Sync>>;
}

impl ExampleItem for Example {
    fn into_example(self) -> Result<Example, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self)
    }
}

impl<E> ExampleItem for Result<Example, E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn into_example(self) -> Result<Example, Box<dyn std::error::Error + Send + Sync>> {
        self.map_err(Into::into)
    }
}

/// Where a streamed evaluation writes its records, and whether it continues a file a killed run
/// left (see [`Evaluate::call_stream`] for the format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsFile {
    path: PathBuf,
    resume: bool,
}

impl ResultsFile {
    /// A new results file at `path`, replacing any file there.
    pub fn create(path: impl Into<PathBuf>) -> Self {
        ResultsFile {
            path: path.into(),
            resume: false,
        }
    }

    /// Continues the results file at `path` (created if missing): the examples it records are
    /// not run again, their scores count in the result. A last line cut short by a crash is
    /// dropped (the file is truncated to its last whole line) and its example runs again. Each
    /// record's example must be the stream's example at that index — same content hash —
    /// or the evaluation stops with [`EvaluateError::DatasetChanged`]. Any other line that is
    /// not a record is [`EvaluateError::ResultsLine`] (with its line number), a repeated example
    /// [`EvaluateError::DuplicateRecord`].
    ///
    /// Reading the file keeps 16 bytes per recorded example (its index and hash) for the rest
    /// of the evaluation: 16 MB for a million.
    pub fn resume(path: impl Into<PathBuf>) -> Self {
        ResultsFile {
            path: path.into(),
            resume: true,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is resumed.
    pub fn is_resume(&self) -> bool {
        self.resume
    }

    /// Opens the file (reading what it records, when resuming) for appending.
    fn open(&self) -> Result<(Recorded, std::fs::File), EvaluateError> {
        let path = &self.path;
        let read_err = |source| EvaluateError::Read {
            path: path.clone(),
            source,
        };
        let write_err = |source| EvaluateError::Write {
            path: path.clone(),
            source,
        };
        if !self.resume {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(write_err)?;
            return Ok((Recorded::empty(), file));
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(read_err)?;
        let recorded = read_results(std::io::BufReader::with_capacity(1 << 16, &file)).map_err(
            |e| match e {
                ReadError::Line { line, message } => EvaluateError::ResultsLine {
                    path: path.clone(),
                    line,
                    message,
                },
                ReadError::Duplicate { index } => EvaluateError::DuplicateRecord {
                    path: path.clone(),
                    index,
                },
                ReadError::Io(message) => read_err(std::io::Error::other(message)),
            },
        )?;
        match recorded.tail {
            Tail::Clean => {}
            Tail::Partial => {
                tracing::warn!(
                    path = %path.display(),
                    kept_bytes = recorded.valid_len,
                    "the results file ends in a cut line (a crash while writing it): dropping it; \
                     its example runs again"
                );
                file.set_len(recorded.valid_len).map_err(write_err)?;
            }
            Tail::Unterminated => file.write_all(b"\n").map_err(write_err)?,
        }
        Ok((recorded, file))
    }
}

/// The examples of a JSON Lines file, one JSON object per line, read as the evaluation needs
/// them (64 KB at a time), each marked with `input_keys` (as [`Example::with_inputs`]).
/// Blank lines are skipped; an example's index is its position among the examples, not its
/// line number.
///
/// A line that is not a JSON object (or not UTF-8) ends the stream with
/// [`EvaluateError::InputLine`], naming the file and the line: [`Evaluate::call_stream`] then
/// stops (the examples in flight finish and are recorded) and returns it, so a broken dataset
/// is fixed rather than silently scored. A file that cannot be read yields
/// [`EvaluateError::Read`].
pub fn jsonl_examples<S: Into<String>>(
    path: impl Into<PathBuf>,
    input_keys: impl IntoIterator<Item = S>,
) -> impl Stream<Item = Result<Example, EvaluateError>> + Send + 'static {
    struct State {
        path: PathBuf,
        template: Example,
        reader: Option<tokio::io::BufReader<tokio::fs::File>>,
        line: u64,
        buf: Vec<u8>,
        done: bool,
    }
    let state = State {
        path: path.into(),
        template: Example::new().with_inputs(input_keys),
        reader: None,
        line: 0,
        buf: Vec::new(),
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if st.reader.is_none() {
            match tokio::fs::File::open(&st.path).await {
                Ok(file) => st.reader = Some(tokio::io::BufReader::with_capacity(1 << 16, file)),
                Err(source) => {
                    st.done = true;
                    let err = EvaluateError::Read {
                        path: st.path.clone(),
                        source,
                    };
                    return Some((Err(err), st));
                }
            }
        }
        loop {
            st.buf.clear();
            let reader = st.reader.as_mut()?;
            match reader.read_until(b'\n', &mut st.buf).await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    st.done = true;
                    let err = EvaluateError::Read {
                        path: st.path.clone(),
                        source,
                    };
                    return Some((Err(err), st));
                }
            }
            st.line += 1;
            if st.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = std::str::from_utf8(&st.buf)
                .map_err(|e| format!("not UTF-8: {e}"))
                .and_then(|text| serde_json::from_str::<Example>(text).map_err(|e| e.to_string()));
            let item = match parsed {
                Ok(mut example) => {
                    example.merge(st.template.clone());
                    Ok(example)
                }
                Err(message) => {
                    st.done = true;
                    Err(EvaluateError::InputLine {
                        path: st.path.clone(),
                        line: st.line,
                        message,
                    })
                }
            };
            return Some((item, st));
        }
    })
}

/// The outcome of a streamed evaluation ([`Evaluate::call_stream`]): the aggregates over every
/// example recorded in the results file (those of a resumed run included); the records
/// themselves are in the file.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StreamedEvaluation {
    /// `round(100 * total / examples, 2)` with Python's rounding, as
    /// [`EvaluationResult::score`](super::EvaluationResult::score); 0 with no example.
    pub score: f64,
    /// The sum of the scores, summed exactly (as Python's `math.fsum`, so independent of the
    /// order examples finished in; the in-memory [`Evaluate::call`] sums in dev-set order,
    /// which can differ in the last bit for scores that are not whole numbers).
    pub total: f64,
    /// How many examples the results file records.
    pub n_examples: usize,
    /// How many of them failed.
    pub n_errors: usize,
    /// How many were already recorded when this run started ([`ResultsFile::resume`]).
    pub resumed: usize,
    /// How many this run evaluated.
    pub ran: usize,
    /// Whether the evaluation stopped before the stream's end (`max_errors`, `stop_when`, a
    /// cancellation, the shared limit closed).
    pub stopped_early: bool,
    /// Whether a cancellation stopped it (the examples in flight were dropped, not recorded).
    pub cancelled: bool,
    /// The first failures recorded (at most five), in the order they were recorded: the
    /// example's index and its error. Every failure is in the results file.
    pub first_errors: Vec<(u64, String)>,
    /// The failure score.
    pub failure_score: f64,
    /// Wall time of this run.
    pub elapsed: Duration,
    /// The metric's name.
    pub metric_name: String,
    /// The results file.
    pub path: PathBuf,
}

impl StreamedEvaluation {
    /// A short account of the failures, as
    /// [`EvaluationResult::failure_report`](super::EvaluationResult::failure_report) writes
    /// it, listing the first ones kept; `None` when no example failed.
    pub fn failure_report(&self) -> Option<String> {
        use std::fmt::Write as _;
        if self.n_errors == 0 {
            return None;
        }
        let each = if self.n_errors == 1 { "" } else { "each " };
        let mut out = format!(
            "Evaluate: {} of {} examples failed, {each}scored {}",
            self.n_errors,
            self.n_examples,
            py_float(self.failure_score)
        );
        if self.stopped_early {
            let how = if self.cancelled {
                "was cancelled"
            } else {
                "stopped early"
            };
            let _ = write!(out, " (the evaluation {how})");
        }
        out.push_str(":\n");
        for (index, error) in &self.first_errors {
            let _ = writeln!(
                out,
                "  example {index}: {}",
                one_line(error, REPORT_ERROR_CHARS)
            );
        }
        let hidden = self.n_errors.saturating_sub(self.first_errors.len());
        if hidden > 0 {
            let _ = writeln!(out, "  ... and {hidden} more");
        }
        let _ = writeln!(
            out,
            "  (every failure: the records with an \"error\" in {})",
            self.path.display()
        );
        Some(out)
    }
}

/// `EvaluationResult(score=50.0, results=<2 records in results.jsonl>)`.
impl fmt::Display for StreamedEvaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EvaluationResult(score={}, results=<{} records in {}>)",
            py_float(self.score),
            self.n_examples,
            self.path.display()
        )
    }
}

impl Evaluate {
    /// An evaluation with `metric` and no dev set, for [`call_stream`](Self::call_stream)
    /// (the same as `Evaluate::new(Vec::new(), metric)`).
    pub fn for_stream(metric: impl Metric + 'static) -> Self {
        Evaluate::new(Vec::new(), metric)
    }

    /// Evaluates `program` on a stream of examples — any [`Stream`] of [`Example`]s or of
    /// `Result<Example, E>`, e.g. a JSONL file read by [`jsonl_examples`] — writing one
    /// record per example to `results` as it finishes, and returns the aggregates.
    ///
    /// Memory stays bounded whatever the stream's length: at most
    /// [`num_threads`](Self::num_threads) examples are held (those in flight); the stream is
    /// pulled only when one finishes; records are written, not kept; the aggregates are a few
    /// numbers and the first five failures. (Resuming adds 16 bytes per recorded example.)
    ///
    /// Each record is one JSON line, written with one `write` call as soon as its example is
    /// scored (`index`, `hash`, `example`, `inputs`, `prediction`, `score`, `error`,
    /// `failure`; see [`EvalRecord`](super::EvalRecord) for their meaning; a non-finite score
    /// is written as the string `"NaN"`, `"inf"` or `"-inf"`). The lines are in the order the
    /// examples finished, not stream order. A process killed at any point loses only the
    /// examples in flight (at most `num_threads`; and at most one cut last line, which
    /// [`ResultsFile::resume`] drops). The writes reach the operating system at once but are
    /// not synced to disk: a power cut can lose more.
    ///
    /// With [`ResultsFile::resume`], the examples the file records are skipped (their scores
    /// count), so a killed run restarted with the same stream evaluates each example once and
    /// ends with the result of an uninterrupted run.
    ///
    /// `max_errors`, `stop_when`, `cancel_on`, `shared_limit`, `failure_score`,
    /// `report_failures` and callbacks apply as in [`call`](Self::call);
    /// `display_progress` and `display_table` do not (the length of a stream is unknown and
    /// the records are in the file). The file is written with blocking calls on the calling
    /// task: one short write per example.
    ///
    /// ```
    /// use dspex_runtime::evaluate::{Evaluate, ResultsFile, jsonl_examples, metric_fn};
    /// use dspex_runtime::{Example, Prediction, program_fn};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize)]
    /// struct In { x: i64 }
    /// #[derive(Serialize)]
    /// struct Out { y: i64 }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let dir = tempfile::tempdir()?;
    /// let (data, results) = (dir.path().join("dev.jsonl"), dir.path().join("results.jsonl"));
    /// std::fs::write(&data, "{\"x\": 1, \"y\": 2}\n{\"x\": 2, \"y\": 4}\n{\"x\": 3, \"y\": 7}\n")?;
    ///
    /// let double = program_fn(|i: In| async move { Ok(Out { y: 2 * i.x }) });
    /// let exact = metric_fn("exact", |e: &Example, p: &Prediction| e.get("y") == p.get("y"));
    /// let evaluate = Evaluate::for_stream(exact).num_threads(8);
    ///
    /// let result = evaluate
    ///     .call_stream(&double, jsonl_examples(&data, ["x"]), ResultsFile::create(&results))
    ///     .await?;
    /// assert_eq!((result.n_examples, result.score), (3, 66.67));
    /// assert_eq!(std::fs::read_to_string(&results)?.lines().count(), 3);
    ///
    /// // Resumed after a crash (here: after a finished run), nothing runs again.
    /// let again = evaluate
    ///     .call_stream(&double, jsonl_examples(&data, ["x"]), ResultsFile::resume(&results))
    ///     .await?;
    /// assert_eq!((again.resumed, again.ran, again.score), (3, 0, 66.67));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// - [`EvaluateError::EmptyDevset`] for a stream without examples;
    ///   [`EvaluateError::NoInputs`] for an example without input keys.
    /// - [`EvaluateError::InputLine`] or [`EvaluateError::Source`] when the stream yields an
    ///   error, [`EvaluateError::DatasetChanged`] when resuming a file written for other
    ///   examples: the evaluation stops starting examples, lets those in flight finish and
    ///   records them, then returns the error.
    /// - [`EvaluateError::ResultsLine`], [`EvaluateError::DuplicateRecord`] or
    ///   [`EvaluateError::Read`] when the file to resume cannot be read;
    ///   [`EvaluateError::Write`] when a record cannot be written (returned at once).
    pub async fn call_stream<P, S>(
        &self,
        program: &P,
        examples: S,
        results: ResultsFile,
    ) -> Result<StreamedEvaluation, EvaluateError>
    where
        P: ExampleProgram + ?Sized,
        S: Stream + Send,
        S::Item: ExampleItem,
    {
        let observed = Observed::start(
            EventKind::Evaluate,
            || "Evaluate".to_string(),
            Some(&self.callbacks),
            || {
                serde_json::json!({
                    "results": results.path.display().to_string(),
                    "resume": results.resume,
                    "metric": self.metric.name(),
                    "num_threads": self.num_threads,
                })
            },
        );
        // The same span as an in-memory evaluation's (`dspex.evaluate`), without a known size.
        let span = tracing::info_span!(
            "dspex.evaluate",
            otel.name = "evaluate",
            dspex.evaluate.metric = self.metric.name(),
            dspex.evaluate.results = %results.path.display(),
            dspex.evaluate.examples = tracing::field::Empty,
            dspex.score = tracing::field::Empty,
            dspex.evaluate.errors = tracing::field::Empty,
        );
        let result = scope_current(
            observed.as_ref().map(Observed::id),
            self.run_stream(program, examples, results)
                .instrument(span.clone()),
        )
        .await;
        if let Ok(r) = &result {
            span.record("dspex.evaluate.examples", r.n_examples as i64);
            span.record("dspex.score", r.score);
            span.record("dspex.evaluate.errors", r.n_errors as i64);
        }
        if let Some(observed) = observed {
            observed.finish_with(
                &result,
                |r| {
                    serde_json::json!({
                        "score": r.score,
                        "n_examples": r.n_examples,
                        "n_errors": r.n_errors,
                        "stopped_early": r.stopped_early,
                        "cancelled": r.cancelled,
                    })
                },
                |e| EventError::new(ErrorKind::Evaluate, e),
            );
        }
        result
    }

    async fn run_stream<P, S>(
        &self,
        program: &P,
        examples: S,
        results: ResultsFile,
    ) -> Result<StreamedEvaluation, EvaluateError>
    where
        P: ExampleProgram + ?Sized,
        S: Stream + Send,
        S::Item: ExampleItem,
    {
        let started = Instant::now();
        let path = results.path.clone();
        let opener = results.clone();
        let (recorded, mut file) = tokio::task::spawn_blocking(move || opener.open())
            .await
            .map_err(|e| EvaluateError::Read {
                path: path.clone(),
                source: std::io::Error::other(e),
            })??;
        let Recorded {
            entries,
            mut sum,
            mut n_errors,
            mut first_errors,
            ..
        } = recorded;
        let resumed = entries.len();
        let mut count = resumed;
        let mut cursor = 0usize;
        if resumed > 0 {
            tracing::info!(
                resumed,
                path = %path.display(),
                "resuming: the examples recorded are skipped"
            );
        }

        let metric: &dyn Metric = &*self.metric;
        let shared = self.shared.as_deref();
        let cancel = self.cancel.as_ref();
        let mut examples = std::pin::pin!(examples);
        let mut in_flight = FuturesUnordered::new();
        let mut next_index = 0u64;
        let mut source_done = false;
        let mut stopping = false;
        let mut cancelled = false;
        let mut fatal: Option<EvaluateError> = None;
        let mut ran = 0usize;
        let mut buf = Vec::with_capacity(1024);
        let cancellation = async {
            match cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let mut cancellation = std::pin::pin!(cancellation);

        loop {
            let halt = stopping
                || fatal.is_some()
                || cancel.is_some_and(CancelToken::is_cancelled)
                || self.stop.as_ref().is_some_and(|f| f());
            let want = !source_done && !halt && in_flight.len() < self.num_threads;
            if !want && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = &mut cancellation => {
                    // The examples in flight are dropped with `in_flight`.
                    cancelled = true;
                    break;
                }
                Some((index, hash, example, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    let Some(Outcome { prediction, score }) = outcome else {
                        tracing::warn!("the shared evaluation limit was closed; stopping");
                        stopping = true;
                        continue;
                    };
                    let (score, failure) = match score {
                        Ok(s) => (s, None),
                        Err(e) => (self.failure_score, Some(e)),
                    };
                    buf.clear();
                    write_record(&mut buf, index, hash, &example, prediction.as_ref(), score, failure.as_ref())
                        .map_err(|e| EvaluateError::Write { path: path.clone(), source: e.into() })?;
                    file.write_all(&buf)
                        .map_err(|source| EvaluateError::Write { path: path.clone(), source })?;
                    sum.add(score);
                    count += 1;
                    ran += 1;
                    if let Some(failure) = failure {
                        n_errors += 1;
                        tracing::error!(example = index, "Error for example {index}: {failure}");
                        if first_errors.len() < KEPT_FAILURES {
                            first_errors.push((index, failure.to_string()));
                        }
                        if self.max_errors.is_some_and(|max| n_errors >= max) && !stopping {
                            stopping = true;
                            tracing::warn!(
                                errors = n_errors,
                                "max_errors reached: stopping the evaluation; the examples \
                                 already running finish"
                            );
                        }
                    }
                }
                item = examples.next(), if want => {
                    let Some(item) = item else {
                        source_done = true;
                        continue;
                    };
                    let index = next_index;
                    next_index += 1;
                    let example = match item.into_example() {
                        Ok(example) => example,
                        Err(e) => {
                            fatal = Some(match e.downcast::<EvaluateError>() {
                                Ok(e) => *e,
                                Err(source) => EvaluateError::Source { index, source },
                            });
                            continue;
                        }
                    };
                    if example.input_keys().is_none() {
                        fatal = Some(EvaluateError::NoInputs {
                            index: usize::try_from(index).unwrap_or(usize::MAX),
                        });
                        continue;
                    }
                    let hash = example_hash(&example);
                    if let Some(&(recorded_index, recorded_hash)) = entries.get(cursor)
                        && recorded_index == index
                    {
                        cursor += 1;
                        if recorded_hash != hash {
                            fatal = Some(EvaluateError::DatasetChanged {
                                path: path.clone(),
                                index,
                                reason: format!(
                                    "example {index} has hash {} in the file but {} in the \
                                     stream",
                                    hash_hex(recorded_hash),
                                    hash_hex(hash)
                                ),
                            });
                        }
                        continue;
                    }
                    in_flight.push(async move {
                        // Held until the example is scored.
                        let _permit = match shared {
                            Some(limit) => match limit.acquire().await {
                                Ok(permit) => Some(permit),
                                Err(_) => return (index, hash, example, None),
                            },
                            None => None,
                        };
                        let outcome = run_one(program, metric, &example)
                            .instrument(tracing::info_span!(
                                "dspex.evaluate.example",
                                otel.name = "evaluate.example",
                                dspex.example.index = index as i64
                            ))
                            .await;
                        (index, hash, example, Some(outcome))
                    });
                }
                else => break,
            }
        }
        drop(in_flight);
        if let Some(error) = fatal {
            return Err(error);
        }
        if source_done {
            if let Some(&(index, _)) = entries.get(cursor) {
                return Err(EvaluateError::DatasetChanged {
                    path,
                    index,
                    reason: format!(
                        "it records example {index}, but the stream has only {next_index} \
                         examples"
                    ),
                });
            }
            if next_index == 0 {
                return Err(EvaluateError::EmptyDevset);
            }
        }
        let total = sum.value();
        let score = overall_score(metric, total, count, n_errors);
        let result = StreamedEvaluation {
            score,
            total,
            n_examples: count,
            n_errors,
            resumed,
            ran,
            stopped_early: !source_done,
            cancelled,
            first_errors,
            failure_score: self.failure_score,
            elapsed: started.elapsed(),
            metric_name: metric.name().to_string(),
            path,
        };
        if self.report_failures
            && let Some(report) = result.failure_report()
        {
            eprint!("{report}");
        }
        Ok(result)
    }
}

impl Recorded {
    fn empty() -> Self {
        Recorded {
            entries: Vec::new(),
            sum: ExactSum::default(),
            n_errors: 0,
            first_errors: Vec::new(),
            valid_len: 0,
            tail: Tail::Clean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Result};
    use crate::evaluate::metric_fn;
    use crate::example::Prediction;
    use futures_util::future::BoxFuture;
    use serde_json::Value;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Doubles `x` (failing when `x % 10 == 3`); counts its calls.
    #[derive(Default)]
    struct Doubler {
        calls: AtomicUsize,
    }

    impl ExampleProgram for Doubler {
        fn run_example<'a>(&'a self, example: &'a Example) -> BoxFuture<'a, Result<Prediction>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let x = example
                    .inputs()?
                    .get("x")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                tokio::task::yield_now().await;
                if x % 10 == 3 {
                    return Err(Error::step("doubling", format!("{x} is unlucky")));
                }
                Ok(Prediction::from_pairs([("y", x * 2)]))
            })
        }
    }

    /// Right when `y` is doubled `x`; the data set's `y` is wrong for every 4th example.
    fn exact() -> impl Metric {
        metric_fn("exact", |e: &Example, p: &Prediction| {
            e.get("y") == p.get("y")
        })
    }

    fn line(x: u64) -> String {
        let y = if x.is_multiple_of(4) {
            x * 2 + 1
        } else {
            x * 2
        };
        format!("{{\"x\": {x}, \"y\": {y}}}\n")
    }

    fn data(dir: &Path, n: u64) -> PathBuf {
        let path = dir.join("dev.jsonl");
        std::fs::write(&path, (0..n).map(line).collect::<String>()).unwrap();
        path
    }

    /// The records of a results file, by index (panics on a repeated index).
    fn records(path: &Path) -> BTreeMap<u64, Value> {
        let mut out = BTreeMap::new();
        for l in std::fs::read_to_string(path).unwrap().lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            let index = v["index"].as_u64().unwrap();
            assert!(out.insert(index, v).is_none(), "example {index} twice");
        }
        out
    }

    fn evaluate() -> Evaluate {
        Evaluate::for_stream(exact())
            .num_threads(4)
            .report_failures(false)
    }

    /// [`evaluate`] of `program` over the JSONL file `input` (input key `x`) into `results`.
    async fn run(
        program: &Doubler,
        input: &Path,
        results: ResultsFile,
    ) -> Result<StreamedEvaluation, EvaluateError> {
        evaluate()
            .call_stream(program, jsonl_examples(input, ["x"]), results)
            .await
    }

    #[tokio::test]
    async fn a_stream_is_recorded_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let input = data(dir.path(), 100);
        let out = dir.path().join("results.jsonl");
        let program = Doubler::default();
        let r = run(&program, &input, ResultsFile::create(&out))
            .await
            .unwrap();
        // 10 failures (x % 10 == 3, all odd), 25 wrong labels (x % 4 == 0): 65 right.
        assert_eq!(
            (r.n_examples, r.n_errors, r.ran, r.resumed),
            (100, 10, 100, 0)
        );
        assert_eq!(r.total, 65.0);
        assert_eq!(r.score, 65.0);
        assert!(!r.stopped_early);
        assert_eq!(r.first_errors.len(), 5);
        let recs = records(&out);
        assert_eq!(recs.len(), 100);
        let r3 = &recs[&3];
        assert_eq!(r3["failure"], "program");
        assert_eq!(r3["error"], "doubling: 3 is unlucky");
        assert_eq!(r3["prediction"], Value::Null);
        assert_eq!(r3["inputs"], serde_json::json!(["x"]));
        assert_eq!(recs[&5]["prediction"]["y"], 10);
        assert_eq!(recs[&5]["score"], 1.0);
        assert_eq!(program.calls.load(Ordering::SeqCst), 100);
        let report = r.failure_report().unwrap();
        assert!(report.starts_with("Evaluate: 10 of 100 examples failed, each scored 0.0:\n"));
        assert!(report.contains("... and 5 more"), "{report}");
    }

    /// A run that died: its first 60 records are in the file, the last one cut in half.
    #[tokio::test]
    async fn resume_skips_the_recorded_and_reruns_a_cut_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let input = data(dir.path(), 100);
        let out = dir.path().join("results.jsonl");
        let full = run(&Doubler::default(), &input, ResultsFile::create(&out))
            .await
            .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let cut = &lines[60][..lines[60].len() / 2];
        let cut_index = serde_json::from_str::<Value>(lines[60]).unwrap()["index"].clone();
        std::fs::write(&out, format!("{}\n{cut}", lines[..60].join("\n"))).unwrap();

        let program = Doubler::default();
        let resumed = run(&program, &input, ResultsFile::resume(&out))
            .await
            .unwrap();
        assert_eq!((resumed.resumed, resumed.ran), (60, 40));
        assert_eq!(program.calls.load(Ordering::SeqCst), 40);
        assert_eq!(
            (
                resumed.score,
                resumed.total,
                resumed.n_errors,
                resumed.n_examples
            ),
            (full.score, full.total, full.n_errors, full.n_examples)
        );
        let recs = records(&out);
        assert_eq!(
            recs.keys().copied().collect::<Vec<_>>(),
            (0..100).collect::<Vec<_>>()
        );
        assert!(recs.contains_key(&cut_index.as_u64().unwrap()));

        // A whole last record without its newline is kept.
        let text = std::fs::read_to_string(&out).unwrap();
        std::fs::write(&out, text.trim_end()).unwrap();
        let program = Doubler::default();
        let again = run(&program, &input, ResultsFile::resume(&out))
            .await
            .unwrap();
        assert_eq!(
            (again.resumed, again.ran, again.score),
            (100, 0, full.score)
        );
        assert_eq!(program.calls.load(Ordering::SeqCst), 0);
        assert_eq!(records(&out).len(), 100);
    }

    #[tokio::test]
    async fn a_malformed_middle_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let input = data(dir.path(), 10);
        let out = dir.path().join("results.jsonl");
        run(&Doubler::default(), &input, ResultsFile::create(&out))
            .await
            .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[4] = "{\"index\": 4, \"hash\": \"zz\"";
        std::fs::write(&out, format!("{}\n", lines.join("\n"))).unwrap();
        let program = Doubler::default();
        let err = run(&program, &input, ResultsFile::resume(&out))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EvaluateError::ResultsLine { line: 5, path, .. } if *path == out),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(", line 5: not an evaluation record"),
            "{err}"
        );
        assert_eq!(program.calls.load(Ordering::SeqCst), 0);

        // The same example twice.
        std::fs::write(&out, format!("{}\n{}\n", text.trim_end(), lines[0])).unwrap();
        let err = run(&program, &input, ResultsFile::resume(&out))
            .await
            .unwrap_err();
        assert!(
            matches!(err, EvaluateError::DuplicateRecord { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn resuming_with_another_dataset_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let input = data(dir.path(), 20);
        let out = dir.path().join("results.jsonl");
        run(&Doubler::default(), &input, ResultsFile::create(&out))
            .await
            .unwrap();
        let before = std::fs::read_to_string(&out).unwrap();

        // Example 7 changed.
        let changed = dir.path().join("changed.jsonl");
        let text: String = (0..20)
            .map(|x| {
                if x == 7 {
                    "{\"x\": 7, \"y\": 0}\n".to_string()
                } else {
                    line(x)
                }
            })
            .collect();
        std::fs::write(&changed, text).unwrap();
        let program = Doubler::default();
        let err = evaluate()
            .call_stream(
                &program,
                jsonl_examples(&changed, ["x"]),
                ResultsFile::resume(&out),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, EvaluateError::DatasetChanged { index: 7, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("example 7 has hash"), "{err}");
        assert_eq!(program.calls.load(Ordering::SeqCst), 0);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), before);

        // Other input keys are another dataset too.
        let err = evaluate()
            .call_stream(
                &program,
                jsonl_examples(&input, ["x", "y"]),
                ResultsFile::resume(&out),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, EvaluateError::DatasetChanged { index: 0, .. }),
            "{err}"
        );

        // A shorter stream.
        let short = dir.path().join("short.jsonl");
        std::fs::write(&short, (0..15).map(line).collect::<String>()).unwrap();
        let err = evaluate()
            .call_stream(
                &program,
                jsonl_examples(&short, ["x"]),
                ResultsFile::resume(&out),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, EvaluateError::DatasetChanged { index: 15, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("the stream has only 15 examples"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_empty_stream_is_an_empty_devset() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results.jsonl");
        let empty = futures_util::stream::iter(Vec::<Example>::new());
        let err = evaluate()
            .call_stream(&Doubler::default(), empty, ResultsFile::create(&out))
            .await
            .unwrap_err();
        assert!(matches!(err, EvaluateError::EmptyDevset), "{err}");
        let blank = dir.path().join("blank.jsonl");
        std::fs::write(&blank, "\n  \n").unwrap();
        let err = evaluate()
            .call_stream(
                &Doubler::default(),
                jsonl_examples(&blank, ["x"]),
                ResultsFile::create(&out),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, EvaluateError::EmptyDevset), "{err}");
    }

    #[tokio::test]
    async fn errors_of_the_stream_stop_the_evaluation_after_the_examples_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("dev.jsonl");
        std::fs::write(
            &input,
            format!("{}{}\n[1, 2]\n{}", line(0), line(1), line(3)),
        )
        .unwrap();
        let out = dir.path().join("results.jsonl");
        let err = run(&Doubler::default(), &input, ResultsFile::create(&out))
            .await
            .unwrap_err();
        assert!(
            matches!(err, EvaluateError::InputLine { line: 4, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("dev.jsonl, line 4: not an example"),
            "{err}"
        );
        // The examples before were recorded.
        assert_eq!(records(&out).len(), 2);

        let missing = dir.path().join("missing.jsonl");
        let err = evaluate()
            .call_stream(
                &Doubler::default(),
                jsonl_examples(&missing, ["x"]),
                ResultsFile::create(&out),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, EvaluateError::Read { .. }), "{err}");

        // A stream of results: its error, typed.
        let items: Vec<std::result::Result<Example, std::io::Error>> = vec![
            Ok(Example::new().with("x", 1).with_inputs(["x"])),
            Err(std::io::Error::other("the database went away")),
        ];
        let err = evaluate()
            .call_stream(
                &Doubler::default(),
                futures_util::stream::iter(items),
                ResultsFile::create(&out),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, EvaluateError::Source { index: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("the database went away"));
        assert_eq!(records(&out).len(), 1);

        // An example without input keys.
        let items = vec![Example::new().with("x", 1)];
        let err = evaluate()
            .call_stream(
                &Doubler::default(),
                futures_util::stream::iter(items),
                ResultsFile::create(&out),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, EvaluateError::NoInputs { index: 0 }), "{err}");
    }

    #[tokio::test]
    async fn max_errors_stops_early_and_resume_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let input = data(dir.path(), 50);
        let out = dir.path().join("results.jsonl");
        let stopped = evaluate()
            .num_threads(1)
            .max_errors(2)
            .call_stream(
                &Doubler::default(),
                jsonl_examples(&input, ["x"]),
                ResultsFile::create(&out),
            )
            .await
            .unwrap();
        assert!(stopped.stopped_early);
        assert_eq!((stopped.n_examples, stopped.n_errors), (14, 2));
        let program = Doubler::default();
        let finished = run(&program, &input, ResultsFile::resume(&out))
            .await
            .unwrap();
        assert!(!finished.stopped_early);
        assert_eq!((finished.resumed, finished.ran), (14, 36));
        assert_eq!(program.calls.load(Ordering::SeqCst), 36);
        assert_eq!(records(&out).len(), 50);
    }

    #[test]
    fn the_call_stream_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let evaluate = evaluate();
        let program = Doubler::default();
        let fut = evaluate.call_stream(
            &program,
            jsonl_examples("dev.jsonl", ["x"]),
            ResultsFile::create("out.jsonl"),
        );
        assert_send(&fut);
        let dynamic: &dyn ExampleProgram = &program;
        let items = futures_util::stream::iter(vec![Example::new()]);
        assert_send(&evaluate.call_stream(dynamic, items, ResultsFile::create("out.jsonl")));
    }
}

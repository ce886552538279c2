//! [`EvaluationResult`] and its records, rows, table and exports (CSV, JSON, JSONL).

use crate::error::Error;
use crate::example::{Example, Prediction};
use crate::pycompat::pyfmt::{py_fixed3, py_float, py_str, write_json, write_json_float};
use crate::pycompat::text::write_json_str_ascii;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use unicode_width::UnicodeWidthStr;

/// What [`Evaluate`](super::Evaluate) and the exports of an [`EvaluationResult`] can fail with.
/// Failures of the program or the metric on an example are not errors: they are recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvaluateError {
    /// The dev set has no examples (DSPy raises the same).
    #[error("cannot evaluate on an empty devset: give Evaluate at least one example")]
    EmptyDevset,
    /// An example has no input keys, so the program cannot know what to read.
    #[error(
        "devset example {index} has no input keys: mark them with `example.with_inputs([...])`"
    )]
    NoInputs {
        /// The example's position in the dev set.
        index: usize,
    },
    /// A result file could not be written.
    #[error("cannot write the evaluation results to {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of a streamed evaluation (its examples, its results) could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of a JSONL file of examples ([`jsonl_examples`](super::jsonl_examples)) is not a
    /// JSON object (or not UTF-8). The evaluation stops: the examples in flight finish and are
    /// recorded, then this is returned.
    #[error("{}, line {line}: not an example (a JSON object per line): {message}", path.display())]
    InputLine {
        /// The file of examples.
        path: PathBuf,
        /// The line (1-based).
        line: u64,
        /// What is wrong with it.
        message: String,
    },
    /// The stream of examples given to [`Evaluate::call_stream`](super::Evaluate::call_stream)
    /// yielded an error in place of example `index`. The evaluation stops as for
    /// [`InputLine`](Self::InputLine).
    #[error("the stream of examples failed at example {index}: {source}")]
    Source {
        /// The position in the stream where the error came.
        index: u64,
        /// The stream's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A line of a results file being resumed, other than a cut last line, is not a record.
    /// (A cut last line — the run died writing it — is dropped and its example runs again.)
    #[error(
        "{}, line {line}: not an evaluation record ({message}); this file cannot be resumed: \
         fix or remove that line, or start a new results file",
        path.display()
    )]
    ResultsLine {
        /// The results file.
        path: PathBuf,
        /// The line (1-based).
        line: u64,
        /// What is wrong with it.
        message: String,
    },
    /// A results file being resumed records the same example twice.
    #[error(
        "{} records example {index} twice; this file cannot be resumed: remove one of them, \
         or start a new results file",
        path.display()
    )]
    DuplicateRecord {
        /// The results file.
        path: PathBuf,
        /// The example's position in the stream.
        index: u64,
    },
    /// The results file being resumed was written for other examples: the example at `index`
    /// differs from the one recorded there (its content hash), or the file records an example
    /// past the end of the stream. Resuming would mix two datasets' results, so nothing more
    /// is run once this is found (the examples in flight finish and are recorded).
    #[error(
        "{} was written for another dataset: {reason}; resume it only with the examples it \
         was written for, or start a new results file",
        path.display()
    )]
    DatasetChanged {
        /// The results file.
        path: PathBuf,
        /// The first example found to differ (or the recorded example past the end).
        index: u64,
        /// What differs.
        reason: String,
    },
}

impl From<EvaluateError> for Error {
    fn from(e: EvaluateError) -> Self {
        Error::step("evaluate", e)
    }
}

/// The outcome of one dev-set example.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EvalRecord {
    /// The example's position in the dev set.
    pub index: usize,
    /// The example.
    pub example: Example,
    /// What the program returned; `None` when it failed. Kept when only the metric failed.
    pub prediction: Option<Prediction>,
    /// The metric's score, or the failure score when the program or the metric failed.
    pub score: f64,
    /// Why the program or the metric failed (or panicked), if it did, as a message (the
    /// [`failure`](Self::failure)'s `Display`).
    pub error: Option<String>,
    /// Why the program or the metric failed, typed: the error itself (an
    /// [`LmError`](crate::lm::LmError) after retries, an adapter's parse error, …) or the panic.
    pub failure: Option<EvalFailure>,
}

impl EvalRecord {
    /// Whether the program or the metric failed on this example.
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }
}

/// Why an example failed: the program's or the metric's error, kept typed (shared, so records
/// stay cheap to clone), or a panic's message. `Display` is the record's
/// [`error`](EvalRecord::error) text.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EvalFailure {
    /// The program returned this error.
    Program(Arc<Error>),
    /// The program panicked with this message.
    ProgramPanicked(String),
    /// The metric returned this error (the prediction is kept in the record).
    Metric(Arc<Error>),
    /// The metric panicked with this message.
    MetricPanicked(String),
}

impl EvalFailure {
    /// The error, when the program or the metric returned one (not for panics).
    pub fn error(&self) -> Option<&Error> {
        match self {
            EvalFailure::Program(e) | EvalFailure::Metric(e) => Some(e),
            EvalFailure::ProgramPanicked(_) | EvalFailure::MetricPanicked(_) => None,
        }
    }

    /// The LM's error, when the failure was one (after the LM's retries: look at
    /// [`LmError::root`](crate::lm::LmError::root) for the last attempt's).
    pub fn lm_error(&self) -> Option<&crate::lm::LmError> {
        match self.error()? {
            Error::Lm(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the metric failed (or panicked), not the program.
    pub fn is_metric(&self) -> bool {
        matches!(
            self,
            EvalFailure::Metric(_) | EvalFailure::MetricPanicked(_)
        )
    }
}

impl fmt::Display for EvalFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalFailure::Program(e) => write!(f, "{e}"),
            EvalFailure::ProgramPanicked(m) => write!(f, "the program panicked: {m}"),
            EvalFailure::Metric(e) => write!(f, "the metric failed: {e}"),
            EvalFailure::MetricPanicked(m) => write!(f, "the metric panicked: {m}"),
        }
    }
}

/// Failures are equal when they are of the same kind with the same message (errors are not
/// comparable themselves).
impl PartialEq for EvalFailure {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.to_string() == other.to_string()
    }
}

/// A scored evaluation (DSPy's `EvaluationResult`): the average score as a percentage and one
/// [`EvalRecord`] per evaluated example, in dev-set order.
///
/// `Display` prints DSPy's summary, `EvaluationResult(score=66.67, results=<list of 3 results>)`;
/// [`table`](Self::table) renders the rows, and [`save_csv`](Self::save_csv),
/// [`save_json`](Self::save_json) and [`save_jsonl`](Self::save_jsonl) export them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EvaluationResult {
    /// `round(100 * sum of scores / evaluated examples, 2)`, with Python's rounding (ties to
    /// even on the exact double), as DSPy computes it. Failures count with the failure score.
    pub score: f64,
    /// One record per evaluated example, in dev-set order. After an early stop, only the
    /// examples that ran (their [`index`](EvalRecord::index) tells which).
    pub records: Vec<EvalRecord>,
    /// How many examples failed (program or metric error).
    pub n_errors: usize,
    /// Whether the evaluation stopped before running every example (`max_errors` reached,
    /// `stop_when` said so, a cancellation, or the shared limit was closed). The records
    /// computed are all kept.
    pub stopped_early: bool,
    /// Whether a cancellation ([`Evaluate::cancel_on`](super::Evaluate::cancel_on)) stopped the
    /// evaluation before every example was scored; the examples in flight then were dropped, so
    /// the score covers only the records kept.
    pub cancelled: bool,
    /// Wall time of the evaluation.
    pub elapsed: Duration,
    /// How many examples the dev set had.
    pub devset_len: usize,
    /// The metric's name: the score column of tables and exports.
    pub metric_name: String,
    /// Whether the metric is pass/fail (scores written as booleans).
    pub(crate) metric_bool: bool,
}

/// A value in an exported row: a field of the example or prediction, or the score.
#[derive(Debug, Clone, Copy)]
enum Cell<'a> {
    Field(&'a Value),
    Float(f64),
    Bool(bool),
}

type Row<'a> = Vec<(String, Cell<'a>)>;

/// `row[key] = value`, keeping the position of an existing key (Python dict assignment).
fn set<'a>(row: &mut Row<'a>, key: String, value: Cell<'a>) {
    match row.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => row.push((key, value)),
    }
}

impl EvaluationResult {
    /// The sum of the scores in dev-set order (DSPy's `ncorrect`).
    pub fn total(&self) -> f64 {
        self.records.iter().fold(0.0, |acc, r| acc + r.score)
    }

    /// The records of the examples that failed (as many as [`n_errors`](Self::n_errors)), in
    /// dev-set order: each has its [`index`](EvalRecord::index), its error as text
    /// ([`error`](EvalRecord::error)) and typed ([`failure`](EvalRecord::failure)).
    pub fn errors(&self) -> impl Iterator<Item = &EvalRecord> {
        self.records.iter().filter(|r| r.is_error())
    }

    /// A short account of the failures for people to read, or `None` when no example failed.
    ///
    /// The first line says how many of the evaluated examples failed and what each scored (the
    /// failure score), and whether the evaluation stopped early. Then come the first
    /// `max_listed` failures in dev-set order, one line each: the example's index and its
    /// error, on one line (newlines and runs of whitespace become one space, other control
    /// characters are escaped) and cut after 200 characters; then `... and N more` when some
    /// were left out. Every line ends in a newline.
    ///
    /// [`Evaluate`](super::Evaluate) writes this report (listing 5, then a line on where to find
    /// every failure) to stderr at the end of an evaluation that had failures, unless told not
    /// to with [`report_failures(false)`](super::Evaluate::report_failures).
    /// `failure_report(2)` of a result with three failures:
    ///
    /// ```text
    /// Evaluate: 3 of 10 examples failed, each scored 0.0:
    ///   example 1: [openai/gpt-4o-mini] gave up after 4 attempt(s) in 7.5s: [openai/gpt-4o-mini] https://api.openai.com/v1: HTTP 503 (LMServerError): …
    ///   example 4: the program panicked: index out of bounds: the len is 0 but the index is 0
    ///   ... and 1 more
    /// ```
    pub fn failure_report(&self, max_listed: usize) -> Option<String> {
        use std::fmt::Write as _;

        let failed: Vec<&EvalRecord> = self.errors().collect();
        let first = failed.first()?;
        let (k, ran) = (failed.len(), self.records.len());
        let each = if k == 1 { "" } else { "each " };
        let mut out = format!(
            "Evaluate: {k} of {ran} examples failed, {each}scored {}",
            py_float(first.score)
        );
        if self.stopped_early {
            let how = if self.cancelled {
                "was cancelled"
            } else {
                "stopped early"
            };
            let _ = write!(
                out,
                " (the evaluation {how} after {ran} of {} examples)",
                self.devset_len
            );
        }
        out.push_str(":\n");
        for record in failed.iter().take(max_listed) {
            let error = record.error.as_deref().unwrap_or_default();
            let _ = writeln!(
                out,
                "  example {}: {}",
                record.index,
                one_line(error, REPORT_ERROR_CHARS)
            );
        }
        let hidden = k.saturating_sub(max_listed);
        if hidden > 0 && max_listed > 0 {
            let _ = writeln!(out, "  ... and {hidden} more");
        }
        Some(out)
    }

    /// DSPy's row for a record: the example's fields, then the prediction's, a key present in
    /// both renamed `example_<key>` and `pred_<key>`, then the metric's name with the score. A
    /// failed record has no prediction fields (DSPy puts an empty prediction there).
    fn row<'a>(&self, record: &'a EvalRecord) -> Row<'a> {
        static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        let example = record.example.as_map();
        let prediction = match (&record.prediction, &record.error) {
            (Some(p), None) => p.as_map(),
            _ => &EMPTY,
        };
        let mut row: Row<'a> = Vec::with_capacity(example.len() + prediction.len() + 1);
        for (k, v) in example {
            let key = if prediction.contains_key(k) {
                format!("example_{k}")
            } else {
                k.clone()
            };
            set(&mut row, key, Cell::Field(v));
        }
        for (k, v) in prediction {
            let key = if example.contains_key(k) {
                format!("pred_{k}")
            } else {
                k.clone()
            };
            set(&mut row, key, Cell::Field(v));
        }
        let score = if self.metric_bool && record.error.is_none() {
            Cell::Bool(record.score != 0.0)
        } else {
            Cell::Float(record.score)
        };
        set(&mut row, self.metric_name.clone(), score);
        row
    }

    /// The rows DSPy exports and displays, one per record (see [`save_json`](Self::save_json)).
    /// A non-finite score becomes `null` here (JSON values cannot hold it); the exports write
    /// it as Python does.
    pub fn rows(&self) -> Vec<Map<String, Value>> {
        self.records
            .iter()
            .map(|record| {
                self.row(record)
                    .into_iter()
                    .map(|(k, cell)| {
                        let v = match cell {
                            Cell::Field(v) => v.clone(),
                            Cell::Bool(b) => Value::Bool(b),
                            Cell::Float(f) => {
                                serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                            }
                        };
                        (k, v)
                    })
                    .collect()
            })
            .collect()
    }

    /// The rows as CSV, as DSPy's `save_as_csv` writes them: a header, then one line per record,
    /// values as Python's `str()` (`True`, `['a', 'b']`, empty for `None`), quoted where
    /// needed, lines ending in `\r\n`.
    ///
    /// The header is the first row's keys followed by any key a later row adds, in order of
    /// appearance; a row lacking a key has an empty cell there. (DSPy raises when a later row
    /// has a key the first lacks — e.g. when the first example failed.)
    pub fn to_csv(&self) -> String {
        let rows: Vec<Row<'_>> = self.records.iter().map(|r| self.row(r)).collect();
        let mut header: Vec<&str> = Vec::new();
        for row in &rows {
            for (k, _) in row {
                if !header.contains(&k.as_str()) {
                    header.push(k);
                }
            }
        }
        let mut out = String::new();
        let mut line: Vec<String> = header.iter().map(|h| (*h).to_string()).collect();
        write_csv_line(&mut out, &line);
        for row in &rows {
            line.clear();
            for key in &header {
                let cell = row.iter().find(|(k, _)| k == key).map(|(_, c)| *c);
                line.push(match cell {
                    None | Some(Cell::Field(Value::Null)) => String::new(),
                    Some(Cell::Field(v)) => py_str(v),
                    Some(Cell::Bool(b)) => if b { "True" } else { "False" }.to_string(),
                    Some(Cell::Float(f)) => py_float(f),
                });
            }
            write_csv_line(&mut out, &line);
        }
        out
    }

    /// The rows as DSPy's `save_as_json` writes them: Python's `json.dump` of the list of rows
    /// (`", "` and `": "` separators, non-ASCII escaped as `\uXXXX`, floats as Python prints
    /// them, no trailing newline).
    pub fn to_json(&self) -> String {
        let mut out = String::from("[");
        for (i, record) in self.records.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_row(&mut out, &self.row(record));
        }
        out.push(']');
        out
    }

    /// The rows as JSON Lines: each row written as in [`to_json`](Self::to_json), one per line,
    /// each line ending in `\n`.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for record in &self.records {
            write_row(&mut out, &self.row(record));
            out.push('\n');
        }
        out
    }

    /// Writes [`to_csv`](Self::to_csv) to `path`.
    ///
    /// # Errors
    ///
    /// [`EvaluateError::Write`] when the file cannot be written.
    pub fn save_csv(&self, path: impl AsRef<Path>) -> Result<(), EvaluateError> {
        write_file(path.as_ref(), &self.to_csv())
    }

    /// Writes [`to_json`](Self::to_json) to `path` (DSPy's `save_as_json`).
    ///
    /// # Errors
    ///
    /// [`EvaluateError::Write`] when the file cannot be written.
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<(), EvaluateError> {
        write_file(path.as_ref(), &self.to_json())
    }

    /// Writes [`to_jsonl`](Self::to_jsonl) to `path`.
    ///
    /// # Errors
    ///
    /// [`EvaluateError::Write`] when the file cannot be written.
    pub fn save_jsonl(&self, path: impl AsRef<Path>) -> Result<(), EvaluateError> {
        write_file(path.as_ref(), &self.to_jsonl())
    }

    /// The first `max_rows` rows as a plain-text table (DSPy's `display_table`): an index
    /// column, then the row keys; cells longer than 25 words cut to 25 words and `...`; the
    /// score column as `✔️ [0.750]` (floats) or `✔️ [True]`; newlines shown as `\n`; a last
    /// line `... {k} more rows not displayed ...` when rows were left out. When a shown row
    /// failed, a last column `error` (`evaluate_error` if a field is named `error`) gives each
    /// failed row's error on one line, cut after 80 characters — DSPy's table has no such
    /// column; its other columns are DSPy's.
    ///
    /// ```
    /// # use dspex_runtime::evaluate::EvaluationResult;
    /// # fn show(result: &EvaluationResult) {
    /// println!("{}", result.table(5));
    /// # }
    /// ```
    pub fn table(&self, max_rows: usize) -> ResultTable<'_> {
        ResultTable {
            result: self,
            max_rows,
        }
    }
}

/// `EvaluationResult(score=66.67, results=<list of 3 results>)`, as DSPy's `repr`.
impl fmt::Display for EvaluationResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EvaluationResult(score={}, results=<list of {} results>)",
            py_float(self.score),
            self.records.len()
        )
    }
}

fn write_row(out: &mut String, row: &Row<'_>) {
    out.push('{');
    for (i, (k, cell)) in row.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_json_str_ascii(out, k);
        out.push_str(": ");
        match cell {
            Cell::Field(v) => write_json(out, v),
            Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Cell::Float(f) => write_json_float(out, *f),
        }
    }
    out.push('}');
}

/// One CSV line as Python's `csv` module writes it (`QUOTE_MINIMAL`, `\r\n`).
fn write_csv_line(out: &mut String, fields: &[String]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let quote =
            field.contains([',', '"', '\r', '\n']) || (fields.len() == 1 && field.is_empty());
        if quote {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

fn write_file(path: &Path, text: &str) -> Result<(), EvaluateError> {
    std::fs::write(path, text).map_err(|source| EvaluateError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// How many characters of an error a line of [`EvaluationResult::failure_report`] shows.
pub(super) const REPORT_ERROR_CHARS: usize = 200;

/// How many characters of an error the result table's error column shows.
const TABLE_ERROR_CHARS: usize = 80;

/// `text` on one line, at most `max` characters of it: runs of whitespace (newlines included)
/// become one space, other control characters are escaped (`\u{1b}`, so that an LM's reply
/// quoted in an error cannot move a terminal's cursor), and a longer text is cut, ending in
/// `… [N more characters]`.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut flat = String::with_capacity(text.len().min(4 * max));
    for word in text.split_whitespace() {
        if !flat.is_empty() {
            flat.push(' ');
        }
        for c in word.chars() {
            if c.is_control() {
                flat.extend(c.escape_default());
            } else {
                flat.push(c);
            }
        }
    }
    match flat.char_indices().nth(max) {
        None => flat,
        Some((end, _)) => {
            let more = flat[end..].chars().count();
            format!("{}… [{more} more characters]", flat[..end].trim_end())
        }
    }
}

/// The first rows of an [`EvaluationResult`] as a plain-text table; see
/// [`EvaluationResult::table`].
#[derive(Debug, Clone, Copy)]
pub struct ResultTable<'a> {
    result: &'a EvaluationResult,
    max_rows: usize,
}

/// DSPy's `truncate_cell`: more than 25 whitespace-separated words become the first 25 and
/// `...`.
fn truncate_cell(text: String) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() > 25 {
        format!("{}...", words[..25].join(" "))
    } else {
        text
    }
}

/// Control characters as pandas shows them (`\n`, `\t`, `\r`).
fn escape_controls(text: &str) -> String {
    text.replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace('\r', "\\r")
}

impl fmt::Display for ResultTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = self.result;
        let shown = &result.records[..self.max_rows.min(result.records.len())];
        let rows: Vec<Row<'_>> = shown.iter().map(|r| result.row(r)).collect();
        let mut header: Vec<String> = Vec::new();
        for row in &rows {
            for (k, _) in row {
                if !header.contains(k) {
                    header.push(k.clone());
                }
            }
        }
        // Failed rows say why in a last column (not in DSPy's table, which shows no error).
        let error_column = shown.iter().any(EvalRecord::is_error).then(|| {
            if header.iter().any(|h| h == "error") {
                "evaluate_error"
            } else {
                "error"
            }
        });
        let mut grid: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
        let mut head = vec![String::new()];
        head.extend(header.iter().map(|h| escape_controls(h)));
        head.extend(error_column.map(str::to_string));
        grid.push(head);
        for (row, record) in rows.iter().zip(shown) {
            let mut line = vec![record.index.to_string()];
            for key in &header {
                let cell = row.iter().find(|(k, _)| k == key).map(|(_, c)| *c);
                let text = match cell {
                    None => String::new(),
                    Some(Cell::Field(v)) => truncate_cell(py_str(v)),
                    Some(Cell::Bool(b)) => format!("✔️ [{}]", if b { "True" } else { "False" }),
                    Some(Cell::Float(x)) => format!("✔️ [{}]", py_fixed3(x)),
                };
                line.push(escape_controls(&text));
            }
            if error_column.is_some() {
                let error = record.error.as_deref().unwrap_or_default();
                line.push(one_line(error, TABLE_ERROR_CHARS));
            }
            grid.push(line);
        }
        let columns = grid[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| grid.iter().map(|l| l[c].width()).max().unwrap_or(0))
            .collect();
        for line in &grid {
            let mut text = String::new();
            for (c, cell) in line.iter().enumerate() {
                if c > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                if c + 1 < columns {
                    text.extend(std::iter::repeat_n(' ', widths[c] - cell.width()));
                }
            }
            writeln!(f, "{}", text.trim_end())?;
        }
        let hidden = result.records.len() - shown.len();
        if hidden > 0 {
            writeln!(f, "... {hidden} more rows not displayed ...")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;
    use crate::evaluate::{Evaluate, ExampleProgram, metric_fn};
    use futures_util::future::BoxFuture;
    use serde_json::json;

    /// The program of `testdata/capture_rows.py`.
    struct Prog;

    impl ExampleProgram for Prog {
        fn run_example<'a>(&'a self, example: &'a Example) -> BoxFuture<'a, Result<Prediction>> {
            Box::pin(async move {
                let question = example
                    .inputs()?
                    .get_str("question")
                    .unwrap_or("")
                    .to_string();
                if question == "boom" {
                    return Err(Error::step("forward", "kaboom"));
                }
                let answer = match question.as_str() {
                    "q0" => "Paris",
                    "q1" => "Rome",
                    "q2" => "x",
                    "q3" => "Zürich \"quoted\", comma\nnewline",
                    _ => "?",
                };
                Ok(Prediction::from_pairs([
                    ("answer", json!(answer)),
                    ("extra", json!([1, 2.5, true, null, "é"])),
                    ("flag", json!(false)),
                ]))
            })
        }
    }

    fn devset() -> Vec<Example> {
        vec![
            Example::new()
                .with("question", "q0")
                .with("answer", "Paris")
                .with("meta", Value::Null)
                .with_inputs(["question"]),
            Example::new()
                .with("question", "q1")
                .with("answer", "Berlin")
                .with("meta", json!([]))
                .with_inputs(["question"]),
            Example::new()
                .with("question", "q3")
                .with("answer", "Zürich")
                .with("meta", json!({"k": 1.0, "n": 1e-05, "s": "a\u{2028}b😀"}))
                .with_inputs(["question"]),
        ]
    }

    fn run(evaluate: &Evaluate) -> EvaluationResult {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(evaluate.call(&Prog))
            .unwrap()
    }

    fn bool_metric() -> Evaluate {
        Evaluate::new(
            devset(),
            metric_fn("metric", |e: &Example, p: &Prediction| {
                e.get("answer") == p.get("answer")
            }),
        )
    }

    fn float_metric() -> Evaluate {
        Evaluate::new(
            devset(),
            metric_fn("fmetric", |e: &Example, p: &Prediction| {
                if e.get("answer") == p.get("answer") {
                    0.75
                } else {
                    0.1
                }
            }),
        )
    }

    #[test]
    fn exports_match_dspy_byte_for_byte() {
        let result = run(&bool_metric());
        assert_eq!(result.score, 33.33);
        assert_eq!(
            result.to_string(),
            "EvaluationResult(score=33.33, results=<list of 3 results>)"
        );
        assert_eq!(result.to_csv(), include_str!("testdata/rows_metric.csv"));
        assert_eq!(result.to_json(), include_str!("testdata/rows_metric.json"));

        let result = run(&float_metric());
        assert_eq!(result.score, 31.67);
        assert_eq!(result.to_csv(), include_str!("testdata/rows_fmetric.csv"));
        assert_eq!(result.to_json(), include_str!("testdata/rows_fmetric.json"));

        // A failed example: no prediction fields, the failure score as a float.
        let mut set = vec![
            Example::new()
                .with("question", "boom")
                .with("answer", "x")
                .with_inputs(["question"]),
        ];
        set.push(devset().remove(0));
        let evaluate = Evaluate::new(
            set,
            metric_fn("metric", |e: &Example, p: &Prediction| {
                e.get("answer") == p.get("answer")
            }),
        )
        .failure_score(0.25);
        let result = run(&evaluate);
        assert_eq!(result.score, 62.5);
        assert_eq!(
            result.to_json(),
            include_str!("testdata/rows_failed.json").trim_end()
        );
        // DSPy raises here (row 2 has keys row 1 lacks); dspex extends the header.
        assert_eq!(
            result.to_csv(),
            "question,answer,metric,example_answer,meta,pred_answer,extra,flag\r\n\
             boom,x,0.25,,,,,\r\n\
             q0,,True,Paris,,Paris,\"[1, 2.5, True, None, 'é']\",False\r\n"
        );
    }

    #[test]
    fn rows_jsonl_and_collisions() {
        let result = run(&bool_metric());
        let rows = result.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0].keys().collect::<Vec<_>>(),
            [
                "question",
                "example_answer",
                "meta",
                "pred_answer",
                "extra",
                "flag",
                "metric"
            ]
        );
        assert_eq!(rows[0]["metric"], json!(true));
        let jsonl = result.to_jsonl();
        let lines: Vec<&str> = jsonl.lines().collect();
        assert_eq!(lines.len(), 3);
        for (line, row) in lines.iter().zip(&rows) {
            let parsed: Map<String, Value> = serde_json::from_str(line).unwrap();
            assert_eq!(&parsed, row);
        }
        // A field named like the metric is overwritten in place, as `dict | {name: score}`.
        let evaluate = Evaluate::new(
            vec![
                Example::new()
                    .with("metric", "mine")
                    .with("q", 1)
                    .with_inputs(["q"]),
            ],
            metric_fn("metric", |_: &Example, _: &Prediction| 0.5),
        );
        struct Empty;
        impl ExampleProgram for Empty {
            fn run_example<'a>(&'a self, _: &'a Example) -> BoxFuture<'a, Result<Prediction>> {
                Box::pin(async { Ok(Prediction::default()) })
            }
        }
        let result = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(evaluate.call(&Empty))
            .unwrap();
        assert_eq!(result.to_json(), r#"[{"metric": 0.5, "q": 1}]"#);
    }

    #[test]
    fn the_table_shows_the_first_rows() {
        let result = run(&float_metric());
        let table = result.table(2).to_string();
        let expected = [
            "   question  example_answer  meta  pred_answer  extra                      flag   fmetric",
            "0  q0        Paris           None  Paris        [1, 2.5, True, None, 'é']  False  ✔️ [0.750]",
            "1  q1        Berlin          []    Rome         [1, 2.5, True, None, 'é']  False  ✔️ [0.100]",
            "... 1 more rows not displayed ...",
            "",
        ]
        .join("\n");
        assert_eq!(table, expected, "\n{table}");
        let all = result.table(usize::MAX).to_string();
        assert!(all.contains("Zürich \"quoted\", comma\\nnewline"), "{all}");
        assert!(!all.contains("more rows"));
        let bools = run(&bool_metric()).table(1).to_string();
        assert!(bools.contains("✔️ [True]"), "{bools}");
        assert_eq!(
            truncate_cell("a ".repeat(26)),
            format!("{}...", ["a"; 25].join(" "))
        );
        assert_eq!(truncate_cell("a ".repeat(25)), "a ".repeat(25));
    }

    #[test]
    fn errors_are_shown_on_one_line_cut_and_escaped() {
        assert_eq!(one_line("  short  error ", 200), "short error");
        // Newlines and tabs fold; an escape sequence an LM replied cannot reach the terminal.
        assert_eq!(
            one_line("parse failed:\n\traw: \u{1b}[2Jhi\r\n", 200),
            "parse failed: raw: \\u{1b}[2Jhi"
        );
        let long = format!("head {}", "é".repeat(300));
        let cut = one_line(&long, 10);
        assert_eq!(cut, "head ééééé… [295 more characters]");
        assert_eq!(one_line("exactly10!", 10), "exactly10!");
        assert_eq!(one_line("", 10), "");
    }

    #[test]
    fn failed_rows_show_their_error_in_the_table() {
        let mut set = devset();
        set.insert(
            1,
            Example::new()
                .with("question", "boom")
                .with("answer", "x")
                .with_inputs(["question"]),
        );
        let evaluate = Evaluate::new(
            set,
            metric_fn("metric", |e: &Example, p: &Prediction| {
                e.get("answer") == p.get("answer")
            }),
        );
        let result = run(&evaluate);
        let table = result.table(2).to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].ends_with("  answer  error"), "{table}");
        assert!(lines[1].ends_with("✔️ [True]"), "{table}");
        assert!(lines[2].contains("✔️ [0.000]"), "{table}");
        assert!(lines[2].ends_with("  x       forward: kaboom"), "{table}");
        // No failure among the rows shown: DSPy's table, no error column.
        let first = result.table(1).to_string();
        assert!(!first.contains("error"), "{first}");
        assert_eq!(
            result.failure_report(5).unwrap(),
            "Evaluate: 1 of 4 examples failed, scored 0.0:\n  example 1: forward: kaboom\n"
        );
    }

    #[test]
    fn saving_writes_files_and_names_the_path_on_failure() {
        let result = run(&bool_metric());
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("r.csv");
        result.save_csv(&csv).unwrap();
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), result.to_csv());
        let json = dir.path().join("r.json");
        result.save_json(&json).unwrap();
        assert_eq!(std::fs::read_to_string(&json).unwrap(), result.to_json());
        let jsonl = dir.path().join("r.jsonl");
        result.save_jsonl(&jsonl).unwrap();
        assert_eq!(std::fs::read_to_string(&jsonl).unwrap(), result.to_jsonl());
        let bad = dir.path().join("missing").join("r.csv");
        let err = result.save_csv(&bad).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}

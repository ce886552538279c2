//! The results file of a streamed evaluation: one JSON line per finished example, appended as
//! it finishes, and the reader [`ResultsFile::resume`](super::ResultsFile::resume) uses to
//! skip what a killed run already recorded.
//!
//! A line (keys in this order; readers ignore keys they do not know):
//!
//! ```text
//! {"index":0,"hash":"5f1c0e2b9a7d4c13","example":{…},"inputs":["question"],
//!  "prediction":{…}|null,"score":1.0,"error":null|"…","failure":null|"program"|…}
//! ```
//!
//! - `index`: the example's position in the stream (0-based); `hash`: 16 hex digits, the first
//!   64 bits of a SHA-256 of the example's fields (object keys sorted, so key order does not
//!   matter) and input keys. Index and hash together are the example's identity.
//! - `score`: a JSON number, or `"NaN"`, `"inf"`, `"-inf"` for a score JSON cannot hold.
//! - `failure`: the kind of [`EvalFailure`](super::EvalFailure) (`program`,
//!   `program_panicked`, `metric`, `metric_panicked`), `error` its text.

use super::result::EvalFailure;
use crate::example::{Example, Prediction};
use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::BufRead;

/// How many failures a streamed result keeps for its report (the rest are in the file).
pub(super) const KEPT_FAILURES: usize = 5;

/// The identity hash of an example: the first 64 bits of SHA-256 over its fields (object keys
/// sorted at every level, strings length-prefixed) and its sorted input keys.
pub(crate) fn example_hash(example: &Example) -> u64 {
    let mut h = Sha256::new();
    let fields: Value = serde_json::to_value(example).unwrap_or(Value::Null);
    feed(&mut h, &fields);
    match example.input_keys() {
        None => h.update([0u8]),
        Some(keys) => {
            h.update([1u8]);
            for key in keys {
                feed_str(&mut h, key);
            }
        }
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

fn feed_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

fn feed(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update([b'n']),
        Value::Bool(b) => h.update([b'b', u8::from(*b)]),
        Value::Number(n) => {
            h.update([b'#']);
            feed_str(h, &n.to_string());
        }
        Value::String(s) => {
            h.update([b's']);
            feed_str(h, s);
        }
        Value::Array(items) => {
            h.update([b'[']);
            h.update((items.len() as u64).to_be_bytes());
            for item in items {
                feed(h, item);
            }
        }
        Value::Object(map) => {
            h.update([b'{']);
            h.update((map.len() as u64).to_be_bytes());
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                feed_str(h, key);
                if let Some(value) = map.get(key) {
                    feed(h, value);
                }
            }
        }
    }
}

/// A hash as the file spells it: 16 lowercase hex digits.
pub(crate) fn hash_hex(hash: u64) -> String {
    format!("{hash:016x}")
}

fn parse_hash(text: &str) -> Option<u64> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// A score as a JSON number, or a string for a non-finite one.
struct ScoreOut(f64);

impl Serialize for ScoreOut {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if x.is_finite() {
            s.serialize_f64(x)
        } else if x.is_nan() {
            s.serialize_str("NaN")
        } else if x > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }
}

struct ScoreIn(f64);

impl<'de> Deserialize<'de> for ScoreIn {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(x) => Ok(ScoreIn(x)),
            Raw::Text(t) => match t.as_str() {
                "NaN" => Ok(ScoreIn(f64::NAN)),
                "inf" => Ok(ScoreIn(f64::INFINITY)),
                "-inf" => Ok(ScoreIn(f64::NEG_INFINITY)),
                _ => Err(de::Error::custom(format!(
                    "score {t:?} is neither a number nor NaN, inf, -inf"
                ))),
            },
        }
    }
}

fn failure_kind(failure: &EvalFailure) -> &'static str {
    match failure {
        EvalFailure::Program(_) => "program",
        EvalFailure::ProgramPanicked(_) => "program_panicked",
        EvalFailure::Metric(_) => "metric",
        EvalFailure::MetricPanicked(_) => "metric_panicked",
    }
}

#[derive(Serialize)]
struct RecordOut<'a> {
    index: u64,
    hash: &'a str,
    example: &'a Example,
    inputs: Option<&'a BTreeSet<String>>,
    prediction: Option<&'a Prediction>,
    score: ScoreOut,
    error: Option<&'a str>,
    failure: Option<&'static str>,
}

/// Appends one record, with its newline, to `buf`.
pub(crate) fn write_record(
    buf: &mut Vec<u8>,
    index: u64,
    hash: u64,
    example: &Example,
    prediction: Option<&Prediction>,
    score: f64,
    failure: Option<&EvalFailure>,
) -> Result<(), serde_json::Error> {
    let error = failure.map(ToString::to_string);
    let record = RecordOut {
        index,
        hash: &hash_hex(hash),
        example,
        inputs: example.input_keys(),
        prediction,
        score: ScoreOut(score),
        error: error.as_deref(),
        failure: failure.map(failure_kind),
    };
    serde_json::to_writer(&mut *buf, &record)?;
    buf.push(b'\n');
    Ok(())
}

#[derive(Deserialize)]
struct RecordIn {
    index: u64,
    hash: String,
    #[allow(dead_code)]
    example: IgnoredAny,
    score: ScoreIn,
    #[serde(default)]
    error: Option<String>,
}

/// The sum of floats, exact until the final rounding (Python's `math.fsum`, Shewchuk's
/// algorithm), so that a resumed evaluation adding its scores in another order gets the same
/// total bit for bit. Non-finite scores add up on their own, as IEEE addition says.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExactSum {
    partials: Vec<f64>,
    special: Option<f64>,
}

impl ExactSum {
    pub(crate) fn add(&mut self, x: f64) {
        if !x.is_finite() {
            self.special = Some(self.special.map_or(x, |s| s + x));
            return;
        }
        let mut x = x;
        let mut kept = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        self.partials.push(x);
    }

    pub(crate) fn value(&self) -> f64 {
        if let Some(special) = self.special {
            return special;
        }
        let p = &self.partials;
        let Some(mut n) = p.len().checked_sub(1) else {
            return 0.0;
        };
        let mut hi = p[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = p[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

/// How the bytes of a results file end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Empty, or the last line ends in a newline.
    Clean,
    /// The last line is a whole record but lacks its newline (the run died between the two):
    /// kept; the newline is added.
    Unterminated,
    /// The last line is cut short (the run died while writing it): dropped; its example runs
    /// again.
    Partial,
}

/// What a results file holds: every recorded example's identity and the aggregates.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// `(index, hash)` of each record, sorted by index, each index once.
    pub(crate) entries: Vec<(u64, u64)>,
    /// The sum of the recorded scores.
    pub(crate) sum: ExactSum,
    /// How many records are failures.
    pub(crate) n_errors: usize,
    /// The first failures in file order, `(index, error text)`.
    pub(crate) first_errors: Vec<(u64, String)>,
    /// The length of the whole lines kept (without a [`Tail::Partial`] line).
    pub(crate) valid_len: u64,
    /// How the file ends.
    pub(crate) tail: Tail,
}

/// Why a results file cannot be resumed (the caller adds the path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Line `line` (1-based) is not a record.
    Line { line: u64, message: String },
    /// Two records of example `index`.
    Duplicate { index: u64 },
    /// Reading failed.
    Io(String),
}

/// Reads the records of a results file, line by line (memory: 16 bytes per record, plus the
/// longest line).
pub(crate) fn read_results(mut reader: impl BufRead) -> Result<Recorded, ReadError> {
    let mut out = Recorded {
        entries: Vec::new(),
        sum: ExactSum::default(),
        n_errors: 0,
        first_errors: Vec::new(),
        valid_len: 0,
        tail: Tail::Clean,
    };
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| ReadError::Io(e.to_string()))?;
        if read == 0 {
            break;
        }
        number += 1;
        let terminated = line.last() == Some(&b'\n');
        let body = if terminated {
            &line[..line.len() - 1]
        } else {
            &line[..]
        };
        let parsed = parse_line(body);
        let record = match (parsed, terminated) {
            (Ok(record), true) => record,
            (Ok(record), false) => {
                out.tail = Tail::Unterminated;
                record
            }
            (Err(_), false) => {
                out.tail = Tail::Partial;
                break;
            }
            (Err(message), true) => {
                return Err(ReadError::Line {
                    line: number,
                    message,
                });
            }
        };
        out.valid_len += read as u64;
        out.sum.add(record.score.0);
        out.entries.push((record.index, record.hash));
        if let Some(error) = record.error {
            out.n_errors += 1;
            if out.first_errors.len() < KEPT_FAILURES {
                out.first_errors.push((record.index, error));
            }
        }
    }
    out.entries.sort_unstable_by_key(|&(index, _)| index);
    if let Some(w) = out.entries.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ReadError::Duplicate { index: w[0].0 });
    }
    Ok(out)
}

struct Parsed {
    index: u64,
    hash: u64,
    score: ScoreIn,
    error: Option<String>,
}

fn parse_line(body: &[u8]) -> Result<Parsed, String> {
    let record: RecordIn = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let hash = parse_hash(&record.hash)
        .ok_or_else(|| format!("hash {:?} is not 16 hex digits", record.hash))?;
    Ok(Parsed {
        index: record.index,
        hash,
        score: record.score,
        error: record.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(index: u64, score: f64, error: Option<&str>) -> String {
        let ex = Example::new().with("x", index).with_inputs(["x"]);
        let mut buf = Vec::new();
        let failure = error.map(|e| EvalFailure::ProgramPanicked(e.to_string()));
        write_record(
            &mut buf,
            index,
            example_hash(&ex),
            &ex,
            None,
            score,
            failure.as_ref(),
        )
        .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn records_round_trip_with_their_aggregates() {
        let text = [
            line(1, 1.0, None),
            line(0, f64::NAN, None),
            line(2, 0.0, Some("boom")),
        ]
        .concat();
        let rec = read_results(text.as_bytes()).unwrap();
        assert_eq!(
            rec.entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(rec.sum.value().is_nan());
        assert_eq!(rec.n_errors, 1);
        assert_eq!(
            rec.first_errors,
            [(2, "the program panicked: boom".to_string())]
        );
        assert_eq!(rec.valid_len, text.len() as u64);
        assert_eq!(rec.tail, Tail::Clean);
    }

    #[test]
    fn a_cut_last_line_is_dropped_and_an_unterminated_whole_one_kept() {
        let whole = [line(0, 1.0, None), line(1, 1.0, None)].concat();
        let cut = format!("{whole}{}", &line(2, 1.0, None)[..20]);
        let rec = read_results(cut.as_bytes()).unwrap();
        assert_eq!((rec.entries.len(), rec.tail), (2, Tail::Partial));
        assert_eq!(rec.valid_len, whole.len() as u64);

        let unterminated = whole.trim_end();
        let rec = read_results(unterminated.as_bytes()).unwrap();
        assert_eq!((rec.entries.len(), rec.tail), (2, Tail::Unterminated));
        assert_eq!(rec.valid_len, unterminated.len() as u64);
    }

    #[test]
    fn a_bad_middle_line_or_a_duplicate_is_an_error() {
        let text = format!(
            "{}{{\"index\": 1}}\n{}",
            line(0, 1.0, None),
            line(2, 1.0, None)
        );
        match read_results(text.as_bytes()) {
            Err(ReadError::Line { line: 2, message }) => {
                assert!(message.contains("hash"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let text = format!("{}\n{}", line(0, 1.0, None), line(1, 1.0, None));
        assert!(matches!(
            read_results(text.as_bytes()),
            Err(ReadError::Line { line: 2, .. })
        ));
        let text = [line(3, 1.0, None), line(3, 0.0, None)].concat();
        assert_eq!(
            read_results(text.as_bytes()).unwrap_err(),
            ReadError::Duplicate { index: 3 }
        );
    }

    #[test]
    fn the_hash_ignores_key_order_but_not_values_or_inputs() {
        let a = Example::new()
            .with("q", "x")
            .with("a", 1)
            .with_inputs(["q"]);
        let b = Example::new()
            .with("a", 1)
            .with("q", "x")
            .with_inputs(["q"]);
        assert_eq!(example_hash(&a), example_hash(&b));
        assert_ne!(
            example_hash(&a),
            example_hash(&a.clone().with("a", 2).with_inputs(["q"]))
        );
        assert_ne!(example_hash(&a), example_hash(&a.with_inputs(["a"])));
        assert_eq!(
            parse_hash(&hash_hex(example_hash(&a))),
            Some(example_hash(&a))
        );
        assert_eq!(parse_hash("+123456789abcdef"), None);
    }

    #[test]
    fn the_exact_sum_does_not_depend_on_order() {
        let xs = [0.1, 1e16, 0.3, -1e16, 0.7, 1.0 / 3.0, 2.5e-8];
        let mut fwd = ExactSum::default();
        let mut back = ExactSum::default();
        for x in xs {
            fwd.add(x);
        }
        for x in xs.iter().rev() {
            back.add(*x);
        }
        assert_eq!(fwd.value().to_bits(), back.value().to_bits());
        // Python: math.fsum([0.1] * 10) == 1.0, where sum() gives 0.9999999999999999.
        let mut tenths = ExactSum::default();
        for _ in 0..10 {
            tenths.add(0.1);
        }
        assert_eq!(tenths.value(), 1.0);
        assert_eq!(ExactSum::default().value(), 0.0);
    }
}

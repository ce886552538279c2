//! Reading a JSONL corpus: one `{"id", "text", …}` object per line.

use super::RetrieveError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// What a build does with a line that is not a document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnBadLine {
    /// Stop with [`RetrieveError::BadLine`] naming the file and line (the default).
    #[default]
    Stop,
    /// Skip the line, record it in the report, and go on.
    Skip,
}

/// One document of a corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// The document's id: the line's `"id"` (a string or a number), or its position among the
    /// corpus's documents (counted from 0) when the line has none.
    pub id: String,
    /// The text to index.
    pub text: String,
    /// The line's other fields (a title, a url, …), kept with the document.
    #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// A line that was not a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadLine {
    /// The line number, counted from 1.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// A corpus read into memory by [`read_jsonl`] or [`Corpus::from_texts`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Corpus {
    /// The documents, in file order.
    pub documents: Vec<Document>,
    /// The lines skipped under [`OnBadLine::Skip`].
    pub skipped: Vec<BadLine>,
}

impl Corpus {
    /// A corpus of texts whose ids are their positions (`"0"`, `"1"`, …).
    pub fn from_texts<S: Into<String>>(texts: impl IntoIterator<Item = S>) -> Self {
        let documents = texts
            .into_iter()
            .enumerate()
            .map(|(i, text)| Document {
                id: i.to_string(),
                text: text.into(),
                extra: Map::new(),
            })
            .collect();
        Corpus {
            documents,
            skipped: Vec::new(),
        }
    }
}

/// Reads a JSONL corpus. Blank lines are ignored; a line that is not a JSON object with a string
/// `"text"` (and, if present, a string or integer `"id"`) stops the read or is skipped, as
/// `on_bad_line` says. A corpus with no documents is [`RetrieveError::EmptyCorpus`].
pub fn read_jsonl(path: impl AsRef<Path>, on_bad_line: OnBadLine) -> Result<Corpus, RetrieveError> {
    let path = path.as_ref();
    let mut corpus = Corpus::default();
    for item in JsonlDocuments::open(path)? {
        match item? {
            Ok(doc) => corpus.documents.push(doc),
            Err(bad) => match on_bad_line {
                OnBadLine::Stop => return Err(bad.into_error(path)),
                OnBadLine::Skip => corpus.skipped.push(bad),
            },
        }
    }
    if corpus.documents.is_empty() {
        return Err(RetrieveError::EmptyCorpus {
            path: path.to_path_buf(),
        });
    }
    Ok(corpus)
}

impl BadLine {
    pub(crate) fn into_error(self, path: &Path) -> RetrieveError {
        RetrieveError::BadLine {
            path: path.to_path_buf(),
            line: self.line,
            message: self.message,
        }
    }
}

/// One non-blank line of a JSONL file.
pub(crate) struct RawLine {
    /// Counted from 1.
    pub(crate) number: usize,
    /// The line without its line ending, or why it cannot be read as text.
    pub(crate) text: Result<String, String>,
    /// Bytes of the file read so far (for the BM25 build's progress bar).
    #[cfg_attr(not(feature = "bm25"), allow(dead_code))]
    pub(crate) offset: u64,
}

/// The non-blank lines of a JSONL file, streamed; a read error ends the stream.
pub(crate) struct JsonlLines {
    path: PathBuf,
    reader: std::io::BufReader<std::fs::File>,
    number: usize,
    offset: u64,
}

impl JsonlLines {
    pub(crate) fn open(path: &Path) -> Result<Self, RetrieveError> {
        let file = std::fs::File::open(path).map_err(|e| RetrieveError::io(path, e))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(RetrieveError::io(
                path,
                std::io::Error::other("it is a directory, not a JSONL file"),
            ));
        }
        Ok(JsonlLines {
            path: path.to_path_buf(),
            reader: std::io::BufReader::with_capacity(1 << 16, file),
            number: 0,
            offset: 0,
        })
    }
}

impl Iterator for JsonlLines {
    type Item = Result<RawLine, RetrieveError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut bytes = Vec::new();
            match self.reader.read_until(b'\n', &mut bytes) {
                Ok(0) => return None,
                Ok(n) => {
                    self.number += 1;
                    self.offset += n as u64;
                }
                Err(e) => return Some(Err(RetrieveError::io(&self.path, e))),
            }
            while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                bytes.pop();
            }
            let text =
                String::from_utf8(bytes).map_err(|_| "the line is not valid UTF-8".to_string());
            if text.as_ref().is_ok_and(|t| t.trim().is_empty()) {
                continue;
            }
            return Some(Ok(RawLine {
                number: self.number,
                text,
                offset: self.offset,
            }));
        }
    }
}

/// The documents of a JSONL file, streamed: each item is a document or the bad line it came
/// from; reading errors end the stream.
struct JsonlDocuments {
    lines: JsonlLines,
    documents: usize,
}

impl JsonlDocuments {
    fn open(path: &Path) -> Result<Self, RetrieveError> {
        Ok(JsonlDocuments {
            lines: JsonlLines::open(path)?,
            documents: 0,
        })
    }
}

impl Iterator for JsonlDocuments {
    type Item = Result<Result<Document, BadLine>, RetrieveError>;

    fn next(&mut self) -> Option<Self::Item> {
        let raw = match self.lines.next()? {
            Ok(raw) => raw,
            Err(e) => return Some(Err(e)),
        };
        let parsed = raw
            .text
            .and_then(|text| parse_fields(&text))
            .map(|fields| Document {
                id: fields.id.unwrap_or_else(|| self.documents.to_string()),
                text: fields.text,
                extra: fields.extra,
            })
            .map_err(|message| BadLine {
                line: raw.number,
                message,
            });
        if parsed.is_ok() {
            self.documents += 1;
        }
        Some(Ok(parsed))
    }
}

/// One corpus line's fields.
pub(crate) struct LineFields {
    /// The line's `"id"`, if it has one.
    pub(crate) id: Option<String>,
    pub(crate) text: String,
    /// The other fields.
    pub(crate) extra: Map<String, Value>,
}

/// One line's id (if it has one), text and other fields.
pub(crate) fn parse_fields(line: &str) -> Result<LineFields, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut fields) = value else {
        return Err(format!(
            "expected a JSON object with a \"text\" field, found {}",
            kind(&value)
        ));
    };
    let text = match fields.remove("text") {
        Some(Value::String(text)) => text,
        Some(other) => return Err(format!("\"text\" must be a string, found {}", kind(&other))),
        None => return Err("the object has no \"text\" field".into()),
    };
    let id = match fields.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Some(other) => {
            return Err(format!(
                "\"id\" must be a string or an integer, found {}",
                kind(&other)
            ));
        }
    };
    Ok(LineFields {
        id,
        text,
        extra: fields,
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn reads_documents_with_ids_extra_fields_and_default_ids() {
        let file = write(
            "{\"id\": \"d1\", \"text\": \"one\", \"title\": \"T\"}\n\n{\"id\": 7, \"text\": \"two\"}\n{\"text\": \"three\"}\n",
        );
        let corpus = read_jsonl(file.path(), OnBadLine::Stop).unwrap();
        let ids: Vec<_> = corpus.documents.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["d1", "7", "2"]);
        assert_eq!(corpus.documents[0].extra["title"], "T");
        assert!(corpus.skipped.is_empty());
    }

    #[test]
    fn a_bad_line_stops_with_its_number_or_is_skipped() {
        let file = write(
            "{\"text\": \"ok\"}\n{\"text\": 3}\nnot json\n[1]\n{\"id\": 1.5, \"text\": \"x\"}\n{\"title\": \"no text\"}\n{\"text\": \"fine\"}\n",
        );
        let err = read_jsonl(file.path(), OnBadLine::Stop).unwrap_err();
        match &err {
            RetrieveError::BadLine {
                path,
                line,
                message,
            } => {
                assert_eq!(path, file.path());
                assert_eq!(*line, 2);
                assert_eq!(message, "\"text\" must be a string, found a number");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2: ", file.path().display()))
        );

        let corpus = read_jsonl(file.path(), OnBadLine::Skip).unwrap();
        let lines: Vec<_> = corpus.skipped.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6]);
        assert!(corpus.skipped[1].message.starts_with("not JSON"));
        assert_eq!(corpus.documents.len(), 2);
        // Default ids count documents, not lines.
        assert_eq!(corpus.documents[1].id, "1");
    }

    #[test]
    fn empty_and_missing_corpora_are_typed_errors() {
        let file = write("\n  \n");
        assert!(matches!(
            read_jsonl(file.path(), OnBadLine::Stop),
            Err(RetrieveError::EmptyCorpus { .. })
        ));
        let file = write("oops\n");
        assert!(matches!(
            read_jsonl(file.path(), OnBadLine::Skip),
            Err(RetrieveError::EmptyCorpus { .. })
        ));
        let err = read_jsonl("/nonexistent/corpus.jsonl", OnBadLine::Stop).unwrap_err();
        assert!(matches!(err, RetrieveError::Io { .. }));
        assert!(
            err.to_string().contains("/nonexistent/corpus.jsonl"),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_is_a_bad_line() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"{\"text\": \"a\"}\n{\"text\": \"\xff\"}\n").unwrap();
        let err = read_jsonl(file.path(), OnBadLine::Stop).unwrap_err();
        assert!(
            matches!(err, RetrieveError::BadLine { line: 2, .. }),
            "{err:?}"
        );
    }
}

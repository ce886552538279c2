//! The on-disk format of an [`EmbeddingsRetriever`](super::EmbeddingsRetriever): a directory
//! of `embeddings.json` (format name, version, dimension, count, normalization), `vectors.f32`
//! (the row-major buffer as raw little-endian `f32`s) and `passages.jsonl` (one
//! `{"id", "text", …}` per row), written atomically and checked against each other on open.

use super::*;

/// The file that describes a saved index.
pub(super) const METADATA_FILE: &str = "embeddings.json";
/// The file of a saved index's vectors (raw little-endian `f32`, row-major).
pub(super) const VECTORS_FILE: &str = "vectors.f32";
/// The file of a saved index's passages (JSONL, one row per line).
pub(super) const PASSAGES_FILE: &str = "passages.jsonl";
/// The `format` a saved index's metadata names.
pub(super) const FORMAT: &str = "dspex-embeddings";
/// The metadata version this code writes and reads.
pub(super) const VERSION: u32 = 1;
/// How the vectors are stored.
pub(super) const DTYPE: &str = "float32-le";

/// `embeddings.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Metadata {
    format: String,
    version: u32,
    dim: usize,
    count: usize,
    normalize: bool,
    dtype: String,
}

pub(super) fn write_index(dir: &Path, rows: &Rows, normalize: bool) -> Result<(), RetrieveError> {
    std::fs::create_dir_all(dir).map_err(|e| RetrieveError::io(dir, e))?;
    let meta_path = dir.join(METADATA_FILE);
    // An index being replaced stops being one first.
    match std::fs::remove_file(&meta_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(RetrieveError::io(&meta_path, e)),
    }
    write_atomically(&dir.join(VECTORS_FILE), |out| {
        for value in &rows.vectors {
            out.write_all(&value.to_le_bytes())?;
        }
        Ok(())
    })?;
    write_atomically(&dir.join(PASSAGES_FILE), |out| {
        for row in 0..rows.len() {
            let mut line = Map::new();
            line.insert("id".into(), Value::from(rows.ids[row].as_str()));
            line.insert("text".into(), Value::from(rows.texts[row].as_str()));
            for (key, value) in &rows.extra[row] {
                if key != "id" && key != "text" {
                    line.insert(key.clone(), value.clone());
                }
            }
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    let meta = Metadata {
        format: FORMAT.into(),
        version: VERSION,
        dim: rows.dim,
        count: rows.len(),
        normalize,
        dtype: DTYPE.into(),
    };
    write_atomically(&meta_path, |out| {
        serde_json::to_writer_pretty(&mut *out, &meta)?;
        out.write_all(b"\n")
    })
}

/// Writes `path` through a temporary file renamed into place.
pub(super) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), RetrieveError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut out = BufWriter::with_capacity(1 << 16, std::fs::File::create(&tmp)?);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        RetrieveError::io(path, e)
    })
}

pub(super) fn corrupt(path: &Path, message: impl Into<String>) -> RetrieveError {
    RetrieveError::CorruptIndex {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

pub(super) fn read_index(dir: &Path) -> Result<(Rows, bool), RetrieveError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(RetrieveError::NoIndex {
                path: dir.to_path_buf(),
                reason: "it is not a directory".into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RetrieveError::NoIndex {
                path: dir.to_path_buf(),
                reason: "the directory does not exist".into(),
            });
        }
        Err(e) => return Err(RetrieveError::io(dir, e)),
    }
    let meta_path = dir.join(METADATA_FILE);
    let meta_text = match std::fs::read_to_string(&meta_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RetrieveError::NoIndex {
                path: dir.to_path_buf(),
                reason: format!(
                    "it has no {METADATA_FILE} (not an embeddings index, or its save did not finish)"
                ),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(corrupt(&meta_path, "the file is not UTF-8 text"));
        }
        Err(e) => return Err(RetrieveError::io(&meta_path, e)),
    };
    let meta = parse_metadata(&meta_text).map_err(|m| corrupt(&meta_path, m))?;
    let vectors = read_vectors(&dir.join(VECTORS_FILE), &meta)?;
    let (ids, texts, extra) = read_passages(&dir.join(PASSAGES_FILE), meta.count)?;
    Ok((
        Rows {
            dim: meta.dim,
            vectors,
            ids,
            texts,
            extra,
        },
        meta.normalize,
    ))
}

pub(super) fn parse_metadata(text: &str) -> Result<Metadata, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let format = value.get("format").and_then(Value::as_str);
    if format != Some(FORMAT) {
        return Err(format!(
            "the format is {}, expected \"{FORMAT}\"",
            format.map_or_else(|| "missing".to_string(), |f| format!("\"{f}\""))
        ));
    }
    let meta: Metadata = serde_json::from_value(value).map_err(|e| format!("bad metadata: {e}"))?;
    if meta.version != VERSION {
        return Err(format!(
            "version {} is not the version this dspex reads ({VERSION})",
            meta.version
        ));
    }
    if meta.dtype != DTYPE {
        return Err(format!(
            "the vectors are stored as \"{}\", expected \"{DTYPE}\"",
            meta.dtype
        ));
    }
    if meta.dim == 0 {
        return Err("the dimension is 0".into());
    }
    if meta.count == 0 {
        return Err("the index holds no passages".into());
    }
    Ok(meta)
}

pub(super) fn read_vectors(path: &Path, meta: &Metadata) -> Result<Vec<f32>, RetrieveError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(corrupt(path, "the vectors file is missing"));
        }
        Err(e) => return Err(RetrieveError::io(path, e)),
    };
    let values = meta
        .count
        .checked_mul(meta.dim)
        .filter(|v| v.checked_mul(4).is_some())
        .ok_or_else(|| corrupt(path, "count × dimension overflows"))?;
    let expected = values as u64 * 4;
    let found = file
        .metadata()
        .map_err(|e| RetrieveError::io(path, e))?
        .len();
    if found != expected {
        let what = if found < expected {
            "truncated"
        } else {
            "longer than the metadata says"
        };
        return Err(corrupt(
            path,
            format!(
                "{what}: {} vectors of dimension {} take {expected} bytes, the file has {found}{}",
                meta.count,
                meta.dim,
                if found % (meta.dim as u64 * 4) == 0 && found > 0 {
                    format!(
                        " ({} vectors of dimension {}, or another dimension)",
                        found / (meta.dim as u64 * 4),
                        meta.dim
                    )
                } else {
                    String::new()
                }
            ),
        ));
    }
    let mut vectors = Vec::with_capacity(values);
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut chunk = vec![0u8; 1 << 16];
    let mut remaining = values * 4;
    while remaining > 0 {
        let want = remaining.min(chunk.len());
        reader
            .read_exact(&mut chunk[..want])
            .map_err(|e| RetrieveError::io(path, e))?;
        vectors.extend(
            chunk[..want]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        remaining -= want;
    }
    for (row, vector) in vectors.chunks_exact(meta.dim).enumerate() {
        if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
            return Err(corrupt(
                path,
                format!("vector {row} has a non-finite value at position {i}"),
            ));
        }
        if meta.normalize {
            let n = norm(vector);
            if n > MIN_NORM && (n - 1.0).abs() > 1e-3 {
                return Err(corrupt(
                    path,
                    format!("vector {row} has norm {n:.6}, but the index is normalized"),
                ));
            }
        }
    }
    Ok(vectors)
}

pub(super) type Columns = (Vec<String>, Vec<String>, Vec<Map<String, Value>>);

pub(super) fn read_passages(path: &Path, count: usize) -> Result<Columns, RetrieveError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(corrupt(path, "the passages file is missing"));
        }
        Err(e) => return Err(RetrieveError::io(path, e)),
    };
    let mut ids = Vec::with_capacity(count);
    let mut texts = Vec::with_capacity(count);
    let mut extra = Vec::with_capacity(count);
    for (i, line) in std::io::BufReader::with_capacity(1 << 16, file)
        .lines()
        .enumerate()
    {
        let line_no = i + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(corrupt(path, format!("line {line_no} is not UTF-8")));
            }
            Err(e) => return Err(RetrieveError::io(path, e)),
        };
        if ids.len() == count {
            return Err(corrupt(
                path,
                format!("more than the {count} passages the metadata says (line {line_no})"),
            ));
        }
        let bad = |m: &str| corrupt(path, format!("line {line_no}: {m}"));
        let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(&line) else {
            return Err(bad("not a JSON object"));
        };
        let Some(Value::String(id)) = fields.remove("id") else {
            return Err(bad("no string \"id\""));
        };
        let Some(Value::String(text)) = fields.remove("text") else {
            return Err(bad("no string \"text\""));
        };
        ids.push(id);
        texts.push(text);
        extra.push(fields);
    }
    if ids.len() != count {
        return Err(corrupt(
            path,
            format!(
                "{} passages, but the metadata says {count} (truncated?)",
                ids.len()
            ),
        ));
    }
    Ok((ids, texts, extra))
}

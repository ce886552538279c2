//! DSPy's media input types: [`Image`], [`Audio`] and [`File`].
//!
//! Each is a value of a signature field (`image: Image`) that the adapters send as a content
//! part of the user message (`image_url`, `input_audio`, `file`) between the text parts, where
//! DSPy puts it. As field values in an [`Example`](crate::Example) they are JSON objects of the
//! shape of the DSPy type's fields — `{"url"}`, `{"data", "audio_format"}`,
//! `{"file_data", "file_id", "filename"}` — so they travel through `serde_json::Value` like every
//! other field and load from (and save to) DSPy's field names.
//!
//! Constructors never touch the network: an `https:` URL is kept as it is (DSPy's `Image(url)`
//! without download). Reading a file finds its MIME type from the extension with a small table
//! of what Python's `mimetypes` answers (see the `mime` module's notes). Bad input is a
//! [`MediaError`] naming what was wrong.

use super::mime;
use super::{ContentPart, FilePart, ImageUrl, InputAudio};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why an [`Image`], [`Audio`] or [`File`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The file could not be read.
    #[error("cannot read `{}`: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error's kind.
        kind: std::io::ErrorKind,
        /// The I/O error's text.
        message: String,
    },
    /// The file's extension does not say its MIME type.
    #[error(
        "cannot tell the MIME type of `{}` from its extension; read the bytes and use `from_bytes` with the MIME type",
        path.display()
    )]
    UnknownMimeType {
        /// The file.
        path: PathBuf,
    },
    /// The MIME type is not `type/subtype`, or not the kind the constructor needs (an audio
    /// file that is not `audio/…`).
    #[error("MIME type `{mime}` is not valid here: {reason}")]
    InvalidMimeType {
        /// The MIME type.
        mime: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `data:` URI that is not `data:<type>/<subtype>[;params];base64,<base64 data>`.
    #[error("malformed data URI: {reason}")]
    MalformedDataUri {
        /// What is wrong with it.
        reason: String,
    },
    /// Data that should be base64 is not.
    #[error("{what} is not valid base64: {message}")]
    InvalidBase64 {
        /// Which data.
        what: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// An image source that is neither an `http(s)`/`gs` URL with a host nor a `data:` URI
    /// (DSPy's "Unrecognized image string").
    #[error(
        "`{url}` is not an http(s) or gs URL with a host, nor a data: URI; load local files with `Image::from_file`"
    )]
    InvalidUrl {
        /// The text given.
        url: String,
    },
    /// A [`File`] with none of `file_data`, `file_id`, `filename`.
    #[error("a File needs at least one of file_data, file_id or filename")]
    EmptyFile,
}

/// A parsed `data:` URI: its MIME type (without parameters) and base64 payload.
struct DataUri<'a> {
    mime: &'a str,
    data: &'a str,
}

fn parse_data_uri(uri: &str) -> Result<DataUri<'_>, MediaError> {
    let bad = |reason: &str| MediaError::MalformedDataUri {
        reason: reason.to_string(),
    };
    let rest = uri
        .strip_prefix("data:")
        .ok_or_else(|| bad("it does not start with `data:`"))?;
    let (header, data) = rest
        .split_once(',')
        .ok_or_else(|| bad("there is no `,` before the data"))?;
    let mut params = header.split(';');
    let mime = params.next().unwrap_or_default();
    if !params.any(|p| p.eq_ignore_ascii_case("base64")) {
        return Err(bad("the data is not marked `;base64`"));
    }
    check_mime(mime)?;
    STANDARD
        .decode(data)
        .map_err(|e| MediaError::InvalidBase64 {
            what: "the data URI's data",
            message: e.to_string(),
        })?;
    Ok(DataUri { mime, data })
}

fn check_mime(mime: &str) -> Result<(), MediaError> {
    let valid = mime.split_once('/').is_some_and(|(t, s)| {
        let token = |x: &str| {
            !x.is_empty()
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        token(t) && token(s)
    });
    if valid {
        Ok(())
    } else {
        Err(MediaError::InvalidMimeType {
            mime: mime.to_string(),
            reason: "a MIME type is `type/subtype`",
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, MediaError> {
    std::fs::read(path).map_err(|e| MediaError::Read {
        path: path.to_path_buf(),
        kind: e.kind(),
        message: e.to_string(),
    })
}

fn data_uri_of(mime: &str, bytes: &[u8]) -> String {
    let mut uri = String::with_capacity(mime.len() + 13 + bytes.len().div_ceil(3) * 4);
    uri.push_str("data:");
    uri.push_str(mime);
    uri.push_str(";base64,");
    STANDARD.encode_string(bytes, &mut uri);
    uri
}

/// DSPy's `urlparse(s).scheme in ("http", "https", "gs") and netloc`.
fn is_remote_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http" | "https" | "gs"
    ) && !host.is_empty()
}

/// Python's `str.strip()` of whitespace, as pydantic's `str_strip_whitespace` applies it.
fn strip(s: &str) -> &str {
    s.trim_matches(crate::pycompat::text::is_py_space)
}

/// `<N base64 chars>` in place of a `data:` URI's payload, for `Debug`.
fn abbreviated(uri: &str) -> String {
    match uri.split_once("base64,") {
        Some((head, data)) => format!("{head}base64,<{} base64 chars>", data.len()),
        None => uri.to_string(),
    }
}

// ---- Image -----------------------------------------------------------------------------------

/// An image input (DSPy's `dspy.Image`): an `http(s)`/`gs` URL or a base64 `data:` URI.
///
/// Sent as an `image_url` content part. As a field value it is `{"url": …}`.
///
/// ```
/// use dspex_core::types::Image;
///
/// let remote = Image::url("https://example.com/cat.png")?;
/// assert_eq!(remote.as_url(), "https://example.com/cat.png");
///
/// let png = Image::from_bytes(b"\x89PNG\r\n\x1a\n", "image/png")?;
/// assert_eq!(png.as_url(), "data:image/png;base64,iVBORw0KGgo=");
/// assert_eq!(png.mime_type(), Some("image/png"));
/// assert_eq!(serde_json::to_value(&png)?, serde_json::json!({"url": png.as_url()}));
///
/// assert!(Image::url("cat.png").is_err()); // a local path: use Image::from_file
/// assert!(Image::data_uri("data:image/png,not-base64").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ImageFields")]
pub struct Image {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageFields {
    url: String,
}

impl TryFrom<ImageFields> for Image {
    type Error = MediaError;

    fn try_from(fields: ImageFields) -> Result<Self, MediaError> {
        Image::url(fields.url)
    }
}

impl Image {
    /// An image at a URL — `http(s)://` or `gs://` with a host, kept as it is (nothing is
    /// downloaded) — or given as a `data:` URI (validated as [`Image::data_uri`] does).
    /// Surrounding whitespace is stripped, as DSPy strips it.
    pub fn url(url: impl Into<String>) -> Result<Self, MediaError> {
        let url = url.into();
        let stripped = strip(&url);
        if stripped.starts_with("data:") {
            return Image::data_uri(stripped);
        }
        if !is_remote_url(stripped) {
            return Err(MediaError::InvalidUrl { url });
        }
        Ok(Image {
            url: if stripped.len() == url.len() {
                url
            } else {
                stripped.to_string()
            },
        })
    }

    /// An image from a `data:<mime>;base64,<data>` URI; the MIME type must be `type/subtype` and
    /// the data valid base64.
    pub fn data_uri(uri: impl Into<String>) -> Result<Self, MediaError> {
        let uri = uri.into();
        parse_data_uri(strip(&uri))?;
        Ok(Image {
            url: strip(&uri).to_string(),
        })
    }

    /// An image from raw bytes and their MIME type (`image/png`), as a `data:` URI.
    pub fn from_bytes(bytes: &[u8], mime: &str) -> Result<Self, MediaError> {
        check_mime(mime)?;
        Ok(Image {
            url: data_uri_of(mime, bytes),
        })
    }

    /// An image read from a local file, as a `data:` URI whose MIME type comes from the
    /// extension (DSPy's `Image.from_path`). An extension the table does not know is
    /// [`MediaError::UnknownMimeType`]; use [`Image::from_bytes`] then.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, MediaError> {
        let path = path.as_ref();
        let bytes = read(path)?;
        let mime = mime::guess(path).ok_or_else(|| MediaError::UnknownMimeType {
            path: path.to_path_buf(),
        })?;
        Ok(Image {
            url: data_uri_of(mime, &bytes),
        })
    }

    /// The URL or `data:` URI.
    pub fn as_url(&self) -> &str {
        &self.url
    }

    /// The URL or `data:` URI, by value.
    pub fn into_url(self) -> String {
        self.url
    }

    /// Whether the image is inline (a `data:` URI) rather than at a remote URL.
    pub fn is_data_uri(&self) -> bool {
        self.url.starts_with("data:")
    }

    /// The MIME type of a `data:` URI (`image/png`); `None` for a remote URL.
    pub fn mime_type(&self) -> Option<&str> {
        let rest = self.url.strip_prefix("data:")?;
        rest.split([';', ',']).next()
    }

    /// The decoded bytes of a `data:` URI; `None` for a remote URL.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        let (_, data) = self.url.strip_prefix("data:")?.split_once(',')?;
        STANDARD.decode(data).ok()
    }

    /// The content parts DSPy's `Image.format()` gives: one `image_url` part.
    pub fn content_parts(&self) -> Vec<ContentPart> {
        vec![ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: self.url.clone(),
                detail: None,
            },
        }]
    }
}

impl fmt::Debug for Image {
    /// The URL, a `data:` URI's payload abbreviated to its length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("url", &abbreviated(&self.url))
            .finish()
    }
}

// ---- Audio -----------------------------------------------------------------------------------

/// An audio input (DSPy's `dspy.Audio`): base64 data and its format (`wav`, `mp3`, …).
///
/// Sent as an `input_audio` content part. As a field value it is
/// `{"data": …, "audio_format": …}`.
///
/// ```
/// use dspex_core::types::Audio;
///
/// let audio = Audio::from_bytes(b"RIFF", "wav");
/// assert_eq!(audio.data(), "UklGRg==");
/// assert_eq!(audio.format(), "wav");
///
/// let same = Audio::data_uri("data:audio/x-wav;base64,UklGRg==")?;
/// assert_eq!(same, audio); // `x-` is dropped from the format, as DSPy does
/// assert_eq!(
///     serde_json::to_value(&same)?,
///     serde_json::json!({"data": "UklGRg==", "audio_format": "wav"})
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audio {
    data: String,
    audio_format: String,
}

/// DSPy's `_normalize_audio_format`: `x-wav` → `wav`.
fn normalize_audio_format(format: &str) -> String {
    format.strip_prefix("x-").unwrap_or(format).to_string()
}

impl Audio {
    /// Audio from base64 data and its format (DSPy's `Audio(data=…, audio_format=…)`); the data
    /// must be valid base64.
    pub fn new(data: impl Into<String>, format: impl Into<String>) -> Result<Self, MediaError> {
        let data = data.into();
        STANDARD
            .decode(&data)
            .map_err(|e| MediaError::InvalidBase64 {
                what: "the audio data",
                message: e.to_string(),
            })?;
        Ok(Audio {
            data,
            audio_format: format.into(),
        })
    }

    /// Audio from raw bytes in `format` (`wav`, `mp3`, …).
    pub fn from_bytes(bytes: &[u8], format: impl Into<String>) -> Self {
        Audio {
            data: STANDARD.encode(bytes),
            audio_format: format.into(),
        }
    }

    /// Audio from a `data:audio/<format>;base64,<data>` URI (the format without an `x-`
    /// prefix).
    pub fn data_uri(uri: &str) -> Result<Self, MediaError> {
        let parsed = parse_data_uri(strip(uri))?;
        let format =
            parsed
                .mime
                .strip_prefix("audio/")
                .ok_or_else(|| MediaError::InvalidMimeType {
                    mime: parsed.mime.to_string(),
                    reason: "audio data URIs are `data:audio/<format>;base64,…`",
                })?;
        Ok(Audio {
            data: parsed.data.to_string(),
            audio_format: normalize_audio_format(format),
        })
    }

    /// Audio read from a local file (DSPy's `Audio.from_path`): the extension's MIME type must
    /// be `audio/…`, and the format is its subtype without `x-` (`.wav` → `wav`, `.mp3` →
    /// `mpeg`, as Python's `mimetypes` names it).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, MediaError> {
        let path = path.as_ref();
        let mime = mime::guess(path).ok_or_else(|| MediaError::UnknownMimeType {
            path: path.to_path_buf(),
        })?;
        let format = mime
            .strip_prefix("audio/")
            .ok_or_else(|| MediaError::InvalidMimeType {
                mime: mime.to_string(),
                reason: "an audio file's MIME type is `audio/…`",
            })?;
        let bytes = read(path)?;
        Ok(Audio::from_bytes(&bytes, normalize_audio_format(format)))
    }

    /// The base64 data.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The format (`wav`).
    pub fn format(&self) -> &str {
        &self.audio_format
    }

    /// The decoded bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, MediaError> {
        STANDARD
            .decode(&self.data)
            .map_err(|e| MediaError::InvalidBase64 {
                what: "the audio data",
                message: e.to_string(),
            })
    }

    /// The content parts DSPy's `Audio.format()` gives: one `input_audio` part.
    pub fn content_parts(&self) -> Vec<ContentPart> {
        vec![ContentPart::InputAudio {
            input_audio: InputAudio {
                data: self.data.clone(),
                format: self.audio_format.clone(),
            },
        }]
    }
}

impl fmt::Debug for Audio {
    /// The data abbreviated to its length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audio")
            .field("data", &format_args!("<{} base64 chars>", self.data.len()))
            .field("audio_format", &self.audio_format)
            .finish()
    }
}

// ---- File ------------------------------------------------------------------------------------

/// A file input (DSPy's `dspy.File`): inline data as a `data:` URI, the id of a file uploaded to
/// the provider, or both, with an optional name.
///
/// Sent as a `file` content part. As a field value it is
/// `{"file_data": …, "file_id": …, "filename": …}`, absent members `null` (pydantic's
/// `model_dump`).
///
/// ```
/// use dspex_core::types::File;
///
/// let pdf = File::from_bytes(b"%PDF-1.4", Some("report.pdf"), "application/pdf")?;
/// assert_eq!(pdf.file_data(), Some("data:application/pdf;base64,JVBERi0xLjQ="));
/// assert_eq!(pdf.filename(), Some("report.pdf"));
///
/// let uploaded = File::from_file_id("file-abc123", None);
/// assert_eq!(
///     serde_json::to_value(&uploaded)?,
///     serde_json::json!({"file_data": null, "file_id": "file-abc123", "filename": null})
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "FileFields")]
pub struct File {
    file_data: Option<String>,
    file_id: Option<String>,
    filename: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFields {
    #[serde(default)]
    file_data: Option<String>,
    #[serde(default)]
    file_id: Option<String>,
    #[serde(default)]
    filename: Option<String>,
}

impl TryFrom<FileFields> for File {
    type Error = MediaError;

    fn try_from(f: FileFields) -> Result<Self, MediaError> {
        let strip_owned = |s: Option<String>| s.map(|s| strip(&s).to_string());
        let file = File {
            file_data: strip_owned(f.file_data),
            file_id: strip_owned(f.file_id),
            filename: strip_owned(f.filename),
        };
        if file.file_data.is_none() && file.file_id.is_none() && file.filename.is_none() {
            return Err(MediaError::EmptyFile);
        }
        Ok(file)
    }
}

impl File {
    /// A file read from a local path (DSPy's `File.from_path`): the data as a `data:` URI with
    /// the extension's MIME type (`application/octet-stream` when the table does not know it,
    /// as DSPy does), named after the path's last component.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, MediaError> {
        let path = path.as_ref();
        let bytes = read(path)?;
        let mime = mime::guess(path).unwrap_or("application/octet-stream");
        Ok(File {
            file_data: Some(data_uri_of(mime, &bytes)),
            file_id: None,
            filename: path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned()),
        })
    }

    /// A file from raw bytes, its optional name and MIME type (DSPy's `File.from_bytes`).
    pub fn from_bytes(
        bytes: &[u8],
        filename: Option<&str>,
        mime: &str,
    ) -> Result<Self, MediaError> {
        check_mime(mime)?;
        Ok(File {
            file_data: Some(data_uri_of(mime, bytes)),
            file_id: None,
            filename: filename.map(str::to_string),
        })
    }

    /// A file from a `data:` URI (validated as [`crate::types::Image::data_uri`] does) and an
    /// optional name.
    pub fn data_uri(uri: &str, filename: Option<&str>) -> Result<Self, MediaError> {
        parse_data_uri(strip(uri))?;
        Ok(File {
            file_data: Some(strip(uri).to_string()),
            file_id: None,
            filename: filename.map(str::to_string),
        })
    }

    /// A file already uploaded to the provider, by its id (DSPy's `File.from_file_id`).
    pub fn from_file_id(file_id: impl Into<String>, filename: Option<&str>) -> Self {
        File {
            file_data: None,
            file_id: Some(file_id.into()),
            filename: filename.map(str::to_string),
        }
    }

    /// The same file under another name.
    #[must_use]
    pub fn with_filename(mut self, filename: impl Into<String>) -> Self {
        self.filename = Some(filename.into());
        self
    }

    /// The inline data as a `data:` URI.
    pub fn file_data(&self) -> Option<&str> {
        self.file_data.as_deref()
    }

    /// The provider's id of an uploaded file.
    pub fn file_id(&self) -> Option<&str> {
        self.file_id.as_deref()
    }

    /// The file's name.
    pub fn filename(&self) -> Option<&str> {
        self.filename.as_deref()
    }

    /// The MIME type of the inline data (`application/pdf`).
    pub fn mime_type(&self) -> Option<&str> {
        let rest = self.file_data.as_deref()?.strip_prefix("data:")?;
        rest.split([';', ',']).next()
    }

    /// The content parts DSPy's `File.format()` gives: one `file` part with the members that
    /// are set (and not empty).
    pub fn content_parts(&self) -> Vec<ContentPart> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        vec![ContentPart::File {
            file: FilePart {
                file_data: set(&self.file_data),
                file_id: set(&self.file_id),
                filename: set(&self.filename),
            },
        }]
    }
}

impl fmt::Debug for File {
    /// The data abbreviated to its length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("file_data", &self.file_data.as_deref().map(abbreviated))
            .field("file_id", &self.file_id)
            .field("filename", &self.filename)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_sources_follow_dspy() {
        assert!(Image::url("http://example.com/a.png").is_ok());
        assert!(Image::url("gs://bucket/a.png").is_ok());
        assert_eq!(
            Image::url("  https://x.org/a.png\n").unwrap().as_url(),
            "https://x.org/a.png"
        );
        for bad in ["a.png", "/tmp/a.png", "https://", "ftp://x/a.png", ""] {
            assert!(
                matches!(Image::url(bad), Err(MediaError::InvalidUrl { .. })),
                "{bad}"
            );
        }
        let e = Image::data_uri("data:image/png;base64,@@@").unwrap_err();
        assert!(matches!(e, MediaError::InvalidBase64 { .. }), "{e}");
        for bad in [
            "image/png;base64,AA==",
            "data:image/png;base64",
            "data:image/png,AA==",
            "data:png;base64,AA==",
        ] {
            assert!(Image::data_uri(bad).is_err(), "{bad}");
        }
        let img = Image::data_uri("data:image/png;base64,AAEC").unwrap();
        assert_eq!(img.bytes(), Some(vec![0, 1, 2]));
        assert_eq!(img.mime_type(), Some("image/png"));
        assert!(Image::from_bytes(b"x", "png").is_err());
        assert_eq!(
            format!("{img:?}"),
            "Image { url: \"data:image/png;base64,<4 base64 chars>\" }"
        );
    }

    #[test]
    fn serde_shapes_are_dspy_model_dumps() {
        let img: Image = serde_json::from_value(json!({"url": "https://x.org/a.png"})).unwrap();
        assert_eq!(
            serde_json::to_value(&img).unwrap(),
            json!({"url": "https://x.org/a.png"})
        );
        assert!(serde_json::from_value::<Image>(json!({"url": "a.png"})).is_err());
        assert!(serde_json::from_value::<Image>(json!({"url": "https://x/a", "x": 1})).is_err());
        let file: File = serde_json::from_value(json!({"file_id": "f1"})).unwrap();
        assert_eq!(file.file_id(), Some("f1"));
        assert!(serde_json::from_value::<File>(json!({})).is_err());
        let audio: Audio =
            serde_json::from_value(json!({"data": "AA==", "audio_format": "wav"})).unwrap();
        assert_eq!(audio.bytes().unwrap(), vec![0]);
    }

    #[test]
    fn files_are_read_with_their_mime_type() {
        let dir = std::env::temp_dir().join(format!("dspex-media-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("a.PNG");
        std::fs::write(&png, [1u8, 2, 3]).unwrap();
        assert_eq!(
            Image::from_file(&png).unwrap().as_url(),
            "data:image/png;base64,AQID"
        );
        let wav = dir.join("a.wav");
        std::fs::write(&wav, b"RIFF").unwrap();
        let audio = Audio::from_file(&wav).unwrap();
        assert_eq!((audio.data(), audio.format()), ("UklGRg==", "wav"));
        assert!(matches!(
            Audio::from_file(&png),
            Err(MediaError::InvalidMimeType { .. })
        ));
        let odd = dir.join("a.weird");
        std::fs::write(&odd, b"x").unwrap();
        assert!(matches!(
            Image::from_file(&odd),
            Err(MediaError::UnknownMimeType { .. })
        ));
        let file = File::from_file(&odd).unwrap();
        assert_eq!(file.filename(), Some("a.weird"));
        assert_eq!(file.mime_type(), Some("application/octet-stream"));
        let missing = Image::from_file(dir.join("missing.png")).unwrap_err();
        assert!(
            matches!(&missing, MediaError::Read { kind, .. } if *kind == std::io::ErrorKind::NotFound),
            "{missing}"
        );
        assert!(missing.to_string().contains("missing.png"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn content_parts_are_dspy_formats() {
        let file = File::from_file_id("f", Some("a.pdf"));
        assert_eq!(
            serde_json::to_value(file.content_parts()).unwrap(),
            json!([{"type": "file", "file": {"file_id": "f", "filename": "a.pdf"}}])
        );
        let audio = Audio::new("AA==", "mp3").unwrap();
        assert_eq!(
            serde_json::to_value(audio.content_parts()).unwrap(),
            json!([{"type": "input_audio", "input_audio": {"data": "AA==", "format": "mp3"}}])
        );
        assert!(Audio::new("not base64!", "wav").is_err());
    }
}

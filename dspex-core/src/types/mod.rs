//! The values that cross from the adapters to the LM layer: chat [`Message`]s with their
//! [`Role`], and the [`ResponseFormat`] an answer must take. Both layers depend on this module
//! and neither on the other's internals: adapters build messages without knowing how they are
//! sent, and the LM layer sends them without knowing how they were formatted. (The LM layer
//! re-exports these as `lm::Message`, `lm::Role`, `lm::ResponseFormat`.)
//!
//! It also holds DSPy's special input types, the values that become message parts or turns:
//! [`Image`], [`Audio`] and [`File`] (sent as `image_url`, `input_audio` and `file` content
//! parts) and [`History`] (earlier turns, sent as user/assistant message pairs); DSPy's
//! string-like output types [`Code`] (source code in a [`Language`]) and [`Reasoning`]; and the
//! tool-calling types [`ToolSpec`], [`ToolCalls`] and [`ToolCallResults`].

mod code;
mod history;
mod media;
mod mime;
mod reasoning;
mod tool;

pub(crate) use code::code_description;
pub use code::{Code, Language, extract_code, lang};
pub use history::{History, HistoryTurnError};
pub use media::{Audio, File, Image, MediaError};
pub use reasoning::Reasoning;
pub use tool::{
    ToolCall, ToolCallResult, ToolCallResults, ToolCalls, ToolSpec, ToolValueError, format_tool,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The system prompt.
    System,
    /// The user (the adapter's formatted inputs).
    User,
    /// The model (few-shot demos' answers).
    Assistant,
}

impl Role {
    /// `"system"`, `"user"` or `"assistant"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text, or (for a user message carrying images, audio or files) a list of parts.
    pub content: Content,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<Content>) -> Self {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<Content>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<Content>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A message's content as OpenAI's chat API takes it: a string, or a list of parts (text,
/// `image_url`, `input_audio`, `file`) — what DSPy sends when an input is an `Image`, `Audio` or
/// `File`. Serializes as the API spells it (a JSON string, or an array of `{"type": …}` parts).
///
/// ```
/// use dspex_core::types::{Content, ContentPart};
///
/// let plain = Content::from("Hello");
/// assert_eq!(plain, "Hello");
/// assert_eq!(serde_json::to_value(&plain).unwrap(), serde_json::json!("Hello"));
///
/// let parts = Content::Parts(vec![
///     ContentPart::text("What is this?\n"),
///     ContentPart::image_url("https://example.com/cat.png"),
/// ]);
/// assert_eq!(parts.text(), "What is this?\n");
/// assert_eq!(
///     serde_json::to_value(&parts).unwrap(),
///     serde_json::json!([
///         {"type": "text", "text": "What is this?\n"},
///         {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
///     ])
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// A list of parts.
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text when the content is plain text; `None` for a list of parts.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Content::Text(t) => Some(t),
            Content::Parts(_) => None,
        }
    }

    /// All the text: the plain text, or the text parts joined (other parts left out).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Content::Text(t) => std::borrow::Cow::Borrowed(t),
            Content::Parts(parts) => {
                let mut text = parts.iter().filter_map(ContentPart::as_text);
                match (text.next(), text.next()) {
                    (None, _) => std::borrow::Cow::Borrowed(""),
                    (Some(only), None) => std::borrow::Cow::Borrowed(only),
                    (Some(a), Some(b)) => {
                        let mut joined = String::from(a);
                        joined.push_str(b);
                        text.for_each(|t| joined.push_str(t));
                        std::borrow::Cow::Owned(joined)
                    }
                }
            }
        }
    }

    /// Whether any part is not text (an image, audio or a file).
    pub fn has_media(&self) -> bool {
        match self {
            Content::Text(_) => false,
            Content::Parts(parts) => parts.iter().any(|p| p.as_text().is_none()),
        }
    }

    /// A rough size in bytes (text plus media payloads), for budgets and size estimates.
    pub fn size_hint(&self) -> usize {
        match self {
            Content::Text(t) => t.len(),
            Content::Parts(parts) => parts.iter().map(ContentPart::size_hint).sum(),
        }
    }
}

impl std::fmt::Display for Content {
    /// The text; for a list of parts, each part on its own line, images, audio and files as
    /// their [`ContentPart::placeholder`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Text(text) => f.write_str(text),
            Content::Parts(parts) => {
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    match part.as_text() {
                        Some(text) => f.write_str(text)?,
                        None => f.write_str(&part.placeholder())?,
                    }
                }
                Ok(())
            }
        }
    }
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Content::Text(text)
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        Content::Text(text.to_string())
    }
}

impl From<&String> for Content {
    fn from(text: &String) -> Self {
        Content::Text(text.clone())
    }
}

impl From<Vec<ContentPart>> for Content {
    fn from(parts: Vec<ContentPart>) -> Self {
        Content::Parts(parts)
    }
}

impl PartialEq<str> for Content {
    /// Plain text equal to `other` (a list of parts never is).
    fn eq(&self, other: &str) -> bool {
        self.as_text() == Some(other)
    }
}

impl PartialEq<&str> for Content {
    fn eq(&self, other: &&str) -> bool {
        self.as_text() == Some(*other)
    }
}

impl PartialEq<String> for Content {
    fn eq(&self, other: &String) -> bool {
        self.as_text() == Some(other.as_str())
    }
}

/// One part of a [`Content::Parts`] list, in OpenAI's chat API shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// `{"type": "text", "text"}`.
    Text {
        /// The text.
        text: String,
    },
    /// `{"type": "image_url", "image_url": {"url", "detail"?}}`: an `https:` or `data:` URL.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
    /// `{"type": "input_audio", "input_audio": {"data", "format"}}`: base64 audio.
    InputAudio {
        /// The audio.
        input_audio: InputAudio,
    },
    /// `{"type": "file", "file": {"file_data"?, "file_id"?, "filename"?}}`.
    File {
        /// The file.
        file: FilePart,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }

    /// An image part for a URL (`https:` or a `data:` URI).
    pub fn image_url(url: impl Into<String>) -> Self {
        ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: url.into(),
                detail: None,
            },
        }
    }

    /// The text of a text part.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            ContentPart::Text { text } => Some(text),
            _ => None,
        }
    }

    /// A rough size in bytes (text, URL, base64 data).
    pub fn size_hint(&self) -> usize {
        match self {
            ContentPart::Text { text } => text.len(),
            ContentPart::ImageUrl { image_url } => image_url.url.len(),
            ContentPart::InputAudio { input_audio } => input_audio.data.len(),
            ContentPart::File { file } => {
                file.file_data.as_ref().map_or(0, String::len)
                    + file.file_id.as_ref().map_or(0, String::len)
                    + file.filename.as_ref().map_or(0, String::len)
            }
        }
    }

    /// How DSPy's `inspect_history` shows the part: the text, `<image_url: URL>` (a base64
    /// `data:` URL as `<data:image/png;base64,<IMAGE BASE 64 ENCODED(N)>`), `<audio format='wav'
    /// base64-encoded, length=N>`, `<file: name:…, id:…, data_length:N>`.
    pub fn placeholder(&self) -> String {
        match self {
            ContentPart::Text { text } => text.clone(),
            ContentPart::ImageUrl { image_url } => match image_url.url.split_once("base64,") {
                Some((head, data)) => {
                    let rest = data.split("base64,").next().unwrap_or_default();
                    format!(
                        "<{head}base64,<IMAGE BASE 64 ENCODED({})>",
                        rest.chars().count()
                    )
                }
                None => format!("<image_url: {}>", image_url.url),
            },
            ContentPart::InputAudio { input_audio } => format!(
                "<audio format='{}' base64-encoded, length={}>",
                input_audio.format,
                input_audio.data.chars().count()
            ),
            ContentPart::File { file } => format!(
                "<file: name:{}, id:{}, data_length:{}>",
                file.filename.as_deref().unwrap_or_default(),
                file.file_id.as_deref().unwrap_or_default(),
                file.file_data.as_deref().map_or(0, |d| d.chars().count())
            ),
        }
    }
}

/// The `image_url` object of an image part.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageUrl {
    /// An `https:` URL or a `data:` URI.
    pub url: String,
    /// OpenAI's `detail` (`low`, `high`, `auto`), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The `input_audio` object of an audio part.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputAudio {
    /// Base64-encoded audio.
    pub data: String,
    /// Its format (`wav`, `mp3`, …).
    pub format: String,
}

/// The `file` object of a file part: inline data (a `data:` URI), an uploaded file's id, or
/// both, with an optional name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FilePart {
    /// The file as a `data:` URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// A provider's id for an uploaded file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// The file's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// The shape the model must answer in (OpenAI's `response_format`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema (structured outputs).
    JsonSchema {
        /// The `json_schema` object: `{"name", "schema", "strict"?}`.
        json_schema: Value,
    },
}

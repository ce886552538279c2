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
    /// The model (few-shot demos' answers, earlier turns, its tool calls).
    Assistant,
    /// A tool's result, answering one of an assistant message's tool calls (OpenAI's `tool`
    /// role): a conversation history with native function calling sends these.
    Tool,
}

impl Role {
    /// `"system"`, `"user"`, `"assistant"` or `"tool"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One chat message, in OpenAI's chat shape.
///
/// Most messages are a role and a content. Two carry more, as DSPy sends an earlier turn's tool
/// calls with native function calling: an assistant message with [`tool_calls`](Message::tool_calls)
/// (its content may then be empty, sent as `null`), and a [`Role::Tool`] message with the
/// [`tool_call_id`](Message::tool_call_id) it answers and the tool's [`name`](Message::name).
///
/// ```
/// use dspex_core::types::{Message, MessageToolCall};
/// use serde_json::json;
///
/// let call = MessageToolCall::new("call_1", "get_weather", "{\"city\": \"Paris\"}");
/// let asked = Message::assistant_tool_calls("", vec![call]);
/// assert_eq!(
///     serde_json::to_value(&asked)?,
///     json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
///         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]})
/// );
/// let answer = Message::tool("call_1", "get_weather", "Sunny");
/// assert_eq!(
///     serde_json::to_value(&answer)?,
///     json!({"role": "tool", "content": "Sunny", "tool_call_id": "call_1", "name": "get_weather"})
/// );
/// assert_eq!(serde_json::from_value::<Message>(serde_json::to_value(&asked)?)?, asked);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "MessageRepr")]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text, or (for a user message carrying images, audio or files) a list of parts.
    pub content: Content,
    /// The tools an assistant message called (OpenAI's `tool_calls`); empty for every other
    /// message.
    pub tool_calls: Vec<MessageToolCall>,
    /// The call a [`Role::Tool`] message answers.
    pub tool_call_id: Option<String>,
    /// The tool whose result a [`Role::Tool`] message carries.
    pub name: Option<String>,
}

impl Message {
    /// A message of `role` with `content` and nothing else.
    pub fn new(role: Role, content: impl Into<Content>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<Content>) -> Self {
        Message::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<Content>) -> Self {
        Message::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<Content>) -> Self {
        Message::new(Role::Assistant, content)
    }

    /// An assistant message that calls tools, with `content` beside the calls (empty: none,
    /// sent as `null`).
    pub fn assistant_tool_calls(content: impl Into<Content>, calls: Vec<MessageToolCall>) -> Self {
        Message {
            tool_calls: calls,
            ..Message::assistant(content)
        }
    }

    /// A tool's result: the answer to the call `tool_call_id` of the tool `name`.
    pub fn tool(
        tool_call_id: impl Into<String>,
        name: impl Into<String>,
        content: impl Into<Content>,
    ) -> Self {
        Message {
            tool_call_id: Some(tool_call_id.into()),
            name: Some(name.into()),
            ..Message::new(Role::Tool, content)
        }
    }

    /// Whether the content goes out as `null`: an assistant message with tool calls and no
    /// text (DSPy's `content or None`).
    fn null_content(&self) -> bool {
        self.role == Role::Assistant && !self.tool_calls.is_empty() && self.content == ""
    }
}

/// `{"role", "content", "tool_calls"?, "tool_call_id"?, "name"?}`, the optional keys only when
/// set; `content` is `null` for an assistant message with tool calls and no text.
impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Message", 5)?;
        s.serialize_field("role", &self.role)?;
        if self.null_content() {
            s.serialize_field("content", &None::<Content>)?;
        } else {
            s.serialize_field("content", &self.content)?;
        }
        if self.tool_calls.is_empty() {
            s.skip_field("tool_calls")?;
        } else {
            s.serialize_field("tool_calls", &self.tool_calls)?;
        }
        match &self.tool_call_id {
            Some(id) => s.serialize_field("tool_call_id", id)?,
            None => s.skip_field("tool_call_id")?,
        }
        match &self.name {
            Some(name) => s.serialize_field("name", name)?,
            None => s.skip_field("name")?,
        }
        s.end()
    }
}

/// What a [`Message`] deserializes from: `content` may be `null` or absent (no text).
#[derive(Deserialize)]
struct MessageRepr {
    role: Role,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Vec<MessageToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

impl From<MessageRepr> for Message {
    fn from(m: MessageRepr) -> Self {
        Message {
            role: m.role,
            content: m.content.unwrap_or_default(),
            tool_calls: m.tool_calls.unwrap_or_default(),
            tool_call_id: m.tool_call_id,
            name: m.name,
        }
    }
}

/// One tool call of an assistant message, as OpenAI's chat API spells it: `{"id", "type":
/// "function", "function": {"name", "arguments"}}`, the arguments as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "MessageToolCallRepr", into = "MessageToolCallRepr")]
pub struct MessageToolCall {
    /// The call's id, which the answering [`Role::Tool`] message names.
    pub id: String,
    /// The tool called.
    pub name: String,
    /// Its arguments, JSON text.
    pub arguments: String,
}

impl MessageToolCall {
    /// The call `id` of the tool `name` with `arguments` (JSON text).
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        MessageToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct MessageToolCallRepr {
    id: String,
    #[serde(rename = "type", default = "function_type")]
    kind: String,
    function: FunctionRepr,
}

#[derive(Serialize, Deserialize)]
struct FunctionRepr {
    name: String,
    #[serde(default)]
    arguments: String,
}

fn function_type() -> String {
    "function".to_string()
}

impl From<MessageToolCallRepr> for MessageToolCall {
    fn from(r: MessageToolCallRepr) -> Self {
        MessageToolCall {
            id: r.id,
            name: r.function.name,
            arguments: r.function.arguments,
        }
    }
}

impl From<MessageToolCall> for MessageToolCallRepr {
    fn from(c: MessageToolCall) -> Self {
        MessageToolCallRepr {
            id: c.id,
            kind: function_type(),
            function: FunctionRepr {
                name: c.name,
                arguments: c.arguments,
            },
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

//! The one internal shape of a chat exchange.
//!
//! Every client dialect parses into these types and every provider adapter translates from
//! them, so N dialects × M providers is N + M adapters. Nothing a client may send is dropped
//! here: text, images, tool calls and tool results all have a place.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions from the application (OpenAI `system`/`developer`, Anthropic `system`).
    System,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call (OpenAI `tool` role, Anthropic `tool_result` block).
    Tool,
}

impl Role {
    /// The lower-case name used by scripts and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// A URL the provider fetches itself (may be a `data:` URL).
    Url { url: String },
    /// Inline bytes, base64-encoded.
    Base64 { media_type: String, data: String },
}

/// One piece of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Plain text.
    Text { text: String },
    /// An image, with OpenAI's optional `detail` hint.
    Image {
        source: ImageSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

/// A tool invocation the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for this call, echoed back with the result.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments as JSON text (OpenAI's representation; Anthropic's object is serialized).
    pub arguments: String,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Text and image parts, in order.
    #[serde(default)]
    pub content: Vec<ContentPart>,
    /// Tool calls made by an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: the id of the call this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For `Role::Tool`: whether the tool reported an error (Anthropic `is_error`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    /// Optional participant name (OpenAI `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    /// A message holding one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message {
            role,
            content: vec![ContentPart::Text { text: text.into() }],
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
            name: None,
        }
    }

    /// All text parts joined with newlines (images are skipped).
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let ContentPart::Text { text } = part {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(text);
            }
        }
        out
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// How the model should choose tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "name", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool (OpenAI `required`, Anthropic `any`).
    Required,
    /// The model must call this tool.
    Tool(String),
}

/// The shape the output must take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// A chat request, whatever dialect it came in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model name as the client asked (a configured model name).
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Anthropic/Gemini `top_k`; OpenAI has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    pub stream: bool,
    /// OpenAI `user` / Anthropic `metadata.user_id`: the end user the application names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
    /// Free-form string metadata (`metadata` in the body); `feature` is read from here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl ChatRequest {
    /// All message text, for token estimates, policies and the log.
    pub fn prompt_text(&self) -> String {
        let mut out = String::new();
        for message in &self.messages {
            let text = message.joined_text();
            if text.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&text);
        }
        out
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end of the turn.
    Stop,
    /// One of the stop sequences was produced.
    StopSequence,
    /// The token limit was reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// The provider filtered the output.
    ContentFilter,
}

/// Token counts in canonical form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache (a part of `input_tokens`).
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Input tokens written to the provider's prompt cache (a part of `input_tokens`;
    /// Anthropic prices them above the plain input rate).
    #[serde(default)]
    pub cache_write_input_tokens: u64,
    /// True when the counts are our tiktoken estimate, not the provider's.
    #[serde(default)]
    pub estimated: bool,
}

/// A complete (non-streaming) answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The provider's response id (or ours when it has none).
    pub id: String,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// The text output (empty when the model only called tools).
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
}

impl ChatResponse {
    /// The answer as the events a stream of it would carry, in order (to stream a whole
    /// answer, e.g. one a stage gave before dispatch).
    pub fn into_events(self) -> Vec<StreamEvent> {
        let mut events = vec![StreamEvent::Start {
            id: self.id,
            model: self.model,
        }];
        if !self.text.is_empty() {
            events.push(StreamEvent::TextDelta { text: self.text });
        }
        for (index, call) in self.tool_calls.into_iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            events.push(StreamEvent::ToolCallStart {
                index,
                id: call.id,
                name: call.name,
            });
            events.push(StreamEvent::ToolCallDelta {
                index,
                arguments: call.arguments,
            });
        }
        events.push(StreamEvent::Finish {
            reason: self.finish_reason,
        });
        events.push(StreamEvent::Usage { usage: self.usage });
        events
    }
}

/// One step of a streamed answer, in order: `Start`, deltas, `Finish`, then `Usage`
/// (some providers send usage before finish; encoders accept either order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The response began.
    Start { id: String, model: String },
    /// More output text.
    TextDelta { text: String },
    /// A new tool call at `index` (0-based among this response's tool calls).
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
    },
    /// More argument JSON for the tool call at `index`.
    ToolCallDelta { index: u32, arguments: String },
    /// The model stopped.
    Finish { reason: FinishReason },
    /// Token counts (input may be known only here).
    Usage { usage: Usage },
}

/// An embeddings request (OpenAI shape: one or more strings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
}

/// Vectors, one per input, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    pub usage: Usage,
}

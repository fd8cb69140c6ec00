//! The OpenAI Chat Completions and Embeddings wire format, one set of types for both
//! directions: the client-facing dialect ([`crate::dialect::openai`]) writes answers and
//! stream chunks with them, and the upstream adapter ([`crate::providers::openai`]) writes
//! requests with them and reads answers and chunks back.
//!
//! Reading is lenient, because OpenAI-compatible servers differ:
//! - every field the gateway reads is optional (missing or `null` is `None`), and `content`
//!   and `arguments` also accept the shapes some servers send instead of a string;
//! - a field the gateway only writes for SDKs (`object`, `created`, `role`, `type`,
//!   `logprobs`, `system_fingerprint`, `total_tokens`) is skipped when reading, so an
//!   upstream's odd value there cannot fail a parse.
//!
//! Client requests are not read with these types: the dialect's strict parser walks the
//! JSON itself so that every refusal names the JSON path of the field.

use crate::canonical::{self, FinishReason};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

// ---------- requests (written by the upstream adapter) ----------

/// A `POST /chat/completions` body.
#[derive(Serialize)]
pub struct ChatRequestBody<'a> {
    /// The upstream model name.
    pub model: &'a str,
    /// The conversation.
    pub messages: Vec<RequestMessage<'a>>,
    /// Function tools the model may call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool<'a>>,
    /// `"auto"`, `"none"`, `"required"` or a function object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Whether the model may call several tools in one turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Text, JSON object or JSON schema output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// The output limit (the legacy name, which every compatible server knows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
    /// Sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Presence penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// The end user, for the provider's abuse monitoring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    /// Ask for `chat.completion.chunk` events.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// `{"include_usage": true}` on a streamed call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<Value>,
}

/// One message of a request.
#[derive(Serialize)]
pub struct RequestMessage<'a> {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: &'static str,
    /// `null` only for an assistant turn that holds nothing but tool calls.
    pub content: Option<RequestContent<'a>>,
    /// The participant's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// An assistant turn's tool calls.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall<'a>>,
    /// The call a `tool` message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'a str>,
}

/// A request message's `content`: plain text or an array of parts.
#[derive(Serialize)]
#[serde(untagged)]
pub enum RequestContent<'a> {
    /// A string.
    Text(String),
    /// Text and image parts.
    Parts(Vec<RequestPart<'a>>),
}

/// One content part of a request message.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RequestPart<'a> {
    /// `{"type": "text", "text": …}`.
    Text {
        /// The text.
        text: &'a str,
    },
    /// `{"type": "image_url", "image_url": {…}}`.
    ImageUrl {
        /// Where the image is.
        image_url: ImageUrl<'a>,
    },
}

/// An image by URL (`https:` or a base64 `data:` URL).
#[derive(Serialize)]
pub struct ImageUrl<'a> {
    /// The URL.
    pub url: Cow<'a, str>,
    /// `auto`, `low` or `high`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

/// A function tool offered to the model.
#[derive(Serialize)]
pub struct Tool<'a> {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The function's name, description and JSON schema.
    pub function: FunctionSpec<'a>,
}

/// The function a [`Tool`] describes.
#[derive(Serialize)]
pub struct FunctionSpec<'a> {
    /// The function name.
    pub name: &'a str,
    /// What it does, for the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// The JSON schema of its arguments.
    pub parameters: &'a Value,
}

/// A `POST /embeddings` body.
#[derive(Serialize)]
pub struct EmbeddingsRequestBody<'a> {
    /// The upstream model name.
    pub model: &'a str,
    /// The texts to embed.
    pub input: &'a [String],
    /// Always `float`: the gateway re-encodes for its client.
    pub encoding_format: &'static str,
    /// The vector size, for models that can shorten.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// The end user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
}

// ---------- answers (written by the dialect, read by the upstream adapter) ----------

/// A `chat.completion` (a complete answer) or a `chat.completion.chunk` (one piece of a
/// streamed answer); `C` is [`Choice`] or [`ChunkChoice`]. A 200 body or a stream frame may
/// carry `error` instead.
#[derive(Serialize, Deserialize, Default)]
pub struct Completion<'a, C> {
    /// `chatcmpl-…`, the same in every chunk of a stream.
    pub id: Option<Cow<'a, str>>,
    /// `chat.completion` or `chat.completion.chunk`.
    #[serde(skip_deserializing)]
    pub object: &'static str,
    /// Unix seconds, the same in every chunk of a stream.
    #[serde(skip_deserializing)]
    pub created: i64,
    /// The model that answers.
    pub model: Option<Cow<'a, str>>,
    /// Always `null` when written.
    #[serde(skip_deserializing)]
    pub system_fingerprint: Option<&'static str>,
    /// The answers (the gateway writes and reads index 0); empty in a stream's usage chunk.
    pub choices: Option<Vec<C>>,
    /// Token counts, written when `Some`. A stream sends them only with
    /// `stream_options.include_usage`, and then `null` (`Some(None)`) on every chunk but the
    /// last. Read as `Some(Some(…))` when counts came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    /// An upstream's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// A complete answer.
pub type ChatCompletion<'a> = Completion<'a, Choice<'a>>;

/// One streamed chunk of an answer.
pub type ChatCompletionChunk<'a> = Completion<'a, ChunkChoice<'a>>;

/// One answer of a [`ChatCompletion`].
#[derive(Serialize, Deserialize, Default)]
pub struct Choice<'a> {
    /// The answer's position.
    pub index: Option<u32>,
    /// The assistant message.
    pub message: Option<ResponseMessage<'a>>,
    /// Always `null` when written.
    #[serde(skip_deserializing)]
    pub logprobs: Option<()>,
    /// `stop`, `length`, `tool_calls`, `content_filter` (see [`finish_reason`]).
    pub finish_reason: Option<Cow<'a, str>>,
}

/// The assistant message of a complete answer: `content` and `refusal` are always written,
/// `null` when empty.
#[derive(Serialize, Deserialize, Default)]
pub struct ResponseMessage<'a> {
    /// `assistant`.
    #[serde(skip_deserializing)]
    pub role: &'static str,
    /// The answer's text; `null` when the answer is only tool calls.
    pub content: Option<Content<'a>>,
    /// The model's refusal text.
    pub refusal: Option<Cow<'a, str>>,
    /// The tool calls, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
}

/// Message or delta `content`: text per the spec; some compatible servers send an array of
/// text parts, which is read as their joined text (anything else reads as no text).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content<'a> {
    /// A string.
    Text(Cow<'a, str>),
    /// Any other JSON.
    Other(Value),
}

impl Content<'_> {
    /// The text: the string, or the joined `text` of an array's parts.
    pub fn text(&self) -> String {
        match self {
            Content::Text(text) => text.to_string(),
            Content::Other(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
            Content::Other(_) => String::new(),
        }
    }
}

/// A tool call: complete in a message (`id`, `type`, `function`), in pieces in a stream
/// chunk (`index`, then `id`, `type` and `function.name` on the first piece only).
#[derive(Serialize, Deserialize, Default)]
pub struct ToolCall<'a> {
    /// The call's position among the answer's calls (stream chunks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// `call_…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    /// `function`.
    #[serde(
        rename = "type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    pub kind: Option<&'static str>,
    /// The function called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCall<'a>>,
}

impl<'a> ToolCall<'a> {
    /// A complete call, as a message lists it.
    pub fn complete(id: &'a str, name: &'a str, arguments: &'a str) -> Self {
        ToolCall {
            index: None,
            id: Some(id.into()),
            kind: Some("function"),
            function: Some(FunctionCall {
                name: Some(name.into()),
                arguments: Some(Arguments::Text(arguments.into())),
            }),
        }
    }

    /// The function name, if this piece has one.
    pub fn name(&self) -> Option<&str> {
        self.function.as_ref().and_then(|f| f.name.as_deref())
    }

    /// The arguments text of this piece (empty when absent).
    pub fn arguments(&self) -> String {
        self.function
            .as_ref()
            .and_then(|f| f.arguments.as_ref())
            .map(Arguments::text)
            .unwrap_or_default()
    }
}

/// The function of a [`ToolCall`].
#[derive(Serialize, Deserialize, Default)]
pub struct FunctionCall<'a> {
    /// The function name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    /// The arguments (or a piece of them, in a stream).
    pub arguments: Option<Arguments<'a>>,
}

/// Tool-call `arguments`: JSON text per the spec; some compatible servers send an object.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub enum Arguments<'a> {
    /// JSON text.
    Text(Cow<'a, str>),
    /// Any other JSON, read as its JSON text.
    Json(Value),
}

impl Arguments<'_> {
    /// The arguments as JSON text.
    pub fn text(&self) -> String {
        match self {
            Arguments::Text(text) => text.to_string(),
            Arguments::Json(Value::Null) => String::new(),
            Arguments::Json(other) => other.to_string(),
        }
    }
}

/// One delta of a [`ChatCompletionChunk`].
#[derive(Serialize, Deserialize, Default)]
pub struct ChunkChoice<'a> {
    /// The answer's position.
    pub index: Option<u32>,
    /// What this chunk adds.
    pub delta: Option<Delta<'a>>,
    /// Always `null` when written.
    #[serde(skip_deserializing)]
    pub logprobs: Option<()>,
    /// Set on the chunk that ends the answer.
    pub finish_reason: Option<Cow<'a, str>>,
}

/// What one chunk adds to the answer; absent fields are not written.
#[derive(Serialize, Deserialize, Default)]
pub struct Delta<'a> {
    /// `assistant`, on the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub role: Option<&'static str>,
    /// A piece of the text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Content<'a>>,
    /// Pieces of tool calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
}

/// Token counts. `prompt_tokens` includes cached tokens, as OpenAI counts them.
#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens, cached ones included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Output tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Input plus output.
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub total_tokens: Option<u64>,
    /// The cached part of the input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// The breakdown of [`Usage::prompt_tokens`].
#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptTokensDetails {
    /// Input tokens served from the prompt cache.
    pub cached_tokens: Option<u64>,
}

impl Usage {
    /// The `usage` of a chat answer, every count written.
    pub fn from_canonical(usage: &canonical::Usage) -> Self {
        Usage {
            prompt_tokens: Some(usage.input_tokens),
            completion_tokens: Some(usage.output_tokens),
            total_tokens: Some(usage.input_tokens.saturating_add(usage.output_tokens)),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: Some(usage.cached_input_tokens),
            }),
        }
    }

    /// The canonical counts; a missing count is zero.
    pub fn to_canonical(&self) -> canonical::Usage {
        canonical::Usage {
            input_tokens: self.prompt_tokens.unwrap_or(0),
            output_tokens: self.completion_tokens.unwrap_or(0),
            cached_input_tokens: self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_input_tokens: 0,
            estimated: false,
        }
    }
}

/// OpenAI's `finish_reason` for a canonical one (a stop sequence is plain `stop`).
pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::StopSequence => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

/// The canonical finish reason for OpenAI's `finish_reason` (the legacy `function_call`
/// counts as tool calls; anything unknown as a plain stop).
pub fn parse_finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// An embeddings `list`. `V` is how a vector is encoded: `Vec<f32>` when the adapter reads
/// one, a JSON value (numbers or base64 text) when the dialect writes one.
#[derive(Serialize, Deserialize)]
pub struct EmbeddingList<'a, V> {
    /// `list`.
    #[serde(skip_deserializing)]
    pub object: &'static str,
    /// One vector per input.
    pub data: Vec<Embedding<V>>,
    /// The model that embedded.
    pub model: Option<Cow<'a, str>>,
    /// Token counts (`prompt_tokens` and `total_tokens`).
    pub usage: Option<Usage>,
}

/// One vector of an [`EmbeddingList`].
#[derive(Serialize, Deserialize)]
pub struct Embedding<V> {
    /// `embedding`.
    #[serde(skip_deserializing)]
    pub object: &'static str,
    /// The input's position.
    pub index: Option<usize>,
    /// The vector.
    pub embedding: V,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_finish_reason_written_reads_back_as_itself() {
        for reason in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ToolCalls,
            FinishReason::ContentFilter,
        ] {
            assert_eq!(parse_finish_reason(finish_reason(reason)), reason);
        }
        assert_eq!(
            parse_finish_reason(finish_reason(FinishReason::StopSequence)),
            FinishReason::Stop
        );
    }

    #[test]
    fn usage_written_reads_back_as_the_same_counts() {
        let usage = canonical::Usage {
            input_tokens: 120,
            output_tokens: 30,
            cached_input_tokens: 64,
            cache_write_input_tokens: 0,
            estimated: false,
        };
        let text = serde_json::to_string(&Usage::from_canonical(&usage)).unwrap();
        let read: Usage = serde_json::from_str(&text).unwrap();
        assert_eq!(read.to_canonical(), usage);
    }

    #[test]
    fn a_chunk_written_reads_back_with_its_text_and_tool_call() {
        let chunk = ChatCompletionChunk {
            id: Some("chatcmpl-1".into()),
            object: "chat.completion.chunk",
            choices: Some(vec![ChunkChoice {
                index: Some(0),
                delta: Some(Delta {
                    content: Some(Content::Text("hi".into())),
                    tool_calls: Some(vec![ToolCall::complete("call_1", "f", "{}")]),
                    ..Delta::default()
                }),
                ..ChunkChoice::default()
            }]),
            ..ChatCompletionChunk::default()
        };
        let text = serde_json::to_string(&chunk).unwrap();
        let read: ChatCompletionChunk<'_> = serde_json::from_str(&text).unwrap();
        let delta = read.choices.unwrap().remove(0).delta.unwrap();
        assert_eq!(delta.content.unwrap().text(), "hi");
        let calls = delta.tool_calls.unwrap();
        assert_eq!(calls[0].name(), Some("f"));
        assert_eq!(calls[0].arguments(), "{}");
    }
}

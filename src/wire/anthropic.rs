//! The Anthropic Messages wire format, one set of types for both directions: the
//! client-facing dialect ([`crate::dialect::anthropic`]) writes messages and stream events
//! with them, and the upstream adapter ([`crate::providers::anthropic`]) writes requests
//! with them and reads messages and stream events back.
//!
//! Reading is lenient: every field the gateway reads is optional (missing or `null` is
//! `None`), block types it does not know read as [`Block::Other`], and fields it only writes
//! for SDKs (`role`, `stop_sequence`, a block's `input` at its start) are skipped when
//! reading, so an upstream's odd value there cannot fail a parse.
//!
//! Client requests are not read with these types: the dialect's strict parser walks the
//! JSON itself so that every refusal names the JSON path of the field.

use crate::canonical::{self, FinishReason};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

// ---------- requests (written by the upstream adapter) ----------

/// A `POST /messages` body.
#[derive(Serialize)]
pub struct MessagesRequestBody<'a> {
    /// The upstream model name.
    pub model: &'a str,
    /// The output limit (required by Anthropic).
    pub max_tokens: u32,
    /// The system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Strictly alternating user and assistant turns.
    pub messages: Vec<Turn<'a>>,
    /// Tools the model may call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool<'a>>,
    /// `{"type": "auto" | "any" | "none" | "tool", …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop_sequences: &'a [String],
    /// `{"user_id": …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Ask for stream events.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// One turn of a request.
#[derive(Serialize)]
pub struct Turn<'a> {
    /// `user` or `assistant`.
    pub role: &'static str,
    /// The turn's blocks.
    pub content: Vec<Block<'a>>,
}

/// A tool offered to the model.
#[derive(Serialize)]
pub struct Tool<'a> {
    /// The tool name.
    pub name: &'a str,
    /// What it does, for the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// The JSON schema of its input.
    pub input_schema: &'a Value,
}

/// A content block: text and tool use in both directions; image and tool result only in
/// requests (they are never read from an answer).
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block<'a> {
    /// `{"type": "text", "text": …}`.
    Text {
        /// The text.
        text: Cow<'a, str>,
    },
    /// An image in a request.
    #[serde(skip_deserializing)]
    Image {
        /// Where the image is.
        source: ImageSource<'a>,
    },
    /// A tool call.
    ToolUse {
        /// `toolu_…`.
        id: Cow<'a, str>,
        /// The tool name.
        name: Cow<'a, str>,
        /// The input object.
        #[serde(default)]
        input: Value,
    },
    /// A tool's answer, in a user turn of a request.
    #[serde(skip_deserializing)]
    ToolResult {
        /// The call it answers.
        tool_use_id: Cow<'a, str>,
        /// Text or blocks; absent when empty.
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<ToolResultContent<'a>>,
        /// The tool failed.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    /// Thinking, server tool and future blocks: nothing for the canonical answer.
    #[serde(other)]
    Other,
}

/// A tool result's `content`.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ToolResultContent<'a> {
    /// Plain text.
    Text(String),
    /// Text and image blocks.
    Blocks(Vec<Block<'a>>),
}

/// An image source.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource<'a> {
    /// Inline bytes.
    Base64 {
        /// `image/png` …
        media_type: &'a str,
        /// The base64 payload.
        data: &'a str,
    },
    /// An `https:` URL.
    Url {
        /// The URL.
        url: &'a str,
    },
}

// ---------- answers (written by the dialect, read by the upstream adapter) ----------

/// A complete answer, the `message` object (also the `message` of `message_start`). An
/// error body has `type: "error"` and `error` instead.
#[derive(Serialize, Deserialize, Default)]
pub struct Message<'a> {
    /// `message` (or `error`).
    #[serde(rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    /// `msg_…`.
    pub id: Option<Cow<'a, str>>,
    /// `assistant`.
    #[serde(skip_deserializing)]
    pub role: &'static str,
    /// The model that answered.
    pub model: Option<Cow<'a, str>>,
    /// Text and tool-use blocks (empty in `message_start`).
    pub content: Option<Vec<Block<'a>>>,
    /// Why the model stopped (see [`stop_reason`]); `null` in `message_start`.
    pub stop_reason: Option<Cow<'a, str>>,
    /// Always `null` when written.
    #[serde(skip_deserializing)]
    pub stop_sequence: Option<&'static str>,
    /// Token counts.
    pub usage: Option<Usage>,
    /// An upstream's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// One stream event's data. Which fields are set depends on `type`: `message` for
/// `message_start`; `index` and `content_block` for `content_block_start`; `index` and
/// `delta` for `content_block_delta`; `index` for `content_block_stop`; `delta` and `usage`
/// for `message_delta`; `error` for `error`.
#[derive(Serialize, Deserialize, Default)]
pub struct StreamFrame<'a> {
    /// The event type (readers fall back to the SSE event name when it is missing).
    #[serde(rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    /// The message being started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Message<'a>>,
    /// The content block index (text and tool use blocks counted together).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// The block being started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_block: Option<BlockStart<'a>>,
    /// A block's delta, or the message's stop reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<FrameDelta<'a>>,
    /// Token counts (in `message_delta`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// An upstream's in-stream error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl<'a> StreamFrame<'a> {
    /// A frame of type `kind` with nothing else set.
    pub fn of(kind: &'static str) -> Self {
        StreamFrame {
            kind: Some(kind.into()),
            ..StreamFrame::default()
        }
    }
}

/// The `content_block` of `content_block_start`: `text` (with empty `text`) or `tool_use`
/// (with `id`, `name` and an empty `input`). Read leniently, every field optional.
#[derive(Serialize, Deserialize, Default)]
pub struct BlockStart<'a> {
    /// `text` or `tool_use`.
    #[serde(rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    /// The tool-use id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    /// The tool name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    /// The block's first text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    /// `{}` at a tool-use start.
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub input: Option<Value>,
}

impl<'a> BlockStart<'a> {
    /// The start of a text block.
    pub fn text() -> Self {
        BlockStart {
            kind: Some("text".into()),
            text: Some("".into()),
            ..BlockStart::default()
        }
    }

    /// The start of a tool-use block, its input still empty.
    pub fn tool_use(id: impl Into<Cow<'a, str>>, name: &'a str) -> Self {
        BlockStart {
            kind: Some("tool_use".into()),
            id: Some(id.into()),
            name: Some(name.into()),
            text: None,
            input: Some(Value::Object(serde_json::Map::new())),
        }
    }
}

/// The `delta` of `content_block_delta` (`text_delta` with `text`, `input_json_delta` with
/// `partial_json`) or of `message_delta` (`stop_reason`, `stop_sequence`).
#[derive(Serialize, Deserialize, Default)]
pub struct FrameDelta<'a> {
    /// `text_delta` or `input_json_delta`; absent in `message_delta`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Cow<'a, str>>,
    /// A piece of text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    /// A piece of a tool call's input JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_json: Option<Cow<'a, str>>,
    /// Why the model stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<Cow<'a, str>>,
    /// `Some(None)` writes the `"stop_sequence": null` of `message_delta`.
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub stop_sequence: Option<Option<&'static str>>,
}

impl<'a> FrameDelta<'a> {
    /// A `text_delta` carrying `text`.
    pub fn text(text: &'a str) -> Self {
        FrameDelta {
            kind: Some("text_delta".into()),
            text: Some(text.into()),
            ..FrameDelta::default()
        }
    }

    /// An `input_json_delta` carrying a piece of a tool call's input.
    pub fn input_json(partial_json: &'a str) -> Self {
        FrameDelta {
            kind: Some("input_json_delta".into()),
            partial_json: Some(partial_json.into()),
            ..FrameDelta::default()
        }
    }
}

/// Token counts. Anthropic's `input_tokens` excludes cache reads and cache writes, which
/// are reported apart.
#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// Input tokens written to the prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

impl Usage {
    /// Anthropic's counts for canonical ones: cache reads are taken out of `input_tokens`.
    pub fn from_canonical(usage: &canonical::Usage) -> Self {
        Usage {
            input_tokens: Some(
                usage
                    .input_tokens
                    .saturating_sub(usage.cached_input_tokens)
                    .saturating_sub(usage.cache_write_input_tokens),
            ),
            output_tokens: Some(usage.output_tokens),
            cache_creation_input_tokens: (usage.cache_write_input_tokens > 0)
                .then_some(usage.cache_write_input_tokens),
            cache_read_input_tokens: Some(usage.cached_input_tokens),
        }
    }

    /// Canonical input counts every input token, cached or not; `cached` is the cache reads.
    pub fn to_canonical(&self) -> canonical::Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        canonical::Usage {
            input_tokens: self.input_tokens.unwrap_or(0)
                + cached
                + self.cache_creation_input_tokens.unwrap_or(0),
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_input_tokens: cached,
            cache_write_input_tokens: self.cache_creation_input_tokens.unwrap_or(0),
            estimated: false,
        }
    }

    /// Later counts win field by field (`message_delta` over `message_start`).
    pub fn update(&mut self, later: &Usage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }
}

/// Anthropic's `stop_reason` for a canonical finish reason.
pub fn stop_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

/// The canonical finish reason for Anthropic's `stop_reason` (anything unknown, such as
/// `pause_turn`, reads as a plain stop).
pub fn parse_stop_reason(reason: &str) -> FinishReason {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "stop_sequence" => FinishReason::StopSequence,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_stop_reason_written_reads_back_as_itself() {
        for reason in [
            FinishReason::Stop,
            FinishReason::StopSequence,
            FinishReason::Length,
            FinishReason::ToolCalls,
            FinishReason::ContentFilter,
        ] {
            assert_eq!(parse_stop_reason(stop_reason(reason)), reason);
        }
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
    fn request_only_and_unknown_blocks_read_as_other() {
        let blocks: Vec<Block<'_>> = serde_json::from_str(
            r#"[{"type": "image", "source": {}}, {"type": "tool_result"},
                {"type": "thinking", "thinking": "…"}, {"type": "text", "text": "hi"}]"#,
        )
        .unwrap();
        assert!(matches!(blocks[0], Block::Other));
        assert!(matches!(blocks[1], Block::Other));
        assert!(matches!(blocks[2], Block::Other));
        assert!(matches!(&blocks[3], Block::Text { text } if text == "hi"));
    }
}

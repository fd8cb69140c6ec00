//! The `anthropic` wire adapter: the Messages API (`POST /messages`), plain and streamed.
//!
//! Translation choices worth knowing:
//! - system messages (wherever they sit) become the top-level `system` text, joined by blank
//!   lines; images there are refused, since `system` holds text only;
//! - Anthropic requires strictly alternating turns, so tool results become `tool_result`
//!   blocks in a user turn, and consecutive same-role turns (tool results followed by the
//!   user's next words, two user messages in a row …) are merged into one;
//! - `max_tokens` is required by Anthropic: `req.max_tokens` capped by the model's
//!   `max_output_tokens`, else that limit, else [`DEFAULT_MAX_TOKENS`];
//! - fields Anthropic cannot honour are refused with a 400 naming them: `response_format`
//!   (JSON modes), `seed`, and non-zero `presence_penalty` / `frequency_penalty` (a zero
//!   penalty is the default, a no-op, and is accepted).

use super::openai::parse_data_url;
use super::sse::SseEvent;
use super::{header_value, unparseable, StreamDecoder, Target, Wire, WireRequest};
#[cfg(test)]
use crate::canonical::Usage;
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, ImageSource, Message, ResponseFormat,
    Role, StreamEvent, ToolCall, ToolChoice,
};
use crate::config::Secret;
use crate::error::{ErrorCode, GatewayError};
use crate::wire::anthropic::{
    self as wire, parse_stop_reason as map_stop, Block, Message as WireMessage,
    MessagesRequestBody, StreamFrame, ToolResultContent, Turn, Usage as WireUsage,
};
use http::HeaderName;
use serde_json::{json, Value};
use std::borrow::Cow;

const KIND: &str = "anthropic";

/// The `anthropic-version` sent when the provider config names none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// The `max_tokens` sent when neither the request nor the model's `max_output_tokens` names
/// one (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Translation between canonical types and the Anthropic Messages wire format.
pub struct AnthropicWire {
    key: Secret<String>,
    version: String,
}

impl AnthropicWire {
    /// An adapter sending `key` as `x-api-key` and `version` (default [`DEFAULT_VERSION`])
    /// as `anthropic-version`.
    pub fn new(key: Secret<String>, version: Option<String>) -> Self {
        AnthropicWire {
            key,
            version: version.unwrap_or_else(|| DEFAULT_VERSION.to_string()),
        }
    }
}

// ---------- request body ----------

fn unsupported(field: &str) -> GatewayError {
    GatewayError::invalid(
        field,
        format!("{field} is not supported by provider kind {KIND}"),
    )
}

fn image_block(source: &ImageSource, at: usize) -> Result<Block<'_>, GatewayError> {
    let source = match source {
        ImageSource::Base64 { media_type, data } => wire::ImageSource::Base64 { media_type, data },
        ImageSource::Url { url } if url.starts_with("data:") => {
            let (media_type, data) = parse_data_url(url).ok_or_else(|| {
                GatewayError::invalid(
                    format!("messages[{at}].content"),
                    "only base64 data: urls are supported for images",
                )
            })?;
            wire::ImageSource::Base64 { media_type, data }
        }
        ImageSource::Url { url } => wire::ImageSource::Url { url },
    };
    Ok(Block::Image { source })
}

/// Text and image parts as blocks; empty text parts are dropped (Anthropic refuses them).
fn content_blocks(message: &Message, at: usize) -> Result<Vec<Block<'_>>, GatewayError> {
    let mut blocks = Vec::with_capacity(message.content.len() + message.tool_calls.len());
    for part in &message.content {
        match part {
            ContentPart::Text { text } if text.is_empty() => {}
            ContentPart::Text { text } => blocks.push(Block::Text { text: text.into() }),
            ContentPart::Image { source, .. } => blocks.push(image_block(source, at)?),
        }
    }
    Ok(blocks)
}

fn tool_use_block(call: &ToolCall, at: usize) -> Result<Block<'_>, GatewayError> {
    let input = super::tool_arguments_json(call, at)?;
    if !input.is_object() {
        return Err(GatewayError::invalid(
            format!("messages[{at}].tool_calls"),
            format!("arguments of tool call `{}` must be a JSON object", call.id),
        ));
    }
    Ok(Block::ToolUse {
        id: call.id.as_str().into(),
        name: call.name.as_str().into(),
        input,
    })
}

fn tool_result_block(message: &Message, at: usize) -> Result<Block<'_>, GatewayError> {
    let tool_use_id = message.tool_call_id.as_deref().ok_or_else(|| {
        GatewayError::invalid(
            format!("messages[{at}].tool_call_id"),
            "a tool message needs tool_call_id",
        )
    })?;
    let has_image = message
        .content
        .iter()
        .any(|p| matches!(p, ContentPart::Image { .. }));
    let content = if has_image {
        Some(ToolResultContent::Blocks(content_blocks(message, at)?))
    } else {
        Some(message.joined_text())
            .filter(|t| !t.is_empty())
            .map(ToolResultContent::Text)
    };
    Ok(Block::ToolResult {
        tool_use_id: tool_use_id.into(),
        content,
        is_error: message.is_error,
    })
}

/// The top-level `system` text and the alternating turns.
fn turns(req: &ChatRequest) -> Result<(Option<String>, Vec<Turn<'_>>), GatewayError> {
    let mut system = String::new();
    let mut turns: Vec<Turn<'_>> = Vec::with_capacity(req.messages.len());
    for (at, message) in req.messages.iter().enumerate() {
        let (role, blocks) = match message.role {
            Role::System => {
                super::push_system_text(&mut system, message, at, KIND)?;
                continue;
            }
            Role::User => ("user", content_blocks(message, at)?),
            Role::Tool => ("user", vec![tool_result_block(message, at)?]),
            Role::Assistant => {
                let mut blocks = content_blocks(message, at)?;
                for call in &message.tool_calls {
                    blocks.push(tool_use_block(call, at)?);
                }
                ("assistant", blocks)
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => turns.push(Turn {
                role,
                content: blocks,
            }),
        }
    }
    Ok((Some(system).filter(|s| !s.is_empty()), turns))
}

fn tool_choice(req: &ChatRequest) -> Option<Value> {
    let mut choice = match &req.tool_choice {
        Some(ToolChoice::None) => return Some(json!({"type": "none"})),
        Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::Tool(name)) => json!({"type": "tool", "name": name}),
        None if req.parallel_tool_calls == Some(false) && !req.tools.is_empty() => {
            json!({"type": "auto"})
        }
        None => return None,
    };
    if req.parallel_tool_calls == Some(false) {
        if let Some(map) = choice.as_object_mut() {
            map.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    Some(choice)
}

fn refuse_unsupported(req: &ChatRequest) -> Result<(), GatewayError> {
    if matches!(
        req.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    ) {
        return Err(unsupported("response_format"));
    }
    if req.seed.is_some() {
        return Err(unsupported("seed"));
    }
    if req.presence_penalty.is_some_and(|p| p != 0.0) {
        return Err(unsupported("presence_penalty"));
    }
    if req.frequency_penalty.is_some_and(|p| p != 0.0) {
        return Err(unsupported("frequency_penalty"));
    }
    Ok(())
}

// ---------- answers ----------

fn error_frame(error: Option<&Value>) -> GatewayError {
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("error");
    GatewayError::upstream(
        ErrorCode::BadGateway,
        format!("{KIND} provider reported an error ({kind}): {message}"),
    )
}

fn generated_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

impl Wire for AnthropicWire {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn chat_request(
        &self,
        req: &ChatRequest,
        target: &Target<'_>,
        stream: bool,
    ) -> Result<WireRequest, GatewayError> {
        refuse_unsupported(req)?;
        let (system, messages) = turns(req)?;
        let tools = req
            .tools
            .iter()
            .map(|tool| wire::Tool {
                name: &tool.name,
                description: tool.description.as_deref(),
                input_schema: &tool.parameters,
            })
            .collect();
        let body = MessagesRequestBody {
            model: target.upstream_id,
            max_tokens: target
                .max_tokens(req.max_tokens)
                .unwrap_or(DEFAULT_MAX_TOKENS),
            system,
            messages,
            tools,
            tool_choice: tool_choice(req),
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            stop_sequences: &req.stop,
            metadata: req.end_user.as_ref().map(|user| json!({"user_id": user})),
            stream,
        };
        let body = serde_json::to_vec(&body)
            .map_err(|err| GatewayError::internal(format!("cannot encode body: {err}")))?;
        let mut key = header_value(self.key.expose())?;
        key.set_sensitive(true);
        Ok(WireRequest {
            path: "/messages".into(),
            headers: vec![
                (HeaderName::from_static("x-api-key"), key),
                (
                    HeaderName::from_static("anthropic-version"),
                    header_value(&self.version)?,
                ),
            ],
            body,
        })
    }

    fn parse_chat(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        let message: WireMessage<'_> =
            serde_json::from_slice(body).map_err(|err| unparseable(KIND, err))?;
        if message.kind.as_deref() == Some("error") || message.error.is_some() {
            return Err(error_frame(message.error.as_ref()));
        }
        let blocks = message
            .content
            .ok_or_else(|| unparseable(KIND, "the response has no content"))?;
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in blocks {
            match block {
                Block::Text { text: t } => text.push_str(&t),
                Block::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                    id: id.into_owned(),
                    name: name.into_owned(),
                    arguments: if input.is_null() {
                        "{}".into()
                    } else {
                        input.to_string()
                    },
                }),
                _ => {}
            }
        }
        Ok(ChatResponse {
            id: message
                .id
                .map(Cow::into_owned)
                .filter(|id| !id.is_empty())
                .unwrap_or_else(generated_id),
            model: message.model.map(Cow::into_owned).unwrap_or_default(),
            text,
            tool_calls,
            finish_reason: message
                .stop_reason
                .as_deref()
                .map(map_stop)
                .unwrap_or(FinishReason::Stop),
            usage: message
                .usage
                .as_ref()
                .map(WireUsage::to_canonical)
                .unwrap_or_default(),
        })
    }

    fn stream_decoder(&self, upstream_model: &str) -> Box<dyn StreamDecoder> {
        Box::new(AnthropicStream {
            model: upstream_model.to_string(),
            ..AnthropicStream::default()
        })
    }
}

// ---------- stream decoder ----------

/// Decodes Messages stream events. Anthropic numbers content blocks (text and tool_use
/// together); canonical tool-call indexes count tool_use blocks only.
#[derive(Default)]
struct AnthropicStream {
    model: String,
    started: bool,
    stopped: bool,
    usage: WireUsage,
    /// (Anthropic block index, canonical tool-call index).
    tool_blocks: Vec<(u64, u32)>,
}

impl AnthropicStream {
    fn start(&mut self, id: Option<String>, model: Option<String>, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: id.filter(|id| !id.is_empty()).unwrap_or_else(generated_id),
                model: model
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| self.model.clone()),
            });
        }
    }

    fn tool_index(&self, block: Option<u64>) -> Option<u32> {
        let block = block?;
        self.tool_blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, i)| *i)
    }
}

impl StreamDecoder for AnthropicStream {
    fn decode(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), GatewayError> {
        if self.stopped || event.data.trim().is_empty() {
            return Ok(());
        }
        let frame: StreamFrame<'_> =
            serde_json::from_str(&event.data).map_err(|err| unparseable(KIND, err))?;
        let kind = frame.kind.as_deref().unwrap_or(event.event.as_str());
        match kind {
            "message_start" => {
                let message = frame.message;
                if let Some(usage) = message.as_ref().and_then(|m| m.usage.as_ref()) {
                    self.usage.update(usage);
                }
                let (id, model) = message.map(|m| (m.id, m.model)).unwrap_or_default();
                self.start(id.map(Cow::into_owned), model.map(Cow::into_owned), out);
            }
            "content_block_start" => {
                self.start(None, None, out);
                let Some(block) = frame.content_block else {
                    return Ok(());
                };
                match block.kind.as_deref() {
                    Some("tool_use") => {
                        let index = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                        self.tool_blocks
                            .push((frame.index.unwrap_or(u64::MAX), index));
                        out.push(StreamEvent::ToolCallStart {
                            index,
                            id: block
                                .id
                                .map_or_else(|| format!("toolu_{index}"), Cow::into_owned),
                            name: block.name.map(Cow::into_owned).unwrap_or_default(),
                        });
                    }
                    Some("text") => {
                        if let Some(text) = block.text.filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::TextDelta {
                                text: text.into_owned(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                self.start(None, None, out);
                let Some(delta) = frame.delta else {
                    return Ok(());
                };
                match delta.kind.as_deref() {
                    Some("text_delta") => {
                        if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::TextDelta {
                                text: text.into_owned(),
                            });
                        }
                    }
                    Some("input_json_delta") => {
                        let arguments = delta.partial_json.map(Cow::into_owned).unwrap_or_default();
                        if let (Some(index), false) =
                            (self.tool_index(frame.index), arguments.is_empty())
                        {
                            out.push(StreamEvent::ToolCallDelta { index, arguments });
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                self.start(None, None, out);
                if let Some(usage) = &frame.usage {
                    self.usage.update(usage);
                }
                let reason = frame.delta.and_then(|d| d.stop_reason);
                out.push(StreamEvent::Finish {
                    reason: reason
                        .as_deref()
                        .map(map_stop)
                        .unwrap_or(FinishReason::Stop),
                });
                out.push(StreamEvent::Usage {
                    usage: self.usage.to_canonical(),
                });
            }
            "message_stop" => self.stopped = true,
            "error" => return Err(error_frame(frame.error.as_ref())),
            // ping, content_block_stop and future events carry nothing canonical.
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), GatewayError> {
        if self.stopped {
            Ok(())
        } else {
            Err(GatewayError::upstream(
                ErrorCode::BadGateway,
                format!("{KIND} stream ended early"),
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

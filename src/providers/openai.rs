//! The `openai` wire adapter: OpenAI Chat Completions and Embeddings.
//!
//! Also serves kind `openai-compatible` and the HTTP `mock`, so it stays on the broadly
//! supported subset of the API:
//! - the output limit is sent as `max_tokens`, not `max_completion_tokens` (vLLM, llama.cpp,
//!   Ollama and older servers know only the former);
//! - the `Authorization` header is sent only when a key is configured (local servers need none);
//! - a streamed call always asks for `stream_options.include_usage`, because the gateway needs
//!   token counts for every answer.
//!
//! Usage: when the provider reports none, the answer carries `Usage::default()` (all zeros and
//! `estimated == false`); callers read "both counts zero" as "the provider gave none" and
//! estimate themselves.

use super::sse::SseEvent;
use super::{header_value, unparseable, StreamDecoder, Target, Wire, WireRequest};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, FinishReason,
    ImageSource, Message, ResponseFormat, Role, StreamEvent, ToolCall, ToolChoice, Usage,
};
use crate::config::Secret;
use crate::error::{ErrorCode, GatewayError};
use crate::wire::openai::{
    self as wire, parse_finish_reason as map_finish, ChatCompletion, ChatCompletionChunk,
    ChatRequestBody, EmbeddingList, EmbeddingsRequestBody, FunctionSpec, ImageUrl, RequestContent,
    RequestMessage, RequestPart,
};
use serde_json::{json, Value};
use std::borrow::Cow;

const KIND: &str = "openai";

/// Translation between canonical types and the OpenAI wire format.
pub struct OpenAiWire {
    key: Secret<String>,
}

impl OpenAiWire {
    /// An adapter sending `key` as a bearer token (no header when `key` is empty).
    pub fn new(key: Secret<String>) -> Self {
        OpenAiWire { key }
    }

    fn auth_headers(&self) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, GatewayError> {
        let key = self.key.expose();
        if key.is_empty() {
            return Ok(Vec::new());
        }
        let mut value = header_value(&format!("Bearer {key}"))?;
        value.set_sensitive(true);
        Ok(vec![(http::header::AUTHORIZATION, value)])
    }
}

// ---------- request body ----------

/// Split a base64 `data:` URL into its media type and payload (`None` for anything else).
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let meta = meta.strip_suffix(";base64")?;
    let mime = meta.split(';').next().unwrap_or_default();
    Some((
        if mime.is_empty() {
            "application/octet-stream"
        } else {
            mime
        },
        data,
    ))
}

fn text_only(message: &Message, at: usize) -> Result<String, GatewayError> {
    if message
        .content
        .iter()
        .any(|p| matches!(p, ContentPart::Image { .. }))
    {
        return Err(GatewayError::invalid(
            format!("messages[{at}].content"),
            format!(
                "images are only allowed in user messages for provider kind {KIND}, not in {} messages",
                message.role.as_str()
            ),
        ));
    }
    Ok(message.joined_text())
}

fn user_content(message: &Message) -> RequestContent<'_> {
    if let [ContentPart::Text { text }] = message.content.as_slice() {
        return RequestContent::Text(text.clone());
    }
    let parts = message
        .content
        .iter()
        .map(|part| match part {
            ContentPart::Text { text } => RequestPart::Text { text },
            ContentPart::Image { source, detail } => RequestPart::ImageUrl {
                image_url: ImageUrl {
                    url: match source {
                        ImageSource::Url { url } => url.as_str().into(),
                        ImageSource::Base64 { media_type, data } => {
                            format!("data:{media_type};base64,{data}").into()
                        }
                    },
                    detail: detail.as_deref(),
                },
            },
        })
        .collect();
    RequestContent::Parts(parts)
}

fn wire_message(message: &Message, at: usize) -> Result<RequestMessage<'_>, GatewayError> {
    let mut out = RequestMessage {
        role: message.role.as_str(),
        content: None,
        name: message.name.as_deref(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    };
    match message.role {
        Role::System => out.content = Some(RequestContent::Text(text_only(message, at)?)),
        Role::User => out.content = Some(user_content(message)),
        Role::Assistant => {
            let text = text_only(message, at)?;
            if !text.is_empty() || message.tool_calls.is_empty() {
                out.content = Some(RequestContent::Text(text));
            }
            out.tool_calls = message
                .tool_calls
                .iter()
                .map(|call| wire::ToolCall::complete(&call.id, &call.name, &call.arguments))
                .collect();
        }
        Role::Tool => {
            // OpenAI has no error flag for tool results; the text carries the failure.
            out.content = Some(RequestContent::Text(text_only(message, at)?));
            out.name = None;
            out.tool_call_id = Some(message.tool_call_id.as_deref().ok_or_else(|| {
                GatewayError::invalid(
                    format!("messages[{at}].tool_call_id"),
                    "a tool message needs tool_call_id",
                )
            })?);
        }
    }
    Ok(out)
}

fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

fn response_format(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            let mut spec = json!({"name": name, "schema": schema});
            if let (Some(strict), Some(map)) = (strict, spec.as_object_mut()) {
                map.insert("strict".into(), Value::Bool(*strict));
            }
            json!({"type": "json_schema", "json_schema": spec})
        }
    }
}

// ---------- answers ----------

/// The upstream error inside a 200 body or a stream frame.
fn error_frame(error: &Value) -> GatewayError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .unwrap_or("unknown error");
    GatewayError::upstream(
        ErrorCode::BadGateway,
        format!("{KIND} provider reported an error: {message}"),
    )
}

fn generated_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

impl Wire for OpenAiWire {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn chat_request(
        &self,
        req: &ChatRequest,
        target: &Target<'_>,
        stream: bool,
    ) -> Result<WireRequest, GatewayError> {
        if req.top_k.is_some() {
            return Err(GatewayError::invalid(
                "top_k",
                format!("top_k is not supported by provider kind {KIND}"),
            ));
        }
        let messages = req
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| wire_message(m, i))
            .collect::<Result<Vec<_>, _>>()?;
        let tools = req
            .tools
            .iter()
            .map(|tool| wire::Tool {
                kind: "function",
                function: FunctionSpec {
                    name: &tool.name,
                    description: tool.description.as_deref(),
                    parameters: &tool.parameters,
                },
            })
            .collect();
        let body = ChatRequestBody {
            model: target.upstream_id,
            messages,
            tools,
            tool_choice: req.tool_choice.as_ref().map(tool_choice),
            parallel_tool_calls: req.parallel_tool_calls,
            response_format: req.response_format.as_ref().map(response_format),
            temperature: req.temperature,
            top_p: req.top_p,
            max_tokens: target.max_tokens(req.max_tokens),
            stop: &req.stop,
            seed: req.seed,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            user: req.end_user.as_deref(),
            stream,
            stream_options: stream.then(|| json!({"include_usage": true})),
        };
        let body = serde_json::to_vec(&body)
            .map_err(|err| GatewayError::internal(format!("cannot encode body: {err}")))?;
        Ok(WireRequest {
            path: "/chat/completions".into(),
            headers: self.auth_headers()?,
            body,
        })
    }

    fn parse_chat(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        let response: ChatCompletion<'_> =
            serde_json::from_slice(body).map_err(|err| unparseable(KIND, err))?;
        if let Some(error) = &response.error {
            return Err(error_frame(error));
        }
        let choice = response
            .choices
            .as_deref()
            .and_then(|choices| choices.iter().find(|c| c.index.unwrap_or(0) == 0))
            .ok_or_else(|| unparseable(KIND, "the response has no choices"))?;
        let message = choice.message.as_ref();
        let mut text = message
            .and_then(|m| m.content.as_ref())
            .map(wire::Content::text)
            .unwrap_or_default();
        if text.is_empty() {
            text = message
                .and_then(|m| m.refusal.as_deref())
                .map(str::to_string)
                .unwrap_or_default();
        }
        let tool_calls: Vec<ToolCall> = message
            .and_then(|m| m.tool_calls.as_deref())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, call)| ToolCall {
                id: call
                    .id
                    .as_deref()
                    .map_or_else(|| format!("call_{i}"), str::to_string),
                name: call.name().unwrap_or_default().to_string(),
                arguments: call.arguments(),
            })
            .collect();
        let finish_reason = match choice.finish_reason.as_deref() {
            Some(reason) => map_finish(reason),
            None if !tool_calls.is_empty() => FinishReason::ToolCalls,
            None => FinishReason::Stop,
        };
        Ok(ChatResponse {
            id: response
                .id
                .map(Cow::into_owned)
                .filter(|id| !id.is_empty())
                .unwrap_or_else(generated_id),
            model: response.model.map(Cow::into_owned).unwrap_or_default(),
            text,
            tool_calls,
            finish_reason,
            usage: response
                .usage
                .flatten()
                .as_ref()
                .map(wire::Usage::to_canonical)
                .unwrap_or_default(),
        })
    }

    fn stream_decoder(&self, upstream_model: &str) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiStream {
            model: upstream_model.to_string(),
            ..OpenAiStream::default()
        })
    }

    fn embeddings_request(
        &self,
        req: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> Result<WireRequest, GatewayError> {
        let body = EmbeddingsRequestBody {
            model: upstream_model,
            input: &req.input,
            encoding_format: "float",
            dimensions: req.dimensions,
            user: req.end_user.as_deref(),
        };
        let body = serde_json::to_vec(&body)
            .map_err(|err| GatewayError::internal(format!("cannot encode body: {err}")))?;
        Ok(WireRequest {
            path: "/embeddings".into(),
            headers: self.auth_headers()?,
            body,
        })
    }

    fn parse_embeddings(&self, body: &[u8]) -> Result<EmbeddingsResponse, GatewayError> {
        let mut response: EmbeddingList<'_, Vec<f32>> =
            serde_json::from_slice(body).map_err(|err| unparseable(KIND, err))?;
        response.data.sort_by_key(|e| e.index.unwrap_or(usize::MAX));
        Ok(EmbeddingsResponse {
            model: response.model.map(Cow::into_owned).unwrap_or_default(),
            vectors: response.data.into_iter().map(|e| e.embedding).collect(),
            usage: response
                .usage
                .as_ref()
                .map(wire::Usage::to_canonical)
                .unwrap_or_default(),
        })
    }
}

// ---------- stream decoder ----------

/// One tool call being streamed; its start waits until the function name is known.
#[derive(Default)]
struct ToolState {
    upstream_index: u32,
    id: Option<String>,
    name: Option<String>,
    started: bool,
    pending_arguments: String,
}

/// Decodes `chat.completion.chunk` frames. Usage is held back and emitted once, after
/// `Finish`, when `[DONE]` (or the end of the stream) arrives.
#[derive(Default)]
struct OpenAiStream {
    model: String,
    started: bool,
    finished: bool,
    done: bool,
    usage: Option<Usage>,
    usage_emitted: bool,
    tools: Vec<ToolState>,
}

impl OpenAiStream {
    fn start(&mut self, chunk: &ChatCompletionChunk<'_>, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(StreamEvent::Start {
            id: chunk
                .id
                .as_deref()
                .filter(|id| !id.is_empty())
                .map_or_else(generated_id, str::to_string),
            model: chunk
                .model
                .as_deref()
                .filter(|m| !m.is_empty())
                .map_or_else(|| self.model.clone(), str::to_string),
        });
    }

    fn tool_delta(&mut self, call: &wire::ToolCall<'_>, out: &mut Vec<StreamEvent>) {
        let upstream_index = call.index.unwrap_or(0);
        let position = match self
            .tools
            .iter()
            .position(|t| t.upstream_index == upstream_index)
        {
            Some(position) => position,
            None => {
                self.tools.push(ToolState {
                    upstream_index,
                    ..ToolState::default()
                });
                self.tools.len() - 1
            }
        };
        let Some(state) = self.tools.get_mut(position) else {
            return;
        };
        if let Some(id) = call.id.as_deref().filter(|id| !id.is_empty()) {
            state.id.get_or_insert_with(|| id.to_string());
        }
        if let Some(name) = call.name().filter(|n| !n.is_empty()) {
            state.name.get_or_insert_with(|| name.to_string());
        }
        state.pending_arguments.push_str(&call.arguments());
        if state.name.is_some() {
            Self::flush_tool(state, position, out);
        }
    }

    /// Emit the start (if still owed) and any buffered arguments of one tool call.
    fn flush_tool(state: &mut ToolState, position: usize, out: &mut Vec<StreamEvent>) {
        let index = u32::try_from(position).unwrap_or(u32::MAX);
        if !state.started {
            state.started = true;
            out.push(StreamEvent::ToolCallStart {
                index,
                id: state.id.clone().unwrap_or_else(|| format!("call_{index}")),
                name: state.name.clone().unwrap_or_default(),
            });
        }
        if !state.pending_arguments.is_empty() {
            out.push(StreamEvent::ToolCallDelta {
                index,
                arguments: std::mem::take(&mut state.pending_arguments),
            });
        }
    }

    fn flush_all_tools(&mut self, out: &mut Vec<StreamEvent>) {
        for (position, state) in self.tools.iter_mut().enumerate() {
            if !state.started || !state.pending_arguments.is_empty() {
                Self::flush_tool(state, position, out);
            }
        }
    }

    fn emit_usage(&mut self, out: &mut Vec<StreamEvent>) {
        if let (Some(usage), false) = (self.usage, self.usage_emitted) {
            self.usage_emitted = true;
            out.push(StreamEvent::Usage { usage });
        }
    }
}

impl StreamDecoder for OpenAiStream {
    fn decode(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), GatewayError> {
        let data = event.data.trim();
        if self.done || data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            self.done = true;
            self.flush_all_tools(out);
            self.emit_usage(out);
            return Ok(());
        }
        let chunk: ChatCompletionChunk<'_> =
            serde_json::from_str(data).map_err(|err| unparseable(KIND, err))?;
        if let Some(error) = &chunk.error {
            return Err(error_frame(error));
        }
        if let Some(Some(usage)) = &chunk.usage {
            self.usage = Some(usage.to_canonical());
        }
        let choices = chunk.choices.as_deref().unwrap_or_default();
        // Azure sends a leading chunk with no id and no choices (prompt filter results).
        if choices.is_empty() && chunk.id.as_deref().unwrap_or_default().is_empty() {
            return Ok(());
        }
        self.start(&chunk, out);
        for choice in choices.iter().filter(|c| c.index.unwrap_or(0) == 0) {
            if let Some(delta) = &choice.delta {
                let text = delta
                    .content
                    .as_ref()
                    .map(wire::Content::text)
                    .unwrap_or_default();
                if !text.is_empty() {
                    out.push(StreamEvent::TextDelta { text });
                }
                for call in delta.tool_calls.as_deref().unwrap_or_default() {
                    self.tool_delta(call, out);
                }
            }
            if let (Some(reason), false) = (&choice.finish_reason, self.finished) {
                self.finished = true;
                self.flush_all_tools(out);
                out.push(StreamEvent::Finish {
                    reason: map_finish(reason),
                });
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), GatewayError> {
        if !self.done && !self.finished {
            return Err(GatewayError::upstream(
                ErrorCode::BadGateway,
                format!("{KIND} stream ended early"),
            ));
        }
        self.flush_all_tools(out);
        self.emit_usage(out);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

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
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

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

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<Value>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    /// `null` only for an assistant turn that holds nothing but tool calls.
    content: Option<WireContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(String),
    Parts(Vec<WirePart<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WirePart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl<'a> },
}

#[derive(Serialize)]
struct ImageUrl<'a> {
    url: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

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

fn user_content(message: &Message) -> WireContent<'_> {
    if let [ContentPart::Text { text }] = message.content.as_slice() {
        return WireContent::Text(text.clone());
    }
    let parts = message
        .content
        .iter()
        .map(|part| match part {
            ContentPart::Text { text } => WirePart::Text { text },
            ContentPart::Image { source, detail } => WirePart::ImageUrl {
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
    WireContent::Parts(parts)
}

fn wire_message(message: &Message, at: usize) -> Result<WireMessage<'_>, GatewayError> {
    let mut out = WireMessage {
        role: message.role.as_str(),
        content: None,
        name: message.name.as_deref(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    };
    match message.role {
        Role::System => out.content = Some(WireContent::Text(text_only(message, at)?)),
        Role::User => out.content = Some(user_content(message)),
        Role::Assistant => {
            let text = text_only(message, at)?;
            if !text.is_empty() || message.tool_calls.is_empty() {
                out.content = Some(WireContent::Text(text));
            }
            out.tool_calls = message
                .tool_calls
                .iter()
                .map(|call| {
                    json!({
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    })
                })
                .collect();
        }
        Role::Tool => {
            // OpenAI has no error flag for tool results; the text carries the failure.
            out.content = Some(WireContent::Text(text_only(message, at)?));
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

// ---------- response shapes (lenient: every field optional) ----------

#[derive(Deserialize)]
struct WireResponse {
    id: Option<String>,
    model: Option<String>,
    choices: Option<Vec<WireChoice>>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChoice {
    index: Option<u32>,
    message: Option<WireDelta>,
    delta: Option<WireDelta>,
    finish_reason: Option<String>,
}

/// A full message (`choices[].message`) or a stream delta (`choices[].delta`).
#[derive(Deserialize)]
struct WireDelta {
    content: Option<Value>,
    refusal: Option<String>,
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    index: Option<u32>,
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    name: Option<String>,
    /// JSON text per the spec; some compatible servers send an object instead.
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<CachedDetails>,
}

#[derive(Deserialize)]
struct CachedDetails {
    cached_tokens: Option<u64>,
}

impl WireUsage {
    fn canonical(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens.unwrap_or(0),
            output_tokens: self.completion_tokens.unwrap_or(0),
            cached_input_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            estimated: false,
        }
    }
}

/// Text of a `content` that is a string or (some compatible servers) an array of text parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn arguments_text(arguments: Option<&Value>) -> String {
    match arguments {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn map_finish(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

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
            .map(|tool| {
                let mut function = json!({"name": tool.name, "parameters": tool.parameters});
                if let (Some(description), Some(map)) =
                    (&tool.description, function.as_object_mut())
                {
                    map.insert("description".into(), Value::String(description.clone()));
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        let body = ChatBody {
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
        let response: WireResponse =
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
        let mut text = content_text(message.and_then(|m| m.content.as_ref()));
        if text.is_empty() {
            text = message.and_then(|m| m.refusal.clone()).unwrap_or_default();
        }
        let tool_calls: Vec<ToolCall> = message
            .and_then(|m| m.tool_calls.as_deref())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, call)| ToolCall {
                id: call.id.clone().unwrap_or_else(|| format!("call_{i}")),
                name: call
                    .function
                    .as_ref()
                    .and_then(|f| f.name.clone())
                    .unwrap_or_default(),
                arguments: arguments_text(
                    call.function.as_ref().and_then(|f| f.arguments.as_ref()),
                ),
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
                .filter(|id| !id.is_empty())
                .unwrap_or_else(generated_id),
            model: response.model.unwrap_or_default(),
            text,
            tool_calls,
            finish_reason,
            usage: response
                .usage
                .as_ref()
                .map(WireUsage::canonical)
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
        let mut body =
            json!({"model": upstream_model, "input": req.input, "encoding_format": "float"});
        if let Some(map) = body.as_object_mut() {
            if let Some(dimensions) = req.dimensions {
                map.insert("dimensions".into(), json!(dimensions));
            }
            if let Some(user) = &req.end_user {
                map.insert("user".into(), json!(user));
            }
        }
        Ok(WireRequest {
            path: "/embeddings".into(),
            headers: self.auth_headers()?,
            body: body.to_string().into_bytes(),
        })
    }

    fn parse_embeddings(&self, body: &[u8]) -> Result<EmbeddingsResponse, GatewayError> {
        #[derive(Deserialize)]
        struct Embeddings {
            data: Vec<Embedding>,
            model: Option<String>,
            usage: Option<WireUsage>,
        }
        #[derive(Deserialize)]
        struct Embedding {
            embedding: Vec<f32>,
            index: Option<usize>,
        }
        let mut response: Embeddings =
            serde_json::from_slice(body).map_err(|err| unparseable(KIND, err))?;
        response.data.sort_by_key(|e| e.index.unwrap_or(usize::MAX));
        Ok(EmbeddingsResponse {
            model: response.model.unwrap_or_default(),
            vectors: response.data.into_iter().map(|e| e.embedding).collect(),
            usage: response
                .usage
                .as_ref()
                .map(WireUsage::canonical)
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

#[derive(Deserialize)]
struct WireChunk {
    id: Option<String>,
    model: Option<String>,
    choices: Option<Vec<WireChoice>>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

impl OpenAiStream {
    fn start(&mut self, chunk: &WireChunk, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(StreamEvent::Start {
            id: chunk
                .id
                .clone()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(generated_id),
            model: chunk
                .model
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| self.model.clone()),
        });
    }

    fn tool_delta(&mut self, call: &WireToolCall, out: &mut Vec<StreamEvent>) {
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
        if let Some(id) = call.id.as_ref().filter(|id| !id.is_empty()) {
            state.id.get_or_insert_with(|| id.clone());
        }
        if let Some(name) = call
            .function
            .as_ref()
            .and_then(|f| f.name.as_ref())
            .filter(|n| !n.is_empty())
        {
            state.name.get_or_insert_with(|| name.clone());
        }
        let arguments = arguments_text(call.function.as_ref().and_then(|f| f.arguments.as_ref()));
        state.pending_arguments.push_str(&arguments);
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
        let chunk: WireChunk = serde_json::from_str(data).map_err(|err| unparseable(KIND, err))?;
        if let Some(error) = &chunk.error {
            return Err(error_frame(error));
        }
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.canonical());
        }
        let choices = chunk.choices.as_deref().unwrap_or_default();
        // Azure sends a leading chunk with no id and no choices (prompt filter results).
        if choices.is_empty() && chunk.id.as_deref().unwrap_or_default().is_empty() {
            return Ok(());
        }
        self.start(&chunk, out);
        for choice in choices.iter().filter(|c| c.index.unwrap_or(0) == 0) {
            if let Some(delta) = &choice.delta {
                let text = content_text(delta.content.as_ref());
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

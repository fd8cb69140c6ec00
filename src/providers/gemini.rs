//! The `gemini` wire adapter: the Gemini API's `generateContent`,
//! `streamGenerateContent?alt=sse` and `batchEmbedContents`.
//!
//! Translation choices worth knowing:
//! - the key travels only in the `x-goog-api-key` header, never as `?key=`, so it cannot leak
//!   through a URL quoted in an error or a log;
//! - system messages become `systemInstruction` (text only); assistant turns use role `model`;
//!   consecutive same-role turns are merged (parallel function responses share one turn);
//! - a tool result becomes a `functionResponse`, whose function *name* Gemini requires: it is
//!   taken from the earlier assistant tool call with the same id (unknown id → 400). Its
//!   `response` is `{"output": …}` (or `{"error": …}` when the tool failed), the keys Gemini
//!   documents; the value is the result parsed as JSON when it is JSON, else the text;
//! - images: base64 and `data:` URLs → `inlineData`; `http(s)://` and `gs://` URLs →
//!   `fileData` with a MIME type guessed from the extension (default `image/jpeg`);
//! - `response_format` `json_schema` → `responseMimeType` + `responseSchema`, which Gemini
//!   reads as an OpenAPI 3 subset: exotic JSON Schema keywords may be refused upstream;
//! - `parallel_tool_calls` and `end_user` have no Gemini equivalent and are not sent;
//! - Gemini has no tool-call ids: answers carry its `functionCall.id` when present, else a
//!   generated `call_<hex>` unique across turns (Anthropic refuses repeated tool_use ids);
//! - output tokens count `candidatesTokenCount` plus `thoughtsTokenCount` (both billed as
//!   output); input counts `promptTokenCount` plus `toolUsePromptTokenCount`.

use super::openai::parse_data_url;
use super::sse::SseEvent;
use super::{header_value, unparseable, StreamDecoder, Target, Wire, WireRequest};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, FinishReason,
    ImageSource, Message, ResponseFormat, Role, StreamEvent, ToolCall, ToolChoice, Usage,
};
use crate::config::Secret;
use crate::error::{ErrorCode, GatewayError};
use http::HeaderName;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const KIND: &str = "gemini";

/// Translation between canonical types and the Gemini wire format.
pub struct GeminiWire {
    key: Secret<String>,
}

impl GeminiWire {
    /// An adapter sending `key` as `x-goog-api-key`.
    pub fn new(key: Secret<String>) -> Self {
        GeminiWire { key }
    }

    fn auth_headers(&self) -> Result<Vec<(HeaderName, http::HeaderValue)>, GatewayError> {
        let key = self.key.expose();
        if key.is_empty() {
            return Ok(Vec::new());
        }
        let mut value = header_value(key)?;
        value.set_sensitive(true);
        Ok(vec![(HeaderName::from_static("x-goog-api-key"), value)])
    }
}

/// The model id without a leading `models/` (both spellings are common in configs).
fn model_path(upstream_model: &str) -> &str {
    upstream_model
        .strip_prefix("models/")
        .unwrap_or(upstream_model)
}

// ---------- request body ----------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateBody<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<Value>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig<'a>,
}

#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Part<'a> {
    Text(&'a str),
    #[serde(rename_all = "camelCase")]
    InlineData {
        mime_type: &'a str,
        data: &'a str,
    },
    #[serde(rename_all = "camelCase")]
    FileData {
        mime_type: &'static str,
        file_uri: &'a str,
    },
    FunctionCall {
        name: &'a str,
        args: Value,
    },
    FunctionResponse {
        name: &'a str,
        response: Value,
    },
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<&'a Value>,
}

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
            && self.response_schema.is_none()
    }
}

fn guess_mime(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let extension = path
        .rsplit_once('.')
        .map(|(_, ext)| ext)
        .unwrap_or_default();
    match extension {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    }
}

fn image_part(source: &ImageSource, at: usize) -> Result<Part<'_>, GatewayError> {
    let bad = |why: &str| GatewayError::invalid(format!("messages[{at}].content"), why.to_string());
    Ok(match source {
        ImageSource::Base64 { media_type, data } => Part::InlineData { mime_type: media_type, data },
        ImageSource::Url { url } if url.starts_with("data:") => {
            let (mime_type, data) = parse_data_url(url).ok_or_else(|| bad("only base64 data: urls are supported for images"))?;
            Part::InlineData { mime_type, data }
        }
        ImageSource::Url { url } if ["https://", "http://", "gs://"].iter().any(|s| url.starts_with(s)) => {
            Part::FileData { mime_type: guess_mime(url), file_uri: url }
        }
        ImageSource::Url { .. } => {
            return Err(bad("image urls must be https://, http://, gs:// or base64 data: urls for provider kind gemini"))
        }
    })
}

fn content_parts(message: &Message, at: usize) -> Result<Vec<Part<'_>>, GatewayError> {
    let mut parts = Vec::with_capacity(message.content.len() + message.tool_calls.len());
    for part in &message.content {
        match part {
            ContentPart::Text { text } if text.is_empty() => {}
            ContentPart::Text { text } => parts.push(Part::Text(text)),
            ContentPart::Image { source, .. } => parts.push(image_part(source, at)?),
        }
    }
    Ok(parts)
}

fn function_call_part(call: &ToolCall, at: usize) -> Result<Part<'_>, GatewayError> {
    let args = super::tool_arguments_json(call, at)?;
    Ok(Part::FunctionCall {
        name: &call.name,
        args,
    })
}

/// A tool result as a `functionResponse`, named after the earlier call with its id.
fn function_response_part<'a>(
    req: &'a ChatRequest,
    message: &'a Message,
    at: usize,
) -> Result<Part<'a>, GatewayError> {
    let id = message.tool_call_id.as_deref().ok_or_else(|| {
        GatewayError::invalid(
            format!("messages[{at}].tool_call_id"),
            "a tool message needs tool_call_id",
        )
    })?;
    let name = req
        .messages
        .get(..at)
        .unwrap_or_default()
        .iter()
        .rev()
        .filter(|m| m.role == Role::Assistant)
        .flat_map(|m| m.tool_calls.iter())
        .find(|call| call.id == id)
        .map(|call| call.name.as_str())
        .ok_or_else(|| {
            GatewayError::invalid(
                format!("messages[{at}].tool_call_id"),
                format!(
                    "no earlier assistant tool call has id `{id}` (gemini needs the function name)"
                ),
            )
        })?;
    let text = message.joined_text();
    let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    let key = if message.is_error { "error" } else { "output" };
    Ok(Part::FunctionResponse {
        name,
        response: json!({ key: value }),
    })
}

fn contents(req: &ChatRequest) -> Result<(Option<Value>, Vec<Content<'_>>), GatewayError> {
    let mut system = String::new();
    let mut contents: Vec<Content<'_>> = Vec::with_capacity(req.messages.len());
    for (at, message) in req.messages.iter().enumerate() {
        let (role, parts) = match message.role {
            Role::System => {
                super::push_system_text(&mut system, message, at, KIND)?;
                continue;
            }
            Role::User => ("user", content_parts(message, at)?),
            Role::Tool => ("user", vec![function_response_part(req, message, at)?]),
            Role::Assistant => {
                let mut parts = content_parts(message, at)?;
                for call in &message.tool_calls {
                    parts.push(function_call_part(call, at)?);
                }
                ("model", parts)
            }
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last.role == role => last.parts.extend(parts),
            _ => contents.push(Content { role, parts }),
        }
    }
    let system = (!system.is_empty()).then(|| json!({"parts": [{"text": system}]}));
    Ok((system, contents))
}

fn tool_config(choice: &ToolChoice) -> Value {
    let config = match choice {
        ToolChoice::Auto => json!({"mode": "AUTO"}),
        ToolChoice::None => json!({"mode": "NONE"}),
        ToolChoice::Required => json!({"mode": "ANY"}),
        ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
    };
    json!({ "functionCallingConfig": config })
}

fn generation_config(
    req: &ChatRequest,
    max_output_tokens: Option<u32>,
) -> Result<GenerationConfig<'_>, GatewayError> {
    let seed = req
        .seed
        .map(|seed| {
            i32::try_from(seed).map_err(|_| {
                GatewayError::invalid("seed", "seed must fit in 32 bits for provider kind gemini")
            })
        })
        .transpose()?;
    let (response_mime_type, response_schema) = match &req.response_format {
        None | Some(ResponseFormat::Text) => (None, None),
        Some(ResponseFormat::JsonObject) => (Some("application/json"), None),
        Some(ResponseFormat::JsonSchema { schema, .. }) => (Some("application/json"), Some(schema)),
    };
    Ok(GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        max_output_tokens,
        stop_sequences: &req.stop,
        seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        response_mime_type,
        response_schema,
    })
}

// ---------- response shapes ----------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    candidates: Option<Vec<Candidate>>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<String>,
    response_id: Option<String>,
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<CandidateContent>,
    finish_reason: Option<String>,
    index: Option<u32>,
}

#[derive(Deserialize)]
struct CandidateContent {
    parts: Option<Vec<ResponsePart>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponsePart {
    text: Option<String>,
    thought: Option<bool>,
    function_call: Option<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    id: Option<String>,
    name: Option<String>,
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
}

impl UsageMetadata {
    fn canonical(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_token_count.unwrap_or(0)
                + self.tool_use_prompt_token_count.unwrap_or(0),
            output_tokens: self.candidates_token_count.unwrap_or(0)
                + self.thoughts_token_count.unwrap_or(0),
            cached_input_tokens: self.cached_content_token_count.unwrap_or(0),
            cache_write_input_tokens: 0,
            estimated: false,
        }
    }
}

impl GenerateResponse {
    fn first_candidate(&self) -> Option<&Candidate> {
        self.candidates
            .as_deref()?
            .iter()
            .find(|c| c.index.unwrap_or(0) == 0)
    }

    fn parts(&self) -> &[ResponsePart] {
        self.first_candidate()
            .and_then(|c| c.content.as_ref())
            .and_then(|c| c.parts.as_deref())
            .unwrap_or_default()
    }

    /// Why the answer ended, if it did: a finish reason, or a prompt blocked outright.
    fn finish(&self, called_tools: bool) -> Option<FinishReason> {
        match self.first_candidate() {
            Some(candidate) => candidate
                .finish_reason
                .as_deref()
                .map(|r| map_finish(r, called_tools)),
            None if self
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some()) =>
            {
                Some(FinishReason::ContentFilter)
            }
            None => None,
        }
    }
}

fn map_finish(reason: &str, called_tools: bool) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        _ if called_tools => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

fn tool_call(call: &FunctionCall) -> ToolCall {
    ToolCall {
        id: call
            .id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("call_{}", uuid::Uuid::new_v4().simple())),
        name: call.name.clone().unwrap_or_default(),
        arguments: call
            .args
            .as_ref()
            .filter(|a| !a.is_null())
            .map_or_else(|| "{}".to_string(), Value::to_string),
    }
}

fn error_frame(error: &Value) -> GatewayError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    GatewayError::upstream(
        ErrorCode::BadGateway,
        format!("{KIND} provider reported an error: {message}"),
    )
}

fn generated_id() -> String {
    format!("gen-{}", uuid::Uuid::new_v4().simple())
}

impl Wire for GeminiWire {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn chat_request(
        &self,
        req: &ChatRequest,
        target: &Target<'_>,
        stream: bool,
    ) -> Result<WireRequest, GatewayError> {
        let (system_instruction, contents) = contents(req)?;
        let declarations: Vec<Value> = req
            .tools
            .iter()
            .map(|tool| {
                let mut declaration = json!({"name": tool.name});
                if let Some(map) = declaration.as_object_mut() {
                    if let Some(description) = &tool.description {
                        map.insert("description".into(), Value::String(description.clone()));
                    }
                    if !tool.parameters.is_null() {
                        map.insert("parameters".into(), tool.parameters.clone());
                    }
                }
                declaration
            })
            .collect();
        let body = GenerateBody {
            contents,
            system_instruction,
            tools: if declarations.is_empty() {
                Vec::new()
            } else {
                vec![json!({ "functionDeclarations": declarations })]
            },
            tool_config: req.tool_choice.as_ref().map(tool_config),
            generation_config: generation_config(req, target.max_tokens(req.max_tokens))?,
        };
        let body = serde_json::to_vec(&body)
            .map_err(|err| GatewayError::internal(format!("cannot encode body: {err}")))?;
        let model = model_path(target.upstream_id);
        let path = if stream {
            format!("/models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("/models/{model}:generateContent")
        };
        Ok(WireRequest {
            path,
            headers: self.auth_headers()?,
            body,
        })
    }

    fn parse_chat(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        let response: GenerateResponse =
            serde_json::from_slice(body).map_err(|err| unparseable(KIND, err))?;
        if let Some(error) = &response.error {
            return Err(error_frame(error));
        }
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for part in response.parts() {
            if let Some(call) = &part.function_call {
                tool_calls.push(tool_call(call));
            } else if let (Some(t), false) = (&part.text, part.thought.unwrap_or(false)) {
                text.push_str(t);
            }
        }
        // No candidate at all means the prompt or every candidate was blocked.
        let finish_reason = response.finish(!tool_calls.is_empty()).unwrap_or(
            if response.first_candidate().is_none() {
                FinishReason::ContentFilter
            } else {
                FinishReason::Stop
            },
        );
        Ok(ChatResponse {
            id: response
                .response_id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(generated_id),
            model: response.model_version.unwrap_or_default(),
            text,
            tool_calls,
            finish_reason,
            usage: response
                .usage_metadata
                .as_ref()
                .map(UsageMetadata::canonical)
                .unwrap_or_default(),
        })
    }

    fn stream_decoder(&self, upstream_model: &str) -> Box<dyn StreamDecoder> {
        let mut stream = GeminiStream::default();
        stream.model = model_path(upstream_model).to_string();
        Box::new(stream)
    }

    fn embeddings_request(
        &self,
        req: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> Result<WireRequest, GatewayError> {
        let model = model_path(upstream_model);
        let requests: Vec<Value> = req
            .input
            .iter()
            .map(|text| {
                let mut one = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
                if let (Some(dimensions), Some(map)) = (req.dimensions, one.as_object_mut()) {
                    map.insert("outputDimensionality".into(), json!(dimensions));
                }
                one
            })
            .collect();
        Ok(WireRequest {
            path: format!("/models/{model}:batchEmbedContents"),
            headers: self.auth_headers()?,
            body: json!({ "requests": requests }).to_string().into_bytes(),
        })
    }

    /// Gemini reports neither the model nor token counts here: `model` is empty (the caller
    /// knows it) and usage is zero for the caller to estimate.
    fn parse_embeddings(&self, body: &[u8]) -> Result<EmbeddingsResponse, GatewayError> {
        #[derive(Deserialize)]
        struct Batch {
            embeddings: Vec<Embedding>,
        }
        #[derive(Deserialize)]
        struct Embedding {
            values: Vec<f32>,
        }
        let batch: Batch = serde_json::from_slice(body).map_err(|err| unparseable(KIND, err))?;
        Ok(EmbeddingsResponse {
            model: String::new(),
            vectors: batch.embeddings.into_iter().map(|e| e.values).collect(),
            usage: Usage::default(),
        })
    }
}

#[path = "gemini/stream.rs"]
mod stream;
use stream::GeminiStream;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

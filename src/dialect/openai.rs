//! The OpenAI dialect: `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`,
//! in the wire format of the official `openai` SDKs.
//!
//! Parsing ([`parse_chat`]) is strict: a field we cannot honour is a 400 naming its JSON path.
//!
//! Top-level fields **ignored** on purpose (harmless: they only concern OpenAI's own
//! bookkeeping or ask for what we do anyway): `store`, `service_tier`, `prompt_cache_key`,
//! `logprobs: false`, `modalities: ["text"]`, `stream_options.include_obfuscation`. In
//! messages, `annotations` (output citations echoed back) and a `null` `audio`/`refusal`/
//! `function_call` are ignored; in tools, `function.strict` is accepted and not enforced;
//! in `response_format.json_schema`, `description` is ignored.
//!
//! Fields **refused** with "not supported by switchyard": `logit_bias`, `logprobs: true`,
//! `top_logprobs`, `audio`, non-text `modalities`, `prediction`, `reasoning_effort`,
//! `verbosity`, `web_search_options`, audio and file content parts, and the legacy
//! `functions`/`function_call` (and role `function`), which we do not map: use `tools`.
//!
//! Rendering lives in `openai_render.rs` and streaming in `openai_stream.rs`; both are
//! re-exported here so callers see one module.

use super::{
    as_object, at, check_fields, get, invalid, join, opt_array, opt_bool, opt_f64, opt_i64,
    opt_object, opt_str, opt_u32, parse_body, req_nonempty_str, req_str, string_map, unsupported,
};
use crate::canonical::{
    ChatRequest, ContentPart, ImageSource, Message, ResponseFormat, Role, Tool, ToolCall,
    ToolChoice,
};
use crate::error::GatewayError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub use super::openai_render::{
    completion_id, parse_embeddings, render_embeddings, render_models, render_response,
    EncodingFormat, OpenAiEmbeddings,
};
pub use super::openai_stream::OpenAiStreamEncoder;

/// A parsed chat completion request: the canonical request plus what only this dialect's
/// renderer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiChat {
    /// The canonical request.
    pub request: ChatRequest,
    /// `stream_options.include_usage`: send a final usage chunk before `[DONE]`.
    pub include_usage: bool,
}

/// Top-level fields read or deliberately ignored; anything else non-null is a 400.
const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "temperature",
    "top_p",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "stream",
    "stream_options",
    "user",
    "safety_identifier",
    "metadata",
    // Ignored (see the module doc).
    "store",
    "service_tier",
    "prompt_cache_key",
    "logprobs",
    "modalities",
];

/// Known OpenAI fields the gateway cannot carry: a 400 saying so, not "unknown field".
const UNSUPPORTED_FIELDS: &[&str] = &[
    "logit_bias",
    "top_logprobs",
    "audio",
    "prediction",
    "reasoning_effort",
    "verbosity",
    "web_search_options",
];

/// Parse a `/v1/chat/completions` body.
pub fn parse_chat(body: &[u8]) -> Result<OpenAiChat, GatewayError> {
    let obj = parse_body(body)?;
    for key in ["functions", "function_call"] {
        if get(&obj, key).is_some() {
            return Err(GatewayError::invalid(
                key,
                format!(
                    "the legacy `{key}` parameter is not supported by switchyard; use `tools` and `tool_choice`"
                ),
            ));
        }
    }
    for key in UNSUPPORTED_FIELDS {
        if get(&obj, key).is_some() {
            return Err(unsupported(key));
        }
    }
    check_fields(&obj, "", CHAT_FIELDS)?;

    if opt_bool(&obj, "", "logprobs")? == Some(true) {
        return Err(unsupported("logprobs"));
    }
    if let Some(modalities) = opt_array(&obj, "", "modalities")? {
        for (i, m) in modalities.iter().enumerate() {
            if m.as_str() != Some("text") {
                return Err(GatewayError::invalid(
                    at("modalities", i),
                    "only the `text` modality is supported by switchyard",
                ));
            }
        }
    }
    if let Some(n) = get(&obj, "n") {
        if n.as_u64() != Some(1) {
            return Err(GatewayError::invalid(
                "n",
                "only `n: 1` is supported by switchyard",
            ));
        }
    }

    let model = req_nonempty_str(&obj, "", "model")?.to_string();
    let messages = parse_messages(&obj)?;

    let max_tokens = {
        let legacy = opt_u32(&obj, "", "max_tokens")?;
        let current = opt_u32(&obj, "", "max_completion_tokens")?;
        match (legacy, current) {
            (Some(a), Some(b)) if a != b => {
                return Err(GatewayError::invalid(
                    "max_completion_tokens",
                    "`max_tokens` and `max_completion_tokens` disagree; send only one",
                ))
            }
            (a, b) => b.or(a),
        }
    };
    if max_tokens == Some(0) {
        let param = if get(&obj, "max_completion_tokens").is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        return Err(invalid(param, "must be at least 1"));
    }

    let include_usage = match opt_object(&obj, "", "stream_options")? {
        None => false,
        Some(opts) => {
            check_fields(
                opts,
                "stream_options",
                &["include_usage", "include_obfuscation"],
            )?;
            opt_bool(opts, "stream_options", "include_obfuscation")?;
            opt_bool(opts, "stream_options", "include_usage")?.unwrap_or(false)
        }
    };
    // Type-check the ignored fields so a malformed value is still reported.
    opt_bool(&obj, "", "store")?;
    opt_str(&obj, "", "service_tier")?;
    opt_str(&obj, "", "prompt_cache_key")?;

    let end_user = match opt_str(&obj, "", "user")? {
        Some(user) => Some(user.to_string()),
        None => opt_str(&obj, "", "safety_identifier")?.map(str::to_string),
    };

    let request = ChatRequest {
        model,
        messages,
        tools: parse_tools(&obj)?,
        tool_choice: parse_tool_choice(&obj)?,
        parallel_tool_calls: opt_bool(&obj, "", "parallel_tool_calls")?,
        response_format: parse_response_format(&obj)?,
        temperature: opt_f64(&obj, "", "temperature")?,
        top_p: opt_f64(&obj, "", "top_p")?,
        top_k: None,
        max_tokens,
        stop: parse_stop(&obj)?,
        seed: opt_i64(&obj, "", "seed")?,
        presence_penalty: opt_f64(&obj, "", "presence_penalty")?,
        frequency_penalty: opt_f64(&obj, "", "frequency_penalty")?,
        stream: opt_bool(&obj, "", "stream")?.unwrap_or(false),
        end_user,
        metadata: parse_metadata(&obj)?,
    };
    Ok(OpenAiChat {
        request,
        include_usage,
    })
}

fn parse_messages(obj: &Map<String, Value>) -> Result<Vec<Message>, GatewayError> {
    let items =
        opt_array(obj, "", "messages")?.ok_or_else(|| invalid("messages", "is required"))?;
    if items.is_empty() {
        return Err(invalid("messages", "must contain at least one message"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_message(item, &at("messages", i)))
        .collect()
}

fn parse_message(value: &Value, path: &str) -> Result<Message, GatewayError> {
    let obj = as_object(value, path)?;
    let role_path = join(path, "role");
    let role = req_str(obj, path, "role")?;
    let mut message = Message {
        role: Role::User,
        content: Vec::new(),
        tool_calls: Vec::new(),
        tool_call_id: None,
        is_error: false,
        name: opt_str(obj, path, "name")?.map(str::to_string),
    };
    match role {
        "system" | "developer" | "user" => {
            check_fields(obj, path, &["role", "content", "name"])?;
            message.role = if role == "user" { Role::User } else { Role::System };
            message.content = parse_content(required(obj, path, "content")?, &join(path, "content"))?;
        }
        "assistant" => {
            check_fields(
                obj,
                path,
                &["role", "content", "name", "tool_calls", "refusal", "annotations", "audio", "function_call"],
            )?;
            if get(obj, "audio").is_some() {
                return Err(unsupported(&join(path, "audio")));
            }
            if get(obj, "function_call").is_some() {
                return Err(GatewayError::invalid(
                    join(path, "function_call"),
                    "the legacy `function_call` message field is not supported by switchyard; use `tool_calls`",
                ));
            }
            message.role = Role::Assistant;
            if let Some(content) = get(obj, "content") {
                message.content = parse_content(content, &join(path, "content"))?;
            }
            if let Some(refusal) = opt_str(obj, path, "refusal")? {
                if !refusal.is_empty() {
                    message.content.push(ContentPart::Text {
                        text: refusal.to_string(),
                    });
                }
            }
            message.tool_calls = parse_tool_calls(obj, path)?;
            if message.content.is_empty() && message.tool_calls.is_empty() && get(obj, "content").is_none() {
                return Err(invalid(
                    &join(path, "content"),
                    "is required unless `tool_calls` is given",
                ));
            }
        }
        "tool" => {
            check_fields(obj, path, &["role", "content", "tool_call_id"])?;
            message.role = Role::Tool;
            message.tool_call_id = Some(req_nonempty_str(obj, path, "tool_call_id")?.to_string());
            message.content = parse_content(required(obj, path, "content")?, &join(path, "content"))?;
        }
        "function" => {
            return Err(GatewayError::invalid(
                role_path,
                "the legacy `function` role is not supported by switchyard; use `tool` messages",
            ))
        }
        other => {
            return Err(GatewayError::invalid(
                &role_path,
                format!("`{role_path}` must be one of system, developer, user, assistant, tool (got `{other}`)"),
            ))
        }
    }
    Ok(message)
}

fn required<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<&'a Value, GatewayError> {
    get(obj, key).ok_or_else(|| invalid(&join(path, key), "is required"))
}

/// Message content: a string or an array of parts. An empty string yields no parts.
fn parse_content(value: &Value, path: &str) -> Result<Vec<ContentPart>, GatewayError> {
    match value {
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![ContentPart::Text { text: text.clone() }]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(i, part)| parse_part(part, &at(path, i)))
            .collect(),
        _ => Err(invalid(
            path,
            "must be a string or an array of content parts",
        )),
    }
}

fn parse_part(value: &Value, path: &str) -> Result<ContentPart, GatewayError> {
    let obj = as_object(value, path)?;
    let kind = req_str(obj, path, "type")?;
    match kind {
        "text" => {
            check_fields(obj, path, &["type", "text"])?;
            Ok(ContentPart::Text {
                text: req_str(obj, path, "text")?.to_string(),
            })
        }
        // An assistant's earlier refusal, echoed back: keep it as text.
        "refusal" => {
            check_fields(obj, path, &["type", "refusal"])?;
            Ok(ContentPart::Text {
                text: req_str(obj, path, "refusal")?.to_string(),
            })
        }
        "image_url" => {
            check_fields(obj, path, &["type", "image_url"])?;
            let image_path = join(path, "image_url");
            let image = get(obj, "image_url").ok_or_else(|| invalid(&image_path, "is required"))?;
            let image = as_object(image, &image_path)?;
            check_fields(image, &image_path, &["url", "detail"])?;
            let detail = opt_str(image, &image_path, "detail")?;
            if let Some(d) = detail {
                if !matches!(d, "auto" | "low" | "high") {
                    return Err(invalid(
                        &join(&image_path, "detail"),
                        "must be one of auto, low, high",
                    ));
                }
            }
            Ok(ContentPart::Image {
                source: ImageSource::Url {
                    url: req_nonempty_str(image, &image_path, "url")?.to_string(),
                },
                detail: detail.map(str::to_string),
            })
        }
        "input_audio" | "file" => Err(GatewayError::invalid(
            join(path, "type"),
            format!("`{kind}` content parts are not supported by switchyard"),
        )),
        other => Err(GatewayError::invalid(
            join(path, "type"),
            format!("unknown content part type `{other}`"),
        )),
    }
}

fn parse_tool_calls(obj: &Map<String, Value>, path: &str) -> Result<Vec<ToolCall>, GatewayError> {
    let Some(items) = opt_array(obj, path, "tool_calls")? else {
        return Ok(Vec::new());
    };
    let list_path = join(path, "tool_calls");
    let mut calls = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let call_path = at(&list_path, i);
        let call = as_object(item, &call_path)?;
        check_fields(call, &call_path, &["id", "type", "function"])?;
        check_function_type(call, &call_path)?;
        let fn_path = join(&call_path, "function");
        let function = get(call, "function").ok_or_else(|| invalid(&fn_path, "is required"))?;
        let function = as_object(function, &fn_path)?;
        check_fields(function, &fn_path, &["name", "arguments"])?;
        calls.push(ToolCall {
            id: req_nonempty_str(call, &call_path, "id")?.to_string(),
            name: req_nonempty_str(function, &fn_path, "name")?.to_string(),
            arguments: req_str(function, &fn_path, "arguments")?.to_string(),
        });
    }
    Ok(calls)
}

/// `type` must be absent or `function`.
fn check_function_type(obj: &Map<String, Value>, path: &str) -> Result<(), GatewayError> {
    match opt_str(obj, path, "type")? {
        None | Some("function") => Ok(()),
        Some(other) => Err(GatewayError::invalid(
            join(path, "type"),
            format!("tool type `{other}` is not supported by switchyard; only `function`"),
        )),
    }
}

fn parse_tools(obj: &Map<String, Value>) -> Result<Vec<Tool>, GatewayError> {
    let Some(items) = opt_array(obj, "", "tools")? else {
        return Ok(Vec::new());
    };
    let mut tools = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = at("tools", i);
        let tool = as_object(item, &path)?;
        check_fields(tool, &path, &["type", "function"])?;
        check_function_type(tool, &path)?;
        let fn_path = join(&path, "function");
        let function = get(tool, "function").ok_or_else(|| invalid(&fn_path, "is required"))?;
        let function = as_object(function, &fn_path)?;
        check_fields(
            function,
            &fn_path,
            &["name", "description", "parameters", "strict"],
        )?;
        opt_bool(function, &fn_path, "strict")?;
        let parameters = match get(function, "parameters") {
            None => serde_json::json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(invalid(
                    &join(&fn_path, "parameters"),
                    "must be a json schema object",
                ))
            }
        };
        tools.push(Tool {
            name: req_nonempty_str(function, &fn_path, "name")?.to_string(),
            description: opt_str(function, &fn_path, "description")?.map(str::to_string),
            parameters,
        });
    }
    Ok(tools)
}

fn parse_tool_choice(obj: &Map<String, Value>) -> Result<Option<ToolChoice>, GatewayError> {
    let Some(value) = get(obj, "tool_choice") else {
        return Ok(None);
    };
    let choice = match value {
        Value::String(s) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => {
                return Err(invalid(
                    "tool_choice",
                    "must be `auto`, `none`, `required` or a function object",
                ))
            }
        },
        Value::Object(choice) => {
            check_fields(choice, "tool_choice", &["type", "function"])?;
            check_function_type(choice, "tool_choice")?;
            let function = opt_object(choice, "tool_choice", "function")?
                .ok_or_else(|| invalid("tool_choice.function", "is required"))?;
            check_fields(function, "tool_choice.function", &["name"])?;
            ToolChoice::Tool(
                req_nonempty_str(function, "tool_choice.function", "name")?.to_string(),
            )
        }
        _ => return Err(invalid("tool_choice", "must be a string or an object")),
    };
    Ok(Some(choice))
}

fn parse_response_format(obj: &Map<String, Value>) -> Result<Option<ResponseFormat>, GatewayError> {
    let Some(format) = opt_object(obj, "", "response_format")? else {
        return Ok(None);
    };
    let path = "response_format";
    let parsed = match req_str(format, path, "type")? {
        "text" => {
            check_fields(format, path, &["type"])?;
            ResponseFormat::Text
        }
        "json_object" => {
            check_fields(format, path, &["type"])?;
            ResponseFormat::JsonObject
        }
        "json_schema" => {
            check_fields(format, path, &["type", "json_schema"])?;
            let schema_path = "response_format.json_schema";
            let spec = opt_object(format, path, "json_schema")?
                .ok_or_else(|| invalid(schema_path, "is required"))?;
            check_fields(
                spec,
                schema_path,
                &["name", "schema", "strict", "description"],
            )?;
            opt_str(spec, schema_path, "description")?;
            let schema = match get(spec, "schema") {
                None => Value::Object(Map::new()),
                Some(s @ Value::Object(_)) => s.clone(),
                Some(_) => {
                    return Err(invalid(
                        "response_format.json_schema.schema",
                        "must be an object",
                    ))
                }
            };
            ResponseFormat::JsonSchema {
                name: req_nonempty_str(spec, schema_path, "name")?.to_string(),
                schema,
                strict: opt_bool(spec, schema_path, "strict")?,
            }
        }
        other => {
            return Err(GatewayError::invalid(
                "response_format.type",
                format!("unknown response format type `{other}`"),
            ))
        }
    };
    Ok(Some(parsed))
}

fn parse_stop(obj: &Map<String, Value>) -> Result<Vec<String>, GatewayError> {
    match get(obj, "stop") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(&at("stop", i), "must be a string"))
            })
            .collect(),
        Some(_) => Err(invalid("stop", "must be a string or an array of strings")),
    }
}

fn parse_metadata(obj: &Map<String, Value>) -> Result<BTreeMap<String, String>, GatewayError> {
    string_map(obj, "metadata")
}

#[cfg(test)]
#[path = "openai_tests.rs"]
mod tests;

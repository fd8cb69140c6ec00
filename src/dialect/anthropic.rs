//! The Anthropic dialect: `POST /v1/messages` in the wire format of the official
//! `anthropic` SDKs.
//!
//! Parsing ([`parse_messages`]) is strict: unknown top-level fields, and content blocks the
//! canonical shape cannot carry (`document`, `thinking`, server tools …), are a 400 naming
//! the JSON path. Accepted and **ignored**: `cache_control` on any block or tool (prompt
//! caching is the provider's business; the hint cannot be carried), `citations` on text
//! blocks echoed back, top-level `service_tier`, and `thinking: {"type": "disabled"}`.
//!
//! `metadata.user_id` becomes the canonical `end_user`; other string entries of `metadata`
//! (a switchyard extension, e.g. `feature`) go to the canonical `metadata` map.
//!
//! A user message's `tool_result` blocks become one `Role::Tool` message each, in order,
//! placed before a `Role::User` message holding the rest of that message's blocks.
//!
//! Streaming lives in `anthropic_stream.rs` and is re-exported here.

use super::{
    as_object, at, check_fields, fresh_id, get, invalid, join, opt_array, opt_bool, opt_f64,
    opt_object, opt_str, opt_u32, parse_body, prefixed_id, req_nonempty_str, req_str, to_json_vec,
    unsupported,
};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, ImageSource, Message, Role, Tool, ToolCall, ToolChoice,
};
#[cfg(test)]
use crate::canonical::{FinishReason, Usage};
use crate::error::GatewayError;
use crate::wire::anthropic::{self as wire, stop_reason, Block};
#[cfg(test)]
use serde_json::json;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub use super::anthropic_stream::AnthropicStreamEncoder;

/// Top-level fields read or deliberately ignored; anything else non-null is a 400.
const MESSAGES_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "metadata",
    "thinking",
    // Ignored (see the module doc).
    "service_tier",
];

/// Known Anthropic fields the gateway cannot carry.
const UNSUPPORTED_FIELDS: &[&str] = &["container", "mcp_servers", "context_management"];

/// Block types Anthropic defines that the canonical shape cannot carry.
const UNSUPPORTED_BLOCKS: &[&str] = &[
    "document",
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "search_result",
    "container_upload",
    "mcp_tool_use",
    "mcp_tool_result",
];

/// Parse a `/v1/messages` body.
pub fn parse_messages(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    let obj = parse_body(body)?;
    for key in UNSUPPORTED_FIELDS {
        if get(&obj, key).is_some() {
            return Err(unsupported(key));
        }
    }
    check_fields(&obj, "", MESSAGES_FIELDS)?;
    if let Some(thinking) = opt_object(&obj, "", "thinking")? {
        if opt_str(thinking, "thinking", "type")? != Some("disabled") {
            return Err(unsupported("thinking"));
        }
    }
    opt_str(&obj, "", "service_tier")?;

    let model = req_nonempty_str(&obj, "", "model")?.to_string();
    let max_tokens =
        opt_u32(&obj, "", "max_tokens")?.ok_or_else(|| invalid("max_tokens", "is required"))?;
    if max_tokens == 0 {
        return Err(invalid("max_tokens", "must be at least 1"));
    }

    let mut messages = Vec::new();
    parse_system(&obj, &mut messages)?;
    let items =
        opt_array(&obj, "", "messages")?.ok_or_else(|| invalid("messages", "is required"))?;
    if items.is_empty() {
        return Err(invalid("messages", "must contain at least one message"));
    }
    for (i, item) in items.iter().enumerate() {
        parse_message(item, &at("messages", i), &mut messages)?;
    }

    let (tool_choice, parallel_tool_calls) = parse_tool_choice(&obj)?;
    let (end_user, metadata) = parse_metadata(&obj)?;
    Ok(ChatRequest {
        model,
        messages,
        tools: parse_tools(&obj)?,
        tool_choice,
        parallel_tool_calls,
        response_format: None,
        temperature: opt_f64(&obj, "", "temperature")?,
        top_p: opt_f64(&obj, "", "top_p")?,
        top_k: opt_u32(&obj, "", "top_k")?,
        max_tokens: Some(max_tokens),
        stop: parse_stop_sequences(&obj)?,
        seed: None,
        presence_penalty: None,
        frequency_penalty: None,
        stream: opt_bool(&obj, "", "stream")?.unwrap_or(false),
        end_user,
        metadata,
    })
}

/// `system`: a string or text blocks, as one `Role::System` message first.
fn parse_system(obj: &Map<String, Value>, out: &mut Vec<Message>) -> Result<(), GatewayError> {
    let parts = match get(obj, "system") {
        None => return Ok(()),
        Some(Value::String(s)) if s.is_empty() => return Ok(()),
        Some(Value::String(s)) => vec![ContentPart::Text { text: s.clone() }],
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                let path = at("system", i);
                let block_obj = as_object(block, &path)?;
                match req_str(block_obj, &path, "type")? {
                    "text" => parts.push(parse_text_block(block_obj, &path)?),
                    other => {
                        return Err(GatewayError::invalid(
                            join(&path, "type"),
                            format!("`{path}`: system blocks must be `text`, not `{other}`"),
                        ))
                    }
                }
            }
            parts
        }
        Some(_) => {
            return Err(invalid(
                "system",
                "must be a string or an array of text blocks",
            ))
        }
    };
    if !parts.is_empty() {
        let mut message = empty_message(Role::System);
        message.content = parts;
        out.push(message);
    }
    Ok(())
}

fn parse_message(value: &Value, path: &str, out: &mut Vec<Message>) -> Result<(), GatewayError> {
    let obj = as_object(value, path)?;
    check_fields(obj, path, &["role", "content"])?;
    let role = match req_str(obj, path, "role")? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => {
            let role_path = join(path, "role");
            return Err(GatewayError::invalid(
                &role_path,
                format!("`{role_path}` must be `user` or `assistant` (got `{other}`)"),
            ));
        }
    };
    let content_path = join(path, "content");
    let mut message = empty_message(role);
    let blocks = match get(obj, "content") {
        None => return Err(invalid(&content_path, "is required")),
        Some(Value::String(text)) => {
            if !text.is_empty() {
                message
                    .content
                    .push(ContentPart::Text { text: text.clone() });
            }
            out.push(message);
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        Some(_) => {
            return Err(invalid(
                &content_path,
                "must be a string or an array of content blocks",
            ))
        }
    };

    let mut tool_results = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let path = at(&content_path, i);
        let obj = as_object(block, &path)?;
        let kind = req_str(obj, &path, "type")?;
        match kind {
            "text" => message.content.push(parse_text_block(obj, &path)?),
            "image" => message.content.push(parse_image_block(obj, &path)?),
            "tool_use" if role == Role::Assistant => {
                message.tool_calls.push(parse_tool_use(obj, &path)?)
            }
            "tool_result" if role == Role::User => {
                tool_results.push(parse_tool_result(obj, &path)?)
            }
            "tool_use" | "tool_result" => {
                return Err(GatewayError::invalid(
                    join(&path, "type"),
                    format!(
                        "`{path}`: `{kind}` blocks belong in {} messages",
                        if kind == "tool_use" {
                            "assistant"
                        } else {
                            "user"
                        }
                    ),
                ))
            }
            _ if UNSUPPORTED_BLOCKS.contains(&kind) => {
                return Err(GatewayError::invalid(
                    join(&path, "type"),
                    format!("`{path}`: `{kind}` content blocks are not supported by switchyard"),
                ))
            }
            other => {
                return Err(GatewayError::invalid(
                    join(&path, "type"),
                    format!("`{path}`: unknown content block type `{other}`"),
                ))
            }
        }
    }
    let had_results = !tool_results.is_empty();
    out.extend(tool_results);
    if !(had_results && message.content.is_empty()) {
        out.push(message);
    }
    Ok(())
}

/// A message of `role` with no content yet.
fn empty_message(role: Role) -> Message {
    Message {
        role,
        content: Vec::new(),
        tool_calls: Vec::new(),
        tool_call_id: None,
        is_error: false,
        name: None,
    }
}

fn parse_text_block(obj: &Map<String, Value>, path: &str) -> Result<ContentPart, GatewayError> {
    check_fields(obj, path, &["type", "text", "cache_control", "citations"])?;
    Ok(ContentPart::Text {
        text: req_str(obj, path, "text")?.to_string(),
    })
}

fn parse_image_block(obj: &Map<String, Value>, path: &str) -> Result<ContentPart, GatewayError> {
    check_fields(obj, path, &["type", "source", "cache_control"])?;
    let source_path = join(path, "source");
    let source =
        opt_object(obj, path, "source")?.ok_or_else(|| invalid(&source_path, "is required"))?;
    let source = match req_str(source, &source_path, "type")? {
        "base64" => {
            check_fields(source, &source_path, &["type", "media_type", "data"])?;
            ImageSource::Base64 {
                media_type: req_nonempty_str(source, &source_path, "media_type")?.to_string(),
                data: req_nonempty_str(source, &source_path, "data")?.to_string(),
            }
        }
        "url" => {
            check_fields(source, &source_path, &["type", "url"])?;
            ImageSource::Url {
                url: req_nonempty_str(source, &source_path, "url")?.to_string(),
            }
        }
        other => {
            return Err(GatewayError::invalid(
                join(&source_path, "type"),
                format!("`{source_path}`: image source `{other}` is not supported by switchyard"),
            ))
        }
    };
    Ok(ContentPart::Image {
        source,
        detail: None,
    })
}

fn parse_tool_use(obj: &Map<String, Value>, path: &str) -> Result<ToolCall, GatewayError> {
    check_fields(obj, path, &["type", "id", "name", "input", "cache_control"])?;
    let input = opt_object(obj, path, "input")?
        .ok_or_else(|| invalid(&join(path, "input"), "is required"))?;
    Ok(ToolCall {
        id: req_nonempty_str(obj, path, "id")?.to_string(),
        name: req_nonempty_str(obj, path, "name")?.to_string(),
        arguments: super::to_json_string(input),
    })
}

fn parse_tool_result(obj: &Map<String, Value>, path: &str) -> Result<Message, GatewayError> {
    check_fields(
        obj,
        path,
        &[
            "type",
            "tool_use_id",
            "content",
            "is_error",
            "cache_control",
        ],
    )?;
    let mut message = empty_message(Role::Tool);
    message.tool_call_id = Some(req_nonempty_str(obj, path, "tool_use_id")?.to_string());
    message.is_error = opt_bool(obj, path, "is_error")?.unwrap_or(false);
    let content_path = join(path, "content");
    match get(obj, "content") {
        None => {}
        Some(Value::String(text)) if text.is_empty() => {}
        Some(Value::String(text)) => message
            .content
            .push(ContentPart::Text { text: text.clone() }),
        Some(Value::Array(blocks)) => {
            for (i, block) in blocks.iter().enumerate() {
                let block_path = at(&content_path, i);
                let block_obj = as_object(block, &block_path)?;
                match req_str(block_obj, &block_path, "type")? {
                    "text" => message.content.push(parse_text_block(block_obj, &block_path)?),
                    "image" => message.content.push(parse_image_block(block_obj, &block_path)?),
                    other => {
                        return Err(GatewayError::invalid(
                            join(&block_path, "type"),
                            format!("`{block_path}`: `{other}` blocks in a tool result are not supported by switchyard"),
                        ))
                    }
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                &content_path,
                "must be a string or an array of content blocks",
            ))
        }
    }
    Ok(message)
}

fn parse_tools(obj: &Map<String, Value>) -> Result<Vec<Tool>, GatewayError> {
    let Some(items) = opt_array(obj, "", "tools")? else {
        return Ok(Vec::new());
    };
    let mut tools = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = at("tools", i);
        let tool = as_object(item, &path)?;
        match opt_str(tool, &path, "type")? {
            None | Some("custom") => {}
            Some(other) => {
                return Err(GatewayError::invalid(
                    join(&path, "type"),
                    format!("`{path}`: server tool `{other}` is not supported by switchyard"),
                ))
            }
        }
        check_fields(
            tool,
            &path,
            &[
                "type",
                "name",
                "description",
                "input_schema",
                "cache_control",
            ],
        )?;
        let schema_path = join(&path, "input_schema");
        let schema = opt_object(tool, &path, "input_schema")?
            .ok_or_else(|| invalid(&schema_path, "is required"))?;
        tools.push(Tool {
            name: req_nonempty_str(tool, &path, "name")?.to_string(),
            description: opt_str(tool, &path, "description")?.map(str::to_string),
            parameters: Value::Object(schema.clone()),
        });
    }
    Ok(tools)
}

/// `tool_choice` and its `disable_parallel_tool_use` (→ `parallel_tool_calls: false`).
fn parse_tool_choice(
    obj: &Map<String, Value>,
) -> Result<(Option<ToolChoice>, Option<bool>), GatewayError> {
    let Some(choice) = opt_object(obj, "", "tool_choice")? else {
        return Ok((None, None));
    };
    let path = "tool_choice";
    let parsed = match req_str(choice, path, "type")? {
        "auto" => {
            check_fields(choice, path, &["type", "disable_parallel_tool_use"])?;
            ToolChoice::Auto
        }
        "any" => {
            check_fields(choice, path, &["type", "disable_parallel_tool_use"])?;
            ToolChoice::Required
        }
        "none" => {
            check_fields(choice, path, &["type"])?;
            ToolChoice::None
        }
        "tool" => {
            check_fields(choice, path, &["type", "name", "disable_parallel_tool_use"])?;
            ToolChoice::Tool(req_nonempty_str(choice, path, "name")?.to_string())
        }
        other => {
            return Err(GatewayError::invalid(
                "tool_choice.type",
                format!("`tool_choice.type` must be auto, any, tool or none (got `{other}`)"),
            ))
        }
    };
    let parallel = opt_bool(choice, path, "disable_parallel_tool_use")?.map(|disable| !disable);
    Ok((Some(parsed), parallel))
}

fn parse_stop_sequences(obj: &Map<String, Value>) -> Result<Vec<String>, GatewayError> {
    let Some(items) = opt_array(obj, "", "stop_sequences")? else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid(&at("stop_sequences", i), "must be a string"))
        })
        .collect()
}

/// `metadata.user_id` → end user; other string entries → canonical metadata.
fn parse_metadata(
    obj: &Map<String, Value>,
) -> Result<(Option<String>, BTreeMap<String, String>), GatewayError> {
    let mut map = super::string_map(obj, "metadata")?;
    let user = map.remove("user_id");
    Ok((user, map))
}

/// A `msg_…` id for a response: the provider's id kept when it already has that form,
/// prefixed otherwise, fresh when empty. Use it for the stream encoder's id too.
pub fn message_id(provider_id: &str) -> String {
    prefixed_id("msg_", provider_id)
}

/// A tool call's arguments as the `input` object Anthropic clients expect: invalid or
/// non-object JSON (a provider's fault) becomes `{}` rather than failing the response.
pub(crate) fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// A tool-use id for the client: the provider's, or a fresh `toolu_…` when it gave none.
pub(crate) fn tool_use_id(id: &str) -> String {
    if id.is_empty() {
        fresh_id("toolu_")
    } else {
        id.to_string()
    }
}

/// Render a complete answer as an Anthropic `message`. `model` is the client-facing name.
pub fn render_response(resp: &ChatResponse, model: &str) -> Vec<u8> {
    let mut content = Vec::with_capacity(1 + resp.tool_calls.len());
    if !resp.text.is_empty() {
        content.push(Block::Text {
            text: resp.text.as_str().into(),
        });
    }
    for call in &resp.tool_calls {
        content.push(Block::ToolUse {
            id: tool_use_id(&call.id).into(),
            name: call.name.as_str().into(),
            input: tool_input(&call.arguments),
        });
    }
    let body = wire::Message {
        kind: Some("message".into()),
        id: Some(message_id(&resp.id).into()),
        role: "assistant",
        model: Some(model.into()),
        content: Some(content),
        stop_reason: Some(stop_reason(resp.finish_reason).into()),
        stop_sequence: None,
        usage: Some(wire::Usage::from_canonical(&resp.usage)),
        error: None,
    };
    to_json_vec(&body)
}

#[cfg(test)]
#[path = "anthropic_tests.rs"]
mod tests;

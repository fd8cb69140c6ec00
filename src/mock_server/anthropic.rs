//! Anthropic messages on the wire, read and written by hand.

use super::body::SseWriter;
use super::{check_range, joined_text, optional_u32, Parsed, Reply, WireError};
use crate::canonical::FinishReason;
use crate::providers::mock::{
    count_words, split_arguments, split_chunks, MockAnswer, MockPrompt, MockToolChoice,
};
use http::HeaderMap;
use serde_json::{json, Value};
use std::borrow::Cow;

/// Top-level fields Anthropic refuses that OpenAI has (a sign of a leaky adapter).
const FOREIGN_FIELDS: [&str; 9] = [
    "stream_options",
    "max_completion_tokens",
    "response_format",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "n",
    "logprobs",
    "user",
];

/// `x-api-key` and `anthropic-version` must be there.
pub(super) fn check_headers(headers: &HeaderMap) -> Result<(), WireError> {
    if !headers.contains_key("x-api-key") {
        return Err(WireError {
            status: 401,
            message: "x-api-key header is required".into(),
        });
    }
    if !headers.contains_key("anthropic-version") {
        return Err(WireError::bad("anthropic-version: header is required"));
    }
    Ok(())
}

/// Read a messages request.
pub(super) fn parse(body: &Value) -> Result<Parsed<'_>, WireError> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| WireError::bad("model: Field required"))?;
    for field in FOREIGN_FIELDS {
        if body.get(field).is_some() {
            return Err(WireError::bad(format!(
                "{field}: Extra inputs are not permitted"
            )));
        }
    }
    let max_tokens = optional_u32(body, "max_tokens")?
        .filter(|n| *n >= 1)
        .ok_or_else(|| WireError::bad("max_tokens: Field required (an integer ≥ 1)"))?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| WireError::bad("messages: Field required (a non-empty array)"))?;
    let mut input_tokens = count_words(&system_text(body.get("system"))?);
    let mut last_user_text = Cow::Borrowed("");
    let mut tool_result = None;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user") | Some("assistant")) {
            return Err(WireError::bad(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        let content = read_content(message.get("content"), i)?;
        input_tokens += content.words;
        if role == Some("user") && !content.text.is_empty() {
            last_user_text = content.text;
        }
        tool_result = content.tool_result;
    }
    let first_tool = first_tool(body)?;
    let tool_choice = match body.get("tool_choice") {
        None | Some(Value::Null) => MockToolChoice::Auto,
        Some(choice) => match choice.get("type").and_then(Value::as_str) {
            Some("auto") | Some("any") => MockToolChoice::Auto,
            Some("none") => MockToolChoice::None,
            Some("tool") => match choice.get("name").and_then(Value::as_str) {
                Some(name) => MockToolChoice::Tool(name),
                None => return Err(WireError::bad("tool_choice.name: Field required")),
            },
            _ => {
                return Err(WireError::bad(
                    "tool_choice.type: must be auto, any, tool or none",
                ))
            }
        },
    };
    check_range(body, "temperature", 1.0)?;
    check_range(body, "top_p", 1.0)?;
    optional_u32(body, "top_k")?;
    if let Some(stops) = body.get("stop_sequences").filter(|v| !v.is_null()) {
        if !stops
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
        {
            return Err(WireError::bad(
                "stop_sequences: must be an array of strings",
            ));
        }
    }
    Ok(Parsed {
        prompt: MockPrompt {
            model,
            first_tool,
            tool_choice,
            tool_result,
            last_user_text,
            input_tokens,
            max_tokens: Some(max_tokens),
            turns: messages.len(),
        },
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: true,
    })
}

fn system_text(system: Option<&Value>) -> Result<Cow<'_, str>, WireError> {
    match system {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(joined_text(system)),
        Some(Value::Array(blocks)) => {
            if blocks
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) != Some("text"))
            {
                return Err(WireError::bad("system: blocks must be of type 'text'"));
            }
            Ok(joined_text(system))
        }
        Some(_) => Err(WireError::bad(
            "system: must be a string or an array of text blocks",
        )),
    }
}

/// What one message's content holds.
struct Content<'a> {
    /// Its text blocks.
    text: Cow<'a, str>,
    /// Words of text and tool results.
    words: u64,
    /// The text of its last `tool_result` block.
    tool_result: Option<Cow<'a, str>>,
}

fn read_content(content: Option<&Value>, i: usize) -> Result<Content<'_>, WireError> {
    let blocks = match content {
        Some(Value::String(text)) => {
            if text.is_empty() {
                return Err(WireError::bad(format!(
                    "messages.{i}.content: text content blocks must be non-empty"
                )));
            }
            return Ok(Content {
                text: Cow::Borrowed(text.as_str()),
                words: count_words(text),
                tool_result: None,
            });
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(WireError::bad(format!(
                "messages.{i}.content: must be a string or an array of blocks"
            )))
        }
    };
    let mut words = 0;
    let mut tool_result = None;
    for (j, block) in blocks.iter().enumerate() {
        let bad = |what: &str| WireError::bad(format!("messages.{i}.content.{j}: {what}"));
        match block.get("type").and_then(Value::as_str) {
            Some("text") => match block.get("text").and_then(Value::as_str) {
                Some(text) if !text.is_empty() => words += count_words(text),
                _ => return Err(bad("text content blocks must be non-empty")),
            },
            Some("tool_use") => {
                let ok = block.get("id").and_then(Value::as_str).is_some()
                    && block.get("name").and_then(Value::as_str).is_some()
                    && block.get("input").is_some_and(Value::is_object);
                if !ok {
                    return Err(bad("tool_use needs id, name and input as an object"));
                }
            }
            Some("tool_result") => {
                if block.get("tool_use_id").and_then(Value::as_str).is_none() {
                    return Err(bad("tool_result.tool_use_id: Field required"));
                }
                let text = joined_text(block.get("content"));
                words += count_words(&text);
                tool_result = Some(text);
            }
            Some("image") | Some("document") | Some("thinking") | Some("redacted_thinking") => {}
            _ => return Err(bad("unknown content block type")),
        }
    }
    Ok(Content {
        text: joined_text(content),
        words,
        tool_result,
    })
}

/// The first tool's name; every tool needs a name (and custom tools an `input_schema`).
fn first_tool(body: &Value) -> Result<Option<&str>, WireError> {
    let Some(tools) = body.get("tools").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| WireError::bad("tools: must be an array"))?;
    let mut first = None;
    for (i, tool) in tools.iter().enumerate() {
        let custom = matches!(
            tool.get("type").and_then(Value::as_str),
            None | Some("custom")
        );
        match tool.get("name").and_then(Value::as_str) {
            Some(name) if !custom || tool.get("input_schema").is_some_and(Value::is_object) => {
                first = first.or(Some(name));
            }
            _ => {
                return Err(WireError::bad(format!(
                    "tools.{i}: needs a name and an input_schema object"
                )))
            }
        }
    }
    Ok(first)
}

/// How the answer ends, in Anthropic's words. The mock ends a turn in one of three ways:
/// it calls a tool, it reaches `max_tokens`, or it runs out of words.
fn stop_word(answer: &MockAnswer) -> &'static str {
    match (&answer.tool_call, answer.finish) {
        (Some(_), _) => "tool_use",
        (None, FinishReason::Length) => "max_tokens",
        (None, _) => "end_turn",
    }
}

fn tool_input(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| json!({}))
}

/// A non-streaming message.
pub(super) fn response(reply: &Reply<'_>) -> Value {
    let answer = reply.answer;
    let content = match &answer.tool_call {
        Some(call) => json!([{
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": tool_input(&call.arguments),
        }]),
        None => json!([{"type": "text", "text": answer.text}]),
    };
    json!({
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": stop_word(answer),
        "stop_sequence": null,
        "usage": usage(&answer.usage, answer.usage.output_tokens),
    })
}

/// Anthropic's usage: `input_tokens` excludes cache reads and writes, reported apart.
fn usage(usage: &crate::canonical::Usage, output_tokens: u64) -> Value {
    json!({
        "input_tokens": usage.input_tokens
            - usage.cached_input_tokens
            - usage.cache_write_input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": usage.cache_write_input_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
    })
}

/// A streamed message in the official event order.
pub(super) fn stream(reply: &Reply<'_>, out: &mut SseWriter) {
    let answer = reply.answer;
    let start = json!({
        "type": "message_start",
        "message": {
            "id": reply.id,
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(&answer.usage, 1),
        },
    });
    out.event(Some("message_start"), &start, false);
    out.event(Some("ping"), &json!({"type": "ping"}), false);
    let block_start =
        |block: Value| json!({"type": "content_block_start", "index": 0, "content_block": block});
    let block_delta =
        |delta: Value| json!({"type": "content_block_delta", "index": 0, "delta": delta});
    if let Some(call) = &answer.tool_call {
        let block = json!({"type": "tool_use", "id": call.id, "name": call.name, "input": {}});
        out.event(Some("content_block_start"), &block_start(block), false);
        let empty = json!({"type": "input_json_delta", "partial_json": ""});
        out.event(Some("content_block_delta"), &block_delta(empty), false);
        let (head, tail) = split_arguments(&call.arguments);
        for piece in [head, tail] {
            let delta = json!({"type": "input_json_delta", "partial_json": piece});
            out.event(Some("content_block_delta"), &block_delta(delta), true);
        }
    } else {
        let block = json!({"type": "text", "text": ""});
        out.event(Some("content_block_start"), &block_start(block), false);
        for piece in split_chunks(&answer.text, reply.chunks) {
            let delta = json!({"type": "text_delta", "text": piece});
            out.event(Some("content_block_delta"), &block_delta(delta), true);
        }
    }
    let stop = json!({"type": "content_block_stop", "index": 0});
    out.event(Some("content_block_stop"), &stop, false);
    let delta = json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_word(answer), "stop_sequence": null},
        "usage": {"output_tokens": answer.usage.output_tokens},
    });
    out.event(Some("message_delta"), &delta, false);
    out.event(
        Some("message_stop"),
        &json!({"type": "message_stop"}),
        false,
    );
}

/// Anthropic's error JSON.
pub(super) fn error(status: u16, message: &str) -> Value {
    let kind = match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

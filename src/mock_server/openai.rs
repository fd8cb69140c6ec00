//! OpenAI chat completions on the wire, read and written by hand.

use super::body::SseWriter;
use super::{check_range, joined_text, optional_u32, Parsed, Reply, WireError};
use crate::canonical::FinishReason;
use crate::providers::mock::{
    count_words, split_arguments, split_chunks, MockAnswer, MockPrompt, MockToolChoice,
};
use serde_json::{json, Value};
use std::borrow::Cow;

/// Top-level fields OpenAI refuses that other dialects have (a sign of a leaky adapter).
const FOREIGN_FIELDS: [&str; 4] = ["top_k", "system", "stop_sequences", "max_output_tokens"];

/// Read a chat completions request.
pub(super) fn parse(body: &Value) -> Result<Parsed<'_>, WireError> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| WireError::bad("you must provide a model parameter"))?;
    for field in FOREIGN_FIELDS {
        if body.get(field).is_some() {
            return Err(WireError::bad(format!(
                "Unrecognized request argument supplied: {field}"
            )));
        }
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| WireError::bad("'messages' must be a non-empty array"))?;
    let mut input_tokens = 0;
    let mut turns = 0;
    let mut last_user_text = Cow::Borrowed("");
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| WireError::bad(format!("messages[{i}].role: missing")))?;
        let text = joined_text(message.get("content"));
        input_tokens += count_words(&text);
        match role {
            "system" | "developer" => {}
            "user" => {
                turns += 1;
                if !text.is_empty() {
                    last_user_text = text;
                }
            }
            "assistant" => {
                turns += 1;
                check_assistant_tool_calls(message, i)?;
            }
            "tool" => {
                turns += 1;
                if message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .is_none()
                {
                    return Err(WireError::bad(format!(
                        "messages[{i}]: a 'tool' message needs 'tool_call_id'"
                    )));
                }
            }
            "function" => turns += 1,
            other => {
                return Err(WireError::bad(format!(
                    "messages[{i}].role: invalid value '{other}'"
                )))
            }
        }
    }
    let tool_result = messages
        .last()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
        .map(|m| joined_text(m.get("content")));
    let first_tool = first_tool(body)?;
    let tool_choice =
        match body.get("tool_choice") {
            None | Some(Value::Null) => MockToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "none" => MockToolChoice::None,
                "auto" | "required" => MockToolChoice::Auto,
                other => {
                    return Err(WireError::bad(format!(
                        "tool_choice: invalid value '{other}'"
                    )))
                }
            },
            Some(choice) => match choice.pointer("/function/name").and_then(Value::as_str) {
                Some(name) if choice.get("type").and_then(Value::as_str) == Some("function") => {
                    MockToolChoice::Tool(name)
                }
                _ => return Err(WireError::bad(
                    "tool_choice: expected {\"type\": \"function\", \"function\": {\"name\": …}}",
                )),
            },
        };
    check_range(body, "temperature", 2.0)?;
    check_range(body, "top_p", 1.0)?;
    let max_tokens = match optional_u32(body, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => optional_u32(body, "max_tokens")?,
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let stream_options = body.get("stream_options").filter(|v| !v.is_null());
    if stream_options.is_some() && !stream {
        return Err(WireError::bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ));
    }
    let include_usage = stream_options
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Parsed {
        prompt: MockPrompt {
            model,
            first_tool,
            tool_choice,
            tool_result,
            last_user_text,
            input_tokens,
            max_tokens,
            turns,
        },
        stream,
        include_usage,
    })
}

/// Assistant `tool_calls` must carry an id, a function name and arguments as a JSON *string*.
fn check_assistant_tool_calls(message: &Value, i: usize) -> Result<(), WireError> {
    let Some(calls) = message.get("tool_calls").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let Some(calls) = calls.as_array() else {
        return Err(WireError::bad(format!(
            "messages[{i}].tool_calls: must be an array"
        )));
    };
    for (j, call) in calls.iter().enumerate() {
        let ok = call.get("id").and_then(Value::as_str).is_some()
            && call.get("type").and_then(Value::as_str) == Some("function")
            && call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .is_some()
            && call
                .pointer("/function/arguments")
                .is_some_and(Value::is_string);
        if !ok {
            return Err(WireError::bad(format!(
                "messages[{i}].tool_calls[{j}]: needs id, type 'function', function.name and function.arguments as a string"
            )));
        }
    }
    Ok(())
}

/// The first tool's name; every tool must be a named function.
fn first_tool(body: &Value) -> Result<Option<&str>, WireError> {
    let Some(tools) = body.get("tools").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| WireError::bad("tools: must be an array"))?;
    let mut first = None;
    for (i, tool) in tools.iter().enumerate() {
        let name = tool.pointer("/function/name").and_then(Value::as_str);
        match name {
            Some(name) if tool.get("type").and_then(Value::as_str) == Some("function") => {
                first = first.or(Some(name));
            }
            _ => {
                return Err(WireError::bad(format!(
                    "tools[{i}]: expected {{\"type\": \"function\", \"function\": {{\"name\": …}}}}"
                )))
            }
        }
    }
    Ok(first)
}

/// How the answer ends, in OpenAI's words. The mock ends a turn in one of three ways: it
/// calls a tool, it reaches `max_tokens`, or it runs out of words.
fn finish_word(answer: &MockAnswer) -> &'static str {
    match (&answer.tool_call, answer.finish) {
        (Some(_), _) => "tool_calls",
        (None, FinishReason::Length) => "length",
        (None, _) => "stop",
    }
}

fn usage(reply: &Reply<'_>) -> Value {
    let usage = reply.answer.usage;
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

/// A non-streaming `chat.completion`.
pub(super) fn response(reply: &Reply<'_>) -> Value {
    let answer = reply.answer;
    let message = match &answer.tool_call {
        Some(call) => json!({
            "role": "assistant",
            "content": null,
            "refusal": null,
            "tool_calls": [{
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }],
        }),
        None => json!({"role": "assistant", "content": answer.text, "refusal": null}),
    };
    json!({
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_word(answer),
        }],
        "usage": usage(reply),
        "system_fingerprint": null,
    })
}

fn chunk(reply: &Reply<'_>, delta: Value, finish: Option<&str>) -> Value {
    let mut chunk = json!({
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": null,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    if reply.include_usage {
        if let Value::Object(fields) = &mut chunk {
            fields.insert("usage".into(), Value::Null);
        }
    }
    chunk
}

/// A streamed answer: role chunk, content or tool-call chunks, finish chunk, the usage chunk
/// when asked for, then `[DONE]`.
pub(super) fn stream(reply: &Reply<'_>, out: &mut SseWriter) {
    let answer = reply.answer;
    out.event(
        None,
        &chunk(reply, json!({"role": "assistant", "content": ""}), None),
        false,
    );
    if let Some(call) = &answer.tool_call {
        let start = json!({"tool_calls": [{
            "index": 0,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }]});
        out.event(None, &chunk(reply, start, None), true);
        let (head, tail) = split_arguments(&call.arguments);
        for piece in [head, tail] {
            let delta = json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]});
            out.event(None, &chunk(reply, delta, None), true);
        }
    } else {
        for piece in split_chunks(&answer.text, reply.chunks) {
            out.event(None, &chunk(reply, json!({"content": piece}), None), true);
        }
    }
    let finish = finish_word(answer);
    out.event(None, &chunk(reply, json!({}), Some(finish)), false);
    if reply.include_usage {
        let usage_chunk = json!({
            "id": reply.id,
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": null,
            "choices": [],
            "usage": usage(reply),
        });
        out.event(None, &usage_chunk, false);
    }
    out.raw_data("[DONE]");
}

/// OpenAI's error JSON.
pub(super) fn error(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        429 => ("requests", Some("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", None),
        _ => ("server_error", None),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

//! Gemini `generateContent` on the wire, read and written by hand.

use super::body::SseWriter;
use super::{check_range, joined_text, optional_u32, Parsed, Reply, WireError};
use crate::canonical::FinishReason;
use crate::providers::mock::{count_words, split_chunks, MockPrompt, MockToolChoice};
use http::HeaderMap;
use serde_json::{json, Value};
use std::borrow::Cow;

/// Top-level fields of a `GenerateContentRequest` (both JSON spellings); Gemini refuses others.
const KNOWN_FIELDS: [&str; 14] = [
    "contents",
    "model",
    "systemInstruction",
    "system_instruction",
    "tools",
    "toolConfig",
    "tool_config",
    "safetySettings",
    "safety_settings",
    "generationConfig",
    "generation_config",
    "cachedContent",
    "cached_content",
    "labels",
];

/// `x-goog-api-key` must be there.
pub(super) fn check_headers(headers: &HeaderMap) -> Result<(), WireError> {
    if headers.contains_key("x-goog-api-key") {
        return Ok(());
    }
    Err(WireError {
        status: 403,
        message: "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.".into(),
    })
}

fn field<'v>(value: &'v Value, camel: &str, snake: &str) -> Option<&'v Value> {
    value
        .get(camel)
        .or_else(|| value.get(snake))
        .filter(|v| !v.is_null())
}

/// Read a generateContent request for `model` (named by the path).
pub(super) fn parse<'a>(
    body: &'a Value,
    model: &'a str,
    stream: bool,
) -> Result<Parsed<'a>, WireError> {
    let Some(fields) = body.as_object() else {
        return Err(WireError::bad(
            "Invalid JSON payload received: expected an object",
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return Err(WireError::bad(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
        )));
    }
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            WireError::bad("* GenerateContentRequest.contents: contents is not specified")
        })?;
    let mut input_tokens = 0;
    if let Some(system) = field(body, "systemInstruction", "system_instruction") {
        input_tokens += count_words(&joined_text(system.get("parts")));
    }
    let mut last_user_text = Cow::Borrowed("");
    let mut tool_result = None;
    for (i, content) in contents.iter().enumerate() {
        let role = content
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        if role != "user" && role != "model" {
            return Err(WireError::bad("Please use a valid role: user, model."));
        }
        let parts = content
            .get("parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                WireError::bad(format!("* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."))
            })?;
        tool_result = None;
        for (j, part) in parts.iter().enumerate() {
            let bad = |what: &str| {
                WireError::bad(format!(
                    "* GenerateContentRequest.contents[{i}].parts[{j}]: {what}"
                ))
            };
            if let Some(text) = part.get("text") {
                let text = text.as_str().ok_or_else(|| bad("text must be a string"))?;
                input_tokens += count_words(text);
            } else if let Some(call) = field(part, "functionCall", "function_call") {
                let ok = call.get("name").and_then(Value::as_str).is_some()
                    && call.get("args").is_none_or(Value::is_object);
                if !ok {
                    return Err(bad("functionCall needs a name and args as an object"));
                }
            } else if let Some(response) = field(part, "functionResponse", "function_response") {
                let result = response.get("response").filter(|r| r.is_object());
                if response.get("name").and_then(Value::as_str).is_none() || result.is_none() {
                    return Err(bad(
                        "functionResponse needs a name and response as an object",
                    ));
                }
                let text = response_text(result);
                input_tokens += count_words(&text);
                tool_result = Some(text);
            } else if field(part, "inlineData", "inline_data").is_none()
                && field(part, "fileData", "file_data").is_none()
            {
                return Err(bad(
                    "part must hold text, inlineData, fileData, functionCall or functionResponse",
                ));
            }
        }
        if role == "user" {
            let text = joined_text(content.get("parts"));
            if !text.is_empty() {
                last_user_text = text;
            }
        }
    }
    let first_tool = first_tool(body);
    let mut tool_choice = MockToolChoice::Auto;
    if let Some(config) = field(body, "toolConfig", "tool_config")
        .and_then(|c| field(c, "functionCallingConfig", "function_calling_config"))
    {
        let allowed = field(config, "allowedFunctionNames", "allowed_function_names")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        tool_choice = match (config.get("mode").and_then(Value::as_str), allowed) {
            (Some("NONE"), _) => MockToolChoice::None,
            (Some("ANY"), [only]) => only
                .as_str()
                .map_or(MockToolChoice::Auto, MockToolChoice::Tool),
            _ => MockToolChoice::Auto,
        };
    }
    let mut max_tokens = None;
    if let Some(config) = field(body, "generationConfig", "generation_config") {
        check_range(config, "temperature", 2.0)?;
        check_range(config, "topP", 1.0)?;
        max_tokens = match optional_u32(config, "maxOutputTokens")? {
            Some(n) => Some(n),
            None => optional_u32(config, "max_output_tokens")?,
        };
    }
    Ok(Parsed {
        prompt: MockPrompt {
            model,
            first_tool,
            tool_choice,
            tool_result,
            last_user_text,
            input_tokens,
            max_tokens,
            turns: contents.len(),
        },
        stream,
        include_usage: true,
    })
}

/// The text of a function response: its only string field, or the whole object as JSON.
fn response_text(response: Option<&Value>) -> Cow<'_, str> {
    match response {
        Some(Value::Object(fields)) if fields.len() == 1 => match fields.values().next() {
            Some(Value::String(text)) => Cow::Borrowed(text.as_str()),
            Some(other) => Cow::Owned(other.to_string()),
            None => Cow::Borrowed(""),
        },
        Some(other) => Cow::Owned(other.to_string()),
        None => Cow::Borrowed(""),
    }
}

fn first_tool(body: &Value) -> Option<&str> {
    body.get("tools")?.as_array()?.iter().find_map(|tool| {
        field(tool, "functionDeclarations", "function_declarations")?
            .as_array()?
            .first()?
            .get("name")?
            .as_str()
    })
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
    }
}

fn full_usage(reply: &Reply<'_>) -> Value {
    let usage = reply.answer.usage;
    json!({
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": usage.output_tokens,
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
        "cachedContentTokenCount": usage.cached_input_tokens,
    })
}

fn function_call_part(reply: &Reply<'_>) -> Option<Value> {
    let call = reply.answer.tool_call.as_ref()?;
    let args: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
    Some(json!({"functionCall": {"name": call.name, "args": args}}))
}

fn envelope(reply: &Reply<'_>, parts: Value, finish: Option<&str>, usage: Value) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let (Some(finish), Value::Object(fields)) = (finish, &mut candidate) {
        fields.insert("finishReason".into(), Value::from(finish));
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": reply.model,
        "responseId": reply.id,
    })
}

/// A non-streaming `GenerateContentResponse`.
pub(super) fn response(reply: &Reply<'_>) -> Value {
    let part = function_call_part(reply).unwrap_or_else(|| json!({"text": reply.answer.text}));
    let finish = finish_reason(reply.answer.finish);
    envelope(reply, json!([part]), Some(finish), full_usage(reply))
}

/// The streamed `GenerateContentResponse`s: text pieces (the last with the finish reason and
/// full usage; earlier ones with the prompt count only), or one function-call chunk.
pub(super) fn chunks(reply: &Reply<'_>) -> Vec<Value> {
    let finish = finish_reason(reply.answer.finish);
    if let Some(part) = function_call_part(reply) {
        return vec![envelope(
            reply,
            json!([part]),
            Some(finish),
            full_usage(reply),
        )];
    }
    let mut pieces = split_chunks(&reply.answer.text, reply.chunks);
    if pieces.is_empty() {
        pieces.push("");
    }
    let input = reply.answer.usage.input_tokens;
    let last = pieces.len() - 1;
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let parts = json!([{"text": piece}]);
            if i == last {
                envelope(reply, parts, Some(finish), full_usage(reply))
            } else {
                let usage = json!({"promptTokenCount": input, "totalTokenCount": input});
                envelope(reply, parts, None, usage)
            }
        })
        .collect()
}

/// The chunks as SSE `data:` frames.
pub(super) fn stream(reply: &Reply<'_>, out: &mut SseWriter) {
    for chunk in chunks(reply) {
        out.event(None, &chunk, true);
    }
}

/// Gemini's error JSON.
pub(super) fn error(status: u16, message: &str) -> Value {
    let name = match status {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        400..=499 => "INVALID_ARGUMENT",
        _ => "INTERNAL",
    };
    json!({"error": {"code": status, "message": message, "status": name}})
}

//! Tests of [`super::parse_chat`] on realistic SDK bodies and every refusal path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use serde_json::json;

/// What the Python SDK sends for a second turn after a tool call, with the assistant
/// message appended straight from the previous response (hence `refusal`, `annotations`,
/// `audio`, `function_call` as nulls/empties).
fn python_sdk_tool_turn() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "developer", "content": "You are a weather bot."},
            {"role": "user", "content": [
                {"type": "text", "text": "What's the weather where this photo was taken?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ], "name": "alice"},
            {"role": "assistant", "content": null, "refusal": null, "annotations": [],
             "audio": null, "function_call": null,
             "tool_calls": [
                {"id": "call_abc", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_def", "type": "function",
                 "function": {"name": "get_time", "arguments": "{}"}}
             ]},
            {"role": "tool", "tool_call_id": "call_abc", "content": "18C, cloudy"},
            {"role": "tool", "tool_call_id": "call_def", "content": [{"type": "text", "text": "14:02"}]},
            {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]}
        ],
        "tools": [
            {"type": "function", "function": {
                "name": "get_weather", "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "additionalProperties": false},
                "strict": true}},
            {"type": "function", "function": {"name": "get_time"}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "answer", "strict": true,
            "schema": {"type": "object", "properties": {"text": {"type": "string"}}}}},
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n", "END"],
        "max_completion_tokens": 512,
        "seed": 42,
        "presence_penalty": 0.1,
        "frequency_penalty": -0.5,
        "n": 1,
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "user-123",
        "metadata": {"feature": "weather", "session": "s-9"},
        "store": false,
        "logprobs": false,
        "service_tier": "auto"
    })
}

fn parse_value(v: &Value) -> Result<OpenAiChat, GatewayError> {
    parse_chat(&serde_json::to_vec(v).unwrap())
}

fn expect_400(v: &Value, param: &str, needle: &str) {
    let err = parse_value(v).unwrap_err();
    assert_eq!(err.status(), 400, "{v}");
    assert_eq!(err.param.as_deref(), Some(param), "{v}: {}", err.message);
    assert!(
        err.message.contains(needle),
        "{:?} lacks {needle:?}",
        err.message
    );
}

/// The tool-turn fixture with one top-level field set (or removed with `Value::Null`).
fn with(key: &str, value: Value) -> Value {
    let mut v = python_sdk_tool_turn();
    v[key] = value;
    v
}

fn with_message(index: usize, message: Value) -> Value {
    let mut v = python_sdk_tool_turn();
    v["messages"][index] = message;
    v
}

#[test]
fn python_sdk_tool_turn_parses_into_canonical_request() {
    let parsed = parse_value(&python_sdk_tool_turn()).unwrap();
    assert!(parsed.include_usage);
    let req = parsed.request;
    assert_eq!(req.model, "gpt-4o-mini");
    assert_eq!(req.messages.len(), 6);

    assert_eq!(
        req.messages[0],
        Message::text(Role::System, "You are a weather bot.")
    );

    let user = &req.messages[1];
    assert_eq!(user.role, Role::User);
    assert_eq!(user.name.as_deref(), Some("alice"));
    assert_eq!(user.content.len(), 3);
    assert_eq!(
        user.content[1],
        ContentPart::Image {
            source: ImageSource::Url {
                url: "https://example.com/paris.jpg".into()
            },
            detail: Some("low".into()),
        }
    );
    assert_eq!(
        user.content[2],
        ContentPart::Image {
            source: ImageSource::Url {
                url: "data:image/png;base64,iVBORw0KGgo=".into()
            },
            detail: None,
        }
    );

    let assistant = &req.messages[2];
    assert_eq!(assistant.role, Role::Assistant);
    assert!(assistant.content.is_empty());
    assert_eq!(
        assistant.tool_calls,
        vec![
            ToolCall {
                id: "call_abc".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into()
            },
            ToolCall {
                id: "call_def".into(),
                name: "get_time".into(),
                arguments: "{}".into()
            },
        ]
    );

    let tool = &req.messages[3];
    assert_eq!(tool.role, Role::Tool);
    assert_eq!(tool.tool_call_id.as_deref(), Some("call_abc"));
    assert_eq!(tool.joined_text(), "18C, cloudy");
    assert_eq!(req.messages[4].joined_text(), "14:02");
    assert_eq!(req.messages[5].role, Role::System);

    assert_eq!(req.tools.len(), 2);
    assert_eq!(req.tools[0].name, "get_weather");
    assert_eq!(
        req.tools[0].description.as_deref(),
        Some("Current weather for a city")
    );
    assert_eq!(req.tools[0].parameters["required"], json!(["city"]));
    assert_eq!(
        req.tools[1].parameters,
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(
        req.tool_choice,
        Some(ToolChoice::Tool("get_weather".into()))
    );
    assert_eq!(req.parallel_tool_calls, Some(false));
    match req.response_format {
        Some(ResponseFormat::JsonSchema {
            ref name,
            ref schema,
            strict,
        }) => {
            assert_eq!(name, "answer");
            assert_eq!(schema["type"], "object");
            assert_eq!(strict, Some(true));
        }
        ref other => panic!("unexpected response format {other:?}"),
    }
    assert_eq!(req.temperature, Some(0.2));
    assert_eq!(req.top_p, Some(0.9));
    assert_eq!(req.top_k, None);
    assert_eq!(req.stop, vec!["\n\n", "END"]);
    assert_eq!(req.max_tokens, Some(512));
    assert_eq!(req.seed, Some(42));
    assert_eq!(req.presence_penalty, Some(0.1));
    assert_eq!(req.frequency_penalty, Some(-0.5));
    assert!(req.stream);
    assert_eq!(req.end_user.as_deref(), Some("user-123"));
    assert_eq!(
        req.metadata.get("feature").map(String::as_str),
        Some("weather")
    );
    assert_eq!(req.metadata.len(), 2);
}

#[test]
fn minimal_body_gets_defaults() {
    let parsed =
        parse_chat(br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
    assert!(!parsed.include_usage);
    let req = parsed.request;
    assert!(!req.stream);
    assert_eq!(req.messages, vec![Message::text(Role::User, "hi")]);
    assert!(req.tools.is_empty() && req.tool_choice.is_none() && req.max_tokens.is_none());
    assert!(req.stop.is_empty() && req.metadata.is_empty() && req.end_user.is_none());
}

#[test]
fn async_openai_builder_request_round_trips_through_the_parser() {
    use async_openai::types::{
        ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
        ChatCompletionToolArgs, ChatCompletionToolType, CreateChatCompletionRequestArgs,
        FunctionObjectArgs,
    };
    let request = CreateChatCompletionRequestArgs::default()
        .model("fast")
        .max_tokens(64u32)
        .messages([
            ChatCompletionRequestSystemMessageArgs::default()
                .content("be terse")
                .build()
                .unwrap()
                .into(),
            ChatCompletionRequestUserMessageArgs::default()
                .content("weather in Oslo?")
                .build()
                .unwrap()
                .into(),
        ])
        .tools(vec![ChatCompletionToolArgs::default()
            .r#type(ChatCompletionToolType::Function)
            .function(
                FunctionObjectArgs::default()
                    .name("get_weather")
                    .parameters(
                        json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                    )
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()])
        .stream(true)
        .build()
        .unwrap();
    let body = serde_json::to_vec(&request).unwrap();
    let req = parse_chat(&body).unwrap().request;
    assert_eq!(req.model, "fast");
    assert_eq!(req.max_tokens, Some(64));
    assert_eq!(req.messages[0], Message::text(Role::System, "be terse"));
    assert_eq!(
        req.messages[1],
        Message::text(Role::User, "weather in Oslo?")
    );
    assert_eq!(req.tools[0].name, "get_weather");
    assert!(req.stream);
}

#[test]
fn tool_choice_strings_and_stop_string_and_response_formats_parse() {
    for (choice, expected) in [
        ("auto", ToolChoice::Auto),
        ("none", ToolChoice::None),
        ("required", ToolChoice::Required),
    ] {
        let req = parse_value(&with("tool_choice", json!(choice)))
            .unwrap()
            .request;
        assert_eq!(req.tool_choice, Some(expected));
    }
    let req = parse_value(&with("stop", json!("STOP"))).unwrap().request;
    assert_eq!(req.stop, vec!["STOP"]);
    let req = parse_value(&with("response_format", json!({"type": "json_object"})))
        .unwrap()
        .request;
    assert_eq!(req.response_format, Some(ResponseFormat::JsonObject));
    let req = parse_value(&with("response_format", json!({"type": "text"})))
        .unwrap()
        .request;
    assert_eq!(req.response_format, Some(ResponseFormat::Text));
}

#[test]
fn max_tokens_and_max_completion_tokens_agree_or_fail() {
    let mut v = with("max_completion_tokens", Value::Null);
    v["max_tokens"] = json!(100);
    assert_eq!(parse_value(&v).unwrap().request.max_tokens, Some(100));
    v["max_completion_tokens"] = json!(100);
    assert_eq!(parse_value(&v).unwrap().request.max_tokens, Some(100));
    v["max_completion_tokens"] = json!(200);
    expect_400(&v, "max_completion_tokens", "disagree");
    expect_400(
        &with("max_completion_tokens", json!(0)),
        "max_completion_tokens",
        "at least 1",
    );
    expect_400(
        &with("max_completion_tokens", json!(-5)),
        "max_completion_tokens",
        "non-negative integer",
    );
    expect_400(
        &with("max_completion_tokens", json!(1.5)),
        "max_completion_tokens",
        "integer",
    );
}

#[test]
fn nulls_mean_absent_and_safety_identifier_names_the_end_user() {
    let mut v = python_sdk_tool_turn();
    for key in [
        "temperature",
        "tools",
        "tool_choice",
        "stop",
        "logit_bias",
        "functions",
        "user",
        "n",
    ] {
        v[key] = Value::Null;
    }
    v["safety_identifier"] = json!("hashed-42");
    let req = parse_value(&v).unwrap().request;
    assert_eq!(req.temperature, None);
    assert!(req.tools.is_empty() && req.stop.is_empty());
    assert_eq!(req.end_user.as_deref(), Some("hashed-42"));
}

#[test]
fn assistant_text_and_refusal_are_kept_as_text() {
    let v = with_message(
        2,
        json!({"role": "assistant", "content": [{"type": "text", "text": "No."},
                                                {"type": "refusal", "refusal": "I can't help."}]}),
    );
    let msg = &parse_value(&v).unwrap().request.messages[2];
    assert_eq!(msg.joined_text(), "No.\nI can't help.");
    let v = with_message(
        2,
        json!({"role": "assistant", "content": null, "refusal": "Sorry."}),
    );
    assert_eq!(
        parse_value(&v).unwrap().request.messages[2].joined_text(),
        "Sorry."
    );
}

#[test]
fn malformed_json_is_bad_body_with_serde_message() {
    let err = parse_chat(b"{\"model\": \"x\", \"messages\": [").unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.param.is_none());
    assert!(
        err.message.contains("not valid json") && err.message.contains("line 1"),
        "{}",
        err.message
    );
    let err = parse_chat(b"\"just a string\"").unwrap_err();
    assert!(err.message.contains("json object"));
}

#[test]
fn missing_or_empty_model_and_messages_are_400() {
    expect_400(&with("model", Value::Null), "model", "is required");
    expect_400(&with("model", json!("")), "model", "must not be empty");
    expect_400(&with("model", json!(4)), "model", "must be a string");
    expect_400(&with("messages", Value::Null), "messages", "is required");
    expect_400(&with("messages", json!([])), "messages", "at least one");
    expect_400(
        &with("messages", json!("hi")),
        "messages",
        "must be an array",
    );
}

#[test]
fn unsupported_and_unknown_top_level_fields_are_named() {
    expect_400(
        &with("logit_bias", json!({"50256": -100})),
        "logit_bias",
        "not supported by switchyard",
    );
    expect_400(
        &with("logprobs", json!(true)),
        "logprobs",
        "not supported by switchyard",
    );
    expect_400(
        &with("top_logprobs", json!(3)),
        "top_logprobs",
        "not supported by switchyard",
    );
    expect_400(
        &with("audio", json!({"voice": "alloy", "format": "wav"})),
        "audio",
        "not supported by switchyard",
    );
    expect_400(
        &with("modalities", json!(["text", "audio"])),
        "modalities[1]",
        "only the `text` modality",
    );
    expect_400(
        &with("prediction", json!({"type": "content", "content": "x"})),
        "prediction",
        "not supported by switchyard",
    );
    expect_400(
        &with("reasoning_effort", json!("high")),
        "reasoning_effort",
        "not supported by switchyard",
    );
    expect_400(
        &with("functions", json!([{"name": "f"}])),
        "functions",
        "use `tools`",
    );
    expect_400(
        &with("function_call", json!("auto")),
        "function_call",
        "use `tools`",
    );
    expect_400(
        &with("temprature", json!(0.5)),
        "temprature",
        "unknown field `temprature`",
    );
    expect_400(&with("n", json!(2)), "n", "only `n: 1`");
    // The ignore-list really is ignored.
    assert!(parse_value(&with("modalities", json!(["text"]))).is_ok());
    assert!(parse_value(&with("prompt_cache_key", json!("k1"))).is_ok());
}

#[test]
fn wrongly_typed_fields_name_their_path() {
    expect_400(
        &with("temperature", json!("hot")),
        "temperature",
        "must be a number",
    );
    expect_400(&with("stream", json!("yes")), "stream", "must be a boolean");
    expect_400(
        &with("stop", json!(["a", 1])),
        "stop[1]",
        "must be a string",
    );
    expect_400(&with("seed", json!(1.5)), "seed", "must be an integer");
    expect_400(
        &with("metadata", json!({"feature": 3})),
        "metadata.feature",
        "must be a string",
    );
    expect_400(
        &with("stream_options", json!({"include_usage": true, "x": 1})),
        "stream_options.x",
        "unknown field",
    );
    expect_400(
        &with("tool_choice", json!("sometimes")),
        "tool_choice",
        "must be `auto`",
    );
    expect_400(
        &with("tool_choice", json!({"type": "function"})),
        "tool_choice.function",
        "is required",
    );
    expect_400(
        &with("response_format", json!({"type": "yaml"})),
        "response_format.type",
        "unknown response format",
    );
    expect_400(
        &with(
            "response_format",
            json!({"type": "json_schema", "json_schema": {"schema": {}}}),
        ),
        "response_format.json_schema.name",
        "is required",
    );
    expect_400(
        &with(
            "tools",
            json!([{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
        ),
        "tools[0].function.parameters",
        "json schema object",
    );
    expect_400(
        &with(
            "tools",
            json!([{"type": "custom", "custom": {"name": "f"}}]),
        ),
        "tools[0].custom",
        "unknown field",
    );
    expect_400(
        &with("tools", json!([{"type": "custom"}])),
        "tools[0].type",
        "only `function`",
    );
    expect_400(
        &with(
            "tools",
            json!([{"type": "function", "function": {"description": "no name"}}]),
        ),
        "tools[0].function.name",
        "is required",
    );
}

#[test]
fn bad_messages_name_their_json_path() {
    expect_400(
        &with_message(1, json!({"content": "hi"})),
        "messages[1].role",
        "is required",
    );
    expect_400(
        &with_message(1, json!({"role": "robot", "content": "hi"})),
        "messages[1].role",
        "must be one of",
    );
    expect_400(
        &with_message(1, json!({"role": "function", "name": "f", "content": "x"})),
        "messages[1].role",
        "legacy",
    );
    expect_400(
        &with_message(1, json!({"role": "user"})),
        "messages[1].content",
        "is required",
    );
    expect_400(
        &with_message(1, json!({"role": "user", "content": 7})),
        "messages[1].content",
        "string or an array",
    );
    expect_400(
        &with_message(1, json!("hello")),
        "messages[1]",
        "must be an object",
    );
    expect_400(
        &with_message(1, json!({"role": "user", "content": "x", "mood": "happy"})),
        "messages[1].mood",
        "unknown field",
    );
    expect_400(
        &with_message(
            1,
            json!({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}),
        ),
        "messages[1].content[0].type",
        "not supported by switchyard",
    );
    expect_400(
        &with_message(
            1,
            json!({"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}),
        ),
        "messages[1].content[0].type",
        "not supported",
    );
    expect_400(
        &with_message(1, json!({"role": "user", "content": [{"type": "video"}]})),
        "messages[1].content[0].type",
        "unknown content part type",
    );
    expect_400(
        &with_message(
            1,
            json!({"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}),
        ),
        "messages[1].content[0].image_url.url",
        "is required",
    );
    expect_400(
        &with_message(
            1,
            json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u", "detail": "ultra"}}]}),
        ),
        "messages[1].content[0].image_url.detail",
        "auto, low, high",
    );
    expect_400(
        &with_message(3, json!({"role": "tool", "content": "x"})),
        "messages[3].tool_call_id",
        "is required",
    );
    expect_400(
        &with_message(2, json!({"role": "assistant"})),
        "messages[2].content",
        "unless `tool_calls`",
    );
    expect_400(
        &with_message(
            2,
            json!({"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}}),
        ),
        "messages[2].function_call",
        "legacy",
    );
    expect_400(
        &with_message(2, json!({"role": "assistant", "audio": {"id": "audio_1"}})),
        "messages[2].audio",
        "not supported by switchyard",
    );
    expect_400(
        &with_message(
            2,
            json!({"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]}),
        ),
        "messages[2].tool_calls[0].function.arguments",
        "is required",
    );
    expect_400(
        &with_message(
            2,
            json!({"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
        ),
        "messages[2].tool_calls[0].id",
        "is required",
    );
}

//! Tests of [`super::parse_messages`] and [`super::render_response`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// What the Python SDK sends for the turn after Claude asked for two tools (the assistant
/// content echoed back as the SDK returned it), with an image and prompt caching.
fn sdk_tool_turn() -> Value {
    json!({
        "model": "claude-sonnet",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer briefly."}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather where this was taken?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/paris.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking.", "citations": null},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C, cloudy"},
                {"type": "text", "text": "Also, is it raining?"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "is_error": true,
                 "content": [{"type": "text", "text": "clock unavailable"}],
                 "cache_control": {"type": "ephemeral"}}
            ]}
        ],
        "tools": [
            {"name": "get_weather", "description": "Current weather",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}},
             "cache_control": {"type": "ephemeral"}}
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.3,
        "top_p": 0.95,
        "top_k": 40,
        "stream": true,
        "metadata": {"user_id": "user-7", "feature": "weather"}
    })
}

fn parse_value(v: &Value) -> Result<ChatRequest, GatewayError> {
    parse_messages(&serde_json::to_vec(v).unwrap())
}

fn with(key: &str, value: Value) -> Value {
    let mut v = sdk_tool_turn();
    v[key] = value;
    v
}

fn with_message(index: usize, message: Value) -> Value {
    let mut v = sdk_tool_turn();
    v["messages"][index] = message;
    v
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
    // The Anthropic error body has no `param`, so the message must carry the path.
    let parent = param.rsplit_once('.').map_or(param, |(parent, _)| parent);
    assert!(
        err.message.contains(parent),
        "{:?} lacks the path",
        err.message
    );
}

#[test]
fn sdk_tool_turn_parses_with_tool_results_before_user_text() {
    let req = parse_value(&sdk_tool_turn()).unwrap();
    assert_eq!(req.model, "claude-sonnet");
    assert_eq!(req.max_tokens, Some(1024));
    let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::User
        ]
    );

    let system = &req.messages[0];
    assert_eq!(
        system.joined_text(),
        "You are a weather bot.\nAnswer briefly."
    );
    assert_eq!(system.content.len(), 2);

    let user = &req.messages[1];
    assert_eq!(
        user.content[1],
        ContentPart::Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into()
            },
            detail: None,
        }
    );
    assert_eq!(
        user.content[2],
        ContentPart::Image {
            source: ImageSource::Url {
                url: "https://example.com/paris.jpg".into()
            },
            detail: None
        }
    );

    let assistant = &req.messages[2];
    assert_eq!(assistant.joined_text(), "Checking.");
    assert_eq!(assistant.tool_calls.len(), 2);
    assert_eq!(assistant.tool_calls[0].id, "toolu_01A");
    assert_eq!(assistant.tool_calls[0].name, "get_weather");
    let args: Value = serde_json::from_str(&assistant.tool_calls[0].arguments).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    assert_eq!(assistant.tool_calls[1].arguments, "{}");

    let first = &req.messages[3];
    assert_eq!(first.tool_call_id.as_deref(), Some("toolu_01A"));
    assert_eq!(first.joined_text(), "18C, cloudy");
    assert!(!first.is_error);
    let second = &req.messages[4];
    assert_eq!(second.tool_call_id.as_deref(), Some("toolu_01B"));
    assert!(second.is_error);
    assert_eq!(second.joined_text(), "clock unavailable");
    assert_eq!(
        req.messages[5],
        Message::text(Role::User, "Also, is it raining?")
    );

    assert_eq!(req.tools.len(), 2);
    assert_eq!(req.tools[0].description.as_deref(), Some("Current weather"));
    assert_eq!(req.tools[0].parameters["required"], json!(["city"]));
    assert_eq!(req.tool_choice, Some(ToolChoice::Auto));
    assert_eq!(req.parallel_tool_calls, Some(false));
    assert_eq!(req.stop, vec!["\n\nHuman:"]);
    assert_eq!(req.temperature, Some(0.3));
    assert_eq!(req.top_p, Some(0.95));
    assert_eq!(req.top_k, Some(40));
    assert!(req.stream);
    assert_eq!(req.end_user.as_deref(), Some("user-7"));
    assert_eq!(
        req.metadata.get("feature").map(String::as_str),
        Some("weather")
    );
    assert!(!req.metadata.contains_key("user_id"));
}

#[test]
fn minimal_body_with_string_system_and_content() {
    let req = parse_messages(
        br#"{"model":"claude-haiku","max_tokens":64,"system":"Be terse.","messages":[{"role":"user","content":"Hello"}]}"#,
    )
    .unwrap();
    assert_eq!(
        req.messages,
        vec![
            Message::text(Role::System, "Be terse."),
            Message::text(Role::User, "Hello")
        ]
    );
    assert!(
        !req.stream
            && req.tools.is_empty()
            && req.tool_choice.is_none()
            && req.parallel_tool_calls.is_none()
    );
    assert!(req.end_user.is_none() && req.metadata.is_empty());
}

#[test]
fn user_message_of_only_tool_results_yields_only_tool_messages() {
    let v = with_message(
        2,
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A"}]}),
    );
    let req = parse_value(&v).unwrap();
    assert_eq!(req.messages.len(), 4);
    assert_eq!(req.messages[3].role, Role::Tool);
    assert!(req.messages[3].content.is_empty());
}

#[test]
fn tool_choice_variants_map() {
    for (choice, expected, parallel) in [
        (json!({"type": "any"}), ToolChoice::Required, None),
        (json!({"type": "none"}), ToolChoice::None, None),
        (
            json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": false}),
            ToolChoice::Tool("get_weather".into()),
            Some(true),
        ),
    ] {
        let req = parse_value(&with("tool_choice", choice)).unwrap();
        assert_eq!(req.tool_choice, Some(expected));
        assert_eq!(req.parallel_tool_calls, parallel);
    }
}

#[test]
fn accepted_and_ignored_fields_parse() {
    assert!(parse_value(&with("thinking", json!({"type": "disabled"}))).is_ok());
    assert!(parse_value(&with("service_tier", json!("auto"))).is_ok());
    assert!(parse_value(&with("temperature", Value::Null)).is_ok());
}

#[test]
fn malformed_json_is_bad_body() {
    let err = parse_messages(b"{\"model\": ").unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.message.contains("not valid json"));
}

#[test]
fn top_level_refusals_name_the_field() {
    expect_400(
        &with("max_tokens", Value::Null),
        "max_tokens",
        "is required",
    );
    expect_400(&with("max_tokens", json!(0)), "max_tokens", "at least 1");
    expect_400(&with("model", Value::Null), "model", "is required");
    expect_400(&with("messages", json!([])), "messages", "at least one");
    expect_400(&with("messages", Value::Null), "messages", "is required");
    expect_400(
        &with(
            "thinking",
            json!({"type": "enabled", "budget_tokens": 2048}),
        ),
        "thinking",
        "not supported by switchyard",
    );
    expect_400(
        &with("mcp_servers", json!([])),
        "mcp_servers",
        "not supported by switchyard",
    );
    expect_400(
        &with("frequency_penalty", json!(0.5)),
        "frequency_penalty",
        "unknown field",
    );
    expect_400(
        &with("system", json!([{"type": "image"}])),
        "system[0].type",
        "must be `text`",
    );
    expect_400(&with("system", json!(5)), "system", "string or an array");
    expect_400(
        &with("stop_sequences", json!(["a", 2])),
        "stop_sequences[1]",
        "must be a string",
    );
    expect_400(&with("top_k", json!(-1)), "top_k", "non-negative integer");
    expect_400(
        &with("metadata", json!({"user_id": 5})),
        "metadata.user_id",
        "must be a string",
    );
    expect_400(
        &with("tool_choice", json!({"type": "sometimes"})),
        "tool_choice.type",
        "auto, any, tool or none",
    );
    expect_400(
        &with("tool_choice", json!({"type": "tool"})),
        "tool_choice.name",
        "is required",
    );
    expect_400(
        &with(
            "tools",
            json!([{"type": "web_search_20250305", "name": "web_search"}]),
        ),
        "tools[0].type",
        "not supported by switchyard",
    );
    expect_400(
        &with("tools", json!([{"name": "f"}])),
        "tools[0].input_schema",
        "is required",
    );
    expect_400(
        &with(
            "tools",
            json!([{"name": "f", "input_schema": {}, "strict": true}]),
        ),
        "tools[0].strict",
        "unknown field",
    );
}

#[test]
fn bad_blocks_name_their_json_path() {
    expect_400(
        &with_message(0, json!({"role": "system", "content": "x"})),
        "messages[0].role",
        "must be `user` or `assistant`",
    );
    expect_400(
        &with_message(0, json!({"role": "user"})),
        "messages[0].content",
        "is required",
    );
    expect_400(
        &with_message(0, json!({"role": "user", "content": "x", "name": "bob"})),
        "messages[0].name",
        "unknown field",
    );
    expect_400(
        &with_message(
            0,
            json!({"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "x"}}]}),
        ),
        "messages[0].content[0].type",
        "not supported by switchyard",
    );
    expect_400(
        &with_message(
            1,
            json!({"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}]}),
        ),
        "messages[1].content[0].type",
        "not supported by switchyard",
    );
    expect_400(
        &with_message(
            0,
            json!({"role": "user", "content": [{"type": "hologram"}]}),
        ),
        "messages[0].content[0].type",
        "unknown content block type",
    );
    expect_400(
        &with_message(
            0,
            json!({"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}),
        ),
        "messages[0].content[0].type",
        "belong in assistant messages",
    );
    expect_400(
        &with_message(
            1,
            json!({"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}),
        ),
        "messages[1].content[0].type",
        "belong in user messages",
    );
    expect_400(
        &with_message(
            1,
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}),
        ),
        "messages[1].content[0].input",
        "must be an object",
    );
    expect_400(
        &with_message(
            2,
            json!({"role": "user", "content": [{"type": "tool_result", "content": "x"}]}),
        ),
        "messages[2].content[0].tool_use_id",
        "is required",
    );
    expect_400(
        &with_message(
            2,
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                                              "content": [{"type": "document"}]}]}),
        ),
        "messages[2].content[0].content[0].type",
        "not supported by switchyard",
    );
    expect_400(
        &with_message(
            0,
            json!({"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}),
        ),
        "messages[0].content[0].source.type",
        "not supported by switchyard",
    );
    expect_400(
        &with_message(
            0,
            json!({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}),
        ),
        "messages[0].content[0].source.media_type",
        "is required",
    );
}

fn response(text: &str, calls: Vec<ToolCall>, reason: FinishReason) -> ChatResponse {
    ChatResponse {
        id: "msg_01XYZ".into(),
        model: "claude-3-5-haiku-20241022".into(),
        text: text.into(),
        tool_calls: calls,
        finish_reason: reason,
        usage: Usage {
            input_tokens: 100,
            output_tokens: 25,
            cached_input_tokens: 60,
            cache_write_input_tokens: 0,
            estimated: false,
        },
    }
}

#[test]
fn text_response_renders_a_message_field_by_field() {
    let v: Value = serde_json::from_slice(&render_response(
        &response("Hi!", vec![], FinishReason::Stop),
        "fast",
    ))
    .unwrap();
    assert_eq!(v["id"], "msg_01XYZ");
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "fast");
    assert_eq!(v["content"], json!([{"type": "text", "text": "Hi!"}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
    // Anthropic's input_tokens excludes cache reads.
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 40, "output_tokens": 25, "cache_read_input_tokens": 60})
    );
}

#[test]
fn tool_use_response_parses_arguments_and_survives_invalid_json() {
    let calls = vec![
        ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
        },
        ToolCall {
            id: String::new(),
            name: "broken".into(),
            arguments: "{\"city\":".into(),
        },
        ToolCall {
            id: "call_3".into(),
            name: "no_args".into(),
            arguments: String::new(),
        },
    ];
    let mut resp = response("", calls, FinishReason::ToolCalls);
    resp.id = "chatcmpl-9".into();
    let v: Value = serde_json::from_slice(&render_response(&resp, "smart")).unwrap();
    assert_eq!(v["id"], "msg_chatcmpl-9");
    let content = v["content"].as_array().unwrap();
    assert_eq!(content.len(), 3);
    assert_eq!(
        content[0],
        json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}})
    );
    assert!(content[1]["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(content[1]["input"], json!({}));
    assert_eq!(content[2]["input"], json!({}));
    assert_eq!(v["stop_reason"], "tool_use");
}

#[test]
fn stop_reasons_map() {
    assert_eq!(stop_reason(FinishReason::Length), "max_tokens");
    assert_eq!(stop_reason(FinishReason::StopSequence), "stop_sequence");
    assert_eq!(stop_reason(FinishReason::ContentFilter), "refusal");
    let v: Value = serde_json::from_slice(&render_response(
        &response("a", vec![], FinishReason::Length),
        "m",
    ))
    .unwrap();
    assert_eq!(v["stop_reason"], "max_tokens");
}

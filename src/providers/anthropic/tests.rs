use super::*;
use crate::canonical::Tool;

const KEY: &str = "sk-ant-api03-SECRET";

fn wire() -> AnthropicWire {
    AnthropicWire::new(Secret::new(KEY.to_string()), None)
}

fn body_of(req: &ChatRequest) -> Value {
    let wire_req = wire()
        .chat_request(req, &Target::new("claude-3-5-haiku-20241022"), false)
        .unwrap();
    serde_json::from_slice(&wire_req.body).unwrap()
}

fn tool_result(id: &str, text: &str, is_error: bool) -> Message {
    let mut m = Message::text(Role::Tool, text);
    m.tool_call_id = Some(id.into());
    m.is_error = is_error;
    m
}

fn agent_request() -> ChatRequest {
    let mut assistant = Message::text(Role::Assistant, "Let me check both.");
    assistant.tool_calls = vec![
        ToolCall {
            id: "toolu_01".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        },
        ToolCall {
            id: "toolu_02".into(),
            name: "get_time".into(),
            arguments: String::new(),
        },
    ];
    let mut photo = Message::text(Role::User, "and this?");
    photo.content.push(ContentPart::Image {
        source: ImageSource::Url {
            url: "data:image/png;base64,iVBORw0KGgo=".into(),
        },
        detail: None,
    });
    photo.content.push(ContentPart::Image {
        source: ImageSource::Url {
            url: "https://example.com/cat.jpg".into(),
        },
        detail: None,
    });
    ChatRequest {
        model: "claude-haiku".into(),
        messages: vec![
            Message::text(Role::System, "You are terse."),
            Message::text(Role::System, "Answer in French."),
            Message::text(Role::User, "Weather and time in Paris?"),
            assistant,
            tool_result("toolu_01", r#"{"temp_c":21}"#, false),
            tool_result("toolu_02", "clock offline", true),
            photo,
        ],
        tools: vec![Tool {
            name: "get_weather".into(),
            description: Some("Current weather".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }],
        tool_choice: Some(ToolChoice::Required),
        parallel_tool_calls: Some(false),
        temperature: Some(0.5),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec!["\n\nHuman:".into()],
        end_user: Some("user-42".into()),
        ..ChatRequest::default()
    }
}

#[test]
fn request_translates_system_turns_tools_and_sampling() {
    let body = body_of(&agent_request());
    assert_eq!(body["model"], "claude-3-5-haiku-20241022");
    assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
    assert_eq!(body["system"], "You are terse.\n\nAnswer in French.");
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["top_k"], 40);
    assert_eq!(body["stop_sequences"], json!(["\n\nHuman:"]));
    assert_eq!(body["metadata"], json!({"user_id": "user-42"}));
    assert_eq!(
        body["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        body["tools"][0],
        json!({"name": "get_weather", "description": "Current weather",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}})
    );
    assert!(body.get("stream").is_none());

    let messages = body["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        3,
        "tool results and the next user message share one turn"
    );
    assert_eq!(
        messages[0],
        json!({"role": "user", "content": [{"type": "text", "text": "Weather and time in Paris?"}]})
    );
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(
        messages[1]["content"][0],
        json!({"type": "text", "text": "Let me check both."})
    );
    assert_eq!(
        messages[1]["content"][1],
        json!({"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}})
    );
    assert_eq!(messages[1]["content"][2]["input"], json!({}));
    let user = messages[2]["content"].as_array().unwrap();
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(
        user[0],
        json!({"type": "tool_result", "tool_use_id": "toolu_01", "content": "{\"temp_c\":21}"})
    );
    assert_eq!(
        user[1],
        json!({"type": "tool_result", "tool_use_id": "toolu_02", "content": "clock offline", "is_error": true})
    );
    assert_eq!(user[2], json!({"type": "text", "text": "and this?"}));
    assert_eq!(
        user[3],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        user[4],
        json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
    );
}

#[test]
fn headers_carry_key_and_version_and_the_body_never_the_key() {
    let req = wire()
        .chat_request(&agent_request(), &Target::new("claude"), true)
        .unwrap();
    assert_eq!(req.path, "/messages");
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_str().unwrap().to_string())
    };
    assert_eq!(header("x-api-key").as_deref(), Some(KEY));
    assert_eq!(
        header("anthropic-version").as_deref(),
        Some(DEFAULT_VERSION)
    );
    assert!(!String::from_utf8_lossy(&req.body).contains(KEY));
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["stream"], true);

    let custom = AnthropicWire::new(Secret::new(KEY.into()), Some("2024-10-22".into()));
    let req = custom
        .chat_request(&agent_request(), &Target::new("claude"), false)
        .unwrap();
    assert!(req
        .headers
        .iter()
        .any(|(k, v)| k == "anthropic-version" && v == "2024-10-22"));
}

#[test]
fn request_max_tokens_overrides_the_default() {
    let req = ChatRequest {
        max_tokens: Some(100),
        ..agent_request()
    };
    assert_eq!(body_of(&req)["max_tokens"], 100);
}

#[test]
fn tool_choice_maps_every_variant() {
    let choice = |tool_choice, parallel| {
        let req = ChatRequest {
            tool_choice,
            parallel_tool_calls: parallel,
            ..agent_request()
        };
        body_of(&req).get("tool_choice").cloned()
    };
    assert_eq!(
        choice(Some(ToolChoice::Auto), None),
        Some(json!({"type": "auto"}))
    );
    assert_eq!(
        choice(Some(ToolChoice::None), Some(false)),
        Some(json!({"type": "none"}))
    );
    assert_eq!(
        choice(Some(ToolChoice::Required), None),
        Some(json!({"type": "any"}))
    );
    assert_eq!(
        choice(Some(ToolChoice::Tool("f".into())), None),
        Some(json!({"type": "tool", "name": "f"}))
    );
    assert_eq!(
        choice(None, Some(false)),
        Some(json!({"type": "auto", "disable_parallel_tool_use": true}))
    );
    assert_eq!(choice(None, Some(true)), None);
}

#[test]
fn consecutive_user_messages_merge_into_one_turn() {
    let req = ChatRequest {
        messages: vec![
            Message::text(Role::User, "one"),
            Message::text(Role::User, "two"),
        ],
        ..ChatRequest::default()
    };
    let body = body_of(&req);
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(body["messages"][0]["content"][1]["text"], "two");
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    let cases: Vec<(&str, ChatRequest)> = vec![
        (
            "response_format",
            ChatRequest {
                response_format: Some(ResponseFormat::JsonObject),
                ..agent_request()
            },
        ),
        (
            "response_format",
            ChatRequest {
                response_format: Some(ResponseFormat::JsonSchema {
                    name: "x".into(),
                    schema: json!({}),
                    strict: None,
                }),
                ..agent_request()
            },
        ),
        (
            "seed",
            ChatRequest {
                seed: Some(1),
                ..agent_request()
            },
        ),
        (
            "presence_penalty",
            ChatRequest {
                presence_penalty: Some(0.5),
                ..agent_request()
            },
        ),
        (
            "frequency_penalty",
            ChatRequest {
                frequency_penalty: Some(-0.5),
                ..agent_request()
            },
        ),
    ];
    for (field, req) in cases {
        let err = wire()
            .chat_request(&req, &Target::new("claude"), false)
            .unwrap_err();
        assert_eq!(err.status(), 400, "{field}");
        assert_eq!(err.param.as_deref(), Some(field));
        assert!(
            err.message
                .contains("not supported by provider kind anthropic"),
            "{}",
            err.message
        );
    }
    let harmless = ChatRequest {
        response_format: Some(ResponseFormat::Text),
        presence_penalty: Some(0.0),
        frequency_penalty: Some(0.0),
        ..agent_request()
    };
    assert!(wire()
        .chat_request(&harmless, &Target::new("claude"), false)
        .is_ok());
}

#[test]
fn invalid_tool_arguments_are_refused_naming_the_message() {
    let mut req = agent_request();
    req.messages[3].tool_calls[0].arguments = "{\"city\":".into();
    let err = wire()
        .chat_request(&req, &Target::new("claude"), false)
        .unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(err.param.as_deref(), Some("messages[3].tool_calls"));
    req.messages[3].tool_calls[0].arguments = "[1,2]".into();
    let err = wire()
        .chat_request(&req, &Target::new("claude"), false)
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages[3].tool_calls"));
}

#[test]
fn images_in_system_and_tool_messages_without_ids_are_refused() {
    let mut system = Message::text(Role::System, "see");
    system.content.push(ContentPart::Image {
        source: ImageSource::Url {
            url: "https://example.com/a.png".into(),
        },
        detail: None,
    });
    let err = wire()
        .chat_request(
            &ChatRequest {
                messages: vec![system],
                ..ChatRequest::default()
            },
            &Target::new("claude"),
            false,
        )
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages[0].content"));

    let err = wire()
        .chat_request(
            &ChatRequest {
                messages: vec![Message::text(Role::Tool, "x")],
                ..ChatRequest::default()
            },
            &Target::new("claude"),
            false,
        )
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages[0].tool_call_id"));
}

#[test]
fn parses_text_tool_use_and_cache_usage() {
    let body = br#"{
      "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
      "type": "message",
      "role": "assistant",
      "model": "claude-3-5-sonnet-20241022",
      "content": [
        {"type": "text", "text": "I'll look that up."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA", "unit": "celsius"}}
      ],
      "stop_reason": "tool_use",
      "stop_sequence": null,
      "usage": {"input_tokens": 472, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000, "output_tokens": 89}
    }"#;
    let response = wire().parse_chat(body).unwrap();
    assert_eq!(response.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(response.model, "claude-3-5-sonnet-20241022");
    assert_eq!(response.text, "I'll look that up.");
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(response.tool_calls.len(), 1);
    assert_eq!(response.tool_calls[0].id, "toolu_01A09q90qw90lq917835lq9");
    let args: Value = serde_json::from_str(&response.tool_calls[0].arguments).unwrap();
    assert_eq!(
        args,
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 2572,
            output_tokens: 89,
            cached_input_tokens: 2000,
            cache_write_input_tokens: 100,
            estimated: false
        }
    );
}

#[test]
fn text_blocks_concatenate_and_unknown_blocks_are_skipped() {
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4",
      "content":[{"type":"thinking","thinking":"hmm","signature":"x"},{"type":"text","text":"Hello, "},{"type":"text","text":"world"}],
      "stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":3}}"#;
    let response = wire().parse_chat(body).unwrap();
    assert_eq!(response.text, "Hello, world");
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.usage.input_tokens, 10);
}

#[test]
fn stop_reasons_map_to_canonical() {
    for (reason, canonical) in [
        ("end_turn", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("stop_sequence", FinishReason::StopSequence),
        ("tool_use", FinishReason::ToolCalls),
        ("refusal", FinishReason::ContentFilter),
        ("pause_turn", FinishReason::Stop),
    ] {
        assert_eq!(map_stop(reason), canonical, "{reason}");
    }
}

#[test]
fn garbage_bodies_and_error_bodies_are_bad_gateway() {
    for body in [
        &b"<html>oops</html>"[..],
        b"",
        b"{\"content\": 3}",
        b"{\"id\":\"x\"}",
        b"null",
    ] {
        let err = wire().parse_chat(body).unwrap_err();
        assert_eq!(err.status(), 502, "{}", String::from_utf8_lossy(body));
    }
    let err = wire()
        .parse_chat(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.message.contains("Overloaded"));
}

fn decode_all(frames: &[(&str, &str)]) -> Result<Vec<StreamEvent>, GatewayError> {
    let mut decoder = wire().stream_decoder("claude-3-5-haiku");
    let mut out = Vec::new();
    for (event, data) in frames {
        decoder.decode(
            &SseEvent {
                event: (*event).into(),
                data: (*data).into(),
            },
            &mut out,
        )?;
    }
    decoder.finish(&mut out)?;
    Ok(out)
}

#[test]
fn decodes_a_text_and_tool_use_stream_event_by_event() {
    let events = decode_all(&[
        ("message_start", r#"{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","stop_sequence":null,"usage":{"input_tokens":472,"cache_read_input_tokens":100,"output_tokens":2},"content":[],"stop_reason":null}}"#),
        ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
        ("ping", r#"{"type": "ping"}"#),
        ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, let's check"}}"#),
        ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the weather."}}"#),
        ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
        ("content_block_start", r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#),
        ("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#),
        ("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}"#),
        ("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco\"}"}}"#),
        ("content_block_stop", r#"{"type":"content_block_stop","index":1}"#),
        ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "msg_014p7gG3wDgGV9EUtLvnow3U".into(),
                model: "claude-3-5-haiku-20241022".into()
            },
            StreamEvent::TextDelta {
                text: "Okay, let's check".into()
            },
            StreamEvent::TextDelta {
                text: " the weather.".into()
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                name: "get_weather".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"location\":".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: " \"San Francisco\"}".into()
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 572,
                    output_tokens: 89,
                    cached_input_tokens: 100,
                    cache_write_input_tokens: 0,
                    estimated: false
                }
            },
        ]
    );
}

#[test]
fn an_error_event_fails_the_stream() {
    let err = decode_all(&[
        ("message_start", r#"{"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":5,"output_tokens":1}}}"#),
        ("error", r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#),
    ])
    .unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(
        err.message.contains("overloaded_error") && err.message.contains("Overloaded"),
        "{}",
        err.message
    );
}

#[test]
fn a_stream_without_message_stop_ended_early() {
    let err = decode_all(&[
        ("message_start", r#"{"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":5}}}"#),
        ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#),
    ])
    .unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.message.contains("ended early"));
}

#[test]
fn a_garbage_stream_frame_is_bad_gateway() {
    let err = decode_all(&[("message_start", "{{{")]).unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.message.contains("unparseable"));
}

proptest::proptest! {
    #[test]
    fn truncated_or_arbitrary_frames_never_panic(cut in 0usize..300, junk in "\\PC{0,40}") {
        let frame = r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}"#;
        let cut = (0..=cut.min(frame.len())).rev().find(|i| frame.is_char_boundary(*i)).unwrap_or(0);
        let _ = decode_all(&[("content_block_start", &frame[..cut]), ("message_delta", &junk)]);
        let _ = wire().parse_chat(&frame.as_bytes()[..cut]);
        let _ = wire().parse_chat(junk.as_bytes());
    }
}

fn max_tokens_sent(asked: Option<u32>, limit: Option<u32>) -> Value {
    let req = ChatRequest {
        messages: vec![Message::text(Role::User, "hi")],
        max_tokens: asked,
        ..ChatRequest::default()
    };
    let target = Target::new("claude").with_max_output_tokens(limit);
    let wire_req = wire().chat_request(&req, &target, false).unwrap();
    serde_json::from_slice::<Value>(&wire_req.body).unwrap()["max_tokens"].clone()
}

#[test]
fn max_tokens_defaults_to_the_models_max_output_tokens() {
    assert_eq!(max_tokens_sent(None, Some(1024)), 1024);
    assert_eq!(max_tokens_sent(None, None), DEFAULT_MAX_TOKENS);
}

#[test]
fn max_tokens_above_the_models_max_output_tokens_is_capped() {
    assert_eq!(max_tokens_sent(Some(100_000), Some(8192)), 8192);
    assert_eq!(max_tokens_sent(Some(500), Some(8192)), 500);
    assert_eq!(max_tokens_sent(Some(100_000), None), 100_000);
}

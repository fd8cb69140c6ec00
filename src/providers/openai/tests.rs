use super::*;
use crate::canonical::Tool;

const KEY: &str = "sk-test-SECRET-1234";

fn wire() -> OpenAiWire {
    OpenAiWire::new(Secret::new(KEY.to_string()))
}

fn body_json(req: &WireRequest) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

fn user(text: &str) -> Message {
    Message::text(Role::User, text)
}

fn agent_request() -> ChatRequest {
    let mut assistant = Message::text(Role::Assistant, "");
    assistant.content.clear();
    assistant.tool_calls.push(ToolCall {
        id: "call_abc".into(),
        name: "get_weather".into(),
        arguments: r#"{"city":"Paris"}"#.into(),
    });
    let mut tool = Message::text(Role::Tool, r#"{"temp_c":21}"#);
    tool.tool_call_id = Some("call_abc".into());
    let mut look = user("what is in this picture?");
    look.content.push(ContentPart::Image {
        source: ImageSource::Url {
            url: "https://example.com/cat.png".into(),
        },
        detail: Some("low".into()),
    });
    look.content.push(ContentPart::Image {
        source: ImageSource::Base64 {
            media_type: "image/png".into(),
            data: "iVBORw0KGgo=".into(),
        },
        detail: None,
    });
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::text(Role::System, "You are terse."),
            user("Weather in Paris?"),
            assistant,
            tool,
            look,
        ],
        tools: vec![Tool {
            name: "get_weather".into(),
            description: Some("Current weather".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }],
        tool_choice: Some(ToolChoice::Tool("get_weather".into())),
        parallel_tool_calls: Some(false),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object"}),
            strict: Some(true),
        }),
        temperature: Some(0.2),
        top_p: Some(0.9),
        max_tokens: Some(256),
        stop: vec!["END".into()],
        seed: Some(7),
        presence_penalty: Some(0.1),
        frequency_penalty: Some(0.3),
        stream: true,
        end_user: Some("user-42".into()),
        ..ChatRequest::default()
    }
}

#[test]
fn request_translates_every_field_and_asks_for_stream_usage() {
    let req = wire()
        .chat_request(
            &agent_request(),
            &Target::new("gpt-4o-mini-2024-07-18"),
            true,
        )
        .unwrap();
    assert_eq!(req.path, "/chat/completions");
    let body = body_json(&req);
    assert_eq!(body["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["max_tokens"], 256);
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["stop"], json!(["END"]));
    assert_eq!(body["seed"], 7);
    assert_eq!(body["presence_penalty"], 0.1);
    assert_eq!(body["frequency_penalty"], 0.3);
    assert_eq!(body["user"], "user-42");
    assert_eq!(body["parallel_tool_calls"], false);
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["name"], "answer");
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        body["tools"][0]["function"]["description"],
        "Current weather"
    );
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );

    let messages = body["messages"].as_array().unwrap();
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": "You are terse."})
    );
    assert_eq!(
        messages[1],
        json!({"role": "user", "content": "Weather in Paris?"})
    );
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["content"], Value::Null);
    assert_eq!(messages[2]["tool_calls"][0]["id"], "call_abc");
    assert_eq!(
        messages[2]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(
        messages[3],
        json!({"role": "tool", "content": "{\"temp_c\":21}", "tool_call_id": "call_abc"})
    );
    let parts = messages[4]["content"].as_array().unwrap();
    assert_eq!(
        parts[0],
        json!({"type": "text", "text": "what is in this picture?"})
    );
    assert_eq!(
        parts[1]["image_url"],
        json!({"url": "https://example.com/cat.png", "detail": "low"})
    );
    assert_eq!(
        parts[2]["image_url"],
        json!({"url": "data:image/png;base64,iVBORw0KGgo="})
    );
}

#[test]
fn api_key_goes_only_into_the_authorization_header() {
    let req = wire()
        .chat_request(&agent_request(), &Target::new("gpt-4o"), false)
        .unwrap();
    assert_eq!(req.headers.len(), 1);
    assert_eq!(req.headers[0].0, http::header::AUTHORIZATION);
    assert_eq!(req.headers[0].1.to_str().unwrap(), format!("Bearer {KEY}"));
    assert!(req.headers[0].1.is_sensitive());
    assert!(!String::from_utf8_lossy(&req.body).contains(KEY));
    assert!(!req.path.contains(KEY));
}

#[test]
fn non_streaming_request_has_no_stream_fields() {
    let req = wire()
        .chat_request(&agent_request(), &Target::new("gpt-4o"), false)
        .unwrap();
    let body = body_json(&req);
    assert!(body.get("stream").is_none());
    assert!(body.get("stream_options").is_none());
}

#[test]
fn empty_key_sends_no_authorization_header() {
    let wire = OpenAiWire::new(Secret::new(String::new()));
    let req = wire
        .chat_request(&agent_request(), &Target::new("llama3"), false)
        .unwrap();
    assert!(req.headers.is_empty());
}

#[test]
fn top_k_is_refused_naming_the_field() {
    let mut req = agent_request();
    req.top_k = Some(40);
    let err = wire()
        .chat_request(&req, &Target::new("gpt-4o"), false)
        .unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(err.param.as_deref(), Some("top_k"));
    assert!(err
        .message
        .contains("not supported by provider kind openai"));
}

#[test]
fn image_in_a_system_message_is_refused() {
    let mut system = Message::text(Role::System, "look");
    system.content.push(ContentPart::Image {
        source: ImageSource::Url {
            url: "https://example.com/x.png".into(),
        },
        detail: None,
    });
    let req = ChatRequest {
        messages: vec![system],
        ..ChatRequest::default()
    };
    let err = wire()
        .chat_request(&req, &Target::new("gpt-4o"), false)
        .unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(err.param.as_deref(), Some("messages[0].content"));
}

#[test]
fn tool_message_without_call_id_is_refused() {
    let req = ChatRequest {
        messages: vec![Message::text(Role::Tool, "42")],
        ..ChatRequest::default()
    };
    let err = wire()
        .chat_request(&req, &Target::new("gpt-4o"), false)
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages[0].tool_call_id"));
}

#[test]
fn parses_a_text_response_with_cached_usage() {
    let body = br#"{
      "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
      "object": "chat.completion",
      "created": 1741570283,
      "model": "gpt-4o-2024-08-06",
      "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "The sky is blue.", "refusal": null, "annotations": []},
        "logprobs": null,
        "finish_reason": "stop"
      }],
      "usage": {
        "prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
      },
      "service_tier": "default",
      "system_fingerprint": "fp_fc9f1d7035"
    }"#;
    let response = wire().parse_chat(body).unwrap();
    assert_eq!(response.id, "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG");
    assert_eq!(response.model, "gpt-4o-2024-08-06");
    assert_eq!(response.text, "The sky is blue.");
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 1117,
            output_tokens: 46,
            cached_input_tokens: 1024,
            cache_write_input_tokens: 0,
            estimated: false
        }
    );
}

#[test]
fn parses_tool_calls_and_their_finish_reason() {
    let body = br#"{
      "id": "chatcmpl-tool", "object": "chat.completion", "model": "gpt-4o-mini",
      "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": null,
        "tool_calls": [
          {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
          {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
        ]}}],
      "usage": {"prompt_tokens": 80, "completion_tokens": 30, "total_tokens": 110}
    }"#;
    let response = wire().parse_chat(body).unwrap();
    assert_eq!(response.text, "");
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(response.tool_calls.len(), 2);
    assert_eq!(response.tool_calls[0].id, "call_1");
    assert_eq!(response.tool_calls[0].name, "get_weather");
    assert_eq!(response.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    assert_eq!(response.tool_calls[1].name, "get_time");
    assert_eq!(response.usage.cached_input_tokens, 0);
}

#[test]
fn finish_reasons_map_to_canonical() {
    for (wire_reason, canonical) in [
        ("stop", FinishReason::Stop),
        ("length", FinishReason::Length),
        ("tool_calls", FinishReason::ToolCalls),
        ("function_call", FinishReason::ToolCalls),
        ("content_filter", FinishReason::ContentFilter),
        ("something_new", FinishReason::Stop),
    ] {
        assert_eq!(map_finish(wire_reason), canonical, "{wire_reason}");
    }
}

#[test]
fn missing_usage_leaves_zero_counts_for_the_caller_to_estimate() {
    let body = br#"{"id":"x","model":"local","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
    let response = wire().parse_chat(body).unwrap();
    assert_eq!(response.usage, Usage::default());
}

#[test]
fn garbage_and_shapeless_bodies_are_bad_gateway() {
    for body in [
        &b"<html>502</html>"[..],
        b"",
        b"{\"choices\": 5}",
        b"{\"choices\": []}",
        b"[1,2]",
    ] {
        let err = wire().parse_chat(body).unwrap_err();
        assert_eq!(err.status(), 502, "{}", String::from_utf8_lossy(body));
        assert!(err.retryable());
    }
}

#[test]
fn an_error_object_in_a_success_body_is_bad_gateway() {
    let err = wire()
        .parse_chat(br#"{"error":{"message":"model overloaded","type":"server_error"}}"#)
        .unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.message.contains("model overloaded"));
}

fn decode_all(frames: &[&str]) -> Result<Vec<StreamEvent>, GatewayError> {
    let mut decoder = wire().stream_decoder("gpt-4o-mini");
    let mut out = Vec::new();
    for data in frames {
        decoder.decode(
            &SseEvent {
                event: String::new(),
                data: (*data).to_string(),
            },
            &mut out,
        )?;
    }
    decoder.finish(&mut out)?;
    Ok(out)
}

#[test]
fn decodes_a_text_stream_with_empty_choice_chunks_and_trailing_usage() {
    let events = decode_all(&[
        r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0}}}"#,
        "[DONE]",
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "chatcmpl-123".into(),
                model: "gpt-4o-mini-2024-07-18".into()
            },
            StreamEvent::TextDelta {
                text: "Hello".into()
            },
            StreamEvent::TextDelta {
                text: " world".into()
            },
            StreamEvent::Finish {
                reason: FinishReason::Stop
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 9,
                    output_tokens: 2,
                    cached_input_tokens: 0,
                    cache_write_input_tokens: 0,
                    estimated: false
                }
            },
        ]
    );
}

#[test]
fn decodes_parallel_tool_call_deltas() {
    let head = r#""id":"chatcmpl-t","object":"chat.completion.chunk","created":1,"model":"gpt-4o""#;
    let frames = [
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":null,"tool_calls":[{{"index":0,"id":"call_a","type":"function","function":{{"name":"get_weather","arguments":""}}}}]}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"{{\"city\":"}}}}]}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"\"Paris\"}}"}}}}]}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":1,"id":"call_b","type":"function","function":{{"name":"get_time","arguments":"{{}}"}}}}]}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{}},"finish_reason":"tool_calls"}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[],"usage":{{"prompt_tokens":50,"completion_tokens":20,"total_tokens":70}}}}"#
        ),
        "[DONE]".to_string(),
    ];
    let frames: Vec<&str> = frames.iter().map(String::as_str).collect();
    let events = decode_all(&frames).unwrap();
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "chatcmpl-t".into(),
                model: "gpt-4o".into()
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_a".into(),
                name: "get_weather".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\":".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "\"Paris\"}".into()
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "call_b".into(),
                name: "get_time".into()
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{}".into()
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 50,
                    output_tokens: 20,
                    cached_input_tokens: 0,
                    cache_write_input_tokens: 0,
                    estimated: false
                }
            },
        ]
    );
}

#[test]
fn a_tool_name_arriving_late_holds_back_the_start() {
    let events = decode_all(&[
        r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_x","function":{"arguments":"{\"a\""}}]}}]}"#,
        r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":":1}"}}]}}]}"#,
        r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        "[DONE]",
    ])
    .unwrap();
    assert_eq!(
        events[1],
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_x".into(),
            name: "f".into()
        }
    );
    assert_eq!(
        events[2],
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"a\":1}".into()
        }
    );
}

#[test]
fn an_error_frame_fails_the_stream_with_its_message() {
    let err = decode_all(&[
        r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
        r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error"}}"#,
    ])
    .unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.message.contains("The server had an error"));
}

#[test]
fn a_stream_cut_before_finish_is_an_error() {
    let err =
        decode_all(&[r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#])
            .unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.message.contains("ended early"));
}

#[test]
fn a_stream_without_done_but_with_finish_still_emits_usage() {
    let events = decode_all(&[
        r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
    ])
    .unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[2],
        StreamEvent::Finish {
            reason: FinishReason::Length
        }
    );
    assert!(matches!(events[3], StreamEvent::Usage { usage } if usage.input_tokens == 3));
}

#[test]
fn a_garbage_stream_frame_is_bad_gateway() {
    let err = decode_all(&["{not json"]).unwrap_err();
    assert_eq!(err.status(), 502);
}

#[test]
fn embeddings_request_and_response_keep_input_order() {
    let req = EmbeddingsRequest {
        model: "embed".into(),
        input: vec!["a".into(), "b".into()],
        dimensions: Some(256),
        end_user: None,
    };
    let wire_req = wire()
        .embeddings_request(&req, "text-embedding-3-small")
        .unwrap();
    assert_eq!(wire_req.path, "/embeddings");
    let body = body_json(&wire_req);
    assert_eq!(body["model"], "text-embedding-3-small");
    assert_eq!(body["input"], json!(["a", "b"]));
    assert_eq!(body["dimensions"], 256);
    assert!(!String::from_utf8_lossy(&wire_req.body).contains(KEY));

    let response = wire()
        .parse_embeddings(
            br#"{"object":"list","data":[
                {"object":"embedding","index":1,"embedding":[0.5,0.6]},
                {"object":"embedding","index":0,"embedding":[0.1,0.2]}],
              "model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}}"#,
        )
        .unwrap();
    assert_eq!(response.vectors, vec![vec![0.1, 0.2], vec![0.5, 0.6]]);
    assert_eq!(response.usage.input_tokens, 2);
    assert_eq!(response.model, "text-embedding-3-small");
    assert_eq!(wire().parse_embeddings(b"nope").unwrap_err().status(), 502);
}

#[test]
fn data_urls_split_into_media_type_and_payload() {
    assert_eq!(
        parse_data_url("data:image/png;base64,AAAA"),
        Some(("image/png", "AAAA"))
    );
    assert_eq!(
        parse_data_url("data:image/jpeg;name=x.jpg;base64,BB"),
        Some(("image/jpeg", "BB"))
    );
    assert_eq!(
        parse_data_url("data:;base64,CC"),
        Some(("application/octet-stream", "CC"))
    );
    assert_eq!(parse_data_url("data:text/plain,hello"), None);
    assert_eq!(parse_data_url("https://x/y.png"), None);
}

proptest::proptest! {
    #[test]
    fn truncated_or_arbitrary_frames_never_panic(cut in 0usize..400, junk in "\\PC{0,40}") {
        let frame = r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi","tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}"#;
        let cut = (0..=cut.min(frame.len())).rev().find(|i| frame.is_char_boundary(*i)).unwrap_or(0);
        let _ = decode_all(&[&frame[..cut], &junk, "[DONE]"]);
        let _ = wire().parse_chat(&frame.as_bytes()[..cut]);
        let _ = wire().parse_chat(junk.as_bytes());
    }
}

fn max_tokens_sent(asked: Option<u32>, limit: Option<u32>) -> Value {
    let req = ChatRequest {
        messages: vec![user("hi")],
        max_tokens: asked,
        ..ChatRequest::default()
    };
    let target = Target::new("gpt-4o").with_max_output_tokens(limit);
    body_json(&wire().chat_request(&req, &target, false).unwrap())["max_tokens"].clone()
}

#[test]
fn max_tokens_defaults_to_the_models_max_output_tokens() {
    assert_eq!(max_tokens_sent(None, Some(1024)), 1024);
    assert_eq!(max_tokens_sent(None, None), Value::Null);
}

#[test]
fn max_tokens_above_the_models_max_output_tokens_is_capped() {
    assert_eq!(max_tokens_sent(Some(100_000), Some(16_384)), 16_384);
    assert_eq!(max_tokens_sent(Some(500), Some(16_384)), 500);
}

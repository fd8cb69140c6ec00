use super::*;
use crate::canonical::Tool;

const KEY: &str = "AIzaSyD-SECRET-KEY";

fn wire() -> GeminiWire {
    GeminiWire::new(Secret::new(KEY.to_string()))
}

fn body_of(req: &ChatRequest) -> Value {
    let wire_req = wire()
        .chat_request(req, &Target::new("gemini-2.0-flash"), false)
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
    let mut assistant = Message::text(Role::Assistant, "Checking.");
    assistant.tool_calls = vec![
        ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        },
        ToolCall {
            id: "call_2".into(),
            name: "get_time".into(),
            arguments: String::new(),
        },
    ];
    let mut photo = Message::text(Role::User, "and these?");
    for source in [
        ImageSource::Base64 {
            media_type: "image/webp".into(),
            data: "UklGRg==".into(),
        },
        ImageSource::Url {
            url: "data:image/png;base64,iVBORw0KGgo=".into(),
        },
        ImageSource::Url {
            url: "gs://bucket/photos/cat.PNG".into(),
        },
        ImageSource::Url {
            url: "https://example.com/render?id=7".into(),
        },
    ] {
        photo.content.push(ContentPart::Image {
            source,
            detail: None,
        });
    }
    ChatRequest {
        model: "gemini-flash".into(),
        messages: vec![
            Message::text(Role::System, "You are terse."),
            Message::text(Role::User, "Weather and time in Paris?"),
            assistant,
            tool_result("call_1", r#"{"temp_c":21}"#, false),
            tool_result("call_2", "clock offline", true),
            photo,
        ],
        tools: vec![Tool {
            name: "get_weather".into(),
            description: Some("Current weather".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }],
        tool_choice: Some(ToolChoice::Tool("get_weather".into())),
        parallel_tool_calls: Some(false),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object", "properties": {"ok": {"type": "boolean"}}}),
            strict: None,
        }),
        temperature: Some(0.3),
        top_p: Some(0.8),
        top_k: Some(20),
        max_tokens: Some(512),
        stop: vec!["END".into()],
        seed: Some(42),
        presence_penalty: Some(0.1),
        frequency_penalty: Some(0.2),
        end_user: Some("user-42".into()),
        ..ChatRequest::default()
    }
}

#[test]
fn request_translates_contents_tools_and_generation_config() {
    let body = body_of(&agent_request());
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}]})
    );
    assert_eq!(
        body["tools"],
        json!([{"functionDeclarations": [{"name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}])
    );
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    assert_eq!(
        body["generationConfig"],
        json!({
            "temperature": 0.3, "topP": 0.8, "topK": 20, "maxOutputTokens": 512, "stopSequences": ["END"],
            "seed": 42, "presencePenalty": 0.1, "frequencyPenalty": 0.2,
            "responseMimeType": "application/json",
            "responseSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
        })
    );
    assert!(
        !body.to_string().contains("user-42"),
        "gemini has no end-user field"
    );

    let contents = body["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3);
    assert_eq!(
        contents[0],
        json!({"role": "user", "parts": [{"text": "Weather and time in Paris?"}]})
    );
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [
            {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_time", "args": {}}}
        ]})
    );
    let parts = contents[2]["parts"].as_array().unwrap();
    assert_eq!(contents[2]["role"], "user");
    assert_eq!(
        parts[0],
        json!({"functionResponse": {"name": "get_weather", "response": {"output": {"temp_c": 21}}}})
    );
    assert_eq!(
        parts[1],
        json!({"functionResponse": {"name": "get_time", "response": {"error": "clock offline"}}})
    );
    assert_eq!(parts[2], json!({"text": "and these?"}));
    assert_eq!(
        parts[3],
        json!({"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}})
    );
    assert_eq!(
        parts[4],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        parts[5],
        json!({"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/photos/cat.PNG"}})
    );
    assert_eq!(
        parts[6],
        json!({"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/render?id=7"}})
    );
}

#[test]
fn paths_choose_the_method_and_the_key_stays_in_its_header() {
    let plain = wire()
        .chat_request(&agent_request(), &Target::new("gemini-2.0-flash"), false)
        .unwrap();
    assert_eq!(plain.path, "/models/gemini-2.0-flash:generateContent");
    let streamed = wire()
        .chat_request(
            &agent_request(),
            &Target::new("models/gemini-2.0-flash"),
            true,
        )
        .unwrap();
    assert_eq!(
        streamed.path,
        "/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
    for req in [&plain, &streamed] {
        assert_eq!(req.headers.len(), 1);
        assert_eq!(req.headers[0].0, "x-goog-api-key");
        assert_eq!(req.headers[0].1, KEY);
        assert!(!req.path.contains(KEY) && !req.path.contains("key="));
        assert!(!String::from_utf8_lossy(&req.body).contains(KEY));
    }
}

#[test]
fn tool_choice_maps_to_function_calling_modes() {
    let mode = |choice| {
        let req = ChatRequest {
            tool_choice: Some(choice),
            ..agent_request()
        };
        body_of(&req)["toolConfig"]["functionCallingConfig"].clone()
    };
    assert_eq!(mode(ToolChoice::Auto), json!({"mode": "AUTO"}));
    assert_eq!(mode(ToolChoice::None), json!({"mode": "NONE"}));
    assert_eq!(mode(ToolChoice::Required), json!({"mode": "ANY"}));
}

#[test]
fn a_plain_request_sends_no_empty_sections() {
    let req = ChatRequest {
        messages: vec![Message::text(Role::User, "hi")],
        ..ChatRequest::default()
    };
    let body = body_of(&req);
    assert_eq!(
        body,
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    );
}

#[test]
fn json_object_format_sets_only_the_mime_type() {
    let req = ChatRequest {
        messages: vec![Message::text(Role::User, "hi")],
        response_format: Some(ResponseFormat::JsonObject),
        ..ChatRequest::default()
    };
    assert_eq!(
        body_of(&req)["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
}

#[test]
fn refusals_name_the_offending_field() {
    let mut unknown_id = agent_request();
    unknown_id.messages[3].tool_call_id = Some("call_missing".into());
    let mut bad_args = agent_request();
    bad_args.messages[2].tool_calls[0].arguments = "{oops".into();
    let mut system_image = agent_request();
    system_image.messages[0].content.push(ContentPart::Image {
        source: ImageSource::Url {
            url: "https://example.com/a.png".into(),
        },
        detail: None,
    });
    let mut ftp_image = agent_request();
    ftp_image.messages[5].content.push(ContentPart::Image {
        source: ImageSource::Url {
            url: "ftp://example.com/a.png".into(),
        },
        detail: None,
    });
    let big_seed = ChatRequest {
        seed: Some(i64::MAX),
        ..agent_request()
    };
    let mut no_id = agent_request();
    no_id.messages[3].tool_call_id = None;
    for (req, param) in [
        (unknown_id, "messages[3].tool_call_id"),
        (bad_args, "messages[2].tool_calls"),
        (system_image, "messages[0].content"),
        (ftp_image, "messages[5].content"),
        (big_seed, "seed"),
        (no_id, "messages[3].tool_call_id"),
    ] {
        let err = wire()
            .chat_request(&req, &Target::new("gemini-2.0-flash"), false)
            .unwrap_err();
        assert_eq!(err.status(), 400, "{param}");
        assert_eq!(err.param.as_deref(), Some(param));
    }
}

#[test]
fn parses_text_with_usage_and_skips_thoughts() {
    let body = br#"{
      "candidates": [{
        "content": {"parts": [{"text": "thinking...", "thought": true}, {"text": "The sky "}, {"text": "is blue."}], "role": "model"},
        "finishReason": "STOP", "index": 0,
        "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
      }],
      "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 8, "totalTokenCount": 140,
                        "cachedContentTokenCount": 100, "thoughtsTokenCount": 12,
                        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}]},
      "modelVersion": "gemini-2.5-flash",
      "responseId": "mXu6aPyWAuOWz7IPgOeFkAQ"
    }"#;
    let response = wire().parse_chat(body).unwrap();
    assert_eq!(response.id, "mXu6aPyWAuOWz7IPgOeFkAQ");
    assert_eq!(response.model, "gemini-2.5-flash");
    assert_eq!(response.text, "The sky is blue.");
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 120,
            output_tokens: 20,
            cached_input_tokens: 100,
            cache_write_input_tokens: 0,
            estimated: false
        }
    );
}

#[test]
fn parses_function_calls_with_generated_unique_ids() {
    let body = br#"{
      "candidates": [{"content": {"role": "model", "parts": [
          {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
          {"functionCall": {"name": "get_time"}}
        ]}, "finishReason": "STOP", "index": 0}],
      "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 10, "totalTokenCount": 60},
      "modelVersion": "gemini-2.0-flash"
    }"#;
    let response = wire().parse_chat(body).unwrap();
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(response.tool_calls.len(), 2);
    assert_eq!(response.tool_calls[0].name, "get_weather");
    assert_eq!(response.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    assert_eq!(response.tool_calls[1].arguments, "{}");
    assert!(response.tool_calls[0].id.starts_with("call_"));
    assert_ne!(response.tool_calls[0].id, response.tool_calls[1].id);
    assert!(
        response.id.starts_with("gen-"),
        "no responseId: a generated one"
    );
}

#[test]
fn finish_reasons_map_to_canonical() {
    for (reason, canonical) in [
        ("STOP", FinishReason::Stop),
        ("MAX_TOKENS", FinishReason::Length),
        ("SAFETY", FinishReason::ContentFilter),
        ("RECITATION", FinishReason::ContentFilter),
        ("BLOCKLIST", FinishReason::ContentFilter),
        ("PROHIBITED_CONTENT", FinishReason::ContentFilter),
        ("SPII", FinishReason::ContentFilter),
        ("OTHER", FinishReason::Stop),
    ] {
        assert_eq!(map_finish(reason, false), canonical, "{reason}");
    }
    assert_eq!(map_finish("STOP", true), FinishReason::ToolCalls);
}

#[test]
fn a_blocked_prompt_is_an_empty_content_filtered_answer() {
    let body = br#"{"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                    "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.0-flash"}"#;
    let response = wire().parse_chat(body).unwrap();
    assert_eq!(response.text, "");
    assert_eq!(response.finish_reason, FinishReason::ContentFilter);
    assert_eq!(response.usage.input_tokens, 9);
}

#[test]
fn garbage_bodies_and_error_bodies_are_bad_gateway() {
    for body in [&b"<html>"[..], b"", b"{\"candidates\": {}}", b"[]"] {
        let err = wire().parse_chat(body).unwrap_err();
        assert_eq!(err.status(), 502, "{}", String::from_utf8_lossy(body));
    }
    let err = wire()
        .parse_chat(br#"{"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}"#)
        .unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.message.contains("Internal error encountered."));
}

fn decode_all(frames: &[&str]) -> Result<Vec<StreamEvent>, GatewayError> {
    let mut decoder = wire().stream_decoder("models/gemini-2.0-flash");
    let mut out = Vec::new();
    for data in frames {
        decoder.decode(
            &SseEvent {
                event: String::new(),
                data: (*data).into(),
            },
            &mut out,
        )?;
    }
    decoder.finish(&mut out)?;
    Ok(out)
}

#[test]
fn decodes_a_text_stream_with_usage_once_after_finish() {
    let events = decode_all(&[
        r#"{"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-2.0-flash","responseId": "r1"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": " sky is blue."}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-2.0-flash","responseId": "r1"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": ""}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 6,"totalTokenCount": 14},"modelVersion": "gemini-2.0-flash","responseId": "r1"}"#,
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "r1".into(),
                model: "gemini-2.0-flash".into()
            },
            StreamEvent::TextDelta { text: "The".into() },
            StreamEvent::TextDelta {
                text: " sky is blue.".into()
            },
            StreamEvent::Finish {
                reason: FinishReason::Stop
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 8,
                    output_tokens: 6,
                    cached_input_tokens: 0,
                    cache_write_input_tokens: 0,
                    estimated: false
                }
            },
        ]
    );
}

#[test]
fn decodes_function_calls_as_start_plus_full_arguments() {
    let events = decode_all(&[
        r#"{"candidates": [{"content": {"parts": [{"text": "Let me check."}],"role": "model"},"index": 0}]}"#,
        r#"{"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather","args": {"city": "Paris"}}},{"functionCall": {"id": "fc-9","name": "get_time","args": {}}}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 40,"candidatesTokenCount": 12,"totalTokenCount": 52}}"#,
    ])
    .unwrap();
    assert_eq!(events.len(), 8);
    assert!(matches!(&events[0], StreamEvent::Start { model, .. } if model == "gemini-2.0-flash"));
    assert_eq!(
        events[1],
        StreamEvent::TextDelta {
            text: "Let me check.".into()
        }
    );
    assert!(
        matches!(&events[2], StreamEvent::ToolCallStart { index: 0, id, name } if id.starts_with("call_") && name == "get_weather")
    );
    assert_eq!(
        events[3],
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: r#"{"city":"Paris"}"#.into()
        }
    );
    assert_eq!(
        events[4],
        StreamEvent::ToolCallStart {
            index: 1,
            id: "fc-9".into(),
            name: "get_time".into()
        }
    );
    assert_eq!(
        events[5],
        StreamEvent::ToolCallDelta {
            index: 1,
            arguments: "{}".into()
        }
    );
    assert_eq!(
        events[6],
        StreamEvent::Finish {
            reason: FinishReason::ToolCalls
        }
    );
    assert!(
        matches!(events[7], StreamEvent::Usage { usage } if usage.input_tokens == 40 && usage.output_tokens == 12)
    );
}

#[test]
fn a_blocked_prompt_stream_finishes_with_content_filter() {
    let events = decode_all(&[r#"{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},"usageMetadata": {"promptTokenCount": 5}}"#]).unwrap();
    assert_eq!(
        events[1],
        StreamEvent::Finish {
            reason: FinishReason::ContentFilter
        }
    );
    assert!(matches!(events[2], StreamEvent::Usage { .. }));
}

#[test]
fn an_error_frame_fails_the_stream() {
    let err = decode_all(&[
        r#"{"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}"#,
        r#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#,
    ])
    .unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.message.contains("overloaded"));
}

#[test]
fn a_stream_without_finish_reason_ended_early() {
    let err =
        decode_all(&[r#"{"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}"#]).unwrap_err();
    assert!(err.message.contains("ended early"));
    assert_eq!(decode_all(&["not json"]).unwrap_err().status(), 502);
}

#[test]
fn embeddings_use_batch_embed_contents() {
    let req = EmbeddingsRequest {
        model: "embed".into(),
        input: vec!["hello".into(), "world".into()],
        dimensions: Some(768),
        end_user: None,
    };
    let wire_req = wire()
        .embeddings_request(&req, "text-embedding-004")
        .unwrap();
    assert_eq!(
        wire_req.path,
        "/models/text-embedding-004:batchEmbedContents"
    );
    let body: Value = serde_json::from_slice(&wire_req.body).unwrap();
    assert_eq!(
        body["requests"][1],
        json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "world"}]}, "outputDimensionality": 768})
    );
    assert!(!String::from_utf8_lossy(&wire_req.body).contains(KEY));
    let response = wire()
        .parse_embeddings(br#"{"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]}"#)
        .unwrap();
    assert_eq!(response.vectors, vec![vec![0.1, 0.2], vec![0.3, 0.4]]);
    assert_eq!(wire().parse_embeddings(b"{}").unwrap_err().status(), 502);
}

proptest::proptest! {
    #[test]
    fn truncated_or_arbitrary_frames_never_panic(cut in 0usize..300, junk in "\\PC{0,40}") {
        let frame = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"},{"functionCall":{"name":"f","args":{"a":1}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3}}"#;
        let cut = (0..=cut.min(frame.len())).rev().find(|i| frame.is_char_boundary(*i)).unwrap_or(0);
        let _ = decode_all(&[&frame[..cut], &junk]);
        let _ = wire().parse_chat(&frame.as_bytes()[..cut]);
        let _ = wire().parse_chat(junk.as_bytes());
    }
}

fn max_output_tokens_sent(asked: Option<u32>, limit: Option<u32>) -> Value {
    let req = ChatRequest {
        messages: vec![Message::text(Role::User, "hi")],
        max_tokens: asked,
        ..ChatRequest::default()
    };
    let target = Target::new("gemini-2.0-flash").with_max_output_tokens(limit);
    let wire_req = wire().chat_request(&req, &target, false).unwrap();
    serde_json::from_slice::<Value>(&wire_req.body).unwrap()["generationConfig"]["maxOutputTokens"]
        .clone()
}

#[test]
fn max_output_tokens_defaults_to_the_models_limit() {
    assert_eq!(max_output_tokens_sent(None, Some(2048)), 2048);
    assert_eq!(max_output_tokens_sent(None, None), Value::Null);
}

#[test]
fn max_output_tokens_above_the_models_limit_is_capped() {
    assert_eq!(max_output_tokens_sent(Some(100_000), Some(8192)), 8192);
    assert_eq!(max_output_tokens_sent(Some(100), Some(8192)), 100);
}

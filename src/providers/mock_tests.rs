//! Tests of the mock provider: the generator's rules and the in-process provider.
use super::*;
use crate::canonical::Tool;

fn request(messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages,
        ..ChatRequest::default()
    }
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: None,
        parameters: serde_json::json!({"type": "object"}),
    }
}

fn settings() -> MockSettings {
    MockSettings::default()
}

#[test]
fn text_answer_names_the_model_and_has_output_tokens_words() {
    let req = request(vec![Message::text(Role::User, "hello there")]);
    let answer = generate(&MockPrompt::from_chat(&req, "mock-1"), 10);
    assert!(answer
        .text
        .starts_with("mock answer from mock-1: lorem ipsum"));
    assert_eq!(count_words(&answer.text), 10);
    assert_eq!(answer.usage.output_tokens, 10);
    assert_eq!(answer.usage.input_tokens, 2);
    assert_eq!(answer.finish, FinishReason::Stop);
    assert!(answer.tool_call.is_none());
}

#[test]
fn echo_in_user_text_appends_it() {
    let req = request(vec![Message::text(Role::User, "say ECHO please")]);
    let answer = generate(&MockPrompt::from_chat(&req, "m"), 4);
    assert_eq!(answer.text, "mock answer from m: echo: say ECHO please");
}

#[test]
fn generation_is_deterministic() {
    let req = request(vec![Message::text(Role::User, "same")]);
    let a = generate(&MockPrompt::from_chat(&req, "m"), 30);
    let b = generate(&MockPrompt::from_chat(&req, "m"), 30);
    assert_eq!(a, b);
}

#[test]
fn tools_offered_give_one_call_to_the_first_tool() {
    let mut req = request(vec![
        Message::text(Role::System, "be brief"),
        Message::text(Role::User, "weather in Paris?"),
    ]);
    req.tools = vec![weather_tool()];
    let answer = generate(&MockPrompt::from_chat(&req, "m"), 16);
    let call = answer.tool_call.expect("tool call");
    assert_eq!(call.id, "call_mock_1");
    assert_eq!(call.name, "get_weather");
    let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
    assert_eq!(args, serde_json::json!({"query": "weather in Paris?"}));
    assert_eq!(answer.finish, FinishReason::ToolCalls);
    assert!(answer.text.is_empty());
}

#[test]
fn forced_tool_is_called_and_query_is_truncated_to_100_chars() {
    let mut req = request(vec![Message::text(Role::User, "é".repeat(150))]);
    req.tools = vec![weather_tool()];
    req.tool_choice = Some(ToolChoice::Tool("lookup".into()));
    let call = generate(&MockPrompt::from_chat(&req, "m"), 16)
        .tool_call
        .unwrap();
    assert_eq!(call.name, "lookup");
    let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
    assert_eq!(args["query"].as_str().unwrap().chars().count(), 100);
}

#[test]
fn tool_choice_none_answers_text() {
    let mut req = request(vec![Message::text(Role::User, "hi")]);
    req.tools = vec![weather_tool()];
    req.tool_choice = Some(ToolChoice::None);
    let answer = generate(&MockPrompt::from_chat(&req, "m"), 8);
    assert!(answer.tool_call.is_none());
    assert!(answer.text.starts_with("mock answer from m:"));
}

#[test]
fn tool_result_last_answers_what_the_tool_said() {
    let mut result = Message::text(Role::Tool, "sunny, 21C");
    result.tool_call_id = Some("call_mock_1".into());
    let mut req = request(vec![Message::text(Role::User, "weather?"), result]);
    req.tools = vec![weather_tool()];
    let answer = generate(&MockPrompt::from_chat(&req, "m"), 16);
    assert_eq!(answer.text, "tool said: sunny, 21C");
    assert_eq!(answer.finish, FinishReason::Stop);
    assert!(answer.tool_call.is_none());
}

#[test]
fn max_tokens_caps_output_words_and_finishes_length() {
    let mut req = request(vec![Message::text(Role::User, "hi")]);
    req.max_tokens = Some(6);
    let answer = generate(&MockPrompt::from_chat(&req, "m"), 50);
    assert_eq!(answer.text, "mock answer from m: lorem ipsum");
    assert_eq!(answer.usage.output_tokens, 6);
    assert_eq!(answer.finish, FinishReason::Length);
    req.max_tokens = Some(0);
    let answer = generate(&MockPrompt::from_chat(&req, "m"), 50);
    assert_eq!(answer.text, "");
    assert_eq!(answer.finish, FinishReason::Length);
}

#[test]
fn max_tokens_above_output_keeps_finish_stop() {
    let mut req = request(vec![Message::text(Role::User, "hi")]);
    req.max_tokens = Some(100);
    let answer = generate(&MockPrompt::from_chat(&req, "m"), 12);
    assert_eq!(answer.finish, FinishReason::Stop);
    assert_eq!(answer.usage.output_tokens, 12);
}

#[test]
fn chunks_join_back_to_the_text() {
    let text = "one two  three four five six seven";
    for n in [0, 1, 2, 3, 7, 8, 100] {
        let pieces = split_chunks(text, n);
        assert_eq!(pieces.concat(), text, "{n}");
        assert!(pieces.iter().all(|p| !p.is_empty()));
        assert_eq!(pieces.len(), (n.max(1) as usize).min(7));
    }
    assert_eq!(split_chunks("a b", 2), vec!["a", " b"]);
    assert!(split_chunks("", 4).is_empty());
    assert_eq!(split_chunks("  ", 4), vec!["  "]);
}

#[test]
fn arguments_split_on_a_char_boundary() {
    let (a, b) = split_arguments("{\"q\":\"ééé\"}");
    assert_eq!(format!("{a}{b}"), "{\"q\":\"ééé\"}");
}

#[test]
fn embeddings_are_deterministic_unit_vectors() {
    let a = embed_text("hello", 8);
    assert_eq!(a.len(), 8);
    assert_eq!(a, embed_text("hello", 8));
    assert_ne!(a, embed_text("hellp", 8));
    let norm: f32 = a.iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-4);
}

#[tokio::test]
async fn provider_chat_answers() {
    let provider = MockProvider::new(settings());
    let req = request(vec![Message::text(Role::User, "hi")]);
    let response = provider.chat(&req, "up", None).await.unwrap();
    assert_eq!(response.model, "up");
    assert!(response.text.starts_with("mock answer from up:"));
    assert_eq!(response.usage.output_tokens, 16);
}

#[tokio::test]
async fn provider_stream_events_come_in_order() {
    let provider = MockProvider::new(MockSettings {
        output_tokens: 10,
        stream_chunks: 4,
        ..settings()
    });
    let req = request(vec![Message::text(Role::User, "hi")]);
    let stream = provider.chat_stream(&req, "up").await.unwrap();
    let events: Vec<StreamEvent> = stream.map(|e| e.unwrap()).collect().await;
    assert_eq!(events.len(), 1 + 4 + 2);
    assert!(matches!(events.first(), Some(StreamEvent::Start { .. })));
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(count_words(&text), 10);
    assert!(matches!(
        events.get(5),
        Some(StreamEvent::Finish {
            reason: FinishReason::Stop
        })
    ));
    assert!(matches!(events.get(6), Some(StreamEvent::Usage { .. })));
}

#[tokio::test]
async fn provider_streams_a_tool_call_in_two_argument_pieces() {
    let provider = MockProvider::new(settings());
    let mut req = request(vec![Message::text(Role::User, "weather?")]);
    req.tools = vec![weather_tool()];
    let stream = provider.chat_stream(&req, "up").await.unwrap();
    let events: Vec<StreamEvent> = stream.map(|e| e.unwrap()).collect().await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            StreamEvent::Start { .. } => "start",
            StreamEvent::TextDelta { .. } => "text",
            StreamEvent::ToolCallStart { .. } => "tool_start",
            StreamEvent::ToolCallDelta { .. } => "tool_delta",
            StreamEvent::Finish { .. } => "finish",
            StreamEvent::Usage { .. } => "usage",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "start",
            "tool_start",
            "tool_delta",
            "tool_delta",
            "finish",
            "usage"
        ]
    );
    let args: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta { arguments, .. } => Some(arguments.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(args, r#"{"query":"weather?"}"#);
}

#[tokio::test]
async fn error_rate_one_always_fails_with_the_error_status() {
    let provider = MockProvider::new(MockSettings {
        error_rate: 1.0,
        error_status: 429,
        ..settings()
    });
    let req = request(vec![Message::text(Role::User, "hi")]);
    let err = provider.chat(&req, "up", None).await.unwrap_err();
    assert_eq!(err.upstream_status, Some(429));
    assert_eq!(err.retry_after, Some(Duration::from_secs(1)));
    assert!(err.retryable());
    let err = provider.chat_stream(&req, "up").await.err().unwrap();
    assert_eq!(err.upstream_status, Some(429));
    let embed = EmbeddingsRequest {
        model: "e".into(),
        input: vec!["x".into()],
        dimensions: None,
        end_user: None,
    };
    assert!(provider.embed(&embed, "e").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn hang_never_answers_until_the_caller_times_out() {
    let provider = MockProvider::new(MockSettings {
        hang: true,
        ..settings()
    });
    let req = request(vec![Message::text(Role::User, "hi")]);
    let waited =
        tokio::time::timeout(Duration::from_secs(30), provider.chat(&req, "up", None)).await;
    assert!(waited.is_err());
    let waited =
        tokio::time::timeout(Duration::from_secs(30), provider.chat_stream(&req, "up")).await;
    assert!(waited.is_err());
}

#[tokio::test(start_paused = true)]
async fn chat_fails_with_a_timeout_when_latency_exceeds_the_headers_deadline() {
    let provider = MockProvider::new(MockSettings {
        latency_ms: 5_000,
        ..settings()
    })
    .named("slow");
    let req = request(vec![Message::text(Role::User, "hi")]);
    let started = tokio::time::Instant::now();
    let err = provider
        .chat(&req, "up", Some(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(err.code, crate::error::ErrorCode::Timeout);
    assert!(err.retryable());
    assert_eq!(
        err.message,
        "provider `slow` sent no response headers within 300 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn chat_of_a_hanging_mock_ends_at_the_headers_deadline() {
    let provider = MockProvider::new(MockSettings {
        hang: true,
        ..settings()
    });
    let req = request(vec![Message::text(Role::User, "hi")]);
    let err = provider
        .chat(&req, "up", Some(Duration::from_millis(800)))
        .await
        .unwrap_err();
    assert_eq!(err.code, crate::error::ErrorCode::Timeout);
}

#[tokio::test(start_paused = true)]
async fn chat_within_the_headers_deadline_answers() {
    let provider = MockProvider::new(MockSettings {
        latency_ms: 100,
        ..settings()
    });
    let req = request(vec![Message::text(Role::User, "hi")]);
    let response = provider
        .chat(&req, "up", Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(response.model, "up");
}

#[tokio::test(start_paused = true)]
async fn stream_waits_first_token_delay_then_chunk_intervals() {
    let provider = MockProvider::new(MockSettings {
        latency_ms: 100,
        first_token_delay_ms: 400,
        chunk_interval_ms: 50,
        output_tokens: 8,
        stream_chunks: 4,
        ..settings()
    });
    let req = request(vec![Message::text(Role::User, "hi")]);
    let started = tokio::time::Instant::now();
    let mut stream = provider.chat_stream(&req, "up").await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    stream.next().await.unwrap().unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    while stream.next().await.is_some() {}
    assert_eq!(started.elapsed(), Duration::from_millis(500 + 3 * 50));
}

#[tokio::test]
async fn embed_honours_dimensions() {
    let provider = MockProvider::new(settings());
    let req = EmbeddingsRequest {
        model: "e".into(),
        input: vec!["a b".into(), "c".into()],
        dimensions: Some(16),
        end_user: None,
    };
    let response = provider.embed(&req, "e").await.unwrap();
    assert_eq!(response.vectors.len(), 2);
    assert!(response.vectors.iter().all(|v| v.len() == 16));
    assert_eq!(response.usage.input_tokens, 3);
}

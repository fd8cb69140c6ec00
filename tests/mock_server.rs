//! The mock provider over real HTTP on 127.0.0.1:0, driven with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::time::Duration;
use switchyard::config::MockSettings;
use switchyard::mock_server::serve;
use tokio::net::TcpListener;

async fn start(settings: MockSettings) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, settings, std::future::pending()));
    format!("http://{addr}")
}

fn settings() -> MockSettings {
    MockSettings {
        output_tokens: 12,
        stream_chunks: 4,
        ..MockSettings::default()
    }
}

/// (event name, parsed data) of each SSE event; `[DONE]` becomes the string "[DONE]".
fn sse_events(body: &str) -> Vec<(String, Value)> {
    let body = body.replace("\r\n", "\n");
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let mut name = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (name, data)
        })
        .collect()
}

async fn stats(base: &str) -> Value {
    reqwest::get(format!("{base}/_mock/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn openai_body(stream: bool) -> Value {
    json!({
        "model": "gpt-mock",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"}
        ],
        "stream": stream
    })
}

fn anthropic(client: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
}

#[tokio::test]
async fn openai_chat_completion_has_text_and_usage() {
    let base = start(settings()).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with("mock answer from gpt-mock:"), "{text}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    assert_eq!(body["usage"]["completion_tokens"], 12);
    assert_eq!(body["usage"]["total_tokens"], 16);
}

#[tokio::test]
async fn openai_stream_sends_role_content_finish_usage_then_done() {
    let base = start(settings()).await;
    let mut body = openai_body(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = reqwest::Client::new()
        .post(format!("{base}/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 1 + 4 + 1 + 1 + 1);
    assert_eq!(events[0].1["choices"][0]["delta"]["role"], "assistant");
    let content: String = events[1..5]
        .iter()
        .map(|(_, e)| e["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert!(content.starts_with("mock answer from gpt-mock:"));
    assert_eq!(events[5].1["choices"][0]["finish_reason"], "stop");
    assert!(events[5].1["usage"].is_null());
    assert_eq!(events[6].1["choices"], json!([]));
    assert_eq!(events[6].1["usage"]["completion_tokens"], 12);
    assert_eq!(events[7].1, "[DONE]");
}

#[tokio::test]
async fn openai_stream_without_include_usage_has_no_usage_chunk() {
    let base = start(settings()).await;
    let text = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&openai_body(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert!(events.iter().all(|(_, e)| e.get("usage").is_none()));
    assert_eq!(events.last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn openai_stream_tool_call_sends_header_then_argument_pieces() {
    let base = start(settings()).await;
    let mut body = openai_body(true);
    body["tools"] = json!([{"type": "function", "function": {"name": "search", "parameters": {}}}]);
    let text = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let head = &events[1].1["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(head["index"], 0);
    assert_eq!(head["id"], "call_mock_1");
    assert_eq!(head["type"], "function");
    assert_eq!(head["function"]["name"], "search");
    let args: String = events[2..4]
        .iter()
        .map(|(_, e)| {
            e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(args, r#"{"query":"hello there"}"#);
    assert_eq!(events[4].1["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn openai_stream_options_without_stream_is_refused() {
    let base = start(settings()).await;
    let mut body = openai_body(false);
    body["stream_options"] = json!({"include_usage": true});
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn anthropic_message_answers_tool_result_with_text() {
    let base = start(settings()).await;
    let body = json!({
        "model": "claude-mock",
        "max_tokens": 100,
        "system": "be brief",
        "tools": [{"name": "search", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "find it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "search", "input": {"query": "find it"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "found 3"}]}
        ]
    });
    let client = reqwest::Client::new();
    let response = anthropic(&client, &base).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(body["content"][0]["text"], "tool said: found 3");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["input_tokens"], 6);
}

#[tokio::test]
async fn anthropic_stream_follows_the_official_event_order() {
    let base = start(settings()).await;
    let body = json!({
        "model": "claude-mock",
        "max_tokens": 100,
        "stream": true,
        "tools": [{"name": "search", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "find it"}]
    });
    let client = reqwest::Client::new();
    let text = anthropic(&client, &base)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    assert_eq!(events[2].1["content_block"]["type"], "tool_use");
    assert_eq!(events[2].1["content_block"]["id"], "call_mock_1");
    let json: String = events[3..6]
        .iter()
        .map(|(_, e)| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(json, r#"{"query":"find it"}"#);
    assert_eq!(events[7].1["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn anthropic_text_stream_deltas_join_to_the_answer() {
    let base = start(settings()).await;
    let body = json!({
        "model": "claude-mock",
        "max_tokens": 5,
        "stream": true,
        "messages": [{"role": "user", "content": "hi"}]
    });
    let client = reqwest::Client::new();
    let text = anthropic(&client, &base)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let joined: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, e)| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, "mock answer from claude-mock: lorem");
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta.1["usage"]["output_tokens"], 5);
}

#[tokio::test]
async fn anthropic_without_version_header_is_a_400_in_anthropic_json() {
    let base = start(settings()).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", "k")
        .json(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn anthropic_without_max_tokens_or_with_system_role_is_refused() {
    let base = start(settings()).await;
    let client = reqwest::Client::new();
    let no_max = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let response = anthropic(&client, &base)
        .json(&no_max)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let system_role =
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]});
    let response = anthropic(&client, &base)
        .json(&system_role)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

fn gemini_body() -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
        "generationConfig": {"maxOutputTokens": 100}
    })
}

#[tokio::test]
async fn gemini_generate_content_answers_with_usage_metadata() {
    let base = start(settings()).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1beta/models/gemini-mock:generateContent"))
        .header("x-goog-api-key", "k")
        .json(&gemini_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    let text = candidate["content"]["parts"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("mock answer from gemini-mock:"));
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(body["usageMetadata"]["promptTokenCount"], 4);
    assert_eq!(body["usageMetadata"]["candidatesTokenCount"], 12);
}

#[tokio::test]
async fn gemini_stream_sends_sse_chunks_ending_with_finish_reason() {
    let base = start(settings()).await;
    let mut body = gemini_body();
    body["tools"] = json!([{"functionDeclarations": [{"name": "search"}]}]);
    body["toolConfig"] = json!({"functionCallingConfig": {"mode": "NONE"}});
    let response = reqwest::Client::new()
        .post(format!(
            "{base}/models/gemini-mock:streamGenerateContent?alt=sse"
        ))
        .header("x-goog-api-key", "k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 4);
    let joined: String = events
        .iter()
        .map(|(_, e)| {
            e["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(joined.split_whitespace().count(), 12);
    assert!(events[..3]
        .iter()
        .all(|(_, e)| e["candidates"][0].get("finishReason").is_none()));
    assert_eq!(events[3].1["candidates"][0]["finishReason"], "STOP");
    assert_eq!(events[3].1["usageMetadata"]["totalTokenCount"], 16);
}

#[tokio::test]
async fn gemini_calls_the_function_and_needs_an_api_key() {
    let base = start(settings()).await;
    let client = reqwest::Client::new();
    let mut body = gemini_body();
    body["tools"] = json!([{"functionDeclarations": [{"name": "search"}]}]);
    let url = format!("{base}/v1beta/models/gemini-mock:generateContent");
    let response = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["status"], "PERMISSION_DENIED");
    let response = client
        .post(&url)
        .header("x-goog-api-key", "k")
        .json(&body)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let call = &body["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["name"], "search");
    assert_eq!(call["args"], json!({"query": "hello there"}));
}

#[tokio::test]
async fn embeddings_and_models_answer_openai_shapes() {
    let base = start(settings()).await;
    let client = reqwest::Client::new();
    let body: Value = client
        .post(format!("{base}/v1/embeddings"))
        .json(&json!({"model": "embed-mock", "input": ["a b", "c"], "dimensions": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    let models: Value = reqwest::get(format!("{base}/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
}

#[tokio::test]
async fn stats_count_a_stream_the_client_dropped_as_cancelled() {
    let base = start(MockSettings {
        output_tokens: 200,
        stream_chunks: 100,
        chunk_interval_ms: 20,
        ..settings()
    })
    .await;
    let mut response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&openai_body(true))
        .send()
        .await
        .unwrap();
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);
    let mut seen = Value::Null;
    for _ in 0..200 {
        seen = stats(&base).await;
        if seen["streams_cancelled"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen["streams_cancelled"], 1, "{seen}");
    assert_eq!(seen["streams_started"], 1);
    assert_eq!(seen["streams_completed"], 0);
    assert_eq!(seen["requests"], 1);
}

#[tokio::test]
async fn stats_count_a_finished_stream_as_completed() {
    let base = start(settings()).await;
    reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&openai_body(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let seen = stats(&base).await;
    assert_eq!(seen["streams_completed"], 1, "{seen}");
    assert_eq!(seen["streams_cancelled"], 0);
}

#[tokio::test]
async fn config_endpoint_switches_on_errors_mid_test() {
    let base = start(settings()).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let ok = client
        .post(&url)
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let config: Value = client
        .post(format!("{base}/_mock/config"))
        .json(&json!({"error_rate": 1.0, "error_status": 429}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["error_status"], 429);
    assert_eq!(
        config["output_tokens"], 12,
        "other fields keep their values"
    );
    let failed = client
        .post(&url)
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 429);
    assert_eq!(failed.headers()["retry-after"], "1");
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let gemini = client
        .post(format!("{base}/v1beta/models/g:generateContent"))
        .header("x-goog-api-key", "k")
        .json(&gemini_body())
        .send()
        .await
        .unwrap();
    let body: Value = gemini.json().await.unwrap();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(stats(&base).await["errors_injected"], 2);
    let unknown = client
        .post(format!("{base}/_mock/config"))
        .json(&json!({"no_such_field": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
}

#[tokio::test]
async fn requests_endpoint_shows_bodies_and_header_names_not_values() {
    let base = start(settings()).await;
    let client = reqwest::Client::new();
    anthropic(&client, &base)
        .json(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let seen: Value = reqwest::get(format!("{base}/_mock/requests"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = &seen[0];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/v1/messages");
    assert_eq!(first["body"]["max_tokens"], 5);
    let headers: Vec<&str> = first["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(headers.contains(&"x-api-key"));
    assert!(headers.contains(&"anthropic-version"));
    assert!(
        !seen.to_string().contains("2023-06-01"),
        "header values are not kept"
    );
}

#[tokio::test]
async fn hang_accepts_and_never_answers() {
    let base = start(MockSettings {
        hang: true,
        ..settings()
    })
    .await;
    let result = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .timeout(Duration::from_millis(300))
        .json(&openai_body(false))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, settings(), async {
        let _ = rx.await;
    }));
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

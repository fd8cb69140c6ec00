//! End-to-end: clients in both dialects through the real gateway to every wire format of a
//! real `switchyard mock-provider`, over 127.0.0.1 sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

struct Setup {
    mock: Proc,
    gw: Gateway,
}

fn setup_with(mock_args: &[&str], extra: &str) -> Setup {
    set_provider_env();
    let mock = mock_provider(mock_args);
    let config = format!(
        "{}{}\n[logs]\nenabled = false\n{extra}",
        preamble("max_body_bytes = 65536"),
        providers_on(&mock)
    );
    let gw = gateway(&config);
    Setup { mock, gw }
}

fn setup() -> Setup {
    setup_with(&[], "")
}

fn chat_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello ECHO"}
        ],
        "max_tokens": 64
    })
}

fn weather_tool() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
        }
    }])
}

async fn openai_chat(s: &Setup, model: &str) -> Value {
    let resp = post(&s.gw.url("/v1/chat/completions"), &chat_body(model, false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    resp.json().await.unwrap()
}

fn assert_openai_completion(body: &Value, model: &str) {
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], model);
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.contains("echo: Say hello ECHO"),
        "the prompt reached the upstream: {text}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

/// Stream an OpenAI request and return (concatenated text, finish_reason, usage chunk, frames).
async fn openai_stream(s: &Setup, body: &Value) -> (String, String, Value, Vec<(String, String)>) {
    let resp = post(&s.gw.url("/v1/chat/completions"), body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let frames = sse(&text);
    assert_eq!(
        frames.last().unwrap().1,
        "[DONE]",
        "stream ends with [DONE]: {text}"
    );
    let mut out = String::new();
    let mut finish = String::new();
    let mut usage = Value::Null;
    for (_, data) in &frames[..frames.len() - 1] {
        let chunk: Value = serde_json::from_str(data).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        if let Some(delta) = chunk["choices"][0]["delta"]["content"].as_str() {
            out.push_str(delta);
        }
        if let Some(reason) = chunk["choices"][0]["finish_reason"].as_str() {
            finish = reason.to_string();
        }
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
    }
    (out, finish, usage, frames)
}

#[tokio::test]
async fn openai_client_reaches_openai_upstream() {
    let s = setup();
    let body = openai_chat(&s, "gpt-test").await;
    assert_openai_completion(&body, "gpt-test");
    let mut req = chat_body("gpt-test", true);
    req["stream_options"] = json!({"include_usage": true});
    let (text, finish, usage, _) = openai_stream(&s, &req).await;
    assert!(text.contains("echo: Say hello ECHO"), "{text}");
    assert_eq!(finish, "stop");
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn openai_client_reaches_anthropic_upstream() {
    let s = setup();
    let body = openai_chat(&s, "claude-test").await;
    assert_openai_completion(&body, "claude-test");
    // What went upstream is Anthropic's wire format: system lifted out, version header set.
    let seen: Value = client()
        .get(s.mock.url("/_mock/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = seen
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["path"].as_str().unwrap().ends_with("/messages"))
        .unwrap();
    assert_eq!(last["body"]["system"], "You are terse.");
    assert_eq!(last["body"]["model"], "claude-3-5-haiku-latest");
    let headers: Vec<&str> = last["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(
        headers.contains(&"anthropic-version") && headers.contains(&"x-api-key"),
        "{headers:?}"
    );

    let (text, finish, _, _) = openai_stream(&s, &chat_body("claude-test", true)).await;
    assert!(text.contains("echo: Say hello ECHO"), "{text}");
    assert_eq!(finish, "stop");
}

#[tokio::test]
async fn openai_client_reaches_gemini_upstream() {
    let s = setup();
    let body = openai_chat(&s, "gemini-test").await;
    assert_openai_completion(&body, "gemini-test");
    let (text, finish, _, _) = openai_stream(&s, &chat_body("gemini-test", true)).await;
    assert!(text.contains("echo: Say hello ECHO"), "{text}");
    assert_eq!(finish, "stop");
}

fn anthropic_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 64,
        "stream": stream,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello ECHO"}]}]
    })
}

async fn anthropic_post(s: &Setup, body: &Value) -> reqwest::Response {
    client()
        .post(s.gw.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn anthropic_client_reaches_openai_upstream() {
    let s = setup();
    let resp = anthropic_post(&s, &anthropic_body("gpt-test", false)).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(body["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("echo: Say hello ECHO"));
    assert!(body["usage"]["output_tokens"].as_u64().unwrap() > 0);

    let resp = anthropic_post(&s, &anthropic_body("gpt-test", true)).await;
    assert_eq!(resp.status(), 200);
    let frames = sse(&resp.text().await.unwrap());
    let names: Vec<&str> = frames.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.contains(&"content_block_start") && names.contains(&"content_block_stop"));
    let mut text = String::new();
    for (event, data) in &frames {
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["type"], event.as_str(), "event name matches data.type");
        if event == "content_block_delta" {
            text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
        }
        if event == "message_delta" {
            assert_eq!(v["delta"]["stop_reason"], "end_turn");
            assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
        }
    }
    assert!(text.contains("echo: Say hello ECHO"), "{text}");
}

fn tool_request(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": weather_tool(),
    })
}

/// The model's tool call (non-streaming or streamed), as (id, name, arguments).
async fn openai_tool_call(s: &Setup, model: &str, stream: bool) -> (String, String, String) {
    if !stream {
        let resp = post(
            &s.gw.url("/v1/chat/completions"),
            &tool_request(model, false),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        let call = &body["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        return (
            call["id"].as_str().unwrap().into(),
            call["function"]["name"].as_str().unwrap().into(),
            call["function"]["arguments"].as_str().unwrap().into(),
        );
    }
    let (_, finish, _, frames) = openai_stream(s, &tool_request(model, true)).await;
    assert_eq!(finish, "tool_calls");
    let (mut id, mut name, mut args) = (String::new(), String::new(), String::new());
    for (_, data) in &frames[..frames.len() - 1] {
        let chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(calls) = chunk["choices"][0]["delta"]["tool_calls"].as_array() {
            for c in calls {
                assert_eq!(c["index"], 0);
                if let Some(v) = c["id"].as_str() {
                    id = v.into();
                }
                if let Some(v) = c["function"]["name"].as_str() {
                    name = v.into();
                }
                args.push_str(c["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
    }
    (id, name, args)
}

#[tokio::test]
async fn tool_calls_round_trip_from_openai_clients_to_every_upstream() {
    let s = setup();
    for model in ["gpt-test", "claude-test", "gemini-test"] {
        for stream in [false, true] {
            let (id, name, args) = openai_tool_call(&s, model, stream).await;
            assert_eq!(name, "get_weather", "{model} stream={stream}");
            assert!(!id.is_empty());
            let parsed: Value = serde_json::from_str(&args)
                .unwrap_or_else(|e| panic!("{model} {stream}: {args}: {e}"));
            assert_eq!(parsed["query"], "weather in Paris?");
            // Send the tool result back: the upstream sees it and answers with it.
            let follow = json!({
                "model": model,
                "stream": false,
                "tools": weather_tool(),
                "messages": [
                    {"role": "user", "content": "weather in Paris?"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": args}}]},
                    {"role": "tool", "tool_call_id": id, "content": "sunny, 21C"}
                ]
            });
            let resp = post(&s.gw.url("/v1/chat/completions"), &follow).await;
            assert_eq!(resp.status(), 200, "{model}");
            let body: Value = resp.json().await.unwrap();
            let text = body["choices"][0]["message"]["content"].as_str().unwrap();
            assert!(text.contains("sunny, 21C"), "{model}: {text}");
        }
    }
}

#[tokio::test]
async fn tool_calls_round_trip_from_anthropic_clients() {
    let s = setup();
    for stream in [false, true] {
        let body = json!({
            "model": "gpt-test",
            "max_tokens": 100,
            "stream": stream,
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}],
            "messages": [{"role": "user", "content": "weather in Oslo?"}]
        });
        let resp = anthropic_post(&s, &body).await;
        assert_eq!(resp.status(), 200);
        let (id, name, input) = if stream {
            let frames = sse(&resp.text().await.unwrap());
            let (mut id, mut name, mut json_text, mut stop) =
                (String::new(), String::new(), String::new(), String::new());
            for (event, data) in &frames {
                let v: Value = serde_json::from_str(data).unwrap();
                match event.as_str() {
                    "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                        id = v["content_block"]["id"].as_str().unwrap().into();
                        name = v["content_block"]["name"].as_str().unwrap().into();
                    }
                    "content_block_delta" if v["delta"]["type"] == "input_json_delta" => {
                        json_text.push_str(v["delta"]["partial_json"].as_str().unwrap());
                    }
                    "message_delta" => stop = v["delta"]["stop_reason"].as_str().unwrap().into(),
                    _ => {}
                }
            }
            assert_eq!(stop, "tool_use");
            (id, name, serde_json::from_str::<Value>(&json_text).unwrap())
        } else {
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["stop_reason"], "tool_use");
            let block = v["content"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["type"] == "tool_use")
                .unwrap()
                .clone();
            (
                block["id"].as_str().unwrap().into(),
                block["name"].as_str().unwrap().into(),
                block["input"].clone(),
            )
        };
        assert_eq!(name, "get_weather");
        assert_eq!(input["query"], "weather in Oslo?");
        let follow = json!({
            "model": "gpt-test",
            "max_tokens": 100,
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "weather in Oslo?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name, "input": input}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "snow, -3C"}]}
            ]
        });
        let resp = anthropic_post(&s, &follow).await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert!(
            v["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("snow, -3C"),
            "{v}"
        );
    }
}

async fn error_of(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

#[tokio::test]
async fn bad_inputs_get_dialect_errors_and_the_gateway_stays_healthy() {
    let s = setup();
    let url = s.gw.url("/v1/chat/completions");
    // 400: malformed JSON, invalid body.
    let resp = client()
        .post(&url)
        .bearer_auth(KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let body = error_of(resp, 400).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let resp = post(&url, &json!({"model": "gpt-test", "messages": "hi"})).await;
    error_of(resp, 400).await;
    // 401: missing and unknown key, both dialects.
    let resp = client()
        .post(&url)
        .json(&chat_body("gpt-test", false))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(resp, 401).await["error"]["type"],
        "authentication_error"
    );
    let resp = client()
        .post(s.gw.url("/v1/messages"))
        .header("x-api-key", "sk-wrong")
        .json(&anthropic_body("gpt-test", false))
        .send()
        .await
        .unwrap();
    let body = error_of(resp, 401).await;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
    // 404: unknown model, both dialects.
    let resp = post(&url, &chat_body("no-such-model", false)).await;
    assert_eq!(error_of(resp, 404).await["error"]["param"], "model");
    let resp = anthropic_post(&s, &anthropic_body("no-such-model", false)).await;
    assert_eq!(
        error_of(resp, 404).await["error"]["type"],
        "not_found_error"
    );
    // 413: over max_body_bytes (64 KiB in this config).
    let big = "x".repeat(100 * 1024);
    let resp = post(
        &url,
        &json!({"model": "gpt-test", "messages": [{"role": "user", "content": big}]}),
    )
    .await;
    error_of(resp, 413).await;
    let resp = anthropic_post(&s, &json!({"model": "gpt-test", "max_tokens": 5, "messages": [{"role": "user", "content": big}]})).await;
    assert_eq!(
        error_of(resp, 413).await["error"]["type"],
        "request_too_large"
    );
    // Still healthy.
    assert_openai_completion(&openai_chat(&s, "gpt-test").await, "gpt-test");
}

async fn set_mock(mock: &Proc, settings: Value) {
    let resp = client()
        .post(mock.url("/_mock/config"))
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
}

#[tokio::test]
async fn upstream_failures_map_to_429_502_and_504() {
    let s = setup_with(&[], "[dispatch]\nretries = 0\nbreaker_failures = 1000\n");
    let url = s.gw.url("/v1/chat/completions");
    // 429 passed on with Retry-After.
    set_mock(&s.mock, json!({"error_rate": 1.0, "error_status": 429})).await;
    let resp = post(&url, &chat_body("gpt-test", false)).await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        error_of(resp, 429).await["error"]["type"],
        "rate_limit_error"
    );
    let resp = anthropic_post(&s, &anthropic_body("claude-test", false)).await;
    assert_eq!(
        error_of(resp, 429).await["error"]["type"],
        "rate_limit_error"
    );
    // 5xx → 502.
    set_mock(&s.mock, json!({"error_rate": 1.0, "error_status": 503})).await;
    let resp = post(&url, &chat_body("gemini-test", false)).await;
    error_of(resp, 502).await;
    let resp = post(&url, &chat_body("gpt-test", true)).await;
    error_of(resp, 502).await;
    // Recovered upstream → 200 again.
    set_mock(&s.mock, json!({"error_rate": 0.0})).await;
    assert_openai_completion(&openai_chat(&s, "gpt-test").await, "gpt-test");
}

#[tokio::test]
async fn hanging_upstream_is_a_504() {
    set_provider_env();
    let mock = mock_provider(&["--hang"]);
    let config = format!(
        "{}[[providers]]\nname = \"slow\"\nkind = \"openai-compatible\"\nbase_url = \"http://{}/v1\"\ntimeout_ms = 300\n\n[[models]]\nname = \"m\"\nprovider = \"slow\"\n\n[logs]\nenabled = false\n[dispatch]\nretries = 0\n",
        preamble(""),
        mock.addr
    );
    let gw = gateway(&config);
    let resp = post(&gw.url("/v1/chat/completions"), &chat_body("m", false)).await;
    assert_eq!(error_of(resp, 504).await["error"]["type"], "timeout_error");
    let resp = post(&gw.url("/v1/chat/completions"), &chat_body("m", true)).await;
    error_of(resp, 504).await;
}

#[tokio::test]
async fn unparseable_upstream_body_is_a_502() {
    // A raw socket answering 200 with garbage: no real provider would, which is the point.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let body = "<html>definitely not json</html>";
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    let config = format!(
        "{}[[providers]]\nname = \"junk\"\nkind = \"openai-compatible\"\nbase_url = \"http://{addr}/v1\"\n\n[[models]]\nname = \"m\"\nprovider = \"junk\"\n\n[logs]\nenabled = false\n",
        preamble("")
    );
    let gw = gateway(&config);
    let resp = post(&gw.url("/v1/chat/completions"), &chat_body("m", false)).await;
    let body = error_of(resp, 502).await;
    assert_eq!(body["error"]["type"], "api_error");
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream_request() {
    let s = setup_with(&["--stream-chunks", "200", "--chunk-interval-ms", "50"], "");
    let resp = post(
        &s.gw.url("/v1/chat/completions"),
        &chat_body("gpt-test", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    use futures_util::StreamExt;
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(stream);
    let cancelled = eventually(Duration::from_secs(10), || async {
        let stats = mock_stats(&s.mock).await;
        (stats["streams_cancelled"].as_u64() == Some(1)).then_some(stats)
    })
    .await;
    let stats = cancelled.expect("the upstream stream was cancelled");
    assert_eq!(stats["streams_completed"], 0);
}

#[tokio::test]
async fn models_and_embeddings_are_served() {
    let s = setup();
    let models: Value = client()
        .get(s.gw.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["gpt-test", "claude-test", "gemini-test", "embed-test"]
    );
    let resp = post(
        &s.gw.url("/v1/embeddings"),
        &json!({"model": "embed-test", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert!(!body["data"][1]["embedding"].as_array().unwrap().is_empty());
    // A chat model on the embeddings endpoint of a provider without embeddings → clear 400.
    let resp = post(
        &s.gw.url("/v1/embeddings"),
        &json!({"model": "claude-test", "input": "a"}),
    )
    .await;
    error_of(resp, 400).await;
}

#[tokio::test]
async fn a_client_request_id_is_a_correlation_id_and_every_request_gets_a_unique_id() {
    let s = setup();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = client()
            .post(s.gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("x-request-id", "trace-abc-123")
            .json(&chat_body("gpt-test", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-correlation-id"], "trace-abc-123");
        ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    assert_ne!(
        ids[0], ids[1],
        "two clients reusing one id get distinct records"
    );
    assert_eq!(ids[0].len(), 36);
    let resp = post(
        &s.gw.url("/v1/chat/completions"),
        &chat_body("gpt-test", false),
    )
    .await;
    assert_eq!(resp.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn speaks_h2c_as_well_as_http1() {
    let s = setup();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(s.gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("gpt-test", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}

#[test]
fn a_port_in_use_is_an_error_not_a_shared_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[[providers]]\nname = \"m\"\nkind = \"mock\"\n\n[[models]]\nname = \"m\"\nprovider = \"m\"\n\n[logs]\nenabled = false\n",
        preamble("").replace("127.0.0.1:0", &addr.to_string())
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

//! Hostile upstreams of our own making, on 127.0.0.1:0, against a real gateway: a redirect
//! to another host, an endless JSON body, an SSE event that never ends and an endless
//! stream. Each must end quickly with a clean error that names the provider; none may leak
//! the provider key or grow memory without end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The provider key the gateway sends upstream (set by `set_provider_env`).
const PROVIDER_KEY: &str = "sk-ant-test-provider-key";

/// Read one request's head and `content-length` body.
async fn read_request(socket: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).to_string()
}

/// An upstream that reads each request, then runs `answer` on the connection.
async fn upstream<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                read_request(&mut socket).await;
                answer(socket).await;
            });
        }
    });
    addr
}

/// Chunked transfer-encoding framing of one piece.
fn chunk(text: &str) -> String {
    format!("{:x}\r\n{text}\r\n", text.len())
}

/// A gateway with one provider `hostile` of `kind` at `addr`, serving model `m`.
fn gateway_for(kind: &str, addr: SocketAddr, extra_provider: &str) -> Gateway {
    set_provider_env();
    let config = format!(
        "{}[[providers]]\nname = \"hostile\"\nkind = \"{kind}\"\nbase_url = \"http://{addr}/v1\"\napi_key_env = \"SWITCHYARD_TEST_ANTHROPIC_KEY\"\ntimeout_ms = 60000\n{extra_provider}\n\n[[models]]\nname = \"m\"\nprovider = \"hostile\"\n\n[logs]\nenabled = false\n\n[dispatch]\nretries = 0\n",
        preamble("")
    );
    gateway(&config)
}

fn chat_body(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// Stream a chat through the gateway and return the whole SSE body once it ends (panics
/// when it does not end within 20 s).
async fn streamed_body(gw: &Gateway) -> String {
    let read = async {
        let mut response = post(&gw.url("/v1/chat/completions"), &chat_body(true)).await;
        assert_eq!(response.status(), 200);
        let mut text = String::new();
        while let Ok(Some(piece)) = response.chunk().await {
            text.push_str(&String::from_utf8_lossy(&piece));
        }
        text
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the stream did not end within 20 s")
}

/// The `error.message` of the stream's error event.
fn stream_error_message(body: &str) -> String {
    let events = sse(body);
    let error = events
        .iter()
        .find_map(|(_, data)| {
            let value: Value = serde_json::from_str(data).ok()?;
            value.get("error").cloned()
        })
        .unwrap_or_else(|| panic!("no error event in {body:.2000}"));
    error["message"].as_str().unwrap_or_default().to_string()
}

/// A listener that records every request it receives (it should receive none).
async fn witness() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let addr = upstream(move |_socket| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push("connection".into());
        }
    })
    .await;
    (addr, seen)
}

/// An upstream answering 307 to `target`.
async fn redirecting_to(target: SocketAddr, path: &'static str) -> SocketAddr {
    upstream(move |mut socket| async move {
        let head = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{target}{path}\r\ncontent-length: 0\r\n\r\n"
        );
        let _ = socket.write_all(head.as_bytes()).await;
    })
    .await
}

#[tokio::test]
async fn redirect_from_an_openai_provider_is_a_502_and_the_key_never_reaches_the_target() {
    let (target, seen) = witness().await;
    let addr = redirecting_to(target, "/v1/chat/completions").await;
    let gw = gateway_for("openai-compatible", addr, "");
    let response = post(&gw.url("/v1/chat/completions"), &chat_body(false)).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("provider `hostile` answered with a redirect (307)"),
        "{body}"
    );
    assert!(!message.contains(PROVIDER_KEY));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "the redirect target received the request"
    );
}

#[tokio::test]
async fn redirect_from_an_anthropic_provider_is_a_502_in_anthropic_dialect_and_x_api_key_stays_home(
) {
    let (target, seen) = witness().await;
    let addr = redirecting_to(target, "/v1/messages").await;
    let gw = gateway_for("anthropic", addr, "");
    let response = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("provider `hostile` answered with a redirect (307)"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "the redirect target received the request (and x-api-key)"
    );
}

#[tokio::test]
async fn an_endless_json_body_fails_with_a_502_naming_the_provider() {
    let addr = upstream(|mut socket| async move {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(chunk("{\"id\":\"").as_bytes()).await;
        let piece = chunk(&"x".repeat(64 * 1024));
        while socket.write_all(piece.as_bytes()).await.is_ok() {}
    })
    .await;
    let gw = gateway_for("openai-compatible", addr, "");
    let (url, body) = (gw.url("/v1/chat/completions"), chat_body(false));
    let response = tokio::time::timeout(Duration::from_secs(20), post(&url, &body))
        .await
        .expect("the gateway kept reading an endless body");
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "provider `hostile` sent a response larger than 33554432 bytes (max_response_bytes)"
    );
}

/// An upstream that streams one content chunk, then writes `tail` forever (every `every`).
async fn streaming_upstream(tail: String, every: Duration) -> SocketAddr {
    let tail = Arc::new(tail);
    upstream(move |mut socket| {
        let tail = tail.clone();
        async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
            let first = r#"data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"}}]}"#;
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(chunk(&format!("{first}\n\n")).as_bytes()).await;
            let piece = chunk(&tail);
            while socket.write_all(piece.as_bytes()).await.is_ok() {
                if !every.is_zero() {
                    tokio::time::sleep(every).await;
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn an_sse_event_that_never_ends_fails_the_stream_with_an_error_event() {
    // Data lines with no blank line: one event that grows forever.
    let line = format!("data: {}\n", "x".repeat(16 * 1024));
    let addr = streaming_upstream(line, Duration::ZERO).await;
    let gw = gateway_for("openai-compatible", addr, "");
    let body = streamed_body(&gw).await;
    let message = stream_error_message(&body);
    assert!(
        message.starts_with("provider `hostile`: stream event larger than"),
        "{message}"
    );
}

#[tokio::test]
async fn an_endless_stream_ends_with_an_error_at_stream_timeout_ms() {
    let event = r#"data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"x"}}]}"#;
    let addr = streaming_upstream(format!("{event}\n\n"), Duration::from_millis(20)).await;
    let gw = gateway_for("openai-compatible", addr, "stream_timeout_ms = 1000");
    let body = streamed_body(&gw).await;
    assert_eq!(
        stream_error_message(&body),
        "provider `hostile` stream exceeded its 1000 ms deadline (stream_timeout_ms)"
    );
}

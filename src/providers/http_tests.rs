//! Tests of the HTTP executor against small hostile upstreams on 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::canonical::{Message, Role};
use crate::config::Secret;
use crate::providers::openai::OpenAiWire;
use crate::providers::{http_client, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A valid OpenAI chat completion body.
pub(crate) const COMPLETION: &str = r#"{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;

/// Read one request (headers and a `content-length` body) from `socket`.
pub(crate) async fn read_request(socket: &mut TcpStream) -> String {
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

/// An upstream on 127.0.0.1:0 that runs `answer` on every connection after reading its
/// request.
pub(crate) async fn upstream<F, Fut>(answer: F) -> std::net::SocketAddr
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

fn provider(addr: std::net::SocketAddr, timeout: Duration) -> HttpProvider<OpenAiWire> {
    HttpProvider::new(
        "hostile",
        &format!("http://{addr}/v1"),
        timeout,
        http_client(Duration::from_secs(5)).unwrap(),
        OpenAiWire::new(Secret::new("sk-upstream".into())),
    )
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages: vec![Message::text(Role::User, "hi")],
        ..ChatRequest::default()
    }
}

#[tokio::test]
async fn chat_fails_with_a_timeout_when_headers_miss_the_headers_deadline() {
    let addr = upstream(|mut socket| async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
    })
    .await;
    let provider = provider(addr, Duration::from_secs(30));
    let started = Instant::now();
    let err = provider
        .chat(&request(), "m", Some(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited too long"
    );
    assert_eq!(err.code, ErrorCode::Timeout);
    assert!(err.retryable());
    assert_eq!(
        err.message,
        "provider `hostile` sent no response headers within 200 ms"
    );
}

#[tokio::test]
async fn chat_within_the_headers_deadline_answers() {
    let addr = upstream(|mut socket| async move {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            COMPLETION.len()
        );
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(COMPLETION.as_bytes()).await;
    })
    .await;
    let provider = provider(addr, Duration::from_secs(30));
    let response = provider
        .chat(&request(), "m", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(response.text, "hi");
}

/// A listener whose accept queue is full: it never accepts, and connections fill its
/// backlog, so the kernel drops further SYNs and a connect hangs. Keep the returned
/// connections alive for as long as the listener must stay full.
fn full_backlog_listener() -> (
    std::net::SocketAddr,
    socket2::Socket,
    Vec<std::net::TcpStream>,
) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(1).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => return (addr, socket, fillers),
        }
    }
    panic!("the backlog of {addr} never filled");
}

#[tokio::test]
async fn connect_timeout_ms_of_the_provider_config_bounds_the_connect() {
    let (addr, _listener, _fillers) = full_backlog_listener();
    let config = crate::config::Config::parse(
        &format!(
            r#"
[[providers]]
name = "backlogged"
kind = "openai-compatible"
base_url = "http://{addr}/v1"
timeout_ms = 60000
connect_timeout_ms = 300

[[models]]
name = "m"
provider = "backlogged"
"#
        ),
        std::path::Path::new("test.toml"),
    )
    .unwrap();
    let registry = Registry::from_config(&config).unwrap();
    let route = registry.route("m").unwrap();
    let started = Instant::now();
    let call = route.provider.chat(&request(), "m", None);
    let err = tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .expect("the connect was not bounded by connect_timeout_ms")
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err.code, ErrorCode::Timeout);
    assert!(
        err.message
            .starts_with("timed out connecting to provider `backlogged`"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn registry_sends_the_models_max_output_tokens_upstream() {
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let _ = seen_tx.send(read_request(&mut socket).await);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            COMPLETION.len()
        );
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(COMPLETION.as_bytes()).await;
    });
    let config = crate::config::Config::parse(
        &format!(
            r#"
[[providers]]
name = "up"
kind = "openai-compatible"
base_url = "http://{addr}/v1"

[[models]]
name = "small"
provider = "up"
upstream = "small-v1"
max_output_tokens = 123
"#
        ),
        std::path::Path::new("test.toml"),
    )
    .unwrap();
    let registry = Registry::from_config(&config).unwrap();
    let route = registry.route("small").unwrap();
    route
        .provider
        .chat(&request(), route.model.upstream_id(), None)
        .await
        .unwrap();
    let sent = seen_rx.recv().await.unwrap();
    let body = &sent[sent.find("\r\n\r\n").unwrap() + 4..];
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["max_tokens"], 123);
    assert_eq!(body["model"], "small-v1");
}

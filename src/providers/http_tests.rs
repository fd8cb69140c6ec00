//! Tests of the HTTP executor against small hostile upstreams on 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::canonical::{Message, Role};
use crate::config::Secret;
use crate::providers::openai::OpenAiWire;
use crate::providers::{http_client, ProviderHeadroom, RateHints, Registry};
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
        HttpLimits::new(timeout),
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

/// A registry with one OpenAI-kind provider `oa` at an upstream answering every request
/// with `head` (status line and headers) and `body`; model `fast` is upstream `gpt-fast`.
async fn registry_answered_with(
    head: &'static str,
    body: &'static str,
    hints: Arc<RateHints>,
) -> Registry {
    let addr = upstream(move |mut socket| async move {
        let head = format!("{head}content-length: {}\r\n\r\n", body.len());
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(body.as_bytes()).await;
    })
    .await;
    let config = crate::config::Config::parse(
        &format!(
            r#"
[[providers]]
name = "oa"
kind = "openai"
base_url = "http://{addr}/v1"

[[models]]
name = "fast"
provider = "oa"
upstream = "gpt-fast"
"#
        ),
        std::path::Path::new("test.toml"),
    )
    .unwrap();
    Registry::from_config_with_hints(&config, hints).unwrap()
}

#[tokio::test]
async fn an_upstreams_remaining_tokens_are_recorded_for_provider_and_upstream_id() {
    let hints = Arc::new(RateHints::new());
    let registry = registry_answered_with(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-ratelimit-remaining-tokens: 0\r\nx-ratelimit-reset-tokens: 30s\r\n",
        COMPLETION,
        hints.clone(),
    )
    .await;
    assert!(Arc::ptr_eq(registry.rate_hints(), &hints));
    let route = registry.route("fast").unwrap();
    let response = route
        .provider
        .chat(&request(), route.model.upstream_id(), None)
        .await
        .unwrap();
    assert_eq!(response.text, "hi");
    let room = hints.headroom("oa", "gpt-fast");
    assert_eq!(room.tokens_remaining, Some(0));
    let reset = room.tokens_reset_in.unwrap();
    assert!(
        reset <= Duration::from_secs(30) && reset > Duration::from_secs(20),
        "{reset:?}"
    );
    assert_eq!(room.blocked_for, None);
    assert_eq!(
        hints.headroom("oa", "fast"),
        ProviderHeadroom::default(),
        "keyed by the upstream id, not the client-facing name"
    );
}

#[tokio::test]
async fn an_upstream_429_with_retry_after_blocks_the_model() {
    let hints = Arc::new(RateHints::new());
    let registry = registry_answered_with(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 7\r\n",
        r#"{"error":{"message":"slow down"}}"#,
        hints.clone(),
    )
    .await;
    let route = registry.route("fast").unwrap();
    let err = route
        .provider
        .chat(&request(), route.model.upstream_id(), None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RateLimited);
    let blocked = hints.headroom("oa", "gpt-fast").blocked_for.unwrap();
    assert!(
        blocked <= Duration::from_secs(7) && blocked > Duration::from_secs(5),
        "{blocked:?}"
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_is_a_502_naming_the_provider() {
    let (hit_tx, mut hit_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let target = upstream(move |_socket| {
        let _ = hit_tx.send("the redirect target was reached".into());
        async {}
    })
    .await;
    let addr = upstream(move |mut socket| async move {
        let head = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{target}/v1/chat/completions\r\ncontent-length: 0\r\n\r\n"
        );
        let _ = socket.write_all(head.as_bytes()).await;
    })
    .await;
    let err = provider(addr, Duration::from_secs(5))
        .chat(&request(), "m", None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadGateway);
    assert_eq!(err.status(), 502);
    assert_eq!(
        err.message,
        "provider `hostile` answered with a redirect (307), which is not followed"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(hit_rx.try_recv().is_err());
}

#[tokio::test]
async fn a_body_declared_larger_than_max_response_bytes_is_refused_unread() {
    let addr = upstream(|mut socket| async move {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10000000000\r\n\r\n{";
        let _ = socket.write_all(head.as_bytes()).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await;
    let mut limits = HttpLimits::new(Duration::from_secs(30));
    limits.max_response_bytes = 1024;
    let provider = HttpProvider::new(
        "hostile",
        &format!("http://{addr}/v1"),
        limits,
        http_client(Duration::from_secs(5)).unwrap(),
        OpenAiWire::new(Secret::new("sk-upstream".into())),
    );
    let err = provider.chat(&request(), "m", None).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadGateway);
    assert_eq!(
        err.message,
        "provider `hostile` sent a response larger than 1024 bytes (max_response_bytes)"
    );
}

#[tokio::test]
async fn an_endless_error_body_is_read_only_up_to_its_cap() {
    let addr = upstream(|mut socket| async move {
        let _ = socket
            .write_all(b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        let piece = format!("{:x}\r\n{}\r\n", 8192, "e".repeat(8192));
        while socket.write_all(piece.as_bytes()).await.is_ok() {}
    })
    .await;
    let started = Instant::now();
    let err = provider(addr, Duration::from_secs(30))
        .chat(&request(), "m", None)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(err.upstream_status, Some(500));
    assert!(err.message.len() < 2 * 1024, "{}", err.message.len());
}

/// An upstream streaming OpenAI chunks: one content event, then `tail` forever.
async fn streaming_upstream(tail: &'static str, every: Duration) -> std::net::SocketAddr {
    upstream(move |mut socket| async move {
        let first = r#"data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"}}]}"#;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let _ = socket.write_all(head.as_bytes()).await;
        let chunk = |text: &str| format!("{:x}\r\n{text}\r\n", text.len());
        let _ = socket.write_all(chunk(&format!("{first}\n\n")).as_bytes()).await;
        while socket.write_all(chunk(tail).as_bytes()).await.is_ok() {
            if !every.is_zero() {
                tokio::time::sleep(every).await;
            }
        }
    })
    .await
}

async fn stream_error(limits: HttpLimits, addr: std::net::SocketAddr) -> GatewayError {
    let provider = HttpProvider::new(
        "hostile",
        &format!("http://{addr}/v1"),
        limits,
        http_client(Duration::from_secs(5)).unwrap(),
        OpenAiWire::new(Secret::new("sk-upstream".into())),
    );
    let mut stream = provider.chat_stream(&request(), "m").await.unwrap();
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(item) = stream.next().await {
            if let Err(err) = item {
                return err;
            }
        }
        panic!("the stream ended without an error");
    });
    drained.await.expect("the stream never ended")
}

#[tokio::test]
async fn an_endless_stream_of_events_ends_at_stream_timeout() {
    let tail = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
    let addr = streaming_upstream(tail, Duration::from_millis(20)).await;
    let mut limits = HttpLimits::new(Duration::from_secs(30));
    limits.stream_timeout = Some(Duration::from_millis(500));
    let err = stream_error(limits, addr).await;
    assert_eq!(err.code, ErrorCode::Timeout);
    assert_eq!(
        err.message,
        "provider `hostile` stream exceeded its 500 ms deadline (stream_timeout_ms)"
    );
}

#[tokio::test]
async fn a_stream_of_comments_only_ends_at_the_idle_bound() {
    let addr = streaming_upstream(": keep-alive\n\n", Duration::from_millis(20)).await;
    let mut limits = HttpLimits::new(Duration::from_secs(30));
    limits.stream_idle = Duration::from_millis(300);
    let err = stream_error(limits, addr).await;
    assert_eq!(err.code, ErrorCode::Timeout);
    assert_eq!(
        err.message,
        "provider `hostile` sent no stream event for 300 ms"
    );
}

#[tokio::test]
async fn an_event_that_never_ends_fails_the_stream() {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let line = LINE.get_or_init(|| format!("data: {}\n", "x".repeat(16 * 1024)));
    let addr = streaming_upstream(line, Duration::ZERO).await;
    let err = stream_error(HttpLimits::new(Duration::from_secs(30)), addr).await;
    assert_eq!(err.code, ErrorCode::BadGateway);
    assert!(
        err.message
            .starts_with("provider `hostile`: stream event larger than"),
        "{}",
        err.message
    );
}

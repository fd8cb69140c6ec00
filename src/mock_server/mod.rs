//! The mock provider over real HTTP (`switchyard mock-provider --listen ADDR`).
//!
//! It speaks the OpenAI, Anthropic and Gemini wire formats by reading the JSON itself and
//! writing answers with `json!`, sharing no translation code with the gateway's adapters, so
//! it doubles as an independent check of them. Answers come from the same generator as the
//! in-process mock ([`crate::providers::mock::generate`]).
//!
//! Routes:
//! - `POST /v1/chat/completions`, `/chat/completions`: OpenAI chat, streaming included;
//! - `POST /v1/messages`, `/messages`: Anthropic messages (needs `x-api-key` and
//!   `anthropic-version`);
//! - `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`, also
//!   without `/v1beta`: Gemini (needs `x-goog-api-key`);
//! - `POST /v1/embeddings`, `/embeddings`; `GET /v1/models`, `/models`;
//! - control for tests: `GET /_mock/stats`, `GET|POST /_mock/config` (a partial
//!   [`MockSettings`] JSON), `GET /_mock/requests` (the last 50 requests: method, path,
//!   header names, body).
//!
//! Faults per [`MockSettings`]: `latency_ms` before answering, `hang` (accept, never answer),
//! `error_rate` × `error_status` in the wire's error JSON (`Retry-After: 1` on 429),
//! `first_token_delay_ms` before a stream's first frame, `chunk_interval_ms` between its
//! content frames.

mod anthropic;
mod body;
mod gemini;
mod openai;

use crate::config::MockSettings;
use crate::providers::mock::{
    count_words, embed_text, generate, roll_error, MockAnswer, MockPrompt, DEFAULT_EMBEDDING_DIMS,
};
use arc_swap::ArcSwap;
use base64::Engine;
use body::{MockBody, SseBody, SseWriter};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How many recent requests `GET /_mock/requests` keeps.
const RECENT_REQUESTS: usize = 50;

/// The largest request body the mock reads.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// How long shutdown waits for open connections before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What `GET /v1/models` answers.
const MODELS: &[u8] = br#"{"object":"list","data":[{"id":"mock","object":"model","created":0,"owned_by":"switchyard"}]}"#;

/// Counters behind `GET /_mock/stats`.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_cancelled: AtomicU64,
    errors_injected: AtomicU64,
}

/// One request kept for `GET /_mock/requests`.
struct Recorded {
    method: Method,
    uri: Uri,
    header_names: Vec<HeaderName>,
    body: Bytes,
}

/// State shared by every connection.
struct Shared {
    settings: ArcSwap<MockSettings>,
    stats: Stats,
    recent: Mutex<VecDeque<Recorded>>,
    next_id: AtomicU64,
}

impl Shared {
    fn remember_request(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: Bytes) {
        let entry = Recorded {
            method: method.clone(),
            uri: uri.clone(),
            header_names: headers.keys().cloned().collect(),
            body,
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= RECENT_REQUESTS {
            recent.pop_front();
        }
        recent.push_back(entry);
    }
}

/// Serve the mock on `listener` until `shutdown` resolves; open connections then get a short
/// grace period before they are closed.
pub async fn serve(
    listener: TcpListener,
    settings: MockSettings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        settings: ArcSwap::from_pointee(settings),
        stats: Stats::default(),
        recent: Mutex::new(VecDeque::with_capacity(RECENT_REQUESTS)),
        next_id: AtomicU64::new(1),
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %err, "mock server accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_shared = shared.clone();
        let service = hyper::service::service_fn(move |req| handle(conn_shared.clone(), req));
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        connections.spawn(graceful.watch(conn));
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
    connections.shutdown().await;
    Ok(())
}

/// A wire format the mock speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

/// Where a request goes.
enum Route<'p> {
    Chat(Wire),
    Gemini { model: &'p str, stream: bool },
    Embeddings,
    Models,
    NotFound,
}

fn route<'p>(method: &Method, path: &'p str) -> Route<'p> {
    let path = path.strip_prefix("/v1beta").unwrap_or(path);
    if let Some(rest) = path.strip_prefix("/models/") {
        if let Some((model, action)) = rest.rsplit_once(':') {
            if method == Method::POST {
                match action {
                    "generateContent" => {
                        return Route::Gemini {
                            model,
                            stream: false,
                        }
                    }
                    "streamGenerateContent" => {
                        return Route::Gemini {
                            model,
                            stream: true,
                        }
                    }
                    _ => {}
                }
            }
        }
        return Route::NotFound;
    }
    let path = path.strip_prefix("/v1").unwrap_or(path);
    match (method, path) {
        (&Method::POST, "/chat/completions") => Route::Chat(Wire::OpenAi),
        (&Method::POST, "/messages") => Route::Chat(Wire::Anthropic),
        (&Method::POST, "/embeddings") => Route::Embeddings,
        (&Method::GET, "/models") => Route::Models,
        _ => Route::NotFound,
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = req.into_parts();
    if let Some(control) = parts.uri.path().strip_prefix("/_mock/") {
        return Ok(control_endpoint(&shared, &parts.method, control, body).await);
    }
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let route = route(&parts.method, parts.uri.path());
    let wire = match route {
        Route::Chat(wire) => wire,
        Route::Gemini { .. } => Wire::Gemini,
        Route::Embeddings => Wire::OpenAi,
        Route::Models => {
            shared.remember_request(&parts.method, &parts.uri, &parts.headers, Bytes::new());
            return Ok(respond(StatusCode::OK, MockBody::full(MODELS)));
        }
        Route::NotFound => {
            let message = format!("mock has no route {} {}", parts.method, parts.uri.path());
            return Ok(error_response(Wire::OpenAi, 404, &message));
        }
    };
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(error_response(
                wire,
                413,
                "request body too large or unreadable",
            ))
        }
    };
    shared.remember_request(&parts.method, &parts.uri, &parts.headers, bytes.clone());
    let settings = shared.settings.load_full();
    let response = match route {
        Route::Embeddings => embeddings(&shared, &settings, &bytes).await,
        Route::Gemini { model, stream } => {
            let sse = parts
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
            let call = Call {
                wire,
                model,
                stream,
                sse,
            };
            chat(&shared, &settings, call, &parts.headers, &bytes).await
        }
        _ => {
            let call = Call {
                wire,
                model: "",
                stream: false,
                sse: true,
            };
            chat(&shared, &settings, call, &parts.headers, &bytes).await
        }
    };
    Ok(response)
}

/// One chat call: the wire, and for Gemini the model and streaming named by the path.
#[derive(Clone, Copy)]
struct Call<'p> {
    wire: Wire,
    model: &'p str,
    stream: bool,
    /// Gemini streams as SSE only with `alt=sse`; otherwise as one JSON array.
    sse: bool,
}

/// A request read enough to answer it.
struct Parsed<'a> {
    prompt: MockPrompt<'a>,
    stream: bool,
    /// OpenAI `stream_options.include_usage`.
    include_usage: bool,
}

/// What a wire renders an answer from.
struct Reply<'a> {
    id: &'a str,
    model: &'a str,
    created: u64,
    answer: &'a MockAnswer,
    include_usage: bool,
    chunks: u32,
}

/// A refusal in the wire's own error JSON.
struct WireError {
    status: u16,
    message: Cow<'static, str>,
}

impl WireError {
    fn bad(message: impl Into<Cow<'static, str>>) -> WireError {
        WireError {
            status: 400,
            message: message.into(),
        }
    }
}

async fn chat(
    shared: &Arc<Shared>,
    settings: &MockSettings,
    call: Call<'_>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<MockBody> {
    let checked = match call.wire {
        Wire::OpenAi => Ok(()),
        Wire::Anthropic => anthropic::check_headers(headers),
        Wire::Gemini => gemini::check_headers(headers),
    };
    if let Err(err) = checked {
        return error_response(call.wire, err.status, &err.message);
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(err) => {
            let message = format!("request body is not valid JSON: {err}");
            return error_response(call.wire, 400, &message);
        }
    };
    let parsed = match call.wire {
        Wire::OpenAi => openai::parse(&value),
        Wire::Anthropic => anthropic::parse(&value),
        Wire::Gemini => gemini::parse(&value, call.model, call.stream),
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return error_response(call.wire, err.status, &err.message),
    };
    if let Some(failure) = faults(shared, settings, call.wire).await {
        return failure;
    }
    let mut answer = generate(&parsed.prompt, settings.output_tokens);
    // Prompt-cache counts to report, as parts of the input (each wire writes them its way).
    let usage = &mut answer.usage;
    usage.cached_input_tokens = settings.cached_input_tokens.min(usage.input_tokens);
    usage.cache_write_input_tokens = settings
        .cache_write_input_tokens
        .min(usage.input_tokens - usage.cached_input_tokens);
    let id_number = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let id = match call.wire {
        Wire::OpenAi => format!("chatcmpl-mock{id_number}"),
        Wire::Anthropic => format!("msg_mock{id_number}"),
        Wire::Gemini => format!("mock{id_number}"),
    };
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let reply = Reply {
        id: &id,
        model: parsed.prompt.model,
        created,
        answer: &answer,
        include_usage: parsed.include_usage,
        chunks: settings.stream_chunks,
    };
    if !parsed.stream {
        let value = match call.wire {
            Wire::OpenAi => openai::response(&reply),
            Wire::Anthropic => anthropic::response(&reply),
            Wire::Gemini => gemini::response(&reply),
        };
        return json_response(StatusCode::OK, &value);
    }
    if !call.sse {
        // Gemini without `alt=sse`: the chunks as one JSON array.
        return json_response(StatusCode::OK, &Value::Array(gemini::chunks(&reply)));
    }
    let mut writer = SseWriter::new(call.wire == Wire::Gemini);
    match call.wire {
        Wire::OpenAi => openai::stream(&reply, &mut writer),
        Wire::Anthropic => anthropic::stream(&reply, &mut writer),
        Wire::Gemini => gemini::stream(&reply, &mut writer),
    }
    let sse = SseBody::new(
        shared.clone(),
        writer,
        Duration::from_millis(settings.first_token_delay_ms),
        Duration::from_millis(settings.chunk_interval_ms),
    );
    let mut response = respond(StatusCode::OK, MockBody::Sse(sse));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Latency, then a hang or an injected error when the settings ask for one.
async fn faults(
    shared: &Shared,
    settings: &MockSettings,
    wire: Wire,
) -> Option<Response<MockBody>> {
    if settings.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(settings.latency_ms)).await;
    }
    if settings.hang {
        std::future::pending::<()>().await;
    }
    if roll_error(settings.error_rate) {
        shared.stats.errors_injected.fetch_add(1, Ordering::Relaxed);
        let message = format!("mock injected error ({})", settings.error_status);
        return Some(error_response(wire, settings.error_status, &message));
    }
    None
}

async fn embeddings(shared: &Shared, settings: &MockSettings, body: &[u8]) -> Response<MockBody> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(err) => {
            let message = format!("request body is not valid JSON: {err}");
            return error_response(Wire::OpenAi, 400, &message);
        }
    };
    let Some(model) = value.get("model").and_then(Value::as_str) else {
        return error_response(Wire::OpenAi, 400, "you must provide a model parameter");
    };
    let inputs: Vec<Cow<'_, str>> = match value.get("input") {
        Some(Value::String(text)) => vec![Cow::Borrowed(text.as_str())],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Cow::Borrowed(text.as_str()),
                other => Cow::Owned(other.to_string()),
            })
            .collect(),
        _ => {
            return error_response(
                Wire::OpenAi,
                400,
                "'input' must be a string or a non-empty array",
            )
        }
    };
    let dims = value
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_EMBEDDING_DIMS, |d| d as usize);
    let base64 = value.get("encoding_format").and_then(Value::as_str) == Some("base64");
    if let Some(failure) = faults(shared, settings, Wire::OpenAi).await {
        return failure;
    }
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            tokens += count_words(text);
            let vector = embed_text(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let value = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    json_response(StatusCode::OK, &value)
}

async fn control_endpoint(
    shared: &Shared,
    method: &Method,
    what: &str,
    body: Incoming,
) -> Response<MockBody> {
    match (method, what) {
        (&Method::GET, "stats") => {
            let stats = &shared.stats;
            let value = json!({
                "requests": stats.requests.load(Ordering::Relaxed),
                "streams_started": stats.streams_started.load(Ordering::Relaxed),
                "streams_completed": stats.streams_completed.load(Ordering::Relaxed),
                "streams_cancelled": stats.streams_cancelled.load(Ordering::Relaxed),
                "errors_injected": stats.errors_injected.load(Ordering::Relaxed),
            });
            json_response(StatusCode::OK, &value)
        }
        (&Method::GET, "config") => settings_response(&shared.settings.load()),
        (&Method::POST, "config") => {
            let bytes = match Limited::new(body, MAX_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return error_response(Wire::OpenAi, 400, "unreadable body"),
            };
            match merge_settings(&shared.settings.load(), &bytes) {
                Ok(settings) => {
                    let response = settings_response(&settings);
                    shared.settings.store(Arc::new(settings));
                    response
                }
                Err(message) => error_response(Wire::OpenAi, 400, &message),
            }
        }
        (&Method::GET, "requests") => {
            let recent = shared.recent.lock().unwrap_or_else(|e| e.into_inner());
            let list: Vec<Value> = recent
                .iter()
                .map(|r| {
                    let body = serde_json::from_slice::<Value>(&r.body)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
                    let headers: Vec<&str> = r.header_names.iter().map(HeaderName::as_str).collect();
                    let path = r.uri.path_and_query().map_or("", |p| p.as_str());
                    json!({"method": r.method.as_str(), "path": path, "headers": headers, "body": body})
                })
                .collect();
            drop(recent);
            json_response(StatusCode::OK, &Value::Array(list))
        }
        _ => error_response(Wire::OpenAi, 404, "unknown mock control endpoint"),
    }
}

/// `current` with the fields of the JSON object in `patch` replaced.
fn merge_settings(current: &MockSettings, patch: &[u8]) -> Result<MockSettings, String> {
    let patch: Value =
        serde_json::from_slice(patch).map_err(|err| format!("invalid JSON: {err}"))?;
    let Value::Object(patch) = patch else {
        return Err("mock config must be a JSON object".into());
    };
    let mut merged = serde_json::to_value(current).map_err(|err| err.to_string())?;
    if let Value::Object(fields) = &mut merged {
        fields.extend(patch);
    }
    let settings: MockSettings =
        serde_json::from_value(merged).map_err(|err| format!("invalid mock config: {err}"))?;
    if !(0.0..=1.0).contains(&settings.error_rate) {
        return Err("error_rate must be between 0.0 and 1.0".into());
    }
    Ok(settings)
}

fn settings_response(settings: &MockSettings) -> Response<MockBody> {
    match serde_json::to_value(settings) {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(err) => error_response(Wire::OpenAi, 500, &err.to_string()),
    }
}

fn respond(status: StatusCode, body: MockBody) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<MockBody> {
    let mut response = respond(status, MockBody::json(value));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error in `wire`'s JSON; 429 carries `Retry-After: 1`.
fn error_response(wire: Wire, status: u16, message: &str) -> Response<MockBody> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let value = match wire {
        Wire::OpenAi => openai::error(code.as_u16(), message),
        Wire::Anthropic => anthropic::error(code.as_u16(), message),
        Wire::Gemini => gemini::error(code.as_u16(), message),
    };
    let mut response = json_response(code, &value);
    if code == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Text of a string, or of the `text` items (type `text` or untyped) of an array, joined
/// with newlines; borrowed when there is one piece.
fn joined_text(value: Option<&Value>) -> Cow<'_, str> {
    match value {
        Some(Value::String(text)) => Cow::Borrowed(text.as_str()),
        Some(Value::Array(items)) => {
            let mut texts = items.iter().filter_map(|item| {
                let kind = item.get("type").and_then(Value::as_str);
                match kind {
                    None | Some("text") => item.get("text").and_then(Value::as_str),
                    Some(_) => None,
                }
            });
            let Some(first) = texts.next() else {
                return Cow::Borrowed("");
            };
            let Some(second) = texts.next() else {
                return Cow::Borrowed(first);
            };
            let mut out = String::with_capacity(first.len() + second.len() + 1);
            out.push_str(first);
            for text in std::iter::once(second).chain(texts) {
                out.push('\n');
                out.push_str(text);
            }
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(""),
    }
}

/// A `u32` field, or a 400 naming it when it is there but not a non-negative integer.
fn optional_u32(value: &Value, field: &'static str) -> Result<Option<u32>, WireError> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|n| Some(n.min(u64::from(u32::MAX)) as u32))
            .ok_or_else(|| WireError::bad(format!("{field}: must be a non-negative integer"))),
    }
}

/// A 400 when the number `field` is present and outside `range`.
fn check_range(value: &Value, field: &'static str, max: f64) -> Result<(), WireError> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if (0.0..=max).contains(&x) => Ok(()),
            _ => Err(WireError::bad(format!(
                "{field}: must be a number between 0 and {max}"
            ))),
        },
    }
}

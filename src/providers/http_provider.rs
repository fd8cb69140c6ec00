//! The HTTP executor: runs a [`Wire`] adapter over reqwest, for whole answers and streams.
//!
//! Everything an upstream sends is bounded ([`HttpLimits`]): redirects are not followed (the
//! client is built so, see [`super::http_client`]) and a 3xx is a 502; a whole body may not
//! exceed `max_response_bytes`, an error body is read for its message up to
//! [`MAX_ERROR_BODY_BYTES`], one SSE event may not exceed [`super::sse::MAX_EVENT_BYTES`],
//! and a stream ends with an error when no event came for `stream_idle` or when the whole
//! stream outlives `stream_timeout`.
//!
//! Every upstream response's headers, success or error, go to the provider's
//! [`RateHints`] (when it has one) under (provider name, upstream model id).

use super::rate_hints::RateHints;
use super::sse::SseParser;
use super::{
    headers_timeout_error, parse_retry_after, status_error, timeout_error, transport_error,
    EventStream, Provider, StreamDecoder, Target, Wire, WireRequest,
};
use crate::canonical::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, StreamEvent,
};
use crate::config::ProviderConfig;
use crate::error::{ErrorCode, GatewayError};
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use http::{HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The most of an upstream error body read for its message; the rest is not read.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Bounds on one provider's exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Until the response headers, and again for reading a whole body (`timeout_ms`).
    pub timeout: Duration,
    /// Largest whole (non-streaming) body accepted (`max_response_bytes`).
    pub max_response_bytes: usize,
    /// Longest gap between two SSE events of a stream (`stream_idle_ms`, else `timeout_ms`).
    pub stream_idle: Duration,
    /// Deadline for a whole stream, from the request on (`stream_timeout_ms`).
    pub stream_timeout: Option<Duration>,
}

impl HttpLimits {
    /// Only a timeout: the default caps, the stream idle bound equal to `timeout`, and no
    /// whole-stream deadline.
    pub fn new(timeout: Duration) -> Self {
        HttpLimits {
            timeout,
            max_response_bytes: 32 * 1024 * 1024,
            stream_idle: timeout,
            stream_timeout: None,
        }
    }

    /// The limits a `[[providers]]` entry sets.
    pub fn from_config(p: &ProviderConfig) -> Self {
        let timeout = Duration::from_millis(p.timeout_ms);
        HttpLimits {
            timeout,
            max_response_bytes: usize::try_from(p.max_response_bytes).unwrap_or(usize::MAX),
            stream_idle: p.stream_idle_ms.map_or(timeout, Duration::from_millis),
            stream_timeout: p.stream_timeout_ms.map(Duration::from_millis),
        }
    }
}

/// Runs a [`Wire`] adapter over HTTP.
pub struct HttpProvider<W: Wire> {
    name: Arc<str>,
    base_url: String,
    limits: HttpLimits,
    client: reqwest::Client,
    wire: Arc<W>,
    /// `max_output_tokens` of this provider's models, by upstream id.
    output_limits: HashMap<String, u32>,
    /// Parsed upstream URLs by path: parsing (with IDNA) on every request costs microseconds.
    urls: std::sync::RwLock<HashMap<String, reqwest::Url>>,
    /// Where upstream rate-limit headers are recorded (none: not recorded).
    hints: Option<Arc<RateHints>>,
}

/// Distinct paths remembered per provider (Gemini's include the model name).
const MAX_CACHED_URLS: usize = 1024;

impl<W: Wire> HttpProvider<W> {
    /// A provider named `name` at `base_url` (no trailing slash needed), bounded by
    /// `limits`. `client` must not follow redirects ([`super::http_client`]).
    pub fn new(
        name: &str,
        base_url: &str,
        limits: HttpLimits,
        client: reqwest::Client,
        wire: W,
    ) -> Self {
        HttpProvider {
            name: name.into(),
            base_url: base_url.trim_end_matches('/').to_string(),
            limits,
            client,
            wire: Arc::new(wire),
            output_limits: HashMap::new(),
            urls: std::sync::RwLock::new(HashMap::new()),
            hints: None,
        }
    }

    /// Record what every upstream response says about rate limits into `hints`, under this
    /// provider's name and the upstream model id.
    pub fn with_rate_hints(mut self, hints: Arc<RateHints>) -> Self {
        self.hints = Some(hints);
        self
    }

    /// Cap `max_tokens` per upstream model id (the `[[models]]` `max_output_tokens` of the
    /// models this provider serves).
    pub fn with_output_limits(mut self, limits: HashMap<String, u32>) -> Self {
        self.output_limits = limits;
        self
    }

    fn target<'a>(&self, upstream_model: &'a str) -> Target<'a> {
        Target::new(upstream_model)
            .with_max_output_tokens(self.output_limits.get(upstream_model).copied())
    }

    /// Send a built request and parse the whole answer with `parse`. `headers_deadline`,
    /// when shorter than the provider's `timeout`, bounds the wait for the response
    /// headers; the body is then read within `timeout` and up to `max_response_bytes`.
    fn call_json<T: Send + 'static>(
        &self,
        wire_req: Result<WireRequest, GatewayError>,
        upstream_model: &str,
        headers_deadline: Option<Duration>,
        parse: fn(&W, &[u8]) -> Result<T, GatewayError>,
    ) -> BoxFuture<'static, Result<T, GatewayError>> {
        let wire_req = match wire_req {
            Ok(r) => r,
            Err(err) => return Box::pin(async move { Err(err) }),
        };
        let send = self.send(wire_req, upstream_model, headers_deadline);
        let (wire, name, limits) = (self.wire.clone(), self.name.clone(), self.limits);
        Box::pin(async move {
            let response = send.await?;
            let cap = limits.max_response_bytes;
            let body = tokio::time::timeout(limits.timeout, read_body(response, cap))
                .await
                .map_err(|_| timeout_error(&name, limits.timeout))?
                .map_err(|err| err.into_error(&name, cap))?;
            parse(&wire, &body)
        })
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, GatewayError> {
        if let Some(url) = self
            .urls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
        {
            return Ok(url.clone());
        }
        let url = reqwest::Url::parse(&format!("{}{}", self.base_url, path)).map_err(|err| {
            GatewayError::internal(format!(
                "provider `{}` has an invalid url: {err}",
                self.name
            ))
        })?;
        let mut urls = self.urls.write().unwrap_or_else(|e| e.into_inner());
        if urls.len() < MAX_CACHED_URLS {
            urls.insert(path.to_string(), url.clone());
        }
        Ok(url)
    }

    /// Send the request and wait for its status and headers: within `timeout`, or within
    /// `headers_deadline` when that is shorter (then a timeout names the missing headers).
    /// A non-success status (a redirect included) becomes the provider's error. The
    /// response's rate-limit headers are recorded for `upstream_model` either way.
    fn send(
        &self,
        wire_req: WireRequest,
        upstream_model: &str,
        headers_deadline: Option<Duration>,
    ) -> impl std::future::Future<Output = Result<reqwest::Response, GatewayError>> + Send + 'static
    {
        let url = self.url(&wire_req.path);
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (k, v) in wire_req.headers {
            headers.insert(k, v);
        }
        let builder = url.map(|url| self.client.post(url).headers(headers).body(wire_req.body));
        let name = self.name.clone();
        let wire = self.wire.clone();
        let timeout = self.limits.timeout;
        let hints = self
            .hints
            .clone()
            .map(|hints| (hints, Box::<str>::from(upstream_model)));
        async move {
            let builder = builder?;
            let response = match headers_deadline.filter(|limit| *limit < timeout) {
                Some(limit) => tokio::time::timeout(limit, builder.send())
                    .await
                    .map_err(|_| headers_timeout_error(&name, limit))?,
                None => tokio::time::timeout(timeout, builder.send())
                    .await
                    .map_err(|_| timeout_error(&name, timeout))?,
            }
            .map_err(|err| transport_error(&name, err))?;
            if let Some((hints, upstream)) = &hints {
                let status = response.status().as_u16();
                hints.observe(&name, upstream, status, response.headers());
            }
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status().as_u16();
            let retry_after = parse_retry_after(response.headers());
            let body = if response.status().is_redirection() {
                Vec::new()
            } else {
                tokio::time::timeout(timeout, read_prefix(response, MAX_ERROR_BODY_BYTES))
                    .await
                    .unwrap_or_default()
            };
            Err(status_error(
                &name,
                status,
                &wire.error_message(&body),
                retry_after,
            ))
        }
    }
}

/// Why a whole body could not be read.
enum BodyError {
    /// Longer than the cap (said by `content-length`, or seen while reading).
    TooLarge,
    /// The connection failed.
    Transport(reqwest::Error),
}

impl BodyError {
    fn into_error(self, provider: &str, cap: usize) -> GatewayError {
        match self {
            BodyError::TooLarge => GatewayError::upstream(
                ErrorCode::BadGateway,
                format!(
                    "provider `{provider}` sent a response larger than {cap} bytes (max_response_bytes)"
                ),
            ),
            BodyError::Transport(err) => transport_error(provider, err),
        }
    }
}

/// Read a whole body chunk by chunk, stopping as soon as it exceeds `cap` bytes.
async fn read_body(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    let declared = response.content_length().unwrap_or(0);
    if declared > cap as u64 {
        return Err(BodyError::TooLarge);
    }
    // Reserve what is declared, up to 1 MiB: a declared length is a claim, not bytes.
    let mut body = Vec::with_capacity((declared as usize).min(cap).min(1024 * 1024));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if chunk.len() > cap - body.len() {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first `cap` bytes of a body (less if it is shorter or the connection fails); the rest
/// is not read.
async fn read_prefix(mut response: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    body
}

impl<W: Wire> Provider for HttpProvider<W> {
    fn chat(
        &self,
        req: &ChatRequest,
        upstream_model: &str,
        headers_deadline: Option<Duration>,
    ) -> BoxFuture<'static, Result<ChatResponse, GatewayError>> {
        self.call_json(
            self.wire
                .chat_request(req, &self.target(upstream_model), false),
            upstream_model,
            headers_deadline,
            W::parse_chat,
        )
    }

    fn chat_stream(
        &self,
        req: &ChatRequest,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EventStream, GatewayError>> {
        let wire_req = match self
            .wire
            .chat_request(req, &self.target(upstream_model), true)
        {
            Ok(r) => r,
            Err(err) => return Box::pin(async move { Err(err) }),
        };
        let send = self.send(wire_req, upstream_model, None);
        let decoder = self.wire.stream_decoder(upstream_model);
        let name = self.name.clone();
        let limits = self.limits;
        Box::pin(async move {
            let bounds = StreamBounds::start(&limits);
            let response = match bounds.deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, send)
                    .await
                    .map_err(|_| bounds.overall_error(&name))??,
                None => send.await?,
            };
            Ok(decode_sse(name, response.bytes_stream(), decoder, bounds))
        })
    }

    fn embed(
        &self,
        req: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EmbeddingsResponse, GatewayError>> {
        self.call_json(
            self.wire.embeddings_request(req, upstream_model),
            upstream_model,
            None,
            W::parse_embeddings,
        )
    }
}

/// The time bounds of one stream.
#[derive(Debug, Clone, Copy)]
struct StreamBounds {
    /// Longest gap between two SSE events.
    idle: Duration,
    /// The whole stream's deadline and its length, when there is one.
    deadline: Option<Instant>,
    overall: Duration,
}

impl StreamBounds {
    /// Bounds of a stream whose request starts now.
    fn start(limits: &HttpLimits) -> Self {
        StreamBounds {
            idle: limits.stream_idle,
            deadline: limits.stream_timeout.map(|t| Instant::now() + t),
            overall: limits.stream_timeout.unwrap_or_default(),
        }
    }

    fn overall_error(&self, provider: &str) -> GatewayError {
        GatewayError::upstream(
            ErrorCode::Timeout,
            format!(
                "provider `{provider}` stream exceeded its {} ms deadline (stream_timeout_ms)",
                self.overall.as_millis()
            ),
        )
    }

    fn idle_error(&self, provider: &str) -> GatewayError {
        GatewayError::upstream(
            ErrorCode::Timeout,
            format!(
                "provider `{provider}` sent no stream event for {} ms",
                self.idle.as_millis()
            ),
        )
    }
}

/// Turn an upstream byte stream into canonical events, chunk by chunk, within `bounds`.
/// Dropping the returned stream drops the upstream response, which closes its connection
/// (cancel).
fn decode_sse<S>(
    name: Arc<str>,
    bytes: S,
    decoder: Box<dyn StreamDecoder>,
    bounds: StreamBounds,
) -> EventStream
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
{
    struct State {
        bytes: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
        parser: SseParser,
        decoder: Box<dyn StreamDecoder>,
        name: Arc<str>,
        last_event: Instant,
        done: bool,
    }
    let state = State {
        bytes: bytes.boxed(),
        parser: SseParser::new(),
        decoder,
        name,
        last_event: Instant::now(),
        done: false,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let mut sse = Vec::new();
            let mut failure = None;
            let mut ended = false;
            let idle_deadline = st.last_event + bounds.idle;
            let (until, overall) = match bounds.deadline {
                Some(deadline) if deadline <= idle_deadline => (deadline, true),
                _ => (idle_deadline, false),
            };
            match tokio::time::timeout_at(until, st.bytes.next()).await {
                Err(_) if overall => failure = Some(bounds.overall_error(&st.name)),
                Err(_) => failure = Some(bounds.idle_error(&st.name)),
                Ok(Some(Err(err))) => failure = Some(transport_error(&st.name, err)),
                Ok(Some(Ok(chunk))) => {
                    if let Err(msg) = st.parser.push(&chunk, &mut sse) {
                        failure = Some(GatewayError::upstream(
                            ErrorCode::BadGateway,
                            format!("provider `{}`: {msg}", st.name),
                        ));
                    }
                    if !sse.is_empty() {
                        st.last_event = Instant::now();
                    }
                }
                Ok(None) => {
                    st.parser.finish(&mut sse);
                    ended = true;
                }
            }
            let mut out = Vec::new();
            if failure.is_none() {
                for ev in &sse {
                    if let Err(err) = st.decoder.decode(ev, &mut out) {
                        failure = Some(err);
                        break;
                    }
                }
            }
            if failure.is_none() && ended {
                if let Err(err) = st.decoder.finish(&mut out) {
                    failure = Some(err);
                }
            }
            let mut items: Vec<Result<StreamEvent, GatewayError>> =
                out.into_iter().map(Ok).collect();
            if let Some(err) = failure {
                items.push(Err(err));
                st.done = true;
            }
            st.done |= ended;
            if !items.is_empty() || st.done {
                return Some((futures_util::stream::iter(items), st));
            }
        }
    })
    .flatten()
    .boxed()
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;

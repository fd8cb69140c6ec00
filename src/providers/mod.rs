//! Providers: the `Provider` trait, the HTTP executor shared by wire adapters, and the registry.
//!
//! A wire adapter (`openai.rs`, `anthropic.rs`, `gemini.rs`) is pure translation between
//! canonical types and one provider's wire format ([`Wire`]); [`HttpProvider`] runs it over
//! reqwest. The in-process mock implements [`Provider`] directly. Adding a provider means one
//! file and one line in [`build_provider`].

pub mod anthropic;
pub mod gemini;
mod http_provider;
pub mod mock;
pub mod openai;
pub mod rate_hints;
pub mod sse;

pub use http_provider::{HttpLimits, HttpProvider, MAX_ERROR_BODY_BYTES};
pub use rate_hints::{ProviderHeadroom, RateHints};

use crate::canonical::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, StreamEvent,
};
use crate::config::{Config, ModelConfig, ProviderConfig, ProviderKind, Secret};
use crate::error::{ErrorCode, GatewayError};
use futures_util::future::BoxFuture;

use http::{HeaderMap, HeaderName, HeaderValue};
use sse::SseEvent;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A stream of canonical events from a provider.
pub type EventStream = futures_util::stream::BoxStream<'static, Result<StreamEvent, GatewayError>>;

/// Something that answers canonical chat requests.
pub trait Provider: Send + Sync + 'static {
    /// Answer `req` with the model `upstream_model`, all at once.
    ///
    /// `headers_deadline` bounds the time until the upstream's response headers (for the
    /// in-process mock: its latency or hang before answering); past it the call fails with a
    /// retryable [`ErrorCode::Timeout`] ([`headers_timeout_error`]). `None` leaves only the
    /// provider's own `timeout_ms`. This is how a route's `first_token_ms` applies to a
    /// non-streaming request.
    fn chat(
        &self,
        req: &ChatRequest,
        upstream_model: &str,
        headers_deadline: Option<Duration>,
    ) -> BoxFuture<'static, Result<ChatResponse, GatewayError>>;

    /// Answer as a stream. The future resolves once the provider has accepted the request
    /// (status and headers received); errors after that arrive in the stream.
    fn chat_stream(
        &self,
        req: &ChatRequest,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EventStream, GatewayError>>;

    /// Embed texts; providers without embeddings answer a clear 400.
    fn embed(
        &self,
        req: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EmbeddingsResponse, GatewayError>>;
}

/// The model a wire adapter calls: the id sent upstream and its output limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The model id sent upstream.
    pub upstream_id: &'a str,
    /// The model's `max_output_tokens` from `[[models]]`, if set.
    pub max_output_tokens: Option<u32>,
}

impl<'a> Target<'a> {
    /// A target with no output limit.
    pub fn new(upstream_id: &'a str) -> Self {
        Target {
            upstream_id,
            max_output_tokens: None,
        }
    }

    /// The same target with the model's output limit.
    pub fn with_max_output_tokens(mut self, limit: Option<u32>) -> Self {
        self.max_output_tokens = limit;
        self
    }

    /// The `max_tokens` to send for a request asking `requested`: capped by the model's
    /// limit, or that limit when the request names none (`None` when neither does).
    pub fn max_tokens(&self, requested: Option<u32>) -> Option<u32> {
        match (requested, self.max_output_tokens) {
            (Some(asked), Some(limit)) => Some(asked.min(limit)),
            (asked, limit) => asked.or(limit),
        }
    }
}

/// An upstream HTTP request built by a wire adapter.
#[derive(Debug)]
pub struct WireRequest {
    /// Appended to the provider's base URL (starts with `/`).
    pub path: String,
    /// Extra headers (auth, versions); content-type JSON is always set.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// Turns upstream SSE events into canonical stream events.
pub trait StreamDecoder: Send + 'static {
    /// Decode one event, appending what it means to `out`.
    fn decode(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), GatewayError>;

    /// The upstream stream ended; emit anything still owed (or fail if it ended early).
    fn finish(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), GatewayError> {
        Ok(())
    }
}

/// Pure translation between canonical types and one provider's wire format.
pub trait Wire: Send + Sync + 'static {
    /// The provider kind, for messages (`openai`, `anthropic` …).
    fn kind(&self) -> &'static str;

    /// Build the chat call for `target`. A field this provider cannot honour is a 400
    /// naming it. `max_tokens` is the request's, capped by the target's
    /// `max_output_tokens`, or that limit when the request names none
    /// ([`Target::max_tokens`]).
    fn chat_request(
        &self,
        req: &ChatRequest,
        target: &Target<'_>,
        stream: bool,
    ) -> Result<WireRequest, GatewayError>;

    /// Parse a successful non-streaming body.
    fn parse_chat(&self, body: &[u8]) -> Result<ChatResponse, GatewayError>;

    /// A decoder for one streamed answer.
    fn stream_decoder(&self, upstream_model: &str) -> Box<dyn StreamDecoder>;

    /// The human message inside a provider's error body (falls back to the raw text).
    fn error_message(&self, body: &[u8]) -> String {
        error_message_from_json(body)
    }

    /// Build an embeddings call.
    fn embeddings_request(
        &self,
        _req: &EmbeddingsRequest,
        _upstream_model: &str,
    ) -> Result<WireRequest, GatewayError> {
        Err(GatewayError::invalid(
            "model",
            format!("provider kind `{}` does not offer embeddings", self.kind()),
        ))
    }

    /// Parse an embeddings answer.
    fn parse_embeddings(&self, _body: &[u8]) -> Result<EmbeddingsResponse, GatewayError> {
        Err(GatewayError::upstream(
            ErrorCode::BadGateway,
            "embeddings not supported",
        ))
    }
}

/// Append a system message's text to `system` (blank-line separated), for providers with a
/// separate system field; images there are a 400 naming the message.
pub fn push_system_text(
    system: &mut String,
    message: &crate::canonical::Message,
    at: usize,
    kind: &str,
) -> Result<(), GatewayError> {
    if message
        .content
        .iter()
        .any(|p| matches!(p, crate::canonical::ContentPart::Image { .. }))
    {
        return Err(GatewayError::invalid(
            format!("messages[{at}].content"),
            format!("images in system messages are not supported by provider kind {kind}"),
        ));
    }
    let text = message.joined_text();
    if !text.is_empty() {
        if !system.is_empty() {
            system.push_str("\n\n");
        }
        system.push_str(&text);
    }
    Ok(())
}

/// A tool call's arguments as a JSON value, for providers that take an object (Anthropic
/// `input`, Gemini `args`); empty arguments are `{}`, invalid JSON a 400 naming the message.
pub fn tool_arguments_json(
    call: &crate::canonical::ToolCall,
    at: usize,
) -> Result<serde_json::Value, GatewayError> {
    if call.arguments.trim().is_empty() {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_str(&call.arguments).map_err(|err| {
        GatewayError::invalid(
            format!("messages[{at}].tool_calls"),
            format!(
                "arguments of tool call `{}` are not valid JSON: {err}",
                call.id
            ),
        )
    })
}

/// Reads `error.message` (OpenAI, Anthropic, Gemini all nest it so) or the raw text.
pub fn error_message_from_json(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(msg) = value.pointer("/error/message").and_then(|m| m.as_str()) {
            return msg.to_string();
        }
        if let Some(msg) = value.get("message").and_then(|m| m.as_str()) {
            return msg.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    text.chars().take(500).collect()
}

/// 504: the provider took longer than allowed.
pub fn timeout_error(provider: &str, after: Duration) -> GatewayError {
    GatewayError::upstream(
        ErrorCode::Timeout,
        format!(
            "provider `{provider}` did not answer within {} ms",
            after.as_millis()
        ),
    )
}

/// 504: the provider sent no response headers within the caller's headers deadline (a
/// non-streaming request's first-token deadline).
pub fn headers_timeout_error(provider: &str, after: Duration) -> GatewayError {
    GatewayError::upstream(
        ErrorCode::Timeout,
        format!(
            "provider `{provider}` sent no response headers within {} ms",
            after.as_millis()
        ),
    )
}

/// 502/504 from a transport failure; the URL is stripped so nothing sensitive leaks.
pub fn transport_error(provider: &str, err: reqwest::Error) -> GatewayError {
    let code = if err.is_timeout() {
        ErrorCode::Timeout
    } else {
        ErrorCode::BadGateway
    };
    let what = if err.is_connect() && err.is_timeout() {
        "timed out connecting to"
    } else if err.is_connect() {
        "cannot connect to"
    } else if err.is_timeout() {
        "timed out talking to"
    } else {
        "transport error from"
    };
    let err = err.without_url();
    GatewayError::upstream(code, format!("{what} provider `{provider}`: {err}"))
}

/// Map a provider's error status to ours.
pub fn status_error(
    provider: &str,
    status: u16,
    message: &str,
    retry_after: Option<Duration>,
) -> GatewayError {
    let (code, text) = match status {
        429 => (
            ErrorCode::RateLimited,
            format!("provider `{provider}` is rate limiting: {message}"),
        ),
        300..=399 => (
            ErrorCode::BadGateway,
            format!(
                "provider `{provider}` answered with a redirect ({status}), which is not followed"
            ),
        ),
        401 | 403 => (
            ErrorCode::BadGateway,
            format!("provider `{provider}` rejected the gateway's credentials ({status})"),
        ),
        408 => (
            ErrorCode::Timeout,
            format!("provider `{provider}` timed out: {message}"),
        ),
        400..=499 => (
            ErrorCode::InvalidRequest,
            format!("provider `{provider}` rejected the request: {message}"),
        ),
        _ => (
            ErrorCode::BadGateway,
            format!("provider `{provider}` failed with {status}: {message}"),
        ),
    };
    GatewayError::upstream(code, text)
        .with_upstream_status(status)
        .with_retry_after(retry_after)
}

/// `Retry-After` in seconds (HTTP dates are rare from LLM providers and are ignored).
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// 502 for an upstream body we cannot parse.
pub fn unparseable(provider_kind: &str, err: impl std::fmt::Display) -> GatewayError {
    GatewayError::upstream(
        ErrorCode::BadGateway,
        format!("unparseable response from {provider_kind} provider: {err}"),
    )
}

/// A header value from config/env text, as a 500 if it holds bytes HTTP forbids.
pub fn header_value(value: &str) -> Result<HeaderValue, GatewayError> {
    HeaderValue::from_str(value)
        .map_err(|_| GatewayError::internal("provider credential is not a valid header value"))
}

/// One configured model, resolved to its provider.
#[derive(Clone)]
pub struct Route {
    pub model: Arc<ModelConfig>,
    pub provider_name: Arc<str>,
    pub provider: Arc<dyn Provider>,
}

/// Every provider and model of a config, built once at start (and once more per request
/// thread, all sharing one [`RateHints`]).
#[derive(Clone)]
pub struct Registry {
    routes: HashMap<String, Route>,
    /// Model names in config order (for `GET /v1/models`).
    pub model_names: Vec<String>,
    hints: Arc<RateHints>,
}

impl Registry {
    /// Build every provider and index models by name, with a fresh [`RateHints`]. Providers
    /// share one pooled HTTP client per distinct `connect_timeout_ms`.
    pub fn from_config(config: &Config) -> Result<Registry, GatewayError> {
        Self::from_config_with_hints(config, Arc::new(RateHints::new()))
    }

    /// [`Self::from_config`], with HTTP providers recording what upstreams say about their
    /// rate limits into `hints` (shared with every other registry built with it).
    pub fn from_config_with_hints(
        config: &Config,
        hints: Arc<RateHints>,
    ) -> Result<Registry, GatewayError> {
        let mut clients: HashMap<u64, reqwest::Client> = HashMap::new();
        let mut providers: HashMap<&str, Arc<dyn Provider>> = HashMap::new();
        for p in &config.providers {
            let client = match clients.get(&p.connect_timeout_ms) {
                Some(client) => client.clone(),
                None => {
                    let client = http_client(Duration::from_millis(p.connect_timeout_ms))?;
                    clients.insert(p.connect_timeout_ms, client.clone());
                    client
                }
            };
            let limits = output_limits(config, &p.name);
            providers.insert(p.name.as_str(), build_provider(p, client, limits, &hints)?);
        }
        let mut routes = HashMap::new();
        let mut model_names = Vec::new();
        for m in &config.models {
            let provider = providers.get(m.provider.as_str()).cloned().ok_or_else(|| {
                GatewayError::internal(format!("model {} names unknown provider", m.name))
            })?;
            model_names.push(m.name.clone());
            routes.insert(
                m.name.clone(),
                Route {
                    model: Arc::new(m.clone()),
                    provider_name: m.provider.as_str().into(),
                    provider,
                },
            );
        }
        Ok(Registry {
            routes,
            model_names,
            hints,
        })
    }

    /// The rate hints this registry's HTTP providers record into.
    pub fn rate_hints(&self) -> &Arc<RateHints> {
        &self.hints
    }

    /// The route for a client-facing model name.
    pub fn route(&self, model: &str) -> Option<&Route> {
        self.routes.get(model)
    }

    /// Serve every model of the provider named `provider_name` with `provider` instead (an
    /// embedder's own provider, or a scripted one in tests). Returns how many models moved.
    pub fn replace_provider(&mut self, provider_name: &str, provider: Arc<dyn Provider>) -> usize {
        let mut moved = 0;
        for route in self.routes.values_mut() {
            if &*route.provider_name == provider_name {
                route.provider = provider.clone();
                moved += 1;
            }
        }
        moved
    }
}

/// A pooled upstream client: rustls, TCP_NODELAY, keep-alive, `connect_timeout` for each
/// new connection (TCP and TLS handshakes), and no redirects followed: a redirect would send
/// the provider key and the prompt to whatever host it names, so a 3xx is an error instead.
pub fn http_client(connect_timeout: Duration) -> Result<reqwest::Client, GatewayError> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|err| GatewayError::internal(format!("cannot build http client: {err}")))
}

fn api_key(p: &ProviderConfig) -> Secret<String> {
    Secret::new(
        p.api_key_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok())
            .unwrap_or_default(),
    )
}

/// The `max_output_tokens` of the models `provider` serves, by upstream id (when two models
/// share an upstream id, the smaller limit applies).
fn output_limits(config: &Config, provider: &str) -> HashMap<String, u32> {
    let mut limits: HashMap<String, u32> = HashMap::new();
    for m in config.models.iter().filter(|m| m.provider == provider) {
        if let Some(limit) = m.max_output_tokens {
            limits
                .entry(m.upstream_id().to_string())
                .and_modify(|l| *l = (*l).min(limit))
                .or_insert(limit);
        }
    }
    limits
}

/// The registry line per provider kind. `output_limits` caps `max_tokens` per upstream
/// model id; HTTP providers record upstream rate limits into `hints`.
pub fn build_provider(
    p: &ProviderConfig,
    client: reqwest::Client,
    output_limits: HashMap<String, u32>,
    hints: &Arc<RateHints>,
) -> Result<Arc<dyn Provider>, GatewayError> {
    let limits = HttpLimits::from_config(p);
    let key = api_key(p);
    let base = |default: &str| p.base_url.clone().unwrap_or_else(|| default.to_string());
    let provider: Arc<dyn Provider> = match p.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => Arc::new(
            HttpProvider::new(
                &p.name,
                &base("https://api.openai.com/v1"),
                limits,
                client,
                openai::OpenAiWire::new(key),
            )
            .with_output_limits(output_limits)
            .with_rate_hints(hints.clone()),
        ),
        ProviderKind::Anthropic => Arc::new(
            HttpProvider::new(
                &p.name,
                &base("https://api.anthropic.com/v1"),
                limits,
                client,
                anthropic::AnthropicWire::new(key, p.anthropic_version.clone()),
            )
            .with_output_limits(output_limits)
            .with_rate_hints(hints.clone()),
        ),
        ProviderKind::Gemini => Arc::new(
            HttpProvider::new(
                &p.name,
                &base("https://generativelanguage.googleapis.com/v1beta"),
                limits,
                client,
                gemini::GeminiWire::new(key),
            )
            .with_output_limits(output_limits)
            .with_rate_hints(hints.clone()),
        ),
        ProviderKind::Mock => match &p.base_url {
            Some(url) => Arc::new(
                HttpProvider::new(&p.name, url, limits, client, openai::OpenAiWire::new(key))
                    .with_output_limits(output_limits)
                    .with_rate_hints(hints.clone()),
            ),
            None => Arc::new(mock::MockProvider::new(p.mock.clone()).named(&p.name)),
        },
    };
    Ok(provider)
}

//! The HTTP executor: runs a [`Wire`] adapter over reqwest, for whole answers and streams.

use super::sse::SseParser;
use super::{
    headers_timeout_error, parse_retry_after, status_error, timeout_error, transport_error,
    EventStream, Provider, StreamDecoder, Target, Wire, WireRequest,
};
use crate::canonical::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, StreamEvent,
};
use crate::error::{ErrorCode, GatewayError};
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use http::{HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Runs a [`Wire`] adapter over HTTP.
pub struct HttpProvider<W: Wire> {
    name: Arc<str>,
    base_url: String,
    timeout: Duration,
    client: reqwest::Client,
    wire: Arc<W>,
    /// `max_output_tokens` of this provider's models, by upstream id.
    output_limits: HashMap<String, u32>,
    /// Parsed upstream URLs by path: parsing (with IDNA) on every request costs microseconds.
    urls: std::sync::RwLock<HashMap<String, reqwest::Url>>,
}

/// Distinct paths remembered per provider (Gemini's include the model name).
const MAX_CACHED_URLS: usize = 1024;

impl<W: Wire> HttpProvider<W> {
    /// A provider named `name` at `base_url` (no trailing slash needed).
    pub fn new(
        name: &str,
        base_url: &str,
        timeout: Duration,
        client: reqwest::Client,
        wire: W,
    ) -> Self {
        HttpProvider {
            name: name.into(),
            base_url: base_url.trim_end_matches('/').to_string(),
            timeout,
            client,
            wire: Arc::new(wire),
            output_limits: HashMap::new(),
            urls: std::sync::RwLock::new(HashMap::new()),
        }
    }

    /// Send a built request and parse the whole answer with `parse`.
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

    /// `headers_deadline`, when shorter than the provider's `timeout`, bounds the wait for
    /// the response headers.
    fn whole<T: Send + 'static>(
        &self,
        wire_req: Result<WireRequest, GatewayError>,
        headers_deadline: Option<Duration>,
        parse: fn(&W, &[u8]) -> Result<T, GatewayError>,
    ) -> BoxFuture<'static, Result<T, GatewayError>> {
        let wire_req = match wire_req {
            Ok(r) => r,
            Err(err) => return Box::pin(async move { Err(err) }),
        };
        let send = self.send(wire_req, headers_deadline);
        let (wire, name, timeout) = (self.wire.clone(), self.name.clone(), self.timeout);
        Box::pin(async move {
            let response = send.await?;
            let body = tokio::time::timeout(timeout, response.bytes())
                .await
                .map_err(|_| timeout_error(&name, timeout))?
                .map_err(|err| transport_error(&name, err))?;
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
    /// A non-success status becomes the provider's error.
    fn send(
        &self,
        wire_req: WireRequest,
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
        let timeout = self.timeout;
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
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status().as_u16();
            let retry_after = parse_retry_after(response.headers());
            let body = tokio::time::timeout(timeout, response.bytes())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            Err(status_error(
                &name,
                status,
                &wire.error_message(&body),
                retry_after,
            ))
        }
    }
}

impl<W: Wire> Provider for HttpProvider<W> {
    fn chat(
        &self,
        req: &ChatRequest,
        upstream_model: &str,
        headers_deadline: Option<Duration>,
    ) -> BoxFuture<'static, Result<ChatResponse, GatewayError>> {
        self.whole(
            self.wire
                .chat_request(req, &self.target(upstream_model), false),
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
        let send = self.send(wire_req, None);
        let decoder = self.wire.stream_decoder(upstream_model);
        let name = self.name.clone();
        let idle = self.timeout;
        Box::pin(async move {
            let response = send.await?;
            Ok(decode_sse(name, response.bytes_stream(), decoder, idle))
        })
    }

    fn embed(
        &self,
        req: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EmbeddingsResponse, GatewayError>> {
        self.whole(
            self.wire.embeddings_request(req, upstream_model),
            None,
            W::parse_embeddings,
        )
    }
}

/// Turn an upstream byte stream into canonical events, chunk by chunk. Dropping the
/// returned stream drops the upstream response, which closes its connection (cancel).
fn decode_sse<S>(
    name: Arc<str>,
    bytes: S,
    decoder: Box<dyn StreamDecoder>,
    idle: Duration,
) -> EventStream
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
{
    struct State {
        bytes: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
        parser: SseParser,
        decoder: Box<dyn StreamDecoder>,
        name: Arc<str>,
        done: bool,
    }
    let state = State {
        bytes: bytes.boxed(),
        parser: SseParser::new(),
        decoder,
        name,
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
            match tokio::time::timeout(idle, st.bytes.next()).await {
                Err(_) => failure = Some(timeout_error(&st.name, idle)),
                Ok(Some(Err(err))) => failure = Some(transport_error(&st.name, err)),
                Ok(Some(Ok(chunk))) => {
                    if let Err(msg) = st.parser.push(&chunk, &mut sse) {
                        failure = Some(GatewayError::upstream(ErrorCode::BadGateway, msg));
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

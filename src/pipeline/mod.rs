//! The request path, as plain code. Every endpoint (chat in both dialects, streamed or not,
//! embeddings, replay) is one [`Exchange`] that runs these stages in order:
//!
//! 1. **auth** (`auth.rs`): gateway key → `Principal`, or 401. Runs before the body is
//!    read, so an unauthenticated client costs no parsing.
//! 2. **ingress** (`ingress.rs`): body read under the size limit (413), parsed by the client's
//!    dialect into one canonical request (400 with the dialect's error JSON).
//! 3. **policy** (`policy.rs`): the policy snapshot taken at the request's start decides the
//!    target chain and deadlines (`route` hook), or refuses the request (`throw`).
//! 4. **stages** (`stages.rs`): the stage list, in its documented order; each may answer
//!    early (a cache hit), wait (a queue) or refuse (a limit, a budget).
//! 5. **dispatch** (`dispatch.rs`): walk the chain with deadlines, retries and breakers.
//! 6. **egress** (`egress.rs`): canonical → the client's dialect, streams chunk by chunk.
//! 7. **finish** (`exchange.rs`): exactly once per request, whatever happened: usage settled
//!    (`settle.rs`), the stages' finish hooks, then the record handed to the log (`log.rs`).

pub mod auth;
pub mod breaker;
pub mod capacity;
pub mod chaos;
pub mod dispatch;
pub mod egress;
pub mod exchange;
pub mod ingress;
pub mod log;
pub mod policy;
pub mod settle;
pub mod stages;

use crate::canonical::{ChatResponse, EmbeddingsRequest, Message, Role};
use crate::config::Config;
use crate::context::{correlation_id_from, Endpoint};
use crate::error::{Dialect, GatewayError};
use crate::http::{error_response, json_response, Body};
use crate::logstore::{LogSender, LogStore};
use crate::policy::{LatencyWindow, PolicyStore};
use crate::providers::Registry;
use dispatch::{Dispatcher, Plan};
use exchange::Exchange;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Everything a request needs, built once at start. Each request thread holds its own copy
/// (sharing all but the registry, whose HTTP client pools connections per thread; its rate
/// hints are shared too).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Registry,
    pub keys: Arc<auth::KeyTable>,
    pub admin_key: Option<[u8; 32]>,
    /// Circuit breakers per provider.
    pub breakers: Arc<breaker::Breakers>,
    /// Chaos faults injected by `POST /admin/chaos`.
    pub chaos: Arc<chaos::Chaos>,
    pub latency: Arc<LatencyWindow>,
    pub policy: Arc<PolicyStore>,
    pub logs: Option<Arc<LogStore>>,
    pub log_sender: Option<LogSender>,
    /// The stage list.
    pub stages: Arc<stages::Stages>,
    /// Rate-limit admission (the ledger and its fair queue), shared by the limits stage,
    /// dispatch's capacity checks, the policy helpers and `/admin/limits`.
    pub admission: Arc<crate::ledger::Admission>,
    /// Model capacity (`tpm`/`rpm` and the providers' rate-limit headers), for dispatch.
    pub capacity: Arc<capacity::Capacity>,
    /// The live price catalogue (config, pricing file, built-in list).
    pub prices: Arc<crate::cost::PriceBook>,
    /// Budget buckets (spent and reserved per budget and period), for `/admin/budgets`.
    pub money: Arc<crate::ledger::MoneyLedger>,
    /// The durable spend ledger, for `/admin/spend` and shutdown.
    pub spend: Option<crate::cost::SpendLedger>,
    /// The response cache, for `/admin/cache`.
    pub cache: Arc<crate::cache::ResponseCache>,
    /// The Prometheus registry, for `/metrics`.
    pub metrics: Arc<crate::observe::Metrics>,
    /// The runtime that outlives the request threads: finish steps that cannot run on the
    /// request's own task (a dropped stream, a usage estimate) run here.
    pub background: Option<tokio::runtime::Handle>,
    /// Finish steps in flight on the background runtime; shutdown waits for them before it
    /// closes the log.
    pub tails: tokio_util::task::TaskTracker,
    /// Set when shutdown begins: a request dropped after this was cut by the shutdown.
    pub closing: Arc<AtomicBool>,
}

/// What a request produced for the client: a whole body or a stream.
pub enum Reply {
    Complete(Vec<u8>),
    Stream(Body),
}

/// A reply with the facts its response headers carry, read before the exchange finished.
pub struct Answer {
    pub reply: Result<Reply, GatewayError>,
    pub dialect: Dialect,
    pub id: String,
    pub correlation_id: Option<String>,
    pub served_model: Option<String>,
    pub provider: Option<String>,
    pub policy_version: Option<u64>,
    /// The tightest token limit that applied, right after admission.
    pub rate_limit: Option<crate::ledger::WindowStatus>,
    /// `x-switchyard-cost-usd`: the request's cost, `unknown` for an unpriced model; `None`
    /// for a stream (its usage arrives after the headers).
    pub cost: Option<String>,
    /// `x-switchyard-budget`: the budget action and the budget behind it.
    pub budget: Option<String>,
    /// `x-switchyard-budget-warning`: a budget past its soft limit.
    pub budget_warning: Option<String>,
    /// `x-switchyard-cache`: hit, miss, stale or bypass (absent when the cache is off).
    pub cache: Option<&'static str>,
    /// `age`: seconds since a cached answer was stored (hit or stale).
    pub age: Option<u64>,
}

impl Answer {
    fn of(exchange: &Exchange, reply: Result<Reply, GatewayError>) -> Answer {
        let route = exchange.outcome.route.as_ref();
        let cached = exchange.stages.cache.served_by.as_ref();
        Answer {
            reply,
            dialect: exchange.ctx.dialect,
            id: exchange.ctx.id.clone(),
            correlation_id: exchange.ctx.correlation_id.clone(),
            served_model: route
                .map(|r| r.model.name.clone())
                .or_else(|| cached.map(|(model, _)| model.clone())),
            provider: route
                .map(|r| r.provider_name.to_string())
                .or_else(|| cached.map(|(_, provider)| provider.clone())),
            policy_version: exchange.ctx.policy_version,
            rate_limit: exchange.stages.limits.tightest.as_ref().map(|(_, w)| *w),
            cost: answer_cost(exchange),
            budget: exchange.stages.budgets.header(),
            budget_warning: exchange.stages.budgets.warning.clone(),
            cache: exchange.stages.cache.status.map(|s| s.as_str()),
            age: exchange.stages.cache.age.map(|age| age.as_secs()),
        }
    }

    /// The HTTP response, with the request id and routing headers.
    pub fn into_response(self) -> Response<Body> {
        let mut response = match self.reply {
            Ok(Reply::Complete(body)) => json_response(200, body),
            Ok(Reply::Stream(body)) => {
                let mut response = Response::new(body);
                let headers = response.headers_mut();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                headers.insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache"),
                );
                response
            }
            Err(err) => error_response(&err, self.dialect),
        };
        let headers = response.headers_mut();
        if let Ok(id) = HeaderValue::from_str(&self.id) {
            headers.insert("x-request-id", id);
        }
        if let Some(id) = self
            .correlation_id
            .and_then(|id| HeaderValue::from_str(&id).ok())
        {
            headers.insert("x-correlation-id", id);
        }
        if let Some(model) = self
            .served_model
            .and_then(|m| HeaderValue::from_str(&m).ok())
        {
            headers.insert("x-switchyard-model", model);
        }
        if let Some(provider) = self.provider.and_then(|p| HeaderValue::from_str(&p).ok()) {
            headers.insert("x-switchyard-provider", provider);
        }
        if let Some(version) = self.policy_version {
            headers.insert("x-switchyard-policy-version", HeaderValue::from(version));
        }
        for (name, value) in [
            ("x-switchyard-cost-usd", self.cost),
            ("x-switchyard-budget", self.budget),
            ("x-switchyard-budget-warning", self.budget_warning),
        ] {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(name, value);
            }
        }
        if let Some(status) = self.cache {
            headers.insert("x-switchyard-cache", HeaderValue::from_static(status));
        }
        if let Some(age) = self.age {
            headers.insert(http::header::AGE, HeaderValue::from(age));
        }
        if let Some(window) = self.rate_limit {
            headers.insert("x-ratelimit-limit-tokens", HeaderValue::from(window.limit));
            headers.insert(
                "x-ratelimit-remaining-tokens",
                HeaderValue::from(window.remaining.max(0)),
            );
            if let Ok(reset) = HeaderValue::from_str(&go_duration(window.resets_in)) {
                headers.insert("x-ratelimit-reset-tokens", reset);
            }
        }
        response
    }
}

/// The cost of a whole answer for its header (the tail prices it again for the record, with
/// the same prices and usage): `0.0` when no target answered.
fn answer_cost(exchange: &Exchange) -> Option<String> {
    let Some(route) = exchange.outcome.route.as_ref() else {
        return Some(crate::cost::Usd::ZERO.to_string());
    };
    if exchange.request.stream {
        return None;
    }
    let catalogue = exchange.state.prices.catalogue();
    Some(match catalogue.price(&route.model.name) {
        Some(price) => price.cost(&exchange.outcome.usage).to_string(),
        None => "unknown".to_string(),
    })
}

/// A duration as OpenAI writes its `x-ratelimit-reset-*` headers: `20ms`, `1.5s`, `6m0s`.
fn go_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let minutes = ms / 60_000;
    let seconds = (ms % 60_000) as f64 / 1000.0;
    let seconds = format!("{seconds:.3}");
    let seconds = seconds.trim_end_matches('0').trim_end_matches('.');
    if minutes == 0 {
        format!("{seconds}s")
    } else {
        format!("{minutes}m{seconds}s")
    }
}

/// Finish a failed exchange and answer with the error.
async fn refuse(mut exchange: Exchange, err: GatewayError) -> Answer {
    log_error(&exchange, &err);
    exchange.fail(err.clone());
    let answer = Answer::of(&exchange, Err(err));
    exchange.finish().await;
    answer
}

/// `POST /v1/chat/completions` and `POST /v1/messages`.
pub async fn chat(
    state: Arc<AppState>,
    dialect: Dialect,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut exchange = Exchange::start(state, dialect, Endpoint::Chat);
    exchange.ctx.correlation_id = correlation_id_from(req.headers());
    ingress::read_headers(&mut exchange.ctx, req.headers());
    let answer = match read_chat(&mut exchange, req).await {
        Ok(include_usage) => execute(exchange, include_usage).await,
        Err(err) => refuse(exchange, err).await,
    };
    answer.into_response()
}

/// Auth and ingress: the parsed request goes into the exchange; returns OpenAI's
/// `stream_options.include_usage`.
async fn read_chat(exchange: &mut Exchange, req: Request<Incoming>) -> Result<bool, GatewayError> {
    exchange.ctx.principal = Some(exchange.state.keys.authenticate(req.headers())?);
    let (parts, body) = req.into_parts();
    let state = exchange.state.clone();
    let parsed = ingress::read_chat(&state, &mut exchange.ctx, &parts, body).await?;
    exchange.request = parsed.request;
    Ok(parsed.include_usage)
}

/// Policy, stages, dispatch and egress for a parsed chat request, then the finish step (for a
/// stream: when the stream ends). Replay enters here too.
pub async fn execute(mut exchange: Exchange, include_usage: bool) -> Answer {
    let plan = match prepare(&mut exchange).await {
        Ok(Prepared::Dispatch(plan)) => plan,
        Ok(Prepared::Answered(response)) => {
            return answer_early(exchange, *response, include_usage).await
        }
        Err(err) => return refuse(exchange, err).await,
    };
    let state = exchange.state.clone();
    let dispatcher = Dispatcher::new(&state);
    if exchange.request.stream {
        let opened = dispatcher
            .stream(&plan, &exchange.request, &mut exchange.ctx.attempts)
            .await;
        match opened {
            Ok((events, route)) => {
                exchange.outcome.route = Some(route);
                exchange.outcome.capacity = dispatcher.take_capacity_hold();
                exchange.outcome.status = Some(200);
                let answer = Answer::of(&exchange, Ok(Reply::Complete(Vec::new())));
                let body = egress::stream_body(exchange, events, include_usage);
                Answer {
                    reply: Ok(Reply::Stream(body)),
                    ..answer
                }
            }
            Err(err) => stale_or_refuse(exchange, err, include_usage).await,
        }
    } else {
        let answered = dispatcher
            .chat(&plan, &exchange.request, &mut exchange.ctx.attempts)
            .await;
        match answered {
            Ok((response, route)) => {
                let body = egress::render(exchange.ctx.dialect, &response, &route.model.name);
                exchange.outcome.route = Some(route);
                exchange.outcome.capacity = dispatcher.take_capacity_hold();
                complete(exchange, response, body).await
            }
            Err(err) => stale_or_refuse(exchange, err, include_usage).await,
        }
    }
}

/// Every target of the chain failed: answer from a stale cache entry when one may be served
/// (`x-switchyard-cache: stale`; the attempts and their errors stay in the log record), else
/// with the chain's error.
async fn stale_or_refuse(mut exchange: Exchange, err: GatewayError, include_usage: bool) -> Answer {
    let stages = exchange.state.stages.clone();
    match stages.stale(&mut exchange) {
        Some(response) => {
            tracing::warn!(request_id = %exchange.ctx.id, error = %err.message_for_log(), "every target failed; answered from a stale cache entry");
            exchange.stages.cache.failure = Some(err.message_for_log().to_string());
            answer_early(exchange, *response, include_usage).await
        }
        None => refuse(exchange, err).await,
    }
}

/// Finish an exchange that produced a whole answer.
async fn complete(mut exchange: Exchange, response: ChatResponse, body: Vec<u8>) -> Answer {
    let elapsed = exchange.ctx.elapsed_ms();
    let outcome = &mut exchange.outcome;
    outcome.status = Some(200);
    outcome.text = response.text;
    outcome.tool_calls = response.tool_calls;
    outcome.finish = Some(response.finish_reason);
    outcome.usage = response.usage;
    outcome.first_token_ms = Some(elapsed);
    let answer = Answer::of(&exchange, Ok(Reply::Complete(body)));
    exchange.finish().await;
    answer
}

/// A stage answered before dispatch: render it like a provider's answer.
async fn answer_early(exchange: Exchange, response: ChatResponse, include_usage: bool) -> Answer {
    let model = response.model.clone();
    if exchange.request.stream {
        let mut exchange = exchange;
        exchange.outcome.status = Some(200);
        let answer = Answer::of(&exchange, Ok(Reply::Complete(Vec::new())));
        let events = futures_util::StreamExt::boxed(futures_util::stream::iter(
            response.into_events().into_iter().map(Ok),
        ));
        let body = egress::stream_body(exchange, events, include_usage);
        return Answer {
            reply: Ok(Reply::Stream(body)),
            ..answer
        };
    }
    let body = egress::render(exchange.ctx.dialect, &response, &model);
    complete(exchange, response, body).await
}

/// What happens after the policy and the stages.
enum Prepared {
    Dispatch(Plan),
    Answered(Box<ChatResponse>),
}

async fn prepare(exchange: &mut Exchange) -> Result<Prepared, GatewayError> {
    exchange.decided = Some(policy::decide(exchange)?);
    let stages = exchange.state.stages.clone();
    let early = stages.on_request(exchange).await?;
    let decided = exchange
        .decided
        .take()
        .ok_or_else(|| GatewayError::internal("a stage took the policy's decision"))?;
    Ok(match early {
        Some(response) => Prepared::Answered(response),
        None => Prepared::Dispatch(decided.plan),
    })
}

/// Log a failed request once, inside its context, in full (the client saw the redacted form).
fn log_error(exchange: &Exchange, err: &GatewayError) {
    let status = err.status();
    let id = &exchange.ctx.id;
    if status >= 500 {
        tracing::error!(request_id = %id, status, code = err.code.as_str(), source = ?err.source, error = %err.message_for_log(), "request failed");
    } else {
        tracing::info!(request_id = %id, status, code = err.code.as_str(), error = %err.message_for_log(), "request refused");
    }
}

/// `POST /v1/embeddings`: auth, policy (`req.endpoint == "embeddings"`), the chain with
/// retries and breakers, usage and cost, and a log record, like chat.
pub async fn embeddings(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let mut exchange = Exchange::start(state, Dialect::OpenAi, Endpoint::Embeddings);
    exchange.ctx.correlation_id = correlation_id_from(req.headers());
    ingress::read_headers(&mut exchange.ctx, req.headers());
    let answer = match read_embeddings(&mut exchange, req).await {
        Ok((request, encoding)) => execute_embeddings(exchange, request, encoding).await,
        Err(err) => refuse(exchange, err).await,
    };
    answer.into_response()
}

async fn read_embeddings(
    exchange: &mut Exchange,
    req: Request<Incoming>,
) -> Result<(EmbeddingsRequest, crate::dialect::openai::EncodingFormat), GatewayError> {
    exchange.ctx.principal = Some(exchange.state.keys.authenticate(req.headers())?);
    let (parts, body) = req.into_parts();
    let bytes = ingress::read_body(&exchange.state, &parts, body).await?;
    let parsed = crate::dialect::openai::parse_embeddings(&bytes)?;
    ingress::read_context(&mut exchange.ctx, &parsed.request.model, None);
    exchange.embedding_dimensions = parsed.request.dimensions;
    exchange.request = crate::canonical::ChatRequest {
        model: parsed.request.model.clone(),
        messages: parsed
            .request
            .input
            .iter()
            .map(|text| Message::text(Role::User, text.clone()))
            .collect(),
        ..Default::default()
    };
    Ok((parsed.request, parsed.encoding))
}

/// Policy, stages and dispatch for a parsed embeddings request, then the finish step. Replay
/// of an embeddings record enters here too.
pub async fn execute_embeddings(
    mut exchange: Exchange,
    request: EmbeddingsRequest,
    encoding: crate::dialect::openai::EncodingFormat,
) -> Answer {
    let plan = match prepare(&mut exchange).await {
        Ok(Prepared::Dispatch(plan)) => plan,
        Ok(Prepared::Answered(_)) => {
            let err = GatewayError::internal("a stage answered an embeddings request early");
            return refuse(exchange, err).await;
        }
        Err(err) => return refuse(exchange, err).await,
    };
    let state = exchange.state.clone();
    let dispatcher = Dispatcher::new(&state);
    let answered = dispatcher
        .embed(&plan, &request, &mut exchange.ctx.attempts)
        .await;
    match answered {
        Ok((response, route)) => {
            exchange.outcome.capacity = dispatcher.take_capacity_hold();
            let body =
                crate::dialect::openai::render_embeddings(&response, &route.model.name, encoding);
            exchange.outcome.route = Some(route);
            exchange.outcome.usage = response.usage;
            exchange.outcome.status = Some(200);
            exchange.outcome.first_token_ms = Some(exchange.ctx.elapsed_ms());
            let answer = Answer::of(&exchange, Ok(Reply::Complete(body)));
            exchange.finish().await;
            answer
        }
        Err(err) => refuse(exchange, err).await,
    }
}

/// `GET /v1/models`: the configured models (any valid gateway key may list them).
pub fn models(state: &AppState, req: &Request<Incoming>) -> Response<Body> {
    match state.keys.authenticate(req.headers()) {
        Ok(_) => json_response(
            200,
            crate::dialect::openai::render_models(&state.registry.model_names),
        ),
        Err(err) => error_response(&err, Dialect::OpenAi),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reset_durations_are_written_like_openai() {
        use std::time::Duration;
        assert_eq!(super::go_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(super::go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(super::go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(super::go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(super::go_duration(Duration::from_millis(61_250)), "1m1.25s");
    }
}

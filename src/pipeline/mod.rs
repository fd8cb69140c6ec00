//! The request pipeline, as plain code. A chat request runs these stages in order:
//!
//! 1. **auth** (`auth.rs`): gateway key → `Principal`, or 401. Runs before the body is
//!    parsed, so an unauthenticated client costs no parsing.
//! 2. **ingress** (`ingress.rs`): body read under the size limit (413), parsed by the client's
//!    dialect into one canonical `ChatRequest` (400 with the dialect's error JSON).
//! 3. **policy** (`policy.rs`): the policy snapshot taken at the request's start decides the
//!    target chain and deadlines (`route` hook), or refuses the request (`throw`).
//! 4. **dispatch** (`dispatch.rs`): walk the chain with deadlines, retries, breakers.
//! 5. **egress** (`egress.rs`): canonical → the client's dialect, streams chunk by chunk.
//! 6. **record** (`record.rs`): after the response (for streams: when it ends or the client
//!    leaves), usage and cost are settled and the record is handed to the log store, off the
//!    request path.

pub mod auth;
pub mod dispatch;
pub mod egress;
pub mod health;
pub mod ingress;
pub mod policy;
pub mod record;

use crate::canonical::ChatRequest;
use crate::config::Config;
use crate::context::{request_id_from, RequestContext};
use crate::error::{Dialect, GatewayError};
use crate::logstore::{LogSender, LogStore};
use crate::policy::{LatencyWindow, PolicyStore};
use crate::providers::Registry;
use crate::server::{error_response, json_response, Body};
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;

/// Everything a request needs, built once at start. Each request thread holds its own copy
/// (sharing all but the registry, whose HTTP client pools connections per thread).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Registry,
    pub keys: Arc<auth::KeyTable>,
    pub admin_key: Option<[u8; 32]>,
    pub health: Arc<health::Health>,
    pub latency: Arc<LatencyWindow>,
    pub policy: Arc<PolicyStore>,
    pub logs: Option<Arc<LogStore>>,
    pub log_sender: Option<LogSender>,
}

/// What a finished chat produced: a whole body or a stream.
pub enum Reply {
    Complete(Vec<u8>),
    Stream(Body),
}

/// `POST /v1/chat/completions` and `POST /v1/messages`.
pub async fn chat(
    state: Arc<AppState>,
    dialect: Dialect,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut ctx = RequestContext::new(request_id_from(req.headers()), dialect, "chat");
    let result = chat_stages(&state, &mut ctx, req).await;
    finish(ctx, result)
}

async fn chat_stages(
    state: &Arc<AppState>,
    ctx: &mut RequestContext,
    req: Request<Incoming>,
) -> Result<(Reply, Option<String>), GatewayError> {
    ctx.principal = Some(state.keys.authenticate(req.headers())?);
    let (parts, body) = req.into_parts();
    let parsed = ingress::read_chat(state, ctx, &parts, body).await?;
    execute(state, ctx, parsed.request, parsed.include_usage).await
}

/// Stages 3–6 for a parsed request (replay enters here too). Returns the reply and the
/// served model name.
pub async fn execute(
    state: &Arc<AppState>,
    ctx: &mut RequestContext,
    request: ChatRequest,
    include_usage: bool,
) -> Result<(Reply, Option<String>), GatewayError> {
    let (plan, request) = policy::decide(state, ctx, request)?;
    let dispatcher = dispatch::Dispatcher {
        health: &state.health,
        latency: Some(&*state.latency),
    };
    if request.stream {
        let mut attempts = std::mem::take(&mut ctx.attempts);
        let opened = dispatcher.stream(&plan, &request, &mut attempts).await;
        ctx.attempts = attempts;
        match opened {
            Ok((events, route)) => {
                let served = route.model.name.clone();
                let body = egress::stream_body(
                    state.clone(),
                    ctx.clone(),
                    request,
                    route,
                    events,
                    include_usage,
                );
                Ok((Reply::Stream(body), Some(served)))
            }
            Err(err) => {
                record::submit_failure(state, ctx, request, &err);
                Err(err)
            }
        }
    } else {
        let mut attempts = std::mem::take(&mut ctx.attempts);
        let answered = dispatcher.chat(&plan, &request, &mut attempts).await;
        ctx.attempts = attempts;
        match answered {
            Ok((mut response, route)) => {
                record::settle_usage(&request, &mut response);
                let served = route.model.name.clone();
                let body = egress::render(ctx.dialect, &response, &served);
                record::submit_success(state, ctx, request, response, &route);
                Ok((Reply::Complete(body), Some(served)))
            }
            Err(err) => {
                record::submit_failure(state, ctx, request, &err);
                Err(err)
            }
        }
    }
}

/// Turn a stage result into the HTTP response, with the request id and routing headers.
fn finish(
    ctx: RequestContext,
    result: Result<(Reply, Option<String>), GatewayError>,
) -> Response<Body> {
    let mut response = match result {
        Ok((Reply::Complete(body), _)) => json_response(200, body),
        Ok((Reply::Stream(body), _)) => {
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
        Err(err) => {
            log_error(&ctx, &err);
            error_response(&err, ctx.dialect)
        }
    };
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&ctx.id) {
        headers.insert("x-request-id", id);
    }
    if let Some(attempt) = ctx.attempts.iter().rev().find(|a| a.status == 200) {
        if let Ok(model) = HeaderValue::from_str(&attempt.model) {
            headers.insert("x-switchyard-model", model);
        }
        if let Ok(provider) = HeaderValue::from_str(&attempt.provider) {
            headers.insert("x-switchyard-provider", provider);
        }
    }
    if let Some(version) = ctx.policy_version {
        headers.insert("x-switchyard-policy-version", HeaderValue::from(version));
    }
    response
}

/// Log a failed request once, inside its context, in full (the client saw the redacted form).
pub fn log_error(ctx: &RequestContext, err: &GatewayError) {
    let status = err.status();
    if status >= 500 {
        tracing::error!(request_id = %ctx.id, status, code = err.code.as_str(), source = ?err.source, error = %err.message, "request failed");
    } else {
        tracing::info!(request_id = %ctx.id, status, code = err.code.as_str(), error = %err.message, "request refused");
    }
}

/// `POST /v1/embeddings`.
pub async fn embeddings(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let mut ctx = RequestContext::new(
        request_id_from(req.headers()),
        Dialect::OpenAi,
        "embeddings",
    );
    let result = async {
        ctx.principal = Some(state.keys.authenticate(req.headers())?);
        let (parts, body) = req.into_parts();
        let bytes = ingress::read_body(&state, &parts, body).await?;
        let parsed = crate::dialect::openai::parse_embeddings(&bytes)?;
        let request = parsed.request;
        ctx.requested_model = request.model.clone();
        let route = state
            .registry
            .route(&request.model)
            .ok_or_else(|| GatewayError::unknown_model(&request.model))?
            .clone();
        let response = route
            .provider
            .embed(&request, route.model.upstream_id())
            .await?;
        Ok::<_, GatewayError>(crate::dialect::openai::render_embeddings(
            &response,
            &route.model.name,
            parsed.encoding,
        ))
    }
    .await;
    finish(ctx, result.map(|body| (Reply::Complete(body), None)))
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

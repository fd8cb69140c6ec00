//! Stage 3: the policy decides the target chain, or refuses the request.
//!
//! The request takes one snapshot of the policy set at its start and keeps it: a reload never
//! changes a request half-way. Without a `route` hook the chain is the requested model alone
//! and no request map is built.

use super::dispatch::Plan;
use super::AppState;
use crate::canonical::ChatRequest;
use crate::context::RequestContext;
use crate::error::{ErrorCode, ErrorSource, GatewayError};
use crate::policy::{Decision, PolicyError, PolicyRequest};
use std::time::Duration;

/// The plan for this request, and the request as the policy adjusted it (`max_tokens`).
pub fn decide(
    state: &AppState,
    ctx: &mut RequestContext,
    mut request: ChatRequest,
) -> Result<(Plan, ChatRequest), GatewayError> {
    let set = state.policy.snapshot();
    ctx.policy_version = Some(set.version());
    let decision = if set.has_route() {
        match set.route(&policy_request(ctx, &request)) {
            Ok(decision) => decision,
            Err(PolicyError::Refused { status, message }) => {
                let mut err = GatewayError::new(ErrorSource::Policy, ErrorCode::Forbidden, message);
                err.status_override = Some(status);
                return Err(err);
            }
            Err(err) => {
                state.policy.record_hook_error();
                tracing::error!(request_id = %ctx.id, error = %err, "route hook failed");
                if !state.policy.on_error_open() {
                    return Err(GatewayError::new(
                        ErrorSource::Policy,
                        ErrorCode::Internal,
                        "the routing policy failed",
                    ));
                }
                None
            }
        }
    } else {
        None
    };
    let plan = plan_for(state, ctx, &request, decision.as_ref())?;
    if let Some(cap) = decision.as_ref().and_then(|d| d.max_tokens) {
        request.max_tokens = Some(request.max_tokens.map_or(cap, |asked| asked.min(cap)));
    }
    Ok((plan, request))
}

fn plan_for(
    state: &AppState,
    ctx: &RequestContext,
    request: &ChatRequest,
    decision: Option<&Decision>,
) -> Result<Plan, GatewayError> {
    let mut targets = Vec::new();
    match decision.filter(|d| !d.chain.is_empty()) {
        Some(decision) => {
            for name in &decision.chain {
                match state.registry.route(name) {
                    Some(route) => targets.push(route.clone()),
                    // The policy passed the client's own unknown model through: that is the
                    // client's mistake, and serving another model silently would hide it.
                    None if *name == request.model => {
                        return Err(GatewayError::unknown_model(name))
                    }
                    None => {
                        tracing::warn!(request_id = %ctx.id, model = %name, "policy named an unknown model; skipped")
                    }
                }
            }
            if targets.is_empty() {
                return Err(GatewayError::new(
                    ErrorSource::Policy,
                    ErrorCode::Internal,
                    "the routing policy named no configured model",
                ));
            }
        }
        None => {
            let route = state
                .registry
                .route(&request.model)
                .ok_or_else(|| GatewayError::unknown_model(&request.model))?;
            targets.push(route.clone());
        }
    }
    if let Some(route) = targets.iter().find(|r| r.model.kind != "chat") {
        return Err(GatewayError::invalid(
            "model",
            format!(
                "`{}` is an embedding model; use /v1/embeddings",
                route.model.name
            ),
        ));
    }
    let ms = |v: Option<u64>| v.map(Duration::from_millis);
    Ok(Plan {
        targets,
        timeout: ms(decision.and_then(|d| d.timeout_ms)),
        first_token: ms(decision.and_then(|d| d.first_token_ms)),
        retries: decision
            .and_then(|d| d.retries)
            .unwrap_or(state.config.dispatch.retries),
    })
}

/// The request as scripts see it.
pub fn policy_request(ctx: &RequestContext, request: &ChatRequest) -> PolicyRequest {
    let principal = ctx.principal.as_ref();
    let prompt_text = request.prompt_text();
    PolicyRequest {
        id: ctx.id.clone(),
        user: principal.map(|p| p.user.clone()).unwrap_or_default(),
        team: principal.and_then(|p| p.team.clone()),
        tier: principal.and_then(|p| p.tier.clone()),
        feature: ctx.feature.clone(),
        model: request.model.clone(),
        stream: request.stream,
        max_tokens: request.max_tokens,
        messages: request
            .messages
            .iter()
            .map(|m| (m.role.as_str().to_string(), m.joined_text()))
            .collect(),
        est_input_tokens: crate::tokens::quick_estimate_input(request),
        prompt_text,
        metadata: request.metadata.clone(),
        headers: ctx.headers.clone(),
    }
}

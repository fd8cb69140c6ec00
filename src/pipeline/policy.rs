//! Stage 3: the policy decides the target chain and the limits the request counts against,
//! or refuses the request.
//!
//! The request takes one snapshot of the policy set at its start and keeps it: a reload never
//! changes a request half-way. Without a `route` hook the chain is the requested model alone
//! and no request map is built.

use super::dispatch::Plan;
use super::exchange::Exchange;
use super::AppState;
use crate::canonical::ChatRequest;
use crate::config::ModelKind;
use crate::context::{Endpoint, RequestContext};
use crate::error::{ErrorCode, ErrorSource, GatewayError};
use crate::policy::{Decision, LimitSpec, PolicyError, PolicyRequest, PolicySet};
use std::sync::Arc;
use std::time::Duration;

/// What the policy decided for this request: the plan, and the buckets its `limits` hook
/// named (the limits stage adds the static `[[limits]]`).
pub struct Decided {
    pub plan: Plan,
    pub limits: Vec<LimitSpec>,
    /// The policy snapshot the request keeps (the budgets stage calls its `budget` hook).
    pub policy: Arc<PolicySet>,
    /// The request map the hooks saw, built once when any hook needs it.
    pub request: Option<PolicyRequest>,
}

/// Run the policy's hooks for this request. The request as the policy adjusted it
/// (`max_tokens`) stays in the exchange. One request map serves every hook.
pub fn decide(exchange: &mut Exchange) -> Result<Decided, GatewayError> {
    let state = exchange.state.clone();
    let set = state.policy.snapshot();
    exchange.ctx.policy_version = Some(set.version());
    // One pass over the prompt, shared by the policy's `est_input_tokens`, the rate limits
    // and the capacity checks.
    let input_estimate = crate::tokens::quick_estimate_input(&exchange.request);
    let request = (set.has_route() || set.has_limits() || set.has_budget() || set.has_cache())
        .then(|| {
            PolicyRequest::build_with_estimate(&exchange.ctx, &exchange.request, input_estimate)
        });
    let decision = match &request {
        Some(req) if set.has_route() => {
            hook_result(&state, &exchange.ctx, "route", set.route(req))?.flatten()
        }
        _ => None,
    };
    let limits = match &request {
        Some(req) if set.has_limits() => {
            hook_result(&state, &exchange.ctx, "limits", set.limits(req))?.unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let mut plan = plan_for(&state, &exchange.ctx, &exchange.request, decision.as_ref())?;
    plan.input_estimate = input_estimate;
    if let Some(cap) = decision.as_ref().and_then(|d| d.max_tokens) {
        let request = &mut exchange.request;
        request.max_tokens = Some(request.max_tokens.map_or(cap, |asked| asked.min(cap)));
    }
    Ok(Decided {
        plan,
        limits,
        policy: set,
        request,
    })
}

/// Serve the request with `chain` instead of the plan's targets (a budget's `downgrade`),
/// keeping the plan's deadlines and retries.
pub fn downgrade(exchange: &mut Exchange, chain: &[String]) -> Result<(), GatewayError> {
    let decision = Decision {
        chain: chain.to_vec(),
        timeout_ms: None,
        first_token_ms: None,
        max_tokens: None,
        retries: None,
        policy_version: exchange.ctx.policy_version.unwrap_or_default(),
    };
    let state = exchange.state.clone();
    let plan = plan_for(&state, &exchange.ctx, &exchange.request, Some(&decision))?;
    if let Some(decided) = exchange.decided.as_mut() {
        decided.plan.targets = plan.targets;
    }
    Ok(())
}

/// A hook's answer; a refusal refuses the request; a failure is counted and logged, then fails
/// open (`Ok(None)`: the default behaviour) or closed, as `[policy] on_error` says.
pub(super) fn hook_result<T>(
    state: &AppState,
    ctx: &RequestContext,
    hook: &str,
    result: Result<T, PolicyError>,
) -> Result<Option<T>, GatewayError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(refusal @ PolicyError::Refused { .. }) => Err(refusal.into()),
        Err(err) => {
            state.policy.record_hook_error();
            tracing::error!(request_id = %ctx.id, hook, error = %err, "policy hook failed");
            if state.policy.on_error_open() {
                Ok(None)
            } else {
                Err(GatewayError::new(
                    ErrorSource::Policy,
                    ErrorCode::Internal,
                    "the routing policy failed",
                ))
            }
        }
    }
}

fn plan_for(
    state: &AppState,
    ctx: &RequestContext,
    request: &ChatRequest,
    decision: Option<&Decision>,
) -> Result<Plan, GatewayError> {
    let wanted = match ctx.endpoint {
        Endpoint::Chat => ModelKind::Chat,
        Endpoint::Embeddings => ModelKind::Embedding,
    };
    let mut targets = Vec::new();
    match decision.filter(|d| !d.chain.is_empty()) {
        Some(decision) => {
            for name in &decision.chain {
                match state.registry.route(name) {
                    // A chain written for chat may name chat models for an embeddings request
                    // (or the reverse): those targets cannot serve it and are skipped.
                    Some(route) if route.model.kind != wanted && *name != request.model => {
                        tracing::debug!(request_id = %ctx.id, model = %name, "policy named a model of another kind; skipped")
                    }
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
    if let Some(route) = targets.iter().find(|r| r.model.kind != wanted) {
        let hint = match wanted {
            ModelKind::Chat => "is an embedding model; use /v1/embeddings",
            ModelKind::Embedding => "is not an embedding model",
        };
        return Err(GatewayError::invalid(
            "model",
            format!("`{}` {hint}", route.model.name),
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
        input_estimate: 0,
    })
}

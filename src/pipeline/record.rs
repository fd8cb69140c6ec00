//! Stage 6: settle usage and cost, build the `LogRecord`, hand it to the log store.
//!
//! Runs after the response is complete; the hand-off is a spawned task, so a slow disk
//! never delays a response (the log store's bounded channel absorbs bursts and waits, never
//! drops).

use super::AppState;
use crate::canonical::{ChatRequest, ChatResponse, FinishReason, ToolCall, Usage};
use crate::config::ModelConfig;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::logstore::record::LogRecord;
use crate::providers::Route;

/// Fill in estimated usage when the provider reported none.
pub fn settle_usage(request: &ChatRequest, response: &mut ChatResponse) {
    response.usage = usage_or_estimate(
        request,
        response.usage,
        &response.text,
        &response.tool_calls,
    );
}

/// The provider's usage, or a tiktoken estimate (marked) when it gave none.
pub fn usage_or_estimate(
    request: &ChatRequest,
    usage: Usage,
    text: &str,
    tool_calls: &[ToolCall],
) -> Usage {
    if usage.input_tokens > 0 || usage.output_tokens > 0 || usage.estimated {
        return usage;
    }
    let mut output = text.to_string();
    for call in tool_calls {
        output.push_str(&call.name);
        output.push_str(&call.arguments);
    }
    crate::tokens::estimate_usage(request, &output)
}

/// Cost in USD from the model's prices; `None` when the model has no prices.
pub fn cost_usd(model: &ModelConfig, usage: &Usage) -> Option<f64> {
    let input_price = model.input_usd_per_mtok?;
    let output_price = model.output_usd_per_mtok?;
    let cached_price = model.cached_input_usd_per_mtok.unwrap_or(input_price);
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let uncached = usage.input_tokens - cached;
    Some(
        (uncached as f64 * input_price
            + cached as f64 * cached_price
            + usage.output_tokens as f64 * output_price)
            / 1e6,
    )
}

/// The wire name of a finish reason, for the log.
pub fn finish_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

/// What the response produced, for the record.
pub struct Outcome<'a> {
    pub status: u16,
    pub error: Option<String>,
    pub route: Option<&'a Route>,
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Option<FinishReason>,
    pub usage: Usage,
    pub first_token_ms: Option<f64>,
    pub client_disconnected: bool,
}

/// Build the record of a request.
pub fn build(ctx: &RequestContext, request: ChatRequest, outcome: Outcome<'_>) -> LogRecord {
    let now = chrono::Utc::now();
    let principal = ctx.principal.as_ref();
    let cost = outcome
        .route
        .and_then(|r| cost_usd(&r.model, &outcome.usage));
    let stream = request.stream;
    LogRecord {
        id: ctx.id.clone(),
        started_at: ctx
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        started_ms: ctx.started_at.timestamp_millis(),
        finished_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        dialect: match ctx.dialect {
            crate::error::Dialect::OpenAi => "openai".into(),
            crate::error::Dialect::Anthropic => "anthropic".into(),
        },
        endpoint: ctx.endpoint.into(),
        user: principal.map(|p| p.user.clone()).unwrap_or_default(),
        team: principal.and_then(|p| p.team.clone()),
        tier: principal.and_then(|p| p.tier.clone()),
        key_id: principal.map(|p| p.key_id.clone()).unwrap_or_default(),
        feature: ctx.feature.clone(),
        requested_model: ctx.requested_model.clone(),
        served_model: outcome.route.map(|r| r.model.name.clone()),
        provider: outcome.route.map(|r| r.provider_name.to_string()),
        attempts: ctx.attempts.clone(),
        status: outcome.status,
        error: outcome.error,
        request,
        output_text: outcome.text,
        output_tool_calls: outcome.tool_calls,
        finish_reason: outcome.finish.map(|f| finish_name(f).to_string()),
        usage: outcome.usage,
        cost_usd: cost.unwrap_or(0.0),
        cost_unknown: cost.is_none(),
        latency_ms: ctx.elapsed_ms(),
        first_token_ms: outcome.first_token_ms,
        stream,
        client_disconnected: outcome.client_disconnected,
        policy_version: ctx.policy_version,
        replay_of: ctx.replay_of.clone(),
    }
}

/// Hand a record to the log store without waiting for it.
pub fn submit(state: &AppState, record: LogRecord) {
    if let Some(sender) = &state.log_sender {
        sender.hand_off(record);
    }
}

/// Record a successful non-streaming answer.
pub fn submit_success(
    state: &AppState,
    ctx: &RequestContext,
    request: ChatRequest,
    response: ChatResponse,
    route: &Route,
) {
    if state.log_sender.is_none() {
        return;
    }
    let latency = ctx.elapsed_ms();
    let record = build(
        ctx,
        request,
        Outcome {
            status: 200,
            error: None,
            route: Some(route),
            text: response.text,
            tool_calls: response.tool_calls,
            finish: Some(response.finish_reason),
            usage: response.usage,
            first_token_ms: Some(latency),
            client_disconnected: false,
        },
    );
    submit(state, record);
}

/// Record a request that failed after parsing.
pub fn submit_failure(
    state: &AppState,
    ctx: &RequestContext,
    request: ChatRequest,
    err: &GatewayError,
) {
    if state.log_sender.is_none() {
        return;
    }
    let record = build(
        ctx,
        request,
        Outcome {
            status: err.status(),
            error: Some(err.message.clone()),
            route: None,
            text: String::new(),
            tool_calls: Vec::new(),
            finish: None,
            usage: Usage::default(),
            first_token_ms: None,
            client_disconnected: false,
        },
    );
    submit(state, record);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(input: Option<f64>, output: Option<f64>) -> ModelConfig {
        ModelConfig {
            name: "m".into(),
            provider: "p".into(),
            upstream: None,
            input_usd_per_mtok: input,
            output_usd_per_mtok: output,
            cached_input_usd_per_mtok: Some(0.075),
            context_window: None,
            max_output_tokens: None,
            kind: "chat".into(),
        }
    }

    #[test]
    fn cost_uses_cached_price_for_cached_tokens() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 500_000,
            cached_input_tokens: 200_000,
            estimated: false,
        };
        let cost = cost_usd(&model(Some(0.15), Some(0.60)), &usage).unwrap_or(-1.0);
        let expected = 0.8 * 0.15 + 0.2 * 0.075 + 0.5 * 0.60;
        assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    }

    #[test]
    fn cost_is_unknown_without_prices() {
        assert!(cost_usd(&model(None, Some(1.0)), &Usage::default()).is_none());
    }

    #[test]
    fn missing_usage_is_estimated_and_marked() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![crate::canonical::Message::text(
                crate::canonical::Role::User,
                "hello there friend",
            )],
            ..ChatRequest::default()
        };
        let usage = usage_or_estimate(&request, Usage::default(), "general kenobi", &[]);
        assert!(usage.estimated);
        assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    }
}

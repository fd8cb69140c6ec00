//! The last step of the finish: build the request's [`LogRecord`] and hand it to the log
//! store (which redacts it before anything reaches disk), off the response's critical path.

use super::exchange::Finished;
use super::settle::finish_name;
use crate::error::Dialect;
use crate::logstore::{BudgetRecord, CacheRecord, LimitsRecord, LogRecord, LogSender};

/// A record the log could not take at once (its channel and waiting hand-offs are full).
pub struct Backlog {
    sender: LogSender,
    record: LogRecord,
}

impl Backlog {
    /// Wait until the log takes the record (counted as backpressure by the store).
    pub async fn wait(self) {
        self.sender.submit(self.record).await;
    }

    /// Block this thread until the log takes the record: only outside any runtime.
    pub fn block(self) {
        self.sender.blocking_submit(self.record);
    }
}

/// Hand the record of a finished request to the log; the record back when it must wait.
pub fn hand_off(done: Finished) -> Option<Backlog> {
    let sender = done.state.log_sender.clone()?;
    let record = build(done);
    match sender.hand_off(record) {
        Ok(()) => None,
        Err(record) => Some(Backlog { sender, record }),
    }
}

/// The record of a finished request.
pub fn build(done: Finished) -> LogRecord {
    let Finished {
        ctx,
        request,
        outcome,
        embedding_dimensions,
        stages,
        ..
    } = done;
    let limits = &stages.limits;
    let limits = (!limits.applied.is_empty()).then(|| LimitsRecord {
        applied: limits.applied.clone(),
        reserved_tokens: limits.reserved_tokens,
        settled_tokens: limits.settled_tokens.unwrap_or(0),
        queued_ms: limits.queued.as_secs_f64() * 1000.0,
    });
    let budgets = &stages.budgets;
    let budget = (!budgets.applied.is_empty() || budgets.acted.is_some()).then(|| BudgetRecord {
        applied: budgets.applied.clone(),
        action: budgets.acted.as_ref().map(|(action, _)| action.clone()),
        acted_on: budgets.acted.as_ref().map(|(_, key)| key.clone()),
        reserved_usd: budgets.reserved.to_string(),
        warning: budgets.warning.clone(),
    });
    let cached = &stages.cache;
    let cache = cached.status.map(|status| CacheRecord {
        status: status.as_str().to_string(),
        key: cached.key.map(|key| key.to_string()),
        scope: cached.scope.clone(),
        age_s: cached.age.map(|age| age.as_secs()),
        saved_usd: cached.saved.map(|usd| usd.to_string()),
        failure: cached.failure.clone(),
    });
    let now = chrono::Utc::now();
    let principal = ctx.principal.as_ref();
    let route = outcome.route.as_ref();
    let cost = outcome.cost;
    let status = outcome.status.unwrap_or(200);
    let stream = request.stream;
    let latency_ms = ctx.elapsed_ms();
    LogRecord {
        id: ctx.id,
        correlation_id: ctx.correlation_id,
        started_at: ctx
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        started_ms: ctx.started_at.timestamp_millis(),
        finished_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        dialect: match ctx.dialect {
            Dialect::OpenAi => "openai".into(),
            Dialect::Anthropic => "anthropic".into(),
        },
        endpoint: ctx.endpoint.as_str().into(),
        user: principal.map(|p| p.user.clone()).unwrap_or_default(),
        team: principal.and_then(|p| p.team.clone()),
        tier: principal.and_then(|p| p.tier.clone()),
        key_id: principal.map(|p| p.key_id.clone()).unwrap_or_default(),
        feature: ctx.feature,
        requested_model: ctx.requested_model,
        served_model: route.map(|r| r.model.name.clone()),
        provider: route.map(|r| r.provider_name.to_string()),
        attempts: ctx.attempts,
        status,
        error: outcome.error.map(|e| e.message),
        request,
        output_text: outcome.text,
        output_tool_calls: outcome.tool_calls,
        finish_reason: outcome.finish.map(|f| finish_name(f).to_string()),
        usage: outcome.usage,
        cost_usd: cost.map_or(0.0, crate::cost::Usd::dollars),
        cost_unknown: route.is_some() && cost.is_none(),
        latency_ms,
        first_token_ms: outcome.first_token_ms,
        stream,
        client_disconnected: outcome.client_disconnected,
        policy_version: ctx.policy_version,
        replay_of: ctx.replay_of,
        embedding_dimensions,
        limits,
        budget,
        cache,
    }
}

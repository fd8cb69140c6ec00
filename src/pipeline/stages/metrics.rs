//! The metrics stage (tail only): one sample per finished request into the Prometheus
//! registry. Cost in the tail: a handful of label-set hash lookups and atomic adds; label
//! values are interned at start, so nothing is allocated.

use std::sync::Arc;

use super::{CacheStatus, Stage};
use crate::error::Dialect;
use crate::observe::{Metrics, RequestSample};
use crate::pipeline::exchange::Finished;

/// The metrics stage.
pub struct MetricsStage {
    /// `None` when `[metrics] enabled = false`: the stage returns at once.
    metrics: Option<Arc<Metrics>>,
}

impl MetricsStage {
    /// The stage recording into `metrics`, or doing nothing without it.
    pub fn new(metrics: Option<Arc<Metrics>>) -> MetricsStage {
        MetricsStage { metrics }
    }
}

fn attempt_result(attempt: &crate::context::Attempt) -> &'static str {
    match attempt.reason.as_deref() {
        Some("capacity") => "capacity",
        Some("circuit_open") => "circuit_open",
        Some(_) => "skipped",
        None if attempt.status == 200 => "ok",
        None => "error",
    }
}

fn budget_action(action: &str) -> &'static str {
    match action {
        "downgrade" => "downgrade",
        "cap" => "cap",
        "queue" => "queue",
        "block" => "block",
        _ => "other",
    }
}

impl Stage for MetricsStage {
    fn on_finish(&self, done: &mut Finished) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let outcome = &done.outcome;
        let route = outcome.route.as_ref();
        let cached = done.stages.cache.served_by.as_ref();
        // A cache hit's usage is the stored answer's: no token was consumed upstream.
        let usage = match route {
            Some(_) => outcome.usage,
            None => crate::canonical::Usage::default(),
        };
        let sample = RequestSample {
            requested_model: &done.ctx.requested_model,
            served_model: route
                .map(|r| r.model.name.as_str())
                .or_else(|| cached.map(|(model, _)| model.as_str())),
            provider: route
                .map(|r| &*r.provider_name)
                .or_else(|| cached.map(|(_, provider)| provider.as_str())),
            dialect: match done.ctx.dialect {
                Dialect::OpenAi => "openai",
                Dialect::Anthropic => "anthropic",
            },
            feature: done.ctx.feature.as_deref(),
            status: outcome.status.unwrap_or(200),
            cache: done.stages.cache.status.map_or("none", CacheStatus::as_str),
            stream: done.request.stream,
            duration_s: done.ctx.elapsed_ms() / 1000.0,
            first_token_s: outcome.first_token_ms.map(|ms| ms / 1000.0),
            attempts: done
                .ctx
                .attempts
                .iter()
                .map(|a| {
                    (
                        a.provider.as_str(),
                        a.latency_ms / 1000.0,
                        attempt_result(a),
                    )
                })
                .collect(),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            cost_usd: outcome.cost.map(crate::cost::Usd::dollars),
            queued_s: (!done.stages.limits.applied.is_empty())
                .then_some(done.stages.limits.queued.as_secs_f64()),
            budget_action: done
                .stages
                .budgets
                .acted
                .as_ref()
                .map(|(action, _)| budget_action(action)),
        };
        metrics.record(&sample);
    }
}

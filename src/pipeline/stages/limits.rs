//! The admit stage's rate limits: every bucket a request matches (static `[[limits]]` rules
//! and the policy's `limits` hook), reserved all or none at admission, waited for in the fair
//! queue, settled in the tail to the real usage (with the model-capacity reservation that
//! dispatch took, on the same ledger).
//!
//! Cost on the request path: nothing when no rule matches and the policy names no limit;
//! otherwise one bucket key per matched rule, one input estimate (one pass over the prompt's
//! bytes) and one ledger reservation (see `benches/admission.rs`).

use std::sync::Arc;
use std::time::Duration;

use super::matcher::{Matcher, RequestFacts};
use super::{Flow, Stage};
use crate::config::{Config, LimitRule, Priority};
use crate::context::{Endpoint, RequestContext};
use crate::error::{ErrorCode, ErrorSource, GatewayError};
use crate::ledger::{
    Admission, BucketKey, BucketLimit, Demand, Limit, Refusal, RefusalReason, Reservation, Waiting,
    WindowStatus,
};
use crate::pipeline::capacity::reservation_tokens;
use crate::pipeline::exchange::{Exchange, Finished};
use crate::policy::LimitSpec;

/// What the limits stage knows about one request.
#[derive(Debug, Default)]
pub struct LimitsState {
    /// The reservation to settle in the tail.
    pub reservation: Option<Reservation>,
    /// The bucket keys the request counted against, in order.
    pub applied: Vec<String>,
    /// Tokens reserved at admission (input estimate + output allowance).
    pub reserved_tokens: u64,
    /// Tokens settled in the tail (the real usage, or what was observed).
    pub settled_tokens: Option<u64>,
    /// Time spent in the fair queue.
    pub queued: Duration,
    /// The tightest token limit right after admission, for the `x-ratelimit-*` headers.
    pub tightest: Option<(BucketKey, WindowStatus)>,
}

/// One `[[limits]]` rule, prepared once.
struct Rule {
    name: String,
    matcher: Matcher,
    limit: Limit,
    queue: Duration,
    priority: Priority,
}

impl Rule {
    fn new(index: usize, rule: &LimitRule) -> Rule {
        Rule {
            name: rule
                .name
                .clone()
                .unwrap_or_else(|| format!("limits[{index}]")),
            matcher: Matcher::new(&rule.matcher),
            limit: Limit {
                tokens_per_minute: rule.tokens_per_minute,
                requests_per_minute: rule.requests_per_minute,
                tokens_per_day: rule.tokens_per_day,
                requests_per_day: rule.requests_per_day,
                concurrency: rule.concurrency,
            },
            queue: Duration::from_millis(rule.queue_ms),
            priority: rule.priority,
        }
    }

    /// The bucket this request counts against under this rule, if it matches.
    fn bucket(&self, ctx: &RequestContext, model: &str) -> Option<BucketLimit> {
        let key = self.matcher.key(&self.name, &RequestFacts { ctx, model })?;
        Some(BucketLimit::new(key, self.limit))
    }
}

/// The limits stage.
pub struct Limits {
    rules: Vec<Rule>,
    admission: Arc<Admission>,
    metrics: Arc<crate::observe::Metrics>,
    default_output_tokens: u32,
}

impl Limits {
    /// The stage for `config`'s rules, on `admission`.
    pub fn new(
        config: &Config,
        admission: Arc<Admission>,
        metrics: Arc<crate::observe::Metrics>,
    ) -> Limits {
        Limits {
            rules: config
                .limits
                .iter()
                .enumerate()
                .map(|(i, rule)| Rule::new(i, rule))
                .collect(),
            admission,
            metrics,
            default_output_tokens: config.admission.reserve_output_tokens,
        }
    }

    /// Every limit the request matches: the static rules first, then the policy's.
    fn specs(&self, exchange: &Exchange) -> Vec<LimitSpec> {
        let policy = exchange.decided.as_ref().map(|d| d.limits.as_slice());
        let mut specs = Vec::with_capacity(self.rules.len() + policy.map_or(0, <[_]>::len));
        for rule in &self.rules {
            if let Some(bucket) = rule.bucket(&exchange.ctx, &exchange.request.model) {
                specs.push(LimitSpec {
                    bucket,
                    queue: rule.queue,
                    priority: rule.priority,
                    owner: None,
                });
            }
        }
        specs.extend(policy.into_iter().flatten().cloned());
        specs
    }
}

impl Stage for Limits {
    fn on_request(&self, exchange: &mut Exchange) -> Result<Flow, GatewayError> {
        let specs = self.specs(exchange);
        if specs.is_empty() {
            return Ok(Flow::Continue);
        }
        let plan = exchange.decided.as_ref().map(|d| &d.plan);
        let input = plan.map_or_else(
            || crate::tokens::quick_estimate_input(&exchange.request),
            |p| p.input_estimate,
        );
        let model = plan.and_then(|p| p.targets.first()).map(|r| &*r.model);
        let tokens = match exchange.ctx.endpoint {
            // Embeddings produce no output tokens: the input is the whole demand.
            Endpoint::Embeddings => input,
            Endpoint::Chat => reservation_tokens(
                input,
                exchange.request.max_tokens,
                model,
                self.default_output_tokens,
            ),
        };
        let demand = Demand { tokens };
        let user = exchange
            .ctx
            .principal
            .as_ref()
            .map_or("", |p| p.user.as_str());
        let waiting = Waiting {
            owner: Arc::from(
                specs
                    .iter()
                    .find_map(|s| s.owner.as_deref())
                    .unwrap_or(user),
            ),
            priority: if exchange.stages.budgets.batch_lane
                || specs.iter().any(|s| s.priority == Priority::Batch)
            {
                Priority::Batch
            } else {
                Priority::Interactive
            },
            max_wait: specs.iter().map(|s| s.queue).max().unwrap_or_default(),
        };
        let state = &mut exchange.stages.limits;
        state.applied = specs.iter().map(|s| s.bucket.key.to_string()).collect();
        state.reserved_tokens = demand.tokens;
        let buckets: Vec<BucketLimit> = specs.into_iter().map(|s| s.bucket).collect();
        let admission = self.admission.clone();
        let metrics = self.metrics.clone();
        Ok(Flow::Wait(Box::pin(async move {
            match admission.admit(&buckets, demand, &waiting).await {
                Ok(admitted) => {
                    let apply: super::Apply = Box::new(move |exchange: &mut Exchange| {
                        let state = &mut exchange.stages.limits;
                        state.queued = admitted.queued;
                        state.tightest = admitted.reservation.tightest_tokens().cloned();
                        state.reservation = Some(admitted.reservation);
                        None
                    });
                    Ok(apply)
                }
                Err(refusal) => {
                    metrics.rate_limited(refusal_kind(&refusal));
                    Err(refused(refusal))
                }
            }
        })))
    }

    fn on_finish(&self, done: &mut Finished) {
        let capacity = done.outcome.capacity.take();
        let reservation = done.stages.limits.reservation.take();
        if capacity.is_none() && reservation.is_none() {
            return;
        }
        let actual = settled_tokens(done);
        if let Some(capacity) = capacity {
            self.admission.settle_detached(
                capacity,
                Demand { tokens: actual },
                done.state.background.as_ref(),
            );
        }
        let Some(reservation) = reservation else {
            return;
        };
        done.stages.limits.settled_tokens = Some(actual);
        self.admission.settle_detached(
            reservation,
            Demand { tokens: actual },
            done.state.background.as_ref(),
        );
    }
}

/// The tokens to settle: the provider's reported usage; for a response cut short (client gone,
/// upstream failed mid-stream), never less than what was observed.
pub fn settled_tokens(done: &Finished) -> u64 {
    let usage = &done.outcome.usage;
    let reported = usage.input_tokens.saturating_add(usage.output_tokens);
    if done.outcome.route.is_none() {
        // No target answered: nothing was consumed upstream.
        return reported;
    }
    let observed_output = (done.outcome.text.len()
        + done
            .outcome
            .tool_calls
            .iter()
            .map(|c| c.name.len() + c.arguments.len())
            .sum::<usize>())
    .div_ceil(4) as u64;
    reported.max(usage.input_tokens.saturating_add(observed_output))
}

/// The kind of a refusal, for metrics: the limit's window, or why no wait helped.
fn refusal_kind(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::Limited {
            reason: RefusalReason::QueueFull,
            ..
        } => "queue_full",
        Refusal::Limited { denied, .. } => denied.window.as_str(),
        Refusal::BucketCap { .. } => "bucket_cap",
    }
}

/// A refusal as the client's error: 429 naming the limit, with `Retry-After` when a wait
/// would help.
fn refused(refusal: Refusal) -> GatewayError {
    match refusal {
        Refusal::Limited {
            denied,
            retry_after,
            reason,
        } => {
            let why = match reason {
                RefusalReason::NoQueue | RefusalReason::WaitTooLong => "",
                RefusalReason::NeverFits => {
                    " (the request alone is larger than the limit: it can never pass)"
                }
                RefusalReason::QueueFull => " (the queue is full)",
                RefusalReason::TimedOut => " (no room freed up within queue_ms)",
            };
            let after = retry_after
                .map(|d| format!("; retry after {:.1} s", d.as_secs_f64()))
                .unwrap_or_default();
            GatewayError::new(
                ErrorSource::Client,
                ErrorCode::RateLimited,
                format!(
                    "rate limit exceeded: {} of `{}`{why}{after}",
                    denied.window, denied.key
                ),
            )
            .with_retry_after(retry_after.map(|d| d.max(Duration::from_millis(1))))
        }
        Refusal::BucketCap { cap } => GatewayError::new(
            ErrorSource::Internal,
            ErrorCode::Unavailable,
            format!("too many live rate-limit buckets (cap {cap}); try again shortly"),
        )
        .with_retry_after(Some(Duration::from_secs(1))),
    }
}

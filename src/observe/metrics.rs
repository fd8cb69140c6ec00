//! Prometheus metrics (`GET /metrics`), on the `prometheus-client` crate (the Prometheus
//! project's Rust client): one registry per gateway, no global state.
//!
//! Histograms, never summaries, so that instances aggregate. Every label value comes from a
//! bounded set fixed at start: configured models and providers, the features the config
//! names (`[metrics] features`, and every `match.feature` of `[[limits]]` / `[[budgets]]`),
//! dialects, status classes, cache results, budget actions, limit windows. Anything else is
//! `other`; users and keys are never labels. Label values are `&'static str` interned at
//! start, so recording a request allocates nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::config::Config;

/// The label value of anything outside the configured sets.
pub const OTHER: &str = "other";

/// `switchyard_requests_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: &'static str,
    pub provider: &'static str,
    pub dialect: &'static str,
    pub feature: &'static str,
    pub status_class: &'static str,
    pub cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    model: &'static str,
    stream: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    provider: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

fn seconds_histogram() -> Histogram {
    // 0.5 ms … about 4.6 min.
    Histogram::new(exponential_buckets(0.0005, 2.0, 20))
}

fn overhead_histogram() -> Histogram {
    // 10 µs … about 0.65 s.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 17))
}

/// What one finished request contributes (built by the pipeline's tail).
pub struct RequestSample<'a> {
    /// The model asked for (mapped to a configured name or `other`).
    pub requested_model: &'a str,
    /// The configured model that served it, if one did.
    pub served_model: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub dialect: &'static str,
    pub feature: Option<&'a str>,
    pub status: u16,
    /// `hit`, `miss`, `stale`, `bypass`, or `none` when the cache is off.
    pub cache: &'static str,
    pub stream: bool,
    pub duration_s: f64,
    pub first_token_s: Option<f64>,
    /// Each attempt: provider, seconds, and its result (`ok`, `error`, `capacity`,
    /// `circuit_open`).
    pub attempts: Vec<(&'a str, f64, &'static str)>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cost_usd: Option<f64>,
    /// Seconds waited in the rate-limit queue, when a limit applied.
    pub queued_s: Option<f64>,
    /// The budget action, when one acted.
    pub budget_action: Option<&'static str>,
}

/// Counters read from other parts at scrape time, turned into counter increments.
#[derive(Default)]
struct Seen {
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    hook_errors: AtomicU64,
    backpressure_waits: AtomicU64,
    dropped_records: AtomicU64,
}

/// What the scrape reads from the rest of the gateway.
#[derive(Default)]
pub struct ScrapeInputs {
    /// Requests waiting in the rate-limit queue.
    pub queue_depth: u64,
    /// Each provider and whether its circuit is open.
    pub breakers: Vec<(String, bool)>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub hook_errors: u64,
    /// The request log's lag behind its journal, in records (none when the log is off).
    pub log_lag_records: Option<u64>,
    pub log_backpressure_waits: u64,
    pub log_dropped_records: u64,
}

/// Every metric of one gateway.
pub struct Metrics {
    registry: Registry,
    models: HashMap<String, &'static str>,
    providers: HashMap<String, &'static str>,
    features: HashMap<String, &'static str>,
    requests: Family<RequestLabels, Counter>,
    duration: Family<DurationLabels, Histogram, fn() -> Histogram>,
    first_token: Family<ModelLabel, Histogram, fn() -> Histogram>,
    upstream: Family<ProviderLabel, Histogram, fn() -> Histogram>,
    overhead: Histogram,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<ModelLabel, Counter<f64, AtomicU64>>,
    attempts: Family<AttemptLabels, Counter>,
    fallbacks: Family<ModelLabel, Counter>,
    queue_wait: Histogram,
    queue_depth: Gauge,
    rate_limited: Family<KindLabel, Counter>,
    budget_actions: Family<KindLabel, Counter>,
    breaker_open: Family<ProviderLabel, Gauge>,
    policy_reloads: Family<ResultLabel, Counter>,
    hook_errors: Counter,
    log_lag: Gauge,
    log_backpressure: Counter,
    log_dropped: Counter,
    seen: Seen,
}

/// Interns a bounded set of names for the life of the process (label values).
fn intern(names: impl IntoIterator<Item = String>) -> HashMap<String, &'static str> {
    names
        .into_iter()
        .map(|name| {
            let value: &'static str = Box::leak(name.clone().into_boxed_str());
            (name, value)
        })
        .collect()
}

impl Metrics {
    /// The metrics of a gateway running `config`.
    pub fn new(config: &Config) -> Metrics {
        let mut features: HashSet<String> = config.metrics.features.iter().cloned().collect();
        for feature in config
            .limits
            .iter()
            .map(|l| &l.matcher.feature)
            .chain(config.budgets.iter().map(|b| &b.matcher.feature))
            .flatten()
        {
            if feature != "*" {
                features.insert(feature.clone());
            }
        }
        let mut metrics = Metrics {
            registry: Registry::with_prefix("switchyard"),
            models: intern(config.models.iter().map(|m| m.name.clone())),
            providers: intern(config.providers.iter().map(|p| p.name.clone())),
            features: intern(features),
            requests: Family::default(),
            duration: Family::new_with_constructor(seconds_histogram),
            first_token: Family::new_with_constructor(seconds_histogram),
            upstream: Family::new_with_constructor(seconds_histogram),
            overhead: overhead_histogram(),
            tokens: Family::default(),
            cost: Family::default(),
            attempts: Family::default(),
            fallbacks: Family::default(),
            queue_wait: seconds_histogram(),
            queue_depth: Gauge::default(),
            rate_limited: Family::default(),
            budget_actions: Family::default(),
            breaker_open: Family::default(),
            policy_reloads: Family::default(),
            hook_errors: Counter::default(),
            log_lag: Gauge::default(),
            log_backpressure: Counter::default(),
            log_dropped: Counter::default(),
            seen: Seen::default(),
        };
        metrics.register();
        metrics
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "requests",
            "Requests by model, provider, dialect, feature, status class and cache result",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Whole request duration, arrival to the last byte",
            self.duration.clone(),
        );
        r.register(
            "time_to_first_token_seconds",
            "Arrival to the first content byte (streams) or the whole answer",
            self.first_token.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "One upstream attempt",
            self.upstream.clone(),
        );
        r.register(
            "gateway_overhead_seconds",
            "Request duration minus the time spent in upstream attempts",
            self.overhead.clone(),
        );
        r.register(
            "tokens",
            "Tokens by model and kind (input, output, cached_input)",
            self.tokens.clone(),
        );
        r.register(
            "cost_usd",
            "Cost in USD by served model (priced requests only)",
            self.cost.clone(),
        );
        r.register(
            "upstream_attempts",
            "Upstream attempts by provider and result (ok, error, capacity, circuit_open)",
            self.attempts.clone(),
        );
        r.register("fallbacks", "Requests served by another target than the first of their chain, or by none after several", self.fallbacks.clone());
        r.register(
            "ratelimit_wait_seconds",
            "Time waited in the rate-limit queue",
            self.queue_wait.clone(),
        );
        r.register(
            "ratelimit_queue_depth",
            "Requests waiting in the rate-limit queue",
            self.queue_depth.clone(),
        );
        r.register(
            "ratelimit_rejections",
            "Requests refused with 429 by the gateway's limits, by kind",
            self.rate_limited.clone(),
        );
        r.register(
            "budget_actions",
            "Budget actions taken (downgrade, cap, queue, block)",
            self.budget_actions.clone(),
        );
        r.register(
            "breaker_open",
            "1 when the provider's circuit breaker is open",
            self.breaker_open.clone(),
        );
        r.register(
            "policy_reloads",
            "Policy reloads by result",
            self.policy_reloads.clone(),
        );
        r.register(
            "policy_hook_errors",
            "Policy hooks that failed at request time",
            self.hook_errors.clone(),
        );
        r.register(
            "log_lag_records",
            "Records journaled but not yet indexed",
            self.log_lag.clone(),
        );
        r.register(
            "log_backpressure_waits",
            "Requests that waited for room in the request log",
            self.log_backpressure.clone(),
        );
        r.register(
            "log_dropped_records",
            "Request log records dropped (must stay 0)",
            self.log_dropped.clone(),
        );
    }

    fn model(&self, name: &str) -> &'static str {
        self.models.get(name).copied().unwrap_or(OTHER)
    }

    fn provider(&self, name: &str) -> &'static str {
        self.providers.get(name).copied().unwrap_or(OTHER)
    }

    /// Record one finished request.
    pub fn record(&self, sample: &RequestSample<'_>) {
        let served = sample.served_model.map(|m| self.model(m));
        let model = served.unwrap_or_else(|| self.model(sample.requested_model));
        let provider = sample.provider.map_or("none", |p| self.provider(p));
        let feature = match sample.feature {
            None => "none",
            Some(feature) => self.features.get(feature).copied().unwrap_or(OTHER),
        };
        let status_class = match sample.status {
            200..=299 => "2xx",
            400..=498 => "4xx",
            499 => "499",
            500..=599 => "5xx",
            _ => OTHER,
        };
        self.requests
            .get_or_create(&RequestLabels {
                model,
                provider,
                dialect: sample.dialect,
                feature,
                status_class,
                cache: sample.cache,
            })
            .inc();
        let stream = if sample.stream { "true" } else { "false" };
        self.duration
            .get_or_create(&DurationLabels { model, stream })
            .observe(sample.duration_s);
        if let Some(first) = sample.first_token_s {
            self.first_token
                .get_or_create(&ModelLabel { model })
                .observe(first);
        }
        let mut upstream_s = 0.0;
        for &(provider, seconds, result) in &sample.attempts {
            let provider = self.provider(provider);
            self.attempts
                .get_or_create(&AttemptLabels { provider, result })
                .inc();
            if result == "ok" || result == "error" {
                self.upstream
                    .get_or_create(&ProviderLabel { provider })
                    .observe(seconds);
                upstream_s += seconds;
            }
        }
        if sample.attempts.len() > 1 {
            self.fallbacks
                .get_or_create(&ModelLabel {
                    model: self.model(sample.requested_model),
                })
                .inc();
        }
        self.overhead
            .observe((sample.duration_s - upstream_s).max(0.0));
        for (kind, count) in [
            ("input", sample.input_tokens),
            ("output", sample.output_tokens),
            ("cached_input", sample.cached_input_tokens),
        ] {
            if count > 0 {
                self.tokens
                    .get_or_create(&TokenLabels { model, kind })
                    .inc_by(count);
            }
        }
        if let Some(cost) = sample.cost_usd.filter(|c| *c > 0.0) {
            self.cost.get_or_create(&ModelLabel { model }).inc_by(cost);
        }
        if let Some(queued) = sample.queued_s {
            self.queue_wait.observe(queued);
        }
        if let Some(action) = sample.budget_action {
            self.budget_actions
                .get_or_create(&KindLabel { kind: action })
                .inc();
        }
    }

    /// A request refused with 429 by a rate limit of this kind (a window name such as
    /// `tokens_per_minute`, `queue_full` or `bucket_cap`).
    pub fn rate_limited(&self, kind: &'static str) {
        self.rate_limited.get_or_create(&KindLabel { kind }).inc();
    }

    /// The Prometheus text exposition, after reading the scrape-time values.
    pub fn render(&self, inputs: &ScrapeInputs) -> String {
        self.queue_depth
            .set(i64::try_from(inputs.queue_depth).unwrap_or(i64::MAX));
        for (provider, open) in &inputs.breakers {
            self.breaker_open
                .get_or_create(&ProviderLabel {
                    provider: self.provider(provider),
                })
                .set(i64::from(*open));
        }
        let delta =
            |seen: &AtomicU64, now: u64| now.saturating_sub(seen.swap(now, Ordering::AcqRel));
        self.policy_reloads
            .get_or_create(&ResultLabel { result: "ok" })
            .inc_by(delta(&self.seen.reloads_ok, inputs.reloads_ok));
        self.policy_reloads
            .get_or_create(&ResultLabel { result: "failed" })
            .inc_by(delta(&self.seen.reloads_failed, inputs.reloads_failed));
        self.hook_errors
            .inc_by(delta(&self.seen.hook_errors, inputs.hook_errors));
        if let Some(lag) = inputs.log_lag_records {
            self.log_lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
        self.log_backpressure.inc_by(delta(
            &self.seen.backpressure_waits,
            inputs.log_backpressure_waits,
        ));
        self.log_dropped.inc_by(delta(
            &self.seen.dropped_records,
            inputs.log_dropped_records,
        ));
        let mut text = String::with_capacity(16 * 1024);
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %err, "metrics could not be encoded");
        }
        text
    }
}

//! `[[limits]]` (static rate limits), `[admission]` (the ledger and queue sizing) and the
//! priority lanes of the fair queue.

use serde::Deserialize;

/// A lane of the fair queue: `interactive` waiters are served before `batch` ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Served first (the default).
    #[default]
    Interactive,
    /// Served when no interactive request waits.
    Batch,
}

impl Priority {
    /// The name in config and scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Batch => "batch",
        }
    }
}

/// Which requests a `[[limits]]` rule counts: every field given must match; an omitted field
/// matches all; `"*"` matches all and gives each distinct value its own bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitMatch {
    pub user: Option<String>,
    pub team: Option<String>,
    pub tier: Option<String>,
    pub feature: Option<String>,
    /// The model the client asked for.
    pub model: Option<String>,
    /// The gateway key's id.
    pub key: Option<String>,
}

/// One `[[limits]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    /// The bucket name's prefix, shown in 429 messages and `/admin/limits` (default
    /// `limits[i]`).
    #[serde(default)]
    pub name: Option<String>,
    /// Which requests count against it.
    #[serde(default, rename = "match")]
    pub matcher: LimitMatch,
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
    #[serde(default)]
    pub requests_per_day: Option<u64>,
    #[serde(default)]
    pub concurrency: Option<u64>,
    /// How long a request over this limit may wait for room (0: answer 429 at once).
    #[serde(default)]
    pub queue_ms: u64,
    /// The request's lane in the queue.
    #[serde(default)]
    pub priority: Priority,
}

impl LimitRule {
    /// Whether the rule limits anything at all.
    pub fn limits_something(&self) -> bool {
        self.tokens_per_minute.is_some()
            || self.requests_per_minute.is_some()
            || self.tokens_per_day.is_some()
            || self.requests_per_day.is_some()
            || self.concurrency.is_some()
    }
}

/// `[admission]`: sizing of the rate-limit ledger and its queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Live buckets at most; a request that would create more is refused (503), never
    /// unbounded memory. Idle buckets are evicted.
    pub max_buckets: usize,
    /// Requests waiting in the fair queue at most, over every bucket; beyond, 429 at once.
    pub max_waiters: usize,
    /// The output allowance reserved when neither the request (`max_tokens`) nor its model
    /// (`reserve_output_tokens`, `max_output_tokens`) names one.
    pub reserve_output_tokens: u32,
    /// How long a request may wait when every target of its chain lacks capacity (`tpm`,
    /// `rpm` or the provider's own headers); 0 answers 429 at once.
    pub capacity_queue_ms: u64,
    /// How often idle buckets are evicted.
    pub evict_every_ms: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_buckets: 100_000,
            max_waiters: 10_000,
            reserve_output_tokens: 1024,
            capacity_queue_ms: 5_000,
            evict_every_ms: 10_000,
        }
    }
}

/// Every problem of the `[[limits]]` rules and `[admission]`, as `(field, reason)`.
pub fn limit_problems(
    rules: &[LimitRule],
    admission: &AdmissionConfig,
    model_names: &std::collections::HashSet<&str>,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = match &rule.name {
            Some(name) => format!("limits[{i}] ({name})"),
            None => format!("limits[{i}]"),
        };
        if !rule.limits_something() {
            problems.push((
                at.clone(),
                "sets no limit (tokens_per_minute, requests_per_minute, tokens_per_day, \
                 requests_per_day or concurrency)"
                    .into(),
            ));
        }
        if let Some(name) = &rule.name {
            if name.is_empty() || name.contains(char::is_whitespace) {
                problems.push((format!("{at}.name"), "must be a word without spaces".into()));
            }
            if !names.insert(name.as_str()) {
                problems.push((format!("{at}.name"), "duplicate limit name".into()));
            }
        }
        if let Some(model) = rule.matcher.model.as_deref() {
            if model != "*" && !model_names.contains(model) {
                problems.push((
                    format!("{at}.match.model"),
                    format!("no [[models]] entry named `{model}`"),
                ));
            }
        }
        if rule.queue_ms > 600_000 {
            problems.push((
                format!("{at}.queue_ms"),
                "must be at most 600000 (10 minutes)".into(),
            ));
        }
    }
    if admission.max_buckets == 0 {
        problems.push((
            "admission.max_buckets".into(),
            "must be greater than 0".into(),
        ));
    }
    if admission.evict_every_ms == 0 {
        problems.push((
            "admission.evict_every_ms".into(),
            "must be greater than 0".into(),
        ));
    }
    problems
}

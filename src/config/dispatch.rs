//! `[dispatch]`: retries, backoff and circuit breakers.

use serde::Deserialize;

/// `[dispatch]`: retries and circuit breakers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Retries of a retryable error on the same target before the next target (a policy's
    /// `retries` overrides it per request).
    pub retries: u32,
    /// First backoff; doubles per retry, with full jitter.
    pub backoff_base_ms: u64,
    /// Backoff cap. A `Retry-After` longer than this moves on to the next target instead.
    pub backoff_max_ms: u64,
    /// Consecutive failures that open a provider's breaker.
    pub breaker_failures: u32,
    /// Failure rate over the window that opens it.
    pub breaker_error_rate: f64,
    /// Outcomes needed in the window before the rate counts.
    pub breaker_min_requests: usize,
    /// Outcomes remembered per provider.
    pub breaker_window: usize,
    /// How long an open breaker stays open before a probe.
    pub breaker_open_ms: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            retries: 1,
            backoff_base_ms: 50,
            backoff_max_ms: 2_000,
            breaker_failures: 5,
            breaker_error_rate: 0.5,
            breaker_min_requests: 20,
            breaker_window: 50,
            breaker_open_ms: 10_000,
        }
    }
}

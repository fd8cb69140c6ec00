//! Provider health: a circuit breaker per provider and injected chaos faults.
//!
//! The breaker opens after `breaker_failures` consecutive failures, or when the failure rate
//! over the last `breaker_window` outcomes reaches `breaker_error_rate` (with at least
//! `breaker_min_requests` of them); after `breaker_open_ms` it half-opens and lets one probe
//! through: success closes it, failure opens it again. Times use tokio's clock, so tests run
//! with a paused clock.

use crate::config::DispatchConfig;
use crate::error::{ErrorCode, GatewayError};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    consecutive_failures: u32,
    window: VecDeque<bool>,
}

impl Breaker {
    fn new() -> Self {
        Breaker {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            window: VecDeque::new(),
        }
    }
}

/// A fault injected on a provider by `POST /admin/chaos`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The provider name the fault applies to.
    pub provider: String,
    /// Fraction of calls that fail (0.0–1.0); 1.0 with `status` 0 is a full outage (connection refused).
    #[serde(default)]
    pub error_rate: f64,
    /// Status of injected failures (0 = connection refused).
    #[serde(default = "default_fault_status")]
    pub status: u16,
    /// Latency added before every call.
    #[serde(default)]
    pub latency_ms: u64,
    /// How long the fault lasts.
    pub duration_s: f64,
}

fn default_fault_status() -> u16 {
    503
}

#[derive(Debug, Clone)]
struct Fault {
    id: u64,
    spec: FaultSpec,
    expires: Instant,
}

/// What chaos does to one call.
#[derive(Debug, Default)]
pub struct Injection {
    /// Sleep this long first.
    pub delay: Duration,
    /// Then fail with this instead of calling the provider.
    pub error: Option<GatewayError>,
}

/// Breakers and chaos faults, shared by all requests.
#[derive(Debug)]
pub struct Health {
    cfg: DispatchConfig,
    breakers: Mutex<HashMap<String, Breaker>>,
    faults: Mutex<Vec<Fault>>,
    next_fault_id: std::sync::atomic::AtomicU64,
}

impl Health {
    /// Empty state with these thresholds.
    pub fn new(cfg: DispatchConfig) -> Self {
        Health {
            cfg,
            breakers: Mutex::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
            next_fault_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// The dispatch settings.
    pub fn config(&self) -> &DispatchConfig {
        &self.cfg
    }

    /// May a call go to `provider` now? In half-open state only one probe is let through.
    pub fn allow(&self, provider: &str) -> bool {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(breaker) = breakers.get_mut(provider) else {
            return true;
        };
        match breaker.state {
            BreakerState::Closed => true,
            BreakerState::Open { until } => {
                if Instant::now() >= until {
                    breaker.state = BreakerState::HalfOpen {
                        probe_in_flight: true,
                    };
                    tracing::info!(provider, "circuit half-open; sending a probe");
                    true
                } else {
                    false
                }
            }
            BreakerState::HalfOpen { probe_in_flight } => {
                if probe_in_flight {
                    false
                } else {
                    breaker.state = BreakerState::HalfOpen {
                        probe_in_flight: true,
                    };
                    true
                }
            }
        }
    }

    /// Whether the provider's breaker is closed (for `provider_healthy` in policies).
    pub fn healthy(&self, provider: &str) -> bool {
        let breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        breakers
            .get(provider)
            .is_none_or(|b| matches!(b.state, BreakerState::Closed))
    }

    /// Record the outcome of a call that `allow` let through.
    pub fn record(&self, provider: &str, success: bool) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let breaker = breakers
            .entry(provider.to_string())
            .or_insert_with(Breaker::new);
        if breaker.window.len() >= self.cfg.breaker_window.max(1) {
            breaker.window.pop_front();
        }
        breaker.window.push_back(success);
        if success {
            breaker.consecutive_failures = 0;
            if !matches!(breaker.state, BreakerState::Closed) {
                tracing::info!(provider, "circuit closed after a successful probe");
                breaker.window.clear();
            }
            breaker.state = BreakerState::Closed;
            return;
        }
        breaker.consecutive_failures += 1;
        let failures = breaker.window.iter().filter(|ok| !**ok).count();
        let rate_tripped = breaker.window.len() >= self.cfg.breaker_min_requests
            && failures as f64 / breaker.window.len() as f64 >= self.cfg.breaker_error_rate;
        let trip = matches!(breaker.state, BreakerState::HalfOpen { .. })
            || breaker.consecutive_failures >= self.cfg.breaker_failures
            || rate_tripped;
        if trip && !matches!(breaker.state, BreakerState::Open { .. }) {
            tracing::warn!(
                provider,
                consecutive = breaker.consecutive_failures,
                "circuit opened"
            );
            breaker.state = BreakerState::Open {
                until: Instant::now() + Duration::from_millis(self.cfg.breaker_open_ms),
            };
        }
    }

    /// Add a chaos fault; returns its id.
    pub fn inject(&self, spec: FaultSpec) -> Result<u64, GatewayError> {
        if !(0.0..=1.0).contains(&spec.error_rate) {
            return Err(GatewayError::invalid(
                "error_rate",
                "error_rate must be between 0.0 and 1.0",
            ));
        }
        if spec.status != 0 && !(400..=599).contains(&spec.status) {
            return Err(GatewayError::invalid(
                "status",
                "status must be 0 (refused) or 400..=599",
            ));
        }
        if !(spec.duration_s.is_finite() && spec.duration_s > 0.0 && spec.duration_s <= 86_400.0) {
            return Err(GatewayError::invalid(
                "duration_s",
                "duration_s must be in (0, 86400]",
            ));
        }
        if spec.latency_ms > 600_000 {
            return Err(GatewayError::invalid(
                "latency_ms",
                "latency_ms must be at most 600000",
            ));
        }
        let id = self
            .next_fault_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let expires = Instant::now() + Duration::from_secs_f64(spec.duration_s);
        tracing::warn!(provider = %spec.provider, error_rate = spec.error_rate, status = spec.status, latency_ms = spec.latency_ms, duration_s = spec.duration_s, "chaos fault injected");
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        faults.push(Fault { id, spec, expires });
        Ok(id)
    }

    /// Active faults, with the seconds each has left.
    pub fn faults_json(&self) -> serde_json::Value {
        let now = Instant::now();
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        faults.retain(|f| f.expires > now);
        let list: Vec<_> = faults
            .iter()
            .map(|f| {
                serde_json::json!({
                    "id": f.id,
                    "provider": f.spec.provider,
                    "error_rate": f.spec.error_rate,
                    "status": f.spec.status,
                    "latency_ms": f.spec.latency_ms,
                    "remaining_s": (f.expires - now).as_secs_f64(),
                })
            })
            .collect();
        serde_json::json!({ "faults": list })
    }

    /// What chaos does to the next call to `provider` (nothing when no fault is active).
    pub fn injection(&self, provider: &str) -> Injection {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        if faults.is_empty() {
            return Injection::default();
        }
        let now = Instant::now();
        faults.retain(|f| f.expires > now);
        let mut injection = Injection::default();
        for fault in faults.iter().filter(|f| f.spec.provider == provider) {
            injection.delay += Duration::from_millis(fault.spec.latency_ms);
            if injection.error.is_none()
                && fault.spec.error_rate > 0.0
                && rand::random::<f64>() < fault.spec.error_rate
            {
                injection.error = Some(if fault.spec.status == 0 {
                    GatewayError::upstream(
                        ErrorCode::BadGateway,
                        format!("cannot connect to provider `{provider}`: connection refused (chaos drill)"),
                    )
                } else {
                    crate::providers::status_error(
                        provider,
                        fault.spec.status,
                        "injected by chaos drill",
                        None,
                    )
                });
            }
        }
        injection
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg() -> DispatchConfig {
        DispatchConfig {
            breaker_failures: 3,
            breaker_open_ms: 1_000,
            ..DispatchConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_consecutive_failures_and_closes_after_probe() {
        let health = Health::new(cfg());
        for _ in 0..3 {
            assert!(health.allow("p"));
            health.record("p", false);
        }
        assert!(!health.allow("p"), "open after 3 failures");
        assert!(!health.healthy("p"));
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert!(health.allow("p"), "half-open lets one probe through");
        assert!(!health.allow("p"), "only one probe at a time");
        health.record("p", true);
        assert!(health.healthy("p"));
        assert!(health.allow("p"));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_the_breaker() {
        let health = Health::new(cfg());
        for _ in 0..3 {
            health.record("p", false);
        }
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert!(health.allow("p"));
        health.record("p", false);
        assert!(!health.allow("p"));
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_on_error_rate() {
        let health = Health::new(DispatchConfig {
            breaker_failures: 100,
            breaker_min_requests: 10,
            breaker_error_rate: 0.5,
            ..DispatchConfig::default()
        });
        for i in 0..10 {
            health.record("p", i % 2 == 0);
        }
        assert!(!health.allow("p"));
    }

    #[tokio::test(start_paused = true)]
    async fn chaos_faults_expire_by_themselves() {
        let health = Health::new(cfg());
        health
            .inject(FaultSpec {
                provider: "p".into(),
                error_rate: 1.0,
                status: 503,
                latency_ms: 0,
                duration_s: 2.0,
            })
            .unwrap();
        assert_eq!(
            health.injection("p").error.unwrap().upstream_status,
            Some(503)
        );
        assert!(health.injection("q").error.is_none());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(health.injection("p").error.is_none());
        assert_eq!(health.faults_json()["faults"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn chaos_rejects_bad_specs() {
        let health = Health::new(cfg());
        let bad = FaultSpec {
            provider: "p".into(),
            error_rate: 2.0,
            status: 503,
            latency_ms: 0,
            duration_s: 1.0,
        };
        assert_eq!(health.inject(bad).unwrap_err().status(), 400);
    }
}

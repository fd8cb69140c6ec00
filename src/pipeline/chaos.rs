//! Chaos drills: faults injected on a provider by `POST /admin/chaos` for a while (error
//! rate, status, added latency), to rehearse the fallback chains on the live config. Times
//! use tokio's clock, so tests run with a paused clock.

use crate::error::{ErrorCode, GatewayError};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

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

/// The active faults, shared by all requests.
#[derive(Debug, Default)]
pub struct Chaos {
    faults: Mutex<Vec<Fault>>,
    next_fault_id: std::sync::atomic::AtomicU64,
}

impl Chaos {
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
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
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

    #[tokio::test(start_paused = true)]
    async fn chaos_faults_expire_by_themselves() {
        let health = Chaos::default();
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
        let health = Chaos::default();
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

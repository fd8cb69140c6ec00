//! What scripts may ask the gateway: model facts, provider health, observed latency.
//!
//! [`HostInfo`] is the one door from a script to the running gateway. [`ConfigHost`] answers
//! from the configuration alone (for `policy check|test` and tests) and can be given a
//! [`LatencyWindow`] and a health function to serve live traffic.

use crate::config::Config;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Facts about one configured model, as a script sees them through `model_info(name)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The `[[providers]]` name serving the model.
    pub provider: String,
    /// Price of a million input tokens, when configured.
    pub input_usd_per_mtok: Option<f64>,
    /// Price of a million output tokens, when configured.
    pub output_usd_per_mtok: Option<f64>,
    /// Context window in tokens, when configured.
    pub context_window: Option<u64>,
}

/// The gateway facts a policy script can read. Implementations must be cheap: they run
/// inside a hook on the request path.
pub trait HostInfo: Send + Sync {
    /// The model's provider, prices and context window; `None` for an unknown model.
    fn model_info(&self, name: &str) -> Option<ModelInfo>;
    /// Whether the provider can take traffic now (its breaker is not open).
    fn provider_healthy(&self, provider: &str) -> bool;
    /// The `pct` percentile (0–100) of recently observed latency of `model` in milliseconds;
    /// `None` when nothing was observed recently.
    fn latency_ms(&self, model: &str, pct: f64) -> Option<f64>;
    /// Tokens left this minute for `model` at its provider (its `tpm` and what the provider
    /// said in its rate-limit headers); `None` when nothing limits it or nothing is known.
    fn headroom(&self, _model: &str) -> Option<u64> {
        None
    }
    /// One rate-limit bucket as seen now; `None` when it is not live.
    fn limit_status(&self, _key: &str) -> Option<LimitStatus> {
        None
    }
}

/// A rate-limit bucket as a script sees it through `limit_status(key)`: its first limited
/// window (tokens per minute first, then requests per minute, per day, concurrency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitStatus {
    /// The window, e.g. `tokens_per_minute`.
    pub window: &'static str,
    /// Used in the window (may exceed the limit after a charge).
    pub used: i64,
    /// The limit.
    pub limit: u64,
    /// Milliseconds until the window is full again.
    pub resets_in_ms: u64,
}

/// Live rate-limit facts for [`ConfigHost::with_limits`]: the gateway's ledger and model
/// capacity.
pub trait LimitsView: Send + Sync {
    /// See [`HostInfo::headroom`].
    fn headroom(&self, model: &str) -> Option<u64>;
    /// See [`HostInfo::limit_status`].
    fn limit_status(&self, key: &str) -> Option<LimitStatus>;
}

/// A health oracle for [`ConfigHost::with_health`]: provider name → healthy.
pub type HealthFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// [`HostInfo`] answered from the configuration: `model_info` from `[[models]]`; providers
/// are healthy and latency unknown unless a health function or latency window is attached.
pub struct ConfigHost {
    models: HashMap<String, ModelInfo>,
    latency: Option<Arc<LatencyWindow>>,
    health: Option<HealthFn>,
    limits: Option<Arc<dyn LimitsView>>,
}

impl ConfigHost {
    /// A host knowing the models of `config`.
    pub fn new(config: &Config) -> ConfigHost {
        let models = config
            .models
            .iter()
            .map(|m| {
                let info = ModelInfo {
                    provider: m.provider.clone(),
                    input_usd_per_mtok: m.input_usd_per_mtok,
                    output_usd_per_mtok: m.output_usd_per_mtok,
                    context_window: m.context_window,
                };
                (m.name.clone(), info)
            })
            .collect();
        ConfigHost {
            models,
            latency: None,
            health: None,
            limits: None,
        }
    }

    /// A host knowing exactly these models (tests, benches).
    pub fn from_models(models: impl IntoIterator<Item = (String, ModelInfo)>) -> ConfigHost {
        ConfigHost {
            models: models.into_iter().collect(),
            latency: None,
            health: None,
            limits: None,
        }
    }

    /// Answer `latency_ms` from this window of observed latencies.
    pub fn with_latency(mut self, window: Arc<LatencyWindow>) -> ConfigHost {
        self.latency = Some(window);
        self
    }

    /// Answer `headroom` and `limit_status` from the live ledger.
    pub fn with_limits(mut self, limits: Arc<dyn LimitsView>) -> ConfigHost {
        self.limits = Some(limits);
        self
    }

    /// Answer `provider_healthy` with this function (e.g. "breaker not open").
    pub fn with_health(mut self, health: HealthFn) -> ConfigHost {
        self.health = Some(health);
        self
    }
}

impl HostInfo for ConfigHost {
    fn model_info(&self, name: &str) -> Option<ModelInfo> {
        self.models.get(name).cloned()
    }

    fn provider_healthy(&self, provider: &str) -> bool {
        self.health.as_ref().is_none_or(|healthy| healthy(provider))
    }

    fn latency_ms(&self, model: &str, pct: f64) -> Option<f64> {
        self.latency.as_ref()?.percentile(model, pct)
    }

    fn headroom(&self, model: &str) -> Option<u64> {
        self.limits.as_ref()?.headroom(model)
    }

    fn limit_status(&self, key: &str) -> Option<LimitStatus> {
        self.limits.as_ref()?.limit_status(key)
    }
}

/// Samples kept per model.
const WINDOW_SAMPLES: usize = 256;
/// Samples older than this are forgotten.
const WINDOW_AGE: Duration = Duration::from_secs(60);

/// A rolling window of observed latencies per model: the last 256 samples of the last
/// 60 seconds. The dispatcher calls [`LatencyWindow::record`] after each attempt; scripts
/// read [`LatencyWindow::percentile`] through `latency_ms(model, pct)`.
///
/// A read lock on the model map plus one short per-model mutex per call; a model's first
/// sample takes the write lock once.
#[derive(Default)]
pub struct LatencyWindow {
    models: RwLock<HashMap<String, Samples>>,
}

/// One model's samples: when each was observed and its latency in milliseconds.
type Samples = Mutex<VecDeque<(Instant, f64)>>;

impl LatencyWindow {
    /// An empty window.
    pub fn new() -> LatencyWindow {
        LatencyWindow::default()
    }

    /// Remember that an attempt on `model` took `ms` milliseconds.
    pub fn observe_latency(&self, model: &str, ms: f64) {
        self.record_at(model, ms, Instant::now());
    }

    fn record_at(&self, model: &str, ms: f64, now: Instant) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        {
            let models = self.models.read().unwrap_or_else(|e| e.into_inner());
            if let Some(samples) = models.get(model) {
                push_sample(samples, ms, now);
                return;
            }
        }
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        let samples = models
            .entry(model.to_string())
            .or_insert_with(|| Mutex::new(VecDeque::with_capacity(WINDOW_SAMPLES)));
        push_sample(samples, ms, now);
    }

    /// The `pct` percentile (0–100, clamped) of the recent samples of `model`, by the
    /// nearest-rank method; `None` without recent samples.
    pub fn percentile(&self, model: &str, pct: f64) -> Option<f64> {
        self.percentile_at(model, pct, Instant::now())
    }

    fn percentile_at(&self, model: &str, pct: f64, now: Instant) -> Option<f64> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        let mut samples = models.get(model)?.lock().unwrap_or_else(|e| e.into_inner());
        forget_old(&mut samples, now);
        let mut values: Vec<f64> = samples.iter().map(|(_, ms)| *ms).collect();
        drop(samples);
        if values.is_empty() {
            return None;
        }
        let pct = if pct.is_nan() {
            50.0
        } else {
            pct.clamp(0.0, 100.0)
        };
        let rank = ((pct / 100.0) * values.len() as f64).ceil() as usize;
        let index = rank.saturating_sub(1).min(values.len() - 1);
        let (_, value, _) = values.select_nth_unstable_by(index, f64::total_cmp);
        Some(*value)
    }
}

fn push_sample(samples: &Samples, ms: f64, now: Instant) {
    let mut samples = samples.lock().unwrap_or_else(|e| e.into_inner());
    forget_old(&mut samples, now);
    if samples.len() >= WINDOW_SAMPLES {
        samples.pop_front();
    }
    samples.push_back((now, ms));
}

fn forget_old(samples: &mut VecDeque<(Instant, f64)>, now: Instant) {
    while samples
        .front()
        .is_some_and(|(at, _)| now.saturating_duration_since(*at) > WINDOW_AGE)
    {
        samples.pop_front();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_nearest_rank() {
        let window = LatencyWindow::new();
        for ms in 1..=100 {
            window.observe_latency("m", ms as f64);
        }
        assert_eq!(window.percentile("m", 50.0), Some(50.0));
        assert_eq!(window.percentile("m", 95.0), Some(95.0));
        assert_eq!(window.percentile("m", 100.0), Some(100.0));
        assert_eq!(window.percentile("m", 0.0), Some(1.0));
        assert_eq!(window.percentile("other", 50.0), None);
    }

    #[test]
    fn window_keeps_only_the_latest_samples() {
        let window = LatencyWindow::new();
        for _ in 0..WINDOW_SAMPLES {
            window.observe_latency("m", 1000.0);
        }
        for _ in 0..WINDOW_SAMPLES {
            window.observe_latency("m", 10.0);
        }
        assert_eq!(window.percentile("m", 100.0), Some(10.0));
    }

    #[test]
    fn samples_older_than_a_minute_are_forgotten() {
        let window = LatencyWindow::new();
        let start = Instant::now();
        window.record_at("m", 500.0, start);
        let later = start + WINDOW_AGE + Duration::from_secs(1);
        assert_eq!(window.percentile_at("m", 50.0, later), None);
        window.record_at("m", 20.0, later);
        assert_eq!(window.percentile_at("m", 50.0, later), Some(20.0));
    }

    #[test]
    fn config_host_health_and_latency_are_pluggable() {
        let window = Arc::new(LatencyWindow::new());
        window.observe_latency("a", 42.0);
        let host = ConfigHost::from_models([(
            "a".to_string(),
            ModelInfo {
                provider: "p".into(),
                input_usd_per_mtok: Some(1.0),
                output_usd_per_mtok: None,
                context_window: None,
            },
        )])
        .with_latency(window)
        .with_health(Arc::new(|p| p != "down"));
        assert_eq!(host.latency_ms("a", 50.0), Some(42.0));
        assert!(host.provider_healthy("p"));
        assert!(!host.provider_healthy("down"));
        assert_eq!(host.model_info("a").map(|m| m.provider), Some("p".into()));
        assert!(host.model_info("b").is_none());
    }
}

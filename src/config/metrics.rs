//! `[metrics]`: the Prometheus endpoint.

use serde::Deserialize;

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Record metrics and serve `/metrics` (default true). Off, the metrics stage returns at
    /// once and `/metrics` answers 404.
    pub enabled: bool,
    /// Serve `/metrics` to anyone (default: behind the admin key).
    pub public: bool,
    /// Features reported by name in metric labels (with every `match.feature` of
    /// `[[limits]]` and `[[budgets]]`); any other feature is `other`.
    pub features: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            public: false,
            features: Vec::new(),
        }
    }
}

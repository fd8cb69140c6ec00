//! `[metrics]`: the Prometheus endpoint.

use serde::Deserialize;

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` to anyone (default: behind the admin key).
    pub public: bool,
    /// Features reported by name in metric labels (with every `match.feature` of
    /// `[[limits]]` and `[[budgets]]`); any other feature is `other`.
    pub features: Vec<String>,
}

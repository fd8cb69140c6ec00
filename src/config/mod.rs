//! The TOML configuration: serde types and validation.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a silent default.
//! [`Config::load`] parses, then [`Config::validate`] collects every problem at once, each
//! naming the file, the field path and the reason.

mod budgets;
mod cache;
mod cost;
mod dispatch;
mod keys;
mod limits;
mod logs;
mod metrics;
mod models;
mod policy;
mod providers;
mod server;

pub use budgets::{BudgetPeriod, BudgetRule};
pub use cache::{CacheConfig, CacheScope};
pub use cost::{CostConfig, Unpriced};
pub use dispatch::DispatchConfig;
pub use keys::KeyConfig;
pub use limits::{AdmissionConfig, LimitMatch, LimitRule, Priority};
pub use logs::{LogsConfig, RedactConfig, RedactPattern};
pub use metrics::MetricsConfig;
pub use models::{ModelConfig, ModelKind};
pub use policy::{OnError, PolicyConfig};
pub use providers::{MockSettings, ProviderConfig, ProviderKind};
pub use server::ServerConfig;

use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// A value that must never be printed or serialized: `Debug` shows `****`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wrap a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself; call only where it is sent to its one destination.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub logs: LogsConfig,
    #[serde(default)]
    pub dispatch: DispatchConfig,
    /// Static rate limits; the policy's `limits` hook adds per-request ones.
    #[serde(default)]
    pub limits: Vec<LimitRule>,
    #[serde(default)]
    pub admission: AdmissionConfig,
    /// Spending limits.
    #[serde(default)]
    pub budgets: Vec<BudgetRule>,
    /// Prices, the spend ledger and what an unpriced model does.
    #[serde(default)]
    pub cost: CostConfig,
    /// The response cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The file this was read from (for messages and relative paths); not a TOML field.
    #[serde(skip)]
    pub source: PathBuf,
}

/// Why a config could not be used: every problem, each on its own line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: invalid configuration:\n{}", problems.join("\n"))]
    Invalid { path: String, problems: Vec<String> },
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        config.source = path.to_path_buf();
        config.resolve_relative_paths();
        config.validate()?;
        Ok(config)
    }

    /// Parse TOML text (no validation); `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.display().to_string(),
            message: err.to_string(),
        })
    }

    /// Paths in the file are relative to the file's directory.
    fn resolve_relative_paths(&mut self) {
        let base = self
            .source
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if let Some(dir) = &self.policy.dir {
            if dir.is_relative() {
                self.policy.dir = Some(base.join(dir));
            }
        }
        if self.logs.dir.is_relative() {
            self.logs.dir = base.join(&self.logs.dir);
        }
        if self.cost.ledger_dir.is_relative() {
            self.cost.ledger_dir = base.join(&self.cost.ledger_dir);
        }
        if let Some(file) = &self.cost.pricing_file {
            if file.is_relative() {
                self.cost.pricing_file = Some(base.join(file));
            }
        }
    }

    /// Check everything, collecting every problem before failing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut problem =
            |field: String, reason: String| problems.push(format!("  {field}: {reason}"));

        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            problem(
                "server.listen".into(),
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    self.server.listen
                ),
            );
        }
        if !matches!(self.server.log_format.as_str(), "text" | "json") {
            problem(
                "server.log_format".into(),
                "must be `text` or `json`".into(),
            );
        }
        if self
            .server
            .worker_threads
            .is_some_and(|n| n == 0 || n > 256)
        {
            problem(
                "server.worker_threads".into(),
                "must be between 1 and 256".into(),
            );
        }
        if self.server.max_body_bytes == 0 {
            problem(
                "server.max_body_bytes".into(),
                "must be greater than 0".into(),
            );
        }
        if let Some(hash) = &self.server.admin_key_sha256 {
            if !is_sha256_hex(hash) {
                problem(
                    "server.admin_key_sha256".into(),
                    "must be 64 hex digits".into(),
                );
            }
        }

        let mut provider_names = HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}] ({})", p.name);
            if p.name.is_empty() {
                problem(format!("providers[{i}].name"), "must not be empty".into());
            }
            if !provider_names.insert(p.name.as_str()) {
                problem(format!("{at}.name"), "duplicate provider name".into());
            }
            if p.kind == ProviderKind::OpenAiCompatible && p.base_url.is_none() {
                problem(
                    format!("{at}.base_url"),
                    "required for kind `openai-compatible`".into(),
                );
            }
            if let Some(url) = &p.base_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    problem(
                        format!("{at}.base_url"),
                        format!("`{url}` must start with http:// or https://"),
                    );
                }
            }
            if let Some(var) = &p.api_key_env {
                if std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) {
                    problem(
                        format!("{at}.api_key_env"),
                        format!("environment variable `{var}` is not set"),
                    );
                }
            } else if p.kind.needs_api_key() {
                problem(
                    format!("{at}.api_key_env"),
                    format!("required for kind `{}`", p.kind.as_str()),
                );
            }
            if p.timeout_ms == 0 {
                problem(format!("{at}.timeout_ms"), "must be greater than 0".into());
            }
            if !(0.0..=1.0).contains(&p.mock.error_rate) {
                problem(
                    format!("{at}.mock.error_rate"),
                    "must be between 0.0 and 1.0".into(),
                );
            }
        }

        let mut model_names = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let at = format!("models[{i}] ({})", m.name);
            if m.name.is_empty() {
                problem(format!("models[{i}].name"), "must not be empty".into());
            }
            if !model_names.insert(m.name.as_str()) {
                problem(format!("{at}.name"), "duplicate model name".into());
            }
            if !provider_names.contains(m.provider.as_str()) {
                problem(
                    format!("{at}.provider"),
                    format!("no [[providers]] entry named `{}`", m.provider),
                );
            }
            for (field, price) in [
                ("input_usd_per_mtok", m.input_usd_per_mtok),
                ("output_usd_per_mtok", m.output_usd_per_mtok),
                ("cached_input_usd_per_mtok", m.cached_input_usd_per_mtok),
            ] {
                if price.is_some_and(|p| !p.is_finite() || p < 0.0) {
                    problem(
                        format!("{at}.{field}"),
                        "must be a non-negative number".into(),
                    );
                }
            }
        }

        for (field, reason) in limits::limit_problems(&self.limits, &self.admission, &model_names) {
            problem(field, reason);
        }
        for (field, reason) in budgets::budget_problems(&self.budgets, &model_names) {
            problem(field, reason);
        }
        for (field, reason) in self.cost.problems() {
            problem(field, reason);
        }
        for (field, reason) in self.cache.problems() {
            problem(field, reason);
        }

        for (i, k) in self.keys.iter().enumerate() {
            let at = format!("keys[{i}] ({})", k.user);
            match (&k.key_env, &k.key_sha256) {
                (Some(_), Some(_)) => {
                    problem(at.clone(), "set key_env or key_sha256, not both".into())
                }
                (None, None) => problem(at.clone(), "needs key_env or key_sha256".into()),
                (Some(var), None) => {
                    if std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) {
                        problem(
                            format!("{at}.key_env"),
                            format!("environment variable `{var}` is not set"),
                        );
                    }
                }
                (None, Some(hash)) => {
                    if !is_sha256_hex(hash) {
                        problem(format!("{at}.key_sha256"), "must be 64 hex digits".into());
                    }
                }
            }
        }

        if let Some(dir) = &self.policy.dir {
            if !dir.is_dir() {
                problem(
                    "policy.dir".into(),
                    format!("`{}` is not a directory", dir.display()),
                );
            }
        }
        for (i, p) in self.logs.redact.patterns.iter().enumerate() {
            if let Err(err) = regex::Regex::new(&p.regex) {
                problem(
                    format!("logs.redact.patterns[{i}] ({})", p.name),
                    format!("bad regex: {err}"),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.dispatch.breaker_error_rate)
            || self.dispatch.breaker_error_rate == 0.0
        {
            problem(
                "dispatch.breaker_error_rate".into(),
                "must be in (0.0, 1.0]".into(),
            );
        }
        if self.dispatch.breaker_failures == 0 {
            problem(
                "dispatch.breaker_failures".into(),
                "must be greater than 0".into(),
            );
        }
        if self.logs.channel_capacity == 0 {
            problem(
                "logs.channel_capacity".into(),
                "must be greater than 0".into(),
            );
        }
        for message in self.logs.problems() {
            if let Some((field, reason)) = message.split_once(": ") {
                if field != "logs.channel_capacity" {
                    problem(field.into(), reason.into());
                }
            }
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: self.source.display().to_string(),
                problems,
            })
        }
    }

    /// The model entry with this client-facing name.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let config = Config::parse(text, Path::new("test.toml"))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let err = parse(
            r#"
[server]
listen = "nowhere"
[[providers]]
name = "p"
kind = "openai-compatible"
[[models]]
name = "m"
provider = "ghost"
[[keys]]
user = "alice"
"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("server.listen"), "{err}");
        assert!(err.contains("providers[0] (p).base_url"), "{err}");
        assert!(err.contains("models[0] (m).provider"), "{err}");
        assert!(err.contains("needs key_env or key_sha256"), "{err}");
    }

    #[test]
    fn an_unknown_provider_kind_names_the_value_and_the_kinds() {
        let err = parse("[[providers]]\nname = \"p\"\nkind = \"martian\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("martian") && err.contains("openai-compatible"),
            "{err}"
        );
    }

    #[test]
    fn secret_debug_never_prints_the_value() {
        let secret = Secret::new("sk-live-123".to_string());
        assert_eq!(format!("{secret:?}"), "****");
    }
}

//! The TOML configuration: serde types and validation.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a silent default.
//! [`Config::load`] parses, then [`Config::validate`] collects every problem at once, each
//! naming the file, the field path and the reason.

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
    /// The file this was read from (for messages and relative paths); not a TOML field.
    #[serde(skip)]
    pub source: PathBuf,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (printed at start).
    pub listen: String,
    /// Env var holding the admin key that guards `/admin/*`.
    pub admin_key_env: Option<String>,
    /// Or the admin key's SHA-256 in hex.
    pub admin_key_sha256: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace_ms: u64,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// Request threads, each with its own single-threaded runtime, listener (SO_REUSEPORT)
    /// and upstream connection pool; default: one per core.
    pub worker_threads: Option<usize>,
    /// Time a client has to send a request's headers (nginx `client_header_timeout`).
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a request's body (nginx `client_body_timeout`).
    pub body_read_timeout_ms: u64,
    /// A connection with no request in flight and no bytes moving for this long is closed
    /// (nginx `keepalive_timeout`).
    pub idle_timeout_ms: u64,
    /// Open client connections at most, across request threads; at the cap, accepting waits.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            admin_key_env: None,
            admin_key_sha256: None,
            max_body_bytes: 10 * 1024 * 1024,
            shutdown_grace_ms: 30_000,
            log_format: "text".into(),
            worker_threads: None,
            header_read_timeout_ms: 60_000,
            body_read_timeout_ms: 60_000,
            idle_timeout_ms: 75_000,
            max_connections: 10_000,
        }
    }
}

/// One `[[providers]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    /// `openai` | `openai-compatible` | `anthropic` | `gemini` | `mock`.
    pub kind: String,
    /// API root, e.g. `https://api.openai.com/v1`. Optional for known kinds; a `mock`
    /// provider without one answers in-process.
    pub base_url: Option<String>,
    /// Env var holding the provider's API key.
    pub api_key_env: Option<String>,
    /// Whole-request timeout (non-streaming) / time to first byte (streaming).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Largest non-streaming response body accepted from this provider (default 32 MiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Deadline for a whole streamed answer, from the request on (default: none).
    #[serde(default)]
    pub stream_timeout_ms: Option<u64>,
    /// Longest gap between two events of a stream (default: `timeout_ms`).
    #[serde(default)]
    pub stream_idle_ms: Option<u64>,
    /// Anthropic's `anthropic-version` header.
    pub anthropic_version: Option<String>,
    /// Settings of an in-process `mock` provider.
    #[serde(default)]
    pub mock: MockSettings,
}

fn default_timeout_ms() -> u64 {
    120_000
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_max_response_bytes() -> u64 {
    32 * 1024 * 1024
}

/// Behaviour of the mock provider (in-process or `switchyard mock-provider`).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MockSettings {
    /// Delay before answering (non-streaming) or before the first chunk (streaming).
    pub latency_ms: u64,
    /// Output length in tokens (words) of a generated answer.
    pub output_tokens: u32,
    /// Number of content chunks in a streamed answer.
    pub stream_chunks: u32,
    /// Pause between streamed chunks.
    pub chunk_interval_ms: u64,
    /// Fraction of requests answered with `error_status` (0.0–1.0).
    pub error_rate: f64,
    /// Status of injected errors.
    pub error_status: u16,
    /// Never answer (the connection stays open).
    pub hang: bool,
    /// Extra delay before the first streamed chunk only.
    pub first_token_delay_ms: u64,
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            latency_ms: 0,
            output_tokens: 16,
            stream_chunks: 8,
            chunk_interval_ms: 0,
            error_rate: 0.0,
            error_status: 500,
            hang: false,
            first_token_delay_ms: 0,
        }
    }
}

/// One `[[models]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients and policies use.
    pub name: String,
    /// The `[[providers]]` name that serves it.
    pub provider: String,
    /// The id sent upstream (defaults to `name`).
    pub upstream: Option<String>,
    #[serde(default)]
    pub input_usd_per_mtok: Option<f64>,
    #[serde(default)]
    pub output_usd_per_mtok: Option<f64>,
    #[serde(default)]
    pub cached_input_usd_per_mtok: Option<f64>,
    /// Context window in tokens, for policies (`model_info`).
    #[serde(default)]
    pub context_window: Option<u64>,
    /// Default `max_tokens` sent to providers that require one (Anthropic).
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// `chat` (default) or `embedding`.
    #[serde(default)]
    pub kind: ModelKind,
}

/// What a model serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Chat completions and messages.
    #[default]
    Chat,
    /// Embeddings.
    Embedding,
}

impl ModelConfig {
    /// The id sent upstream.
    pub fn upstream_id(&self) -> &str {
        self.upstream.as_deref().unwrap_or(&self.name)
    }
}

/// One `[[keys]]` entry: a gateway key and the principal it stands for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Env var holding the plaintext key.
    pub key_env: Option<String>,
    /// Or the key's SHA-256 in hex.
    pub key_sha256: Option<String>,
    /// A name for the key in logs (defaults to a prefix of its hash).
    pub id: Option<String>,
    pub user: String,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
}

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

/// `[policy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Directory of `.rhai` files; empty or missing means no policy.
    pub dir: Option<PathBuf>,
    /// `open` (serve the requested model) or `closed` (500) when a hook fails at request time.
    pub on_error: OnError,
    /// Watch the directory and reload on change.
    pub watch: bool,
    /// Debounce of file events before a reload.
    pub debounce_ms: u64,
    /// Rhai operation limit per hook call.
    pub max_operations: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            dir: None,
            on_error: OnError::Open,
            watch: true,
            debounce_ms: 150,
            max_operations: 200_000,
        }
    }
}

/// What a request gets when a policy hook fails at request time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Serve the requested model, as if the hook were absent.
    #[default]
    Open,
    /// Refuse with 500.
    Closed,
}

/// `[logs]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    pub enabled: bool,
    pub dir: PathBuf,
    pub retention_days: u32,
    /// Records buffered between the request path and the journal writer.
    pub channel_capacity: usize,
    /// Longest time a record waits in the journal before fsync.
    pub fsync_interval_ms: u64,
    /// Indexer commit triggers.
    pub commit_every_records: usize,
    pub commit_interval_ms: u64,
    #[serde(default)]
    pub redact: RedactConfig,
    /// A journal segment file is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// How often the retention pass runs (deletes expired records and old journal segments).
    pub retention_interval_s: u64,
    /// Records that may wait for channel room in background hand-offs; past this,
    /// `LogSender::hand_off` gives the record back and the request waits (backpressure).
    pub max_pending_hand_offs: usize,
    /// How long `LogStore::shutdown` may take; past half of it the policy's `redact` hook is
    /// skipped (built-in detectors only) so the queued records are still journaled in time.
    pub shutdown_timeout_ms: u64,
    /// Longest time one admin search may run before it stops (503).
    pub search_timeout_ms: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            enabled: true,
            dir: PathBuf::from("data/logs"),
            retention_days: 30,
            channel_capacity: 8192,
            fsync_interval_ms: 100,
            commit_every_records: 10_000,
            commit_interval_ms: 1_000,
            redact: RedactConfig::default(),
            segment_bytes: 64 * 1024 * 1024,
            retention_interval_s: 3_600,
            max_pending_hand_offs: 1024,
            shutdown_timeout_ms: 10_000,
            search_timeout_ms: 5_000,
        }
    }
}

impl LogsConfig {
    /// The longest allowed `fsync_interval_ms`: a record is durable within this long.
    pub const MAX_FSYNC_INTERVAL_MS: u64 = 200;

    /// Problems with the `[logs]` section, each as `field: reason` (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.channel_capacity == 0 {
            problems.push("logs.channel_capacity: must be greater than 0".to_string());
        }
        if self.fsync_interval_ms == 0 || self.fsync_interval_ms > Self::MAX_FSYNC_INTERVAL_MS {
            problems.push(format!(
                "logs.fsync_interval_ms: must be between 1 and {}",
                Self::MAX_FSYNC_INTERVAL_MS
            ));
        }
        if self.commit_every_records == 0 {
            problems.push("logs.commit_every_records: must be greater than 0".to_string());
        }
        if self.commit_interval_ms == 0 {
            problems.push("logs.commit_interval_ms: must be greater than 0".to_string());
        }
        if self.segment_bytes < 4096 {
            problems.push("logs.segment_bytes: must be at least 4096".to_string());
        }
        if self.retention_days == 0 {
            problems.push("logs.retention_days: must be greater than 0".to_string());
        }
        if self.retention_interval_s == 0 {
            problems.push("logs.retention_interval_s: must be greater than 0".to_string());
        }
        problems
    }
}

/// `[logs.redact]`: built-in detectors on/off and extra patterns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    pub email: bool,
    pub phone: bool,
    pub card: bool,
    pub iban: bool,
    pub ssn: bool,
    pub ip: bool,
    pub secrets: bool,
    /// Extra regexes; matches become `[REDACTED:<name>]`.
    pub patterns: Vec<RedactPattern>,
}

impl Default for RedactConfig {
    fn default() -> Self {
        RedactConfig {
            email: true,
            phone: true,
            card: true,
            iban: true,
            ssn: true,
            ip: true,
            secrets: true,
            patterns: Vec::new(),
        }
    }
}

/// One operator-defined redaction pattern.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactPattern {
    pub name: String,
    pub regex: String,
}

/// The kinds of provider the registry knows.
pub const PROVIDER_KINDS: &[&str] = &["openai", "openai-compatible", "anthropic", "gemini", "mock"];

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
            if !PROVIDER_KINDS.contains(&p.kind.as_str()) {
                problem(
                    format!("{at}.kind"),
                    format!(
                        "unknown kind `{}`; expected one of {}",
                        p.kind,
                        PROVIDER_KINDS.join(", ")
                    ),
                );
            }
            if p.kind == "openai-compatible" && p.base_url.is_none() {
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
            } else if matches!(p.kind.as_str(), "openai" | "anthropic" | "gemini") {
                problem(
                    format!("{at}.api_key_env"),
                    format!("required for kind `{}`", p.kind),
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
kind = "martian"
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
        assert!(err.contains("providers[0] (p).kind"), "{err}");
        assert!(err.contains("models[0] (m).provider"), "{err}");
        assert!(err.contains("needs key_env or key_sha256"), "{err}");
    }

    #[test]
    fn secret_debug_never_prints_the_value() {
        let secret = Secret::new("sk-live-123".to_string());
        assert_eq!(format!("{secret:?}"), "****");
    }
}

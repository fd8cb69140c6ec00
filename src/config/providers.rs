//! `[[providers]]`: upstream providers and the mock provider's settings.

use serde::Deserialize;

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ProviderKind {
    /// OpenAI's API.
    #[serde(rename = "openai")]
    OpenAi,
    /// Any server speaking OpenAI's API (vLLM, llama.cpp, Ollama, …); needs `base_url`.
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    /// Anthropic's Messages API.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Google's Gemini API.
    #[serde(rename = "gemini")]
    Gemini,
    /// The mock provider: in-process, or `switchyard mock-provider` at `base_url`.
    #[serde(rename = "mock")]
    Mock,
}

impl ProviderKind {
    /// The name in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Mock => "mock",
        }
    }

    /// Whether the hosted API needs an API key (`api_key_env`).
    pub fn needs_api_key(self) -> bool {
        matches!(
            self,
            ProviderKind::OpenAi | ProviderKind::Anthropic | ProviderKind::Gemini
        )
    }
}

/// One `[[providers]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    /// `openai` | `openai-compatible` | `anthropic` | `gemini` | `mock`.
    pub kind: ProviderKind,
    /// API root, e.g. `https://api.openai.com/v1`. Optional for known kinds; a `mock`
    /// provider without one answers in-process.
    pub base_url: Option<String>,
    /// Env var holding the provider's API key.
    pub api_key_env: Option<String>,
    /// Whole-answer timeout (non-streaming) / time to the response headers (streaming); the
    /// default gap allowed between stream events.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Time allowed to open a connection to the provider.
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
    /// Input tokens reported as read from the prompt cache (HTTP mock only; at most the
    /// input): OpenAI `cached_tokens`, Anthropic `cache_read_input_tokens`, Gemini
    /// `cachedContentTokenCount`.
    pub cached_input_tokens: u64,
    /// Input tokens reported as written to the prompt cache (HTTP mock only; Anthropic
    /// `cache_creation_input_tokens`).
    pub cache_write_input_tokens: u64,
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
            cached_input_tokens: 0,
            cache_write_input_tokens: 0,
        }
    }
}

//! `[[models]]`: the models clients and policies name.

use serde::Deserialize;

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
    /// The model's output limit: sent as `max_tokens` when the request names none, and the
    /// cap of a larger one (every wire format).
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// The provider's tokens per minute for this model (the account's published limit):
    /// dispatch skips the model when a request's reservation does not fit.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// The provider's requests per minute for this model.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// The output tokens a request reserves at admission when it names no `max_tokens`
    /// (else `max_output_tokens`, else `[admission] reserve_output_tokens`).
    #[serde(default)]
    pub reserve_output_tokens: Option<u32>,
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

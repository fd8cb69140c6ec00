//! `[policy]`: the Rhai policy directory and how hook errors are handled.

use serde::Deserialize;
use std::path::PathBuf;

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

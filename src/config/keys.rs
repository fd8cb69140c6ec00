//! `[[keys]]`: gateway keys and the principals they stand for.

use serde::Deserialize;

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

//! The response cache: identical chat requests answered without calling a provider.
//!
//! - [`key`]: what is keyed. [`CacheKey::of`] hashes (SHA-256) a canonical encoding of the
//!   requested model, every message (role, text, images, tool calls and results, names),
//!   the tools (parameters with JSON keys sorted), `tool_choice`, `parallel_tool_calls`,
//!   `response_format`, the sampling parameters (`temperature`, `top_p`, `top_k`, `stop`,
//!   `max_tokens`, `seed`, penalties) and the tenant scope ([`scope_value`]: `key:…`,
//!   `user:…`, `team:…` or `global`). Not `stream`, `metadata` or `end_user`.

pub mod key;

pub use key::{scope_value, CacheKey};

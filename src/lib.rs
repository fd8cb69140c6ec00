//! Switchyard: an AI gateway.
//!
//! Applications speak the OpenAI or Anthropic API to it; Rhai policy scripts decide routing
//! and fallbacks; providers are called through one canonical shape; every request is
//! redacted and logged into an embedded Tantivy index. `ARCHITECTURE.md` has the picture;
//! [`pipeline`] lists the stages of a request in order.

pub mod admin;
pub mod app;
pub mod cache;
pub mod canonical;
pub mod config;
pub mod context;
pub mod cost;
mod crc32;
pub mod dialect;
pub mod error;
pub mod http;
pub mod ledger;
pub mod logstore;
pub mod mock_server;
pub mod observe;
pub mod pipeline;
pub mod policy;
pub mod providers;
pub mod server;
pub mod tokens;
pub mod wire;

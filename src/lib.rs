//! Switchyard: an AI gateway.
//!
//! Applications speak the OpenAI or Anthropic API to it; Rhai policy scripts decide routing
//! and fallbacks; providers are called through one canonical shape; every request is
//! redacted and logged into an embedded Tantivy index. `../DESIGN.md` has the picture;
//! [`pipeline`] lists the stages of a request in order.

pub mod canonical;
pub mod config;
pub mod dialect;
pub mod error;
pub mod mock_server;
pub mod providers;
pub mod tokens;
pub mod logstore;
pub mod policy;
pub mod admin;
pub mod app;
pub mod context;
pub mod pipeline;
pub mod server;

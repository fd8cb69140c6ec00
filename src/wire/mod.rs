//! Wire formats spoken in both directions: one set of serde types per format, shared by the
//! client-facing dialect that speaks it to SDKs and the upstream adapter that speaks it to
//! providers of the same kind (it is one format, spoken two ways).
//!
//! - [`openai`]: Chat Completions (answers and stream chunks) and Embeddings.
//! - [`anthropic`]: the Messages API (messages and stream events).
//!
//! Each module also holds the conversions between its types and the canonical ones that both
//! directions use (finish reasons, usage), side by side so one can be checked against the
//! other. The mock provider server (`mock_server`) deliberately keeps its own JSON: it checks
//! these types from the outside.

pub mod anthropic;
pub mod openai;

//! What one request is, as the stages learn it: [`RequestContext`] with its [`Principal`] and
//! the [`Attempt`]s dispatch made.
//!
//! A leaf: it imports nothing from the request path, so every stage, the admin API and the
//! log store can share these types without a cycle.

use crate::error::Dialect;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// Who is calling: the gateway key's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's name in logs (never the key).
    pub key_id: String,
    pub user: String,
    pub team: Option<String>,
    pub tier: Option<String>,
}

/// The endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions` or `/v1/messages`.
    Chat,
    /// `/v1/embeddings`.
    Embeddings,
}

impl Endpoint {
    /// The name in logs and in the policy's `req.endpoint`.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// One attempt at one target of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub model: String,
    pub provider: String,
    /// HTTP status the attempt ended with (200 on success; the mapped status on failure).
    pub status: u16,
    pub latency_ms: f64,
    /// The error message when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the target was skipped without an upstream call: `capacity` (no headroom under
    /// its `tpm`/`rpm` or its provider's rate-limit headers) or `circuit_open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the stages know about one request so far.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request's own id, unique per request: the record id and `x-request-id` out.
    pub id: String,
    /// The client's `x-request-id`, kept as a correlation id (never used as the record id).
    pub correlation_id: Option<String>,
    /// The dialect the client speaks (errors and responses use it).
    pub dialect: Dialect,
    /// When the request arrived (monotonic, for latencies).
    pub started: Instant,
    /// When the request arrived (wall clock, for the log).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The endpoint the request came in on.
    pub endpoint: Endpoint,
    /// Filled by auth.
    pub principal: Option<Principal>,
    /// The product feature (`x-switchyard-feature` or `metadata.feature`).
    pub feature: Option<String>,
    /// The client's `x-*` headers (minus credentials), for policies.
    pub headers: BTreeMap<String, String>,
    /// The client's `Cache-Control` header (`no-cache`, `no-store`, `max-age=N`).
    pub cache_control: Option<String>,
    /// The model the client asked for.
    pub requested_model: String,
    /// Filled by policy: the version of the policy set that routed this request.
    pub policy_version: Option<u64>,
    /// Filled by dispatch: every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Set by replay: the record this request replays.
    pub replay_of: Option<String>,
}

impl RequestContext {
    /// A context for a request that just arrived, with a fresh unique id.
    pub fn new(dialect: Dialect, endpoint: Endpoint) -> Self {
        RequestContext {
            id: new_request_id(),
            correlation_id: None,
            dialect,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            endpoint,
            principal: None,
            feature: None,
            headers: BTreeMap::new(),
            cache_control: None,
            requested_model: String::new(),
            policy_version: None,
            attempts: Vec::new(),
            replay_of: None,
        }
    }

    /// An empty context with this one's dialect, endpoint and clocks (what stays behind
    /// when the context is moved out of a finished request). Costs no id.
    pub fn emptied(&self) -> RequestContext {
        RequestContext {
            id: String::new(),
            correlation_id: None,
            dialect: self.dialect,
            started: self.started,
            started_at: self.started_at,
            endpoint: self.endpoint,
            principal: None,
            feature: None,
            headers: BTreeMap::new(),
            cache_control: None,
            requested_model: String::new(),
            policy_version: None,
            attempts: Vec::new(),
            replay_of: None,
        }
    }

    /// The product feature: the `x-switchyard-feature` header, else the body's
    /// `metadata.feature`; empty means none.
    pub fn resolve_feature(&mut self, metadata_feature: Option<&String>) {
        self.feature = self
            .headers
            .get("x-switchyard-feature")
            .or(metadata_feature)
            .filter(|f| !f.is_empty())
            .cloned();
    }

    /// Milliseconds since the request arrived.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }
}

/// A new request id (UUID v7: time-ordered, unique).
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The client's `x-request-id` when it is short and plain (kept as a correlation id).
pub fn correlation_id_from(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
}

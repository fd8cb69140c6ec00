//! `RequestContext`: one per request; each stage fills its own typed field.

use crate::error::Dialect;
use crate::logstore::record::Attempt;
use crate::pipeline::auth::Principal;
use std::collections::BTreeMap;
use std::time::Instant;

/// What the stages know about one request so far.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id (`x-request-id` in and out).
    pub id: String,
    /// The dialect the client speaks (errors and responses use it).
    pub dialect: Dialect,
    /// When the request arrived (monotonic, for latencies).
    pub started: Instant,
    /// When the request arrived (wall clock, for the log).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// `chat` or `embeddings`.
    pub endpoint: &'static str,
    /// Filled by auth.
    pub principal: Option<Principal>,
    /// The product feature (`x-switchyard-feature` or `metadata.feature`).
    pub feature: Option<String>,
    /// The client's `x-*` headers (minus credentials), for policies.
    pub headers: BTreeMap<String, String>,
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
    /// A context for a request that just arrived.
    pub fn new(id: String, dialect: Dialect, endpoint: &'static str) -> Self {
        RequestContext {
            id,
            dialect,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            endpoint,
            principal: None,
            feature: None,
            headers: BTreeMap::new(),
            requested_model: String::new(),
            policy_version: None,
            attempts: Vec::new(),
            replay_of: None,
        }
    }

    /// Milliseconds since the request arrived.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }
}

/// A new request id (UUID v7: time-ordered).
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The client's `x-request-id` when it is short and plain; otherwise a new one.
pub fn request_id_from(headers: &http::HeaderMap) -> String {
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
        .unwrap_or_else(new_request_id)
}

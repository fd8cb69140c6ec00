//! `LogRecord`: everything logged about one request.
//!
//! Built by the pipeline when the response is complete (for streams: when the stream ends or
//! the client leaves) and handed to the log store, which redacts it before anything is
//! written. The whole record is stored as JSON for `GET /admin/logs/{id}` and replay.

use crate::canonical::{ChatRequest, ToolCall, Usage};
use serde::{Deserialize, Serialize};

pub use crate::context::Attempt;

/// The record of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The request id (also the `x-request-id` response header): unique per request.
    pub id: String,
    /// The `x-request-id` the client sent, if any (a correlation id; not unique).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// When the request arrived, RFC 3339 UTC.
    pub started_at: String,
    /// Milliseconds since the Unix epoch of `started_at` (for range filters and sorting).
    pub started_ms: i64,
    /// When the response completed.
    pub finished_at: String,
    /// `openai` or `anthropic`: the dialect the client spoke.
    pub dialect: String,
    /// `chat` or `embeddings`.
    pub endpoint: String,
    pub user: String,
    pub team: Option<String>,
    pub tier: Option<String>,
    /// The gateway key's id (never the key).
    pub key_id: String,
    pub feature: Option<String>,
    /// The model the client asked for.
    pub requested_model: String,
    /// The model and provider that answered (the last attempt's), if any did.
    pub served_model: Option<String>,
    pub provider: Option<String>,
    pub attempts: Vec<Attempt>,
    /// HTTP status returned to the client (for streams: 200 unless failed before the first byte).
    pub status: u16,
    pub error: Option<String>,
    /// The canonical request (messages, tools, parameters): redacted before storage.
    pub request: ChatRequest,
    /// The output text: redacted before storage.
    pub output_text: String,
    pub output_tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    pub cost_usd: f64,
    /// True when the served model has no price: `cost_usd` is then 0 but the cost is not
    /// known (never counted as free).
    pub cost_unknown: bool,
    pub latency_ms: f64,
    /// Time to first byte sent to the client (streams), or total latency.
    pub first_token_ms: Option<f64>,
    pub stream: bool,
    /// True when the client left before the stream ended.
    pub client_disconnected: bool,
    pub policy_version: Option<u64>,
    /// The id of the record this request replayed.
    pub replay_of: Option<String>,
    /// Embeddings: the `dimensions` asked for (the inputs are the request's user messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dimensions: Option<u32>,
    /// The rate limits the request counted against, when any did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsRecord>,
    /// The budgets the request counted against and what they did, when any applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetRecord>,
    /// What the response cache did, when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheRecord>,
}

/// What the response cache did for one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// `hit`, `miss`, `stale` or `bypass`.
    pub status: String,
    /// The entry's key (hex SHA-256), when the request was keyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The tenant scope of the key (`team:support`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// Seconds since the answer served was stored (hit or stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_s: Option<u64>,
    /// What the answer cost when it was served live: what serving it from the cache saved
    /// (USD, exact decimal; absent when unpriced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_usd: Option<String>,
    /// Why the chain failed, when a stale entry answered instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// What budgets did to one request ("why was this downgraded?").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetRecord {
    /// The budget keys it counted against, tightest first (`team-daily:team=support`).
    pub applied: Vec<String>,
    /// The action when it was not a plain allow: `downgrade`, `cap`, `queue` or `block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The budget behind the action (the tightest one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acted_on: Option<String>,
    /// The worst-case cost reserved at admission, in USD (exact decimal).
    pub reserved_usd: String,
    /// A budget past its soft limit, as the warning header said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// What rate limiting did to one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitsRecord {
    /// The bucket keys it counted against (`per-user:user=alice`, `feature:batch`).
    pub applied: Vec<String>,
    /// Tokens reserved at admission (input estimate + output allowance).
    pub reserved_tokens: u64,
    /// Tokens settled after the response (0 when it was refused before admission).
    pub settled_tokens: u64,
    /// Milliseconds spent waiting in the fair queue.
    pub queued_ms: f64,
}

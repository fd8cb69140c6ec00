//! `GET /admin/limits`: every live rate-limit bucket with its limits, usage, in-flight
//! requests and queue. Query: `prefix=` (keys starting with it), `limit=` (default 1000,
//! at most 10000).

use crate::error::GatewayError;
use crate::http::{json_value, query_pairs, Body};
use crate::ledger::{BucketStatus, LineStatus};
use crate::pipeline::AppState;
use http::Response;
use serde_json::{json, Value};

/// Buckets listed by default.
const DEFAULT_LIMIT: usize = 1000;
/// Buckets listed at most.
const MAX_LIMIT: usize = 10_000;

/// `GET /admin/limits`.
pub async fn list(state: &AppState, query: &str) -> Result<Response<Body>, GatewayError> {
    let mut prefix = String::new();
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in query_pairs(query).map_err(GatewayError::bad_body)? {
        match key.as_str() {
            "prefix" => prefix = value,
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        GatewayError::invalid("limit", format!("must be 1 to {MAX_LIMIT}"))
                    })?
            }
            _ => {}
        }
    }
    let admission = &state.admission;
    // One more than asked, to say whether the list was cut.
    let mut buckets = admission
        .ledger()
        .buckets(&prefix, limit + 1)
        .await
        .map_err(|err| GatewayError::internal(format!("rate-limit ledger: {err}")))?;
    let truncated = buckets.len() > limit;
    buckets.truncate(limit);
    let listed: Vec<Value> = buckets
        .iter()
        .map(|bucket| bucket_json(bucket, admission.line_status(&bucket.key)))
        .collect();
    Ok(json_value(&json!({
        "buckets": listed,
        "truncated": truncated,
        "waiting": admission.waiting(),
    })))
}

/// One bucket as `/admin/limits` shows it.
pub fn bucket_json(bucket: &BucketStatus, line: Option<LineStatus>) -> Value {
    let windows: serde_json::Map<String, Value> = bucket
        .windows
        .iter()
        .map(|w| {
            let used = i64::try_from(w.limit)
                .unwrap_or(i64::MAX)
                .saturating_sub(w.remaining);
            (
                w.window.as_str().to_string(),
                json!({
                    "limit": w.limit,
                    "used": used,
                    "remaining": w.remaining,
                    "resets_in_ms": w.resets_in.as_millis() as u64,
                }),
            )
        })
        .collect();
    let line = line.unwrap_or(LineStatus {
        depth: 0,
        oldest_wait: std::time::Duration::ZERO,
    });
    json!({
        "key": bucket.key.as_str(),
        "windows": windows,
        "in_flight": bucket.in_flight,
        "queue": {
            "depth": line.depth,
            "oldest_wait_ms": line.oldest_wait.as_millis() as u64,
        },
    })
}

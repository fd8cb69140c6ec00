//! `GET /admin/stats?from=&to=&interval=minute|hour|day&group_by=model|provider|feature|user|team|status`:
//! per interval (and group), and for the whole range (`total`), requests, errors and error
//! rate, latency p50 / p90 / p99, time-to-first-token p50 / p99, tokens and cost, from the log
//! index's aggregations.
//! `from` / `to` are RFC 3339 or Unix ms (default: the last 24 hours).

use crate::error::GatewayError;
use crate::http::{json_value, query_pairs, Body};
use crate::logstore::{StatsInterval, StatsQuery};
use crate::pipeline::AppState;
use http::Response;

/// `GET /admin/stats`.
pub async fn stats(state: &AppState, query: &str) -> Result<Response<Body>, GatewayError> {
    let store = state.logs.clone().ok_or_else(|| {
        GatewayError::new(
            crate::error::ErrorSource::Client,
            crate::error::ErrorCode::NotFound,
            "request logging is disabled (logs.enabled = false): stats come from the log index",
        )
    })?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut stats_query = StatsQuery {
        from_ms: now_ms - 86_400_000,
        to_ms: now_ms + 1,
        interval: StatsInterval::Hour,
        group_by: None,
    };
    for (key, value) in query_pairs(query).map_err(GatewayError::bad_body)? {
        match key.as_str() {
            "from" => stats_query.from_ms = super::cost::time_param("from", &value)?,
            "to" => stats_query.to_ms = super::cost::time_param("to", &value)?,
            "interval" => {
                stats_query.interval = StatsInterval::parse(&value).ok_or_else(|| {
                    GatewayError::invalid("interval", "must be minute, hour or day")
                })?
            }
            "group_by" if !value.is_empty() => stats_query.group_by = Some(value),
            "group_by" => {}
            other => {
                return Err(GatewayError::invalid(
                    other,
                    "unknown parameter (from, to, interval, group_by)",
                ))
            }
        }
    }
    let value = tokio::task::spawn_blocking(move || store.stats(&stats_query))
        .await
        .map_err(|err| GatewayError::internal(format!("stats task failed: {err}")))?
        .map_err(GatewayError::from)?;
    Ok(json_value(&value))
}

//! `GET /admin/cache`: entries, bytes, hit / miss / stale counts and hit rate.
//! `DELETE /admin/cache[?scope=team:support]`: purge everything, or one tenant's entries.

use crate::error::GatewayError;
use crate::http::{json_value, query_pairs, Body};
use crate::pipeline::AppState;
use http::Response;
use serde_json::json;

/// `GET /admin/cache`.
pub async fn status(state: &AppState) -> Response<Body> {
    let cache = state.cache.clone();
    // Counting applies moka's pending work: off the request threads' hot path, but cheap.
    let stats = tokio::task::spawn_blocking(move || {
        cache.run_pending_tasks();
        cache.stats()
    })
    .await
    .ok();
    let config = &state.config.cache;
    json_value(&json!({
        "enabled": config.enabled,
        "scope": config.scope.as_str(),
        "ttl_s": config.ttl_s,
        "max_stale_s": config.max_stale_s,
        "max_bytes": config.max_bytes,
        "stats": stats,
    }))
}

/// `DELETE /admin/cache`.
pub async fn purge(state: &AppState, query: &str) -> Result<Response<Body>, GatewayError> {
    let mut scope = None;
    for (key, value) in query_pairs(query).map_err(GatewayError::bad_body)? {
        match key.as_str() {
            "scope" if !value.is_empty() => scope = Some(value),
            other => {
                return Err(GatewayError::invalid(
                    other,
                    "unknown parameter (scope=key:…, user:…, team:… or global)",
                ))
            }
        }
    }
    let cache = state.cache.clone();
    let purged = tokio::task::spawn_blocking(move || match &scope {
        Some(scope) => json!({ "purged": cache.purge_scope(scope), "scope": scope }),
        None => {
            let before = {
                cache.run_pending_tasks();
                cache.stats().entries
            };
            cache.purge_all();
            cache.run_pending_tasks();
            json!({ "purged": before, "scope": null })
        }
    })
    .await
    .map_err(|err| GatewayError::internal(format!("cache purge: {err}")))?;
    Ok(json_value(&purged))
}

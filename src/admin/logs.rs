//! `/admin/logs`: search, fetch and replay logged requests.

use crate::canonical::EmbeddingsRequest;
use crate::context::{Endpoint, Principal};
use crate::error::{Dialect, ErrorCode, ErrorSource, GatewayError};
use crate::http::{json_value as json, Body};
use crate::logstore::record::LogRecord;
use crate::logstore::search::SearchParams;
use crate::pipeline::exchange::Exchange;
use crate::pipeline::{execute, execute_embeddings, AppState, Reply};
use http::Response;
use std::sync::Arc;

fn store(state: &AppState) -> Result<Arc<crate::logstore::LogStore>, GatewayError> {
    state.logs.clone().ok_or_else(|| {
        GatewayError::new(
            ErrorSource::Client,
            ErrorCode::NotFound,
            "request logging is disabled (logs.enabled = false)",
        )
    })
}

fn log_error(err: crate::logstore::LogError) -> GatewayError {
    GatewayError::from(err)
}

/// `GET /admin/logs?q=…`
pub async fn search(state: &AppState, query: &str) -> Result<Response<Body>, GatewayError> {
    let store = store(state)?;
    let params = SearchParams::from_query(query).map_err(log_error)?;
    let searcher = store.clone();
    // Tantivy search is blocking work (and may wait on a reader reload): keep it off the
    // request threads.
    let results = tokio::task::spawn_blocking(move || searcher.search(&params))
        .await
        .map_err(|e| GatewayError::internal(format!("search task failed: {e}")))?
        .map_err(log_error)?;
    let mut value =
        serde_json::to_value(&results).map_err(|e| GatewayError::internal(e.to_string()))?;
    value["index"] = store.status_json();
    Ok(json(&value))
}

/// `GET /admin/logs/{id}`
pub async fn get(state: &AppState, id: &str) -> Result<Response<Body>, GatewayError> {
    let store = store(state)?;
    let owned = id.to_string();
    let found = tokio::task::spawn_blocking(move || store.get(&owned))
        .await
        .map_err(|e| GatewayError::internal(format!("lookup task failed: {e}")))?
        .map_err(log_error)?;
    match found {
        Some(record) => Ok(json(&record)),
        None => Err(GatewayError::new(
            ErrorSource::Client,
            ErrorCode::NotFound,
            format!("no logged request with id `{id}`"),
        )),
    }
}

/// `POST /admin/logs/{id}/replay` with optional `{"model": "…"}`: the logged (redacted)
/// request runs through the full pipeline again, as the same principal, non-streaming.
pub async fn replay(
    state: &Arc<AppState>,
    id: &str,
    body: Option<serde_json::Value>,
) -> Result<Response<Body>, GatewayError> {
    let store = store(state)?;
    let stored = store.get(id).map_err(log_error)?.ok_or_else(|| {
        GatewayError::new(
            ErrorSource::Client,
            ErrorCode::NotFound,
            format!("no logged request with id `{id}`"),
        )
    })?;
    let record: LogRecord = serde_json::from_value(stored).map_err(|err| {
        GatewayError::internal(format!("stored record {id} is unreadable: {err}"))
    })?;
    let model_override = match body.as_ref().and_then(|b| b.get("model")) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(GatewayError::invalid("model", "`model` must be a string")),
    };
    if let Some(extra) = body
        .as_ref()
        .and_then(|b| b.as_object())
        .and_then(|o| o.keys().find(|k| *k != "model"))
    {
        return Err(GatewayError::invalid(
            extra.clone(),
            format!("unknown field `{extra}`; only `model` is accepted"),
        ));
    }
    let dialect = if record.dialect == "anthropic" {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    };
    let endpoint = if record.endpoint == "embeddings" {
        Endpoint::Embeddings
    } else {
        Endpoint::Chat
    };
    let mut exchange = Exchange::start(state.clone(), dialect, endpoint);
    let ctx = &mut exchange.ctx;
    ctx.principal = Some(Principal {
        key_id: record.key_id.clone(),
        user: record.user.clone(),
        team: record.team.clone(),
        tier: record.tier.clone(),
    });
    ctx.feature = record.feature.clone();
    ctx.replay_of = Some(record.id.clone());
    let mut request = record.request.clone();
    request.stream = false;
    if let Some(model) = model_override {
        request.model = model;
    }
    ctx.requested_model = request.model.clone();
    let answer = match endpoint {
        Endpoint::Chat => {
            exchange.request = request;
            execute(exchange, false).await
        }
        Endpoint::Embeddings => {
            let embeddings = EmbeddingsRequest {
                model: request.model.clone(),
                input: request.messages.iter().map(|m| m.joined_text()).collect(),
                dimensions: record.embedding_dimensions,
                end_user: None,
            };
            exchange.request = request;
            execute_embeddings(exchange, embeddings, Default::default()).await
        }
    };
    let id = answer.id.clone();
    let served = answer.served_model.clone();
    let response = match answer.reply? {
        Reply::Complete(bytes) => {
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or(serde_json::Value::Null)
        }
        Reply::Stream(_) => serde_json::Value::Null,
    };
    Ok(json(&serde_json::json!({
        "id": id,
        "replay_of": record.id,
        "model": served,
        "response": response,
    })))
}

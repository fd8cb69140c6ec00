//! The admin HTTP API (`/admin/*`), behind the admin key:
//! logs search and replay, the policy in force, chaos drills, providers and their breakers,
//! live rate limits, budgets, spend reports, stats and the response cache.

use crate::error::{Dialect, ErrorCode, ErrorSource, GatewayError};
use crate::http::{error_response, json_value, Body};
use crate::pipeline::{auth, AppState};
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;

mod cache;
mod cost;
mod limits;
mod logs;
mod metrics;
mod providers;
mod stats;

pub use metrics::scrape as metrics;

const MAX_ADMIN_BODY: usize = 1024 * 1024;

/// Route an `/admin/*` request.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    if let Err(err) = auth::check_admin(state.admin_key.as_ref(), req.headers()) {
        return error_response(&err, Dialect::OpenAi);
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let segments: Vec<&str> = path.trim_start_matches("/admin/").split('/').collect();
    let result = match (method, segments.as_slice()) {
        (Method::GET, ["policy"]) => Ok(json_value(&state.policy.status_json())),
        (Method::POST, ["policy", "reload"]) => match state.policy.reload() {
            Ok(_) => Ok(json_value(&state.policy.status_json())),
            Err(err) => Err(GatewayError::invalid("policy", err.to_string())),
        },
        (Method::GET, ["chaos"]) => Ok(json_value(&state.chaos.faults_json())),
        (Method::POST, ["chaos"]) => chaos(&state, req).await,
        (Method::GET, ["limits"]) => limits::list(&state, &query).await,
        (Method::GET, ["providers"]) => Ok(providers::list(&state)),
        (Method::GET, ["budgets"]) => Ok(cost::budgets(&state)),
        (Method::GET, ["cache"]) => Ok(cache::status(&state).await),
        (Method::GET, ["stats"]) => stats::stats(&state, &query).await,
        (Method::DELETE, ["cache"]) => cache::purge(&state, &query).await,
        (Method::GET, ["spend"]) => cost::spend(&state, &query).await,
        (Method::GET, ["logs"]) => logs::search(&state, &query).await,
        (Method::GET, ["logs", id]) => logs::get(&state, id).await,
        (Method::POST, ["logs", id, "replay"]) => {
            let id = id.to_string();
            match read_json(req).await {
                Ok(body) => logs::replay(&state, &id, body).await,
                Err(err) => Err(err),
            }
        }
        _ => Err(GatewayError::new(
            ErrorSource::Client,
            ErrorCode::NotFound,
            format!("no admin route for {path}"),
        )),
    };
    match result {
        Ok(response) => response,
        Err(err) => error_response(&err, Dialect::OpenAi),
    }
}

async fn read_json(req: Request<Incoming>) -> Result<Option<serde_json::Value>, GatewayError> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|err| GatewayError::bad_body(format!("could not read body: {err}")))?
        .to_bytes();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|err| GatewayError::bad_body(format!("invalid JSON body: {err}")))
}

async fn chaos(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    let body = read_json(req)
        .await?
        .ok_or_else(|| GatewayError::bad_body("a JSON body is required"))?;
    let spec: crate::pipeline::chaos::FaultSpec = serde_json::from_value(body)
        .map_err(|err| GatewayError::bad_body(format!("invalid chaos fault: {err}")))?;
    if !state
        .config
        .providers
        .iter()
        .any(|p| p.name == spec.provider)
    {
        return Err(GatewayError::invalid(
            "provider",
            format!("no provider named `{}`", spec.provider),
        ));
    }
    let id = state.chaos.inject(spec)?;
    let mut listing = state.chaos.faults_json();
    listing["id"] = serde_json::json!(id);
    Ok(json_value(&listing))
}

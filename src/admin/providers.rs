//! `GET /admin/providers`: every configured provider with its kind, its models, the state of
//! its circuit breaker and the chaos faults active on it.
//!
//! The breaker reads `closed` or `open`; `open` covers the half-open probe too, since the
//! breakers show health only (`Breakers::healthy`).

use crate::http::{json_value, Body};
use crate::pipeline::AppState;
use http::Response;
use serde_json::{json, Value};

/// `GET /admin/providers`.
pub fn list(state: &AppState) -> Response<Body> {
    let faults = state.chaos.faults_json();
    let faults = faults["faults"].as_array().cloned().unwrap_or_default();
    let providers: Vec<Value> = state
        .config
        .providers
        .iter()
        .map(|provider| {
            let models: Vec<&str> = state
                .config
                .models
                .iter()
                .filter(|model| model.provider == provider.name)
                .map(|model| model.name.as_str())
                .collect();
            let chaos: Vec<&Value> = faults
                .iter()
                .filter(|fault| fault["provider"].as_str() == Some(provider.name.as_str()))
                .collect();
            let breaker = if state.breakers.healthy(&provider.name) {
                "closed"
            } else {
                "open"
            };
            json!({
                "name": provider.name,
                "kind": provider.kind.as_str(),
                "models": models,
                "breaker": breaker,
                "chaos": chaos,
            })
        })
        .collect();
    json_value(&json!({ "providers": providers }))
}

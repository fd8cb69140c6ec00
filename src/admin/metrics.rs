//! `GET /metrics`: the Prometheus text exposition, behind the admin key unless
//! `[metrics] public = true`.

use crate::error::Dialect;
use crate::http::{error_response, Body};
use crate::observe::ScrapeInputs;
use crate::pipeline::{auth, AppState};
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

/// `GET /metrics`.
pub fn scrape(state: &AppState, req: &Request<Incoming>) -> Response<Body> {
    if !state.config.metrics.enabled {
        let err = crate::error::GatewayError::new(
            crate::error::ErrorSource::Client,
            crate::error::ErrorCode::NotFound,
            "metrics are disabled ([metrics] enabled = false)",
        );
        return error_response(&err, Dialect::OpenAi);
    }
    if !state.config.metrics.public {
        if let Err(err) = auth::check_admin(state.admin_key.as_ref(), req.headers()) {
            return error_response(&err, Dialect::OpenAi);
        }
    }
    let policy = state.policy.status_json();
    let count = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap_or(0);
    let logs = state.logs.as_ref().map(|l| l.status_json());
    let inputs = ScrapeInputs {
        queue_depth: state.admission.waiting() as u64,
        breakers: state
            .config
            .providers
            .iter()
            .map(|p| (p.name.clone(), !state.breakers.healthy(&p.name)))
            .collect(),
        reloads_ok: count(&policy, "reloads_ok"),
        reloads_failed: count(&policy, "reloads_failed"),
        hook_errors: count(&policy, "hook_errors"),
        log_lag_records: logs.as_ref().map(|l| count(l, "lag_records")),
        log_backpressure_waits: logs.as_ref().map_or(0, |l| count(l, "backpressure_waits")),
        log_dropped_records: logs.as_ref().map_or(0, |l| count(l, "dropped_records")),
    };
    let mut response = Response::new(crate::http::full(state.metrics.render(&inputs)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

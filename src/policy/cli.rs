//! `switchyard policy check DIR` and `switchyard policy test DIR --request FILE.json`, as
//! library functions; `main.rs` only parses arguments and prints.

use super::decision::PolicyRequest;
use super::engine::{PolicyEngine, DEFAULT_MAX_OPERATIONS};
use super::host::HostInfo;
use super::set::PolicySet;
use super::PolicyError;
use crate::context::{Endpoint, Principal, RequestContext};
use crate::error::Dialect;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Compile and self-check the policy in `dir`; with `known_models`, every model `route`
/// names on the sample requests must be one of them. Returns a one-paragraph summary.
pub fn check(
    dir: &Path,
    known_models: Option<HashSet<String>>,
    host: Arc<dyn HostInfo>,
) -> Result<String, PolicyError> {
    let engine = PolicyEngine::new(host, DEFAULT_MAX_OPERATIONS);
    let set = PolicySet::compile_dir(&engine, dir, 1)?;
    let calls = set.self_check(known_models.as_ref())?;
    let names: Vec<&str> = set.files().iter().map(|f| f.name.as_str()).collect();
    let hooks = set.hook_names();
    Ok(format!(
        "{}: {} file(s) ({}); hooks: {}; self-check passed ({calls} hook calls on sample requests{})",
        dir.display(),
        names.len(),
        if names.is_empty() { "none".to_string() } else { names.join(", ") },
        if hooks.is_empty() { "none".to_string() } else { hooks.join(", ") },
        if known_models.is_some() { ", models checked against the config" } else { "" },
    ))
}

/// The decision the policy in `dir` makes for `request`, an OpenAI chat body (`model`,
/// `messages`, `stream`, `max_tokens`, `metadata`; a top-level `headers` object may add
/// `x-*` headers for the test). `user`, `tier` and `feature` stand in for the principal
/// and the `x-switchyard-feature` header (`feature` defaults to `metadata.feature`).
///
/// Returns the [`Decision`](super::Decision) as JSON plus `"default": false`; without a
/// `route` hook (or when it returned `()`) the requested model with `"default": true`; with
/// a `limits` hook, the buckets it named as `"limits"`; with a `cache` hook, its
/// [`CacheDecision`](super::CacheDecision) as `"cache"` (`{"decision": "skip" | "default" |
/// "custom", "ttl_s", "scope", "stale_s"}`); a refusal as `{"refused": {"status", "message"}}`.
pub fn test(
    dir: &Path,
    request: &Value,
    user: Option<&str>,
    tier: Option<&str>,
    feature: Option<&str>,
    host: Arc<dyn HostInfo>,
) -> Result<Value, PolicyError> {
    let req = request_from_json(request, user, tier, feature)?;
    let engine = PolicyEngine::new(host, DEFAULT_MAX_OPERATIONS);
    let set = PolicySet::compile_dir(&engine, dir, 1)?;
    let mut value = match set.route(&req) {
        Ok(Some(decision)) => {
            let mut value = serde_json::to_value(&decision).unwrap_or(Value::Null);
            if let Some(map) = value.as_object_mut() {
                map.insert("default".into(), Value::Bool(false));
            }
            value
        }
        Ok(None) => json!({
            "chain": [req.model],
            "timeout_ms": null,
            "first_token_ms": null,
            "max_tokens": null,
            "retries": null,
            "policy_version": set.version(),
            "default": true,
        }),
        Err(PolicyError::Refused { status, message }) => {
            return Ok(json!({ "refused": { "status": status, "message": message } }))
        }
        Err(err) => return Err(err),
    };
    if set.has_limits() {
        let limits = match set.limits(&req) {
            Ok(specs) => specs.iter().map(limit_json).collect(),
            Err(PolicyError::Refused { status, message }) => {
                return Ok(json!({ "refused": { "status": status, "message": message } }))
            }
            Err(err) => return Err(err),
        };
        if let Some(map) = value.as_object_mut() {
            map.insert("limits".into(), Value::Array(limits));
        }
    }
    if set.has_cache() {
        let cache = match set.cache(&req) {
            Ok(decision) => serde_json::to_value(decision).unwrap_or(Value::Null),
            Err(PolicyError::Refused { status, message }) => {
                return Ok(json!({ "refused": { "status": status, "message": message } }))
            }
            Err(err) => return Err(err),
        };
        if let Some(map) = value.as_object_mut() {
            map.insert("cache".into(), cache);
        }
    }
    Ok(value)
}

/// One `limits` entry as `policy test` prints it.
fn limit_json(spec: &super::LimitSpec) -> Value {
    let limit = &spec.bucket.limit;
    json!({
        "key": spec.bucket.key.as_str(),
        "tokens_per_minute": limit.tokens_per_minute,
        "requests_per_minute": limit.requests_per_minute,
        "tokens_per_day": limit.tokens_per_day,
        "requests_per_day": limit.requests_per_day,
        "concurrency": limit.concurrency,
        "queue_ms": u64::try_from(spec.queue.as_millis()).unwrap_or(u64::MAX),
        "priority": spec.priority.as_str(),
        "owner": spec.owner,
    })
}

fn invalid(message: impl Into<String>) -> PolicyError {
    PolicyError::InvalidRequest {
        message: message.into(),
    }
}

/// Build the policy view of a chat body in either dialect (OpenAI first, then Anthropic),
/// parsed by the gateway's own dialect parsers and turned into the policy's `req` by the
/// same [`PolicyRequest::build`] the gateway uses. A top-level `headers` object adds `x-*`
/// headers; `user` stands in for the principal (else the body's `user`, else `cli`).
pub fn request_from_json(
    body: &Value,
    user: Option<&str>,
    tier: Option<&str>,
    feature: Option<&str>,
) -> Result<PolicyRequest, PolicyError> {
    let mut body = body
        .as_object()
        .ok_or_else(|| invalid("the request must be a JSON object"))?
        .clone();
    let header_values = body.remove("headers");
    let bytes = serde_json::to_vec(&body).map_err(|e| invalid(e.to_string()))?;
    let (dialect, request) = match crate::dialect::openai::parse_chat(&bytes) {
        Ok(chat) => (Dialect::OpenAi, chat.request),
        Err(openai_err) => match crate::dialect::anthropic::parse_messages(&bytes) {
            Ok(request) => (Dialect::Anthropic, request),
            Err(_) => {
                return Err(invalid(format!(
                    "not a valid chat request: {}",
                    openai_err.message
                )))
            }
        },
    };
    let mut ctx = RequestContext::new(dialect, Endpoint::Chat);
    ctx.id = "policy-test".into();
    ctx.requested_model = request.model.clone();
    if let Some(Value::Object(values)) = header_values {
        for (name, value) in values {
            let name = name.to_ascii_lowercase();
            if name.starts_with("x-") {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string);
                ctx.headers.insert(name, value);
            }
        }
    }
    if let Some(feature) = feature {
        ctx.headers
            .insert("x-switchyard-feature".into(), feature.to_string());
    }
    ctx.resolve_feature(request.metadata.get("feature"));
    ctx.principal = Some(Principal {
        key_id: "cli".into(),
        user: user
            .map(str::to_string)
            .or_else(|| request.end_user.clone())
            .unwrap_or_else(|| "cli".to_string()),
        team: None,
        tier: tier.map(str::to_string),
    });
    Ok(PolicyRequest::build(&ctx, &request))
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;

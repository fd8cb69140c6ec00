//! `switchyard policy check DIR` and `switchyard policy test DIR --request FILE.json`, as
//! library functions; `main.rs` only parses arguments and prints.

use super::decision::PolicyRequest;
use super::engine::{PolicyEngine, DEFAULT_MAX_OPERATIONS};
use super::host::HostInfo;
use super::set::PolicySet;
use super::PolicyError;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
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
/// `route` hook (or when it returned `()`) the requested model with `"default": true`; a
/// refusal as `{"refused": {"status", "message"}}`.
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
    match set.route(&req) {
        Ok(Some(decision)) => {
            let mut value = serde_json::to_value(&decision).unwrap_or(Value::Null);
            if let Some(map) = value.as_object_mut() {
                map.insert("default".into(), Value::Bool(false));
            }
            Ok(value)
        }
        Ok(None) => Ok(json!({
            "chain": [req.model],
            "timeout_ms": null,
            "first_token_ms": null,
            "max_tokens": null,
            "retries": null,
            "policy_version": set.version(),
            "default": true,
        })),
        Err(PolicyError::Refused { status, message }) => {
            Ok(json!({ "refused": { "status": status, "message": message } }))
        }
        Err(err) => Err(err),
    }
}

fn invalid(message: impl Into<String>) -> PolicyError {
    PolicyError::InvalidRequest {
        message: message.into(),
    }
}

/// Build the policy view of an OpenAI chat body.
pub fn request_from_json(
    body: &Value,
    user: Option<&str>,
    tier: Option<&str>,
    feature: Option<&str>,
) -> Result<PolicyRequest, PolicyError> {
    let body = body
        .as_object()
        .ok_or_else(|| invalid("the request must be a JSON object"))?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("the request needs a string `model`"))?
        .to_string();
    let mut messages = Vec::new();
    if let Some(system) = body.get("system") {
        messages.push(("system".to_string(), content_text(system)));
    }
    match body.get("messages") {
        Some(Value::Array(items)) => {
            for item in items {
                let role = item
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("user")
                    .to_string();
                let text = item.get("content").map(content_text).unwrap_or_default();
                messages.push((role, text));
            }
        }
        Some(_) => return Err(invalid("`messages` must be an array")),
        None => {}
    }
    let texts: Vec<&str> = messages
        .iter()
        .map(|(_, text)| text.as_str())
        .filter(|t| !t.is_empty())
        .collect();
    let prompt_text = texts.join("\n");
    let est_input_tokens = crate::tokens::count(&prompt_text) + 3 * messages.len() as u64 + 3;
    let metadata: BTreeMap<String, String> = body
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut headers: BTreeMap<String, String> = body
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| {
                    let k = k.to_ascii_lowercase();
                    (k.starts_with("x-"))
                        .then(|| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(feature) = feature {
        headers.insert("x-switchyard-feature".into(), feature.to_string());
    }
    let feature = headers
        .get("x-switchyard-feature")
        .or_else(|| metadata.get("feature"))
        .cloned();
    let max_tokens = body
        .get("max_tokens")
        .or_else(|| body.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let user = user
        .map(str::to_string)
        .or_else(|| body.get("user").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "cli".to_string());
    Ok(PolicyRequest {
        id: "policy-test".into(),
        user,
        team: None,
        tier: tier.map(str::to_string),
        feature,
        model,
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        max_tokens,
        messages,
        prompt_text,
        est_input_tokens,
        metadata,
        headers,
    })
}

/// Text of an OpenAI `content`: a string, or the `text` of its parts joined by newlines.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;

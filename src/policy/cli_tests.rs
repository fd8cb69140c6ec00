//! Tests of `policy check|test`, exercising the four shipped example policies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::policy::host::{ConfigHost, LatencyWindow, ModelInfo};
use serde_json::json;
use std::path::PathBuf;

/// The quickstart's models with realistic prices and context windows.
fn quickstart_models() -> Vec<(String, ModelInfo)> {
    [
        ("gpt-4o-mini", 0.15, 0.60, 128_000),
        ("gpt-4o", 2.50, 10.0, 128_000),
        ("claude-haiku", 0.80, 4.0, 200_000),
        ("claude-sonnet", 3.0, 15.0, 200_000),
        ("gemini-flash", 0.10, 0.40, 1_000_000),
    ]
    .into_iter()
    .map(|(name, input, output, window)| {
        let info = ModelInfo {
            provider: "mock".into(),
            input_usd_per_mtok: Some(input),
            output_usd_per_mtok: Some(output),
            context_window: Some(window),
        };
        (name.to_string(), info)
    })
    .collect()
}

fn host() -> Arc<dyn HostInfo> {
    Arc::new(ConfigHost::from_models(quickstart_models()))
}

fn known() -> HashSet<String> {
    quickstart_models()
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

fn shipped(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .join(name)
}

fn body(model: &str, text: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": text }] })
}

fn chain(decision: &Value) -> Vec<String> {
    serde_json::from_value(decision["chain"].clone()).unwrap_or_else(|_| panic!("{decision}"))
}

#[test]
fn every_shipped_policy_passes_check_against_the_quickstart_models() {
    for name in ["cost-based", "latency-based", "feature-based", "tier-based"] {
        let summary = check(&shipped(name), Some(known()), host())
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert!(summary.contains("routing.rhai"), "{summary}");
        assert!(summary.contains("hooks: route"), "{summary}");
    }
    let summary = check(&shipped("feature-based"), Some(known()), host()).unwrap();
    assert!(summary.contains("cache.rhai"), "{summary}");
    assert!(summary.contains("hooks: route, limits, cache"), "{summary}");
}

#[test]
fn check_reports_an_unknown_model_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("routing.rhai"),
        r#"fn route(req) { "claude-opus" }"#,
    )
    .unwrap();
    let err = check(dir.path(), Some(known()), host()).unwrap_err();
    assert!(err.to_string().starts_with("routing.rhai"), "{err}");
    assert!(err.to_string().contains("claude-opus"), "{err}");
}

#[test]
fn cost_based_sends_a_short_question_to_the_cheapest_models() {
    let decision = test(
        &shipped("cost-based"),
        &body("gpt-4o", "What is 2 + 2?"),
        None,
        None,
        None,
        host(),
    )
    .unwrap();
    assert_eq!(
        chain(&decision),
        ["gemini-flash", "gpt-4o-mini", "claude-haiku"]
    );
    assert_eq!(decision["default"], false);
    assert_eq!(decision["timeout_ms"], 30000);
}

#[test]
fn cost_based_sends_long_or_complex_inputs_to_strong_models() {
    let long = "Quarterly revenue grew in every region. ".repeat(1000);
    let decision = test(
        &shipped("cost-based"),
        &body("gpt-4o-mini", &long),
        None,
        None,
        None,
        host(),
    )
    .unwrap();
    assert_eq!(
        chain(&decision),
        ["gpt-4o", "claude-sonnet", "gemini-flash"]
    );
    let hard = "Explain step by step why this function deadlocks.";
    let decision = test(
        &shipped("cost-based"),
        &body("gpt-4o-mini", hard),
        None,
        None,
        None,
        host(),
    )
    .unwrap();
    assert_eq!(chain(&decision)[0], "gpt-4o");
}

#[test]
fn cost_based_drops_models_whose_context_window_is_too_small() {
    let huge = "word ".repeat(150_000);
    let decision = test(
        &shipped("cost-based"),
        &body("gpt-4o", &huge),
        None,
        None,
        None,
        host(),
    )
    .unwrap();
    assert_eq!(chain(&decision), ["claude-sonnet", "gemini-flash"]);
}

#[test]
fn latency_based_orders_chat_models_by_observed_latency_with_a_first_token_deadline() {
    let window = Arc::new(LatencyWindow::new());
    for (model, ms) in [
        ("gemini-flash", 120.0),
        ("gpt-4o-mini", 300.0),
        ("claude-haiku", 900.0),
    ] {
        for _ in 0..10 {
            window.observe_latency(model, ms);
        }
    }
    let host: Arc<dyn HostInfo> =
        Arc::new(ConfigHost::from_models(quickstart_models()).with_latency(window));
    let mut request = body("gpt-4o", "hi");
    request["stream"] = json!(true);
    let decision = test(
        &shipped("latency-based"),
        &request,
        None,
        None,
        None,
        host.clone(),
    )
    .unwrap();
    assert_eq!(
        chain(&decision),
        ["gemini-flash", "gpt-4o-mini", "claude-haiku"]
    );
    assert_eq!(decision["first_token_ms"], 800);
    let decision = test(
        &shipped("latency-based"),
        &body("gpt-4o", "hi"),
        None,
        None,
        Some("chat"),
        host,
    )
    .unwrap();
    assert_eq!(decision["first_token_ms"], 800);
}

#[test]
fn latency_based_moves_unhealthy_providers_to_the_back() {
    let models = quickstart_models().into_iter().map(|(name, mut info)| {
        if name == "claude-haiku" {
            info.provider = "anthropic".into();
        }
        (name, info)
    });
    let host: Arc<dyn HostInfo> =
        Arc::new(ConfigHost::from_models(models).with_health(Arc::new(|p| p != "anthropic")));
    let decision = test(
        &shipped("latency-based"),
        &body("gpt-4o", "hi"),
        None,
        None,
        Some("chat"),
        host,
    )
    .unwrap();
    assert_eq!(
        chain(&decision),
        ["gpt-4o-mini", "gemini-flash", "claude-haiku"]
    );
}

#[test]
fn latency_based_gives_background_jobs_a_long_timeout() {
    let decision = test(
        &shipped("latency-based"),
        &body("gpt-4o", "summarise"),
        None,
        None,
        Some("batch"),
        host(),
    )
    .unwrap();
    assert_eq!(chain(&decision), ["claude-sonnet", "gpt-4o", "gpt-4o-mini"]);
    assert_eq!(decision["timeout_ms"], 300000);
    assert_eq!(decision["retries"], 3);
    assert_eq!(decision["first_token_ms"], Value::Null);
}

#[test]
fn feature_based_routes_by_header_or_metadata() {
    let dir = shipped("feature-based");
    let decision = test(
        &dir,
        &body("gpt-4o", "fix this"),
        None,
        None,
        Some("code"),
        host(),
    )
    .unwrap();
    assert_eq!(chain(&decision), ["claude-sonnet", "gpt-4o"]);
    let mut request = body("gpt-4o", "summarise this");
    request["metadata"] = json!({ "feature": "summarize" });
    let decision = test(&dir, &request, None, None, None, host()).unwrap();
    assert_eq!(chain(&decision), ["gemini-flash", "gpt-4o-mini"]);
    let decision = test(
        &dir,
        &body("gpt-4o", "hi"),
        None,
        None,
        Some("chat"),
        host(),
    )
    .unwrap();
    assert_eq!(decision["first_token_ms"], 800);
    let decision = test(
        &dir,
        &body("gpt-4o", "nightly"),
        None,
        None,
        Some("batch"),
        host(),
    )
    .unwrap();
    assert_eq!(decision["max_tokens"], 2048);
}

#[test]
fn feature_based_keeps_the_asked_model_for_unknown_features() {
    let dir = shipped("feature-based");
    let decision = test(
        &dir,
        &body("claude-sonnet", "hi"),
        None,
        None,
        Some("mystery"),
        host(),
    )
    .unwrap();
    assert_eq!(chain(&decision), ["claude-sonnet", "gpt-4o-mini"]);
    let decision = test(&dir, &body("gpt-4o-mini", "hi"), None, None, None, host()).unwrap();
    assert_eq!(chain(&decision), ["gpt-4o-mini", "gemini-flash"]);
}

#[test]
fn feature_based_caches_faq_and_classify_globally_for_an_hour_at_temperature_zero() {
    let dir = shipped("feature-based");
    for (feature, temperature) in [
        ("faq", json!(0)),
        ("classify", json!(0.0)),
        ("faq", Value::Null),
    ] {
        let mut request = body("gpt-4o-mini", "How do I reset my password?");
        if !temperature.is_null() {
            request["temperature"] = temperature.clone();
        }
        let decision = test(&dir, &request, None, None, Some(feature), host()).unwrap();
        assert_eq!(
            decision["cache"],
            json!({ "decision": "custom", "ttl_s": 3600, "scope": "global", "stale_s": null }),
            "{feature} temperature={temperature}: {decision}"
        );
    }
}

#[test]
fn feature_based_never_caches_requests_with_tools_and_defaults_otherwise() {
    let dir = shipped("feature-based");
    let mut with_tools = body("gpt-4o-mini", "What is the weather in Paris?");
    with_tools["temperature"] = json!(0);
    with_tools["tools"] = json!([{ "type": "function", "function": {
        "name": "get_weather",
        "parameters": { "type": "object", "properties": { "city": { "type": "string" } } }
    } }]);
    let decision = test(&dir, &with_tools, None, None, Some("faq"), host()).unwrap();
    assert_eq!(
        decision["cache"],
        json!({ "decision": "skip" }),
        "{decision}"
    );
    let mut sampled = body("gpt-4o-mini", "Write me a haiku about passwords.");
    sampled["temperature"] = json!(0.9);
    let decision = test(&dir, &sampled, None, None, Some("faq"), host()).unwrap();
    assert_eq!(
        decision["cache"],
        json!({ "decision": "default" }),
        "{decision}"
    );
    let decision = test(
        &dir,
        &body("gpt-4o", "hi"),
        None,
        None,
        Some("chat"),
        host(),
    )
    .unwrap();
    assert_eq!(
        decision["cache"],
        json!({ "decision": "default" }),
        "{decision}"
    );
}

#[test]
fn test_prints_no_cache_decision_without_a_cache_hook() {
    let decision = test(
        &shipped("cost-based"),
        &body("gpt-4o", "hi"),
        None,
        None,
        None,
        host(),
    )
    .unwrap();
    assert!(decision.get("cache").is_none(), "{decision}");
}

#[test]
fn check_refuses_a_cache_hook_returning_a_bad_shape_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cache.rhai"),
        "fn cache(req) {\n  #{ ttl_s: 3600, scope: \"everyone\" }\n}\n",
    )
    .unwrap();
    let err = check(dir.path(), None, host()).unwrap_err().to_string();
    assert!(
        err.starts_with("cache.rhai:2:19: self-check failed"),
        "{err}"
    );
    assert!(
        err.contains("`scope`") && err.contains("`everyone`"),
        "{err}"
    );
}

#[test]
fn tier_based_refuses_a_strong_model_on_the_free_tier() {
    let decision = test(
        &shipped("tier-based"),
        &body("claude-sonnet", "hi"),
        Some("bob"),
        Some("free"),
        None,
        host(),
    )
    .unwrap();
    assert_eq!(decision["refused"]["status"], 403);
    assert!(decision["refused"]["message"]
        .as_str()
        .unwrap()
        .contains("claude-sonnet"));
}

#[test]
fn tier_based_caps_free_answers_and_backs_up_paid_tiers() {
    let dir = shipped("tier-based");
    let mut request = body("gemini-flash", "hi");
    request["max_tokens"] = json!(4000);
    let decision = test(&dir, &request, None, Some("free"), None, host()).unwrap();
    assert_eq!(chain(&decision), ["gemini-flash", "gpt-4o-mini"]);
    assert_eq!(decision["max_tokens"], 1024);
    let decision = test(
        &dir,
        &body("gpt-4o-mini", "hi"),
        None,
        Some("free"),
        None,
        host(),
    )
    .unwrap();
    assert_eq!(chain(&decision), ["gpt-4o-mini"]);
    let decision = test(&dir, &body("gpt-4o", "hi"), None, Some("pro"), None, host()).unwrap();
    assert_eq!(chain(&decision), ["gpt-4o", "claude-haiku", "gpt-4o-mini"]);
    let decision = test(
        &dir,
        &body("claude-sonnet", "hi"),
        None,
        Some("enterprise"),
        None,
        host(),
    )
    .unwrap();
    assert_eq!(
        chain(&decision),
        ["claude-sonnet", "gpt-4o", "gemini-flash"]
    );
    assert_eq!(decision["retries"], 2);
    let decision = test(&dir, &body("claude-sonnet", "hi"), None, None, None, host()).unwrap();
    assert_eq!(chain(&decision), ["gpt-4o-mini"]);
}

#[test]
fn test_without_a_route_hook_keeps_the_requested_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("redact.rhai"), "fn redact(text) { text }").unwrap();
    let decision = test(dir.path(), &body("gpt-4o", "hi"), None, None, None, host()).unwrap();
    assert_eq!(chain(&decision), ["gpt-4o"]);
    assert_eq!(decision["default"], true);
}

#[test]
fn request_json_becomes_the_policy_view() {
    let request = json!({
        "model": "gpt-4o",
        "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": [{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }] }
        ],
        "stream": true,
        "max_completion_tokens": 77,
        "metadata": { "feature": "search", "n": "3" },
        "headers": { "X-Trace": "t1", "authorization": "secret" },
        "user": "carol"
    });
    let req = request_from_json(&request, None, Some("pro"), None).unwrap();
    assert_eq!(
        req.messages[0],
        ("system".to_string(), "be brief".to_string())
    );
    assert_eq!(req.messages[1].1, "a\nb");
    assert_eq!(req.prompt_text, "be brief\na\nb");
    assert!(req.stream);
    assert_eq!(req.max_tokens, Some(77));
    assert_eq!(req.feature.as_deref(), Some("search"));
    assert_eq!(req.metadata["n"], "3");
    assert_eq!(req.headers.get("x-trace").map(String::as_str), Some("t1"));
    assert!(!req.headers.contains_key("authorization"));
    assert_eq!(req.user, "carol");
    assert_eq!(req.tier.as_deref(), Some("pro"));
    assert!(req.est_input_tokens > 3);
}

#[test]
fn an_anthropic_body_is_accepted_too() {
    let request = json!({
        "model": "claude-haiku",
        "system": "be brief",
        "max_tokens": 64,
        "messages": [{ "role": "user", "content": "hi" }]
    });
    let req = request_from_json(&request, None, None, None).unwrap();
    assert_eq!(req.prompt_text, "be brief\nhi");
    assert_eq!(req.max_tokens, Some(64));
}

#[test]
fn policy_test_and_the_gateway_see_the_same_token_estimate() {
    // One builder, one estimate: the CLI once counted with tiktoken while the gateway used
    // bytes / 4, so a threshold in a script could decide differently in `policy test`.
    let text = "Summarise the attached incident report for the on-call engineer. ".repeat(300);
    let request = json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": text }] });
    let from_cli = request_from_json(&request, None, None, None).unwrap();
    let chat = crate::dialect::openai::parse_chat(&serde_json::to_vec(&request).unwrap())
        .unwrap()
        .request;
    let ctx = crate::context::RequestContext::new(
        crate::error::Dialect::OpenAi,
        crate::context::Endpoint::Chat,
    );
    let from_gateway = PolicyRequest::build(&ctx, &chat);
    assert_eq!(from_cli.est_input_tokens, from_gateway.est_input_tokens);
}

#[test]
fn a_request_without_a_model_is_rejected() {
    let err = request_from_json(&json!({ "messages": [] }), None, None, None).unwrap_err();
    assert!(matches!(err, PolicyError::InvalidRequest { .. }), "{err}");
    assert!(request_from_json(&json!([1]), None, None, None).is_err());
}

#[test]
fn check_refuses_a_dangling_symlink_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("route.rhai"),
        r#"fn route(req) { "gpt-4o" }"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone.rhai"), dir.path().join("limits.rhai"))
        .unwrap();
    let err = check(dir.path(), Some(known()), host())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("limits.rhai") && err.contains("dangling"),
        "{err}"
    );
}

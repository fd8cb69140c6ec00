//! Tests of [`PolicySet`]: compiling, hook calls, refusals, limits and error positions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::policy::host::{ConfigHost, ModelInfo};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn engine() -> PolicyEngine {
    let info = |provider: &str| ModelInfo {
        provider: provider.into(),
        input_usd_per_mtok: Some(1.0),
        output_usd_per_mtok: Some(2.0),
        context_window: Some(128_000),
    };
    let host = ConfigHost::from_models([
        ("gpt-4o-mini".to_string(), info("openai")),
        ("claude-haiku".to_string(), info("anthropic")),
    ]);
    PolicyEngine::new(Arc::new(host), 50_000)
}

fn set(files: &[(&str, &str)]) -> Result<PolicySet, PolicyError> {
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    PolicySet::compile_sources(&engine(), &sources, 7)
}

fn req() -> PolicyRequest {
    PolicyRequest {
        user: "alice".into(),
        tier: Some("free".into()),
        model: "gpt-4o".into(),
        est_input_tokens: 10,
        ..PolicyRequest::default()
    }
}

#[test]
fn route_returning_a_string_is_a_one_model_chain() {
    let s = set(&[("r.rhai", r#"fn route(req) { "claude-haiku" }"#)]).unwrap();
    let d = s.route(&req()).unwrap().unwrap();
    assert_eq!(d.chain, ["claude-haiku"]);
    assert_eq!(d.policy_version, 7);
}

#[test]
fn route_returning_an_array_is_the_chain() {
    let s = set(&[("r.rhai", r#"fn route(req) { ["claude-haiku", req.model] }"#)]).unwrap();
    assert_eq!(
        s.route(&req()).unwrap().unwrap().chain,
        ["claude-haiku", "gpt-4o"]
    );
}

#[test]
fn route_returning_a_map_sets_deadlines() {
    let s = set(&[(
        "r.rhai",
        r#"fn route(req) { #{ chain: ["a", "b"], first_token_ms: 800, timeout_ms: 30000, retries: 1, max_tokens: 256 } }"#,
    )])
    .unwrap();
    let d = s.route(&req()).unwrap().unwrap();
    assert_eq!(d.chain, ["a", "b"]);
    assert_eq!(d.first_token_ms, Some(800));
    assert_eq!(d.timeout_ms, Some(30_000));
    assert_eq!(d.retries, Some(1));
    assert_eq!(d.max_tokens, Some(256));
}

#[test]
fn route_sees_every_request_field() {
    let s = set(&[(
        "r.rhai",
        r#"fn route(req) {
            if req.user != "alice" || req.tier != "free" || req.team != "" { throw "bad principal"; }
            if req.max_tokens != () || req.stream { throw "bad options"; }
            if req.messages.len() != 0 || req.metadata.len() != 0 || req.headers.len() != 0 { throw "bad maps"; }
            if req.est_input_tokens != 10 || req.prompt_text != "" || req.id != "" { throw "bad text"; }
            req.model
        }"#,
    )])
    .unwrap();
    assert_eq!(s.route(&req()).unwrap().unwrap().chain, ["gpt-4o"]);
}

#[test]
fn missing_route_hook_costs_nothing_and_decides_nothing() {
    let s = set(&[("r.rhai", "fn helper() { 1 }")]).unwrap();
    assert!(!s.has_route());
    assert_eq!(s.route(&req()).unwrap(), None);
}

#[test]
fn route_returning_unit_keeps_the_requested_model() {
    let s = set(&[(
        "r.rhai",
        r#"fn route(req) { if req.tier == "pro" { return "a"; } }"#,
    )])
    .unwrap();
    assert_eq!(s.route(&req()).unwrap(), None);
}

#[test]
fn throw_map_becomes_a_refusal_with_its_status() {
    let s = set(&[(
        "r.rhai",
        r#"fn route(req) { throw #{ status: 429, message: "free tier quota used" }; }"#,
    )])
    .unwrap();
    match s.route(&req()).unwrap_err() {
        PolicyError::Refused { status, message } => {
            assert_eq!(status, 429);
            assert_eq!(message, "free tier quota used");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn throw_with_a_status_outside_4xx_5xx_or_a_string_is_a_403() {
    let s = set(&[(
        "r.rhai",
        r#"fn route(req) { throw #{ status: 200, message: "no" }; }"#,
    )])
    .unwrap();
    assert!(matches!(
        s.route(&req()),
        Err(PolicyError::Refused { status: 403, .. })
    ));
    let s = set(&[("r.rhai", r#"fn route(req) { throw "not for you"; }"#)]).unwrap();
    match s.route(&req()).unwrap_err() {
        PolicyError::Refused { status, message } => {
            assert_eq!((status, message.as_str()), (403, "not for you"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn endless_loop_is_stopped_by_the_operation_limit() {
    let s = set(&[(
        "r.rhai",
        "fn route(req) {\n  let i = 0;\n  loop { i += 1; }\n}",
    )])
    .unwrap();
    let started = Instant::now();
    let err = s.route(&req()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match err {
        PolicyError::Script { message } => {
            assert!(message.contains("operation limit"), "{message}");
            assert!(message.starts_with("r.rhai: in `route`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deep_recursion_is_stopped_by_the_call_depth_limit() {
    let s = set(&[(
        "r.rhai",
        "fn down(n) { down(n + 1) }\nfn route(req) { down(0) }",
    )])
    .unwrap();
    assert!(matches!(s.route(&req()), Err(PolicyError::Script { .. })));
}

#[test]
fn syntax_error_names_file_line_and_column() {
    let err = set(&[
        ("a.rhai", "fn ok() { 1 }"),
        ("b.rhai", "fn route(req) {\n    let x = ;\n}"),
    ])
    .err()
    .unwrap();
    match &err {
        PolicyError::Compile {
            file, line, column, ..
        } => {
            assert_eq!(file, "b.rhai");
            assert_eq!(*line, 2);
            assert!(*column > 0);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("b.rhai:2:"), "{err}");
}

#[test]
fn undefined_variable_is_a_compile_error() {
    let err = set(&[("r.rhai", "fn route(req) {\n  cheap_model\n}")])
        .err()
        .unwrap();
    assert!(matches!(err, PolicyError::Compile { line: 2, .. }), "{err}");
}

#[test]
fn top_level_constants_are_rejected_with_a_hint() {
    let err = set(&[("r.rhai", "const CHEAP = \"a\";\nfn route(req) { \"a\" }")])
        .err()
        .unwrap();
    assert!(err.to_string().contains("CHEAP"), "{err}");
    assert!(err.to_string().contains("inside a function"), "{err}");
}

#[test]
fn functions_of_different_files_call_each_other() {
    let s = set(&[
        ("helpers.rhai", r#"fn cheap() { "gpt-4o-mini" }"#),
        ("routing.rhai", "fn route(req) { cheap() }"),
    ])
    .unwrap();
    assert_eq!(s.route(&req()).unwrap().unwrap().chain, ["gpt-4o-mini"]);
}

#[test]
fn a_function_defined_in_two_files_is_an_error() {
    let err = set(&[
        ("a.rhai", "fn route(req) { 1 }"),
        ("b.rhai", "fn route(req) { 2 }"),
    ])
    .err()
    .unwrap();
    assert!(
        matches!(&err, PolicyError::SelfCheck { file, .. } if file == "b.rhai"),
        "{err}"
    );
    assert!(err.to_string().contains("a.rhai"), "{err}");
}

#[test]
fn a_hook_with_the_wrong_parameter_count_is_an_error() {
    let err = set(&[("r.rhai", "fn route() { \"a\" }")]).err().unwrap();
    assert!(err.to_string().contains("route"), "{err}");
}

#[test]
fn runtime_error_in_a_helper_names_the_helper_file_and_line() {
    let s = set(&[
        (
            "helpers.rhai",
            "fn price(m) {\n  model_info(m).input_usd_per_mtok * \"x\"\n}",
        ),
        ("routing.rhai", "fn route(req) { price(req.model); \"a\" }"),
    ])
    .unwrap();
    match s.route(&req()).unwrap_err() {
        PolicyError::Script { message } => {
            assert!(message.starts_with("helpers.rhai:2:"), "{message}");
            assert!(message.contains("`price`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_route_shape_is_a_script_error_naming_the_keys() {
    let s = set(&[(
        "r.rhai",
        r#"fn route(req) { #{ chain: "a", deadline: 5 } }"#,
    )])
    .unwrap();
    match s.route(&req()).unwrap_err() {
        PolicyError::Script { message } => assert!(message.contains("deadline"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn helpers_are_callable_from_hooks() {
    let s = set(&[(
        "r.rhai",
        r#"fn route(req) {
            let info = model_info("claude-haiku");
            if info.provider == "anthropic" && provider_healthy(info.provider) && latency_ms("claude-haiku", 95) == () {
                log(`routing ${req.user}`);
                return "claude-haiku";
            }
            "gpt-4o-mini"
        }"#,
    )])
    .unwrap();
    assert_eq!(s.route(&req()).unwrap().unwrap().chain, ["claude-haiku"]);
}

#[test]
fn redact_hook_masks_text() {
    let s = set(&[(
        "r.rhai",
        r#"fn redact(text) { text.replace("secret", "[REDACTED]"); text }"#,
    )])
    .unwrap();
    assert!(s.has_redact());
    assert_eq!(
        s.redact("a secret b").unwrap().as_deref(),
        Some("a [REDACTED] b")
    );
    let none = set(&[("r.rhai", "fn route(req) { () }")]).unwrap();
    assert_eq!(none.redact("x").unwrap(), None);
}

#[test]
fn redact_returning_a_number_is_an_error() {
    let s = set(&[("r.rhai", "fn redact(text) { 42 }")]).unwrap();
    assert!(matches!(s.redact("x"), Err(PolicyError::Script { .. })));
}

#[test]
fn hooks_are_detected_once_at_compile_time() {
    let s = set(&[(
        "r.rhai",
        "fn route(req) { () }\nfn limits(req) { [] }\nfn budget(req, spend) { #{ action: \"allow\" } }",
    )])
    .unwrap();
    assert!(s.has_route() && s.has_limits() && s.has_budget() && !s.has_redact());
    assert_eq!(s.hook_names(), ["route", "limits", "budget"]);
}

#[test]
fn compile_dir_reads_only_rhai_files_with_their_hashes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.rhai"), "fn route(req) { \"b\" }").unwrap();
    std::fs::write(dir.path().join("a.rhai"), "fn helper() { 1 }").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not rhai {").unwrap();
    std::fs::write(dir.path().join(".b.rhai.swp"), "junk {").unwrap();
    let s = PolicySet::compile_dir(&engine(), dir.path(), 1).unwrap();
    let names: Vec<&str> = s.files().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a.rhai", "b.rhai"]);
    assert_eq!(s.files()[0].sha256.len(), 64);
}

#[test]
fn self_check_rejects_unknown_models() {
    let s = set(&[(
        "r.rhai",
        r#"fn route(req) { if req.tier == "pro" { "claude-opus" } else { "a" } }"#,
    )])
    .unwrap();
    let known: std::collections::HashSet<String> = ["a".to_string()].into();
    let err = s.self_check(Some(&known)).unwrap_err();
    assert!(err.to_string().contains("claude-opus"), "{err}");
    assert!(err.to_string().contains("tier=pro"), "{err}");
    assert!(s.self_check(None).is_ok());
}

#[test]
fn self_check_allows_refusals_but_not_runtime_errors() {
    let refusing = set(&[(
        "r.rhai",
        r#"fn route(req) { if req.tier == "free" { throw #{ status: 403 }; } "a" }"#,
    )])
    .unwrap();
    assert!(refusing.self_check(None).unwrap() > 0);
    let failing = set(&[(
        "r.rhai",
        "fn route(req) {\n  if req.est_input_tokens > 20000 { return 1 / 0; }\n  \"a\"\n}",
    )])
    .unwrap();
    let err = failing.self_check(None).unwrap_err();
    assert!(
        matches!(err, PolicyError::SelfCheck { line: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("input=long"), "{err}");
}

#[test]
fn self_check_fails_a_script_that_spins_on_long_inputs() {
    let s = set(&[(
        "r.rhai",
        r#"fn route(req) { let n = 0; for c in req.prompt_text.chars() { n += 1; } "a" }"#,
    )])
    .unwrap();
    let err = s.self_check(None).unwrap_err();
    assert!(err.to_string().contains("operation limit"), "{err}");
}

#[test]
fn self_check_calls_limits_and_redact() {
    let s = set(&[("r.rhai", "fn limits(req) { req.nope.len() }")]).unwrap();
    assert!(s.self_check(None).is_err());
    let s = set(&[("r.rhai", "fn redact(text) { [] }")]).unwrap();
    assert!(s.self_check(None).is_err());
}

#[test]
fn inputs_larger_than_the_string_limit_are_still_readable() {
    let mut r = req();
    r.prompt_text = "x".repeat(3 * 1024 * 1024);
    r.messages = vec![("user".into(), r.prompt_text.clone())];
    let s = set(&[(
        "r.rhai",
        r#"fn route(req) {
            let last = req.messages[-1].content;
            if req.prompt_text.len() > 5 && !last.contains("y") { "a" } else { "b" }
        }"#,
    )])
    .unwrap();
    assert_eq!(s.route(&r).unwrap().unwrap().chain, ["a"]);
}

#[test]
fn a_limits_hook_with_an_unknown_key_fails_the_self_check_at_its_file_and_line() {
    let s = set(&[
        ("a_route.rhai", "fn route(req) { () }"),
        (
            "limits.rhai",
            "// per-user tokens\nfn limits(req) {\n  [ #{ key: `user:${req.user}`,\n     tokens_per_mintue: 20000 } ]\n}",
        ),
    ])
    .unwrap();
    let err = s.self_check(None).unwrap_err();
    assert!(
        matches!(&err, PolicyError::SelfCheck { file, line: 4, column: 6, .. } if file == "limits.rhai"),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.starts_with("limits.rhai:4:6: "), "{text}");
    assert!(text.contains("unknown key `tokens_per_mintue`"), "{text}");
}

#[test]
fn a_limits_hook_without_any_limit_fails_at_the_hook_definition() {
    let s = set(&[(
        "l.rhai",
        "\n\nfn limits(req) { [ #{ key: \"k\", queue_ms: 10 } ] }",
    )])
    .unwrap();
    let err = s.self_check(None).unwrap_err();
    assert!(
        matches!(&err, PolicyError::SelfCheck { line: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("sets no limit"), "{err}");
}

#[test]
fn limits_returns_the_specs_a_request_counts_against() {
    let s = set(&[(
        "l.rhai",
        r#"fn limits(req) {
            if req.feature == "batch" {
                return [ #{ key: "feature:batch", requests_per_minute: 60, priority: "batch" } ];
            }
            [ #{ key: `user:${req.user}`, tokens_per_minute: 1000, queue_ms: 500 } ]
        }"#,
    )])
    .unwrap();
    let specs = s.limits(&req()).unwrap();
    assert_eq!(specs.len(), 1);
    assert!(specs[0].bucket.key.as_str().starts_with("user:"));
    assert_eq!(specs[0].queue, std::time::Duration::from_millis(500));
}

#[test]
fn without_a_cache_hook_every_request_takes_the_cache_defaults() {
    let s = set(&[("r.rhai", "fn route(req) { () }")]).unwrap();
    assert!(!s.has_cache());
    assert_eq!(s.cache(&req()).unwrap(), CacheDecision::Default);
}

#[test]
fn cache_hook_skips_defaults_or_customises_per_request() {
    let s = set(&[(
        "cache.rhai",
        r#"fn cache(req) {
            if req.tools.len() > 0 { return false; }
            if req.tier == "free" { return #{ ttl_s: 60, scope: "user", stale_s: 0 }; }
            if req.temperature == () { return (); }
            true
        }"#,
    )])
    .unwrap();
    assert!(s.has_cache());
    assert_eq!(s.hook_names(), ["cache"]);
    assert_eq!(
        s.cache(&req()).unwrap(),
        CacheDecision::Custom {
            ttl_s: Some(60),
            scope: Some(crate::config::CacheScope::User),
            stale_s: Some(0),
        }
    );
    let with_tools = PolicyRequest {
        tools: vec!["get_weather".into()],
        ..req()
    };
    assert_eq!(s.cache(&with_tools).unwrap(), CacheDecision::Skip);
    let pro = PolicyRequest {
        tier: Some("pro".into()),
        ..req()
    };
    assert_eq!(s.cache(&pro).unwrap(), CacheDecision::Default);
    let sampled = PolicyRequest {
        temperature: Some(0.7),
        ..pro
    };
    assert_eq!(s.cache(&sampled).unwrap(), CacheDecision::Default);
    assert!(s.self_check(None).unwrap() >= 48);
}

#[test]
fn a_cache_hook_with_a_bad_scope_fails_the_self_check_at_its_file_line_and_column() {
    let s = set(&[
        ("a_route.rhai", "fn route(req) { () }"),
        (
            "cache.rhai",
            "// share answers\nfn cache(req) {\n  #{ ttl_s: 3600,\n     scope: \"tenant\" }\n}",
        ),
    ])
    .unwrap();
    let err = s.self_check(None).unwrap_err();
    assert!(
        matches!(&err, PolicyError::SelfCheck { file, line: 4, column: 6, .. } if file == "cache.rhai"),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.starts_with("cache.rhai:4:6: "), "{text}");
    assert!(text.contains("cache failed on sample request"), "{text}");
    assert!(
        text.contains("`scope`") && text.contains("`tenant`"),
        "{text}"
    );
}

#[test]
fn a_cache_hook_with_an_unknown_key_or_absurd_ttl_fails_the_self_check_naming_it() {
    for (script, line, column, needle) in [
        (
            "fn cache(req) {\n  #{ ttl: 60 }\n}",
            2,
            6,
            "unknown key `ttl`",
        ),
        (
            "fn cache(req) {\n  if req.stream {\n    return #{ ttl_s: 31 * 86400 };\n  }\n}",
            3,
            15,
            "30 days",
        ),
        ("fn cache(req) {\n  #{ stale_s: -1 }\n}", 2, 6, "`stale_s`"),
        (
            "\nfn cache(req) { \"global\" }",
            2,
            1,
            "must return true, false",
        ),
    ] {
        let s = set(&[("c.rhai", script)]).unwrap();
        let err = s.self_check(None).unwrap_err();
        assert!(
            matches!(&err, PolicyError::SelfCheck { line: l, column: c, .. } if *l == line && *c == column),
            "{script}: {err}"
        );
        assert!(err.to_string().contains(needle), "{script}: {err}");
    }
}

#[test]
fn a_cache_hook_that_fails_at_run_time_is_a_script_error_at_request_time() {
    let s = set(&[("c.rhai", "fn cache(req) {\n  #{ ttl_s: \"soon\" }\n}")]).unwrap();
    let err = s.cache(&req()).unwrap_err();
    assert!(
        matches!(&err, PolicyError::Script { message } if message.starts_with("c.rhai:2:6: ")),
        "{err}"
    );
}

#[test]
fn a_cache_hook_with_the_wrong_parameter_count_is_an_error() {
    let err = set(&[("c.rhai", "fn cache(req, spend) { true }")])
        .err()
        .unwrap();
    assert!(err.to_string().contains("hook `cache` takes 1"), "{err}");
}

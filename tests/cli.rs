//! The `switchyard policy check|test` commands on the shipped example policies, as a policy
//! author runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::process::{Command, Output};

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn decision(dir: &str, request: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "policy",
        "test",
        dir,
        "--request",
        request,
        "--config",
        "examples/quickstart.toml",
    ];
    args.extend_from_slice(extra);
    let out = switchyard(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn chain(v: &Value) -> Vec<String> {
    v["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_shipped_policy_passes_policy_check_against_the_quickstart_models() {
    for dir in ["cost-based", "latency-based", "feature-based", "tier-based"] {
        let out = switchyard(&[
            "policy",
            "check",
            &format!("policies/{dir}"),
            "--config",
            "examples/quickstart.toml",
        ]);
        assert!(
            out.status.success(),
            "{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn policy_check_fails_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.rhai"),
        "fn route(req) {\n  \"a\" +* 1\n}\n",
    )
    .unwrap();
    let out = switchyard(&["policy", "check", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.rhai:2:"), "{stderr}");
}

#[test]
fn cost_based_sends_short_questions_cheap_and_hard_ones_strong() {
    let short = decision(
        "policies/cost-based",
        "tests/fixtures/short-question.json",
        &[],
    );
    assert_eq!(
        chain(&short)[0],
        "gemini-flash",
        "the cheapest model first: {short}"
    );
    let hard = decision(
        "policies/cost-based",
        "tests/fixtures/hard-question.json",
        &[],
    );
    assert_eq!(chain(&hard)[0], "gpt-4o", "{hard}");
    assert!(chain(&hard).contains(&"claude-sonnet".to_string()));
}

#[test]
fn latency_based_gives_interactive_chat_a_first_token_deadline() {
    let chat = decision(
        "policies/latency-based",
        "tests/fixtures/chat-stream.json",
        &["--feature", "chat"],
    );
    assert_eq!(chat["first_token_ms"], 800);
    assert_eq!(chain(&chat).len(), 3);
    let batch = decision(
        "policies/latency-based",
        "tests/fixtures/short-question.json",
        &["--feature", "batch"],
    );
    assert_eq!(chain(&batch)[0], "claude-sonnet");
    assert_eq!(batch["timeout_ms"], 300000);
}

#[test]
fn feature_based_routes_each_feature_to_its_chain() {
    let chat = decision(
        "policies/feature-based",
        "tests/fixtures/short-question.json",
        &["--feature", "chat"],
    );
    assert_eq!(chain(&chat), ["claude-haiku", "gpt-4o-mini"]);
    let code = decision(
        "policies/feature-based",
        "tests/fixtures/short-question.json",
        &["--feature", "code"],
    );
    assert_eq!(chain(&code), ["claude-sonnet", "gpt-4o"]);
    let none = decision(
        "policies/feature-based",
        "tests/fixtures/short-question.json",
        &[],
    );
    assert_eq!(chain(&none), ["gpt-4o-mini", "gemini-flash"]);
}

#[test]
fn tier_based_refuses_strong_models_on_the_free_tier_and_caps_tokens() {
    let refused = decision(
        "policies/tier-based",
        "tests/fixtures/opus-request.json",
        &["--tier", "free"],
    );
    assert_eq!(refused["refused"]["status"], 403);
    let free = decision(
        "policies/tier-based",
        "tests/fixtures/short-question.json",
        &["--tier", "free"],
    );
    assert_eq!(free["max_tokens"], 50);
    let enterprise = decision(
        "policies/tier-based",
        "tests/fixtures/opus-request.json",
        &["--tier", "enterprise"],
    );
    assert_eq!(chain(&enterprise)[0], "claude-sonnet");
    assert_eq!(enterprise["retries"], 2);
}

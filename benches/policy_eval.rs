//! Cost of policy evaluation on the request path: one `route` call on a realistic
//! ~60-line script, a set without a `route` hook, and building the `req` map.
//!
//! `cargo bench --bench policy_eval`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::collections::BTreeMap;
use std::sync::Arc;
use switchyard::policy::{
    ConfigHost, LatencyWindow, ModelInfo, PolicyEngine, PolicyRequest, PolicySet,
};

/// A routing script of the size and shape operators write: tiers, features, a price
/// lookup, a latency lookup and a few helpers.
const SCRIPT: &str = r#"
fn free_models() { ["gpt-4o-mini", "gemini-flash", "claude-haiku"] }

fn unique(models) {
    let out = [];
    for m in models {
        if !(m in out) { out.push(m); }
    }
    out
}

fn price(model, input_tokens) {
    let info = model_info(model);
    if info == () || info.input_usd_per_mtok == () { return 1.0e9; }
    input_tokens * info.input_usd_per_mtok / 1.0e6
}

fn fastest(a, b) {
    let la = latency_ms(a, 90);
    let lb = latency_ms(b, 90);
    if la == () { return b; }
    if lb == () { return a; }
    if la <= lb { a } else { b }
}

fn is_complex(req) {
    if req.est_input_tokens > 2000 || req.messages.len() > 8 { return true; }
    let last = if req.messages.is_empty() { "" } else { req.messages[-1].content };
    last.contains("step by step") || last.contains("```")
}

fn route(req) {
    if req.tier == "free" && !(req.model in free_models()) {
        throw #{ status: 403, message: `the free tier cannot use ${req.model}` };
    }
    if req.feature == "chat" {
        let first = fastest("claude-haiku", "gpt-4o-mini");
        return #{ chain: unique([first, "claude-haiku", "gpt-4o-mini"]), first_token_ms: 800 };
    }
    if req.feature == "batch" {
        return #{ chain: ["gpt-4o-mini", "gemini-flash"], timeout_ms: 300000, retries: 3 };
    }
    if is_complex(req) {
        let strong = if price("gpt-4o", req.est_input_tokens) < price("claude-sonnet", req.est_input_tokens) {
            "gpt-4o"
        } else {
            "claude-sonnet"
        };
        return #{ chain: unique([strong, "gpt-4o", "claude-sonnet"]), timeout_ms: 120000, retries: 1 };
    }
    let chain = unique([req.model, "gpt-4o-mini"]);
    if req.tier == "enterprise" { chain.push("claude-sonnet"); }
    #{ chain: chain, timeout_ms: 30000 }
}
"#;

fn host() -> ConfigHost {
    let window = Arc::new(LatencyWindow::new());
    for _ in 0..100 {
        window.observe_latency("claude-haiku", 420.0);
        window.observe_latency("gpt-4o-mini", 380.0);
    }
    let models = [
        ("gpt-4o-mini", 0.15),
        ("gpt-4o", 2.5),
        ("claude-haiku", 0.8),
        ("claude-sonnet", 3.0),
        ("gemini-flash", 0.1),
    ]
    .into_iter()
    .map(|(name, input)| {
        let info = ModelInfo {
            provider: "mock".into(),
            input_usd_per_mtok: Some(input),
            output_usd_per_mtok: Some(input * 4.0),
            context_window: Some(128_000),
        };
        (name.to_string(), info)
    });
    ConfigHost::from_models(models).with_latency(window)
}

/// A typical chat request: a system prompt, a short exchange, ~1 KB of text.
fn request(feature: &str) -> PolicyRequest {
    let question = "Can you explain how our refund policy applies to annual plans? ".repeat(8);
    let messages = vec![
        (
            "system".to_string(),
            "You are a helpful support assistant.".to_string(),
        ),
        (
            "user".to_string(),
            "Hi, I have a billing question.".to_string(),
        ),
        (
            "assistant".to_string(),
            "Sure, what would you like to know?".to_string(),
        ),
        ("user".to_string(), question),
    ];
    let prompt_text = messages
        .iter()
        .map(|(_, t)| t.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut metadata = BTreeMap::new();
    metadata.insert("feature".to_string(), feature.to_string());
    let mut headers = BTreeMap::new();
    headers.insert("x-switchyard-feature".to_string(), feature.to_string());
    headers.insert("x-request-id".to_string(), "3f2a9c".to_string());
    PolicyRequest {
        id: "01J8ZK3Q4T7M".into(),
        endpoint: "chat",
        user: "alice".into(),
        team: Some("support".into()),
        tier: Some("pro".into()),
        feature: Some(feature.to_string()),
        model: "gpt-4o".into(),
        stream: true,
        max_tokens: Some(512),
        temperature: None,
        tools: Vec::new(),
        messages,
        prompt_text,
        est_input_tokens: 260,
        metadata,
        headers,
    }
}

fn bench(c: &mut Criterion) {
    let engine = PolicyEngine::new(Arc::new(host()), 200_000);
    let set = PolicySet::compile_sources(
        &engine,
        &[("routing.rhai".to_string(), SCRIPT.to_string())],
        1,
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let no_hook = PolicySet::compile_sources(
        &engine,
        &[("helpers.rhai".to_string(), "fn x() { 1 }".to_string())],
        1,
    )
    .unwrap_or_else(|err| panic!("{err}"));

    let mut group = c.benchmark_group("policy_eval");
    group.throughput(Throughput::Elements(1));
    for feature in ["chat", "support"] {
        let req = request(feature);
        match set.route(&req) {
            Ok(Some(_)) => {}
            other => panic!("route must decide for the bench request: {other:?}"),
        }
        group.bench_function(format!("route_60_line_script/{feature}"), |b| {
            b.iter(|| set.route(black_box(&req)))
        });
    }
    let req = request("support");
    group.bench_function("route_without_hook", |b| {
        b.iter(|| no_hook.route(black_box(&req)))
    });
    group.bench_function("build_request_map", |b| {
        b.iter(|| black_box(&req).to_dynamic())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The cost of a request, end to end over real sockets: the gateway (in-process, on a real
//! socket) calls the HTTP mock provider through the real OpenAI, Anthropic and Gemini
//! adapters, the mock reports prompt-cache counts in each wire's own usage shape, and the
//! prices come from a LiteLLM-format pricing file that is reloaded when it changes.
//!
//! Every prompt is 20 words, which the mock counts as 20 input tokens; it reports 6 of them
//! read from the prompt cache and 3 written to it (only Anthropic's wire has a field for
//! writes), and answers 7 output tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::inproc::{start_with, InProc};
use common::{client, mock_provider, set_provider_env, Proc, ADMIN_KEY, KEY};
use serde_json::{json, Value};
use std::time::Duration;
use switchyard::config::Config;

const PRICES: &str = r#"{
  "sample_spec": { "input_cost_per_token": 0.0 },
  "test-gpt": { "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                "cache_read_input_token_cost": 5e-7,
                "litellm_provider": "openai", "mode": "chat" },
  "test-claude": { "input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5,
                   "cache_read_input_token_cost": 3e-7, "cache_creation_input_token_cost": 3.75e-6,
                   "litellm_provider": "anthropic", "mode": "chat" },
  "test-gemini": { "input_cost_per_token": 1.25e-6, "output_cost_per_token": 1e-5,
                   "cache_read_input_token_cost": 3.125e-7,
                   "input_cost_per_token_above_200k_tokens": 2.5e-6,
                   "output_cost_per_token_above_200k_tokens": 1.5e-5,
                   "cache_read_input_token_cost_above_200k_tokens": 6.25e-7,
                   "litellm_provider": "gemini", "mode": "chat" }
}"#;

fn gateway_config(mock: &Proc, cost: &str) -> String {
    let base = format!("http://{}", mock.addr);
    format!(
        r#"{preamble}
[logs]
dir = "logs"
fsync_interval_ms = 5
commit_interval_ms = 50

[dispatch]
retries = 0

[cost]
pricing_file = "prices.json"
{cost}

[[providers]]
name = "oai"
kind = "openai-compatible"
base_url = "{base}/v1"

[[providers]]
name = "ant"
kind = "anthropic"
base_url = "{base}/v1"
api_key_env = "SWITCHYARD_TEST_ANTHROPIC_KEY"

[[providers]]
name = "gem"
kind = "gemini"
base_url = "{base}/v1beta"
api_key_env = "SWITCHYARD_TEST_GEMINI_KEY"

[[models]]
name = "gpt-test"
provider = "oai"
upstream = "test-gpt"

[[models]]
name = "claude-test"
provider = "ant"
upstream = "test-claude"

[[models]]
name = "gemini-test"
provider = "gem"
upstream = "test-gemini"

[[models]]
name = "mystery"
provider = "oai"
upstream = "mystery-model-nobody-prices"
"#,
        preamble = common::preamble(""),
    )
}

/// The HTTP mock, reporting 6 cache reads, 3 cache writes and 7 output tokens.
async fn cached_mock() -> Proc {
    set_provider_env();
    let mock = mock_provider(&[]);
    let set = client()
        .post(mock.url("/_mock/config"))
        .json(
            &json!({ "cached_input_tokens": 6, "cache_write_input_tokens": 3, "output_tokens": 7 }),
        )
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());
    mock
}

async fn gateway(mock: &Proc, cost: &str) -> InProc {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prices.json"), PRICES).unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, gateway_config(mock, cost)).unwrap();
    let config = Config::load(&path).unwrap();
    start_with(config, dir, |_| {}).await
}

/// Twenty words.
fn prompt() -> String {
    (1..=20)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn openai(gw: &InProc, model: &str, text: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-switchyard-feature", "cost")
        .json(&json!({ "model": model, "messages": [{ "role": "user", "content": text }] }))
        .send()
        .await
        .unwrap()
}

async fn anthropic(gw: &InProc, model: &str, stream: bool) -> reqwest::Response {
    client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("x-switchyard-feature", "cost")
        .json(&json!({ "model": model, "max_tokens": 64, "stream": stream,
                       "messages": [{ "role": "user", "content": prompt() }] }))
        .send()
        .await
        .unwrap()
}

fn cost_header(response: &reqwest::Response) -> String {
    response.headers()["x-switchyard-cost-usd"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_providers_usage_shape_with_cached_tokens_costs_the_hand_computed_figure() {
    let mock = cached_mock().await;
    let gw = gateway(&mock, "").await;

    // OpenAI: 14 uncached × $1/M + 6 cached × $0.5/M + 7 out × $2/M = $0.000031 (its wire
    // has no cache-write count).
    let response = openai(&gw, "gpt-test", &prompt()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(cost_header(&response), "0.000031");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["usage"]["prompt_tokens"], 20);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 6);
    assert_eq!(body["usage"]["completion_tokens"], 7);

    // Anthropic: 11 uncached × $3/M + 6 read × $0.3/M + 3 written × $3.75/M + 7 out × $15/M
    // = $0.00015105.
    let response = anthropic(&gw, "claude-test", false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(cost_header(&response), "0.00015105");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["usage"]["input_tokens"], 11);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 6);
    assert_eq!(body["usage"]["cache_creation_input_tokens"], 3);

    // Gemini, asked in OpenAI's dialect: 14 uncached × $1.25/M + 6 cached × $0.3125/M + 7 out
    // × $10/M = $0.000089375.
    let response = openai(&gw, "gemini-test", &prompt()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(cost_header(&response), "0.000089375");

    // A stream's cost arrives after its headers: the record has it.
    let streamed = anthropic(&gw, "claude-test", true).await;
    assert_eq!(streamed.status(), 200);
    assert!(!streamed.headers().contains_key("x-switchyard-cost-usd"));
    assert!(streamed.text().await.unwrap().contains("message_stop"));
    let records = gw.wait_records("cost", 4).await;
    let mut costs: Vec<f64> = records
        .iter()
        .map(|r| r["cost_usd"].as_f64().unwrap())
        .collect();
    costs.sort_by(f64::total_cmp);
    assert_eq!(costs, vec![0.000031, 0.000089375, 0.00015105, 0.00015105]);
    assert!(records.iter().all(|r| r["cost_unknown"] == false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_above_the_tier_threshold_is_priced_at_the_tier_for_input_and_output() {
    let mock = cached_mock().await;
    let gw = gateway(&mock, "").await;
    let words = 200_010;
    let text = vec!["w"; words].join(" ");
    let response = openai(&gw, "gemini-test", &text).await;
    assert_eq!(response.status(), 200);
    // (200,010 − 6) × $2.5/M + 6 × $0.625/M + 7 × $15/M = $0.50011875.
    assert_eq!(cost_header(&response), "0.50011875");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpriced_model_is_flagged_never_free_and_listed_and_block_refuses_it() {
    let mock = cached_mock().await;
    let gw = gateway(&mock, "").await;
    let response = openai(&gw, "mystery", &prompt()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(cost_header(&response), "unknown");
    let records = gw.wait_records("cost", 1).await;
    assert_eq!(records[0]["cost_unknown"], true);
    let report: Value = common::eventually(Duration::from_secs(10), || async {
        let report: Value = client()
            .get(gw.url("/admin/spend?group_by=model"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (report["totals"]["requests"] == 1).then_some(report)
    })
    .await
    .expect("the report counts the request");
    assert_eq!(report["unpriced_configured_models"], json!(["mystery"]));
    assert_eq!(report["unpriced_models"], json!(["mystery"]));
    assert_eq!(report["rows"][0]["unpriced_requests"], 1);

    let gw = gateway(&mock, "unpriced = \"block\"").await;
    let calls_before = mock_calls(&mock).await;
    let blocked = openai(&gw, "mystery", &prompt()).await;
    assert_eq!(blocked.status(), 402);
    let body: Value = blocked.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`mystery` has no price"));
    let blocked = anthropic(&gw, "mystery", false).await;
    assert_eq!(blocked.status(), 402);
    let body: Value = blocked.json().await.unwrap();
    assert_eq!(body["error"]["type"], "billing_error");
    assert_eq!(mock_calls(&mock).await, calls_before, "never sent upstream");
    // Priced models are still served.
    assert_eq!(openai(&gw, "gpt-test", &prompt()).await.status(), 200);
}

async fn mock_calls(mock: &Proc) -> u64 {
    common::mock_stats(mock).await["requests"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pricing_file_is_reloaded_when_it_changes() {
    let mock = cached_mock().await;
    let gw = gateway(&mock, "").await;
    assert_eq!(
        cost_header(&openai(&gw, "gpt-test", &prompt()).await),
        "0.000031"
    );
    // Input now $2/M: 14 × 2 + 6 × 0.5 + 7 × 2 = $0.000045.
    let doubled = PRICES.replace(
        r#""test-gpt": { "input_cost_per_token": 1e-6"#,
        r#""test-gpt": { "input_cost_per_token": 2e-6"#,
    );
    assert_ne!(doubled, PRICES);
    std::fs::write(gw.dir.path().join("prices.json"), doubled).unwrap();
    let reloaded = common::eventually(Duration::from_secs(10), || async {
        let cost = cost_header(&openai(&gw, "gpt-test", &prompt()).await);
        (cost == "0.000045").then_some(())
    })
    .await;
    assert!(
        reloaded.is_some(),
        "the new price applies without a restart"
    );
    assert!(gw.state.prices.status().reloads >= 1);

    // A broken file keeps the last good prices and says why.
    std::fs::write(gw.dir.path().join("prices.json"), "{ not json").unwrap();
    let failed = common::eventually(Duration::from_secs(10), || async {
        gw.state.prices.status().last_error.clone()
    })
    .await;
    assert!(failed.unwrap().contains("prices.json"));
    assert_eq!(
        cost_header(&openai(&gw, "gpt-test", &prompt()).await),
        "0.000045"
    );
}

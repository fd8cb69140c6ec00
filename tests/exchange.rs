//! One exchange, one tail: every endpoint's finish step runs exactly once per request,
//! whatever happened, counted by the records in the real log store (in-process gateway,
//! real sockets, scripted providers at the provider boundary).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::inproc::{config, start, swap, Script, Scripted};
use common::{client, ADMIN_KEY, KEY};
use serde_json::{json, Value};
use std::time::Duration;

fn chat(model: &str, stream: bool) -> Value {
    json!({ "model": model, "stream": stream, "messages": [{ "role": "user", "content": "hello there" }] })
}

fn messages(model: &str, stream: bool) -> Value {
    json!({ "model": model, "max_tokens": 64, "stream": stream, "messages": [{ "role": "user", "content": "hello there" }] })
}

async fn send(url: String, feature: &str, body: &Value) -> reqwest::Response {
    client()
        .post(url)
        .bearer_auth(KEY)
        .header("x-switchyard-feature", feature)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn policy_dir(script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("route.rhai"), script).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_json_and_stream_in_both_dialects_are_logged_exactly_once() {
    let p1 = Scripted::new("p1", vec![Script::Stream(vec!["hi", " there"])]);
    let gw = start(&config(None, ""), |s| swap(s, "p1", p1.clone())).await;
    let cases = [
        ("/v1/chat/completions", chat("m1", false), "oai-json"),
        ("/v1/chat/completions", chat("m1", true), "oai-stream"),
        ("/v1/messages", messages("m1", false), "ant-json"),
        ("/v1/messages", messages("m1", true), "ant-stream"),
    ];
    for (path, body, feature) in &cases {
        let resp = send(gw.url(path), feature, body).await;
        assert_eq!(resp.status(), 200, "{feature}");
        let _ = resp.bytes().await.unwrap();
    }
    for (_, body, feature) in &cases {
        let records = gw.wait_records(feature, 1).await;
        assert_eq!(records.len(), 1, "{feature}: {records:?}");
        let record = &records[0];
        assert_eq!(record["status"], 200, "{feature}");
        assert_eq!(record["stream"], body["stream"], "{feature}");
        assert_eq!(record["client_disconnected"], false, "{feature}");
        assert_eq!(record["served_model"], "m1");
        assert!(record["cost_usd"].as_f64().unwrap() > 0.0, "{feature}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_is_logged_once_with_what_it_got() {
    let p1 = Scripted::new("p1", vec![Script::StreamThenHang(vec!["first words"])]);
    let gw = start(&config(None, ""), |s| swap(s, "p1", p1.clone())).await;
    let mut resp = send(gw.url("/v1/chat/completions"), "left", &chat("m1", true)).await;
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    while !seen.contains("first words") {
        let chunk = resp.chunk().await.unwrap().expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);
    let records = gw.wait_records("left", 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["client_disconnected"], true);
    assert_eq!(records[0]["output_text"], "first words");
    // Usage was never reported: it is estimated (off the request thread) and marked.
    assert_eq!(records[0]["usage"]["estimated"], true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.records_of("left").await.len(), 1, "still exactly one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failing_mid_stream_is_logged_once_with_its_error() {
    let p1 = Scripted::new("p1", vec![Script::StreamThenFail(vec!["partial"])]);
    let gw = start(&config(None, ""), |s| swap(s, "p1", p1.clone())).await;
    let resp = send(gw.url("/v1/chat/completions"), "midfail", &chat("m1", true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("partial") && text.contains("error"), "{text}");
    let records = gw.wait_records("midfail", 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0]["error"]
        .as_str()
        .unwrap()
        .contains("mid-stream failure"));
    assert_eq!(records[0]["output_text"], "partial");
    assert_eq!(records[0]["client_disconnected"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_during_a_whole_answer_is_logged_once_as_499() {
    let p1 = Scripted::new("p1", vec![Script::Hang]);
    let gw = start(&config(None, ""), |s| swap(s, "p1", p1.clone())).await;
    let url = gw.url("/v1/chat/completions");
    let request = tokio::spawn(async move { send(url, "gone", &chat("m1", false)).await });
    for _ in 0..200 {
        if p1.calls() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    request.abort();
    let records = gw.wait_records("gone", 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["status"], 499);
    assert_eq!(records[0]["client_disconnected"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_fall_back_to_a_second_provider_on_500_and_are_logged_with_cost() {
    let p1 = Scripted::new("p1", vec![Script::Fail(500)]);
    let p2 = Scripted::new("p2", vec![Script::Answer("")]);
    let policy = policy_dir(
        r#"fn route(req) { if req.endpoint == "embeddings" { ["e1", "e2"] } else { req.model } }"#,
    );
    let gw = start(&config(Some(policy.path()), ""), |s| {
        swap(s, "p1", p1.clone());
        swap(s, "p2", p2.clone());
    })
    .await;
    let resp = send(
        gw.url("/v1/embeddings"),
        "emb",
        &json!({ "model": "e1", "input": ["alpha", "beta"] }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-model"], "e2");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!((p1.calls(), p2.calls()), (1, 1));
    let records = gw.wait_records("emb", 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["endpoint"], "embeddings");
    assert_eq!(record["served_model"], "e2");
    assert_eq!(record["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(record["attempts"][0]["status"], 502);
    assert_eq!(record["usage"]["input_tokens"], 8);
    let cost = record["cost_usd"].as_f64().unwrap();
    assert!((cost - 8.0 * 0.02 / 1e6).abs() < 1e-12, "{cost}");
    assert_eq!(record["cost_unknown"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_logged_once_and_links_back() {
    let p1 = Scripted::new("p1", vec![Script::Answer("replayed answer")]);
    let gw = start(&config(None, ""), |s| swap(s, "p1", p1.clone())).await;
    let resp = send(gw.url("/v1/chat/completions"), "replay", &chat("m1", false)).await;
    let original = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let _ = resp.bytes().await;
    gw.wait_records("replay", 1).await;
    let replayed: Value = client()
        .post(gw.url(&format!("/admin/logs/{original}/replay")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replayed["replay_of"], original.as_str());
    let records = gw.wait_records("replay", 2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let copies: Vec<&Value> = records
        .iter()
        .filter(|r| r["replay_of"] == original.as_str())
        .collect();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0]["id"], replayed["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_dispatch_are_in_the_audit_log_once() {
    let policy = policy_dir(
        r#"fn route(req) { if req.feature == "blocked" { throw #{ status: 429, message: "slow down" }; } req.model }"#,
    );
    let gw = start(&config(Some(policy.path()), ""), |_| {}).await;
    // Auth failure (the key never reaches the record).
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-wrong-key")
        .header("x-switchyard-feature", "noauth")
        .json(&chat("m1", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Body error, unknown model, policy refusal.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-switchyard-feature", "badbody")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        send(
            gw.url("/v1/chat/completions"),
            "nomodel",
            &chat("nope", false)
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        send(gw.url("/v1/messages"), "blocked", &messages("m1", false))
            .await
            .status(),
        429
    );
    for (feature, status) in [
        ("noauth", 401),
        ("badbody", 400),
        ("nomodel", 404),
        ("blocked", 429),
    ] {
        let records = gw.wait_records(feature, 1).await;
        assert_eq!(records.len(), 1, "{feature}: {records:?}");
        assert_eq!(records[0]["status"], status, "{feature}");
    }
    let noauth = &gw.records_of("noauth").await[0];
    assert_eq!(noauth["key_id"], "");
    assert!(!noauth.to_string().contains("sk-wrong-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_429_has_the_gateways_own_rate_limit_error_type_in_both_dialects() {
    let policy = policy_dir(r#"fn route(req) { throw #{ status: 429, message: "slow down" }; }"#);
    let gw = start(&config(Some(policy.path()), ""), |_| {}).await;
    let openai: Value = send(gw.url("/v1/chat/completions"), "t", &chat("m1", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(openai["error"]["type"], "rate_limit_error");
    assert_eq!(openai["error"]["code"], "rate_limited");
    assert_eq!(openai["error"]["message"], "slow down");
    let anthropic: Value = send(gw.url("/v1/messages"), "t", &messages("m1", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(anthropic["type"], "error");
    assert_eq!(anthropic["error"]["type"], "rate_limit_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_status_maps_to_the_gateways_error_type_for_it() {
    for (status, openai_type, anthropic_type) in [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "invalid_request_error", "not_found_error"),
        (413, "invalid_request_error", "request_too_large"),
        (503, "api_error", "overloaded_error"),
    ] {
        let policy = policy_dir(&format!(
            r#"fn route(req) {{ throw #{{ status: {status}, message: "no" }}; }}"#
        ));
        let gw = start(&config(Some(policy.path()), ""), |_| {}).await;
        let resp = send(gw.url("/v1/chat/completions"), "t", &chat("m1", false)).await;
        assert_eq!(resp.status(), status);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], openai_type, "{status}");
        let body: Value = send(gw.url("/v1/messages"), "t", &messages("m1", false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["error"]["type"], anthropic_type, "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_model_recovers_with_its_provider_instead_of_waiting_out_the_breaker() {
    // Five failures open the breaker for ten minutes; only the panic-mode probe can let the
    // next request reach the provider, which has recovered.
    let mut script = vec![Script::Fail(503); 5];
    script.push(Script::Answer("back again"));
    let p1 = Scripted::new("p1", script);
    let extra = "";
    let text = config(None, extra).replace(
        "[dispatch]\nretries = 0",
        "[dispatch]\nretries = 0\nbreaker_failures = 5\nbreaker_open_ms = 600000",
    );
    let gw = start(&text, |s| swap(s, "p1", p1.clone())).await;
    for _ in 0..5 {
        let resp = send(gw.url("/v1/chat/completions"), "panic", &chat("m1", false)).await;
        assert_eq!(resp.status(), 502);
    }
    assert!(!gw.state.breakers.healthy("p1"), "the breaker is open");
    let resp = send(gw.url("/v1/chat/completions"), "panic", &chat("m1", false)).await;
    assert_eq!(resp.status(), 200, "the request became the probe");
    assert_eq!(p1.calls(), 6);
    assert!(gw.state.breakers.healthy("p1"), "the probe closed it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimating_usage_for_huge_prompts_never_stalls_the_request_threads() {
    // Two streams with a 300 KB prompt of one unbroken word leave after the first chunk: the
    // provider reported no usage, so it is estimated. Unbounded tokenization on the request
    // thread froze the gateway for about a minute; /healthz must keep answering.
    let p1 = Scripted::new("p1", vec![Script::StreamThenHang(vec!["first words"])]);
    let gw = start(&config(None, ""), |s| swap(s, "p1", p1.clone())).await;
    let prompt = "x".repeat(300 * 1024);
    for _ in 0..2 {
        let body = json!({ "model": "m1", "stream": true, "messages": [{ "role": "user", "content": prompt }] });
        let mut resp = send(gw.url("/v1/chat/completions"), "huge", &body).await;
        let mut seen = String::new();
        while !seen.contains("first words") {
            let chunk = resp.chunk().await.unwrap().expect("the stream goes on");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    for _ in 0..10 {
        let health = tokio::time::timeout(
            Duration::from_secs(2),
            client().get(gw.url("/healthz")).send(),
        )
        .await
        .expect("healthz answers while usage is estimated");
        assert_eq!(health.unwrap().status(), 200);
    }
    let records = gw.wait_records("huge", 2).await;
    assert_eq!(records.len(), 2);
    for record in records {
        assert_eq!(record["usage"]["estimated"], true);
        assert!(record["usage"]["input_tokens"].as_u64().unwrap() > 10_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_keeps_its_content_length() {
    let p1 = Scripted::new("p1", vec![Script::Answer("sized")]);
    let gw = start(&config(None, ""), |s| swap(s, "p1", p1.clone())).await;
    let resp = send(gw.url("/v1/chat/completions"), "sized", &chat("m1", false)).await;
    assert_eq!(resp.status(), 200);
    let length: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().len(), length);
}

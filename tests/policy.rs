//! Policies end to end: hot reload, rejected reloads, runaway scripts, fallback chains,
//! circuit breakers. Real gateway, real mock providers, real files and watcher.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Two upstreams: model `a` on mock A, model `b` on mock B.
struct Pair {
    a: Proc,
    /// Kept alive for the gateway's fallback target.
    _b: Proc,
    gw: Gateway,
}

fn two_providers(a_base: &str, b_base: &str) -> String {
    format!(
        r#"
[[providers]]
name = "pa"
kind = "openai-compatible"
base_url = "{a_base}/v1"
timeout_ms = 5000

[[providers]]
name = "pb"
kind = "openai-compatible"
base_url = "{b_base}/v1"
timeout_ms = 5000

[[models]]
name = "a"
provider = "pa"

[[models]]
name = "b"
provider = "pb"
"#
    )
}

pub fn write_atomically(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn pair(a_args: &[&str], policy: &str, extra: &str) -> Pair {
    let a = mock_provider(a_args);
    let b = mock_provider(&[]);
    pair_with(a, b, policy, extra)
}

fn pair_with(a: Proc, b: Proc, policy: &str, extra: &str) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policy")).unwrap();
    std::fs::write(dir.path().join("policy/routing.rhai"), policy).unwrap();
    let config = format!(
        "{}{}\n[policy]\ndir = \"policy\"\ndebounce_ms = 100\n\n[logs]\nenabled = false\n{extra}",
        preamble(""),
        two_providers(&format!("http://{}", a.addr), &format!("http://{}", b.addr)),
    );
    let gw = gateway_in(dir, &config);
    Pair { a, _b: b, gw }
}

fn body(stream: bool) -> Value {
    json!({"model": "a", "stream": stream, "messages": [{"role": "user", "content": "hello"}]})
}

async fn served_by(gw: &Gateway, request: &Value) -> (u16, String, String) {
    let resp = post(&gw.url("/v1/chat/completions"), request).await;
    let status = resp.status().as_u16();
    let model = resp
        .headers()
        .get("x-switchyard-model")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    (status, model, text)
}

async fn admin_policy(gw: &Gateway) -> Value {
    client()
        .get(gw.url("/admin/policy"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

const ROUTE_A_THEN_B: &str = r#"
fn route(req) {
    #{ chain: ["a", "b"], first_token_ms: 400, timeout_ms: 2000 }
}
"#;

#[tokio::test]
async fn saving_a_policy_file_changes_routing_within_a_second() {
    let p = pair(&[], "fn route(req) { \"a\" }\n", "");
    assert_eq!(served_by(&p.gw, &body(false)).await.1, "a");
    let policy_dir = p.gw.dir.path().join("policy");
    write_atomically(&policy_dir, "routing.rhai", "fn route(req) { \"b\" }\n");
    let saved = Instant::now();
    let switched = eventually(Duration::from_secs(1), || async {
        (served_by(&p.gw, &body(false)).await.1 == "b").then_some(())
    })
    .await;
    assert!(
        switched.is_some(),
        "routing did not change within 1 s (waited {:?})",
        saved.elapsed()
    );
    let status = admin_policy(&p.gw).await;
    assert!(status["version"].as_u64().unwrap() >= 2);
    assert!(status["last_error"].is_null());
}

#[tokio::test]
async fn broken_policies_are_rejected_and_the_old_one_stays_in_force() {
    let p = pair(&[], "fn route(req) { \"b\" }\n", "");
    let policy_dir = p.gw.dir.path().join("policy");
    let before = admin_policy(&p.gw).await["version"].as_u64().unwrap();

    // A syntax error on line 3.
    write_atomically(
        &policy_dir,
        "routing.rhai",
        "fn route(req) {\n    let x = 1;\n    \"a\" +* ;\n}\n",
    );
    let status = eventually(Duration::from_secs(5), || async {
        let s = admin_policy(&p.gw).await;
        (!s["last_error"].is_null()).then_some(s)
    })
    .await
    .expect("the failed reload is reported");
    assert_eq!(status["last_error"]["file"], "routing.rhai");
    assert_eq!(status["last_error"]["line"], 3);
    assert!(status["last_error"]["column"].as_u64().unwrap() > 0);
    assert_eq!(
        status["version"].as_u64().unwrap(),
        before,
        "old policy still in force"
    );
    assert_eq!(served_by(&p.gw, &body(false)).await.1, "b");

    // Compiles, but routes to a model nobody configured: fails its self-check.
    write_atomically(
        &policy_dir,
        "routing.rhai",
        "fn route(req) {\n    \"gpt-nonexistent\"\n}\n",
    );
    let status = eventually(Duration::from_secs(5), || async {
        let s = admin_policy(&p.gw).await;
        s["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("gpt-nonexistent"))
            .then_some(s)
    })
    .await
    .expect("the self-check failure is reported");
    assert_eq!(status["last_error"]["file"], "routing.rhai");
    assert_eq!(status["version"].as_u64().unwrap(), before);
    assert_eq!(served_by(&p.gw, &body(false)).await.1, "b");
}

#[tokio::test]
async fn a_script_that_loops_forever_is_stopped_and_the_request_still_answered() {
    // Loops only for a request the self-check's samples never send.
    let policy = r#"
fn route(req) {
    if req.prompt_text.contains("spin forever") {
        let n = 0;
        loop { n += 1; }
    }
    "b"
}
"#;
    let p = pair(&[], policy, "");
    let started = Instant::now();
    let request =
        json!({"model": "a", "messages": [{"role": "user", "content": "please spin forever"}]});
    let (status, model, _) = served_by(&p.gw, &request).await;
    // Fail open (the default): the requested model serves it.
    assert_eq!(status, 200);
    assert_eq!(model, "a");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered well within the client's deadline"
    );
    let status = admin_policy(&p.gw).await;
    assert_eq!(status["hook_errors"], 1);
}

#[tokio::test]
async fn a_failing_hook_fails_closed_when_configured() {
    let policy =
        "fn route(req) { if req.prompt_text.contains(\"boom\") { let kaboom = [1, 2]; return kaboom[7]; } \"b\" }\n";
    let a = mock_provider(&[]);
    let b = mock_provider(&[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policy")).unwrap();
    std::fs::write(dir.path().join("policy/routing.rhai"), policy).unwrap();
    let config = format!(
        "{}{}\n[policy]\ndir = \"policy\"\non_error = \"closed\"\n\n[logs]\nenabled = false\n",
        preamble(""),
        two_providers(&format!("http://{}", a.addr), &format!("http://{}", b.addr)),
    );
    let gw = gateway_in(dir, &config);
    let request = json!({"model": "a", "messages": [{"role": "user", "content": "boom"}]});
    let (status, _, text) = served_by(&gw, &request).await;
    assert_eq!(status, 500);
    assert!(
        !text.contains("kaboom"),
        "script internals are not shown to the client: {text}"
    );
}

#[tokio::test]
async fn a_script_can_refuse_a_request_with_its_status() {
    let policy = r#"
fn route(req) {
    if req.tier == "pro" && req.model == "a" {
        throw #{ status: 402, message: "model a needs the enterprise plan" };
    }
    "b"
}
"#;
    let p = pair(&[], policy, "");
    let (status, _, text) = served_by(&p.gw, &body(false)).await;
    assert_eq!(status, 402);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["message"], "model a needs the enterprise plan");
    // The Anthropic dialect gets its own error shape.
    let resp = client()
        .post(p.gw.url("/v1/messages"))
        .header("x-api-key", KEY)
        .json(&json!({"model": "a", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
}

async fn set_mock(mock: &Proc, settings: Value) {
    let resp = client()
        .post(mock.url("/_mock/config"))
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
}

#[tokio::test]
async fn falls_back_when_the_first_target_returns_500() {
    let p = pair(
        &["--error-rate", "1.0", "--error-status", "500"],
        ROUTE_A_THEN_B,
        "",
    );
    for stream in [false, true] {
        let (status, model, text) = served_by(&p.gw, &body(stream)).await;
        assert_eq!(
            (status, model.as_str()),
            (200, "b"),
            "stream={stream}: {text}"
        );
        if stream {
            assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        }
    }
}

#[tokio::test]
async fn falls_back_when_the_first_target_rate_limits_with_retry_after() {
    let p = pair(
        &["--error-rate", "1.0", "--error-status", "429"],
        ROUTE_A_THEN_B,
        "[dispatch]\nretries = 1\n",
    );
    let (status, model, _) = served_by(&p.gw, &body(false)).await;
    assert_eq!((status, model.as_str()), (200, "b"));
    // Retried once on A (after its Retry-After) before moving on.
    let stats = mock_stats(&p.a).await;
    assert_eq!(stats["requests"], 2, "{stats}");
}

#[tokio::test]
async fn falls_back_when_the_first_target_hangs_past_first_token_ms() {
    // first_token_ms alone: no timeout_ms in the decision, and provider timeouts of a
    // minute, so only the first-token deadline (the response headers, for a whole answer)
    // can move the request to the second target.
    let a = mock_provider(&["--first-token-delay-ms", "60000", "--latency-ms", "60000"]);
    let b = mock_provider(&[]);
    let p = pair_with(
        a,
        b,
        "fn route(req) { #{ chain: [\"a\", \"b\"], first_token_ms: 400 } }\n",
        "[dispatch]\nretries = 0\n",
    );
    let config = std::fs::read_to_string(p.gw.dir.path().join("gateway.toml")).unwrap();
    assert!(!config.contains("timeout_ms = 60000") && config.contains("timeout_ms = 5000"));
    let config = config.replace("timeout_ms = 5000", "timeout_ms = 60000");
    let Pair { a, _b, gw } = p;
    let dir = {
        let mut gw = gw;
        std::mem::replace(&mut gw.dir, tempfile::tempdir().unwrap())
    };
    let gw = gateway_in(dir, &config);
    for stream in [true, false] {
        let started = Instant::now();
        let (status, model, _) = served_by(&gw, &body(stream)).await;
        assert_eq!((status, model.as_str()), (200, "b"), "stream={stream}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not wait for the hanging target"
        );
    }
    drop(a);
}

#[tokio::test]
async fn falls_back_when_the_first_target_refuses_connections() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let b = mock_provider(&[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policy")).unwrap();
    std::fs::write(dir.path().join("policy/routing.rhai"), ROUTE_A_THEN_B).unwrap();
    let config = format!(
        "{}{}\n[policy]\ndir = \"policy\"\n\n[logs]\nenabled = false\n",
        preamble(""),
        two_providers(
            &format!("http://{closed_addr}"),
            &format!("http://{}", b.addr)
        ),
    );
    let gw = gateway_in(dir, &config);
    for stream in [false, true] {
        let (status, model, _) = served_by(&gw, &body(stream)).await;
        assert_eq!((status, model.as_str()), (200, "b"), "stream={stream}");
    }
}

#[tokio::test]
async fn the_breaker_opens_after_repeated_failures_and_closes_after_a_good_probe() {
    let p = pair(
        &["--error-rate", "1.0", "--error-status", "503"],
        ROUTE_A_THEN_B,
        "[dispatch]\nretries = 0\nbreaker_failures = 3\nbreaker_open_ms = 1500\n",
    );
    for _ in 0..3 {
        assert_eq!(served_by(&p.gw, &body(false)).await.1, "b");
    }
    let calls_when_opened = mock_stats(&p.a).await["requests"].as_u64().unwrap();
    assert_eq!(calls_when_opened, 3);
    // Open: A is skipped entirely.
    for _ in 0..5 {
        assert_eq!(served_by(&p.gw, &body(false)).await.1, "b");
    }
    assert_eq!(
        mock_stats(&p.a).await["requests"].as_u64().unwrap(),
        calls_when_opened
    );
    // A recovers; after breaker_open_ms a probe goes through and closes the breaker.
    set_mock(&p.a, json!({"error_rate": 0.0})).await;
    let back = eventually(Duration::from_secs(10), || async {
        (served_by(&p.gw, &body(false)).await.1 == "a").then_some(())
    })
    .await;
    assert!(back.is_some(), "traffic returned to A after the probe");
    for _ in 0..3 {
        assert_eq!(served_by(&p.gw, &body(false)).await.1, "a");
    }
}

#[tokio::test]
async fn chaos_faults_are_validated_and_listed() {
    let p = pair(&[], ROUTE_A_THEN_B, "");
    let url = p.gw.url("/admin/chaos");
    let resp = client()
        .post(&url)
        .json(&json!({"provider": "pa", "duration_s": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "admin key required");
    let resp = client()
        .post(&url)
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"provider": "nope", "error_rate": 1.0, "duration_s": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client()
        .post(&url)
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"provider": "pa", "error_rate": 1.0, "status": 503, "latency_ms": 0, "duration_s": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let listed: Value = client()
        .get(&url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["faults"][0]["provider"], "pa");
    assert_eq!(served_by(&p.gw, &body(false)).await.1, "b");
    assert_eq!(
        mock_stats(&p.a).await["requests"],
        0,
        "the drill never reached A"
    );
}

#[tokio::test]
async fn an_unknown_model_passed_through_by_the_policy_is_a_404_not_a_silent_substitute() {
    let p = pair(&[], "fn route(req) { [req.model, \"b\"] }\n", "");
    let request =
        json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, text) = served_by(&p.gw, &request).await;
    assert_eq!(status, 404, "{text}");
    // An alias the policy maps to real models is fine.
    let p = pair(
        &[],
        "fn route(req) { if req.model == \"auto\" { return \"b\"; } req.model }\n",
        "",
    );
    let request = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(served_by(&p.gw, &request).await.1, "b");
}

#[tokio::test]
async fn admin_reload_applies_the_policy_on_disk_and_refuses_a_broken_one() {
    let p = pair(&[], "fn route(req) { \"a\" }\n", "");
    // Same files: the version stays; the reload still answers with the status.
    let url = p.gw.url("/admin/policy/reload");
    let resp = client().post(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401, "admin key required");
    let policy_dir = p.gw.dir.path().join("policy");
    std::fs::write(policy_dir.join("routing.rhai"), "fn route(req) { \"b\" }\n").unwrap();
    let resp = client()
        .post(&url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let status: Value = resp.json().await.unwrap();
    assert!(status["version"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(served_by(&p.gw, &body(false)).await.1, "b");
    // A broken file: 400 with the position, and the old policy stays.
    std::fs::write(
        policy_dir.join("routing.rhai"),
        "fn route(req) {\n  \"a\" +* \n}\n",
    )
    .unwrap();
    let resp = client()
        .post(&url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("routing.rhai:2:"),
        "{err}"
    );
    assert_eq!(served_by(&p.gw, &body(false)).await.1, "b");
}

//! Fallback near a model's capacity: a target without headroom (its `tpm`, its provider's
//! rate-limit headers, a 429 `Retry-After`) is skipped with no upstream call, recorded as an
//! attempt with reason `capacity`. In-process gateway on a real socket; scripted providers or
//! a raw HTTP upstream on 127.0.0.1 at the provider boundary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::inproc::{start, swap, Script, Scripted};
use common::{client, preamble, KEY};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Route every request for `a` to `a`, then `b`; a request for `b` goes to `b` alone.
fn chain_policy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("route.rhai"),
        "fn route(req) { if req.model == \"b\" { return [\"b\"]; } [\"a\", \"b\"] }",
    )
    .unwrap();
    dir
}

fn config(
    policy: &std::path::Path,
    provider_a: &str,
    model_a_extra: &str,
    admission: &str,
) -> String {
    format!(
        "{preamble}[logs]\ndir = \"logs\"\nfsync_interval_ms = 5\ncommit_interval_ms = 50\n\n[dispatch]\nretries = 0\n\n[policy]\ndir = \"{policy}\"\nwatch = false\n\n[admission]\n{admission}\n\n{provider_a}\n\n[[providers]]\nname = \"p2\"\nkind = \"mock\"\n\n[[models]]\nname = \"a\"\nprovider = \"p1\"\n{model_a_extra}\n\n[[models]]\nname = \"b\"\nprovider = \"p2\"\n",
        preamble = preamble(""),
        policy = policy.display(),
    )
}

/// A chat body reserving `tokens`: the estimate of "hi" (`common::hi_tokens()`) plus `max_tokens`.
fn chat(tokens: u64, stream: bool) -> Value {
    json!({ "model": "a", "stream": stream, "max_tokens": tokens - common::hi_tokens(), "messages": [{ "role": "user", "content": "hi" }] })
}

async fn send(gw: &common::inproc::InProc, feature: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-switchyard-feature", feature)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_model_a_tpm_exhausted_requests_go_to_b_without_calling_a() {
    let policy = chain_policy();
    let cfg = config(
        policy.path(),
        "[[providers]]\nname = \"p1\"\nkind = \"mock\"",
        "tpm = 100",
        "capacity_queue_ms = 0",
    );
    // A's streams never end: they hold their capacity until the client leaves.
    let p1 = Scripted::new("p1", vec![Script::StreamThenHang(vec!["from a"])]);
    let p2 = Scripted::new("p2", vec![Script::Answer("from b")]);
    let gw = start(&cfg, |s| {
        swap(s, "p1", p1.clone());
        swap(s, "p2", p2.clone());
    })
    .await;
    let held = send(&gw, "cap-hold", &chat(100, true)).await;
    assert_eq!(held.status(), 200);
    assert_eq!(held.headers()["x-switchyard-model"], "a");
    assert_eq!(p1.calls(), 1);

    let moved = send(&gw, "cap-moved", &chat(common::hi_tokens() + 1, false)).await;
    assert_eq!(moved.status(), 200);
    assert_eq!(moved.headers()["x-switchyard-model"], "b");
    assert_eq!(p1.calls(), 1, "no upstream call to a");
    assert_eq!(p2.calls(), 1);
    let records = gw.wait_records("cap-moved", 1).await;
    let attempts = records[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["model"], "a");
    assert_eq!(attempts[0]["reason"], "capacity");
    assert!(
        attempts[0]["error"].as_str().unwrap().contains("tpm"),
        "{attempts:?}"
    );
    assert_eq!(attempts[1]["model"], "b");
    assert_eq!(attempts[1]["status"], 200);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_target_lacks_capacity_the_request_waits_for_the_first_to_free_up() {
    let policy = chain_policy();
    let cfg = config(
        policy.path(),
        "[[providers]]\nname = \"p1\"\nkind = \"mock\"",
        "tpm = 600",
        "capacity_queue_ms = 20000",
    )
    .replace(
        "name = \"b\"\nprovider = \"p2\"\n",
        "name = \"b\"\nprovider = \"p2\"\nrpm = 1\n",
    );
    let p1 = Scripted::new("p1", vec![Script::Answer("from a")]);
    let p2 = Scripted::new("p2", vec![Script::Answer("from b")]);
    let gw = start(&cfg, |s| {
        swap(s, "p1", p1.clone());
        swap(s, "p2", p2.clone());
    })
    .await;
    // 600 tokens on a (settled to 15: 585 come back at once), then b's one request a minute.
    assert_eq!(send(&gw, "cap-wait", &chat(600, false)).await.status(), 200);
    // a now has 585 of 600 back; a request needing 600 waits 1.5 s for the last 15 (b is
    // at its rpm after the next request).
    let b_used = send(&gw, "cap-wait", &json!({ "model": "b", "max_tokens": 1, "messages": [{ "role": "user", "content": "hi" }] })).await;
    assert_eq!(b_used.status(), 200);
    let started = Instant::now();
    let waited = send(&gw, "cap-wait", &chat(600, false)).await;
    assert_eq!(waited.status(), 200);
    assert_eq!(waited.headers()["x-switchyard-model"], "a");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1000),
        "waited for a's window: {took:?}"
    );
    assert_eq!(p1.calls(), 2);
}

/// A raw OpenAI-compatible upstream: 200 with `x-ratelimit-remaining-tokens: 5` while `mode`
/// is 0, 429 with `retry-after: 30` when it is 1. Counts the requests it gets.
async fn limited_upstream(mode: Arc<AtomicUsize>, hits: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (mode, hits) = (mode.clone(), hits.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let response = if mode.load(Ordering::SeqCst) == 0 {
                    let body = json!({
                        "id": "up", "object": "chat.completion", "created": 0, "model": "a",
                        "choices": [{ "index": 0, "message": { "role": "assistant", "content": "from a" }, "finish_reason": "stop" }],
                        "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
                    })
                    .to_string();
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-ratelimit-limit-tokens: 1000\r\nx-ratelimit-remaining-tokens: 5\r\nx-ratelimit-reset-tokens: 30s\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                } else {
                    let body =
                        json!({ "error": { "message": "slow down", "type": "rate_limit_error" } })
                            .to_string();
                    format!("HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 30\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                };
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_rate_limit_headers_and_a_429_retry_after_lower_a_models_headroom() {
    let (mode, hits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let addr = limited_upstream(mode.clone(), hits.clone()).await;
    let policy = chain_policy();
    let provider = format!(
        "[[providers]]\nname = \"p1\"\nkind = \"openai-compatible\"\nbase_url = \"http://{addr}/v1\""
    );
    let cfg = config(policy.path(), &provider, "", "capacity_queue_ms = 0");
    let p2 = Scripted::new("p2", vec![Script::Answer("from b")]);
    let gw = start(&cfg, |s| swap(s, "p2", p2.clone())).await;

    // The upstream answers and says 5 tokens are left for 30 s.
    let first = send(&gw, "hint-first", &chat(20, false)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-switchyard-model"], "a");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // A request needing 20 does not fit in 5: b serves it, a is not called.
    let second = send(&gw, "hint-second", &chat(20, false)).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["x-switchyard-model"], "b");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "no upstream call to a");
    let records = gw.wait_records("hint-second", 1).await;
    assert_eq!(records[0]["attempts"][0]["reason"], "capacity");
    assert!(
        records[0]["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("5 tokens left"),
        "{:?}",
        records[0]["attempts"]
    );

    // A second gateway on the same upstream, now answering 429 with Retry-After: 30.
    mode.store(1, Ordering::SeqCst);
    let p2b = Scripted::new("p2", vec![Script::Answer("from b")]);
    let gw2 = start(&cfg, |s| swap(s, "p2", p2b.clone())).await;
    let refused = send(&gw2, "retry-first", &chat(common::hi_tokens() + 1, false)).await;
    assert_eq!(refused.status(), 200, "b took over after a's 429");
    assert_eq!(refused.headers()["x-switchyard-model"], "b");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let after = send(&gw2, "retry-second", &chat(common::hi_tokens() + 1, false)).await;
    assert_eq!(after.status(), 200);
    assert_eq!(after.headers()["x-switchyard-model"], "b");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "a is skipped while its Retry-After runs"
    );
    let records = gw2.wait_records("retry-second", 1).await;
    assert_eq!(records[0]["attempts"][0]["reason"], "capacity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_no_target_has_capacity_and_no_wait_is_allowed_the_answer_is_429_with_retry_after() {
    let policy = chain_policy();
    let cfg = config(
        policy.path(),
        "[[providers]]\nname = \"p1\"\nkind = \"mock\"",
        "rpm = 1",
        "capacity_queue_ms = 0",
    )
    .replace(
        "name = \"b\"\nprovider = \"p2\"\n",
        "name = \"b\"\nprovider = \"p2\"\nrpm = 1\n",
    );
    let p1 = Scripted::new("p1", vec![Script::Answer("from a")]);
    let p2 = Scripted::new("p2", vec![Script::Answer("from b")]);
    let gw = start(&cfg, |s| {
        swap(s, "p1", p1.clone());
        swap(s, "p2", p2.clone());
    })
    .await;
    assert_eq!(
        send(&gw, "none", &chat(common::hi_tokens() + 1, false))
            .await
            .headers()["x-switchyard-model"],
        "a"
    );
    assert_eq!(
        send(&gw, "none", &chat(common::hi_tokens() + 1, false))
            .await
            .headers()["x-switchyard-model"],
        "b"
    );
    let started = Instant::now();
    let refused = send(&gw, "none", &chat(common::hi_tokens() + 1, false)).await;
    assert_eq!(refused.status(), 429);
    assert!(started.elapsed() < Duration::from_secs(5));
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("capacity"),
        "{body}"
    );
    assert_eq!((p1.calls(), p2.calls()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_read_headroom_and_limit_status() {
    let policy = tempfile::tempdir().unwrap();
    std::fs::write(
        policy.path().join("route.rhai"),
        r#"fn route(req) {
            let seen = limit_status("capacity:a");
            if seen != () && req.feature == "status" {
                throw #{ status: 409, message: `a used ${seen.used} of ${seen.limit} (${seen.window})` };
            }
            // Route around a before dispatch has to: below 50 tokens left, go to b.
            let left = headroom("a");
            if left != () && left < 50 { return ["b"]; }
            ["a"]
        }"#,
    )
    .unwrap();
    let cfg = config(
        policy.path(),
        "[[providers]]\nname = \"p1\"\nkind = \"mock\"",
        "tpm = 100",
        "capacity_queue_ms = 0",
    );
    let p1 = Scripted::new("p1", vec![Script::StreamThenHang(vec!["from a"])]);
    let p2 = Scripted::new("p2", vec![Script::Answer("from b")]);
    let gw = start(&cfg, |s| {
        swap(s, "p1", p1.clone());
        swap(s, "p2", p2.clone());
    })
    .await;
    let held = send(&gw, "helpers", &chat(60, true)).await;
    assert_eq!(held.headers()["x-switchyard-model"], "a");
    let status = send(&gw, "status", &chat(common::hi_tokens() + 1, false)).await;
    assert_eq!(status.status(), 409);
    let body: Value = status.json().await.unwrap();
    assert_eq!(
        body["error"]["message"], "a used 60 of 100 (tokens_per_minute)",
        "{body}"
    );
    // 40 left on a: the policy sends the next request to b itself (no capacity attempt).
    let routed = send(&gw, "helpers-b", &chat(common::hi_tokens() + 1, false)).await;
    assert_eq!(routed.headers()["x-switchyard-model"], "b");
    let records = gw.wait_records("helpers-b", 1).await;
    assert_eq!(records[0]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(p1.calls(), 1);
    drop(held);
}

//! Rate limits end to end: the in-process gateway on a real socket, static `[[limits]]` and
//! the policy's `limits` hook, scripted providers at the provider boundary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::inproc::{config, start, swap, Script, Scripted};
use common::{client, key_of, users};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A chat body whose reservation is exactly `tokens`: the input estimate of "hi" is 1 token
/// of text + framing (`common::hi_tokens()`), plus `max_tokens`.
fn chat(tokens: u64) -> Value {
    json!({ "model": "m1", "max_tokens": tokens - common::hi_tokens(), "messages": [{ "role": "user", "content": "hi" }] })
}

async fn send(
    gw: &common::inproc::InProc,
    user: &str,
    feature: &str,
    body: &Value,
) -> reqwest::Response {
    common::chat_as(&gw.url("/v1/chat/completions"), user, feature, body).await
}

async fn send_anthropic(
    gw: &common::inproc::InProc,
    user: &str,
    body: &Value,
) -> reqwest::Response {
    client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", key_of(user))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn streamed(tokens: u64) -> Value {
    let mut body = chat(tokens);
    body["stream"] = json!(true);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_n_tokens_admits_requests_totalling_n_and_refuses_more_at_once_in_both_dialects()
{
    let extra = format!(
        "{}\n[[limits]]\nname = \"per-user\"\nmatch = {{ user = \"*\" }}\ntokens_per_minute = 100\n",
        users()
    );
    // Streams that never end hold their reservations until the client leaves.
    let p1 = Scripted::new("p1", vec![Script::StreamThenHang(vec!["x"])]);
    let gw = start(&config(None, &extra), |s| swap(s, "p1", p1.clone())).await;
    let first = send(&gw, "alice", "edge", &streamed(60)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-tokens"], "100");
    assert_eq!(first.headers()["x-ratelimit-remaining-tokens"], "40");
    let second = send(&gw, "alice", "edge", &streamed(40)).await;
    assert_eq!(second.status(), 200, "60 + 40 = the limit exactly");
    assert_eq!(second.headers()["x-ratelimit-remaining-tokens"], "0");

    let started = Instant::now();
    let over = send(&gw, "alice", "edge", &chat(common::hi_tokens() + 1)).await;
    assert_eq!(over.status(), 429);
    let retry_after: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tokens_per_minute of `per-user:user=alice`"),
        "{message}"
    );

    let over = send_anthropic(
        &gw,
        "alice",
        &json!({ "model": "m1", "max_tokens": 1, "messages": [{ "role": "user", "content": "hi" }] }),
    )
    .await;
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once, not after a wait"
    );

    // One user at the limit does not slow another.
    let started = Instant::now();
    let bob = send(&gw, "bob", "edge", &streamed(100)).await;
    assert_eq!(bob.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));

    // A request larger than the whole limit can never pass: 429 without Retry-After.
    let never = send(&gw, "carol", "edge", &chat(101)).await;
    assert_eq!(never.status(), 429);
    assert!(never.headers().get("retry-after").is_none());
    let body: Value = never.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("never pass"));
    drop((first, second, bob));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_limits_lists_live_buckets_and_the_log_is_searchable_by_limit() {
    let extra = "\n[[limits]]\nname = \"per-user\"\nmatch = { user = \"*\" }\ntokens_per_minute = 1000\nrequests_per_minute = 50\n";
    let p1 = Scripted::new("p1", vec![Script::Answer("ok")]);
    let gw = start(&config(None, extra), |s| swap(s, "p1", p1.clone())).await;
    let answer = send(&gw, "alice", "listed", &chat(107)).await;
    assert_eq!(answer.status(), 200);
    let _ = answer.bytes().await;
    let listing: Value = client()
        .get(gw.url("/admin/limits?prefix=per-user"))
        .bearer_auth(common::ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let buckets = listing["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 1, "{listing}");
    let bucket = &buckets[0];
    assert_eq!(bucket["key"], "per-user:user=alice");
    assert_eq!(bucket["in_flight"], 0);
    assert_eq!(bucket["queue"]["depth"], 0);
    let tokens = &bucket["windows"]["tokens_per_minute"];
    assert_eq!(tokens["limit"], 1000);
    // Reserved 107, settled to the provider's 15 (refilled a little since).
    let used = tokens["used"].as_i64().unwrap();
    assert!((1..=15).contains(&used), "{listing}");
    assert_eq!(bucket["windows"]["requests_per_minute"]["limit"], 50);
    let empty: Value = client()
        .get(gw.url("/admin/limits?prefix=nobody"))
        .bearer_auth(common::ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty["buckets"].as_array().unwrap().len(), 0);
    let unauthorized = client()
        .get(gw.url("/admin/limits"))
        .bearer_auth(common::KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    let records = gw.wait_records("listed", 1).await;
    let limits = &records[0]["limits"];
    assert_eq!(limits["applied"], json!(["per-user:user=alice"]));
    assert_eq!(limits["reserved_tokens"], 107);
    assert_eq!(limits["settled_tokens"], 15);
    let found: Value = client()
        .get(gw.url("/admin/logs?q=limit:%22per-user:user=alice%22"))
        .bearer_auth(common::ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hits = found["hits"]
        .as_array()
        .or(found["records"].as_array())
        .unwrap();
    assert_eq!(hits.len(), 1, "{found}");
}

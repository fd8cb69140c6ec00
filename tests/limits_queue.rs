//! Rate limits under load, end to end: per-feature buckets, the fair queue (waits, refusals,
//! round-robin across owners, interactive before batch, leaving on disconnect), settlement of
//! streams, and the `limits` hook's self-check. The in-process gateway on a real socket, with
//! providers swapped in at the provider boundary (`Gated` holds answers until the test lets
//! them go and records the order of the prompts it sees).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::inproc::{config, start, swap, Gated, InProc, Script, Scripted};
use common::{client, key_of, users};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// A chat body whose reservation is exactly `tokens`: the input estimate of "hi" is 1 token
/// of text + framing (`common::hi_tokens()`), plus `max_tokens`.
fn chat(tokens: u64) -> Value {
    json!({ "model": "m1", "max_tokens": tokens - common::hi_tokens(), "messages": [{ "role": "user", "content": "hi" }] })
}

fn streamed(tokens: u64) -> Value {
    let mut body = chat(tokens);
    body["stream"] = json!(true);
    body
}

/// A chat body whose prompt names it, so the provider's order of prompts says who went when.
fn ask(prompt: &str) -> Value {
    json!({ "model": "m1", "max_tokens": 16, "messages": [{ "role": "user", "content": prompt }] })
}

async fn send(
    gw: &common::inproc::InProc,
    user: &str,
    feature: &str,
    body: &Value,
) -> reqwest::Response {
    common::chat_as(&gw.url("/v1/chat/completions"), user, feature, body).await
}

/// Send in the background (the request may wait in the queue); the response when it answers.
fn spawn_send(
    http: &reqwest::Client,
    gw: &InProc,
    user: &str,
    feature: &str,
    body: Value,
) -> JoinHandle<reqwest::Response> {
    let request = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key_of(user))
        .header("x-switchyard-feature", feature)
        .json(&body);
    tokio::spawn(async move { request.send().await.unwrap() })
}

/// Wait (bounded: 20 s) until `done` holds; panic naming `what` otherwise.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait (bounded: 20 s) until `n` requests wait in the gateway's queue.
async fn until_waiting(gw: &InProc, n: usize) {
    until(&format!("{n} requests are queued"), || {
        gw.state.admission.waiting() == n
    })
    .await;
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The record whose id is the response's `x-request-id`.
fn record_of<'a>(records: &'a [Value], response: &reqwest::Response) -> &'a Value {
    let id = response.headers()["x-request-id"].to_str().unwrap();
    records
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no record {id} in {records:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_batch_feature_is_limited_while_the_same_users_chat_feature_is_not() {
    let extra = format!(
        "{}\n[[limits]]\nname = \"batch-rpm\"\nmatch = {{ feature = \"batch\" }}\nrequests_per_minute = 3\n",
        users()
    );
    let p1 = Scripted::new("p1", vec![Script::Answer("ok")]);
    let gw = start(&config(None, &extra), |s| swap(s, "p1", p1.clone())).await;

    for i in 0..3 {
        let resp = send(&gw, "alice", "batch", &chat(20)).await;
        assert_eq!(resp.status(), 200, "batch request {i} is within the limit");
    }
    for i in 3..6 {
        let resp = send(&gw, "alice", "batch", &chat(20)).await;
        assert_eq!(resp.status(), 429, "batch request {i} is over the limit");
        let body: Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("requests_per_minute of `batch-rpm:feature=batch`"),
            "{message}"
        );
    }
    // The same user's chat goes on, far past what the batch limit allows.
    for i in 0..10 {
        let resp = send(&gw, "alice", "chat", &chat(20)).await;
        assert_eq!(resp.status(), 200, "chat request {i}");
        assert!(resp.headers().get("x-ratelimit-limit-tokens").is_none());
    }
    assert_eq!(
        send(&gw, "alice", "batch", &chat(20)).await.status(),
        429,
        "batch is still limited"
    );
    assert_eq!(p1.calls(), 13, "3 batch + 10 chat reached the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_limit_request_with_queue_ms_waits_and_is_served_once_room_frees() {
    let extra = "\n[[limits]]\nname = \"one-at-a-time\"\nmatch = { feature = \"q\" }\nconcurrency = 1\nqueue_ms = 10000\n";
    let gated = Gated::new();
    let gw = start(&config(None, extra), |s| swap(s, "p1", gated.clone())).await;
    let http = client();

    let first = spawn_send(&http, &gw, "alice", "q", ask("first"));
    assert!(
        gated.wait_calls(1).await,
        "the first request reaches the provider"
    );
    let second = spawn_send(&http, &gw, "alice", "q", ask("second"));
    until_waiting(&gw, 1).await;
    let queued_at = Instant::now();
    // Give the second every chance to slip past while the first holds the only slot.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gated.prompts(), ["first"], "the second waits in the queue");
    assert_eq!(gw.state.admission.waiting(), 1);
    let held = queued_at.elapsed();

    gated.open();
    let first = first.await.unwrap();
    let second = second.await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200, "served once the first settled");
    assert_eq!(gated.prompts(), ["first", "second"]);
    assert_eq!(gw.state.admission.waiting(), 0);

    let records = gw.wait_records("q", 2).await;
    let queued_ms = |r: &Value| r["limits"]["queued_ms"].as_f64().unwrap();
    assert_eq!(queued_ms(record_of(&records, &first)), 0.0);
    let waited = queued_ms(record_of(&records, &second));
    assert!(
        waited > 0.0 && waited >= held.as_millis() as f64,
        "queued {waited} ms; it was seen waiting for at least {held:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_exact_wait_exceeds_queue_ms_gets_429_with_retry_after_at_once_in_both_dialects(
) {
    // One request a minute: the next one's exact wait is about 60 s, past its 20 s queue_ms.
    let extra = "\n[[limits]]\nname = \"slow\"\nmatch = { feature = \"slow\" }\nrequests_per_minute = 1\nqueue_ms = 20000\n";
    let p1 = Scripted::new("p1", vec![Script::Answer("ok")]);
    let gw = start(&config(None, extra), |s| swap(s, "p1", p1.clone())).await;
    assert_eq!(send(&gw, "alice", "slow", &chat(20)).await.status(), 200);

    let started = Instant::now();
    let over = send(&gw, "alice", "slow", &chat(20)).await;
    assert_eq!(over.status(), 429);
    let after = retry_after(&over);
    assert!(
        (21..=60).contains(&after),
        "the exact wait, past queue_ms: {after}"
    );
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("requests_per_minute of `slow:feature=slow`"),
        "{message}"
    );

    let over = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", common::KEY)
        .header("anthropic-version", "2023-06-01")
        .header("x-switchyard-feature", "slow")
        .json(&json!({ "model": "m1", "max_tokens": 13, "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 429);
    let after = retry_after(&over);
    assert!((21..=60).contains(&after), "{after}");
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // Waiting out queue_ms before refusing would have taken 20 s per request.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused at once, not after waiting: {:?}",
        started.elapsed()
    );
    assert_eq!(gw.state.admission.waiting(), 0);
    assert_eq!(p1.calls(), 1, "only the first reached the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_request_from_another_user_is_served_within_the_first_few_after_200_queued_from_one_user(
) {
    let extra = format!(
        "{}\n[[limits]]\nname = \"shared\"\nmatch = {{ feature = \"shared\" }}\nconcurrency = 1\nqueue_ms = 60000\n",
        users()
    );
    let gated = Gated::new();
    let gw = start(&config(None, &extra), |s| swap(s, "p1", gated.clone())).await;
    let http = client();

    // Alice holds the only slot, and queues 200 more behind it.
    let mut alice = vec![spawn_send(&http, &gw, "alice", "shared", ask("a-hold"))];
    assert!(gated.wait_calls(1).await);
    for i in 0..200 {
        alice.push(spawn_send(
            &http,
            &gw,
            "alice",
            "shared",
            ask(&format!("a-{i}")),
        ));
    }
    until_waiting(&gw, 200).await;
    // Then bob asks once.
    let bob = spawn_send(&http, &gw, "bob", "shared", ask("b"));
    until_waiting(&gw, 201).await;
    assert_eq!(gated.calls(), 1, "everyone waits behind the held request");

    gated.open();
    let bob = tokio::time::timeout(Duration::from_secs(20), bob)
        .await
        .expect("bob is served")
        .unwrap();
    assert_eq!(bob.status(), 200);
    for request in alice {
        let resp = tokio::time::timeout(Duration::from_secs(20), request)
            .await
            .expect("alice's requests are all served")
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    let prompts = gated.prompts();
    assert_eq!(prompts.len(), 202);
    assert_eq!(prompts[0], "a-hold");
    let position = prompts[1..].iter().position(|p| p == "b").unwrap() + 1;
    assert!(
        position <= 3,
        "bob was admitted {position}th after he arrived, behind alice's 200: {:?}",
        &prompts[..position.min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_request_is_served_before_queued_batch_ones_on_a_key_the_policy_shares() {
    let policy = tempfile::tempdir().unwrap();
    std::fs::write(
        policy.path().join("limits.rhai"),
        r#"fn limits(req) {
    if req.feature == "bulk" {
        [ #{ key: "shared", concurrency: 1, queue_ms: 60000, priority: "batch" } ]
    } else {
        [ #{ key: "shared", concurrency: 1, queue_ms: 60000 } ]
    }
}
"#,
    )
    .unwrap();
    let gated = Gated::new();
    let gw = start(&config(Some(policy.path()), ""), |s| {
        swap(s, "p1", gated.clone())
    })
    .await;
    let http = client();

    let mut sent = vec![spawn_send(&http, &gw, "alice", "hold", ask("hold"))];
    assert!(gated.wait_calls(1).await);
    for i in 1..=3 {
        sent.push(spawn_send(
            &http,
            &gw,
            "alice",
            "bulk",
            ask(&format!("bulk-{i}")),
        ));
        until_waiting(&gw, i).await;
    }
    // The same user asks interactively last: only its lane can put it first.
    sent.push(spawn_send(&http, &gw, "alice", "chat", ask("urgent")));
    until_waiting(&gw, 4).await;

    gated.open();
    for request in sent {
        let resp = tokio::time::timeout(Duration::from_secs(20), request)
            .await
            .expect("every request is served")
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        gated.prompts(),
        ["hold", "urgent", "bulk-1", "bulk-2", "bulk-3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_request_is_settled_to_its_reported_usage_at_stream_end_and_its_room_comes_back()
{
    let extra =
        "\n[[limits]]\nname = \"tpm\"\nmatch = { feature = \"stream\" }\ntokens_per_minute = 100\n";
    let p1 = Scripted::new("p1", vec![Script::Stream(vec!["hello", " there"])]);
    let gw = start(&config(None, extra), |s| swap(s, "p1", p1.clone())).await;

    let stream = send(&gw, "alice", "stream", &streamed(60)).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["x-ratelimit-remaining-tokens"],
        "40",
        "60 reserved at admission"
    );
    let text = stream.text().await.unwrap();
    assert!(text.contains("there"), "{text}");

    let records = gw.wait_records("stream", 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let limits = &records[0]["limits"];
    assert_eq!(limits["applied"], json!(["tpm:feature=stream"]));
    assert_eq!(limits["reserved_tokens"], 60);
    assert_eq!(limits["settled_tokens"], 15, "the provider's 10 in + 5 out");

    // 80 more would not fit beside the 60 reserved; beside the 15 settled, it does.
    let follow = send(&gw, "alice", "stream", &chat(80)).await;
    assert_eq!(
        follow.status(),
        200,
        "the reservation's unused room came back"
    );
    let remaining: u64 = follow.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        remaining < 20,
        "the stream's 15 stay charged (100 - 15 - 80 = 5, plus refill): {remaining}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_is_charged_at_least_what_was_streamed() {
    // 400 bytes of text: 100 tokens observed, far more than the 20 output tokens reserved.
    let long: &'static str = Box::leak("word ".repeat(80).into_boxed_str());
    let extra =
        "\n[[limits]]\nname = \"cut\"\nmatch = { feature = \"cut\" }\ntokens_per_minute = 100000\n";
    let p1 = Scripted::new("p1", vec![Script::StreamThenHang(vec![long])]);
    let gw = start(&config(None, extra), |s| swap(s, "p1", p1.clone())).await;

    let mut resp = send(&gw, "alice", "cut", &streamed(27)).await;
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    while !seen.contains(long.trim_end()) {
        let chunk = resp.chunk().await.unwrap().expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);

    let records = gw.wait_records("cut", 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["client_disconnected"], true);
    assert_eq!(record["limits"]["reserved_tokens"], 27);
    let settled = record["limits"]["settled_tokens"].as_u64().unwrap();
    let input = record["usage"]["input_tokens"].as_u64().unwrap();
    let streamed_tokens = long.len().div_ceil(4) as u64;
    assert!(
        settled >= input + streamed_tokens,
        "settled {settled} < input {input} + streamed {streamed_tokens}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_while_queued_leaves_the_queue_and_never_reaches_the_provider() {
    // queue_ms is a minute: only the disconnect can empty the queue within the test's bound.
    let extra = "\n[[limits]]\nname = \"leave\"\nmatch = { feature = \"leave\" }\nconcurrency = 1\nqueue_ms = 60000\n";
    let gated = Gated::new();
    let gw = start(&config(None, extra), |s| swap(s, "p1", gated.clone())).await;
    let http = client();

    let hold = spawn_send(&http, &gw, "alice", "leave", ask("hold"));
    assert!(gated.wait_calls(1).await);
    let quitter = spawn_send(&http, &gw, "alice", "leave", ask("quitter"));
    until_waiting(&gw, 1).await;

    quitter.abort();
    let left = Instant::now();
    until("the quitter left the queue", || {
        gw.state.admission.waiting() == 0
    })
    .await;
    assert!(
        left.elapsed() < Duration::from_secs(10),
        "left at once, not at queue_ms: {:?}",
        left.elapsed()
    );

    gated.open();
    assert_eq!(hold.await.unwrap().status(), 200);
    // Had the quitter still been queued, it would have gone before this one.
    let after = send(&gw, "alice", "leave", &ask("after")).await;
    assert_eq!(after.status(), 200);
    assert_eq!(gated.prompts(), ["hold", "after"]);
}

#[test]
fn a_limits_hook_returning_an_unknown_key_is_rejected_at_load_naming_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("limits.rhai"),
        "// per-user tokens\nfn limits(req) {\n  [ #{ key: `user:${req.user}`,\n     tokens_per_mintue: 20000 } ]\n}\n",
    )
    .unwrap();

    // As a policy author checks it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["policy", "check", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the check fails");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("limits.rhai:4:"), "{stderr}");
    assert!(stderr.contains("tokens_per_mintue"), "{stderr}");

    // As the gateway loads it at start.
    let gateway = tempfile::tempdir().unwrap();
    let path = gateway.path().join("gateway.toml");
    std::fs::write(&path, config(Some(dir.path()), "")).unwrap();
    let config = switchyard::config::Config::load(&path).unwrap();
    let err = match switchyard::app::build(config) {
        Ok(_) => panic!("a gateway started on a policy whose limits hook is malformed"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("limits.rhai:4:"), "{err}");
    assert!(err.contains("tokens_per_mintue"), "{err}");
}

//! The response cache end to end: the in-process gateway on a real socket, providers swapped
//! in at the provider boundary (scripted answers that count their calls, or `Gated` answers
//! held until released).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::inproc::{config, start, swap, Gated, InProc, Script, Scripted};
use common::{admin_json, chat_as, client, messages_as, users};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn cache_section(extra: &str) -> String {
    format!("\n[cache]\nenabled = true\nttl_s = 600\n{extra}\n")
}

async fn gateway(cache: &str, script: Vec<Script>) -> (InProc, Arc<Scripted>) {
    let p1 = Scripted::new("p1", script);
    let text = config(None, &format!("{}{cache}", users()));
    let gw = start(&text, |s| swap(s, "p1", p1.clone())).await;
    (gw, p1)
}

fn ask(prompt: &str) -> Value {
    json!({ "model": "m1", "max_tokens": 50, "messages": [{ "role": "user", "content": prompt }] })
}

async fn send(gw: &InProc, user: &str, body: &Value) -> reqwest::Response {
    chat_as(&gw.url("/v1/chat/completions"), user, "cache", body).await
}

fn cache_header(response: &reqwest::Response) -> String {
    response.headers()["x-switchyard-cache"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_request_is_answered_from_the_cache_in_both_dialects() {
    let (gw, p1) = gateway(
        &cache_section(""),
        vec![Script::Answer("the cached answer")],
    )
    .await;
    let first = send(&gw, "alice", &ask("what is a gateway?")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_header(&first), "miss");
    assert!(!first.headers().contains_key("age"));
    let second = send(&gw, "alice", &ask("what is a gateway?")).await;
    assert_eq!(cache_header(&second), "hit");
    assert!(second.headers().contains_key("age"));
    assert_eq!(second.headers()["x-switchyard-model"], "m1");
    let body: Value = second.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "the cached answer"
    );
    assert_eq!(body["usage"]["prompt_tokens"], 10);

    // The same request in Anthropic's dialect is the same canonical request.
    let anthropic = messages_as(
        &gw.url("/v1/messages"),
        "alice",
        "cache",
        &ask("what is a gateway?"),
    )
    .await;
    assert_eq!(anthropic.status(), 200);
    assert_eq!(cache_header(&anthropic), "hit");
    let body: Value = anthropic.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "the cached answer");
    assert_eq!(p1.calls(), 1, "only the first request reached the provider");

    let records = gw.wait_records("cache", 3).await;
    let hits: Vec<&Value> = records
        .iter()
        .filter(|r| r["cache"]["status"] == "hit")
        .collect();
    assert_eq!(hits.len(), 2);
    // The hit cost nothing, and says what it saved: 10 in × $1/M + 5 out × $2/M.
    assert_eq!(hits[0]["cost_usd"], 0.0);
    assert_eq!(hits[0]["cache"]["saved_usd"], "0.00002");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_and_whole_requests_share_an_entry_both_ways() {
    let (gw, p1) = gateway(
        &cache_section(""),
        vec![
            Script::Answer("whole first"),
            Script::Stream(vec!["streamed ", "first"]),
        ],
    )
    .await;
    // Stored by a whole answer, served as a stream.
    assert_eq!(cache_header(&send(&gw, "alice", &ask("one")).await), "miss");
    let mut streamed = ask("one");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({ "include_usage": true });
    let response = send(&gw, "alice", &streamed).await;
    assert_eq!(cache_header(&response), "hit");
    let events = common::sse(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "whole first");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 5);

    // Stored by a stream once it completed, served whole.
    let mut streamed = ask("two");
    streamed["stream"] = json!(true);
    let response = send(&gw, "alice", &streamed).await;
    assert_eq!(cache_header(&response), "miss");
    assert!(response.text().await.unwrap().contains("[DONE]"));
    gw.settle_log().await;
    let whole = send(&gw, "alice", &ask("two")).await;
    assert_eq!(cache_header(&whole), "hit");
    let body: Value = whole.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "streamed first");
    assert_eq!(p1.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_share_an_entry_unless_the_scope_is_global() {
    let (gw, p1) = gateway(&cache_section(""), vec![Script::Answer("ok")]).await;
    // alice is in team support, carol in team sales, bob has no team (his own scope).
    for user in ["alice", "carol", "bob"] {
        assert_eq!(
            cache_header(&send(&gw, user, &ask("same")).await),
            "miss",
            "{user}"
        );
    }
    assert_eq!(p1.calls(), 3, "the provider saw each tenant");
    for user in ["alice", "carol", "bob"] {
        assert_eq!(
            cache_header(&send(&gw, user, &ask("same")).await),
            "hit",
            "{user}"
        );
    }

    let (gw, p1) = gateway(
        &cache_section("scope = \"global\""),
        vec![Script::Answer("ok")],
    )
    .await;
    assert_eq!(
        cache_header(&send(&gw, "alice", &ask("same")).await),
        "miss"
    );
    assert_eq!(cache_header(&send(&gw, "carol", &ask("same")).await), "hit");
    assert_eq!(p1.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_keyed_field_misses_and_cache_control_is_honoured() {
    let (gw, p1) = gateway(&cache_section(""), vec![Script::Answer("ok")]).await;
    let base = ask("keyed");
    assert_eq!(cache_header(&send(&gw, "alice", &base).await), "miss");
    let variants = [
        ("temperature", json!(0.5)),
        ("top_p", json!(0.9)),
        ("max_tokens", json!(51)),
        ("seed", json!(7)),
        ("stop", json!(["END"])),
        ("model", json!("m2")),
        (
            "tools",
            json!([{ "type": "function", "function": { "name": "f", "parameters": { "type": "object" } } }]),
        ),
        ("response_format", json!({ "type": "json_object" })),
    ];
    for (field, value) in variants {
        let mut body = base.clone();
        body[field] = value;
        let response = send(&gw, "alice", &body).await;
        assert_eq!(cache_header(&response), "miss", "changing {field}");
    }
    let mut body = base.clone();
    body["messages"][0]["content"] = json!("keyed!");
    assert_eq!(cache_header(&send(&gw, "alice", &body).await), "miss");
    // Fields that do not change the answer share the entry.
    let mut body = base.clone();
    body["metadata"] = json!({ "trace": "abc" });
    body["user"] = json!("end-user-42");
    assert_eq!(cache_header(&send(&gw, "alice", &body).await), "hit");

    let calls = p1.calls();
    let with = |directive: &'static str| {
        let url = gw.url("/v1/chat/completions");
        let base = base.clone();
        async move {
            client()
                .post(url)
                .bearer_auth(common::KEY)
                .header("x-switchyard-feature", "cache")
                .header("cache-control", directive)
                .json(&base)
                .send()
                .await
                .unwrap()
        }
    };
    // no-store: neither looked up nor stored.
    let response = with("no-store").await;
    assert_eq!(cache_header(&response), "bypass");
    assert_eq!(p1.calls(), calls + 1);
    // no-cache: not looked up (the provider is called), but stored.
    let response = with("no-cache").await;
    assert_eq!(cache_header(&response), "miss");
    assert_eq!(p1.calls(), calls + 2);
    // max-age=0: an entry of any age is too old for this client.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = with("max-age=0").await;
    assert_eq!(cache_header(&response), "miss");
    assert_eq!(p1.calls(), calls + 3);
    let response = with("max-age=60").await;
    assert_eq!(cache_header(&response), "hit");
    assert_eq!(p1.calls(), calls + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_identical_concurrent_misses_make_one_upstream_call() {
    let gated = Gated::new();
    let text = config(None, &format!("{}{}", users(), cache_section("")));
    let gw = start(&text, |s| swap(s, "p1", gated.clone())).await;
    let sends: Vec<_> = (0..20)
        .map(|_| {
            let url = gw.url("/v1/chat/completions");
            tokio::spawn(async move {
                let response = chat_as(&url, "alice", "cache", &ask("together")).await;
                let status = response.status().as_u16();
                let cache = response.headers()["x-switchyard-cache"]
                    .to_str()
                    .unwrap()
                    .to_string();
                let body: Value = response.json().await.unwrap();
                (
                    status,
                    cache,
                    body["choices"][0]["message"]["content"].clone(),
                )
            })
        })
        .collect();
    assert!(gated.wait_calls(1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gated.calls(), 1, "the followers wait for the leader");
    gated.release(1);
    let mut caches = Vec::new();
    for send in sends {
        let (status, cache, content) = send.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(content, "ok");
        caches.push(cache);
    }
    assert_eq!(gated.calls(), 1);
    assert_eq!(caches.iter().filter(|c| *c == "miss").count(), 1);
    assert_eq!(caches.iter().filter(|c| *c == "hit").count(), 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_whole_chain_fails_an_expired_entry_is_served_as_stale() {
    let (gw, p1) = gateway(
        &cache_section("").replace("ttl_s = 600", "ttl_s = 1\nmax_stale_s = 3600"),
        vec![Script::Answer("yesterday's answer"), Script::Fail(500)],
    )
    .await;
    assert_eq!(
        cache_header(&send(&gw, "alice", &ask("resilient")).await),
        "miss"
    );
    // Past the TTL: no longer a hit; the provider fails; the stale entry answers.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = send(&gw, "alice", &ask("resilient")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(cache_header(&response), "stale");
    let age: u64 = response.headers()["age"].to_str().unwrap().parse().unwrap();
    assert!(age >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "yesterday's answer"
    );
    assert_eq!(p1.calls(), 2);

    // Without an entry, the client gets the chain's error.
    let failed = send(&gw, "alice", &ask("never cached")).await;
    assert_eq!(failed.status(), 502);
    assert!(!failed.headers().contains_key("age"));

    let records = gw.wait_records("cache", 3).await;
    let stale = records
        .iter()
        .find(|r| r["cache"]["status"] == "stale")
        .expect("the stale answer is logged");
    assert!(stale["cache"]["failure"].as_str().unwrap().contains("500"));
    assert_eq!(stale["attempts"][0]["status"], 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_spends_no_rate_limit_tokens_and_no_budget() {
    let extra = format!(
        "{}\n[[limits]]\nname = \"per-user\"\nmatch = {{ user = \"*\" }}\ntokens_per_minute = 100000\n\
         \n[[budgets]]\nname = \"user-daily\"\nmatch = {{ user = \"*\" }}\nlimit_usd = 1.0\n",
        cache_section("")
    );
    let (gw, _) = gateway(&extra, vec![Script::Answer("ok")]).await;
    assert_eq!(
        cache_header(&send(&gw, "alice", &ask("free")).await),
        "miss"
    );
    gw.settle_log().await;
    let limits = admin_json(&gw.url("/admin/limits")).await;
    let budgets = admin_json(&gw.url("/admin/budgets")).await;
    for _ in 0..5 {
        assert_eq!(cache_header(&send(&gw, "alice", &ask("free")).await), "hit");
    }
    gw.settle_log().await;
    let used = |v: &Value| v["buckets"][0]["windows"]["tokens_per_minute"]["used"].clone();
    let after = admin_json(&gw.url("/admin/limits")).await;
    assert!(used(&after).as_i64().unwrap() <= used(&limits).as_i64().unwrap());
    let spent = |v: &Value| v["budgets"][0]["buckets"][0]["spent_usd"].clone();
    assert_eq!(
        spent(&admin_json(&gw.url("/admin/budgets")).await),
        spent(&budgets)
    );
    assert_eq!(spent(&budgets), "0.00002");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_evicts_and_the_admin_api_reports_and_purges() {
    let long: &'static str = Box::leak("x".repeat(2000).into_boxed_str());
    let (gw, _) = gateway(
        &cache_section("max_bytes = 16384\nmax_entry_bytes = 8192"),
        vec![Script::Answer(long)],
    )
    .await;
    for i in 0..30 {
        assert_eq!(
            send(&gw, "alice", &ask(&format!("q{i}"))).await.status(),
            200
        );
    }
    let status = admin_json(&gw.url("/admin/cache")).await;
    let stats = &status["stats"];
    assert!(stats["bytes"].as_u64().unwrap() <= 16384, "{status}");
    assert!(stats["entries"].as_u64().unwrap() < 30, "{status}");
    assert_eq!(stats["misses"], 30);

    // Purge one scope, then everything.
    assert_eq!(send(&gw, "carol", &ask("sales")).await.status(), 200);
    let purge = |query: &'static str| {
        let url = gw.url(&format!("/admin/cache{query}"));
        async move {
            client()
                .delete(url)
                .bearer_auth(common::ADMIN_KEY)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let purged = purge("?scope=team:sales").await;
    assert_eq!(purged["purged"], 1, "{purged}");
    assert_eq!(
        cache_header(&send(&gw, "carol", &ask("sales")).await),
        "miss"
    );
    purge("").await;
    let status = admin_json(&gw.url("/admin/cache")).await;
    assert_eq!(status["stats"]["entries"], 0, "{status}");
}

//! The request log end to end: redaction before disk, search, replay, and no record lost
//! across SIGTERM and SIGKILL. Real gateway processes, real Tantivy index on a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn log_config(mock: &Proc, extra: &str) -> String {
    format!(
        "{}{}\n[logs]\nenabled = true\ndir = \"logs\"\nfsync_interval_ms = 50\ncommit_interval_ms = 200\n{extra}",
        preamble(""),
        providers_on(mock)
    )
}

async fn search(gw: &Gateway, query: &str) -> reqwest::Response {
    client()
        .get(gw.url(&format!("/admin/logs?{query}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
}

async fn search_ok(gw: &Gateway, query: &str) -> Value {
    let resp = search(gw, query).await;
    assert_eq!(resp.status(), 200, "{query}");
    resp.json().await.unwrap()
}

/// Wait until a search returns at least `n` hits in total.
async fn until_total(gw: &Gateway, query: &str, n: u64) -> Value {
    eventually(Duration::from_secs(15), || async {
        let v = search_ok(gw, query).await;
        (v["total"].as_u64().unwrap_or(0) >= n).then_some(v)
    })
    .await
    .unwrap_or_else(|| panic!("search {query} never reached {n} hits"))
}

async fn chat(gw: &Gateway, model: &str, text: &str, feature: Option<&str>) -> String {
    let mut req = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY);
    if let Some(f) = feature {
        req = req.header("x-switchyard-feature", f);
    }
    let resp = req
        .json(&json!({"model": model, "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["x-request-id"].to_str().unwrap().to_string()
}

fn all_bytes_under(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    out
}

#[tokio::test]
async fn planted_secrets_are_searchable_by_harmless_words_and_never_reach_disk() {
    set_provider_env();
    let mock = mock_provider(&[]);
    let gw = gateway(&log_config(&mock, ""));
    let email = "jane.doe@example.com";
    let card = "4111 1111 1111 1111";
    let key = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
    let text = format!("Quarterly pineapple report: mail {email}, card {card}, key {key} ECHO");
    let id = chat(&gw, "gpt-test", &text, None).await;
    let found = until_total(&gw, "q=pineapple", 1).await;
    assert_eq!(found["hits"][0]["id"], id);
    let record: Value = client()
        .get(gw.url(&format!("/admin/logs/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = record.to_string();
    assert!(
        stored.contains("[EMAIL]") && stored.contains("[CARD]") && stored.contains("[SECRET]"),
        "{stored}"
    );
    for secret in [email, card, key, "4111111111111111"] {
        assert!(!stored.contains(secret), "{secret} in the stored record");
    }
    assert_eq!(record["user"], "alice");
    assert_eq!(record["served_model"], "gpt-test");
    assert!(record["cost_usd"].as_f64().unwrap() > 0.0);
    // Nothing raw anywhere on disk (journal, index, everything), after a flush.
    let mut term = gw.proc;
    term.signal_and_wait("TERM");
    for (path, bytes) in all_bytes_under(&gw.dir.path().join("logs")) {
        for secret in [email, card, key] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in {path}"
            );
        }
    }
}

#[tokio::test]
async fn search_filters_ranges_phrases_pagination_and_errors() {
    set_provider_env();
    let mock = mock_provider(&[]);
    let gw = gateway(&log_config(&mock, ""));
    let before = chrono::Utc::now().timestamp_millis() - 1;
    for i in 0..25 {
        let model = if i % 2 == 0 {
            "gpt-test"
        } else {
            "claude-test"
        };
        let feature = if i % 5 == 0 { Some("billing") } else { None };
        chat(
            &gw,
            model,
            &format!("ticket number {i} about the blue harbor crane"),
            feature,
        )
        .await;
    }
    let all = until_total(&gw, "q=harbor", 25).await;
    assert_eq!(all["total"], 25);
    let v = search_ok(&gw, "q=harbor&model=claude-test").await;
    assert_eq!(v["total"], 12);
    let v = search_ok(&gw, "q=harbor&feature=billing").await;
    assert_eq!(v["total"], 5);
    let v = search_ok(&gw, "q=harbor&user=alice&status=200").await;
    assert_eq!(v["total"], 25);
    let v = search_ok(&gw, "q=harbor&user=bob").await;
    assert_eq!(v["total"], 0);
    let v = search_ok(&gw, &format!("q=harbor&from={before}")).await;
    assert_eq!(v["total"], 25);
    let v = search_ok(&gw, &format!("q=harbor&to={before}")).await;
    assert_eq!(v["total"], 0);
    // Phrase: the words in this order only.
    let v = search_ok(&gw, "q=%22blue%20harbor%20crane%22").await;
    assert_eq!(v["total"], 25);
    let v = search_ok(&gw, "q=%22crane%20harbor%20blue%22").await;
    assert_eq!(v["total"], 0);
    // Pagination: every record exactly once.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let q = match &cursor {
            Some(c) => format!("q=harbor&limit=7&cursor={c}"),
            None => "q=harbor&limit=7".to_string(),
        };
        let page = search_ok(&gw, &q).await;
        for hit in page["hits"].as_array().unwrap() {
            assert!(
                seen.insert(hit["id"].as_str().unwrap().to_string()),
                "duplicate {hit}"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    // Invalid query: 400 with the parser's message; admin key enforced.
    let resp = search(&gw, "q=harbor%20AND%20(").await;
    assert_eq!(resp.status(), 400);
    let resp = client()
        .get(gw.url("/admin/logs?q=harbor"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .get(gw.url("/admin/logs?q=harbor"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a gateway key is not an admin key");
}

#[tokio::test]
async fn replay_to_another_model_links_back() {
    set_provider_env();
    let mock = mock_provider(&[]);
    let gw = gateway(&log_config(&mock, ""));
    let id = chat(&gw, "gpt-test", "replay me please ECHO", None).await;
    until_total(&gw, &format!("q=id:{id}"), 1).await;
    let resp = client()
        .post(gw.url(&format!("/admin/logs/{id}/replay")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"model": "claude-test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["replay_of"], id);
    assert_eq!(v["model"], "claude-test");
    let text = v["response"]["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(text.contains("replay me please"), "{text}");
    let new_id = v["id"].as_str().unwrap().to_string();
    let linked = until_total(&gw, &format!("q=replay_of:{id}"), 1).await;
    assert_eq!(linked["hits"][0]["id"], new_id);
    let record: Value = client()
        .get(gw.url(&format!("/admin/logs/{new_id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["replay_of"], id);
    assert_eq!(record["served_model"], "claude-test");
    // Unknown id → 404.
    let resp = client()
        .post(gw.url("/admin/logs/nope/replay"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

async fn send_n(gw: &Gateway, n: usize, word: &str) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let url = gw.url("/v1/chat/completions");
        let text = format!("{word} request {i}");
        tasks.push(tokio::spawn(async move {
            let resp = post(
                &url,
                &json!({"model": "gpt-test", "messages": [{"role": "user", "content": text}]}),
            )
            .await;
            assert_eq!(resp.status(), 200);
        }));
        if tasks.len() >= 16 {
            for t in tasks.drain(..) {
                t.await.unwrap();
            }
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_loses_no_record() {
    set_provider_env();
    let mock = mock_provider(&[]);
    // A long commit interval: answered records sit in the journal, not yet in the index.
    let config =
        log_config(&mock, "").replace("commit_interval_ms = 200", "commit_interval_ms = 60000");
    let mut gw = gateway(&config);
    let n = 400;
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = gw.url("/v1/chat/completions");
    let mut workers = Vec::new();
    for w in 0..8 {
        let (url, answered) = (url.clone(), answered.clone());
        workers.push(tokio::spawn(async move {
            let http = client();
            for i in 0..n / 8 {
                let body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": format!("walrus {w} {i}")}]});
                match http.post(&url).bearer_auth(KEY).json(&body).send().await {
                    Ok(resp) if resp.status() == 200 => {
                        answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
        }));
    }
    // SIGTERM in the middle of the run.
    eventually(Duration::from_secs(30), || async {
        (answered.load(std::sync::atomic::Ordering::SeqCst) >= n / 3).then_some(())
    })
    .await
    .unwrap();
    let status = gw.signal_and_wait("TERM");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    for w in workers {
        w.await.unwrap();
    }
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst) as u64;
    assert!(answered < n as u64, "the run was interrupted");
    let dir = std::mem::replace(&mut gw.dir, tempfile::tempdir().unwrap());
    drop(gw);
    let gw = gateway_in(dir, &log_config(&mock, ""));
    let v = until_total(&gw, "q=walrus", answered).await;
    let total = v["total"].as_u64().unwrap();
    assert!(
        total >= answered && total <= n as u64,
        "{total} records for {answered} answered requests"
    );
}

#[tokio::test]
async fn sigkill_after_the_fsync_window_loses_no_record() {
    set_provider_env();
    let mock = mock_provider(&[]);
    let config =
        log_config(&mock, "").replace("commit_interval_ms = 200", "commit_interval_ms = 60000");
    let mut gw = gateway(&config);
    let n = 300;
    send_n(&gw, n, "narwhal").await;
    // Longer than the fsync window (50 ms here; the default is 100 ms, at most 200 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.signal_and_wait("KILL");
    let dir = std::mem::replace(&mut gw.dir, tempfile::tempdir().unwrap());
    drop(gw);
    let gw = gateway_in(dir, &log_config(&mock, ""));
    let v = until_total(&gw, "q=narwhal", n as u64).await;
    assert_eq!(v["total"], n as u64);
}

#[tokio::test]
async fn streamed_and_failed_requests_are_logged_too() {
    set_provider_env();
    let mock = mock_provider(&[]);
    let gw = gateway(&log_config(&mock, "[dispatch]\nretries = 0\n"));
    let resp = post(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "claude-test", "stream": true, "messages": [{"role": "user", "content": "otter stream ECHO"}]}),
    )
    .await;
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let text = resp.text().await.unwrap();
    assert!(text.contains("[DONE]"));
    until_total(&gw, "q=otter", 1).await;
    let record: Value = client()
        .get(gw.url(&format!("/admin/logs/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["stream"], true);
    assert!(record["output_text"]
        .as_str()
        .unwrap()
        .contains("otter stream"));
    assert!(record["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert!(record["first_token_ms"].as_f64().is_some());

    client()
        .post(mock.url("/_mock/config"))
        .json(&json!({"error_rate": 1.0, "error_status": 500}))
        .send()
        .await
        .unwrap();
    let resp = post(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "gpt-test", "messages": [{"role": "user", "content": "beaver fails"}]}),
    )
    .await;
    assert_eq!(resp.status(), 502);
    let v = until_total(&gw, "q=beaver&status=502", 1).await;
    assert_eq!(v["hits"][0]["status"], 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_shutdown_is_logged_once_with_what_it_sent() {
    set_provider_env();
    // A slow stream (100 chunks, 300 ms apart) outlives the 300 ms shutdown grace period.
    let mock = mock_provider(&["--stream-chunks", "100", "--chunk-interval-ms", "300"]);
    let config =
        log_config(&mock, "").replace("shutdown_grace_ms = 5000", "shutdown_grace_ms = 300");
    let mut gw = gateway(&config);
    let mut resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-switchyard-feature", "cut-by-shutdown")
        .json(&json!({"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": "narwhal"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let _ = resp.chunk().await.unwrap();
    let status = gw.signal_and_wait("TERM");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    drop(resp);
    let dir = std::mem::replace(&mut gw.dir, tempfile::tempdir().unwrap());
    drop(gw);
    let gw = gateway_in(dir, &log_config(&mock, ""));
    let v = until_total(&gw, "feature=cut-by-shutdown", 1).await;
    assert_eq!(v["total"], 1, "{v}");
    let record: Value = client()
        .get(gw.url(&format!("/admin/logs/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        record["error"].as_str().unwrap_or("").contains("shut down"),
        "{record}"
    );
    assert_eq!(record["client_disconnected"], false);
}

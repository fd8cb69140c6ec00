//! The built-in dashboard: served to anyone while its data needs the admin key, and, in a
//! real headless Chromium driven over the DevTools protocol, logged into against a gateway
//! that served a few hundred mixed requests, with the figures on the page checked against
//! `/admin/stats`, a log search opened and replayed, and screenshots saved under `target/`.
//!
//! Without Chromium the browser test says so and passes, so `cargo test` works on a bare
//! machine; with `CI=true` a missing Chromium is a failure (`.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Chromium to drive: `$CHROME`, else the first of the usual names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Chromium, or `None` after saying the test is skipped (a failure under `CI=true`).
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium not found and CI=true: .ci/run installs it (apt-get install chromium)"
        );
        // Straight to stderr, past the test harness's capture, so the skip is visible.
        let _ = writeln!(
            std::io::stderr(),
            "dashboard browser test skipped: chromium not found (apt-get install chromium)"
        );
    }
    found
}

fn config(mock: &Proc, flaky: &Proc) -> String {
    format!(
        "{}{}{}
[[providers]]
name = \"flaky\"
kind = \"openai-compatible\"
base_url = \"http://{}/v1\"
timeout_ms = 5000

[[models]]
name = \"flaky-test\"
provider = \"flaky\"
upstream = \"gpt-4o\"
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10.0

[dispatch]
retries = 0

[[limits]]
name = \"per-user\"
match = {{ user = \"*\" }}
requests_per_minute = 5000
tokens_per_minute = 400000

[logs]
enabled = true
dir = \"logs\"
fsync_interval_ms = 20
commit_interval_ms = 200
",
        preamble(""),
        users(),
        providers_on(mock),
        flaky.addr
    )
}

#[tokio::test]
async fn the_page_needs_no_key_but_its_data_does() {
    set_provider_env();
    let mock = mock_provider(&[]);
    let flaky = mock_provider(&[]);
    let gw = gateway(&config(&mock, &flaky));
    let page = client().get(gw.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/dashboard/app.js"));
    for asset in [
        "/dashboard/app.js",
        "/dashboard/charts.js",
        "/dashboard/style.css",
    ] {
        let response = client().get(gw.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    let missing = client().get(gw.url("/dashboard/secret.json")).send().await;
    assert_eq!(missing.unwrap().status(), 404);
    let post = client().post(gw.url("/dashboard")).send().await.unwrap();
    assert_eq!(post.status(), 405);

    for data in [
        "/admin/stats",
        "/admin/providers",
        "/admin/logs",
        "/admin/policy",
    ] {
        let anonymous = client().get(gw.url(data)).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{data} without a key");
        let wrong = client()
            .get(gw.url(data))
            .bearer_auth("sk-wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{data} with a wrong key");
    }
    let providers = admin_json(&gw.url("/admin/providers")).await;
    let names: Vec<&str> = providers["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["oai", "ant", "gem", "flaky"]);
    assert_eq!(providers["providers"][3]["breaker"], "closed");
    assert_eq!(providers["providers"][3]["models"], json!(["flaky-test"]));
}

/// One request of the mix: model, dialect, user, feature, stream and a few tell-tale words.
async fn send(gw: &Gateway, i: usize) -> u16 {
    let models = ["gpt-test", "claude-test", "gemini-test", "flaky-test"];
    let model = models[(i * 7 + i / 5) % models.len()];
    let user = ["alice", "bob", "carol"][i % 3];
    let feature = ["chat", "search", "summarize"][(i / 4) % 3];
    let words = if i % 97 == 13 {
        "please tell the walrus about the harbour"
    } else {
        "what changed in the quarterly numbers"
    };
    let content = format!("{words} (question {i})");
    let response = if model == "claude-test" && i % 2 == 0 {
        let body = json!({ "model": model, "max_tokens": 40, "messages": [{ "role": "user", "content": content }] });
        messages_as(&gw.url("/v1/messages"), user, feature, &body).await
    } else {
        let body = json!({ "model": model, "max_tokens": 40, "stream": i % 40 == 7, "messages": [{ "role": "user", "content": content }] });
        chat_as(&gw.url("/v1/chat/completions"), user, feature, &body).await
    };
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    status
}

/// Requests of the mix (before the chaos drill).
const MIX: usize = 300;

/// Send the traffic: a few hundred mixed requests, then a chaos drill on `gem`. With
/// `SWITCHYARD_DASHBOARD_SPREAD_S=N` the mix is spread over N seconds (how the README's
/// screenshot was taken, so that its charts have more than one interval); by default it is
/// sent at once.
async fn traffic(gw: &Gateway) -> u64 {
    let spread = std::env::var("SWITCHYARD_DASHBOARD_SPREAD_S")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let begin = tokio::time::Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..MIX)
        .map(|i| async move {
            // Busier and quieter stretches, so the charts have some shape.
            let x = i as f64 / MIX as f64;
            let at =
                x - 0.8 * (6.0 * std::f64::consts::PI * x).sin() / (6.0 * std::f64::consts::PI);
            tokio::time::sleep_until(begin + spread.mul_f64(at.clamp(0.0, 1.0))).await;
            send(gw, i).await
        })
        .buffer_unordered(12)
        .collect()
        .await;
    let chaos = client()
        .post(gw.url("/admin/chaos"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "provider": "gem", "error_rate": 1.0, "status": 503, "duration_s": 600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(chaos.status(), 200);
    let mut drill = Vec::new();
    for i in 0..8 {
        let body = json!({ "model": "gemini-test", "max_tokens": 40, "messages": [{ "role": "user", "content": format!("drill {i}") }] });
        let response = chat_as(&gw.url("/v1/chat/completions"), "alice", "chat", &body).await;
        drill.push(response.status().as_u16());
    }
    assert!(
        statuses.iter().filter(|s| **s == 200).count() > 200,
        "{statuses:?}"
    );
    assert!(drill.iter().all(|s| *s >= 500), "{drill:?}");
    (statuses.len() + drill.len()) as u64
}

/// Evaluate a JavaScript expression on the page; its JSON value.
async fn js(page: &Page, expression: &str) -> Value {
    page.evaluate(expression)
        .await
        .unwrap_or_else(|err| panic!("evaluate {expression}: {err}"))
        .into_value::<Value>()
        .unwrap_or(Value::Null)
}

/// Wait until an expression is truthy; its value.
async fn until(page: &Page, expression: &str) -> Value {
    let found = eventually(Duration::from_secs(20), || async {
        let value = js(page, expression).await;
        let truthy = !matches!(&value, Value::Null | Value::Bool(false))
            && value != json!("")
            && value != json!(0);
        truthy.then_some(value)
    })
    .await;
    match found {
        Some(value) => value,
        None => {
            let text = js(page, "document.body.innerText").await;
            panic!("the page never satisfied `{expression}`; it shows:\n{text}")
        }
    }
}

async fn type_into(page: &Page, selector: &str, text: &str) {
    page.find_element(selector)
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(text)
        .await
        .unwrap();
}

async fn click(page: &Page, selector: &str) {
    page.find_element(selector)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

fn target_file(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const READ_PAGE: &str = r##"(() => {
  const stat = (id) => document.querySelector(`[data-testid="${id}"]`);
  const summary = stat("summary");
  const bars = (sel) => [...document.querySelectorAll(sel)].map((b) => Number(b.dataset.value));
  return {
    from: Number(summary.dataset.from),
    to: Number(summary.dataset.to),
    requests: Number(stat("stat-requests").dataset.value),
    requests_text: stat("stat-requests").textContent,
    errors: Number(stat("stat-errors").dataset.value),
    cost: Number(stat("stat-cost").dataset.value),
    p50: Number(stat("stat-p50").dataset.value),
    p99: Number(stat("stat-p99").dataset.value),
    tokens: Number(stat("stat-tokens").dataset.value),
    request_bars: bars("#chart-volume rect.bar-requests"),
    error_bars: bars("#chart-volume rect.bar-errors"),
    cost_bars: bars("#chart-cost rect.bar-cost"),
    latency_lines: [...document.querySelectorAll("#chart-latency path.line")].filter((p) => p.getAttribute("d")).length,
    error_rate_lines: [...document.querySelectorAll("#chart-error-rate path.line")].filter((p) => p.getAttribute("d")).length,
    models: [...document.querySelectorAll("#dist-model .dist-row")].map((r) => [r.dataset.name, Number(r.dataset.value)]),
    features: [...document.querySelectorAll("#dist-feature .dist-row")].map((r) => r.dataset.name),
    users: [...document.querySelectorAll("#top-users tbody tr")].map((r) => r.dataset.name),
    providers: [...document.querySelectorAll("#providers tbody tr")].map((r) => [r.dataset.name, r.cells[2].textContent]),
    policy_version: stat("policy-version").textContent,
  };
})()"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_shows_what_the_stats_api_says() {
    let Some(chrome) = chromium_or_skip() else {
        return;
    };
    set_provider_env();
    let started_ms = chrono::Utc::now().timestamp_millis();
    let mock = mock_provider(&["--latency-ms", "4"]);
    let flaky = mock_provider(&["--latency-ms", "25", "--error-rate", "0.15"]);
    let gw = gateway(&config(&mock, &flaky));
    let sent = traffic(&gw).await;

    // Wait until the index holds every request.
    let window = format!(
        "from={}&to={}",
        started_ms - 60_000,
        chrono::Utc::now().timestamp_millis() + 60_000
    );
    let indexed = eventually(Duration::from_secs(30), || async {
        let stats = admin_json(&gw.url(&format!("/admin/stats?{window}&interval=day"))).await;
        (stats["total"]["requests"].as_u64() == Some(sent)).then_some(stats)
    })
    .await;
    assert!(
        indexed.is_some(),
        "the index never held all {sent} requests"
    );

    let profile = tempfile::tempdir().unwrap();
    let browser_config = BrowserConfig::builder()
        .chrome_executable(&chrome)
        .new_headless_mode()
        .no_sandbox()
        .user_data_dir(profile.path())
        .window_size(1280, 800)
        .viewport(Viewport {
            width: 1280,
            height: 800,
            device_scale_factor: Some(1.0),
            ..Viewport::default()
        })
        .args(["--disable-gpu", "--disable-dev-shm-usage"])
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(browser_config)
        .await
        .unwrap_or_else(|err| panic!("launch {}: {err}", chrome.display()));
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page(gw.url("/dashboard")).await.unwrap();

    // A wrong key: the login form stays, with the error, and nothing is kept.
    until(&page, "!document.querySelector('#login').hidden").await;
    type_into(&page, "#admin-key", "sk-wrong-key").await;
    click(&page, "#login-submit").await;
    let error = until(&page, "document.querySelector('#login-error').textContent").await;
    assert!(error.as_str().unwrap().contains("refused"), "{error}");
    assert_eq!(
        js(
            &page,
            "[document.querySelector('#dashboard').hidden, sessionStorage.length]"
        )
        .await,
        json!([true, 0])
    );

    // The right key: the dashboard loads and draws its charts.
    type_into(&page, "#admin-key", ADMIN_KEY).await;
    click(&page, "#login-submit").await;
    until(
        &page,
        "document.querySelectorAll('#chart-volume rect.bar-requests').length",
    )
    .await;
    until(
        &page,
        "document.querySelectorAll('#results tbody tr[data-id]').length",
    )
    .await;
    let shown = js(&page, READ_PAGE).await;

    // The numbers on the page are /admin/stats' for the page's own range.
    let stats = admin_json(&gw.url(&format!(
        "/admin/stats?from={}&to={}&interval=minute",
        shown["from"], shown["to"]
    )))
    .await;
    let total = &stats["total"];
    assert_eq!(shown["requests"].as_u64(), Some(sent), "{shown}");
    assert_eq!(shown["requests"], total["requests"]);
    assert_eq!(shown["requests_text"], json!(sent.to_string()));
    assert_eq!(shown["errors"], total["errors"]);
    assert!(total["errors"].as_u64().unwrap() >= 8, "{total}");
    let cost = total["cost_usd"].as_f64().unwrap();
    assert!(cost > 0.0 && (shown["cost"].as_f64().unwrap() - cost).abs() < 1e-9);
    assert_eq!(shown["p50"], total["latency_ms"]["p50"]);
    assert_eq!(shown["p99"], total["latency_ms"]["p99"]);
    let tokens = total["input_tokens"].as_u64().unwrap() + total["output_tokens"].as_u64().unwrap();
    assert_eq!(shown["tokens"].as_u64(), Some(tokens));

    // The charts: the bars add up to the totals, and the lines are drawn.
    let sum = |key: &str| -> f64 {
        shown[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum()
    };
    assert_eq!(sum("request_bars") as u64, sent, "{shown}");
    assert_eq!(sum("error_bars") as u64, total["errors"].as_u64().unwrap());
    assert!((sum("cost_bars") - cost).abs() < 1e-9);
    assert_eq!(shown["latency_lines"], 3);
    assert_eq!(shown["error_rate_lines"], 1);

    // Distribution, top users, providers and policy.
    let models = shown["models"].as_array().unwrap();
    for model in ["gpt-test", "claude-test", "gemini-test", "flaky-test"] {
        assert!(
            models.iter().any(|m| m[0] == model),
            "{model} missing: {models:?}"
        );
    }
    assert_eq!(
        models.iter().map(|m| m[1].as_u64().unwrap()).sum::<u64>(),
        sent
    );
    for feature in ["chat", "search", "summarize"] {
        assert!(shown["features"]
            .as_array()
            .unwrap()
            .contains(&json!(feature)));
    }
    let users = shown["users"].as_array().unwrap();
    assert_eq!(users.len(), 3, "{users:?}");
    let providers = admin_json(&gw.url("/admin/providers")).await;
    for (row, api) in shown["providers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(providers["providers"].as_array().unwrap())
    {
        assert_eq!((&row[0], &row[1]), (&api["name"], &api["breaker"]));
    }
    assert_eq!(
        providers["providers"][2]["breaker"], "open",
        "the chaos drill opened gem's breaker"
    );
    let policy = admin_json(&gw.url("/admin/policy")).await;
    assert_eq!(
        shown["policy_version"],
        json!(policy["version"].to_string())
    );

    js(&page, "window.scrollTo(0, 0) || true").await;
    let wide = target_file("dashboard-1280.png");
    page.save_screenshot(ScreenshotParams::builder().build(), &wide)
        .await
        .unwrap();

    // The last week: hourly intervals, the same totals; then back to the last hour.
    click(&page, "[data-range='week']").await;
    let week = until(
        &page,
        "(() => { const s = document.querySelector('#summary').dataset; return s.to - s.from > 6 * 86400000 && document.querySelectorAll('#chart-volume rect.hover').length; })()",
    )
    .await;
    assert!(
        (168..=169).contains(&week.as_u64().unwrap()),
        "{week} hourly intervals"
    );
    let shown_week = js(&page, READ_PAGE).await;
    assert_eq!(shown_week["requests"].as_u64(), Some(sent));
    assert_eq!(shown_week["errors"], shown["errors"]);
    click(&page, "[data-range='hour']").await;
    until(
        &page,
        "(() => { const s = document.querySelector('#summary').dataset; return s.to - s.from <= 3600000; })()",
    )
    .await;

    // Search from the box, open a hit: its id and its full record.
    type_into(&page, "#search-q", "walrus").await;
    click(&page, "#search-submit").await;
    until(
        &page,
        "document.querySelector('#results').dataset.query === 'walrus'",
    )
    .await;
    let hits = js(
        &page,
        "[...document.querySelectorAll('#results tbody tr[data-id]')].map((r) => r.dataset.id)",
    )
    .await;
    let found = admin_json(&gw.url("/admin/logs?q=walrus&limit=50")).await;
    assert_eq!(
        hits.as_array().unwrap().len() as u64,
        found["total"].as_u64().unwrap()
    );
    assert!(!hits.as_array().unwrap().is_empty());
    // One that a healthy provider answered (the chaos drill still fails `gem`).
    let first = js(
        &page,
        "[...document.querySelectorAll('#results tbody tr[data-id]')].find((r) => ['gpt-test', 'claude-test'].includes(r.cells[1].textContent)).dataset.id",
    )
    .await;
    let first = first.as_str().unwrap().to_string();
    click(&page, &format!("#results tbody tr[data-id='{first}']")).await;
    let opened = until(&page, "document.querySelector('#record-id').textContent").await;
    assert_eq!(opened, json!(first));
    let record_text = js(&page, "document.querySelector('#record-json').textContent").await;
    let record: Value = serde_json::from_str(record_text.as_str().unwrap()).unwrap();
    assert_eq!(record["id"], json!(first));
    assert!(record_text.as_str().unwrap().contains("walrus"));

    // Replay it: the page names the new record, which links back.
    click(&page, "#replay").await;
    let replayed = until(&page, "document.querySelector('#replay-result').dataset.id").await;
    let replayed = replayed.as_str().unwrap().to_string();
    assert_ne!(replayed, first);
    let text = js(
        &page,
        "document.querySelector('#replay-result').textContent",
    )
    .await;
    assert!(text.as_str().unwrap().contains(&replayed), "{text}");
    let linked = eventually(Duration::from_secs(15), || async {
        let record = client()
            .get(gw.url(&format!("/admin/logs/{replayed}")))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        if record.status() != 200 {
            return None;
        }
        record.json::<Value>().await.ok()
    })
    .await
    .expect("the replay was logged");
    assert_eq!(linked["replay_of"], json!(first));

    // A phone's width: one column, nothing wider than the screen, charts redrawn to fit.
    page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 2.0, true))
        .await
        .unwrap();
    until(
        &page,
        "document.querySelector('#chart-volume svg').viewBox.baseVal.width < 400",
    )
    .await;
    let overflow = js(&page, "document.documentElement.scrollWidth").await;
    let too_wide = js(
        &page,
        "[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > 391).map((e) => `${e.tagName}#${e.id}`).slice(0, 12)",
    )
    .await;
    js(&page, "window.scrollTo(0, 0) || true").await;
    let phone = target_file("dashboard-phone.png");
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &phone)
        .await
        .unwrap();
    assert!(
        overflow.as_u64().unwrap() <= 390,
        "the page is {overflow} px wide: {too_wide}"
    );

    // Log out: the key is gone and the form is back.
    click(&page, "#logout").await;
    until(
        &page,
        "!document.querySelector('#login').hidden && sessionStorage.length === 0",
    )
    .await;

    browser.close().await.unwrap();
    let _ = browser.wait().await;
    events.abort();
    for shot in [&wide, &phone] {
        let bytes = std::fs::read(shot).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{}", shot.display());
    }
}

//! `GET /metrics` end to end: a known mix of traffic (a cache hit, a fallback, a 429, a budget
//! downgrade) through the in-process gateway on a real socket, the exposition parsed with a
//! Prometheus text parser, and label cardinality bounded under many users and unknown models.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::inproc::{config, start, swap, Script, Scripted};
use common::{chat_as, client, sha256_hex, users};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

const POLICY: &str = r#"
fn route(req) {
    if req.feature == "fb" { return ["m2", "m1"]; }
    ()
}

fn budget(req, spend) {
    if req.feature == "bd" && spend.budgets.len() > 0 {
        return #{ action: "downgrade", model: "m1" };
    }
    #{ action: "allow" }
}
"#;

async fn scrape(url: &str) -> Scrape {
    let response = client()
        .get(url)
        .bearer_auth(common::ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        _ => 0.0,
    }
}

/// The sum of `metric` over the samples whose labels include every `(name, value)` of `with`.
fn sum(scrape: &Scrape, metric: &str, with: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| with.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(value)
        .sum()
}

fn ask(prompt: &str, model: &str) -> serde_json::Value {
    json!({ "model": model, "max_tokens": 10, "messages": [{ "role": "user", "content": prompt }] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_mix_of_traffic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.rhai"), POLICY).unwrap();
    let extra = format!(
        "{}\n[cache]\nenabled = true\n\
         \n[[limits]]\nname = \"rl\"\nmatch = {{ feature = \"rl\" }}\nrequests_per_minute = 1\n\
         \n[[budgets]]\nname = \"bd\"\nmatch = {{ feature = \"bd\" }}\nlimit_usd = 1.0\n\
         \n[metrics]\nfeatures = [\"chat\", \"fb\"]\n",
        users()
    );
    let p1 = Scripted::new("p1", vec![Script::Answer("ok")]);
    let p2 = Scripted::new("p2", vec![Script::Fail(500)]);
    let gw = start(&config(Some(dir.path()), &extra), |s| {
        swap(s, "p1", p1.clone());
        swap(s, "p2", p2.clone());
    })
    .await;
    let url = gw.url("/v1/chat/completions");
    let unauthenticated = client().get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);

    // Three identical requests: a miss, then two cache hits.
    for _ in 0..3 {
        assert_eq!(
            chat_as(&url, "alice", "chat", &ask("same", "m1"))
                .await
                .status(),
            200
        );
    }
    // A fallback: m2's provider fails, m1 answers.
    let fallback = chat_as(&url, "alice", "fb", &ask("fall back", "m1")).await;
    assert_eq!(fallback.status(), 200);
    assert_eq!(fallback.headers()["x-switchyard-model"], "m1");
    // A limit of one request a minute: the second is refused.
    assert_eq!(
        chat_as(&url, "alice", "rl", &ask("limit 1", "m1"))
            .await
            .status(),
        200
    );
    assert_eq!(
        chat_as(&url, "alice", "rl", &ask("limit 2", "m1"))
            .await
            .status(),
        429
    );
    // The budget hook downgrades m2 to m1.
    let downgraded = chat_as(&url, "alice", "bd", &ask("downgrade", "m2")).await;
    assert_eq!(downgraded.status(), 200);
    assert_eq!(downgraded.headers()["x-switchyard-model"], "m1");
    gw.settle_log().await;

    let m = scrape(&gw.url("/metrics")).await;
    assert_eq!(sum(&m, "switchyard_requests_total", &[]), 7.0);
    assert_eq!(
        sum(&m, "switchyard_requests_total", &[("cache", "hit")]),
        2.0
    );
    assert_eq!(
        sum(&m, "switchyard_requests_total", &[("status_class", "4xx")]),
        1.0
    );
    assert_eq!(
        sum(
            &m,
            "switchyard_requests_total",
            &[("feature", "chat"), ("model", "m1")]
        ),
        3.0
    );
    // A feature the config does not name is `other`, never its own series.
    assert_eq!(
        sum(&m, "switchyard_requests_total", &[("feature", "other")]),
        0.0
    );
    assert_eq!(
        sum(&m, "switchyard_requests_total", &[("feature", "rl")]),
        2.0
    );
    assert_eq!(
        sum(
            &m,
            "switchyard_ratelimit_rejections_total",
            &[("kind", "requests_per_minute")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &m,
            "switchyard_budget_actions_total",
            &[("kind", "downgrade")]
        ),
        1.0
    );
    assert_eq!(sum(&m, "switchyard_fallbacks_total", &[]), 1.0);
    assert_eq!(
        sum(
            &m,
            "switchyard_upstream_attempts_total",
            &[("provider", "p2"), ("result", "error")]
        ),
        1.0
    );
    // Served upstream: the miss, the fallback, the first limited request, the downgrade.
    assert_eq!(
        sum(
            &m,
            "switchyard_upstream_attempts_total",
            &[("provider", "p1"), ("result", "ok")]
        ),
        4.0
    );
    assert_eq!(
        sum(&m, "switchyard_request_duration_seconds_count", &[]),
        7.0
    );
    // 4 answers of 10 input + 5 output tokens each at $1 / $2 per million.
    assert_eq!(
        sum(&m, "switchyard_tokens_total", &[("kind", "input")]),
        40.0
    );
    let cost = sum(&m, "switchyard_cost_usd_total", &[]);
    assert!((cost - 0.00008).abs() < 1e-12, "{cost}");
    assert_eq!(sum(&m, "switchyard_log_dropped_records_total", &[]), 0.0);
    assert_eq!(
        sum(&m, "switchyard_breaker_open", &[("provider", "p1")]),
        0.0
    );
    assert_eq!(sum(&m, "switchyard_ratelimit_queue_depth", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_cardinality_stays_bounded_under_many_users_and_unknown_models() {
    let mut extra = String::new();
    for i in 0..1000 {
        extra.push_str(&format!(
            "\n[[keys]]\nid = \"k{i}\"\nkey_sha256 = \"{}\"\nuser = \"user-{i}\"\n",
            sha256_hex(&format!("sk-user-{i}"))
        ));
    }
    let p1 = Scripted::new("p1", vec![Script::Answer("ok")]);
    let gw = start(&config(None, &extra), |s| swap(s, "p1", p1.clone())).await;
    let url = gw.url("/v1/chat/completions");
    let http = client();
    for i in 0..1000 {
        let body = ask("hello", if i % 2 == 0 { "m1" } else { "nope" });
        let body = {
            let mut body = body;
            if i % 2 == 1 {
                body["model"] = json!(format!("unknown-model-{i}"));
            }
            body
        };
        let response = http
            .post(&url)
            .bearer_auth(format!("sk-user-{i}"))
            .header("x-switchyard-feature", format!("feature-{i}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status() == 200 || response.status() == 404);
    }
    gw.settle_log().await;
    let m = scrape(&gw.url("/metrics")).await;
    let series = m
        .samples
        .iter()
        .filter(|s| s.metric == "switchyard_requests_total")
        .count();
    assert!(
        series <= 4,
        "{series} request series for 1000 users, models and features"
    );
    assert_eq!(sum(&m, "switchyard_requests_total", &[]), 1000.0);
    assert_eq!(
        sum(&m, "switchyard_requests_total", &[("model", "other")]),
        500.0
    );
    assert!(m.samples.iter().all(|s| !s
        .labels
        .values()
        .any(|v| v.starts_with("user-") || v.starts_with("unknown-model"))));
    let total_series = m.samples.len();
    assert!(total_series < 400, "{total_series} series in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_disabled_records_nothing_and_the_endpoint_is_gone() {
    let p1 = Scripted::new("p1", vec![Script::Answer("ok")]);
    let gw = start(&config(None, "\n[metrics]\nenabled = false\n"), |s| {
        swap(s, "p1", p1.clone())
    })
    .await;
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(common::KEY)
        .json(&ask("hello", "m1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    gw.settle_log().await;
    let response = client()
        .get(gw.url("/metrics"))
        .bearer_auth(common::ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // The registry itself saw no request.
    let text = gw.state.metrics.render(&Default::default());
    assert!(
        !text.contains("switchyard_requests_total{"),
        "a disabled gateway recorded a request:\n{text}"
    );
}

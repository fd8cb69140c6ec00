//! Bounded load tests (127.0.0.1 only, fixed duration and request count, stop by themselves):
//! hot reload under load and a chaos drill under load, both with zero failed requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODELS: usize = 21;

/// The load tests run one at a time: two of them at once would overload 2 cores and each
/// would measure the other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(mock: &Proc, extra: &str) -> String {
    let mut models = String::new();
    for i in 0..MODELS {
        models.push_str(&format!(
            "[[models]]\nname = \"m{i}\"\nprovider = \"mock\"\n\n"
        ));
    }
    format!(
        "{}[[providers]]\nname = \"mock\"\nkind = \"openai-compatible\"\nbase_url = \"http://{}/v1\"\n\n{models}[policy]\ndir = \"policy\"\ndebounce_ms = 50\n\n[logs]\nenabled = false\n{extra}",
        preamble(""),
        mock.addr
    )
}

fn policy_generation(k: usize) -> String {
    format!(
        "// generation {k}\nfn route(req) {{\n    if req.feature == \"never\" {{ return \"m0\"; }}\n    #{{ chain: [\"m{k}\"], timeout_ms: 10000 }}\n}}\n"
    )
}

struct Outcome {
    status: u16,
    version: u64,
    model: String,
}

/// Open-loop load at `rate` req/s for `duration`; each response's status, policy version
/// and served model are collected. Bounded: at most rate × duration requests.
async fn run_load(url: String, rate: u64, duration: Duration, outcomes: Arc<Mutex<Vec<Outcome>>>) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let total = rate * duration.as_secs();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let body =
        json!({"model": "m0", "messages": [{"role": "user", "content": "hello under load"}]});
    let mut tasks = Vec::with_capacity(total as usize);
    for _ in 0..total {
        ticker.tick().await;
        let (http, url, body, outcomes) =
            (http.clone(), url.clone(), body.clone(), outcomes.clone());
        tasks.push(tokio::spawn(async move {
            let outcome = match http.post(&url).bearer_auth(KEY).json(&body).send().await {
                Ok(resp) => {
                    let header = |name: &str| {
                        resp.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let version = header("x-switchyard-policy-version").parse().unwrap_or(0);
                    let model = header("x-switchyard-model");
                    let status = resp.status().as_u16();
                    let _ = resp.bytes().await;
                    Outcome {
                        status,
                        version,
                        model,
                    }
                }
                Err(_) => Outcome {
                    status: 0,
                    version: 0,
                    model: String::new(),
                },
            };
            outcomes.lock().unwrap().push(outcome);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_rewritten_20_times_under_load_fails_no_request_and_routes_by_the_version_in_force()
{
    let _serial = SERIAL.lock().await;
    let mock = mock_provider(&[]);
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policy");
    std::fs::create_dir(&policy_dir).unwrap();
    std::fs::write(policy_dir.join("routing.rhai"), policy_generation(0)).unwrap();
    let gw = gateway_in(dir, &config(&mock, ""));

    let rate = 600;
    let duration = Duration::from_secs(21);
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let load = tokio::spawn(run_load(
        gw.url("/v1/chat/completions"),
        rate,
        duration,
        outcomes.clone(),
    ));
    for k in 1..=20 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let tmp = policy_dir.join(".routing.rhai.tmp");
        std::fs::write(&tmp, policy_generation(k)).unwrap();
        std::fs::rename(&tmp, policy_dir.join("routing.rhai")).unwrap();
    }
    load.await.unwrap();
    let elapsed = started.elapsed();

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let total = outcomes.len() as u64;
    assert_eq!(total, rate * duration.as_secs());
    let failed = outcomes.iter().filter(|o| o.status != 200).count();
    let mut statuses: Vec<u16> = outcomes
        .iter()
        .filter(|o| o.status != 200)
        .map(|o| o.status)
        .collect();
    statuses.dedup();
    assert_eq!(
        failed, 0,
        "{failed} of {total} requests failed: {statuses:?}"
    );
    let achieved = total as f64 / elapsed.as_secs_f64();
    assert!(
        achieved >= 500.0,
        "offered load fell to {achieved:.0} req/s"
    );

    // Each policy version routes one way only: every response carrying version v was served
    // by the model of the script that was version v.
    let mut model_of_version: HashMap<u64, &str> = HashMap::new();
    for o in outcomes.iter() {
        let seen = model_of_version.entry(o.version).or_insert(&o.model);
        assert_eq!(
            *seen, o.model,
            "version {} served by two generations",
            o.version
        );
    }
    // And versions go forward with generations.
    let mut versions: Vec<(u64, usize)> = model_of_version
        .iter()
        .map(|(v, m)| (*v, m.trim_start_matches('m').parse::<usize>().unwrap()))
        .collect();
    versions.sort();
    assert!(
        versions.windows(2).all(|w| w[0].1 <= w[1].1),
        "{versions:?}"
    );
    let generations: std::collections::HashSet<usize> = versions.iter().map(|(_, g)| *g).collect();
    assert!(
        generations.len() >= 18,
        "most of the 21 generations served traffic: {generations:?}"
    );
    let status: Value = client()
        .get(gw.url("/admin/policy"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(status["last_error"].is_null(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_outage_moves_traffic_to_the_fallback_with_no_failed_request_and_it_returns_after()
{
    let _serial = SERIAL.lock().await;
    let primary = mock_provider(&[]);
    let fallback = mock_provider(&[]);
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policy");
    std::fs::create_dir(&policy_dir).unwrap();
    std::fs::write(
        policy_dir.join("routing.rhai"),
        "fn route(req) { #{ chain: [\"primary\", \"fallback\"], timeout_ms: 5000 } }\n",
    )
    .unwrap();
    let config = format!(
        "{}[[providers]]\nname = \"p1\"\nkind = \"openai-compatible\"\nbase_url = \"http://{}/v1\"\n\n[[providers]]\nname = \"p2\"\nkind = \"openai-compatible\"\nbase_url = \"http://{}/v1\"\n\n[[models]]\nname = \"primary\"\nprovider = \"p1\"\n\n[[models]]\nname = \"fallback\"\nprovider = \"p2\"\n\n[policy]\ndir = \"policy\"\n\n[logs]\nenabled = false\n\n[dispatch]\nbreaker_open_ms = 500\n",
        preamble(""),
        primary.addr,
        fallback.addr
    );
    let gw = gateway_in(dir, &config);

    let rate = 300;
    let duration = Duration::from_secs(10);
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let load = tokio::spawn(run_load(
        gw.url("/v1/chat/completions"),
        rate,
        duration,
        outcomes.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resp = client()
        .post(gw.url("/admin/chaos"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"provider": "p1", "error_rate": 1.0, "status": 0, "latency_ms": 0, "duration_s": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Requests already past the chaos check when it was injected finish first.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = mock_stats(&primary).await["requests"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let still = mock_stats(&primary).await["requests"].as_u64().unwrap();
    assert_eq!(
        during, still,
        "no traffic reached the primary during the outage"
    );
    load.await.unwrap();

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let failed = outcomes.iter().filter(|o| o.status != 200).count();
    assert_eq!(failed, 0, "{failed} requests failed during the drill");
    let n = outcomes.len();
    let last_second = &outcomes[n - rate as usize..];
    let back = last_second.iter().filter(|o| o.model == "primary").count();
    assert!(
        back > last_second.len() * 9 / 10,
        "traffic returned to the primary after the fault expired ({back}/{})",
        last_second.len()
    );
    let on_fallback = outcomes.iter().filter(|o| o.model == "fallback").count();
    assert!(
        on_fallback > rate as usize * 2,
        "the outage moved traffic to the fallback ({on_fallback})"
    );
}

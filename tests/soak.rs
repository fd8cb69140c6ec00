//! Soak: 60 s of mixed traffic (chat JSON and streams in both dialects, embeddings, clients
//! that leave mid-stream) against a real gateway process, with 1,000 idle connections held
//! open and a slow `redact` hook backing up the log. Throughout, `/healthz` answers within
//! 100 ms and RSS stays under a bound; at the end, every request has its record.
//! Bounded in time and requests; targets 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(60);
const RATE_PER_S: u64 = 30;
const IDLE_CONNECTIONS: usize = 1_000;
const HEALTH_BOUND: Duration = Duration::from_millis(100);
const RSS_BOUND_MIB: u64 = 400;

/// A `redact` hook that burns a few thousand Rhai operations per string.
const SLOW_REDACT: &str = r#"
fn redact(text) {
    let n = 0;
    for i in 0..1000 { n += i; }
    text
}
"#;

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

async fn one_request(http: &reqwest::Client, base: &str, n: u64) -> Result<(), String> {
    let feature = "soak";
    let (path, body, leave_early) = match n % 6 {
        0 => (
            "/v1/chat/completions",
            json!({"model": "gpt-test", "messages": [{"role": "user", "content": format!("soak json {n} call 415 555 2671")}]}),
            false,
        ),
        1 => (
            "/v1/chat/completions",
            json!({"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": format!("soak stream {n}")}]}),
            false,
        ),
        2 => (
            "/v1/messages",
            json!({"model": "claude-test", "max_tokens": 64, "messages": [{"role": "user", "content": format!("soak anthropic {n}")}]}),
            false,
        ),
        3 => (
            "/v1/messages",
            json!({"model": "claude-test", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": format!("soak anthropic stream {n}")}]}),
            false,
        ),
        4 => (
            "/v1/embeddings",
            json!({"model": "embed-test", "input": [format!("soak embed {n}")]}),
            false,
        ),
        _ => (
            "/v1/chat/completions",
            json!({"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": format!("soak leaves {n}")}]}),
            true,
        ),
    };
    let sent = http
        .post(format!("{base}{path}"))
        .bearer_auth(KEY)
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("x-switchyard-feature", feature)
        .json(&body)
        .send()
        .await;
    let mut resp = sent.map_err(|e| format!("{path} #{n}: {e}"))?;
    if resp.status() != 200 {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("{path} #{n}: {status} {text}"));
    }
    if leave_early {
        let _ = resp.chunk().await;
        return Ok(());
    }
    resp.bytes()
        .await
        .map(|_| ())
        .map_err(|e| format!("{path} #{n}: body {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_seconds_of_mixed_traffic_with_idle_connections_and_a_slow_redact_hook() {
    set_provider_env();
    let mock = mock_provider(&["--stream-chunks", "8", "--chunk-interval-ms", "20"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policy")).unwrap();
    std::fs::write(dir.path().join("policy/redact.rhai"), SLOW_REDACT).unwrap();
    let config = format!(
        "{}{}\n[policy]\ndir = \"policy\"\n\n[logs]\ndir = \"logs\"\nchannel_capacity = 256\nmax_pending_hand_offs = 64\n",
        preamble(""),
        providers_on(&mock)
    );
    let gw = gateway_in(dir, &config);
    let pid = gw.child.id();
    let base = format!("http://{}", gw.addr);

    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(tokio::net::TcpStream::connect(&gw.addr).await.unwrap());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let worst_health = Arc::new(AtomicU64::new(0));
    let health_checks = Arc::new(AtomicU64::new(0));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, worst, checks, peak, base) = (
            stop.clone(),
            worst_health.clone(),
            health_checks.clone(),
            peak_rss.clone(),
            base.clone(),
        );
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answered = tokio::time::timeout(
                    Duration::from_secs(5),
                    http.get(format!("{base}/healthz")).send(),
                )
                .await;
                let took = started.elapsed().as_micros() as u64;
                assert!(
                    matches!(answered, Ok(Ok(ref r)) if r.status() == 200),
                    "healthz failed: {answered:?}"
                );
                worst.fetch_max(took, Ordering::Relaxed);
                checks.fetch_add(1, Ordering::Relaxed);
                peak.fetch_max(rss_mib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Under backpressure a request waits for the log: give clients time rather than failing.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_S));
    let mut tasks = Vec::new();
    let mut sent = 0u64;
    while started.elapsed() < RUN {
        ticker.tick().await;
        let (http, base) = (http.clone(), base.clone());
        let n = sent;
        tasks.push(tokio::spawn(
            async move { one_request(&http, &base, n).await },
        ));
        sent += 1;
    }
    let mut ok = 0u64;
    let mut failures = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(failure) => failures.push(failure),
        }
    }
    stop.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    drop(idle);

    // Nothing lost: every request sent has its record, once the log catches up.
    let records = eventually(Duration::from_secs(180), || async {
        let v: Value = client()
            .get(format!("{base}/admin/logs?feature=soak&limit=1"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let total = v["total"].as_u64()?;
        (total >= sent).then_some(v)
    })
    .await;
    let status: Value = client()
        .get(format!("{base}/admin/logs?limit=1"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let worst_ms = worst_health.load(Ordering::Relaxed) as f64 / 1000.0;
    let peak = peak_rss.load(Ordering::Relaxed);
    eprintln!(
        "soak: {sent} requests ({ok} answered 200), {} health checks, worst /healthz {worst_ms:.1} ms, peak RSS {peak} MiB, log {}",
        health_checks.load(Ordering::Relaxed),
        status["index"]
    );
    assert_eq!(
        ok,
        sent,
        "every request answered; first failures: {:?}",
        &failures[..failures.len().min(5)]
    );
    let records = records.unwrap_or_else(|| panic!("records never reached {sent}: {status}"));
    assert_eq!(
        records["total"].as_u64().unwrap(),
        sent,
        "exactly one record each"
    );
    assert_eq!(status["index"]["dropped_records"], 0);
    assert!(
        worst_ms <= HEALTH_BOUND.as_secs_f64() * 1000.0,
        "worst /healthz {worst_ms} ms"
    );
    assert!(peak > 0 && peak <= RSS_BOUND_MIB, "peak RSS {peak} MiB");
}

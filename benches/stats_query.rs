//! Speed of `/admin/stats` (Tantivy aggregations over the log index's fast fields) on an
//! index of N records (default 1,000,000) spread over 7 days: the documents are written
//! straight into the index with the log's own schema (the journal and redaction are not what
//! this measures), then `LogStore::stats` runs the dashboard's queries repeatedly and the
//! median and p99 of each are printed.
//!
//! `cargo bench --bench stats_query` (`STATS_RECORDS=200000` for a shorter run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use switchyard::canonical::{ChatRequest, Message, Role, Usage};
use switchyard::config::LogsConfig;
use switchyard::logstore::{LogRecord, LogStore, StatsInterval, StatsQuery};

const DAY_MS: i64 = 86_400_000;
const MODELS: [&str; 8] = [
    "gpt-4o-mini",
    "gpt-4o",
    "claude-haiku",
    "claude-sonnet",
    "gemini-flash",
    "gemini-pro",
    "o4-mini",
    "embedding",
];

fn record(i: usize, start_ms: i64, span_ms: i64, n: usize) -> LogRecord {
    let model = MODELS[i % MODELS.len()];
    LogRecord {
        id: format!("req-{i:08}"),
        started_at: String::new(),
        started_ms: start_ms + (i as i64 * span_ms) / n as i64,
        finished_at: String::new(),
        dialect: "openai".into(),
        endpoint: "chat".into(),
        user: format!("user{}", i % 5000),
        team: Some(format!("team{}", i % 40)),
        tier: Some("pro".into()),
        key_id: "key-1".into(),
        feature: Some(["chat", "search", "summarise", "batch"][i % 4].into()),
        requested_model: model.into(),
        served_model: Some(model.into()),
        provider: Some("mock".into()),
        attempts: Vec::new(),
        status: if i % 37 == 0 { 502 } else { 200 },
        error: None,
        request: ChatRequest {
            model: model.into(),
            messages: vec![Message::text(Role::User, "hi")],
            ..ChatRequest::default()
        },
        output_text: String::new(),
        output_tool_calls: Vec::new(),
        finish_reason: Some("stop".into()),
        usage: Usage {
            input_tokens: 300 + (i % 700) as u64,
            output_tokens: 50 + (i % 300) as u64,
            ..Usage::default()
        },
        cost_usd: 0.0001 * (1 + i % 7) as f64,
        cost_unknown: false,
        latency_ms: 80.0 + (i % 1900) as f64,
        first_token_ms: Some(20.0 + (i % 400) as f64),
        stream: i % 2 == 0,
        client_disconnected: false,
        policy_version: Some(1),
        replay_of: None,
        correlation_id: None,
        embedding_dimensions: None,
        limits: None,
        budget: None,
        cache: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let n: usize = std::env::var("STATS_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let end_ms = chrono::Utc::now().timestamp_millis();
    let start_ms = end_ms - 7 * DAY_MS;
    let built = Instant::now();
    {
        let (index, schema) =
            switchyard::logstore::indexer::open_index(&dir.path().join("index")).unwrap();
        let mut writer: tantivy::IndexWriter = index.writer(512 * 1024 * 1024).unwrap();
        for i in 0..n {
            let record = record(i, start_ms, 7 * DAY_MS, n);
            writer
                .add_document(schema.document(&record, "{}", i as u64 + 1))
                .unwrap();
        }
        writer.commit().unwrap();
        writer.wait_merging_threads().unwrap();
    }
    println!(
        "indexed {n} records in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let config = LogsConfig {
        dir: dir.path().to_path_buf(),
        search_timeout_ms: 60_000,
        ..LogsConfig::default()
    };
    let store = LogStore::open(&config, None).unwrap();
    let queries = [
        (
            "7 days, hourly, by model",
            StatsInterval::Hour,
            Some("model"),
            7,
        ),
        ("7 days, hourly, total", StatsInterval::Hour, None, 7),
        ("1 day, by minute, total", StatsInterval::Minute, None, 1),
        (
            "7 days, daily, by team",
            StatsInterval::Day,
            Some("team"),
            7,
        ),
    ];
    println!("| query | runs | median ms | p99 ms |");
    println!("|---|---|---|---|");
    for (name, interval, group, days) in queries {
        let query = StatsQuery {
            from_ms: end_ms - days * DAY_MS,
            to_ms: end_ms + 1,
            interval,
            group_by: group.map(str::to_string),
        };
        let check = store.stats(&query).unwrap();
        let total: u64 = check["intervals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["requests"].as_u64().unwrap())
            .sum();
        assert!(
            total as usize >= n * days as usize / 7 - n / 100,
            "{name}: {total}"
        );
        let runs = 30;
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                let _ = std::hint::black_box(store.stats(&query).unwrap());
                started.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "| {name} | {runs} | {:.1} | {:.1} |",
            percentile(&times, 50.0).as_secs_f64() * 1000.0,
            percentile(&times, 99.0).as_secs_f64() * 1000.0
        );
    }
}

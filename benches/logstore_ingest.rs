//! The log path's costs: journal append, Tantivy indexing of ~3 KB records, and search
//! latency over a large index.
//!
//! `SEARCH_RECORDS` sets the size of the searched index; the default keeps
//! `cargo bench --bench logstore_ingest` quick. Raise it to 100_000 for the large-index
//! figure (building that index takes a few minutes on 2 cores).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::sync::Arc;
use switchyard::canonical::{ChatRequest, Message, Role, Usage};
use switchyard::config::LogsConfig;
use switchyard::logstore::indexer::{build_schema, LogSchema};
use switchyard::logstore::journal::JournalWriter;
use switchyard::logstore::{LogRecord, LogStore, SearchParams};
use tantivy::Index;

/// Records in the index the search benchmarks query.
const SEARCH_RECORDS: usize = 5_000;
/// Records per indexing iteration (one commit each).
const INDEX_BATCH: usize = 1_000;

const TOPICS: &[&str] = &[
    "invoice",
    "refund",
    "shipping",
    "password",
    "export",
    "latency",
    "billing",
    "upgrade",
    "timeout",
    "migration",
    "webhook",
    "dashboard",
    "quota",
    "contract",
    "onboarding",
];
const MODELS: &[&str] = &["gpt-4o-mini", "claude-haiku", "gpt-4o", "claude-sonnet"];

/// A record of about 3 KB of JSON.
fn record(i: usize) -> LogRecord {
    let topic = TOPICS[i % TOPICS.len()];
    let model = MODELS[i % MODELS.len()];
    let prompt = format!(
        "Customer {i} asks about their {topic}. {}",
        "The export job fails after the upgrade when the report has more than two hundred rows, \
         and the support agent wants a short, friendly answer with next steps. "
            .repeat(12)
    );
    let request = ChatRequest {
        model: model.into(),
        messages: vec![
            Message::text(Role::System, "You are a helpful support assistant."),
            Message::text(Role::User, prompt),
        ],
        ..ChatRequest::default()
    };
    LogRecord {
        id: format!("req-{i:08}"),
        started_at: "2024-05-01T00:00:00Z".into(),
        started_ms: 1_714_521_600_000 + i as i64 * 1_000,
        finished_at: "2024-05-01T00:00:01Z".into(),
        dialect: "openai".into(),
        endpoint: "chat".into(),
        user: format!("user{}", i % 50),
        team: Some("support".into()),
        tier: Some("pro".into()),
        key_id: "key-1".into(),
        feature: Some(["chat", "search", "summarise"][i % 3].into()),
        requested_model: model.into(),
        served_model: Some(model.into()),
        provider: Some("mock".into()),
        attempts: Vec::new(),
        status: if i % 50 == 0 { 502 } else { 200 },
        error: None,
        request,
        output_text: format!(
            "Thanks for asking about the {topic}. {}",
            "Here is what to do next. ".repeat(16)
        ),
        output_tool_calls: Vec::new(),
        finish_reason: Some("stop".into()),
        usage: Usage {
            input_tokens: 700,
            output_tokens: 120,
            ..Usage::default()
        },
        cost_usd: 0.0002,
        cost_unknown: false,
        latency_ms: 100.0 + (i % 900) as f64,
        first_token_ms: None,
        stream: false,
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

fn bench_journal(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut journal = JournalWriter::open(&tmp.path().join("journal"), 64 * 1024 * 1024).unwrap();
    let payload = serde_json::to_vec(&record(1)).unwrap();
    let mut group = c.benchmark_group("journal");
    group.throughput(Throughput::Elements(1));
    group.bench_function("append_3kb", |b| {
        let mut appended = 0u64;
        b.iter(|| {
            journal.append(black_box(&payload)).unwrap();
            appended += 1;
            if appended % 1_000 == 0 {
                journal.sync().unwrap();
            }
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("append_100_then_fsync", |b| {
        b.iter(|| {
            for _ in 0..100 {
                journal.append(&payload).unwrap();
            }
            journal.sync().unwrap();
        })
    });
    group.finish();
}

fn bench_indexing(c: &mut Criterion) {
    let schema = LogSchema::from_schema(&build_schema()).unwrap();
    let records: Vec<(LogRecord, String)> = (0..INDEX_BATCH)
        .map(|i| {
            let record = record(i);
            let json = serde_json::to_string(&record).unwrap();
            (record, json)
        })
        .collect();
    let mut group = c.benchmark_group("indexing");
    group.sample_size(10);
    group.throughput(Throughput::Elements(INDEX_BATCH as u64));
    group.bench_function("add_and_commit_1000_3kb_records", |b| {
        b.iter_batched(
            || {
                let index = Index::create_in_ram(build_schema());
                let writer = index.writer_with_num_threads(1, 64 * 1024 * 1024).unwrap();
                (index, writer)
            },
            |(_index, mut writer)| {
                for (seq, (record, json)) in records.iter().enumerate() {
                    writer
                        .add_document(schema.document(record, json, seq as u64))
                        .unwrap();
                }
                writer.commit().unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn bench_search(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = LogsConfig {
        dir: tmp.path().to_path_buf(),
        retention_days: 100 * 365,
        commit_every_records: 20_000,
        ..LogsConfig::default()
    };
    let store: Arc<LogStore> = runtime.block_on(async {
        let store = LogStore::open(&config, None).unwrap();
        let sender = store.sender();
        for i in 0..SEARCH_RECORDS {
            sender.submit(record(i)).await;
        }
        store.sync().await.unwrap();
        store
    });
    let mut group = c.benchmark_group(format!("search_{SEARCH_RECORDS}"));
    for (name, query) in [
        ("newest_all", "limit=20"),
        ("newest_text", "q=invoice&limit=20"),
        ("score_text", "q=invoice&sort=score&limit=20"),
        ("score_or", "q=invoice OR refund&sort=score&limit=20"),
        (
            "fields",
            "q=model:gpt-4o latency_ms:>500&status=200&limit=20",
        ),
        ("phrase", "q=%22short friendly answer%22&limit=20"),
    ] {
        let params = SearchParams::from_query(query).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| black_box(store.search(&params).unwrap()))
        });
    }
    let first = store
        .search(&SearchParams::from_query("q=invoice&limit=20").unwrap())
        .unwrap();
    let mut page_two = SearchParams::from_query("q=invoice&limit=20").unwrap();
    page_two.cursor = first.next_cursor;
    group.bench_function("newest_text_page_2", |b| {
        b.iter(|| black_box(store.search(&page_two).unwrap()))
    });
    group.finish();
    runtime.block_on(store.shutdown());
}

criterion_group!(benches, bench_journal, bench_indexing, bench_search);
criterion_main!(benches);
